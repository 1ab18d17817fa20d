"""Import throughput: `import_release()` on a demo-sized DLCR release, in images (variants) per second.

Setup, untimed: the demo is rendered (its 128 x 64 H x W images are the originals), and a release is written in the
documented layout (docs/dlcr-method.md §2.8): per training image of the demo, one PNG strip of `--variants` demo
images side by side (640 x 128 for 10) and a `.txt` of one `top| bottom| shoes` line per variant, the first
`--strips` training images (at most the demo's 1,064). Timed: the whole `import_release()` call into a fresh out
folder, with `--root` (so each original's aspect ratio gives the variant count and its loader the keys): scan, strip
decoding and cutting, PNG encoding, tar writing with sha256, manifest, card and preview. Reported: the median wall
time over `--repeats` with min..max, images/s (variants written / wall seconds), ms per image in all and in the
shard step alone (decoding and cutting strips, PNG encoding, tar writing), and the share of the scan step.

    .venv/bin/python bench/import_release.py                 # ~1,000 strips x 10 = 10,000 images, 3 reps
    .venv/bin/python bench/import_release.py --strips 200 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from _common import flush_writes, median, table, write_result
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.release import ReleaseOptions, import_release
from dlcr_data.demo import DemoConfig, render_demo
from dlcr_data.progress import Reporter


class StageClock(Reporter):
    """Seconds between `stage(name)` and `done(name)`."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def stage(self, name: str, total: int):
        self.started[name] = time.perf_counter()
        return lambda n: None

    def done(self, name: str) -> None:
        self.seconds[name] = time.perf_counter() - self.started[name]


def write_release(demo: Path, release: Path, strips: int, variants: int) -> int:
    """`release/dlcr_demo/train/<original name>.png` strips of `variants` demo images, and their `.txt`."""
    train = loaders.load("demo", demo)["train"]
    outfits = json.loads((demo / "outfits.json").read_text())
    texts = [t.replace(" | ", "| ") for t in sorted(set(outfits.values()))]  # the release's `top| bottom| shoes`
    folder = release / "dlcr_demo" / "train"
    folder.mkdir(parents=True)
    images = [Image.open(demo / r.path).convert("RGB") for r in train]
    w, h = images[0].size
    if strips > len(train):
        raise SystemExit(f"--strips: the demo has {len(train)} training images (one strip each)")
    for i, record in enumerate(train[:strips]):
        name = Path(record.path).stem
        strip = Image.new("RGB", (variants * w, h))
        for k in range(variants):
            strip.paste(images[(i + 1 + k) % len(images)], (k * w, 0))
        strip.save(folder / f"{name}.png", compress_level=6)
        lines = [texts[(i + k) % len(texts)] for k in range(variants)]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return strips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strips", type=int, default=1000, help="strips in the release (one per original)")
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-samples", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the demo, release and outs go")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.workdir))
    try:
        demo = render_demo(work / "dlcr_demo", DemoConfig())
        strips = write_release(demo, work / "release", args.strips, args.variants)
        rows, runs = [], []
        for rep in range(args.repeats):
            out = work / f"out{rep}"
            flush_writes()
            clock = StageClock()
            t = time.perf_counter()
            entry = import_release(
                ReleaseOptions("demo", work / "release", out, root=str(demo), shard_samples=args.shard_samples),
                clock,
            )
            seconds = time.perf_counter() - t
            images = entry["totals"]["samples"]
            assert images == strips * args.variants, (images, strips)
            stages = {f"{name}_seconds": round(clock.seconds.get(name, 0.0), 4) for name in ("scan", "import")}
            runs.append({"seconds": seconds, "images": images, **stages})
            shutil.rmtree(out)
        secs = [r["seconds"] for r in runs]
        images = runs[0]["images"]
        result = {
            "strips": strips,
            "variants": args.variants,
            "variant_size_wh": list(Image.open(next((work / "release").rglob("*.png"))).size),
            "images": images,
            "median_seconds": median(secs),
            "images_per_s": images / median(secs),
            "ms_per_image": 1000 * median(secs) / images,
            "shard_ms_per_image": 1000
            * median([r["import_seconds"] for r in runs])
            / images,  # decode, cut, encode, tar
            "scan_share": median([r["scan_seconds"] / r["seconds"] for r in runs]),
            "runs": runs,
        }
        result["variant_size_wh"][0] //= args.variants
        rows.append(
            [
                f"{strips} strips x {args.variants}",
                images,
                f"{median(secs):.2f} ({min(secs):.2f}..{max(secs):.2f})",
                f"{images / median(secs):,.0f}",
                f"{result['ms_per_image']:.2f}",
                f"{result['shard_ms_per_image']:.2f}",
                f"{result['scan_share']:.1%}",
            ]
        )
        headers = ["release", "images", "wall s (min..max)", "images/s", "ms/image", "shards ms/image", "scan share"]
        print(table(headers, rows))
        print(f"result: {write_result('import_release', result, args.json)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

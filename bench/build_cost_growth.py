"""How a build's cost grows with its size: time per image, peak RSS and bytes per item at 1k, 10k and 100k sources.

Each size gets its own LTCC-layout tree (`train/`, `query/`, `test/`, names `<pid>_<clothes>_c<cam>_<frame>.png`)
of small generated images: 64x32 pixels, a colour block per garment (the outfit's colours) on a grey background,
plus seeded noise, written deterministically. 25 images per outfit, 4 outfits per identity (LTCC: ~124 images and
~5 outfits per identity in train). The build is the real `dlcr_data.build.build()` with:

* `--parser segformer` on a tiny random SegFormer (the segformer_b2_clothes label set, its classifier forced so that
  "Upper-clothes" wins everywhere: every mask is the whole image, never empty), saved with `save_pretrained`;
* `--describer color`, `--generator recolor`, 10 variants per source, shards of 1,000 (the defaults).

The build runs with one torch/OpenMP thread (`--threads 1`): on a shared 2-core machine, OpenMP's spin-waiting
under oversubscription made the SegFormer parse 7-20x slower per image (CPU time too), which is the machine's
noise, not the build's growth. Wall and CPU seconds are both recorded, per stage and in all.

Each size's build runs in a fresh subprocess: its peak RSS is the child's `ru_maxrss` (from `os.wait4`), so one
size never inherits another's heap. The child also records RSS (VmRSS) at every stage boundary, which shows which
stage holds what. After each build, the bytes on disk are measured per item: `plan.jsonl` per variant, the
manifest per shard, the mask cache per source image, `outfits.jsonl` per outfit, the shards per variant (split by
tar member: image, mask, json, tar headers). `estimate_2m` scales those to DLCR's released size: 210,000 sources x
10 variants = 2.1 M variants.

    .venv/bin/python bench/build_cost_growth.py                        # 1k, 10k, 100k (100k: ~30-60 min, 2 cores)
    .venv/bin/python bench/build_cost_growth.py --sizes 1000,10000     # the two small points, ~5 min
    .venv/bin/python bench/build_cost_growth.py --sizes 100000 --json bench/results/build_cost_growth_100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import table, write_result
from PIL import Image

WIDTH, HEIGHT = 32, 64  # W x H of every source image
PER_OUTFIT, OUTFITS_PER_ID, CAMERAS = 25, 4, 6
EVAL_IMAGES = 8  # query/ and test/ must exist for the LTCC loader; they are not expanded
DLCR_SOURCES, DLCR_VARIANTS = 210_000, 10  # DLCR's released size: 2.1 M variants
# The label set of mattmdjaga/segformer_b2_clothes, in its order.
CLOTHES_LABELS = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip


# -- inputs -----------------------------------------------------------------------------------------------------
def write_tree(root: Path, n: int) -> dict:
    """`n` training images (+ query/test) in LTCC layout; deterministic: the same bytes on every run."""
    rng = np.random.default_rng(0)
    for folder in ("train", "query", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    outfits = -(-n // PER_OUTFIT)
    palette = rng.integers(0, 256, size=(outfits, 3, 3), dtype=np.uint8)  # top, bottom, shoes per outfit
    noise = rng.integers(-12, 13, size=(64, HEIGHT, WIDTH, 3), dtype=np.int16)  # reused: writing must be fast
    base = np.full((HEIGHT, WIDTH, 3), 128, np.int16)

    def image(outfit: int, i: int) -> Image.Image:
        px = base.copy()
        top, bottom, shoes = palette[outfit].astype(np.int16)
        px[4:36, 2:30], px[36:60, 4:28], px[60:64, 4:28] = top, bottom, shoes  # most pixels: garments
        px += noise[i % len(noise)]
        return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))

    for i in range(n):
        outfit = i // PER_OUTFIT
        pid, cloth = outfit // OUTFITS_PER_ID + 1, outfit % OUTFITS_PER_ID + 1
        image(outfit, i).save(root / "train" / f"{pid:05d}_{cloth}_c{i % CAMERAS + 1}_{i:07d}.png")
    for folder, start in (("query", 0), ("test", EVAL_IMAGES)):
        for j in range(EVAL_IMAGES):
            pid = 900_000 + j
            image(j % outfits, start + j).save(root / folder / f"{pid}_1_c{(start + j) % CAMERAS + 1}_{j:07d}.png")
    return {"train_images": n, "identities": -(-outfits // OUTFITS_PER_ID), "outfits": outfits}


def save_parser(path: Path) -> Path:
    """A tiny random SegFormer (as tests/tiny_models.py builds it) whose classifier makes "Upper-clothes" win."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessorPil

    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32,
        id2label=dict(enumerate(CLOTHES_LABELS)), label2id={name: i for i, name in enumerate(CLOTHES_LABELS)},
    )  # fmt: skip
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    classifier = model.decode_head.classifier
    with torch.no_grad():  # constant logits: a non-empty clothing mask on every image
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.bias[config.label2id["Upper-clothes"]] = 1.0
    model.save_pretrained(path)
    SegformerImageProcessorPil(size={"height": HEIGHT, "width": WIDTH}).save_pretrained(path)
    return path


# -- one build, in its own process --------------------------------------------------------------------------------
def rss_mib() -> dict[str, float]:
    """Current and peak resident set of this process (VmRSS, VmHWM), MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", 0.0), "hwm": fields.get("VmHWM", 0.0)}


def clock() -> dict[str, float]:
    """Wall and CPU seconds of this process (CPU: all its threads); on a shared machine CPU is the steadier one."""
    return {"t": time.perf_counter(), "cpu": time.process_time()}


def child(args: argparse.Namespace) -> None:
    """Runs one build (the `--child` mode) and prints its figures as one JSON line."""
    from dlcr_data.build import BuildOptions, build
    from dlcr_data.progress import Reporter

    marks: list[dict] = []

    class Marks(Reporter):
        def stage(self, name: str, total: int) -> Callable[[int], None]:
            marks.append({"event": f"{name}:start", **clock(), "total": total, **rss_mib()})
            return lambda n: None

        def done(self, name: str) -> None:
            marks.append({"event": f"{name}:done", **clock(), **rss_mib()})

    opts = BuildOptions(
        dataset="ltcc",
        root=str(args.root),
        out=args.out,
        variants=args.variants,
        parser="segformer",
        parser_model=str(args.parser_model),
        describer="color",
        generator="recolor",
    )
    import torch  # imported before the clock starts, as a CLI run has it loaded by then

    torch.set_num_threads(args.threads)
    before = rss_mib()
    marks.append({"event": "build:start", **clock(), **before})
    t0 = marks[0]["t"]
    entry = build(opts, Marks())
    seconds = time.perf_counter() - t0
    marks.append({"event": "build:end", **clock(), **rss_mib()})
    for m in marks:
        m["t"] -= t0
    print(json.dumps({"seconds": seconds, "rss_before_build": before, "marks": marks, "totals": entry["totals"]}))


def run_child(root: Path, out: Path, parser_model: Path, variants: int, threads: int) -> dict:
    """The build in a fresh interpreter; its own peak RSS from the kernel (`wait4`), not an ancestor's."""
    cmd = [sys.executable, __file__, "--child", "--root", str(root), "--out", str(out)]
    cmd += ["--parser-model", str(parser_model), "--variants", str(variants), "--threads", str(threads)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the build of {root} failed (exit {proc.returncode})")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0  # with interpreter start and imports
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


# -- bytes on disk ------------------------------------------------------------------------------------------------
def folder_bytes(path: Path, suffix: str = "") -> tuple[int, int]:
    """(files, bytes) of the regular files under `path` whose name ends with `suffix`."""
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            if name.endswith(suffix):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, name))
    return files, size


def shard_members(shard: Path) -> dict[str, int]:
    """Bytes of one shard by member kind (payload per extension) and the tar framing around them."""
    by_kind: dict[str, int] = defaultdict(int)
    with tarfile.open(shard) as tar:
        for member in tar:
            by_kind[member.name.rsplit("/", 1)[-1].split(".", 1)[1]] += member.size  # "<key>.mask.png" -> mask.png
    by_kind["tar headers + padding"] = shard.stat().st_size - sum(by_kind.values())
    return dict(by_kind)


def disk_sizes(out: Path, samples: int, sources: int, outfits: int) -> dict:
    work = out / "work" / "ltcc"
    shards = sorted((out / "ltcc").glob("*.tar"))
    manifest = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]
    n_shards, n_skipped = len(manifest.get("shards", [])), len(manifest.get("skipped", []))
    mask_files, mask_bytes = folder_bytes(work / "masks", ".png")
    work_files, work_bytes = folder_bytes(out / "work")
    shard_bytes = sum(p.stat().st_size for p in shards)
    members: dict[str, int] = defaultdict(int)
    full = [p for p in shards if p.stat().st_size == max(s.stat().st_size for s in shards)][:1]
    for shard in full:  # one full shard, scaled per sample
        for kind, size in shard_members(shard).items():
            members[kind] += size
    per_full = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]["shards"]
    full_samples = max(s.get("samples", 0) for s in per_full) if per_full else 0
    sizes = {
        "plan_jsonl_bytes": (work / "plan.jsonl").stat().st_size,
        "manifest_bytes": (out / "manifest.json").stat().st_size,
        "manifest_shards": n_shards,
        "manifest_skipped": n_skipped,
        "mask_files": mask_files,
        "mask_bytes": mask_bytes,
        "outfits_jsonl_bytes": (work / "outfits.jsonl").stat().st_size if (work / "outfits.jsonl").exists() else 0,
        "work_files": work_files,
        "work_bytes": work_bytes,
        "shard_files": len(shards),
        "shard_bytes": shard_bytes,
        "card_bytes": (out / "README.md").stat().st_size if (out / "README.md").exists() else 0,
    }
    sizes["per_item"] = {
        "plan_bytes_per_variant": sizes["plan_jsonl_bytes"] / samples,
        "manifest_bytes_per_shard": sizes["manifest_bytes"] / max(1, n_shards),
        "mask_bytes_per_source": mask_bytes / max(1, mask_files),
        "outfits_bytes_per_outfit": sizes["outfits_jsonl_bytes"] / max(1, outfits),
        "work_bytes_per_source": work_bytes / sources,
        "shard_bytes_per_variant": shard_bytes / samples,
        "shard_member_bytes_per_variant": {k: v / full_samples for k, v in members.items()} if full_samples else {},
    }
    return sizes


# -- driver -------------------------------------------------------------------------------------------------------
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(n: int, args: argparse.Namespace, workdir: Path, parser_model: Path) -> dict:
    root, out = workdir / f"ltcc-{n}", workdir / f"out-{n}"
    t0 = time.perf_counter()
    tree = write_tree(root, n)
    tree["write_seconds"] = time.perf_counter() - t0
    print(f"[{n:,}] tree written in {tree['write_seconds']:.1f} s; building ...", file=sys.stderr, flush=True)
    load_start = load_average()
    run = run_child(root, out, parser_model, args.variants, args.threads)
    samples = run["totals"]["samples"]
    point = {
        "sources": n,
        "tree": tree,
        "variants": samples,
        "seconds": run["seconds"],
        "ms_per_image": 1e3 * run["seconds"] / samples,
        "cpu_ms_per_image": 1e3 * (run["marks"][-1]["cpu"] - run["marks"][0]["cpu"]) / samples,
        "peak_rss_mib": run["peak_rss_mib"],
        "rss_before_build_mib": run["rss_before_build"]["rss"],
        "cpu_seconds": run["cpu_seconds"],
        "process_seconds": run["process_seconds"],
        "loadavg_start": load_start,
        "loadavg_end": load_average(),
        "stages": stage_table(run["marks"]),
        "totals": run["totals"],
    }
    point["disk"] = disk_sizes(out, samples, n, tree["outfits"])
    print(f"[{n:,}] {samples:,} variants in {run['seconds']:.1f} s, peak RSS {run['peak_rss_mib']:.0f} MiB, "
          f"load {point['loadavg_end']}", file=sys.stderr, flush=True)  # fmt: skip
    if not args.keep:
        shutil.rmtree(out)
        shutil.rmtree(root)
    return point


def stage_table(marks: list[dict]) -> dict[str, dict]:
    """Wall and CPU seconds per stage, and RSS in MiB at its end (`hwm`: the peak so far). The stretches between
    the reported stages are named after what runs there: setup (options, listing, model checks), plan (plan +
    shard assignment + generator setup), finish (manifest entry, card, preview)."""
    at = {m["event"]: m for m in marks}
    spans = [("setup", "build:start", "parse:start")]
    names = [m["event"].split(":")[0] for m in marks if m["event"].endswith(":start") and m is not marks[0]]
    spans += [(n, f"{n}:start", f"{n}:done") for n in names]
    spans += [("plan", "describe:done", "generate:start"), ("finish", "generate:done", "build:end")]
    stages = {}
    for name, a, b in spans:
        start, end = at[a], at[b]
        stages[name] = {
            "seconds": end["t"] - start["t"],
            "cpu_seconds": end["cpu"] - start["cpu"],
            "items": start.get("total"),
            "rss_end": end["rss"],
            "hwm_end": end["hwm"],
        }
    order = ["setup", "parse", "describe", "plan", "generate", "finish"]
    return {k: stages[k] for k in sorted(stages, key=lambda k: order.index(k) if k in order else 3.5)}


def estimate(points: list[dict]) -> dict:
    """Disk and memory at 2.1 M variants, from the largest measured point's per-item sizes."""
    p = max(points, key=lambda q: q["sources"])
    per, d = p["disk"]["per_item"], p["disk"]
    variants, sources = DLCR_SOURCES * DLCR_VARIANTS, DLCR_SOURCES
    shards = -(-variants // 1000)
    outfits = sources / PER_OUTFIT
    est = {
        "from_point": p["sources"],
        "variants": variants,
        "sources": sources,
        "shards": shards,
        "plan_jsonl_bytes": per["plan_bytes_per_variant"] * variants,
        "manifest_bytes": per["manifest_bytes_per_shard"] * shards,
        "mask_cache_bytes": per["mask_bytes_per_source"] * sources,
        "outfits_jsonl_bytes": per["outfits_bytes_per_outfit"] * outfits,
        "shard_bytes_at_64x32": per["shard_bytes_per_variant"] * variants,
        "shard_non_image_bytes": sum(
            v for k, v in per["shard_member_bytes_per_variant"].items() if k not in ("png", "jpg")
        )
        * variants,
    }
    if len(points) >= 2:  # peak RSS: linear through the two largest points
        a, b = sorted(points, key=lambda q: q["sources"])[-2:]
        slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["variants"] - a["variants"])
        est["peak_rss_slope_kib_per_variant"] = slope * 1024
        est["peak_rss_mib_linear"] = b["peak_rss_mib"] + slope * (variants - b["variants"])
        est["ms_per_image_largest"] = b["ms_per_image"]
        est["hours_at_largest_rate"] = b["ms_per_image"] * variants / 3.6e6
    est["manifest_shards_measured"] = d["manifest_shards"]
    return est


def report(result: dict) -> str:
    pts = result["points"]
    rows = [
        [p["sources"], p["variants"], p["seconds"], p["ms_per_image"], p["cpu_ms_per_image"], p["peak_rss_mib"],
         p["rss_before_build_mib"],
         " ".join(map(str, p["loadavg_start"])) + " / " + " ".join(map(str, p["loadavg_end"]))]
        for p in pts
    ]  # fmt: skip
    lines = [
        "build cost growth: LTCC layout, 64x32 sources, tiny SegFormer, color describer, recolor",
        table(
            [
                "sources",
                "variants",
                "s",
                "ms/image",
                "CPU ms/image",
                "peak RSS MiB",
                "RSS pre-build",
                "load start / end",
            ],
            rows,
        ),
        "",
        "stages: wall s / CPU s (RSS MiB at the end):",
    ]
    names = list(pts[0]["stages"])
    srows = [[p["sources"], *(_stage_cell(p["stages"][n]) for n in names)]
             for p in pts]  # fmt: skip
    lines.append(table(["sources", *names], srows))
    lines += ["", "bytes per item:"]
    keys = list(pts[0]["disk"]["per_item"])[:-1]
    lines.append(table(["sources", *keys], [[p["sources"], *(p["disk"]["per_item"][k] for k in keys)] for p in pts]))
    est = result["estimate_2m"]
    lines += ["", "2.1 M variants (210k sources x 10):"]
    lines += [f"  {k}: {v:,.1f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in est.items()]
    return "\n".join(lines)


def _stage_cell(st: dict) -> str:
    return f"{st['seconds']:.1f} / {st['cpu_seconds']:.1f} ({st['rss_end']:.0f})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated source-image counts")
    p.add_argument("--variants", type=int, default=10, help="variants per source image")
    p.add_argument("--workdir", type=Path, default=None, help="where trees and builds go (default: $TMPDIR)")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the build (see the docstring)")
    p.add_argument("--keep", action="store_true", help="keep each size's tree and build folder")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/<name>.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one build, in the subprocess
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--parser-model", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return None
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-growth-", dir=args.workdir))
    points = []
    try:
        parser_model = save_parser(workdir / "tiny-segformer")
        for n in sizes:
            points.append(measure(n, args, workdir, parser_model))
            partial = {"config": _config(args, sizes), "points": points, "estimate_2m": estimate(points)}
            path = write_result("build_cost_growth", partial, args.json)  # after every size: a crash keeps some
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(partial))
    print(f"\nresult: {path}")
    return partial


def _config(args: argparse.Namespace, sizes: list[int]) -> dict:
    return {
        "dataset": "ltcc (generated tree)",
        "image_size_wh": [WIDTH, HEIGHT],
        "images_per_outfit": PER_OUTFIT,
        "outfits_per_identity": OUTFITS_PER_ID,
        "sizes": sizes,
        "variants": args.variants,
        "parser": "segformer (tiny random, Upper-clothes forced)",
        "describer": "color",
        "generator": "recolor",
        "batch_size": 8,
        "shard_samples": 1000,
        "torch_threads": args.threads,
    }


if __name__ == "__main__":
    main()

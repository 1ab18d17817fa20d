"""Shard writing vs GNU tar: `dlcr_data.build.shards.ShardWriter` against `tar -cf` of the same members as loose files.

N demo-like samples (the demo's train images and clothing masks as PNG, plus the sample JSON a build writes) are
encoded once, untimed. Each repetition then times, in alternating order:

* writer: the samples through `ShardWriter` into shards of `--shard-samples`, as a build does: temp file,
  tar members (byte-identical to `webdataset.TarWriter`), sha256 computed while writing, atomic rename.
* tar: `tar -cf` (GNU tar, one subprocess) of a folder holding the same members as loose files
  (`<key>.png`, `<key>.mask.png`, `<key>.json`), written once beforehand, so only archiving is timed and the
  page cache is warm.

Throughput is payload MB/s (member bytes, 1e6 B per MB, the same numerator for both); the goal is
writer/tar >= 0.8. Every timed write goes to a fresh folder, with dirty pages flushed before it (untimed).

    .venv/bin/python bench/shard_writer_vs_tar.py               # 5,000 samples, 9 repetitions, ~20 s
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import flush_writes, median, table, write_result
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.parse import OracleParser, clothing_mask
from dlcr_data.build.shards import SAMPLE_FIELDS, ShardWriter, encode_image, encode_sample
from dlcr_data.files import sha256_file

GOAL_RATIO = 0.8


def make_samples(n: int) -> list[dict]:
    """`n` WebDataset samples like a demo build's: the train sources cycled, each under its own variant key."""
    loaded = loaders.load("demo")
    parser = OracleParser("demo")
    encoded = []
    for record in loaded["train"]:
        with Image.open(loaded.root / record.image_path) as im:
            image = im.convert("RGB")
        mask = clothing_mask(parser.parse([image], [record], loaded.root)[0])
        encoded.append(
            (record, encode_image(image, "png"), encode_image(Image.fromarray(mask.astype("uint8") * 255), "png"))
        )
    samples = []
    for i in range(n):
        record, image_png, mask_png = encoded[i % len(encoded)]
        variant = i // len(encoded)
        meta = {
            "dataset": "demo",
            "split": "train",
            "source_key": record.key,
            "pid": record.pid,
            "camid": record.camid,
            "source_clothes_id": record.clothes_id,
            "target_clothes_id": f"{record.pid}_9",
            "target_text": "red striped long-sleeve shirt | black trousers | white shoes",
            "prompt": "a photo of a person wearing red striped long-sleeve shirt, black trousers, white shoes",
            "negative_prompt": "",
            "generator": "recolor",
            "model": "",
            "seed": 1_000_003 * i % 2**31,
            "variant": variant,
            "width": 64,
            "height": 128,
        }
        assert tuple(meta) == SAMPLE_FIELDS
        samples.append(encode_sample(f"{record.key}_v{variant}", image_png, mask_png, meta, "png"))
    return samples


def payload_bytes(samples: list[dict]) -> int:
    return sum(len(v) for s in samples for k, v in s.items() if k != "__key__")


def write_loose(samples: list[dict], folder: Path) -> None:
    """The same members as files: `<key>.<ext>` (what `tar` archives)."""
    folder.mkdir(parents=True)
    for s in samples:
        for ext, data in s.items():
            if ext != "__key__":
                (folder / f"{s['__key__']}.{ext}").write_bytes(data)


def time_writer(samples: list[dict], out: Path, shard_samples: int) -> dict:
    flush_writes()
    t0 = time.perf_counter()
    results = []
    for index, start in enumerate(range(0, len(samples), shard_samples)):
        with ShardWriter(out, f"demo/train-{index:05d}.tar", "train") as writer:
            for sample in samples[start : start + shard_samples]:
                writer.write(sample)
            results.append(writer.close())
    seconds = time.perf_counter() - t0
    # Untimed: sha256 alone over the same (cached) shards, to show its share of the writer's time.
    t1 = time.perf_counter()
    for r in results:
        sha256_file(out / r.path)
    sha_seconds = time.perf_counter() - t1
    return {"seconds": seconds, "archive_bytes": sum(r.bytes for r in results), "sha256_seconds": sha_seconds}


def time_tar(tar: str, loose: Path, out: Path) -> dict:
    out.mkdir(parents=True)
    archive = out / "loose.tar"
    flush_writes()
    t0 = time.perf_counter()
    subprocess.run([tar, "-cf", str(archive), "-C", str(loose), "."], check=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "archive_bytes": archive.stat().st_size}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=5000, help="samples (3 members each)")
    p.add_argument("--shard-samples", type=int, default=1000, help="samples per shard for the writer")
    p.add_argument("--repeats", type=int, default=9, help="repetitions of each (the median is reported)")
    p.add_argument("--tar", default="tar", help="the tar executable (GNU tar)")
    p.add_argument("--workdir", type=Path, default=None, help="where files are written (default: $TMPDIR)")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/...json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    tar_path = shutil.which(args.tar)
    if tar_path is None:
        raise SystemExit(f"no {args.tar!r} executable on PATH; install GNU tar or pass --tar")
    tar_version = subprocess.run([tar_path, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    t = time.perf_counter()
    samples = make_samples(args.samples)
    print(f"encoded {len(samples):,} samples in {time.perf_counter() - t:.1f} s (untimed)", file=sys.stderr)
    nbytes = payload_bytes(samples)
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-tar-", dir=args.workdir))
    runs: dict[str, list[dict]] = {"writer": [], "tar": []}
    try:
        loose = workdir / "loose"
        write_loose(samples, loose)
        # Warm-up (untimed): code paths, tar's binary, the loose files' inodes and pages.
        time_writer(samples, workdir / "warmup-writer", args.shard_samples)
        time_tar(tar_path, loose, workdir / "warmup-tar")
        for rep in range(args.repeats):
            order = ["writer", "tar"] if rep % 2 == 0 else ["tar", "writer"]
            for mode in order:
                out = workdir / f"{mode}-{rep}"
                run = (
                    time_writer(samples, out, args.shard_samples)
                    if mode == "writer"
                    else time_tar(tar_path, loose, out)
                )
                run["mb_per_s"] = nbytes / 1e6 / run["seconds"]
                runs[mode].append(run)
                shutil.rmtree(out)
            print(f"rep {rep + 1}/{args.repeats}: writer {runs['writer'][-1]['seconds']:.3f} s, "
                  f"tar {runs['tar'][-1]['seconds']:.3f} s", file=sys.stderr)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ratios = [w["mb_per_s"] / t["mb_per_s"] for w, t in zip(runs["writer"], runs["tar"], strict=True)]
    summary = {
        "writer_mb_per_s": median([r["mb_per_s"] for r in runs["writer"]]),
        "tar_mb_per_s": median([r["mb_per_s"] for r in runs["tar"]]),
        "writer_over_tar": median(ratios),  # median of same-repetition ratios
        "writer_sha256_share": median([r["sha256_seconds"] / r["seconds"] for r in runs["writer"]]),
        "goal_ratio": GOAL_RATIO,
    }
    summary["goal_met"] = summary["writer_over_tar"] >= GOAL_RATIO
    result = {
        "config": {
            "samples": len(samples),
            "members": 3 * len(samples),
            "payload_bytes": nbytes,
            "shard_samples": args.shard_samples,
            "shards": -(-len(samples) // args.shard_samples),
            "repeats": args.repeats,
            "tar": f"{tar_path} ({tar_version})",
        },
        "summary": summary,
        "runs": runs,
    }
    path = write_result("shard_writer_vs_tar", result, args.json)
    print(report(result))
    print(f"\nresult: {path}")
    return result


def report(result: dict) -> str:
    cfg, s, runs = result["config"], result["summary"], result["runs"]
    rows = [
        [
            label,
            median([r["seconds"] for r in runs[mode]]),
            s[f"{mode}_mb_per_s"],
            f"{min(r['mb_per_s'] for r in runs[mode]):.0f}..{max(r['mb_per_s'] for r in runs[mode]):.0f}",
        ]
        for label, mode in (("ShardWriter (+ sha256, rename)", "writer"), ("tar -cf of loose files", "tar"))
    ]
    return "\n".join(
        [
            f"shard writing: {cfg['samples']:,} samples ({cfg['members']:,} members, {cfg['payload_bytes'] / 1e6:.1f} "
            f"MB payload), shards of {cfg['shard_samples']:,}, median of {cfg['repeats']}",
            "",
            table(["mode", "s", "MB/s", "min..max MB/s"], rows),
            "",
            f"writer / tar throughput (same repetition): {s['writer_over_tar']:.2f}x (goal >= {s['goal_ratio']}x: "
            f"{'met' if s['goal_met'] else 'NOT met'})",
            f"sha256 of the same bytes, timed alone: {100 * s['writer_sha256_share']:.0f}% of the writer's time",
        ]
    )


if __name__ == "__main__":
    main()

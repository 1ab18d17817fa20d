"""Runs every CPU benchmark with its default settings, each in a fresh process (`make bench`).

    .venv/bin/python bench/run_all.py          # build, ShardWriter vs tar, read, evaluation, related methods (~7 min)
    .venv/bin/python bench/run_all.py --gpu    # also the GPU inpainting benchmark (needs CUDA)

Results go to bench/results/*.json; the exit status is non-zero if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CPU_BENCHMARKS = (
    "build_throughput.py",
    "shard_writer_vs_tar.py",
    "read_throughput.py",
    "eval_rank.py",
    "related_methods.py",
    "tar_writer_build.py",
    "import_release.py",
    "kernel_threads.py",
)
# Long runs, started by hand (minutes to an hour): `build_cost_growth.py` (1k/10k/100k sources) and
# `full_size_models.py` (the default models' architectures with random weights, ~10 GiB), `render_generator.py` (the
# demo's oracle generator against recolor, whole-demo builds through the CLI, ~5 min), `demo_ablation.py` (what drives
# the demo's baseline, ~40 min), `demo_pretraining.py` (pretrained backbones on the demo, ~8 min),
# `demo_dlcr_people.py` (the DLCR gain on other people, ~15 min), `demo_refine_rules.py` (refinement rules on an
# experiment's trained models), `train_scale.py` (training memory and processes, ~15 min).
GPU_BENCHMARKS = ("gpu_inpaint.py",)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="also run gpu_inpaint.py (fails without a CUDA device)")
    args = p.parse_args(argv)
    failed = []
    for script in CPU_BENCHMARKS + (GPU_BENCHMARKS if args.gpu else ()):
        print(f"\n=== {script} ===", flush=True)
        t = time.perf_counter()
        # A fresh interpreter per benchmark: no imports, caches or registry changes carried from the previous one.
        rc = subprocess.run([sys.executable, str(BENCH_DIR / script)], check=False).returncode
        print(f"=== {script}: exit {rc}, {time.perf_counter() - t:.0f} s ===", flush=True)
        if rc:
            failed.append(script)
    if not args.gpu:
        print("\n(gpu_inpaint.py skipped: pass --gpu on a machine with a CUDA device)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

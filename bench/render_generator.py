"""The `render` generator (the demo's oracle) against `recolor` (the peer), end to end through the CLI.

Per repetition, interleaved (order reversed every other one, output folders removed and writes flushed between
runs, untimed), the wall time of the exact commands a user types, each into a fresh out folder:

    dlcr-data build demo --generator recolor --out OUT
    dlcr-data build demo --generator render --out OUT

(the default demo, rendered beforehand, untimed; its train split, 10 variants per image). Reported, in wall time and
in CPU time (user + system of the build process: less sensitive to other jobs on a shared machine): the median over
`--repeats` of each, the render / recolor ratio within each repetition, and the extra ms per generated image.

    .venv/bin/python bench/render_generator.py                 # 3 repetitions (a few minutes on 2 cores)
    .venv/bin/python bench/render_generator.py --limit 32      # a quick check
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import flush_writes, median, table, write_result

from dlcr_data.demo import DemoConfig, default_demo_root, render_demo

GENERATORS = ("recolor", "render")  # the peer first


def run_build(generator: str, out: Path, limit: int | None) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (user + system) of one `dlcr-data build demo`, and the samples it wrote."""
    exe = Path(sys.executable).parent / "dlcr-data"
    argv = [str(exe), "build", "demo", "--generator", generator, "--out", str(out)]
    argv += [] if limit is None else ["--limit", str(limit)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # less sensitive to other jobs
    entry = json.loads((out / "manifest.json").read_text())["builds"]["demo"]
    return seconds, cpu, int(entry["totals"]["samples"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="source images per split (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the out folders go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="result path (default bench/results/...)")
    args = parser.parse_args()
    render_demo(default_demo_root(), DemoConfig())  # untimed: the builds read the rendered default demo
    work = Path(args.workdir or tempfile.mkdtemp(prefix="render-bench-"))
    runs: dict[str, dict[str, list[float]]] = {kind: {g: [] for g in GENERATORS} for kind in ("wall", "cpu")}
    samples: dict[str, int] = {}
    for rep in range(args.repeats):
        for generator in GENERATORS if rep % 2 == 0 else GENERATORS[::-1]:
            out = work / f"{generator}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            flush_writes()
            wall, cpu, samples[generator] = run_build(generator, out, args.limit)
            runs["wall"][generator].append(wall)
            runs["cpu"][generator].append(cpu)
            shutil.rmtree(out, ignore_errors=True)
            print(f"rep {rep} {generator}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    n = samples["render"]
    result: dict = {"limit": args.limit, "repeats": args.repeats, "samples": samples}
    for kind, times in runs.items():
        ratios = [r / p for r, p in zip(times["render"], times["recolor"], strict=True)]
        extra_ms = 1000 * (median(times["render"]) - median(times["recolor"])) / n
        rows = [
            (g, n, median(times[g]), f"{min(times[g]):.2f}..{max(times[g]):.2f}", 1000 * median(times[g]) / n)
            for g in GENERATORS
        ]
        print(table(("generator", "images", f"s per build ({kind})", "min..max", "ms per image"), rows))
        print(
            f"render / recolor: {median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f}); +{extra_ms:.2f} ms/image"
        )
        result[kind] = {
            "seconds": times,
            "median_seconds": {g: median(times[g]) for g in GENERATORS},
            "ratio_render_to_recolor": {"median": median(ratios), "min": min(ratios), "max": max(ratios)},
            "extra_ms_per_image": extra_ms,
        }
    print(write_result("render_generator", result, args.json))


if __name__ == "__main__":
    main()

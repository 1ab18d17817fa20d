"""Training memory at scale: peak RSS of `dlcr-data train` when the expanded build grows 8x, streaming vs cache;
and two training processes against one (loss curves).

1. **RSS vs build size.** The demo is built twice, with 2 and with 16 variants per training image (8x the
   generated images); `train demo --expanded BUILD` then runs 2 epochs on each, in a fresh subprocess, once with
   `--cache off --num-workers 2` (decoding in DataLoader workers, the default at scale) and once with
   `--cache on` (every decoded image kept in the training process: the behaviour before streaming). The process
   tree is sampled every 50 ms (psutil): the training process's RSS, the workers' RSS, and their anonymous part
   (RSS minus file-backed and shared pages: what cannot be given back under pressure; the Arrow files of the build
   are memory-mapped, so pages a worker read count in its RSS until the kernel drops them). The training
   process's `ru_maxrss` (os.wait4) is recorded too.
2. **2 processes x P vs 1 process x 2P** (`--multiprocess`): `torchrun --standalone --nproc_per_node 2` against one
   process on the demo's originals, same seed; per-epoch identity loss of both and their largest gap.

    .venv/bin/python bench/train_scale.py --workdir /tmp/train-scale                 # both, ~15 min on 2 cores
    .venv/bin/python bench/train_scale.py --workdir /tmp/train-scale --skip-multiprocess   # or --skip-rss
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _common import table, write_result

SMALL, LARGE = 2, 16  # variants per training image: 8x
EPOCHS = 2


def dlcr(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlcr_data", *args]


def sample_tree(command: list[str], env: dict, log: Path) -> dict:
    """Run `command`; sample its process tree's memory every 50 ms; MiB peaks and the main process's ru_maxrss."""
    with log.open("w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    tree = psutil.Process(process.pid)
    peaks = {"main_rss": 0, "workers_rss": 0, "tree_rss": 0, "tree_anon": 0}
    started = time.perf_counter()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            main = tree.memory_info()
            workers = [p.memory_info() for p in tree.children(recursive=True)]
        except psutil.Error:
            continue
        values = {
            "main_rss": main.rss,
            "workers_rss": sum(m.rss for m in workers),
            "tree_rss": main.rss + sum(m.rss for m in workers),
            "tree_anon": sum(m.rss - m.shared for m in [main, *workers]),
        }
        peaks = {k: max(peaks[k], values[k]) for k in peaks}
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{log.read_text()[-2000:]}")
    out = {k: round(v / 2**20, 1) for k, v in peaks.items()}
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["main_ru_maxrss"] = round(usage.ru_maxrss / 1024, 1)
    return out


def rss_growth(workdir: Path, env: dict) -> dict:
    results = {}
    for variants in (SMALL, LARGE):
        build = workdir / f"build-{variants}"
        if not (build / "manifest.json").is_file():
            subprocess.run(dlcr("build", "demo", "--out", str(build), "--variants", str(variants)), env=env, check=True)
        for cache, workers in (("off", "2"), ("on", "0")):
            out = workdir / f"run-{variants}-{cache}"
            command = dlcr("train", "demo", "--out", str(out), "--expanded", str(build), "--epochs", str(EPOCHS))
            command += ["--cache", cache, "--num-workers", workers, "--overwrite"]
            results[f"{variants} variants, cache {cache}"] = sample_tree(command, env, out.with_suffix(".log"))
            print(f"{variants} variants, cache {cache}: {results[f'{variants} variants, cache {cache}']}", flush=True)
    for cache in ("off", "on"):
        small, large = results[f"{SMALL} variants, cache {cache}"], results[f"{LARGE} variants, cache {cache}"]
        results[f"growth, cache {cache}"] = {k: round(large[k] / small[k], 3) for k in small if small[k]}
    return results


def multiprocess(workdir: Path, env: dict, epochs: int) -> dict:
    """1 process x P=8 chunks, 2 processes x P=4 (torchrun), and 1 process x P=8 whose BatchNorm sees the two
    processes' halves apart (`_bn_halves.py`): the same images, keys and averaged losses, so a gap between the
    first two that the third closes is BatchNorm's per-process statistics."""
    k = "4"  # the demo recipe's K
    dlcr_main = [sys.executable, "-m", "dlcr_data"]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dlcr_data",
    ]
    halves = [sys.executable, str(Path(__file__).with_name("_bn_halves.py")), k]
    curves = {}
    for name, launcher, batch_p in (
        ("1 process x P=8", dlcr_main, "8"),
        ("2 processes x P=4", torchrun, "4"),
        ("1 process x P=8, BatchNorm per half", halves, "8"),
    ):
        out = workdir / ("mp-" + "-".join(name.replace(",", "").split()[:4]))
        command = [*launcher, "train", "demo", "--out", str(out), "--epochs", str(epochs), "--batch-p", batch_p]
        command += ["--batch-k", k, "--overwrite", "--cache", "off", "--num-workers", "0"]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        history = json.loads((out / "history.json").read_text())
        curves[name] = {"loss_id": [h["loss_id"] for h in history], "seconds": round(time.perf_counter() - started, 1)}
    one, two, halved = (curves[k]["loss_id"] for k in curves)
    curves["max_gap 1 vs 2 processes"] = round(max(abs(a - b) for a, b in zip(one, two, strict=True)), 4)
    curves["max_gap 2 processes vs BatchNorm per half"] = round(
        max(abs(a - b) for a, b in zip(two, halved, strict=True)), 4
    )
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--skip-multiprocess", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the multi-process comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = {} if args.skip_rss else {"rss": rss_growth(args.workdir, env)}
    if not args.skip_multiprocess:
        result["multiprocess"] = multiprocess(args.workdir, env, args.epochs)
    if "rss" in result:
        rows = [[name, *(r.get(k, "") for k in ("main_rss", "workers_rss", "tree_rss", "tree_anon", "seconds"))]
                for name, r in result["rss"].items()]  # fmt: skip
        print(table(["run", "main RSS MiB", "workers RSS", "tree RSS", "tree anon", "s"], rows))
    if "multiprocess" in result:
        print(json.dumps(result["multiprocess"], indent=1))
    write_result("train_scale" if not args.skip_rss else "train_scale_multiprocess", result, args.json)


if __name__ == "__main__":
    main()

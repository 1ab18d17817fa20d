"""Evaluation at LaST scale: the evaluator's metric computation without refinement and with `--refine 4`.

Random float32 features at LaST's test size, 10,176 queries x 125,353 gallery images of 5,806 identities
(docs/datasets.md §6), dimension 4096 (CAL's maxavg ResNet-50 feature: max + average pooling, 2 x 2048), and
fractions of it (queries, gallery and identities scaled alike) to show how the cost grows. Labels LaST-like:
every gallery identity present, query ids drawn from all but one, every image its own camera (LaST's running
camids: nothing is junk), 1-3 random outfits per identity (LaST's one protocol, `general`, does not read them).
Features: an identity centre + noise (same-id cosine ~0.2, a hard gallery, as bench/eval_rank.py); the K = 4
variants of a query are other noisy views of its identity (built last, for the refined runs only).

Each run happens in a fresh subprocess, which builds the features (in place, block by block: no temporaries of
their size), then times one call:

- `plain`: `metrics.evaluate_features` in `general` mode (what `protocols.evaluate_dataset` runs);
- `dlcr`, `identity`: `refine.evaluate_refined` with that rule, top 5, the protocol's mode (what
  `evaluate_checkpoint(..., refine=4)` runs per protocol): refined distance chunks scored as they come.

Reported per run: wall seconds of the call, its ratio to `plain` at the same size in the same invocation, the
process's peak RSS (`ru_maxrss`, the features included) and its RSS once the features exist. Requirement: peak
RSS <= 4 GiB with refinement at full size. Rank-1 and mAP are recorded as a sanity check, not as a claim.

    flock /tmp/work/heavy.lock .venv/bin/python bench/evaluate_scale.py            # 1/8, 1/2, 1: ~40 min, 2 cores
    .venv/bin/python bench/evaluate_scale.py --fractions 0.03 --dim 256                 # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import table, write_result

from dlcr_data.reid.metrics import MEMORY_BUDGET, evaluate_features
from dlcr_data.reid.refine import evaluate_refined

LAST = (10176, 125353, 5806)  # test queries, gallery images, gallery identities
METHODS = ("plain", "dlcr", "identity")
GIB = 2**30
BLOCK = 4096  # rows generated at a time


def sizes(fraction: float) -> tuple[int, int, int]:
    return tuple(max(2, round(n * fraction)) for n in LAST)


def make_case(fraction: float, dim: int, variants: int, seed: int = 0) -> dict:
    """Labels and features (see the module docstring); features filled block by block."""
    num_q, num_g, num_ids = sizes(fraction)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=gen)
    g_pids = torch.randperm(num_g, generator=gen) % num_ids
    q_pids = torch.randint(0, num_ids - 1, (num_q,), generator=gen)
    outfits = torch.randint(1, 4, (num_ids,), generator=gen)

    def clothes(pids: torch.Tensor) -> np.ndarray:
        return (4 * pids + (torch.rand(len(pids), generator=gen) * outfits[pids]).long()).numpy()

    def views(pids: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.empty(*shape, dim)
        for start in range(0, len(pids), BLOCK):
            rows = slice(start, start + BLOCK)
            block = out[rows].normal_(generator=gen).mul_(2.0)  # noise 2: same-id cosine ~1 / (1 + 4)
            block.add_(centres[pids[rows]].view(-1, *(1,) * (len(shape) - 1), dim))
        return out

    return {
        "q_feats": views(q_pids, (num_q,)),
        "g_feats": views(g_pids, (num_g,)),
        "qv_feats": views(q_pids, (num_q, variants)),
        "labels": (q_pids.numpy(), g_pids.numpy(), np.arange(num_q), np.arange(num_q, num_q + num_g)),
        "clothes": (clothes(q_pids), clothes(g_pids)),
    }


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(method: str, fraction: float, dim: int, variants: int) -> dict:
    """One timed call in this (fresh) process."""
    c = make_case(fraction, dim, variants if method != "plain" else 0)  # plain holds no variants
    features_rss = _rss()
    t = time.perf_counter()
    if method == "plain":
        r = evaluate_features(c["q_feats"], c["g_feats"], *c["labels"], *c["clothes"], modes=("general",))["general"]
    else:
        r = evaluate_refined(c["q_feats"], c["qv_feats"], c["g_feats"], *c["labels"], *c["clothes"], rule=method)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "features_rss": features_rss,
        "rank1": float(r["cmc"][0]),
        "mAP": float(r["mAP"]),
    }


def run(method: str, fraction: float, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--fractions", str(fraction), "--dim", str(args.dim)]
    cmd += ["--variants", str(args.variants)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{fraction:g} {method}: {out['seconds']:.1f} s, peak {out['peak_rss'] / GIB:.2f} GiB", file=sys.stderr)
    return out


def summarise(result: dict) -> list[dict]:
    rows = []
    for fraction, runs in result["runs"].items():
        plain = np.median([r["seconds"] for r in runs["plain"]])
        for method in METHODS:
            seconds = float(np.median([r["seconds"] for r in runs[method]]))
            peak = max(r["peak_rss"] for r in runs[method]) / GIB
            rows.append(
                {
                    "fraction": fraction,
                    "shape": "x".join(f"{n:,}" for n in sizes(float(fraction))[:2]),
                    "method": method,
                    "seconds": seconds,
                    "over_plain": seconds / plain,
                    "peak_rss_gib": peak,
                    "features_rss_gib": max(r["features_rss"] for r in runs[method]) / GIB,
                    "within_4gib": peak <= 4,
                    "rank1": runs[method][-1]["rank1"],
                    "mAP": runs[method][-1]["mAP"],
                }
            )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.5, 1.0], help="of LaST's test size")
    p.add_argument("--dim", type=int, default=4096, help="feature dimension (CAL's ResNet-50 maxavg: 4096)")
    p.add_argument("--variants", type=int, default=4, help="K query variants (DLCR: 4)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each method per size (median reported)")
    p.add_argument("--json", type=Path, default=None, help="default bench/results/evaluate_scale.json")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.fractions[0], args.dim, args.variants)))
        return None
    result: dict = {
        "config": {
            "dim": args.dim,
            "variants": args.variants,
            "top": 5,
            "repeats": args.repeats,
            "memory_budget_bytes": MEMORY_BUDGET,
            "torch_threads": torch.get_num_threads(),
        },
        "load_average_before": os.getloadavg(),  # a shared machine: other jobs slow every method alike
        "runs": {},
    }
    for fraction in args.fractions:
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}
        for rep in range(args.repeats):
            for method in METHODS if rep % 2 == 0 else reversed(METHODS):
                runs[method].append(run(method, fraction, args))
        result["runs"][str(fraction)] = runs
        result["load_average_after"] = os.getloadavg()
        result["summary"] = summarise(result)
        path = write_result("evaluate_scale", result, args.json)  # after each size: a long run killed keeps them
    headers = ["fraction", "queries x gallery", "method", "s", "/ plain", "peak RSS GiB", "RSS w/ features GiB"]
    print(table(headers, [[r["fraction"], r["shape"], r["method"], r["seconds"], f"{r['over_plain']:.2f}x",
                           f"{r['peak_rss_gib']:.2f}", f"{r['features_rss_gib']:.2f}"]
                          for r in result["summary"]]))  # fmt: skip
    print(f"\nresult: {path}")
    return result


if __name__ == "__main__":
    main()

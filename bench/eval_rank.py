"""Evaluation speed: `dlcr_data.reid.metrics` against CAL-style numpy, torchreid's evaluator and a bare argsort.

Sizes (query x gallery) are the real test splits' (docs/datasets.md §6), with synthetic labels and distances:

* `ltcc` 493 x 7,050 (75 ids, 12 cameras, 1-3 outfits per id) and `prcc` 3,543 x 3,384 (PRCC's CC query
  against gallery A: 71 ids, query camera C, gallery camera A). One float32 distance matrix per size, the same
  for every method. Distances are the within-row ranks of a random score (same-pid entries favoured, so the
  figures are not ~0) divided by the gallery size: all distinct, so no tie policy enters the comparison, and
  the metrics of every method must be identical (asserted: CMC@1..50 equal within 1e-12, 1e-6 against
  torchreid, which averages its CMC in float32; |d mAP| <= 1e-12).
  Timed, interleaved with alternating order in every repetition:
  - `dlcr`: `evaluate_rank(distmat, ...)` in `general` mode and in `cc` mode;
  - `cal`: CAL's `evaluate` / `evaluate_with_clothes(mode="CC")` as docs/datasets.md §4 describes them,
    reimplemented here (numpy argsort with the default quicksort, a loop over queries, index sets by
    `np.argwhere`/`setdiff1d`/`intersect1d`, junk and good located with `np.isin`);
  - `argsort`: `np.argsort(distmat, axis=1)` alone, the floor of any evaluator that sorts every row;
  - `torchreid`: `torchreid.metrics.rank.evaluate_rank(..., use_cython=False)` (the Python `eval_market1501`),
    `--torchreid-repeats` times (default once: it takes seconds to a minute). torchreid 0.2.5 is installed
    with `pip install --no-deps torchreid==0.2.5`; its package `__init__` imports torchvision, scipy and the
    whole data stack, so only the file `torchreid/reid/metrics/rank.py` is loaded, by path, with importlib
    (`load_torchreid_rank`). Its Cython evaluator is not built by that wheel-less install (the import of
    `rank_cy` fails and torchreid falls back to Python); the result records whether it was available.
* `last` 10,176 x 125,353 (5,806 ids; every image its own camera, as LaST's running camids): features, not a
  matrix, since the full matrix would be 5.1 GB (float32) and its argsort 10.2 GB. Each method runs in a fresh
  subprocess, which reports its wall time and its peak RSS (`ru_maxrss`) minus its RSS once the features are
  built (tracemalloc would miss torch's allocations):
  - `dlcr`: `evaluate_features(q, g, ...)` (cosine distance per chunk of queries, ranked at once);
  - `argsort`: the same distance chunks (same chunk size), each `np.argsort`-ed: the sort-based floor;
  - `distances`: the same distance chunks alone, the cost both share.
  Correctness at this gallery size: `evaluate_rank` on the first `--last-check` queries' materialised block
  against the CAL-style evaluator with a stable argsort (float32 cosine distances do tie at this size).

Goal: dlcr <= 1.5x a bare argsort of the same matrix.

    .venv/bin/python bench/eval_rank.py                          # all three sizes, ~3-4 min on 2 cores
    .venv/bin/python bench/eval_rank.py --sizes ltcc prcc         # the matrices only, ~2 min
    .venv/bin/python bench/eval_rank.py --sizes last --last-queries 2048 --dim 128
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from _common import median, table, write_result

from dlcr_data.reid.metrics import MEMORY_BUDGET, cosine_distance, evaluate_features, evaluate_rank

GOAL_RATIO = 1.5
MAX_RANK = 50
SIZES = {  # name -> (queries, gallery, ids)
    "ltcc": (493, 7050, 75),
    "prcc": (3543, 3384, 71),
    "last": (10176, 125353, 5806),
}


# -- peers ------------------------------------------------------------------------------------------------------
def load_torchreid_rank() -> tuple[ModuleType | None, str]:
    """torchreid's `metrics/rank.py` loaded by file path (importing `torchreid` pulls torchvision, scipy...)."""
    spec = importlib.util.find_spec("torchreid")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None, "torchreid not installed (pip install --no-deps torchreid==0.2.5)"
    pkg = Path(next(iter(spec.submodule_search_locations)))
    for rel in ("reid/metrics/rank.py", "metrics/rank.py"):  # 0.2.5 layout, then older releases
        if (pkg / rel).is_file():
            file_spec = importlib.util.spec_from_file_location("torchreid_rank", pkg / rel)
            module = importlib.util.module_from_spec(file_spec)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Cython evaluation ... unavailable"
                file_spec.loader.exec_module(module)
            return module, str(pkg / rel)
    return None, f"no metrics/rank.py under {pkg}"


def _cal_ap_cmc(order: np.ndarray, good: np.ndarray, junk: np.ndarray) -> tuple[float, np.ndarray]:
    """One query, CAL style: delete junk from the ranked list, locate the goods, plain precision at each hit."""
    cmc = np.zeros(len(order))
    ranked = order[np.isin(order, junk, invert=True)]
    hits = np.flatnonzero(np.isin(ranked, good))
    cmc[hits[0] :] = 1.0
    ap = sum((i + 1) / (r + 1) for i, r in enumerate(hits)) / len(good)
    return ap, cmc


def cal_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, kind="quicksort"):
    """CAL's `evaluate` (no clothes) or `evaluate_with_clothes(mode="CC")`, from docs/datasets.md §4's description."""
    order = np.argsort(distmat, axis=1, kind=kind)
    cmc_sum, ap_sum, num_no_gt = np.zeros(distmat.shape[1]), 0.0, 0
    for i in range(distmat.shape[0]):
        same_pid = np.argwhere(g_pids == q_pids[i]).ravel()
        same_cam = np.argwhere(g_camids == q_camids[i]).ravel()
        excluded = same_cam
        if q_clothes is not None:
            excluded = np.union1d(same_cam, np.argwhere(g_clothes == q_clothes[i]).ravel())
        good = np.setdiff1d(same_pid, excluded, assume_unique=True)
        if good.size == 0:
            num_no_gt += 1
            continue
        junk = np.intersect1d(same_pid, excluded)
        ap, cmc = _cal_ap_cmc(order[i], good, junk)
        ap_sum += ap
        cmc_sum += cmc
    valid = distmat.shape[0] - num_no_gt
    return cmc_sum / valid, ap_sum / valid


# -- LTCC / PRCC-sized matrices ---------------------------------------------------------------------------------
def make_matrix(name: str, seed: int = 0) -> dict:
    """Labels and a float32 distance matrix with distinct entries in every row (see the module docstring)."""
    rng = np.random.default_rng(seed)
    num_q, num_g, num_ids = SIZES[name]
    if name == "prcc":  # query = camera C in the second outfit, gallery = camera A in the first
        q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
        q_cams, g_cams = np.full(num_q, 2), np.zeros(num_g, np.int64)
        q_clothes, g_clothes = 2 * q_pids + 1, 2 * g_pids
    else:  # LTCC: 12 cameras; ids below 30 keep one outfit (they drop out of CC), the others have 3
        q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
        q_cams, g_cams = rng.integers(0, 12, num_q), rng.integers(0, 12, num_g)

        def outfits(p):
            return 3 * p + np.where(p < 30, 0, rng.integers(0, 3, len(p)))

        q_clothes, g_clothes = outfits(q_pids), outfits(g_pids)
    # Same-pid entries get a small head start: Rank-1 ~0.6-0.9, so the CMC comparison is not all ones.
    score = rng.random((num_q, num_g)) - 0.02 * (q_pids[:, None] == g_pids[None, :])
    ranks = np.argsort(np.argsort(score, axis=1), axis=1)  # distinct per row
    return {
        "distmat": (ranks / num_g).astype(np.float32),
        "q_pids": q_pids,
        "g_pids": g_pids,
        "q_camids": q_cams,
        "g_camids": g_cams,
        "q_clothes": q_clothes,
        "g_clothes": g_clothes,
    }


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_matrix(name: str, repeats: int, torchreid_repeats: int, rank: ModuleType | None) -> dict:
    c = make_matrix(name)
    d, labels = c["distmat"], (c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"])
    clothes = (c["q_clothes"], c["g_clothes"])
    methods = {
        "dlcr": lambda: evaluate_rank(d, *labels, max_rank=MAX_RANK),
        "dlcr_cc": lambda: evaluate_rank(d, *labels, *clothes, mode="cc", max_rank=MAX_RANK),
        "cal": lambda: cal_evaluate(d, *labels),
        "cal_cc": lambda: cal_evaluate(d, *labels, *clothes),
        "argsort": lambda: np.argsort(d, axis=1),
    }
    if rank is not None:
        methods["torchreid"] = lambda: rank.evaluate_rank(d, *labels, max_rank=MAX_RANK, use_cython=False)
    evaluate_rank(d[:8], c["q_pids"][:8], c["g_pids"], c["q_camids"][:8], c["g_camids"])  # warm-up, untimed
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    outputs: dict[str, object] = {}
    for rep in range(repeats):
        order = list(methods) if rep % 2 == 0 else list(reversed(methods))
        for m in order:
            if m == "torchreid" and rep >= torchreid_repeats:
                continue
            s, outputs[m] = _timed(methods[m])
            seconds[m].append(s)
        print(f"{name} rep {rep + 1}/{repeats}: " + ", ".join(f"{m} {v[-1]:.3f} s" for m, v in seconds.items()
                                                               if len(v) > rep), file=sys.stderr)  # fmt: skip
    return {"shape": list(d.shape), "seconds": seconds, "checks": check_equal(outputs)}


def check_equal(out: dict) -> dict:
    """Identical metrics across methods (distinct distances: no tie policy involved). Raises on a mismatch."""
    checks = {}
    pairs = [("dlcr", "cal", "general"), ("dlcr_cc", "cal_cc", "cc")]
    for ours, peer, mode in pairs:
        cmc, ap = out[peer]
        checks[f"{mode}: dlcr vs cal"] = _compare(out[ours], cmc[:MAX_RANK], ap)
    if "torchreid" in out:
        cmc, ap = out["torchreid"]
        # torchreid averages its CMC in float32: equal to ours up to float32 rounding.
        checks["general: dlcr vs torchreid"] = _compare(out["dlcr"], cmc, ap, cmc_tol=1e-6)
    return checks


def _compare(ours: dict, cmc: np.ndarray, ap: float, cmc_tol: float = 1e-12) -> dict:
    d_cmc = float(np.abs(np.asarray(ours["cmc"]) - np.asarray(cmc)).max())
    d_map = abs(ours["mAP"] - float(ap))
    if len(ours["cmc"]) != len(cmc) or d_cmc > cmc_tol or d_map > 1e-12:
        raise AssertionError(f"metrics differ: max |d cmc| {d_cmc}, |d mAP| {d_map}")
    return {"max_abs_cmc_diff": d_cmc, "abs_map_diff": d_map, "rank1": float(ours["cmc"][0]), "mAP": ours["mAP"]}


# -- LaST: features, each method in a fresh process ------------------------------------------------------------
def make_last(queries: int, dim: int, seed: int = 0) -> dict:
    """Identity centres + noise; every gallery id present; running camids (every image its own camera)."""
    num_q, num_g, num_ids = SIZES["last"]
    num_q = min(queries, num_q)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=gen)
    g_pids = torch.randperm(num_g, generator=gen) % num_ids
    q_pids = torch.randint(0, num_ids - 1, (num_q,), generator=gen)  # 5,805 query ids
    noise = 2.0  # same-id cosine ~1 / (1 + noise^2) = 0.2 against ~N(0, 1/16) for other ids: a hard gallery
    return {
        "q_feats": centres[q_pids] + noise * torch.randn(num_q, dim, generator=gen),
        "g_feats": centres[g_pids] + noise * torch.randn(num_g, dim, generator=gen),
        "q_pids": q_pids.numpy(),
        "g_pids": g_pids.numpy(),
        "q_camids": np.arange(num_q),
        "g_camids": np.arange(num_q, num_q + num_g),
    }


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _distance_chunks(c: dict):
    """The distance blocks `evaluate_features` computes: same chunk size, same function, one reused block."""
    q = torch.nn.functional.normalize(c["q_feats"], dim=1)
    g = torch.nn.functional.normalize(c["g_feats"], dim=1)
    rows = max(1, MEMORY_BUDGET // (len(g) * 4 * 3))  # evaluate_features' default chunk (metrics._chunk_rows)
    block = torch.empty(min(rows, len(q)), len(g))
    for start in range(0, len(q), rows):
        n = min(rows, len(q) - start)
        yield cosine_distance(q[start : start + n], g, out=block[:n])


def last_worker(method: str, queries: int, dim: int) -> dict:
    """One LaST-sized run (in its own process): seconds, peak RSS beyond the features, metrics for `dlcr`."""
    c = make_last(queries, dim)
    baseline = _rss_bytes()
    out: dict = {}
    t = time.perf_counter()
    if method == "dlcr":
        r = evaluate_features(c["q_feats"], c["g_feats"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"])
        out = {k: (v[:5].tolist() if k == "cmc" else v) for k, v in r["general"].items()}
    else:
        for d in _distance_chunks(c):
            if method == "argsort":
                np.argsort(d.numpy(), axis=1)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": seconds, "peak_rss_beyond_features": peak - baseline, "baseline_rss": baseline, **out}


def last_check(queries: int, dim: int, check: int) -> dict:
    """`evaluate_rank` vs CAL-style (stable argsort) on the first `check` queries' distance block."""
    c = make_last(queries, dim)
    c = {**c, "q_feats": c["q_feats"][:check], "q_pids": c["q_pids"][:check], "q_camids": c["q_camids"][:check]}
    q = torch.nn.functional.normalize(c["q_feats"], dim=1)
    g = torch.nn.functional.normalize(c["g_feats"], dim=1)
    d = cosine_distance(q, g).numpy()
    labels = (c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"])
    cmc, ap = cal_evaluate(d, *labels, kind="stable")
    return _compare(evaluate_rank(d, *labels), cmc[:MAX_RANK], ap) | {"queries": len(d)}


def bench_last(args) -> dict:
    runs: dict[str, list[dict]] = {"dlcr": [], "argsort": [], "distances": []}
    for rep in range(args.last_repeats):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for m in order:
            cmd = [sys.executable, __file__, "--last-worker", m, "--last-queries", str(args.last_queries)]
            cmd += ["--dim", str(args.dim)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            runs[m].append(json.loads(res.stdout.strip().splitlines()[-1]))
            peak = runs[m][-1]["peak_rss_beyond_features"] / 2**30
            print(f"last rep {rep + 1}/{args.last_repeats}: {m} {runs[m][-1]['seconds']:.1f} s, peak {peak:.2f} GiB "
                  "beyond features", file=sys.stderr)  # fmt: skip
    check = last_check(args.last_queries, args.dim, args.last_check) if args.last_check else None
    num_q = min(args.last_queries, SIZES["last"][0])
    return {"shape": [num_q, SIZES["last"][1]], "dim": args.dim, "runs": runs, "check": check}


# -- main -------------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--repeats", type=int, default=3, help="repetitions for ltcc/prcc (median reported)")
    p.add_argument("--torchreid-repeats", type=int, default=1, help="how many of them include torchreid")
    p.add_argument("--last-queries", type=int, default=SIZES["last"][0], help="LaST queries (default: all)")
    p.add_argument("--last-repeats", type=int, default=1)
    p.add_argument("--last-check", type=int, default=256, help="LaST queries checked against CAL-style (0: off)")
    p.add_argument("--dim", type=int, default=256, help="LaST feature dimension")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/eval_rank.json)")
    p.add_argument("--last-worker", choices=["dlcr", "argsort", "distances"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.last_worker:
        print(json.dumps(last_worker(args.last_worker, args.last_queries, args.dim)))
        return None
    rank, rank_source = load_torchreid_rank()
    result: dict = {
        "config": {
            "repeats": args.repeats,
            "torchreid_repeats": args.torchreid_repeats,
            "max_rank": MAX_RANK,
            "memory_budget_bytes": MEMORY_BUDGET,
            "torch_threads": torch.get_num_threads(),
            "torchreid_rank": rank_source,
            "torchreid_cython": bool(rank is not None and rank.IS_CYTHON_AVAI),
            "torchreid_version": _torchreid_version(),
        },
        "load_average_before": os.getloadavg(),  # a shared machine: other jobs slow both sides alike
        "matrices": {},
    }
    for name in args.sizes:
        if name != "last":
            result["matrices"][name] = bench_matrix(name, args.repeats, args.torchreid_repeats, rank)
    if "last" in args.sizes:
        result["last"] = bench_last(args)
    result["load_average_after"] = os.getloadavg()
    result["summary"] = summarise(result)
    path = write_result("eval_rank", result, args.json)
    print(report(result))
    print(f"\nresult: {path}")
    return result


def _torchreid_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torchreid")
    except metadata.PackageNotFoundError:
        return None


def summarise(result: dict) -> dict:
    s: dict = {"goal_ratio": GOAL_RATIO}
    for name, r in result["matrices"].items():
        sec = {m: median(v) for m, v in r["seconds"].items() if v}
        entry = {f"{m}_s": v for m, v in sec.items()}
        entry["dlcr_over_argsort"] = sec["dlcr"] / sec["argsort"]
        entry["dlcr_cc_over_argsort"] = sec["dlcr_cc"] / sec["argsort"]
        entry["cal_over_dlcr"] = sec["cal"] / sec["dlcr"]
        entry["cal_cc_over_dlcr_cc"] = sec["cal_cc"] / sec["dlcr_cc"]
        if "torchreid" in sec:
            entry["torchreid_over_dlcr"] = sec["torchreid"] / sec["dlcr"]
        entry["goal_met"] = entry["dlcr_over_argsort"] <= GOAL_RATIO
        s[name] = entry
    if "last" in result:
        runs = result["last"]["runs"]
        sec = {m: median([r["seconds"] for r in v]) for m, v in runs.items()}
        peak = {m: max(r["peak_rss_beyond_features"] for r in v) for m, v in runs.items()}
        s["last"] = {
            **{f"{m}_s": v for m, v in sec.items()},
            **{f"{m}_peak_rss_gib": v / 2**30 for m, v in peak.items()},
            "dlcr_over_argsort": sec["dlcr"] / sec["argsort"],
            "ranking_only_dlcr_over_argsort": (sec["dlcr"] - sec["distances"]) / (sec["argsort"] - sec["distances"]),
            "goal_met": sec["dlcr"] / sec["argsort"] <= GOAL_RATIO,
        }
    return s


def report(result: dict) -> str:
    s, lines = result["summary"], []
    rows = []
    for name, r in result["matrices"].items():
        e, shape = s[name], "x".join(f"{n:,}" for n in r["shape"])
        for m in ("dlcr", "dlcr_cc", "argsort", "cal", "cal_cc", "torchreid"):
            if f"{m}_s" in e:
                v = r["seconds"][m]
                rows.append([f"{name} {shape}", m, e[f"{m}_s"], f"{min(v):.3f}..{max(v):.3f}", len(v)])
    if rows:
        lines += [table(["size", "method", "median s", "min..max", "reps"], rows), ""]
        for name in result["matrices"]:
            e = s[name]
            tr = f", torchreid/dlcr {e['torchreid_over_dlcr']:.0f}x" if "torchreid_over_dlcr" in e else ""
            lines.append(
                f"{name}: dlcr/argsort {e['dlcr_over_argsort']:.2f}x (cc {e['dlcr_cc_over_argsort']:.2f}x; goal <= "
                f"{GOAL_RATIO}x: {'met' if e['goal_met'] else 'NOT met'}), cal/dlcr {e['cal_over_dlcr']:.0f}x, "
                f"cal_cc/dlcr_cc {e['cal_cc_over_dlcr_cc']:.0f}x{tr}; metrics identical"
            )
    if "last" in result:
        e, last = s["last"], result["last"]
        shape = "x".join(f"{n:,}" for n in last["shape"])
        rows = [
            [m, e[f"{m}_s"], f"{e[f'{m}_peak_rss_gib']:.2f}"] for m in ("dlcr", "argsort", "distances")
        ]  # fmt: skip
        lines += ["", f"last {shape}, features dim {last['dim']}:", table(["method", "s", "peak RSS GiB"], rows)]
        lines.append(
            f"last: dlcr/argsort {e['dlcr_over_argsort']:.2f}x (ranking only, distances subtracted: "
            f"{e['ranking_only_dlcr_over_argsort']:.2f}x); goal: {'met' if e['goal_met'] else 'NOT met'}"
        )
        if last["check"]:
            lines.append(f"last check on {last['check']['queries']} queries vs CAL-style (stable): identical")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

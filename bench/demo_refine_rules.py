"""Test-time refinement rules on the trained models of a `dlcr-data experiment demo --seeds N` run: DLCR's released
rule against the identity-level rule (`--refine-rule identity`), each seed's final checkpoint of one generator's
row scored on the general, clothes-changing (CC) and same-clothes (SC) protocols, plain and refined.

Nothing is trained: the experiment's checkpoints and its build's query variants are reused. Results:
bench/results/demo_refine_rules.json and docs/demo-experiment.md.

    .venv/bin/dlcr-data experiment demo --seeds 3 --out out/demo3
    .venv/bin/python bench/demo_refine_rules.py --experiment out/demo3 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _common import table, write_result

PROTOCOLS = ("general", "cc", "sc")


def score(experiment: Path, generator: str, seed: int, rule: str, refine: int) -> dict:
    from dlcr_data.experiment import _generator_build, _slug
    from dlcr_data.reid.checkpoints import latest_checkpoint
    from dlcr_data.reid.evaluate import evaluate_checkpoint

    run = experiment / "experiment" / _slug(f"dlcr {generator}") / f"seed-{seed}"
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"error: no checkpoint in {run}: run `dlcr-data experiment demo --out {experiment}` first")
    build = _generator_build(experiment, generator)
    out = run / "eval-refine-rules" / rule
    return evaluate_checkpoint(
        checkpoint, "demo", refine=refine, expanded=str(build), refine_rule=rule, protocols=PROTOCOLS, out=out
    )


def summarise(per_seed: list[dict]) -> dict:
    """{"protocols.cc.rank1": {mean, std, per_seed}, ..., "refined.cc.queries": n} (figures in percent)."""
    out: dict = {}
    for kind in ("protocols", "refined"):
        for p in PROTOCOLS:
            for key in ("rank1", "mAP"):
                values = [round(r[kind][p][key], 2) for r in per_seed]
                stats = {"mean": round(statistics.fmean(values), 2), "std": round(statistics.pstdev(values), 2)}
                out[f"{kind}.{p}.{key}"] = stats | {"per_seed": values}
            out[f"{kind}.{p}.queries"] = per_seed[0][kind][p]["num_valid"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=Path("out/demo3"), help="an experiment's --out folder")
    parser.add_argument("--generator", default="recolor", help="whose DLCR row to refine")
    parser.add_argument("--seeds", default="1,2,3", help="training seeds, comma-separated")
    parser.add_argument("--rules", default="dlcr,identity", help="refinement rules, comma-separated")
    parser.add_argument("--refine", type=int, default=4, help="query variants per query (the experiment's K)")
    parser.add_argument("--name", default="demo_refine_rules", help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rules = {
        rule: summarise([score(args.experiment, args.generator, s, rule, args.refine) for s in seeds])
        for rule in args.rules.split(",")
    }
    rows = []
    for rule, r in rules.items():
        for kind in ("protocols", "refined"):
            cells = ["{mean} ± {std}".format(**r[f"{kind}.{p}.rank1"]) for p in PROTOCOLS]
            rows.append([rule, "refined" if kind == "refined" else "plain", *cells, r[f"{kind}.cc.mAP"]["mean"]])
    print(table(["rule", "scores", "general r1", "CC r1", "SC r1", "CC mAP"], rows))
    write_result(args.name, {"generator": args.generator, "seeds": seeds, "refine": args.refine, "rules": rules})


if __name__ == "__main__":
    main()

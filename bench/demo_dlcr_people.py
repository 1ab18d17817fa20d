"""Does the DLCR gain hold on other people? `run_experiment` (originals vs +DLCR, one generator, refined rows) on
the design demo (`demo_ablation.BASE_DEMO`: the default config with seed-1 people) instead of the default demo,
optionally with other DemoConfig values (`--demo`), e.g. the shared wardrobe and distinct traits of the ablation.

    .venv/bin/python bench/demo_dlcr_people.py --workdir /tmp/dlcr-people --seeds 3
    .venv/bin/python bench/demo_dlcr_people.py --demo '{"traits": "distinct", "wardrobe": 24}' \\
        --name demo_dlcr_people_wardrobe

Results: bench/results/demo_dlcr_people*.json and docs/demo-experiment.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _common import table, write_result
from demo_ablation import BASE_DEMO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dlcr-people"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--generator", default="recolor")
    parser.add_argument("--demo", type=json.loads, default={}, help="DemoConfig values over the design demo (JSON)")
    parser.add_argument("--name", default="demo_dlcr_people", help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dlcr_data.demo import DemoConfig, render_demo
    from dlcr_data.demo.render import default_demo_root
    from dlcr_data.experiment import ExperimentConfig, run_experiment

    demo = DemoConfig(**{**BASE_DEMO, **args.demo})
    root = render_demo(default_demo_root(demo), demo)
    config = ExperimentConfig(
        out=args.workdir, root=str(root), seeds=args.seeds, generators=(args.generator,), jobs=args.jobs, curve_every=0
    )
    result = run_experiment(config)
    print(
        table(
            ["run", "general r1", "general mAP", "CC r1", "CC mAP", "CC queries"],
            [
                [
                    r["name"],
                    *(f"{r[p][k]:.1f} ± {r[p][k + '_std']:.1f}" for p in ("general", "cc") for k in ("rank1", "mAP")),
                    r["cc"]["queries"],
                ]
                for r in result["rows"]
            ],
        )
    )
    write_result(args.name, {"demo": demo.to_dict(), "seeds": result["seeds"], "rows": result["rows"]})


if __name__ == "__main__":
    main()

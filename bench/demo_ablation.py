"""What makes the demo a clothes-changing benchmark: one factor at a time against a base demo, originals only.

Each row renders a demo config (cached per config), trains the demo recipe on its originals with one torch thread
per run and evaluates the general and clothes-changing (CC) protocols on its test identities. Rows differ from
`base` in one factor (identities, images per outfit, outfits per person, garment change, training image size,
epochs, clothes palette); `old demo` is the demo before issue 15 (48 identities, 8 images per camera, 1-3 outfits
drawn freely, every colour alike).
Runs are independent, so `--jobs 2` runs two at once on 2 cores. Results: bench/results/demo_ablation.json and
docs/demo-experiment.md.

    .venv/bin/python bench/demo_ablation.py --workdir /tmp/demo-ablation --seeds 1,2 --jobs 2
    .venv/bin/python bench/demo_ablation.py --workdir /tmp/demo-ablation --only "base,old demo" --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import table, write_result


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


# The demo these rows change: seed 1, i.e. other people than the default demo's (seed 0), with the defaults the rows
# were first measured against (subtle traits, no shared wardrobe); the default since then, distinct traits and a
# wardrobe of 16, is the row "distinct traits + wardrobe 16". Design choices were measured here, so the default
# demo's test identities scored no design decision.
BASE_DEMO = {"seed": 1, "traits": "subtle", "wardrobe": 0}
OLD_DEMO = {"num_ids": 48, "images_per_camera": 8, "min_outfits": 1, "max_outfits": 3, "garment_change": "any"}
# name -> (DemoConfig values, training overrides) that differ from the base demo and the demo recipe
ROWS: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "old demo": ({**OLD_DEMO, "palette": "uniform"}, {}),
    "48 identities": ({"num_ids": 48}, {}),
    "160 identities": ({"num_ids": 160}, {}),
    "2 images per camera": ({"images_per_camera": 2}, {}),
    "8 images per camera": ({"images_per_camera": 8}, {}),
    "1-3 outfits": ({"min_outfits": 1, "max_outfits": 3}, {}),
    "3-4 outfits": ({"min_outfits": 3, "max_outfits": 4}, {}),
    "colour-only changes": ({"garment_change": "colour"}, {}),
    "any garment change": ({"garment_change": "any"}, {}),
    "uniform palette": ({"palette": "uniform"}, {}),
    "distinct traits": ({"traits": "distinct"}, {}),
    "wardrobe 24": ({"wardrobe": 24}, {}),
    "wardrobe 60": ({"wardrobe": 60}, {}),
    "distinct traits + wardrobe 24": ({"traits": "distinct", "wardrobe": 24}, {}),
    "distinct traits + wardrobe 12": ({"traits": "distinct", "wardrobe": 12}, {}),
    "distinct traits + wardrobe 16": ({"traits": "distinct", "wardrobe": 16}, {}),
    "distinct traits + wardrobe 8": ({"traits": "distinct", "wardrobe": 8}, {}),
    "distinct traits + wardrobe 20": ({"traits": "distinct", "wardrobe": 20}, {}),
    "128x64 training images": ({}, {"image_size": (128, 64)}),
    "15 epochs": ({}, {"epochs": 15}),
    "60 epochs": ({}, {"epochs": 60}),
}


def run_row(name: str, seed: int, workdir: str, demo_all: dict, train_all: dict) -> dict:
    import torch

    torch.set_num_threads(1)  # two runs share 2 cores; one thread also makes a run independent of the core count
    from dlcr_data.demo import DemoConfig, render_demo
    from dlcr_data.demo.render import default_demo_root
    from dlcr_data.reid.evaluate import evaluate_checkpoint
    from dlcr_data.reid.recipes import resolve
    from dlcr_data.reid.train import train

    demo, overrides = ROWS[name]
    config = DemoConfig(**{**BASE_DEMO, **demo_all, **demo})
    root = render_demo(default_demo_root(config), config)
    tag = json.dumps([demo_all, train_all], sort_keys=True)
    out = Path(workdir) / name.replace(" ", "-") / f"{hash_text(tag)}-seed-{seed}"
    started = time.perf_counter()
    checkpoint = train(resolve("demo", None, root=str(root), out=str(out), seed=seed, **{**train_all, **overrides}))
    trained = time.perf_counter() - started
    metrics = evaluate_checkpoint(checkpoint, "demo", root, protocols=("general", "cc"), out=out / "eval")
    result = {"name": name, "seed": seed, "train_s": round(trained, 1)}
    for protocol, m in metrics["protocols"].items():
        result[protocol] = {"rank1": m["rank1"], "mAP": m["mAP"], "queries": m["num_valid"]}
    result["train_images"] = sum(1 for _ in (Path(root) / "train").iterdir())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/demo-ablation"))
    parser.add_argument("--seeds", default="1,2", help="training seeds, comma-separated")
    parser.add_argument("--only", default="", help="rows to run, comma-separated (default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--demo", type=json.loads, default={}, help="DemoConfig values for every row (JSON)")
    parser.add_argument("--train", type=json.loads, default={}, help="training values for every row (JSON)")
    parser.add_argument("--name", default="demo_ablation", help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ROWS)
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = [(name, seed) for name in names for seed in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        n = len(jobs)
        runs = list(
            pool.map(run_row, *zip(*jobs, strict=True), [str(args.workdir)] * n, [args.demo] * n, [args.train] * n)
        )
    rows = []
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        row = {"name": name, "demo": ROWS[name][0], "train": ROWS[name][1], "seeds": seeds, "runs": mine}
        for protocol in ("general", "cc"):
            for key in ("rank1", "mAP"):
                values = [r[protocol][key] for r in mine]
                row[f"{protocol}_{key}"] = [round(statistics.fmean(values), 1), round(statistics.pstdev(values), 1)]
            row[f"{protocol}_queries"] = mine[0][protocol]["queries"]
        rows.append(row)
    print(
        table(
            ["row", "train images", "general r1", "CC r1", "CC mAP", "CC queries", "train s"],
            [
                [
                    r["name"],
                    r["runs"][0]["train_images"],
                    "{} ± {}".format(*r["general_rank1"]),
                    "{} ± {}".format(*r["cc_rank1"]),
                    "{} ± {}".format(*r["cc_mAP"]),
                    r["cc_queries"],
                    round(statistics.fmean(x["train_s"] for x in r["runs"])),
                ]
                for r in rows
            ],
        )
    )
    write_result(args.name, {"base_demo": {**BASE_DEMO, **args.demo}, "train": args.train, "rows": rows})


if __name__ == "__main__":
    main()

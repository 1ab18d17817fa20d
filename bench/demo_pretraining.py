"""Does the demo's ReID training keep the persistent-trait features a backbone is given? (issue 15, baseline goal)

The demo's baseline trains a small ResNet from scratch and stays near chance on clothes-changing (CC) queries. Real
baselines start from a pretrained backbone. This bench gives the demo recipe a backbone pretrained on *other*
people (a demo population rendered with another seed, never the evaluated one) to predict the renderer's ground
truth, and scores it on the design demo (`demo_ablation.BASE_DEMO`) before and after the demo recipe's training:

1. Render the pretraining population (`PRETRAIN_DEMO`) and read each image's attributes from the demo plan:
   `traits` = skin tone, hair colour and hair style (classes), six body proportions and the skin and hair RGB
   (regression, so the within-class shades count too); `all` = those
   plus the outfit (top type and colour, pattern, bottom type and colour, shoe colour). `none` = random init.
2. Pretrain the demo recipe's scratch ResNet (`resnet-small`) on them: pooled feature -> one linear head per
   attribute, Adam 1e-3, random flips, `--pretrain-epochs` epochs, one fixed seed; saved with `save_pretrained`.
3. Zero-shot: the backbone as pretrained (last stride 2, average pooling: the feature its heads read) under an
   untrained ReID head (the BN-neck only scales it per channel), scored on the design demo's general and CC
   protocols.
4. Trained: the demo recipe (`resolve("demo")`) with that backbone loaded through `from_pretrained` instead of the
   scratch preset, one torch thread per run, seeds `--seeds`; scored the same way.

    .venv/bin/python bench/demo_pretraining.py --workdir /tmp/demo-pretraining --seeds 1,2 --jobs 2
    .venv/bin/python bench/demo_pretraining.py --demo '{"traits": "distinct"}' --name demo_pretraining_distinct
    .venv/bin/python bench/demo_pretraining.py --demo '{"traits": "distinct"}' --only traits --train '{"lr": 3.5e-4}' \\
        --name demo_pretraining_distinct_cal_lr

A rerun in the same `--workdir` reuses the backbones of the same `--demo` and the runs of the same `--train`.
Results: bench/results/demo_pretraining*.json and docs/demo-experiment.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import table, write_result
from demo_ablation import BASE_DEMO, hash_text

PRETRAIN_DEMO = {"seed": 100, "num_ids": 160, "images_per_camera": 2}  # other people than the design demo's
ATTRIBUTES = ("none", "traits", "all")
BODY = ("height", "head", "legs", "shoulders", "hips", "limb")


def _labels(plan, shot) -> tuple[list[int], list[float]]:
    """Class targets (traits first, then the outfit's) and regression targets (body, skin and hair RGB) of one shot."""
    from dlcr_data.demo import identity as ident

    def nearest(colour, table) -> int:
        return min(range(len(table)), key=lambda i: sum((a - b) ** 2 for a, b in zip(colour, table[i], strict=True)))

    person, outfit, colours = plan.people[shot.pid], plan.outfit(shot), list(ident.PALETTE)
    t = person.traits
    hair = ident.HAIR_COLOURS + (ident.MORE_HAIR_COLOURS if plan.config.traits == "distinct" else ())
    classes = [nearest(t.skin, ident.SKIN_TONES), nearest(t.hair_colour, hair), ident.HAIR_STYLES.index(t.hair_style)]
    classes += [
        list(ident.TOPS).index(outfit.top),
        colours.index(outfit.top_colour),
        ident.PATTERNS.index(outfit.pattern),
        ident.BOTTOMS.index(outfit.bottom),
        colours.index(outfit.bottom_colour),
        ident.SHOE_COLOURS.index(outfit.shoes),
    ]
    return classes, [getattr(t, k) for k in BODY] + [*t.skin, *t.hair_colour]


def pretrain(attributes: str, demo: dict, epochs: int, out: Path) -> Path:
    """The pretrained backbone folder (a random-init one for `none`); kept from an earlier run of the same workdir."""
    folder = out / f"backbone-{attributes}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, ResNetConfig

    from dlcr_data.demo import DemoConfig, Plan, render_demo
    from dlcr_data.demo.render import default_demo_root
    from dlcr_data.reid.augment import normalize
    from dlcr_data.reid.data import load_uint8
    from dlcr_data.reid.model import SCRATCH_PRESETS

    torch.manual_seed(0)
    net = AutoModel.from_config(ResNetConfig(layer_type="basic", **SCRATCH_PRESETS["resnet-small"]))
    if attributes != "none":
        config = DemoConfig(**{**demo, **PRETRAIN_DEMO})
        root, plan = render_demo(default_demo_root(config), config), Plan(config)
        images = torch.stack([load_uint8(Path(root, s.folder, s.name), (64, 32)) for s in plan.shots])
        targets = [_labels(plan, s) for s in plan.shots]
        classes = torch.tensor([c for c, _ in targets])[:, : 3 if attributes == "traits" else None]
        body = torch.tensor([b for _, b in targets])
        body = (body - body.mean(0)) / body.std(0)
        width = net.config.hidden_sizes[-1]
        heads = torch.nn.ModuleList(
            [torch.nn.Linear(width, int(classes[:, j].max()) + 1) for j in range(classes.shape[1])]
            + [torch.nn.Linear(width, body.shape[1])]
        )
        opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=1e-3, weight_decay=5e-4)
        gen = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            for batch in torch.randperm(len(images), generator=gen).split(64):
                x = images[batch]
                flip = torch.rand(len(batch), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                f = net(pixel_values=normalize(x)).pooler_output.flatten(1)
                loss = F.mse_loss(heads[-1](f), body[batch])
                loss = loss + sum(F.cross_entropy(h(f), classes[batch, j]) for j, h in enumerate(heads[:-1]))
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.save_pretrained(folder)
    return folder


def _scores(metrics: dict) -> dict:
    return {p: {"rank1": m["rank1"], "mAP": m["mAP"], "queries": m["num_valid"]} for p, m in metrics.items()}


def zero_shot(backbone: Path, demo: dict) -> dict:
    from dlcr_data import loaders
    from dlcr_data.demo import DemoConfig, render_demo
    from dlcr_data.demo.render import default_demo_root
    from dlcr_data.reid.evaluate import dataset_features, summarise
    from dlcr_data.reid.model import ReIDConfig, ReIDModel
    from dlcr_data.reid.protocols import evaluate_dataset, protocols_for

    config = DemoConfig(**{**BASE_DEMO, **demo})
    loaded = loaders.load("demo", render_demo(default_demo_root(config), config))
    # the backbone as pretrained: average pooling (what its heads read) and the last stage's stride kept
    head = ReIDConfig(backbone=str(backbone), num_classes=1, image_size=(64, 32), pooling="avg", last_stride_1=False)
    model = ReIDModel(head).eval()
    chosen = protocols_for("demo", ("general", "cc"))
    feats = dataset_features(model, [*loaded["query"], *loaded["gallery"]], loaded.root, 128)
    return _scores(
        {k: summarise(m) for k, m in evaluate_dataset("demo", loaded.splits, feats, protocols=chosen).items()}
    )


def trained(backbone: Path, demo: dict, seed: int, out: Path, overrides: dict) -> dict:
    import torch

    torch.set_num_threads(1)  # two runs share 2 cores; one thread also makes a run independent of the core count
    from dlcr_data.demo import DemoConfig, render_demo
    from dlcr_data.demo.render import default_demo_root
    from dlcr_data.reid.evaluate import evaluate_checkpoint
    from dlcr_data.reid.recipes import resolve
    from dlcr_data.reid.train import train

    config = DemoConfig(**{**BASE_DEMO, **demo})
    root = render_demo(default_demo_root(config), config)
    run = out / f"{backbone.name}-seed-{seed}"
    if (run / "eval" / "metrics.json").is_file():  # scored by an earlier run of the same workdir
        return _scores(json.loads((run / "eval" / "metrics.json").read_text())["protocols"])
    recipe = resolve("demo", None, root=str(root), out=str(run), seed=seed, overwrite=True, **overrides)
    checkpoint = train(dataclasses.replace(recipe, scratch=None, backbone=str(backbone)))
    metrics = evaluate_checkpoint(checkpoint, "demo", root, protocols=("general", "cc"), out=run / "eval")
    return _scores(metrics["protocols"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/demo-pretraining"))
    parser.add_argument("--seeds", default="1,2", help="training seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--demo", type=json.loads, default={}, help="DemoConfig values for both populations (JSON)")
    parser.add_argument("--train", type=json.loads, default={}, help="training values over the demo recipe (JSON)")
    parser.add_argument("--only", default=",".join(ATTRIBUTES), help="pretrainings to run, comma-separated")
    parser.add_argument("--name", default="demo_pretraining", help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # backbones are kept per (demo, pretraining epochs), scored runs per training values too
    work = args.workdir / hash_text(json.dumps([args.demo, args.pretrain_epochs], sort_keys=True))
    runs_dir = work / hash_text(json.dumps(args.train, sort_keys=True))
    runs_dir.mkdir(parents=True, exist_ok=True)
    chosen = [a for a in args.only.split(",") if a]
    if set(chosen) - set(ATTRIBUTES):
        parser.error(f"--only: choose from {', '.join(ATTRIBUTES)}")
    backbones = {a: pretrain(a, args.demo, args.pretrain_epochs, work) for a in chosen}
    shots = {a: zero_shot(b, args.demo) for a, b in backbones.items()}
    jobs = [(a, s) for a in chosen for s in seeds]
    tasks = [(backbones[a], args.demo, s, runs_dir, args.train) for a, s in jobs]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = dict(zip(jobs, pool.map(trained, *zip(*tasks, strict=True)), strict=True))
    rows = []
    for a in chosen:
        mine = [runs[a, s] for s in seeds]
        row = {"pretraining": a, "zero_shot": shots[a], "trained": mine}
        for p in ("general", "cc"):
            values = [r[p]["rank1"] for r in mine]
            row[f"{p}_rank1"] = [round(statistics.fmean(values), 1), round(statistics.pstdev(values), 1)]
        rows.append(row)
    print(
        table(
            ["pretraining", "zero-shot general r1", "zero-shot CC r1", "trained general r1", "trained CC r1"],
            [
                [
                    r["pretraining"],
                    round(r["zero_shot"]["general"]["rank1"], 1),
                    round(r["zero_shot"]["cc"]["rank1"], 1),
                    "{} ± {}".format(*r["general_rank1"]),
                    "{} ± {}".format(*r["cc_rank1"]),
                ]
                for r in rows
            ],
        )
    )
    demo = {**BASE_DEMO, **args.demo}
    pretrain_demo = {**args.demo, **PRETRAIN_DEMO}
    result = {"demo": demo, "pretrain_demo": pretrain_demo, "train": args.train, "seeds": seeds, "rows": rows}
    write_result(args.name, result)


if __name__ == "__main__":
    main()

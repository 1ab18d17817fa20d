"""`dlcr-data experiment demo`: does DLCR help? The same model and budget trained (a) on originals only and (b)
with DLCR pairing + progressive learning, evaluated on the demo's general and clothes-changing protocols, plus
(b) with test-time refinement. Writes `experiment.json` and prints the table.

`--all` adds one run per feature of the related methods, each changing one thing against (b) with the same budget: the
generators (clone: ClonedPerson outfit cloning; swap: DG-Net appearance swap), ClonedPerson's similarity-diversity
sampler, DG-Net's teacher soft labels + fine-grained head, and CLIP3DReID's identity gate (the originals model of
(a) is the frozen teacher and the gate model, as both methods use a model trained on real images; a second gate
row uses the DLCR model of (b) instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from dlcr_data.build import BuildOptions, build
from dlcr_data.errors import UserError
from dlcr_data.files import write_json_atomic
from dlcr_data.reid.config import TrainConfig

PROTOCOLS = ("general", "cc")


RECIPES = ("demo",)  # datasets this recipe (image size, epochs, lr, from-scratch net) was made for


@dataclass(frozen=True)
class ExperimentConfig:
    """The demo recipe: a small from-scratch ResNet at the demo's 128x64, DLCR's schedule scaled to `epochs`."""

    dataset: str = "demo"  # one of RECIPES
    out: Path = Path("out/demo")  # the build (reused when it is already there) and `experiment/`
    root: str | None = None
    variants: int = 10
    epochs: int = 30  # 12 underfits a from-scratch net (train accuracy ~0.3); 30 is ~1.2 + ~2.5 min on 2 cores
    lr: float = 1e-3  # CAL's 3.5e-4 is tuned for an ImageNet-pretrained ResNet-50; from scratch it learns too slowly
    scratch: str = "resnet-small"
    batch_p: int = 8
    batch_k: int = 4
    refine: int = 4  # DLCR's test-time refinement used 4 variant sets
    seed: int = 1
    all: bool = False  # also the related methods' rows (clone, swap, similarity-diversity, teacher + FG head, gate)


@dataclass(frozen=True)
class ExperimentRun:
    """One row: a name, its training config and the build it pairs with (its query variants refine it)."""

    name: str
    train: TrainConfig
    build: Path | None = None


def run_experiment(config: ExperimentConfig, reporter=None) -> dict:
    if config.dataset not in RECIPES:
        recipes = ", ".join(RECIPES)
        raise UserError(f"`experiment` has a recipe for {recipes} only, not {config.dataset!r}; use train and evaluate")
    from dlcr_data.reid.evaluate import evaluate_checkpoint  # torch: imported when an experiment runs, not for --help
    from dlcr_data.reid.train import train

    out = Path(config.out)
    _build(config, out, reporter)
    base = TrainConfig(
        dataset=config.dataset,
        root=config.root,
        scratch=config.scratch,
        image_size=(128, 64),
        epochs=config.epochs,
        lr=config.lr,
        schedule_epochs=60,  # DLCR's 60-epoch schedule (milestones, progressive thresholds) scaled to this run
        batch_p=config.batch_p,
        batch_k=config.batch_k,
        seed=config.seed,
        out=str(out / "experiment" / "originals"),
    )
    runs = [ExperimentRun("originals", base), ExperimentRun("dlcr", _paired(base, out, "dlcr"), out)]
    checkpoints = {}
    for run in runs:
        checkpoints[run.name] = train(run.train, reporter)
    if config.all:
        teacher = checkpoints["originals"]  # trained on real images only: DG-Net's teacher, CLIP3DReID's gate
        builds = {
            "clone": {"generator": "clone"},
            "swap": {"generator": "swap"},
            "similarity-diversity": {"sampler": "similarity-diversity"},
            "identity gate": {"identity_gate": str(teacher)},
            # the gate is only as clothes-blind as its model: the same gate with the DLCR model of (b)
            "identity gate, DLCR model": {"identity_gate": str(checkpoints["dlcr"])},
        }
        for name, options in builds.items():
            folder = _build(config, out / "experiment" / "builds" / _slug(name), reporter, **options)
            runs.append(ExperimentRun(f"dlcr, {name}", _paired(base, folder, name), folder))
        teacher_run = replace(
            _paired(base, out, "teacher + fine-grained head"),
            gen_label="teacher",
            teacher=str(teacher),
            fine_grained_head=True,
        )
        runs.append(ExperimentRun("dlcr, teacher labels + fine-grained head", teacher_run, out))
        for run in runs[2:]:
            checkpoints[run.name] = train(run.train, reporter)
    rows = []
    for run in runs:
        result = evaluate_checkpoint(
            checkpoints[run.name],
            config.dataset,
            config.root,
            refine=config.refine if run.build is not None else 0,
            expanded=str(run.build or out),
            protocols=PROTOCOLS,
            out=Path(run.train.out) / "eval",
        )
        rows.append(_row(run.name, result["protocols"]))
        if "refined" in result:
            rows.append(_row(f"{run.name} + refine (K={config.refine})", result["refined"]))
    experiment = {
        "rows": rows,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items()},
    }
    write_json_atomic(out / "experiment.json", experiment)
    return experiment


def _build(config: ExperimentConfig, out: Path, reporter, **options) -> Path:
    opts = BuildOptions(
        config.dataset, out, root=config.root, variants=config.variants, splits=("train", "query"), **options
    )
    build(opts, reporter)
    return out


def _paired(base: TrainConfig, build: Path, name: str) -> TrainConfig:
    return replace(base, expanded=str(build), out=str(Path(base.out).parent / _slug(name)))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _row(name: str, protocols: dict) -> dict:
    return {"name": name, **{p: {"rank1": protocols[p]["rank1"], "mAP": protocols[p]["mAP"]} for p in PROTOCOLS}}

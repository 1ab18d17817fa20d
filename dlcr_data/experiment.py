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
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlcr_data.build import BuildOptions, build
from dlcr_data.errors import UserError
from dlcr_data.files import write_json_atomic
from dlcr_data.reid.config import TrainConfig

PROTOCOLS = ("general", "cc")


DATASETS = ("demo",)  # datasets whose recipe (reid.recipes) trains in minutes on a CPU


@dataclass(frozen=True)
class ExperimentConfig:
    """Every run trains with the dataset's recipe (`reid.recipes`; the demo's: a small from-scratch ResNet at
    128x64, CAL's and DLCR's 60-epoch schedule scaled to 30 epochs); `train` overrides any of its values."""

    dataset: str = "demo"  # one of DATASETS
    out: Path = Path("out/demo")  # the build (reused when it is already there) and `experiment/`
    root: str | None = None
    variants: int = 10
    refine: int = 4  # DLCR's test-time refinement used 4 variant sets
    epochs: int | None = None  # None: the recipe's
    seed: int | None = None  # the first training seed; None: the recipe's
    seeds: int = 1  # training seeds per row (seed, seed + 1, ...): rows report mean and std over them
    train: dict = field(default_factory=dict)  # other TrainConfig values for every run (e.g. a tiny net in tests)
    all: bool = False  # also the related methods' rows (clone, swap, similarity-diversity, teacher + FG head, gate)


@dataclass(frozen=True)
class ExperimentRun:
    """One row: a name, its training config and the build it pairs with (its query variants refine it)."""

    name: str
    train: TrainConfig
    build: Path | None = None


def run_experiment(config: ExperimentConfig, reporter=None) -> dict:
    if config.dataset not in DATASETS:
        raise UserError(
            f"`experiment` runs on {', '.join(DATASETS)} only, not {config.dataset!r}; use train and evaluate"
        )
    from dlcr_data.reid.evaluate import evaluate_checkpoint  # torch: imported when an experiment runs, not for --help
    from dlcr_data.reid.train import train

    if config.seeds < 1:
        raise UserError("--seeds must be at least 1")
    out = Path(config.out)
    _build(config, out, reporter)
    runs = [
        ExperimentRun("originals", _train_config(config, None, "originals")),
        ExperimentRun("dlcr", _train_config(config, out, "dlcr"), out),
    ]
    first_seed = runs[0].train.seed
    seeds = list(range(first_seed, first_seed + config.seeds))
    checkpoints: dict[tuple[str, int], Path] = {}

    def train_all(batch: list[ExperimentRun]) -> None:
        for run in batch:
            for seed in seeds:
                checkpoints[run.name, seed] = train(_seeded(run.train, seed), reporter)

    train_all(runs)
    if config.all:
        # trained on real images only (the first seed's): DG-Net's teacher, CLIP3DReID's gate
        teacher = checkpoints["originals", first_seed]
        builds = {
            "clone": {"generator": "clone"},
            "swap": {"generator": "swap"},
            "similarity-diversity": {"sampler": "similarity-diversity"},
            "identity gate": {"identity_gate": str(teacher)},
            # the gate is only as clothes-blind as its model: the same gate with the DLCR model of (b)
            "identity gate, DLCR model": {"identity_gate": str(checkpoints["dlcr", first_seed])},
        }
        extra = []
        for name, options in builds.items():
            folder = _build(config, out / "experiment" / "builds" / _slug(name), reporter, **options)
            extra.append(ExperimentRun(f"dlcr, {name}", _train_config(config, folder, name), folder))
        teacher_run = replace(
            _train_config(config, out, "teacher + fine-grained head"),
            gen_label="teacher",
            teacher=str(teacher),
            fine_grained_head=True,
        )
        extra.append(ExperimentRun("dlcr, teacher labels + fine-grained head", teacher_run, out))
        train_all(extra)
        runs += extra
    rows = []
    for run in runs:
        results = [
            evaluate_checkpoint(
                checkpoints[run.name, seed],
                config.dataset,
                config.root,
                refine=config.refine if run.build is not None else 0,
                expanded=str(run.build or out),
                protocols=PROTOCOLS,
                out=Path(_seeded(run.train, seed).out) / "eval",
            )
            for seed in seeds
        ]
        rows.append(_row(run.name, [r["protocols"] for r in results]))
        if "refined" in results[0]:
            rows.append(_row(f"{run.name} + refine (K={config.refine})", [r["refined"] for r in results]))
    experiment = {
        "rows": rows,
        "epochs": runs[0].train.epochs,
        "seeds": seeds,
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


def _train_config(config: ExperimentConfig, build: Path | None, name: str) -> TrainConfig:
    """The recipe's run (DLCR's stage 2 with `build`), with the experiment's overrides, into experiment/<name>."""
    from dlcr_data.reid.recipes import resolve

    out = Path(config.out) / "experiment" / _slug(name)
    overrides = {"epochs": config.epochs, "seed": config.seed, **config.train}
    return resolve(config.dataset, str(build) if build else None, root=config.root, out=str(out), **overrides)


def _seeded(run: TrainConfig, seed: int) -> TrainConfig:
    return replace(run, seed=seed, out=str(Path(run.out) / f"seed-{seed}"))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _row(name: str, per_seed: list[dict]) -> dict:
    """Mean and std (population, over seeds) of rank-1 and mAP per protocol, the queries each counts, and every
    seed's figures."""
    row: dict = {"name": name}
    for p in PROTOCOLS:
        figures = {key: [r[p][key] for r in per_seed] for key in ("rank1", "mAP")}
        row[p] = {key: statistics.fmean(v) for key, v in figures.items()}
        row[p] |= {f"{key}_std": statistics.pstdev(v) for key, v in figures.items()}
        row[p] |= {"queries": per_seed[0][p]["num_valid"], "per_seed": figures}
    return row

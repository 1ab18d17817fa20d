"""`dlcr-data experiment demo`: does DLCR help? The same model and budget trained (a) on originals only and (b)
with DLCR pairing + progressive learning on each generator's variants, evaluated on the demo's general and
clothes-changing protocols, and (b) again with test-time refinement. Every row is the mean and std over training
seeds. Writes `experiment.json`, prints the table and plots CC rank-1 by epoch (originals vs the first generator).

The generators: recolor (the demo's CPU default), clone (ClonedPerson's outfit cloning), swap (DG-Net's appearance
swap), render (the demo's oracle: the person redrawn in the target outfit, the best any generator can do) inside
DLCR's clothing mask, and render-limbs, whose mask also takes bare arms and legs so garment shape can change.

`--all` adds one run per other feature of the related methods, each changing one thing against (b, recolor) with
the same budget: ClonedPerson's similarity-diversity sampler, DG-Net's teacher soft labels + fine-grained head, and
CLIP3DReID's identity gate (the originals model of (a) is the frozen teacher and the gate model, as both methods use
a model trained on real images; a second gate row uses the DLCR model of (b) instead).

Each run trains with `threads` torch threads (1 by default): a run's result then does not depend on how many cores
the machine has (the CPU kernels' reduction order follows the thread count, docs/demo-experiment.md), and `jobs`
runs share the cores. Test labels only score finished runs; the curve scores checkpoints kept along the way.
"""

from __future__ import annotations

import os
import re
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from dlcr_data.build import BuildOptions, build
from dlcr_data.errors import UserError
from dlcr_data.files import write_bytes_atomic, write_json_atomic
from dlcr_data.reid.config import TrainConfig
from dlcr_data.vocab.garments import DEFAULT_MASK_CLASSES

PROTOCOLS = ("general", "cc")
DATASETS = ("demo",)  # datasets whose recipe (reid.recipes) trains in minutes on a CPU
# generator row -> the build options that differ from the dataset's default build (the demo's: recolor)
GENERATORS: dict[str, dict] = {
    "recolor": {},
    "clone": {"generator": "clone"},
    "swap": {"generator": "swap"},
    "render": {"generator": "render"},
    "render-limbs": {"generator": "render", "mask_classes": (*DEFAULT_MASK_CLASSES, "skin")},
}
CURVE = "cc_rank1_by_epoch.png"


@dataclass(frozen=True)
class ExperimentConfig:
    """Every run trains with the dataset's recipe (`reid.recipes`; the demo's: a small from-scratch ResNet, CAL's
    and DLCR's 60-epoch schedule scaled down); `train` overrides any of its values."""

    dataset: str = "demo"  # one of DATASETS
    out: Path = Path("out/demo")  # the default build (reused when it is already there) and `experiment/`
    root: str | None = None
    variants: int = 10
    refine: int = 4  # DLCR's test-time refinement used 4 variant sets
    epochs: int | None = None  # None: the recipe's
    seed: int | None = None  # the first training seed; None: the recipe's
    seeds: int = 1  # training seeds per row (seed, seed + 1, ...): rows report mean and std over them
    generators: tuple[str, ...] = tuple(GENERATORS)  # one +DLCR row (and its refined row) per generator
    train: dict = field(default_factory=dict)  # other TrainConfig values for every run (e.g. a tiny net in tests)
    all: bool = False  # also the related methods' rows (similarity-diversity, teacher + FG head, gate)
    threads: int = 1  # torch threads per training run
    jobs: int | None = None  # runs at once, each in its own process; None: one per `threads` cores
    curve_every: int = 5  # score every N-th epoch of the originals and first generator runs (0: no curve)


@dataclass(frozen=True)
class ExperimentRun:
    """One row: a name, its training config and the build it pairs with (its query variants refine it)."""

    name: str
    train: TrainConfig
    build: Path | None = None
    curve: bool = False


def run_experiment(config: ExperimentConfig, reporter=None) -> dict:
    _check(config)
    out = Path(config.out)
    _build(config, out, reporter)
    runs = [ExperimentRun("originals", _train_config(config, None, "originals"), curve=True)]
    for i, name in enumerate(config.generators):
        folder = _generator_build(out, name)
        _build(config, folder, reporter, **GENERATORS[name])
        runs.append(ExperimentRun(f"dlcr, {name}", _train_config(config, folder, f"dlcr {name}"), folder, i == 0))
    first_seed = runs[0].train.seed
    seeds = list(range(first_seed, first_seed + config.seeds))
    results = _run_all(config, runs, seeds, reporter)
    if config.all:
        related = _related_runs(config, out, results, first_seed, reporter)
        results |= _run_all(config, related, seeds, reporter)
        runs += related
    rows = []
    for run in runs:
        per_seed = [results[run.name, seed] for seed in seeds]
        rows.append(_row(run.name, [r["protocols"] for r in per_seed]))
        if "refined" in per_seed[0]:
            rows.append(_row(f"{run.name} + refine (K={config.refine})", [r["refined"] for r in per_seed]))
    curves = {run.name: [results[run.name, s]["curve"] for s in seeds] for run in runs if run.curve}
    if config.curve_every and any(curves.values()):
        from dlcr_data.reid.plots import metric_by_epoch

        write_bytes_atomic(out / "experiment" / CURVE, metric_by_epoch(curves, "cc", "rank1"))
    experiment = {
        "rows": rows,
        "curves": curves,
        "epochs": runs[0].train.epochs,
        "seeds": seeds,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items()},
        "machine": _machine(config.threads),
    }
    write_json_atomic(out / "experiment.json", experiment)
    return experiment


def _check(config: ExperimentConfig) -> None:
    if config.dataset not in DATASETS:
        raise UserError(
            f"`experiment` runs on {', '.join(DATASETS)} only, not {config.dataset!r}; use train and evaluate"
        )
    unknown = [g for g in config.generators if g not in GENERATORS]
    if unknown or not config.generators:
        raise UserError(f"--generators: choose one or more of {', '.join(GENERATORS)} (got {', '.join(unknown)})")
    if config.seeds < 1 or config.threads < 1 or (config.jobs is not None and config.jobs < 1):
        raise UserError("--seeds, --threads and --jobs must be at least 1")


def _related_runs(config: ExperimentConfig, out: Path, results: dict, seed: int, reporter) -> list[ExperimentRun]:
    """The related methods' rows against (b) with the first generator; they use (a)'s and (b)'s first-seed models."""
    base_name = config.generators[0]
    base = _generator_build(out, base_name)
    teacher = results["originals", seed]["checkpoint"]  # trained on real images only: DG-Net's teacher, the gate
    builds = {
        "similarity-diversity": {"sampler": "similarity-diversity"},
        "identity gate": {"identity_gate": teacher},
        # the gate is only as clothes-blind as its model: the same gate with the DLCR model of (b)
        "identity gate, DLCR model": {"identity_gate": results[f"dlcr, {base_name}", seed]["checkpoint"]},
    }
    extra = []
    for name, options in builds.items():
        folder = _build(
            config, out / "experiment" / "builds" / _slug(name), reporter, **GENERATORS[base_name], **options
        )
        extra.append(ExperimentRun(f"dlcr, {name}", _train_config(config, folder, name), folder))
    teacher_run = replace(
        _train_config(config, base, "teacher + fine-grained head"),
        gen_label="teacher",
        teacher=teacher,
        fine_grained_head=True,
    )
    return [*extra, ExperimentRun("dlcr, teacher labels + fine-grained head", teacher_run, base)]


def _run_all(config: ExperimentConfig, runs: list[ExperimentRun], seeds: list[int], reporter) -> dict:
    """{(run name, seed): results} of every run and seed, `jobs` processes at a time (in this process for one)."""
    tasks = [(run, seed) for run in runs for seed in seeds]
    jobs = min(len(tasks), config.jobs or max(1, (os.cpu_count() or 1) // config.threads))
    args = [(_seeded(run, seed), config) for run, seed in tasks]
    if jobs == 1:
        done = [_train_and_score(*a) for a in args]
    else:  # spawn: a forked child would inherit the parent's OpenMP state, which can deadlock
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_train_and_score, *zip(*args, strict=True)))
    if reporter is not None:
        reporter.note(f"trained and scored {len(tasks)} runs ({jobs} at a time)")
    return {(run.name, seed): result for (run, seed), result in zip(tasks, done, strict=True)}


def _train_and_score(run: ExperimentRun, config: ExperimentConfig) -> dict:
    """Train one seed of a row with `config.threads` torch threads, then score the final checkpoint (refined too,
    with a build) and, for a curve run, every kept `curve_every`-th epoch."""
    import torch

    from dlcr_data.reid.evaluate import evaluate_checkpoint
    from dlcr_data.reid.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        checkpoint = train(run.train)
        score = {"dataset": config.dataset, "root": config.root, "protocols": PROTOCOLS}
        result = evaluate_checkpoint(
            checkpoint,
            **score,
            refine=config.refine if run.build is not None else 0,
            expanded=str(run.build) if run.build is not None else None,
            out=Path(run.train.out) / "eval",
        )
        curve = []
        for epoch in _curve_epochs(config, run):
            kept = Path(run.train.out) / "checkpoints" / f"epoch-{epoch:04d}"
            scored = evaluate_checkpoint(kept, **score, out=Path(run.train.out) / "eval" / f"epoch-{epoch:04d}")
            curve.append({"epoch": epoch, **{p: _figures(scored["protocols"][p]) for p in PROTOCOLS}})
    finally:
        torch.set_num_threads(threads)
    return {**result, "checkpoint": str(checkpoint), "curve": curve}


def _curve_epochs(config: ExperimentConfig, run: ExperimentRun) -> list[int]:
    if not (run.curve and config.curve_every):
        return []
    epochs = run.train.epochs
    return sorted({*range(config.curve_every, epochs + 1, config.curve_every), epochs})


def _generator_build(out: Path, generator: str) -> Path:
    """Where a generator's build goes: the experiment's own build for the dataset's default generator."""
    return out if not GENERATORS[generator] else out / "experiment" / "builds" / _slug(generator)


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
    run = resolve(config.dataset, str(build) if build else None, root=config.root, out=str(out), **overrides)
    return replace(run, keep_every=config.curve_every)


def _seeded(run: ExperimentRun, seed: int) -> ExperimentRun:
    return replace(run, train=replace(run.train, seed=seed, out=str(Path(run.train.out) / f"seed-{seed}")))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _figures(summary: dict) -> dict:
    return {"rank1": summary["rank1"], "mAP": summary["mAP"]}


def _machine(threads: int) -> dict:
    """What a run's floating-point results depend on besides the seed."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads_per_run": threads,
    }


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

"""`train`, `evaluate` and `experiment`: the re-ID model that measures what a build is worth."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcr_data.build import BuildOptions
from dlcr_data.cli.common import RootOption, console, csv, csv_text, default, pair, pair_text
from dlcr_data.errors import UserError
from dlcr_data.experiment import CURVE, ExperimentConfig
from dlcr_data.reid.config import EvaluateOptions, TrainConfig

# Help panels: the options of each related method together, apart from the plain run's.
MODEL, OPTIM, DGNET, CLIP3D = "Model", "Optimisation", "DG-Net", "CLIP3DReID"


def _default(name: str):
    return default(TrainConfig, name)


RECIPE = "the dataset's recipe"  # the default of every option a recipe sets (`dlcr_data.reid.recipes`)


def _recipe(help_text: str, panel: str = OPTIM, **kw) -> typer.Option:
    return typer.Option(help=f"{help_text} [default: {RECIPE}]", rich_help_panel=panel, show_default=False, **kw)


def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, history, training curve.")],
    root: RootOption = None,
    expanded: Annotated[
        str | None,
        typer.Option(
            help="A build folder or Hub repo: DLCR's stage 2 (pairing + progressive learning) on its variants."
        ),
    ] = _default("expanded"),
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the resolved config and each value's source as JSON; train nothing."),
    ] = False,
    backbone: Annotated[
        str, typer.Option(help="transformers backbone: HF id or local dir.", rich_help_panel=MODEL)
    ] = _default("backbone"),
    scratch: Annotated[
        str | None, _recipe("From-scratch preset instead of --backbone (resnet-tiny, resnet-small).", MODEL)
    ] = None,
    method: Annotated[str | None, _recipe("baseline | cal (clothes-based adversarial loss).", MODEL)] = None,
    image_size: Annotated[str | None, _recipe("Input H x W.", MODEL, metavar="HxW")] = None,
    pooling: Annotated[str | None, _recipe("avg | gem | max | maxavg (max and avg concatenated).", MODEL)] = None,
    seq_len: Annotated[int | None, _recipe("Frames per training clip (1: an image model).", MODEL, min=1)] = None,
    sampling_stride: Annotated[int | None, _recipe("Frames between a clip's frames.", MODEL, min=1)] = None,
    epochs: Annotated[int | None, _recipe("Epochs (a rerun with more epochs continues).", min=1)] = None,
    batch_p: Annotated[int | None, _recipe("Identities per batch.", min=1)] = None,
    batch_k: Annotated[int | None, _recipe("Images per identity (pairing doubles the batch).", min=1)] = None,
    lr: Annotated[float | None, _recipe("Adam learning rate.")] = None,
    weight_decay: Annotated[float | None, _recipe("Adam weight decay.", min=0.0)] = None,
    lr_milestones: Annotated[str | None, _recipe("Epochs at which the lr is multiplied by 0.1, e.g. 20,40.")] = None,
    label_smoothing: Annotated[
        float | None, _recipe("Label smoothing of the identity cross-entropy.", min=0.0, max=1.0)
    ] = None,
    triplet_weight: Annotated[
        float | None, _recipe("Weight of the batch-hard triplet loss (0: none).", min=0.0)
    ] = None,
    triplet_distance: Annotated[
        str | None, _recipe("cosine (CAL: normalised BN feature) | euclidean (feature before BN).")
    ] = None,
    augmentation: Annotated[str | None, _recipe("cal (CAL's crop, flip, erasing) | none.")] = None,
    cal_start_epoch: Annotated[int | None, _recipe("Epoch at which CAL's clothes losses start.", min=0)] = None,
    schedule_epochs: Annotated[
        int | None, _recipe("Scale milestones/CAL start/progressive thresholds written for N epochs.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.", rich_help_panel=OPTIM)] = _default("seed"),
    cache: Annotated[
        str, typer.Option(help="Decoded images in memory: auto (when they fit) | on | off (decode in workers).")
    ] = _default("cache"),
    num_workers: Annotated[
        int | None,
        typer.Option(min=0, help="DataLoader workers decoding images [default: up to 4].", show_default=False),
    ] = _default("num_workers"),
    eval_every: Annotated[
        int, typer.Option(min=0, help="Evaluate on the VALIDATION split every N epochs (PRCC, LaST); 0: never.")
    ] = _default("eval_every"),
    keep_best: Annotated[
        bool,
        typer.Option("--keep-best", help="With --eval-every: also keep the best-on-validation checkpoint (best/)."),
    ] = _default("keep_best"),
    gen_label: Annotated[
        str,
        typer.Option(
            help="Labels of generated images: hard (their source identity's CE) | teacher (DG-Net: KL to a frozen "
            "--teacher's flip-summed softmax, weight 0 until 30% of the steps, then up to 2).",
            rich_help_panel=DGNET,
        ),
    ] = _default("gen_label"),
    teacher: Annotated[
        str | None,
        typer.Option(
            help="--gen-label teacher: a checkpoint trained on this dataset's real images (same labels).",
            rich_help_panel=DGNET,
        ),
    ] = _default("teacher"),
    fine_grained_head: Annotated[
        bool,
        typer.Option(
            "--fine-grained-head",
            help="DG-Net's 2nd head (dropout 0.75) learns the source identity on generated images; the test feature "
            "concatenates both heads. Needs --expanded.",
            rich_help_panel=DGNET,
        ),
    ] = _default("fine_grained_head"),
    fine_grained_weight: Annotated[
        float,
        typer.Option(min=0.0, help="Fine-grained loss weight, times the ramped teacher weight.", rich_help_panel=DGNET),
    ] = _default("fine_grained_weight"),
    distill: Annotated[
        str | None,
        typer.Option(
            help="CLIP3DReID global alignment: a CLIP model (HF id or dir) whose image embedding the student's "
            "projected feature matches (MSE of unit vectors).",
            rich_help_panel=CLIP3D,
        ),
    ] = _default("distill"),
    distill_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the --distill loss.", rich_help_panel=CLIP3D)
    ] = _default("distill_weight"),
    shape_ot: Annotated[
        bool,
        typer.Option(
            "--shape-ot",
            help="CLIP3DReID local alignment: Sinkhorn OT of local features to each image's top-4 body-shape words "
            "(CLIP zero-shot). Needs --distill.",
            rich_help_panel=CLIP3D,
        ),
    ] = _default("shape_ot"),
    shape_ot_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the --shape-ot loss.", rich_help_panel=CLIP3D)
    ] = _default("shape_ot_weight"),
    overwrite: Annotated[bool, typer.Option(help="Start over when the run folder holds another config.")] = _default(
        "overwrite"
    ),
) -> None:
    """Train the reference ReID model with the dataset's recipe (CAL's released configs; `--dry-run` shows it).

    With --expanded, DLCR's stage 2: pairing and progressive learning on a build's variants. Optionally DG-Net's
    teacher labels and fine-grained head, CLIP3DReID's CLIP distillation. `accelerate launch -m dlcr_data train ...`
    for several GPUs."""
    from dlcr_data.reid.recipes import resolve, sources

    params = {k: v for k, v in ctx.params.items() if k not in ("dataset", "expanded", "dry_run")}
    params |= {"out": str(out), "root": str(root) if root else None}
    if image_size is not None:
        params["image_size"] = pair(image_size, "--image-size", "384x192 (H x W)")
    if lr_milestones is not None:
        params["lr_milestones"] = _int_list(lr_milestones, "--lr-milestones")
    config = resolve(dataset, expanded, **params)
    if dry_run:
        typer.echo(
            json.dumps({"config": config.to_dict(), "sources": sources(dataset, expanded is not None)}, indent=2)
        )
        return
    from dlcr_data.progress import RichReporter
    from dlcr_data.reid.train import train as run_train

    with RichReporter(console) as reporter:
        checkpoint = run_train(config, reporter)
    console.print(f"checkpoint: {checkpoint}")
    console.print(f"training curve: {Path(out) / 'training_curve.png'}")


def _int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in csv(value))
    except ValueError:
        raise UserError(f"{option} must be comma-separated integers, e.g. 20,40, not {value!r}") from None


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (model.safetensors + config.json).")],
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    root: RootOption = None,
    refine: Annotated[int, typer.Option(min=0, help="Test-time refinement with K query variants (0: off).")] = default(
        EvaluateOptions, "refine"
    ),
    expanded: Annotated[
        str | None, typer.Option(help="Build folder or Hub repo holding query variants (for --refine).")
    ] = default(EvaluateOptions, "expanded"),
    top_ids: Annotated[
        int, typer.Option(min=1, help="Top gallery entries refinement re-scores: images (dlcr) or identities.")
    ] = default(EvaluateOptions, "top_ids"),
    refine_rule: Annotated[
        str,
        typer.Option(
            "--refine-rule",
            help="dlcr: DLCR's released rule (docs/dlcr-method.md §4) | identity: ours, every entry of a voted "
            "identity rises.",
        ),
    ] = default(EvaluateOptions, "refine_rule"),
    out: Annotated[
        Path | None, typer.Option(help="Where metrics.json and cmc.png go (default CHECKPOINT/eval).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = default(
        EvaluateOptions, "batch_size"
    ),
) -> None:
    """Evaluate a checkpoint on every protocol of a dataset (CAL semantics), with and without refinement."""
    from dlcr_data.reid.evaluate import MissingQueryVariants, evaluate_checkpoint

    out = out or Path(checkpoint) / "eval"
    try:
        with console.status("extracting features and evaluating…"):
            result = evaluate_checkpoint(
                checkpoint,
                dataset,
                root,
                refine=refine,
                expanded=expanded,
                top_ids=top_ids,
                refine_rule=refine_rule,
                batch_size=batch_size,
                out=out,
            )
    except MissingQueryVariants as err:  # evaluate never builds: it says which build would make the variants
        options = BuildOptions.from_dict(err.config, dataset=err.dataset, out=Path(err.expanded))
        raise UserError(f"{err}; build them: {build_command(options)}") from None
    table = Table(title=f"{dataset}: {checkpoint}")
    for col in ("protocol", "rank-1", "rank-5", "rank-10", "mAP", "mINP", "queries"):
        table.add_column(col, justify="left" if col == "protocol" else "right")
    for kind, suffix in (("protocols", ""), ("refined", f" + refine K={refine} {refine_rule}")):
        for name, m in result.get(kind, {}).items():
            table.add_row(
                name + suffix,
                *(f"{m[k]:.1f}" for k in ("rank1", "rank5", "rank10", "mAP", "mINP")),
                str(m["num_valid"]),
            )
    console.print(table)
    console.print(f"metrics: {out / 'metrics.json'}; CMC curve: {out / 'cmc.png'}")


def experiment(
    dataset: Annotated[str, typer.Argument(help="Only `demo` has a ready recipe.")] = default(
        ExperimentConfig, "dataset"
    ),
    out: Annotated[Path, typer.Option(help="Build folder (reused when present) and experiment outputs.")] = default(
        ExperimentConfig, "out"
    ),
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Epochs of every training run [default: the recipe's].", show_default=False),
    ] = default(ExperimentConfig, "epochs"),
    refine: Annotated[int, typer.Option(min=0, help="Query variants for test-time refinement.")] = default(
        ExperimentConfig, "refine"
    ),
    seeds: Annotated[
        int, typer.Option(min=1, help="Training seeds per row; rows show mean ± std over them.")
    ] = default(ExperimentConfig, "seeds"),
    generators: Annotated[
        str,
        typer.Option(help="+DLCR rows, one per generator: recolor, clone, swap, render, render-limbs."),
    ] = csv_text(default(ExperimentConfig, "generators")),
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Also one run per other feature of the related methods: similarity-diversity, teacher, gate.",
        ),
    ] = default(ExperimentConfig, "all"),
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Training runs at once [default: one per --threads cores].", show_default=False),
    ] = default(ExperimentConfig, "jobs"),
    threads: Annotated[
        int, typer.Option(min=1, help="Torch threads per run (results depend on it, not on --jobs).")
    ] = default(ExperimentConfig, "threads"),
    curve_every: Annotated[
        int, typer.Option(min=0, help="Score every N-th epoch for the CC rank-1 curve (0: no curve).")
    ] = default(ExperimentConfig, "curve_every"),
) -> None:
    """The DLCR effect on the demo: originals only vs DLCR pairing + progressive learning with each generator
    (+ refinement), mean ± std over --seeds.

    With --all: also the ClonedPerson sampler, DG-Net's teacher + fine-grained head and CLIP3DReID's gate."""
    from dlcr_data.experiment import run_experiment
    from dlcr_data.progress import RichReporter

    config = ExperimentConfig(
        dataset=dataset,
        out=out,
        epochs=epochs,
        refine=refine,
        seeds=seeds,
        generators=csv(generators),
        all=all_rows,
        jobs=jobs,
        threads=threads,
        curve_every=curve_every,
    )
    with RichReporter(console) as reporter:
        result = run_experiment(config, reporter)
    first = result["rows"][0] if result["rows"] else {}
    queries = ", ".join(f"{p} {first[p]['queries']}" for p in ("general", "cc") if p in first)
    title = f"DLCR on the {dataset} ({result['epochs']} epochs each; rank-1 / mAP in %"
    seeds = result.get("seeds", [])
    over = (
        f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0] if seeds else ''}"
    )
    title += f"; {over}; queries: {queries})"
    table = Table(title=title)
    for col in ("run", "general rank-1", "general mAP", "CC rank-1", "CC mAP"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in result["rows"]:
        cells = [_mean_std(row[p], key) for p in ("general", "cc") for key in ("rank1", "mAP")]
        table.add_row(row["name"], *cells)
    console.print(table)
    console.print(f"results: {Path(out) / 'experiment.json'}")
    if any(result.get("curves", {}).values()):
        console.print(f"CC rank-1 by epoch: {Path(out) / 'experiment' / CURVE}")


def _mean_std(figures: dict, key: str) -> str:
    std = figures.get(f"{key}_std")
    return f"{figures[key]:.1f}" + (f" ± {std:.1f}" if std is not None and len(figures["per_seed"][key]) > 1 else "")


def build_command(options: BuildOptions) -> str:
    """The `dlcr-data build` command line of `options`: every option as `build` reads it, then `--overwrite` (the
    options differ from the recorded ones, and a build made with other options is only replaced on request)."""
    words = ["dlcr-data", "build", options.dataset, "--out", str(options.out)]
    for key, value in options.to_dict().items():
        if key in ("dataset", "out", "overwrite") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif key == "resolution":
            words += [flag, pair_text(value)]
        elif isinstance(value, list):
            words += [flag, csv_text(value)]
        else:
            words += [flag, str(value)]
    return shlex.join([*words, "--overwrite"])

"""`train`, `evaluate` and `experiment`: the re-ID model that measures what a build is worth."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcr_data.build import BuildOptions
from dlcr_data.cli.common import RootOption, console, csv_text, default, pair, pair_text
from dlcr_data.errors import UserError
from dlcr_data.experiment import ExperimentConfig
from dlcr_data.reid.config import EvaluateOptions, TrainConfig

# Help panels: the options of each related method together, apart from the plain run's.
MODEL, OPTIM, DGNET, CLIP3D = "Model", "Optimisation", "DG-Net", "CLIP3DReID"


def _default(name: str):
    return default(TrainConfig, name)


def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, history, training curve.")],
    root: RootOption = None,
    expanded: Annotated[
        str | None, typer.Option(help="A build folder or Hub repo: DLCR pairing with its train variants.")
    ] = _default("expanded"),
    backbone: Annotated[
        str, typer.Option(help="transformers backbone: HF id or local dir.", rich_help_panel=MODEL)
    ] = _default("backbone"),
    scratch: Annotated[
        str | None,
        typer.Option(
            help="From-scratch preset instead of --backbone (resnet-tiny, resnet-small).", rich_help_panel=MODEL
        ),
    ] = _default("scratch"),
    method: Annotated[
        str, typer.Option(help="baseline | cal (clothes-based adversarial loss).", rich_help_panel=MODEL)
    ] = _default("method"),
    epochs: Annotated[
        int, typer.Option(min=1, help="Epochs (a rerun with more epochs continues).", rich_help_panel=OPTIM)
    ] = _default("epochs"),
    batch_p: Annotated[int, typer.Option(min=1, help="Identities per batch.", rich_help_panel=OPTIM)] = _default(
        "batch_p"
    ),
    batch_k: Annotated[
        int, typer.Option(min=1, help="Images per identity (pairing doubles the batch).", rich_help_panel=OPTIM)
    ] = _default("batch_k"),
    lr: Annotated[float, typer.Option(help="Adam learning rate.", rich_help_panel=OPTIM)] = _default("lr"),
    image_size: Annotated[str, typer.Option(help="Input H x W.", metavar="HxW", rich_help_panel=MODEL)] = pair_text(
        _default("image_size")
    ),
    cal_start_epoch: Annotated[
        int, typer.Option(min=0, help="Epoch at which CAL's clothes losses start.", rich_help_panel=OPTIM)
    ] = _default("cal_start_epoch"),
    schedule_epochs: Annotated[
        int | None,
        typer.Option(
            help="Scale milestones/CAL start/progressive thresholds written for N epochs.", rich_help_panel=OPTIM
        ),
    ] = _default("schedule_epochs"),
    seed: Annotated[int, typer.Option(help="Seed.", rich_help_panel=OPTIM)] = _default("seed"),
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
    """Train the reference ReID model (ResNet + BN-neck; CE + triplet; optional CAL).

    Optionally with DLCR pairing and progressive learning on a build's variants, DG-Net's teacher labels and
    fine-grained head, CLIP3DReID's CLIP distillation. `accelerate launch -m dlcr_data train ...` for multi-GPU."""
    from dlcr_data.progress import RichReporter
    from dlcr_data.reid.train import train as run_train

    config = TrainConfig(
        **{
            **ctx.params,  # every option is a TrainConfig field of the same name; these need parsing
            "out": str(out),
            "root": str(root) if root else None,
            "image_size": pair(image_size, "--image-size", "256x128 (H x W)"),
        }
    )
    with RichReporter(console) as reporter:
        checkpoint = run_train(config, reporter)
    console.print(f"checkpoint: {checkpoint}")
    console.print(f"training curve: {Path(out) / 'training_curve.png'}")


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
    top_ids: Annotated[int, typer.Option(min=1, help="Top gallery identities refinement re-scores.")] = default(
        EvaluateOptions, "top_ids"
    ),
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
                batch_size=batch_size,
                out=out,
            )
    except MissingQueryVariants as err:  # evaluate never builds: it says which build would make the variants
        options = BuildOptions.from_dict(err.config, dataset=err.dataset, out=Path(err.expanded))
        raise UserError(f"{err}; build them: {build_command(options)}") from None
    table = Table(title=f"{dataset}: {checkpoint}")
    for col in ("protocol", "rank-1", "rank-5", "rank-10", "mAP", "mINP", "queries"):
        table.add_column(col, justify="left" if col == "protocol" else "right")
    for kind, suffix in (("protocols", ""), ("refined", f" + refine K={refine}")):
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
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of each training run (same budget for both).")] = default(
        ExperimentConfig, "epochs"
    ),
    refine: Annotated[int, typer.Option(min=0, help="Query variants for test-time refinement.")] = default(
        ExperimentConfig, "refine"
    ),
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Also one run per feature of the related methods: clone, swap, similarity-diversity, teacher, gate.",
        ),
    ] = default(ExperimentConfig, "all"),
) -> None:
    """The DLCR effect on the demo: originals only vs DLCR pairing + progressive learning (+ refinement).

    With --all (about 27 min on 2 cores, 22 after `make demo`): the ClonedPerson, DG-Net and CLIP3DReID
    features, one run each, with the same budget."""
    from dlcr_data.experiment import run_experiment
    from dlcr_data.progress import RichReporter

    config = ExperimentConfig(dataset=dataset, out=out, epochs=epochs, refine=refine, all=all_rows)
    with RichReporter(console) as reporter:
        result = run_experiment(config, reporter)
    table = Table(title=f"DLCR on the demo ({epochs} epochs each; rank-1 / mAP in %)")
    for col in ("run", "general rank-1", "general mAP", "CC rank-1", "CC mAP"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in result["rows"]:
        g, c = row["general"], row["cc"]
        table.add_row(row["name"], f"{g['rank1']:.1f}", f"{g['mAP']:.1f}", f"{c['rank1']:.1f}", f"{c['mAP']:.1f}")
    console.print(table)
    console.print(f"results: {Path(out) / 'experiment.json'}")


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

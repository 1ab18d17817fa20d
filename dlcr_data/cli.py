"""The `dlcr-data` command line: parse options, call the library, render the result with rich."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dlcr_data import __version__, loaders
from dlcr_data.errors import UserError
from dlcr_data.vocab.garments import DEFAULT_MASK_CLASSES

app = typer.Typer(
    name="dlcr-data",
    help="Clothes-changing person re-ID data expansion (DLCR) as Hugging Face datasets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Dataset folder (or its parent). Default: $DLCR_DATA_ROOT/<folder>, see `dlcr-data datasets`.",
        show_default=False,
    ),
]


def user_errors(command):
    """Turn a `UserError` into one line on stderr and its exit code: no traceback for a user mistake."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlcr-data {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Clothes-changing person re-ID data expansion (DLCR) as Hugging Face datasets."""


@app.command("datasets")
def datasets_command() -> None:
    """List the supported datasets with their expected layout and published statistics."""
    table = Table(title="Supported datasets", show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("expected layout (under --root)")
    table.add_column("published statistics")
    for name, cls in loaders.DATASETS.items():
        spec = cls()
        stats = "\n".join(f"{split}: {_fmt_stats(spec.stats.get(split))}" for split in spec.splits)
        kind = "video (tracklets)" if spec.video else "images"
        table.add_row(f"{name}\n[dim]{kind}[/]", spec.layout.strip("\n"), stats)
    console.print(table)
    console.print(
        f"Default root: ${loaders.base.DATA_ROOT_ENV}/<folder> "
        f"(now {loaders.default_data_root()}). The real datasets are licence-gated: obtain them from their authors."
    )


@app.command()
@user_errors
def inspect(
    name: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Decode every image to find corrupt files.")
    ] = True,
) -> None:
    """Validate a dataset root and print per-split images, ids, clothes and cameras beside published stats."""
    spec = loaders.get(name)
    if as_json:
        loaded = spec.load(root, verify_images=verify)
        typer.echo(json.dumps(loaded.summary()))
        return
    with console.status(f"reading {name}…"):
        loaded = spec.load(root, verify_images=verify)
    print_summary(spec, loaded)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the preview PNG goes.")] = Path("out/demo"),
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Render into this folder. Default: $DLCR_DATA_ROOT/dlcr_demo-<config>."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the procedural renderer.")] = 0,
    ids: Annotated[int, typer.Option("--ids", min=2, help="Number of identities (half train, half test).")] = 48,
    images_per_camera: Annotated[int, typer.Option(min=1, help="Images per (outfit, camera).")] = 8,
    n: Annotated[int, typer.Option("--n", min=1, help="Identities shown in the preview.")] = 8,
) -> None:
    """Render the embedded demo dataset (offline, deterministic), inspect it and write a preview PNG."""
    from dlcr_data.demo import DemoConfig
    from dlcr_data.demo.preview import sample_sheet
    from dlcr_data.files import save_png_atomic

    config = DemoConfig(seed=seed, num_ids=ids, images_per_camera=images_per_camera)
    spec = loaders.demo.Demo(config)
    with console.status("rendering the demo dataset…"):
        loaded = spec.load(root, verify_images=True)
    print_summary(spec, loaded)
    preview = save_png_atomic(sample_sheet(loaded.root, n=n), Path(out) / "preview.png")
    console.print(f"demo dataset: {loaded.root}")
    console.print(f"preview: {preview}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _pair(value: str, option: str, example: str) -> tuple[int, int]:
    """ "256x768" -> (256, 768), in the order the option documents."""
    try:
        a, b = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UserError(f"{option} must look like {example}, not {value!r}") from None
    return a, b


@app.command()
@user_errors
def build(
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards, manifest, work/ caches).")],
    root: RootOption = None,
    variants: Annotated[int, typer.Option(min=1, help="Generated variants per source image.")] = 10,
    splits: Annotated[str, typer.Option(help="Comma-separated splits to expand (query: test-time refinement).")] = (
        "train"
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N source images per split.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Global seed: targets and generation seeds derive from it.")] = 0,
    parser: Annotated[str, typer.Option(help="segformer | oracle | auto (oracle for the demo).")] = "auto",
    parser_model: Annotated[str | None, typer.Option(help="Segmentation model: HF id or local dir.")] = None,
    mask_classes: Annotated[str, typer.Option(help="Garment classes that form the mask.")] = ",".join(
        DEFAULT_MASK_CLASSES
    ),
    dilation: Annotated[int, typer.Option(min=0, help="Grow the mask by this many pixels.")] = 0,
    describer: Annotated[str, typer.Option(help="vlm | color | oracle | auto (oracle for the demo).")] = "auto",
    vlm_model: Annotated[str | None, typer.Option(help="Captioning model: HF id or local dir.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Summarising chat LLM: HF id or local dir.")] = None,
    captions_per_outfit: Annotated[
        int | None, typer.Option(min=1, help="Caption at most N images per outfit (default: all).")
    ] = None,
    generator: Annotated[
        str, typer.Option(help="diffusion | recolor | clone | swap | auto (recolor for the demo).")
    ] = "auto",
    model: Annotated[str | None, typer.Option(help="Inpainting model: HF id or local dir.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Diffusion steps.")] = 50,
    guidance: Annotated[float, typer.Option(min=0.0, help="Classifier-free guidance scale.")] = 7.5,
    resolution: Annotated[str, typer.Option(help="Generation size W x H.")] = "256x768",
    pad: Annotated[bool, typer.Option("--pad/--no-pad", help="Pad to the resolution keeping aspect.")] = False,
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for diffusion.")] = "",
    sampler: Annotated[
        str, typer.Option(help="Target outfits: random (DLCR) | similarity-diversity (ClonedPerson clusters).")
    ] = "random",
    similar_fraction: Annotated[
        float, typer.Option(help="similarity-diversity: share of targets from the source outfit's cluster.")
    ] = 0.5,
    body_shape: Annotated[
        str | None, typer.Option(help="Score body shape (SHAPY words): a CLIP model (HF id or dir) or 'geometry'.")
    ] = None,
    identity_gate: Annotated[
        str | None,
        typer.Option(help="Drop variants that lose the identity: a `dlcr-data train` checkpoint or HF backbone."),
    ] = None,
    gate_threshold: Annotated[
        float | None, typer.Option(help="Identity gate: minimum cosine to the identity prototype.")
    ] = None,
    image_format: Annotated[str, typer.Option(help="png | jpg for the generated image member.")] = "png",
    shard_samples: Annotated[int, typer.Option(min=1, help="Maximum samples per shard.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 8,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the UNet.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a build made with other options.")] = False,
) -> None:
    """Expand a dataset the DLCR way into WebDataset shards (parse, describe, plan, generate, shard).

    Resumable: rerun the same command after an interruption. Distributed: `accelerate launch -m dlcr_data build ...`
    or `torchrun --nproc_per_node N -m dlcr_data build ...`.
    """
    from dlcr_data.build import BuildOptions
    from dlcr_data.build import build as run_build

    options = BuildOptions(
        dataset=dataset,
        out=out,
        root=str(root) if root else None,
        variants=variants,
        splits=_csv(splits),
        limit=limit,
        seed=seed,
        parser=parser,
        parser_model=parser_model,
        mask_classes=_csv(mask_classes),
        dilation=dilation,
        describer=describer,
        vlm_model=vlm_model,
        llm_model=llm_model,
        captions_per_outfit=captions_per_outfit,
        generator=generator,
        model=model,
        steps=steps,
        guidance=guidance,
        resolution=_pair(resolution, "--resolution", "256x768 (W x H)"),
        pad=pad,
        negative_prompt=negative_prompt,
        sampler=sampler,
        similar_fraction=similar_fraction,
        body_shape=body_shape,
        identity_gate=identity_gate,
        gate_threshold=gate_threshold,
        image_format=image_format,
        shard_samples=shard_samples,
        batch_size=batch_size,
        compile=compile,
        overwrite=overwrite,
    )
    from dlcr_data.progress import RichReporter

    with RichReporter(console) as reporter:
        try:
            entry = run_build(options, reporter)
        except KeyboardInterrupt:
            typer.echo("interrupted: complete shards are kept; rerun the same command to continue", err=True)
            raise typer.Exit(130) from None
    if reporter.is_main:
        print_build_summary(dataset, out, entry)


def print_build_summary(dataset: str, out: Path, entry: dict) -> None:
    table = Table(title=f"{dataset} → {out}")
    for col in ("split", "shards", "samples", "MB"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, t in entry["totals"]["splits"].items():
        table.add_row(split, f"{t['shards']:,}", f"{t['samples']:,}", f"{t['bytes'] / 1e6:,.1f}")
    console.print(table)
    console.print(f"outfits described: {entry['outfits']:,}; skipped source items: {len(entry['skipped']):,}")
    for item in entry["skipped"][:5]:
        console.print(f"  {item['path']}: {item['reason']}", markup=False)
    if "gate" in entry:
        gate = entry["gate"]
        console.print(
            f"identity gate (threshold {gate['threshold']}): kept {gate['kept']:,}, rejected {gate['rejected']:,}"
        )
        for item in gate["rejections"][:5]:
            console.print(f"  {item['key']}: {item['reason']}", markup=False)
    console.print(f"manifest: {Path(out) / 'manifest.json'}")


@app.command()
@user_errors
def preview(
    out: Annotated[Path, typer.Argument(help="A build's output folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Source images (rows) to show.")] = 8,
    png: Annotated[
        Path | None, typer.Option("--png", help="Where to write the sheet (default OUT/preview.png).")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Which dataset of the build (default: the first).")] = None,
    split: Annotated[str, typer.Option(help="Which split's shards to show.")] = "train",
) -> None:
    """Write a contact sheet: per row a source image, its mask and its variants, captioned with the target text."""
    from dlcr_data.cards.preview import contact_sheet
    from dlcr_data.files import save_png_atomic

    sheet = contact_sheet(out, n=n, dataset=dataset, split=split)
    path = save_png_atomic(sheet, png or Path(out) / "preview.png")
    console.print(f"preview: {path}")


@app.command()
@user_errors
def card(
    out: Annotated[Path, typer.Argument(help="A build's output folder.")],
    repo_id: Annotated[str, typer.Option(help="Repo id shown in the loading examples.")] = "USER/REPO",
) -> None:
    """Re-render the dataset card (OUT/README.md) and its preview from the manifest."""
    from dlcr_data.hub import render_card

    console.print(f"card: {render_card(out, repo_id)}")


@app.command("push-to-hub")
@user_errors
def push_to_hub(
    out: Annotated[Path, typer.Argument(help="A finished build's output folder.")],
    repo_id: Annotated[str, typer.Argument(help="Dataset repo, e.g. me/dlcr-ltcc.")],
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to upload to (created if needed).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Stage the exact upload tree locally and validate it.")] = False,
    stage_dir: Annotated[Path | None, typer.Option(help="Where --dry-run stages (default OUT.staged).")] = None,
    include_source: Annotated[
        bool, typer.Option(help="Also upload the ORIGINAL source images (licence-gated: only if allowed).")
    ] = False,
) -> None:
    """Publish a build as a Hugging Face dataset (resumable: rerun after an interruption)."""
    from dlcr_data import hub

    if include_source:
        typer.echo(hub.LICENCE_WARNING, err=True)
    with console.status("verifying the build…"):
        result = hub.push_to_hub(
            out,
            repo_id,
            private=private,
            revision=revision,
            dry_run=dry_run,
            include_source=include_source,
            stage_dir=stage_dir,
        )
    if dry_run:
        table = Table(title=f"staged {len(result.files)} files in {result.staged} (validated with load_dataset)")
        for col in ("config", "split", "rows"):
            table.add_column(col)
        for config, splits in result.counts.items():
            for split, rows in splits.items():
                table.add_row(config, split, f"{rows:,}")
        console.print(table)
    else:
        console.print(f"uploaded {len(result.files)} files to {repo_id}: {result.commit_url}")


@app.command("train")
@user_errors
def train_command(
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, history, training curve.")],
    root: RootOption = None,
    expanded: Annotated[
        str | None, typer.Option(help="A build folder or Hub repo: DLCR pairing with its train variants.")
    ] = None,
    backbone: Annotated[str, typer.Option(help="transformers backbone: HF id or local dir.")] = "microsoft/resnet-50",
    scratch: Annotated[
        str | None, typer.Option(help="From-scratch preset instead of --backbone (resnet-tiny, resnet-small).")
    ] = None,
    method: Annotated[str, typer.Option(help="baseline | cal (clothes-based adversarial loss).")] = "baseline",
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (a rerun with more epochs continues).")] = 60,
    batch_p: Annotated[int, typer.Option(min=1, help="Identities per batch.")] = 4,
    batch_k: Annotated[int, typer.Option(min=1, help="Images per identity (pairing doubles the batch).")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3.5e-4,
    image_size: Annotated[str, typer.Option(help="Input H x W.")] = "256x128",
    cal_start_epoch: Annotated[int, typer.Option(min=0, help="Epoch at which CAL's clothes losses start.")] = 25,
    schedule_epochs: Annotated[
        int | None, typer.Option(help="Scale milestones/CAL start/progressive thresholds written for N epochs.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 1,
    gen_label: Annotated[
        str,
        typer.Option(
            help="Labels of generated images: hard (their source identity's CE) | teacher (DG-Net: KL to a frozen "
            "--teacher's flip-summed softmax, weight 0 until 30% of the steps, then up to 2)."
        ),
    ] = "hard",
    teacher: Annotated[
        str | None,
        typer.Option(help="--gen-label teacher: a checkpoint trained on this dataset's real images (same labels)."),
    ] = None,
    fine_grained_head: Annotated[
        bool,
        typer.Option(
            "--fine-grained-head",
            help="DG-Net's 2nd head (dropout 0.75) learns the source identity on generated images; the test feature "
            "concatenates both heads. Needs --expanded.",
        ),
    ] = False,
    fine_grained_weight: Annotated[
        float, typer.Option(min=0.0, help="Fine-grained loss weight, times the ramped teacher weight.")
    ] = 0.2,
    distill: Annotated[
        str | None,
        typer.Option(
            help="CLIP3DReID global alignment: a CLIP model (HF id or dir) whose image embedding the student's "
            "projected feature matches (MSE of unit vectors)."
        ),
    ] = None,
    distill_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the --distill loss.")] = 1.0,
    shape_ot: Annotated[
        bool,
        typer.Option(
            "--shape-ot",
            help="CLIP3DReID local alignment: Sinkhorn OT of local features to each image's top-4 body-shape words "
            "(CLIP zero-shot). Needs --distill.",
        ),
    ] = False,
    shape_ot_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the --shape-ot loss.")] = 0.3,
    overwrite: Annotated[bool, typer.Option(help="Start over when the run folder holds another config.")] = False,
) -> None:
    """Train the reference ReID model (ResNet + BN-neck; CE + triplet; optional CAL), optionally with DLCR pairing
    and progressive learning on a build's variants, DG-Net's teacher labels and fine-grained head, CLIP3DReID's
    CLIP distillation. `accelerate launch -m dlcr_data train ...` for multi-GPU."""
    from dlcr_data.progress import RichReporter
    from dlcr_data.reid.train import TrainConfig, train

    config = TrainConfig(
        dataset=dataset,
        out=str(out),
        root=str(root) if root else None,
        expanded=expanded,
        backbone=backbone,
        scratch=scratch,
        method=method,
        epochs=epochs,
        batch_p=batch_p,
        batch_k=batch_k,
        lr=lr,
        image_size=_pair(image_size, "--image-size", "256x128 (H x W)"),
        cal_start_epoch=cal_start_epoch,
        schedule_epochs=schedule_epochs,
        seed=seed,
        gen_label=gen_label,
        teacher=teacher,
        fine_grained_head=fine_grained_head,
        fine_grained_weight=fine_grained_weight,
        distill=distill,
        distill_weight=distill_weight,
        shape_ot=shape_ot,
        shape_ot_weight=shape_ot_weight,
        overwrite=overwrite,
    )
    with RichReporter(console) as reporter:
        checkpoint = train(config, reporter)
    console.print(f"checkpoint: {checkpoint}")
    console.print(f"training curve: {Path(out) / 'training_curve.png'}")


@app.command("evaluate")
@user_errors
def evaluate_command(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (model.safetensors + config.json).")],
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    root: RootOption = None,
    refine: Annotated[int, typer.Option(min=0, help="Test-time refinement with K query variants (0: off).")] = 0,
    expanded: Annotated[
        str | None, typer.Option(help="Build folder or Hub repo holding query variants (for --refine).")
    ] = None,
    top_ids: Annotated[int, typer.Option(min=1, help="Top gallery identities refinement re-scores.")] = 5,
    out: Annotated[
        Path | None, typer.Option(help="Where metrics.json and cmc.png go (default CHECKPOINT/eval).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
) -> None:
    """Evaluate a checkpoint on every protocol of a dataset (CAL semantics), with and without refinement."""
    from dlcr_data.reid.evaluate import evaluate_checkpoint

    out = out or Path(checkpoint) / "eval"
    with console.status("extracting features and evaluating…"):
        result = evaluate_checkpoint(
            checkpoint, dataset, root, refine=refine, expanded=expanded, top_ids=top_ids, batch_size=batch_size, out=out
        )
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


@app.command("experiment")
@user_errors
def experiment_command(
    dataset: Annotated[str, typer.Argument(help="Only `demo` has a ready recipe.")] = "demo",
    out: Annotated[Path, typer.Option(help="Build folder (reused when present) and experiment outputs.")] = Path(
        "out/demo"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of each training run (same budget for both).")] = 30,
    refine: Annotated[int, typer.Option(min=0, help="Query variants for test-time refinement.")] = 4,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all", help="Also one run per seed-method feature: clone, swap, similarity-diversity, teacher, gate."
        ),
    ] = False,
) -> None:
    """The DLCR effect on the demo: originals only vs DLCR pairing + progressive learning (+ refinement).

    With --all (about 27 min on 2 cores, 22 after `make demo`): the ClonedPerson, DG-Net and CLIP3DReID
    features, one run each, with the same budget."""
    from dlcr_data.experiment import ExperimentConfig, run_experiment
    from dlcr_data.progress import RichReporter

    if dataset != "demo":
        raise UserError(f"`experiment` has a recipe for the demo only, not {dataset!r}; use `train` and `evaluate`")
    with RichReporter(console) as reporter:
        result = run_experiment(ExperimentConfig(out=out, epochs=epochs, refine=refine, all=all_rows), reporter)
    table = Table(title=f"DLCR on the demo ({epochs} epochs each; rank-1 / mAP in %)")
    for col in ("run", "general rank-1", "general mAP", "CC rank-1", "CC mAP"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in result["rows"]:
        g, c = row["general"], row["cc"]
        table.add_row(row["name"], f"{g['rank1']:.1f}", f"{g['mAP']:.1f}", f"{c['rank1']:.1f}", f"{c['mAP']:.1f}")
    console.print(table)
    console.print(f"results: {Path(out) / 'experiment.json'}")


def print_summary(spec: loaders.SourceDataset, loaded: loaders.Loaded, max_skipped: int = 10) -> None:
    summary = loaded.summary()
    unit = "tracklets" if spec.video else "images"
    table = Table(title=f"{spec.name} at {loaded.root}")
    table.add_column("split", style="bold")
    for col in (unit, "ids", "clothes", "cameras"):
        table.add_column(col, justify="right")
    table.add_column("published", style="dim")
    for split, counts in summary["splits"].items():
        table.add_row(split, *(f"{v:,}" for v in counts.values()), _fmt_stats(spec.stats.get(split)))
    console.print(table)
    skipped = summary["skipped"]
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} item(s):[/]")
        for item in skipped[:max_skipped]:
            console.print(f"  {item['path']}: {item['reason']}", markup=False)
        if len(skipped) > max_skipped:
            console.print(f"  … and {len(skipped) - max_skipped} more (see --json)")


def _fmt_stats(stats: loaders.SplitStats | None) -> str:
    if stats is None:
        return "—"
    parts = [
        f"{value:,} {label}"
        for label, value in (
            ("imgs", stats.images),
            ("ids", stats.ids),
            ("clothes", stats.clothes),
            ("cams", stats.cameras),
        )
        if value is not None
    ]
    text = ", ".join(parts) or "—"
    return f"{text} ({stats.note})" if stats.note else text


def _quiet_libraries() -> None:
    """Our rich progress says what happens; the libraries' own tqdm bars would interleave with it."""
    import os

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when `datasets` is imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def main() -> None:
    _quiet_libraries()
    app()

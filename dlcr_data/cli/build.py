"""`build`, `preview`, `card` and `push-to-hub`: make an expanded dataset and publish it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcr_data import hub, loaders
from dlcr_data.build import BuildOptions
from dlcr_data.build.annotate.body_shape import SHAPE_SCORERS
from dlcr_data.build.annotate.shape_clip import ClipShapeScorer
from dlcr_data.build.describe import DESCRIBERS
from dlcr_data.build.generate import GENERATORS
from dlcr_data.build.parse import PARSERS
from dlcr_data.cards import render_card
from dlcr_data.cards.preview import contact_sheet
from dlcr_data.cli.common import RootOption, console, csv, csv_text, default, pair, pair_text, run_with_progress

# Help panels in the order of the build's stages, so that `build --help` reads like the pipeline.
PARSE, DESCRIBE, GENERATE, ANNOTATE, RUNTIME = "Parse", "Describe", "Plan and generate", "Annotate", "Shards, runtime"


def _default(name: str):
    return default(BuildOptions, name)


def _choices(registry: dict, family: str) -> str:
    """`a | b | auto (b for demo, else a).`: a backend family's registered names, and what "auto" picks for each
    dataset (its `default_backends`)."""
    usual = loaders.SourceDataset.default_backends[family]
    own: dict[str, list[str]] = {}
    for name, dataset in loaders.DATASETS.items():
        if dataset.default_backends[family] != usual:
            own.setdefault(dataset.default_backends[family], []).append(name)
    picks = "".join(f"{pick} for {', '.join(names)}, " for pick, names in own.items())
    return f"{' | '.join(registry)} | auto ({picks}else {usual})."


# `--body-shape` takes a scorer's name, any other value is a CLIP model (`body_shape.scorer_name`)
_SHAPE_NAMES = " or ".join(f"'{name}'" for name in SHAPE_SCORERS if name != ClipShapeScorer.name)


def build(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards, manifest, work/ caches).")],
    root: RootOption = None,
    variants: Annotated[int, typer.Option(min=1, help="Generated variants per source image.")] = _default("variants"),
    splits: Annotated[
        str, typer.Option(help="Comma-separated splits to expand (query: test-time refinement).")
    ] = csv_text(_default("splits")),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N source images per split.")] = _default(
        "limit"
    ),
    seed: Annotated[int, typer.Option(min=0, help="Global seed: targets and generation seeds derive from it.")] = (
        _default("seed")
    ),
    parser: Annotated[str, typer.Option(help=_choices(PARSERS, "parser"), rich_help_panel=PARSE)] = _default("parser"),
    parser_model: Annotated[
        str | None, typer.Option(help="Segmentation model: HF id or local dir.", rich_help_panel=PARSE)
    ] = _default("parser_model"),
    mask_classes: Annotated[
        str,
        typer.Option(
            help=f"Garment classes that form the mask (default: {', '.join(_default('mask_classes'))}).",
            show_default=False,
            rich_help_panel=PARSE,
        ),
    ] = csv_text(_default("mask_classes")),
    dilation: Annotated[
        int, typer.Option(min=0, help="Grow the mask by this many pixels.", rich_help_panel=PARSE)
    ] = _default("dilation"),
    label_map: Annotated[
        str | None,
        typer.Option(
            help='JSON {"model label": "class" or null}: overrides the label rules.',
            metavar="FILE.json",
            rich_help_panel=PARSE,
        ),
    ] = _default("label_map"),
    describer: Annotated[
        str, typer.Option(help=_choices(DESCRIBERS, "describer"), rich_help_panel=DESCRIBE)
    ] = _default("describer"),
    vlm_model: Annotated[
        str | None, typer.Option(help="Captioning model: HF id or local dir.", rich_help_panel=DESCRIBE)
    ] = _default("vlm_model"),
    llm_model: Annotated[
        str | None, typer.Option(help="Summarising chat LLM: HF id or local dir.", rich_help_panel=DESCRIBE)
    ] = _default("llm_model"),
    captions_per_outfit: Annotated[
        int | None,
        typer.Option(min=1, help="Caption at most N images per outfit (default: all).", rich_help_panel=DESCRIBE),
    ] = _default("captions_per_outfit"),
    generator: Annotated[
        str,
        typer.Option(help=_choices(GENERATORS, "generator"), rich_help_panel=GENERATE),
    ] = _default("generator"),
    model: Annotated[
        str | None, typer.Option(help="Inpainting model: HF id or local dir.", rich_help_panel=GENERATE)
    ] = _default("model"),
    steps: Annotated[int, typer.Option(min=1, help="Diffusion steps.", rich_help_panel=GENERATE)] = _default("steps"),
    guidance: Annotated[
        float, typer.Option(min=0.0, help="Classifier-free guidance scale.", rich_help_panel=GENERATE)
    ] = _default("guidance"),
    resolution: Annotated[
        str, typer.Option(help="Generation size W x H.", metavar="WxH", rich_help_panel=GENERATE)
    ] = pair_text(_default("resolution")),
    pad: Annotated[
        bool, typer.Option("--pad/--no-pad", help="Pad to the resolution keeping aspect.", rich_help_panel=GENERATE)
    ] = _default("pad"),
    negative_prompt: Annotated[
        str, typer.Option(help="Negative prompt for diffusion.", rich_help_panel=GENERATE)
    ] = _default("negative_prompt"),
    prompt_template: Annotated[
        str,
        typer.Option(
            help="Diffusion prompt; {top}, {bottom} and {shoes} take the target outfit's texts.",
            rich_help_panel=GENERATE,
        ),
    ] = _default("prompt_template"),
    sampler: Annotated[
        str,
        typer.Option(
            help="Target outfits: random (DLCR) | similarity-diversity (ClonedPerson clusters).",
            rich_help_panel=GENERATE,
        ),
    ] = _default("sampler"),
    similar_fraction: Annotated[
        float,
        typer.Option(
            help="similarity-diversity: share of targets from the source outfit's cluster.", rich_help_panel=GENERATE
        ),
    ] = _default("similar_fraction"),
    body_shape: Annotated[
        str | None,
        typer.Option(
            help=f"Score body shape (SHAPY words): a CLIP model (HF id or dir) or {_SHAPE_NAMES}.",
            rich_help_panel=ANNOTATE,
        ),
    ] = _default("body_shape"),
    identity_gate: Annotated[
        str | None,
        typer.Option(
            help="Drop variants that lose the identity: a `dlcr-data train` checkpoint or HF backbone.",
            rich_help_panel=ANNOTATE,
        ),
    ] = _default("identity_gate"),
    gate_threshold: Annotated[
        float | None,
        typer.Option(
            help="Identity gate: minimum cosine to the identity prototype (train) or the source image (other splits).",
            rich_help_panel=ANNOTATE,
        ),
    ] = _default("gate_threshold"),
    image_format: Annotated[
        str, typer.Option(help="png | jpg for the generated image member.", rich_help_panel=RUNTIME)
    ] = _default("image_format"),
    shard_samples: Annotated[
        int, typer.Option(min=1, help="Maximum samples per shard.", rich_help_panel=RUNTIME)
    ] = _default("shard_samples"),
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.", rich_help_panel=RUNTIME)] = _default(
        "batch_size"
    ),
    compile: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the UNet.", rich_help_panel=RUNTIME)
    ] = _default("compile"),
    overwrite: Annotated[bool, typer.Option(help="Replace a build made with other options.")] = _default("overwrite"),
) -> None:
    """Expand a dataset the DLCR way into WebDataset shards (parse, describe, plan, generate, shard).

    Resumable: rerun the same command after an interruption. Distributed: `accelerate launch -m dlcr_data build ...`
    or `torchrun --nproc_per_node N -m dlcr_data build ...`.
    """
    from dlcr_data.build import build as run_build

    options = BuildOptions(
        **{
            **ctx.params,  # every option is a BuildOptions field of the same name; these need parsing
            "splits": csv(splits),
            "mask_classes": csv(mask_classes),
            "resolution": pair(resolution, "--resolution", "256x768 (W x H)"),
        }
    )
    run_with_progress(run_build, options)


def preview(
    out: Annotated[Path, typer.Argument(help="A build's output folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Source images (rows) to show.")] = default(contact_sheet, "n"),
    png: Annotated[
        Path | None, typer.Option("--png", help="Where to write the sheet (default OUT/preview.png).")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Which dataset of the build (default: the first).")] = default(
        contact_sheet, "dataset"
    ),
    split: Annotated[str, typer.Option(help="Which split's shards to show.")] = default(contact_sheet, "split"),
) -> None:
    """Write a contact sheet: per row a source image, its mask and its variants, captioned with the target text."""
    from dlcr_data.files import save_png_atomic

    sheet = contact_sheet(out, n=n, dataset=dataset, split=split)
    path = save_png_atomic(sheet, png or Path(out) / "preview.png")
    console.print(f"preview: {path}")


def card(
    out: Annotated[Path, typer.Argument(help="A build's output folder.")],
    repo_id: Annotated[str, typer.Option(help="Repo id shown in the loading examples.")] = default(
        render_card, "repo_id"
    ),
) -> None:
    """Re-render the dataset card (OUT/README.md) and its preview from the manifest."""
    console.print(f"card: {render_card(out, repo_id)}")


def _push_default(name: str):
    return default(hub.push_to_hub, name)


def push_to_hub(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="A finished build's output folder.")],
    repo_id: Annotated[str, typer.Argument(help="Dataset repo, e.g. me/dlcr-ltcc.")],
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = _push_default("private"),
    revision: Annotated[str | None, typer.Option(help="Branch to upload to (created if needed).")] = _push_default(
        "revision"
    ),
    dry_run: Annotated[bool, typer.Option(help="Stage the exact upload tree locally and validate it.")] = (
        _push_default("dry_run")
    ),
    stage_dir: Annotated[Path | None, typer.Option(help="Where --dry-run stages (default OUT.staged).")] = (
        _push_default("stage_dir")
    ),
    include_source: Annotated[
        bool, typer.Option(help="Also upload the ORIGINAL source images (licence-gated: only if allowed).")
    ] = _push_default("include_source"),
) -> None:
    """Publish a build as a Hugging Face dataset (resumable: rerun after an interruption)."""
    if include_source:
        typer.echo(hub.LICENCE_WARNING, err=True)
    with console.status("verifying the build…"):
        result = hub.push_to_hub(**ctx.params)  # the options are push_to_hub's keywords, one to one
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

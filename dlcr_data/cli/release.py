"""`import-release`: DLCR's released images as a build (shards, manifest, card) of one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcr_data.build.release import ReleaseOptions
from dlcr_data.cli.common import default, run_with_progress

INFER, RUNTIME = "Variant count", "Shards, runtime"


def _default(name: str):
    return default(ReleaseOptions, name)


def import_release(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dlcr-data datasets`).")],
    release: Annotated[
        Path, typer.Option("--release", help="The unpacked release folder of this dataset, or one joined .zip.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards, manifest, card, work/).")],
    root: Annotated[
        Path | None,
        typer.Option(
            help="The original dataset: source keys are checked against it and each original's aspect ratio "
            "gives the variant count.",
            show_default=False,
        ),
    ] = _default("root"),
    variants: Annotated[
        int | None,
        typer.Option(min=1, help="Variants per strip (default: from the aspect ratio).", rich_help_panel=INFER),
    ] = _default("variants"),
    aspect: Annotated[
        float | None,
        typer.Option(help="A variant's width / height (default: the original's).", rich_help_panel=INFER),
    ] = _default("aspect"),
    aspect_tolerance: Annotated[
        float, typer.Option(help="Relative tolerance of the aspect ratio.", rich_help_panel=INFER)
    ] = _default("aspect_tolerance"),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N strips (sorted by path).")] = _default(
        "limit"
    ),
    image_format: Annotated[
        str, typer.Option(help="png | jpg for the image member.", rich_help_panel=RUNTIME)
    ] = _default("image_format"),
    shard_samples: Annotated[
        int, typer.Option(min=1, help="Maximum samples per shard.", rich_help_panel=RUNTIME)
    ] = _default("shard_samples"),
    overwrite: Annotated[bool, typer.Option(help="Replace an import made with other options.")] = _default("overwrite"),
) -> None:
    """Import DLCR's released images (Hub dataset ihaveamoose/DLCR) as shards with a card.

    Each strip (a PNG of variants side by side, with a .txt of one 'top| bottom| shoes' line per variant, in the
    original dataset's layout) becomes one sample per variant; labels come from the file names by the dataset's
    rules. Split archives (.zip, .z01, ...) must be joined first: the error says how. Resumable and distributed
    like `build`.
    """
    from dlcr_data.build.release import import_release as run_import

    run_with_progress(run_import, ReleaseOptions(**ctx.params))  # every option is a ReleaseOptions field

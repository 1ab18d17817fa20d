"""`datasets`, `inspect` and `demo`: the source datasets, before any build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcr_data import loaders
from dlcr_data.cli.common import RootOption, console, default
from dlcr_data.demo import DemoConfig
from dlcr_data.demo.preview import sample_sheet
from dlcr_data.errors import UserError


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


def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the preview PNG goes.")] = Path("out/demo"),
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Render into this folder [default: one per config under $DLCR_DATA_ROOT]."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the procedural renderer.")] = default(DemoConfig, "seed"),
    ids: Annotated[int, typer.Option("--ids", min=2, help="Number of identities (half train, half test).")] = default(
        DemoConfig, "num_ids"
    ),
    images_per_camera: Annotated[int, typer.Option(min=1, help="Images per (outfit, camera).")] = default(
        DemoConfig, "images_per_camera"
    ),
    min_outfits: Annotated[int, typer.Option(min=1, max=4, help="Fewest outfits per person.")] = default(
        DemoConfig, "min_outfits"
    ),
    max_outfits: Annotated[int, typer.Option(min=1, max=4, help="Most outfits per person.")] = default(
        DemoConfig, "max_outfits"
    ),
    garment_change: Annotated[
        str, typer.Option(help="How a person's outfits differ: shape (own outline each), colour, any.")
    ] = default(DemoConfig, "garment_change"),
    palette: Annotated[
        str, typer.Option(help="Clothes colours: street (mostly dark and neutral) or uniform.")
    ] = default(DemoConfig, "palette"),
    wardrobe: Annotated[
        int, typer.Option(min=0, help="Outfits everybody picks from (strangers dress alike); 0: each person's own.")
    ] = default(DemoConfig, "wardrobe"),
    traits: Annotated[
        str, typer.Option(help="Bodies and hair: subtle, or distinct (wider builds and statures, more hair colours).")
    ] = default(DemoConfig, "traits"),
    n: Annotated[int, typer.Option("--n", min=1, help="Identities shown in the preview.")] = default(sample_sheet, "n"),
) -> None:
    """Render the embedded demo dataset (offline, deterministic), inspect it and write a preview PNG."""
    from dlcr_data.files import save_png_atomic

    try:
        config = DemoConfig(seed, ids, images_per_camera, min_outfits=min_outfits, max_outfits=max_outfits,
                            garment_change=garment_change, palette=palette, wardrobe=wardrobe,
                            traits=traits)  # fmt: skip
    except ValueError as error:
        raise UserError(str(error)) from None
    spec = loaders.demo.Demo(config)
    with console.status("rendering the demo dataset…"):
        loaded = spec.load(root, verify_images=True)
    print_summary(spec, loaded)
    preview = save_png_atomic(sample_sheet(loaded.root, n=n), Path(out) / "preview.png")
    console.print(f"demo dataset: {loaded.root}")
    console.print(f"preview: {preview}")


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

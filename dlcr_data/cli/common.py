"""What every command shares: the console, one-line user errors, option defaults read from the library, and help
that fits an 80-column terminal."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from dlcr_data.errors import UserError

console = Console()

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Dataset folder (or its parent). Default: $DLCR_DATA_ROOT/<folder>, see `dlcr-data datasets`.",
        show_default=False,
    ),
]


def default(owner: type | Callable[..., Any], name: str) -> Any:
    """The library's default of `name`: a field of an options dataclass, or a keyword of a function.

    The CLI reads every default it shares with the library from here instead of repeating it, so each option has
    one home (the dataclass or the function the command calls)."""
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[name]
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
    else:
        value = inspect.signature(owner).parameters[name].default
        if value is not inspect.Parameter.empty:
            return value
    raise TypeError(f"{getattr(owner, '__name__', owner)}.{name} has no default")


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a `UserError` into one line on stderr and its exit code: no traceback for a user mistake."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


# -- a build (or an import) under a progress display, then its summary ---------------------------------------------
def run_with_progress(run: Callable[..., dict], options: Any) -> None:
    """`run(options, reporter)` under rich progress bars, then the summary of the manifest entry it returns (the
    main process only). An interruption is one line and exit 130: complete shards are kept for the rerun."""
    from dlcr_data.progress import RichReporter

    with RichReporter(console) as reporter:
        try:
            entry = run(options, reporter)
        except KeyboardInterrupt:
            typer.echo("interrupted: complete shards are kept; rerun the same command to continue", err=True)
            raise typer.Exit(130) from None
    if reporter.is_main:
        print_build_summary(options.dataset, options.out, entry)


def print_build_summary(dataset: str, out: Path, entry: dict) -> None:
    """Shards per split, then what the build described (an import: what the release held) and skipped."""
    table = Table(title=f"{dataset} → {out}")
    for col in ("split", "shards", "samples", "MB"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, t in entry["totals"]["splits"].items():
        table.add_row(split, f"{t['shards']:,}", f"{t['samples']:,}", f"{t['bytes'] / 1e6:,.1f}")
    console.print(table)
    skipped = entry.get("skipped", [])
    if "release" in entry:
        console.print(f"{_release_counts(entry)}; skipped strips: {len(skipped):,}")
    else:
        console.print(f"outfits described: {entry['outfits']:,}; skipped source items: {len(skipped):,}")
    for item in skipped[:5]:
        console.print(f"  {item['path']}: {item['reason']}", markup=False)
    if "gate" in entry:
        gate = entry["gate"]
        console.print(
            f"identity gate (threshold {gate['threshold']}): kept {gate['kept']:,}, rejected {gate['rejected']:,}"
        )
        for item in gate["rejections"][:5]:
            console.print(f"  {item['key']}: {item['reason']}", markup=False)
    console.print(f"manifest: {Path(out) / 'manifest.json'}")


def _release_counts(entry: dict) -> str:
    """The counts an import's entry states, whatever they are named: `strips: 3; variants per strip: 10 (3
    strips); samples: 30` (its repo, url and licence are text, shown by the card)."""
    words = []
    for key, value in entry["release"].items():
        name = key.replace("_", " ")
        if isinstance(value, int) and not isinstance(value, bool):
            words.append(f"{name}: {value:,}")
        elif isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            words.append(f"{name}: " + ", ".join(f"{n} ({count:,} strips)" for n, count in value.items()))
    samples = entry.get("totals", {}).get("samples")
    if samples is not None and "samples" not in entry["release"]:
        words.append(f"samples: {samples:,}")
    return "; ".join(words)


# -- option values as text and back ------------------------------------------------------------------------------
def csv(value: str) -> tuple[str, ...]:
    """ "train,query" -> ("train", "query")."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def csv_text(values: Iterable[str]) -> str:
    """The inverse of `csv`: how a tuple default reads on the command line."""
    return ",".join(values)


def pair(value: str, option: str, example: str) -> tuple[int, int]:
    """ "256x768" -> (256, 768), in the order the option documents."""
    try:
        a, b = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UserError(f"{option} must look like {example}, not {value!r}") from None
    return a, b


def pair_text(values: tuple[int, int]) -> str:
    """The inverse of `pair`: (256, 768) -> "256x768"."""
    return "x".join(str(v) for v in values)


# -- help that fits 80 columns -------------------------------------------------------------------------------------
def reflow(doc: str | None) -> str | None:
    """A docstring's paragraphs as single lines: typer's rich help keeps the source's line breaks after the first
    paragraph, which gives ragged text in any terminal narrower than the source; rich wraps single lines itself."""
    if doc is None:
        return None
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))


_METAVARS = {"int": "INT", "float": "FLOAT", "str": "TEXT", "Path": "PATH"}  # click's names, shorter than typer's


def _compact_types(params: Iterable[Any]) -> None:
    """Short type names (`INT [x>=1]`, not `<int range> [x>=1]`) and none beside a plain flag (`<bool>`, while it
    takes no value): the type column stays narrow enough that rich never cuts a long option name
    (`--fine-grained-…`) or a word of the help in an 80-column terminal. An explicit metavar is kept."""
    for param in params:
        if param.param_type_name != "option" or param.metavar is not None:
            continue
        param.metavar = "" if param.is_flag else _METAVARS.get(param.bare_type())


class Command(TyperCommand):
    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        _compact_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        _compact_types(self.get_params(ctx))
        super().format_help(ctx, formatter)

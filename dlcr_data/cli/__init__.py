"""The `dlcr-data` command line: parse options, call the library, render the result with rich.

One module per group of commands (`datasets`, `build`, `release`, `reid`); `common` holds what they share. Each
command only turns its options into the library's options dataclass (whose defaults it reads: one home per option)
and renders the result.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dlcr_data import __version__
from dlcr_data.cli import build, datasets, reid, release
from dlcr_data.cli.common import Command, Group, reflow, user_errors

app = typer.Typer(
    name="dlcr-data",
    help="Clothes-changing person re-ID data expansion (DLCR) as Hugging Face datasets.",
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# In the order `dlcr-data --help` lists them: the sources, a build and its publication, the re-ID model.
COMMANDS = {
    "datasets": datasets.datasets_command,
    "inspect": datasets.inspect,
    "demo": datasets.demo,
    "build": build.build,
    "import-release": release.import_release,
    "preview": build.preview,
    "card": build.card,
    "push-to-hub": build.push_to_hub,
    "train": reid.train,
    "evaluate": reid.evaluate,
    "experiment": reid.experiment,
}
for _name, _command in COMMANDS.items():
    app.command(_name, cls=Command, help=reflow(_command.__doc__))(user_errors(_command))


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


def _quiet_libraries() -> None:
    """Our rich progress says what happens; the libraries' own tqdm bars would interleave with it."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when `datasets` is imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def main() -> None:
    _quiet_libraries()
    app()


__all__ = ["COMMANDS", "app", "main"]

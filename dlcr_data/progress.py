"""Progress hooks for long jobs (build stages, training epochs) and the process state they run under.

`Reporter` is the protocol every job calls; the library's default reports nothing. `RichReporter` draws one rich
progress bar per stage on the main process only (items, rate, ETA). `quiet_library_warnings` drops the library
messages a user cannot act on, so the bars and real warnings are what a run prints.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Reporter:
    """Progress hooks: `stage` opens a stage and returns an `advance(n)` callable, called as items complete;
    `note` tells the user something worth reading (e.g. the parser's label map), `warning` marking a problem."""

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def done(self, name: str) -> None:
        pass

    def note(self, text: str, *, warning: bool = False) -> None:
        pass


# Library messages a user cannot act on, by the logger that emits them: dropped by exact pattern, the logger itself
# stays as loud as the user set it. transformers >= 5 without torchvision falls back to the PIL image processors
# (the ones the build asks for anyway) and says so once per class whenever diffusers or a VLM loads.
UNACTIONABLE = {
    "transformers.utils.import_utils": re.compile(
        r"`\w+ImageProcessor` requires torchvision \(not installed\); falling back to `\w+ImageProcessorPil`"
    ),
}


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_library_warnings() -> None:
    """Drop the `UNACTIONABLE` messages; every other warning and log line still shows. Idempotent; called where a
    backend loads its models, before it imports the library."""
    for name, pattern in UNACTIONABLE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) and f.pattern is pattern for f in logger.filters):
            logger.addFilter(_DropMatching(pattern))


def process_state():
    """accelerate's `PartialState`: gloo on CPU, so `torchrun` works without GPUs."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class RichReporter(Reporter):
    """One progress bar per stage. Other processes report nothing (their work shows in the main's totals)."""

    def __init__(self, console: Console) -> None:
        self.is_main = process_state().is_main_process
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.is_main,
        )
        self.tasks: dict[str, TaskID] = {}

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(name, total=total, rate="")

        def advance(n: int) -> None:
            self.progress.advance(task, n)
            speed = self.progress.tasks[task].speed
            self.progress.update(task, rate=f"{speed:.1f} it/s" if speed else "")

        self.tasks[name] = task
        return advance

    def done(self, name: str) -> None:
        if name in self.tasks:
            self.progress.stop_task(self.tasks[name])

    def note(self, text: str, *, warning: bool = False) -> None:
        if self.is_main:  # printed above the live bars; Text: a label such as "[x]" is not rich markup
            self.progress.console.print(Text(f"warning: {text}" if warning else text, "yellow" if warning else ""))

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

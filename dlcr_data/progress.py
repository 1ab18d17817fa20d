"""Progress hooks for long jobs (build stages, training epochs) and the process state they run under.

`Reporter` is the protocol every job calls; the library's default reports nothing. `RichReporter` draws one rich
progress bar per stage on the main process only (items, rate, ETA).
"""

from __future__ import annotations

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


class Reporter:
    """Progress hooks: `stage` opens a stage and returns an `advance(n)` callable, called as items complete."""

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def done(self, name: str) -> None:
        pass


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

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

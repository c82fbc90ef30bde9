"""Rich progress bars for long work (training, evaluation); silent in quiet mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self.progress, self.task = progress, task
        self.fields: dict[str, Any] = {"loss": "   -   ", "speed": "  -  "}

    def update(self, completed: int, record: dict[str, Any] | None = None) -> None:
        if self.progress is None or self.task is None:
            return
        record = record or {}
        if "loss" in record:
            self.fields["loss"] = f"{record['loss']:.4f}"
        if "val_loss" in record:
            self.fields["loss"] += f" (held-out {record['val_loss']:.4f})"
        if "tokens_per_s" in record:
            self.fields["speed"] = f"{record['tokens_per_s'] / 1000:.1f}k tok/s"
        self.progress.update(self.task, completed=completed, **self.fields)


@contextmanager
def training_progress(total: int, start: int, quiet: bool) -> Iterator[_Bar]:
    if quiet:
        yield _Bar(None, None)
        return
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        bar = _Bar(progress, None)
        bar.task = progress.add_task("train", total=total, completed=start, **bar.fields)
        yield bar


@contextmanager
def work_progress(description: str, total: int, quiet: bool = False) -> Iterator[Any]:
    """A plain bar for counted work; yields a function advance(n=1)."""
    if quiet:
        yield lambda n=1: None
        return
    with Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)

"""Progress of long work (training, probes, attention, evaluation, sweeps); silent in quiet mode.

On a terminal: rich progress bars. Elsewhere (a pipe, a log file, CI), where a bar cannot redraw
and rich prints it only once at the end, plain lines on stderr instead (`PlainProgress`): one at
each tenth of the work, or after `every_s` seconds if that comes first, and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
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

Clock = Callable[[], float]
Say = Callable[[str], None]


def bars_redraw() -> bool:
    """Whether rich's bars can redraw where they print (the same test rich's Live makes)."""
    from rich import get_console

    console = get_console()
    return console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


class PlainProgress:
    """Counted work as plain lines: `train 1200/3000 steps, loss 1.23, 45 s elapsed, ~70 s left`.

    `start` is work already done before this process (a resumed run): the rate, and so the time
    left, counts only the work done here."""

    def __init__(
        self,
        description: str,
        total: int,
        unit: str = "steps",
        start: int = 0,
        every_s: float = 30.0,
        say: Say | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.description, self.total, self.unit = description, max(total, 1), unit
        self.start = self.completed = self.printed = start
        self.every_s, self.clock = every_s, clock
        self.say = say or _to_stderr
        self.started = self.last_line = clock()
        self._next_tenth = self._tenth_after(start)

    def _tenth_after(self, completed: int) -> int:
        """The first tenth of the total above `completed`: lines at 10 %, 20 %, ... 100 %."""
        tenth = completed * 10 // self.total + 1
        return -(-tenth * self.total // 10)  # ceiling: a small total still reaches its end

    def update(self, completed: int, detail: str = "") -> None:
        self.completed = min(completed, self.total)
        now = self.clock()
        due = self.completed >= self._next_tenth or now - self.last_line >= self.every_s
        if due and self.completed > self.printed:  # no line twice for the same count
            self._write(now, detail)

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.update(self.completed + n, detail)

    def line(self, now: float, detail: str = "") -> str:
        elapsed = now - self.started
        parts = [f"{self.description} {self.completed}/{self.total} {self.unit}"]
        if detail:
            parts.append(detail)
        parts.append(f"{duration(elapsed)} elapsed")
        done_here, left = self.completed - self.start, self.total - self.completed
        if left > 0 and done_here > 0:
            parts.append(f"~{duration(left * elapsed / done_here)} left")
        return ", ".join(parts)

    def _write(self, now: float, detail: str) -> None:
        self.say(self.line(now, detail))
        self.last_line, self.printed = now, self.completed
        self._next_tenth = self._tenth_after(self.completed)


def _to_stderr(line: str) -> None:
    # sys.stderr looked up per line: test runners (typer's CliRunner) swap it
    print(line, file=sys.stderr, flush=True)


def training_fields(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The bar's loss and speed fields, updated from one metrics record."""
    fields = dict(fields)
    if "loss" in record:
        fields["loss"] = f"{record['loss']:.4f}"
    if "val_loss" in record:
        fields["loss"] += f" (held-out {record['val_loss']:.4f})"
    if "tokens_per_s" in record:
        fields["speed"] = f"{record['tokens_per_s'] / 1000:.1f}k tok/s"
    return fields


class _Bar:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self.progress, self.task = progress, task
        self.fields: dict[str, Any] = {"loss": "   -   ", "speed": "  -  "}

    def update(self, completed: int, record: dict[str, Any] | None = None) -> None:
        if self.progress is None or self.task is None:
            return
        self.fields = training_fields(record or {}, self.fields)
        self.progress.update(self.task, completed=completed, **self.fields)


class _PlainBar(_Bar):
    def __init__(self, plain: PlainProgress) -> None:
        super().__init__(None, None)
        self.plain = plain

    def update(self, completed: int, record: dict[str, Any] | None = None) -> None:
        record = record or {}
        self.fields = training_fields(record, self.fields)
        detail = f"loss {self.fields['loss']}" if "loss" in record or "val_loss" in record else ""
        self.plain.update(completed, detail)


@contextmanager
def training_progress(total: int, start: int, quiet: bool) -> Iterator[_Bar]:
    if quiet:
        yield _Bar(None, None)
        return
    if not bars_redraw():
        yield _PlainBar(PlainProgress("train", total, "steps", start=start))
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
def work_progress(
    description: str, total: int, quiet: bool = False, unit: str = "steps"
) -> Iterator[Any]:
    """A plain bar for counted work; yields a function advance(n=1)."""
    if quiet:
        yield lambda n=1: None
        return
    if not bars_redraw():
        plain = PlainProgress(description, total, unit)
        yield lambda n=1: plain.advance(n)
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


def stage_lines(description: str, console: Any, clock: Clock = time.monotonic) -> Say:
    """say(message) for work told in stages (evaluate's sections), each line with the time so far:
    `evaluate cut0: 1000 generations (12 s elapsed)`."""
    started = clock()

    def say(message: str) -> None:
        elapsed = duration(clock() - started)
        line = f"[dim]{description}[/dim] {message} [dim]({elapsed} elapsed)[/dim]"
        console.print(line, soft_wrap=True)  # one line in a log, not folded at 80 columns

    return say

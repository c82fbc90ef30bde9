"""Tables that read anywhere: split across columns when a console is narrow (80 in a pipe), and
the same rows as CSV for `--format csv`.

rich squeezes a table wider than its console by cutting cells to `…`; a number cut that way
reads as a different number. `fit` instead prints the table as several, each repeating the
name columns, so every cell stays whole; `write_csv` gives a script the rows without boxes."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from enum import Enum
from typing import IO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class Format(str, Enum):
    """`--format`: how a command prints its tables."""

    table = "table"
    csv = "csv"
    json = "json"


FORMAT_HELP = "table (default), csv (the table's rows, one header line) or json."


def _copy(table: Table, columns: list[int], title: bool) -> Table:
    """A table of `table`'s columns at the given indexes, its rows and sections kept."""
    new = Table(
        title=table.title if title else None,
        title_justify=table.title_justify,
        box=table.box,
        padding=table.padding,
        header_style=table.header_style,
        show_edge=table.show_edge,
        show_header=table.show_header,
    )
    cells = [list(c.cells) for c in table.columns]
    for i in columns:
        c = table.columns[i]
        new.add_column(
            c.header, justify=c.justify, no_wrap=c.no_wrap, style=c.style, min_width=c.min_width
        )
    for r, row in enumerate(table.rows):
        new.add_row(*(cells[i][r] for i in columns), style=row.style, end_section=row.end_section)
    return new


def _width(console: Console, table: Table) -> int:
    """The table's natural width (rich caps a measurement at the console's width otherwise)."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def fit(table: Table, console: Console, keep: int = 1) -> list[Table]:
    """`table` as one table if it fits `console`'s width at its natural size, else as several:
    each keeps the first `keep` columns (the row names) and takes as many of the rest as fit."""
    n = len(table.columns)
    if n <= keep + 1 or _width(console, table) <= console.width:
        return [table]
    names = list(range(keep))
    parts: list[list[int]] = []
    for i in range(keep, n):
        if parts and _width(console, _copy(table, names + parts[-1] + [i], False)) <= console.width:
            parts[-1].append(i)
        else:
            parts.append([i])
    return [_copy(table, names + part, k == 0) for k, part in enumerate(parts)]


def plain(cell: object) -> str:
    """A cell as text: rich markup (`[dim]…[/dim]`) and edge spaces removed."""
    if isinstance(cell, Text):
        return cell.plain.strip()
    return Text.from_markup(str(cell)).plain.strip()


def write_csv(tables: Iterable[Table], stream: IO[str] | None = None) -> int:
    """The rows of every table as one CSV: one header line (`table`, then each header once, in
    order of first use), one line per table row, blank where a table has no such column.
    Returns the number of rows written."""
    tables = list(tables)
    header: list[str] = []
    for t in tables:
        header += [h for h in (plain(c.header) for c in t.columns) if h not in header]
    writer = csv.writer(stream or sys.stdout, lineterminator="\n")
    writer.writerow(["table", *header])
    count = 0
    for t in tables:
        title = plain(t.title or "")
        columns = {plain(c.header): list(c.cells) for c in t.columns}
        for r in range(t.row_count):
            writer.writerow(
                [title, *(plain(columns[h][r]) if h in columns else "" for h in header)]
            )
            count += 1
    return count

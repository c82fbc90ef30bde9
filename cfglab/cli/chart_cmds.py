"""`cfglab verify` and `cfglab next-token`: the exact chart for strings from anywhere.

Input: one string per line, terminals separated by whitespace, from a file or `-` (stdin).
Lines are read, checked and answered in blocks, so a long input streams; a bad line stops the
command with a message naming it (file:line:col) and exit status 1, after the answers to the
lines before its block. Neither command imports torch or ray.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

from cfglab.cli.console import out
from cfglab.errors import CfglabError, LocatedError, Location

if TYPE_CHECKING:
    import numpy as np
    from rich.table import Table

    from cfglab.chart.front import Chart
    from cfglab.grammar.core import Grammar

MAX_TOKENS = 4096  # default bound on one input line
_BLOCK = 2000  # lines answered together (one batched chart call)

_BOUNDS = (
    f"Work per line is bounded: a line of more than --max-tokens tokens (default "
    f"{MAX_TOKENS}) is refused; for a recursive grammar, whose chart costs n³, a line of "
    "more than 400 tokens is refused; for a non-recursive grammar a line longer than its "
    "longest string is answered at once (invalid). Parse counts are exact integers of any "
    "size."
)


def register(app: typer.Typer) -> None:
    app.command("verify", help=_verify_help())(verify_command)
    app.command("next-token", help=_next_help())(next_token_command)


def _verify_help() -> str:
    return (
        "Check strings against a grammar: membership, number of parse trees, and the fewest "
        "token substitutions that make each string valid.\n\n"
        'With --json, one object per input line: {"valid": bool, "parses": int, '
        '"substitutions": int}. "substitutions" is null when no string of the language has '
        'the line\'s length; "parses" is null when a unit-rule cycle gives infinitely many.'
        "\n\n" + _BOUNDS
    )


def _next_help() -> str:
    return (
        "The grammar's true next-token distribution after every prefix of each string.\n\n"
        'With --json, one object per input line: {"tokens": [...], "next": [[p_eos, p_t1, '
        "..., p_tT], ...]} with len(tokens)+1 rows; row k is the distribution of token k "
        "given tokens[:k] (EOS = the string ends), terminals in the grammar's declared "
        "order. A row of zeros: tokens[:k] is not a prefix of any string of the language."
        "\n\n" + _BOUNDS
    )


_GRAMMAR = typer.Argument(..., help="Grammar file (.cfg).")
_INPUT = typer.Argument(Path("-"), help="Strings, one per line (default: - for stdin).")
_JSON = typer.Option(False, "--json", help="One JSON object per input line.")
_MAX = typer.Option(MAX_TOKENS, "--max-tokens", min=1, help="Refuse lines with more tokens.")


def verify_command(
    grammar: Path = _GRAMMAR, strings: Path = _INPUT, as_json: bool = _JSON, max_tokens: int = _MAX
) -> None:
    chart = _chart(grammar)
    table = None if as_json else _verify_table()
    n_valid = n_lines = 0
    for lines, block in _blocks(strings, chart, max_tokens):
        for line, tokens, verdict in zip(lines, block, chart.verify(block)):
            n_lines += 1
            n_valid += verdict.valid
            record = {
                "valid": verdict.valid,
                "parses": verdict.parses,
                "substitutions": verdict.substitutions,
            }
            if as_json:
                sys.stdout.write(json.dumps(record) + "\n")
            elif table is not None:
                table.add_row(
                    str(line),
                    str(len(tokens)),
                    "yes" if verdict.valid else "no",
                    _or_dash(verdict.parses),
                    _or_dash(verdict.substitutions),
                )
    if table is not None:
        out.print(table)
        out.print(f"{n_valid} of {n_lines} strings are in {chart.grammar.name}")


def next_token_command(
    grammar: Path = _GRAMMAR, strings: Path = _INPUT, as_json: bool = _JSON, max_tokens: int = _MAX
) -> None:
    chart = _chart(grammar)
    names = ["EOS", *chart.grammar.terminals]
    for lines, block in _blocks(strings, chart, max_tokens):
        for line, tokens, rows in zip(lines, block, chart.next_token_batch(block)):
            words = chart.grammar.decode(tokens)
            if as_json:
                record = {"tokens": words, "next": rows.tolist(), "columns": names}
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                out.print(_next_table(line, words, names, rows))


# --- input -------------------------------------------------------------------------------------
def _chart(path: Path) -> Chart:
    from cfglab.analysis.graph import require_string_length
    from cfglab.chart.front import Chart
    from cfglab.grammar.dsl import load_grammar

    return Chart(require_string_length(load_grammar(path)))


def _blocks(
    path: Path, chart: Chart, max_tokens: int
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """(line numbers, terminal-id arrays) per block of input lines; bad lines raise."""
    from cfglab.chart.front import GENERAL_MAX_TOKENS

    bound = min(max_tokens, GENERAL_MAX_TOKENS) if chart.recursive else max_tokens
    name = "<stdin>" if str(path) == "-" else str(path)
    lines: list[int] = []
    block: list = []
    seen = 0
    for number, text in _lines(path):
        seen += 1
        lines.append(number)
        block.append(_encode(chart.grammar, text, name, number, bound))
        if len(block) == _BLOCK:
            yield lines, block
            lines, block = [], []
    if block:
        yield lines, block
    if not seen:
        raise CfglabError(
            f"{name}: no input lines (one string per line, terminals separated by spaces)"
        )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    from contextlib import AbstractContextManager, nullcontext

    stream: AbstractContextManager[TextIO]
    if str(path) == "-":
        stream = nullcontext(sys.stdin)
    elif path.is_dir() or not path.exists():
        raise CfglabError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    else:
        stream = path.open(encoding="utf-8", errors="replace")
    with stream as f:
        for number, text in enumerate(f, start=1):
            yield number, text.rstrip("\r\n")


def _encode(g: Grammar, text: str, file: str, line: int, bound: int) -> np.ndarray:
    import numpy as np

    words = text.split()
    if not words:
        raise LocatedError(
            "empty line: no tokens (the empty string is in no grammar's language)",
            Location(file, line, 1, text),
            "write one string per line, terminals separated by spaces",
        )
    if len(words) > bound:
        raise LocatedError(
            f"{len(words)} tokens, more than the bound of {bound} per line",
            Location(file, line, 1, _clip(text)),
            "split the line, or raise --max-tokens (recursive grammars: at most 400)",
        )
    ids = g.symbol_ids
    known = set(g.terminals)
    out = np.empty(len(words), dtype=np.int64)
    for k, w in enumerate(words):
        if w not in known:
            raise LocatedError(
                f"unknown token {w!r}: not a terminal of grammar {g.name}",
                Location(file, line, _column(text, k) + 1, _clip(text)),
                "its terminals are "
                + " ".join(g.terminals[:20])
                + (" ..." if len(g.terminals) > 20 else ""),
            )
        out[k] = ids[w]
    return out


def _column(text: str, k: int) -> int:
    """0-based column of the k-th whitespace-separated word."""
    pos = 0
    for i, w in enumerate(text.split()):
        pos = text.index(w, pos)
        if i == k:
            return pos
        pos += len(w)
    return 0


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n] + " ..."


# --- rendering ---------------------------------------------------------------------------------
def _or_dash(x: int | None) -> str:
    return "-" if x is None else str(x)


def _verify_table() -> Table:
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("line", "tokens", "valid", "parses", "substitutions"):
        table.add_column(col, justify="right")
    return table


def _next_table(line: int, words: list[str], names: list[str], rows: np.ndarray) -> Table:
    from rich.table import Table

    table = Table(title=f"line {line}", show_edge=False)
    table.add_column("k", justify="right")
    table.add_column("token k", justify="left")
    for name in names:
        table.add_column(f"p({name})", justify="right")
    for k, row in enumerate(rows):
        token = words[k] if k < len(words) else "(end)"
        cells = (
            [f"{p:.4f}" for p in row]
            if row.sum() > 0
            else ["impossible prefix"] + [""] * (len(row) - 1)
        )
        table.add_row(str(k), token, *cells)
    return table

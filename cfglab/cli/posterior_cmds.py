"""`cfglab posterior`: what an ideal reader of each string (or prefix) knows of its tree labels.

Reads strings like `cfglab verify` (same input rules, same located errors for bad tokens) and
answers with the exact posterior of every label `cfglab sample --json` gives, under the
grammar's rule weights. Imports neither torch nor ray.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from cfglab.cli.chart_cmds import MAX_TOKENS, _blocks, _chart
from cfglab.cli.console import out
from cfglab.cli.tables import fit
from cfglab.grammar.levels import level_label

_HELP = (
    "Exact posteriors of every token's tree labels: P(s_l(i) = A) (its depth-l ancestor) and "
    "P(b_l(i) = 1) (it ends that ancestor), given the whole string, or with --prefix given only "
    "the tokens up to and including it (every valid completion weighed by its probability).\n\n"
    'With --json, one object per input line, levels as in `cfglab sample --json`: {"tokens": '
    '[...], "ancestors": [[{"N8": 0.75, "N7": 0.25}, ...one per token], ...one per level], '
    '"boundaries": [[0.25, ...one per token], ...one per level]}; ancestors list the '
    "nonterminals of non-zero probability. A line not in the language (with --prefix: a prefix "
    'of no string) gives {"tokens": [...], "valid": false}. Level l is the paper\'s NT{l+1} '
    "(the root is NT1). Non-recursive grammars only."
)


def register(app: typer.Typer) -> None:
    app.command("posterior", help=_HELP)(posterior_command)


def posterior_command(
    grammar: Path = typer.Argument(..., help="Grammar file (.cfg)."),
    strings: Path = typer.Argument(Path("-"), help="Strings, one per line (default: stdin)."),
    prefix: bool = typer.Option(
        False, "--prefix", help="Each token's posterior given only the tokens up to it."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input line."),
    max_tokens: int = typer.Option(
        MAX_TOKENS, "--max-tokens", min=1, help="Refuse lines with more tokens."
    ),
) -> None:
    chart = _chart(grammar)
    g = chart.grammar
    for lines, block in _blocks(strings, chart, max_tokens):
        for line, tokens, post in zip(lines, block, chart.posteriors(block, prefix=prefix)):
            record = posterior_record(g, tokens, post)
            if as_json:
                sys.stdout.write(json.dumps(record) + "\n")
            else:  # split across levels where the console is narrow, `i` and token kept
                for part in fit(_table(line, record, prefix), out, keep=2):
                    out.print(part)


def posterior_record(g, tokens, post) -> dict:  # noqa: ANN001 (Grammar, ids, Posterior | None)
    """The JSON shape of one line: `sample --json`'s layout with each label's posterior."""
    words = g.decode(tokens)
    if post is None:
        return {"tokens": words, "valid": False}
    names = g.nonterminals
    ancestors = []
    for level in post.ancestors:
        rows: list[dict[str, float]] = [{} for _ in range(len(level))]
        i, a = np.nonzero(level)
        p = level[i, a]
        order = np.lexsort((-p, i))  # each token's nonterminals, most probable first
        for row, nt, prob in zip(i[order].tolist(), a[order].tolist(), p[order].tolist()):
            rows[row][names[nt]] = prob
        ancestors.append(rows)
    return {"tokens": words, "ancestors": ancestors, "boundaries": post.boundaries.tolist()}


def _table(line: int, record: dict, prefix: bool):  # noqa: ANN202 (rich Table)
    from rich.table import Table

    given = "the tokens up to it" if prefix else "the whole string"
    table = Table(title=f"line {line}: posterior given {given}", show_edge=False)
    table.add_column("i", justify="right", no_wrap=True)
    table.add_column("token", no_wrap=True)
    if record.get("valid") is False:
        table.add_row("-", "not in the language" if not prefix else "a prefix of no string")
        return table
    levels = len(record["ancestors"])
    for level in range(levels):
        table.add_column(f"{level_label(level)}: ancestor · P(end)", no_wrap=True)
    for i, word in enumerate(record["tokens"]):
        cells = []
        for level in range(levels):
            top = record["ancestors"][level][i]
            best = " ".join(f"{a} {p:.2f}" for a, p in list(top.items())[:2]) or "-"
            cells.append(f"{best} · {record['boundaries'][level][i]:.2f}")
        table.add_row(str(i), word, *cells)
    return table

"""`cfglab implicit`: the implicit version of a grammar (Result 10), terminals hidden in bags."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from cfglab.cli.console import err


class BagsChoice(str, Enum):
    disjoint = "disjoint"
    overlap = "overlap"


class WeightsChoice(str, Enum):
    uniform = "uniform"
    nu1 = "nu1"


def register(app: typer.Typer) -> None:
    app.command("implicit")(implicit_command)


def implicit_command(
    grammar: Path = typer.Argument(..., help="Grammar file (.cfg)."),
    vocab: int = typer.Option(..., "--vocab", min=1, help="How many observed tokens (V)."),
    bags: BagsChoice = typer.Option(
        ..., "--bags", help="disjoint: round-robin; overlap: ⌊3V/(2|T|)⌋ random draws per bag."
    ),
    weights: WeightsChoice = typer.Option(
        WeightsChoice.uniform, "--weights", help="uniform, or nu1: weights 1, 2, …, n in a bag."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the overlap draws."),
    out: Path | None = typer.Option(None, "--out", help="Write the .cfg here (default: print)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write the implicit version of GRAMMAR: each terminal becomes a bag of observed tokens."""
    from cfglab.cli.dsl_cmds import _write
    from cfglab.grammar.dsl import format_grammar, load_grammar
    from cfglab.grammar.lexicon import implicit

    g = implicit(load_grammar(grammar), vocab, bags.value, weights.value, seed)
    _write(format_grammar(g), out, force)
    if out is not None:
        err.print(f"wrote {out}: grammar {g.name}, {len(g.hidden)} bags over {vocab} tokens")

"""`cfglab sample`: draw strings with their tree labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cfglab.cli.console import out

if TYPE_CHECKING:
    import numpy as np
    from rich.tree import Tree as RichTree

    from cfglab.grammar.core import Grammar, Tree
    from cfglab.grammar.sample import Samples


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)


def sample_command(
    grammar: Path = typer.Argument(..., help="Grammar file (.cfg)."),
    n: int = typer.Option(5, "-n", "--n", min=1, max=1_000_000, help="How many strings."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same strings)."),
    tree: bool = typer.Option(False, "--tree", help="Show each string's derivation tree."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per string."),
    max_length: int = typer.Option(4096, "--max-length", help="Bound for recursive grammars."),
) -> None:
    """Sample strings from a grammar, with every token's ancestors and NT boundaries."""
    from cfglab.analysis.graph import require_string_length
    from cfglab.grammar.dsl import load_grammar
    from cfglab.grammar.sample import sample

    g = require_string_length(load_grammar(grammar))
    samples = sample(g, n, seed, max_length=max_length)
    for i in range(len(samples)):
        if as_json:
            sys.stdout.write(json.dumps(sample_record(samples, i)) + "\n")
        elif tree:
            out.print(render_tree(samples.tree(i)))
        else:
            # plain write: rich would wrap long strings and break `sample | verify` pipes
            sys.stdout.write(" ".join(g.decode(samples.string(i))) + "\n")


def sample_record(samples: Samples, i: int) -> dict[str, Any]:
    """The JSON shape of one sampled string: tokens and per-depth labels.

    b_sharp: per token, the most ancestral level at which it ends a nonterminal (-1: none);
    ancestor_index: per level and token, the index of its ancestor among that level's nodes.
    """
    g = samples.grammar
    ancestors, boundaries = samples.labels(i)
    lo, hi = samples.offsets[i], samples.offsets[i + 1]
    return {
        "tokens": g.decode(samples.string(i)),
        "ancestors": [[g.nonterminals[a] if a >= 0 else None for a in row] for row in ancestors],
        "boundaries": boundaries.astype(int).tolist(),
        "b_sharp": samples.b_sharp[lo:hi].tolist(),
        "ancestor_index": samples.ancestor_index[:, lo:hi].tolist(),
        # the hidden terminal of each token (its lowest ancestor) in an implicit grammar;
        # in an ordinary grammar the token is its own terminal
        "terminals": _hidden_terminals(g, ancestors, g.decode(samples.string(i))),
    }


def _hidden_terminals(g: Grammar, ancestors: np.ndarray, tokens: list[str]) -> list[str]:
    if not g.hidden:
        return tokens
    lowest = [int(col[col >= 0][-1]) for col in ancestors.T]
    return [g.nonterminals[a] for a in lowest]


def render_tree(node: Tree, parent: RichTree | None = None) -> RichTree:
    from rich.tree import Tree as RichTree

    label = node.symbol if node.children else f'[green]"{node.symbol}"[/green]'
    branch = RichTree(f"[bold]{label}[/bold]") if parent is None else parent.add(label)
    for child in node.children:
        render_tree(child, branch)
    return branch

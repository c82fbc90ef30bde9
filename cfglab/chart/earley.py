"""The grammar as a lark Earley parser: an independent reference the exact chart is checked
against (tests) and timed against (benchmarks). Terminals are matched as space-separated words.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np

from cfglab.grammar.core import Grammar

if TYPE_CHECKING:
    from lark import Lark, Token
    from lark import Tree as LarkTree


def lark_grammar_text(g: Grammar) -> str:
    """lark's grammar syntax; nonterminals renamed n0, n1, ... (lark wants lower-case names)."""
    name = {nt: f"n{i}" for i, nt in enumerate(g.nonterminals)}
    lines = [
        f"{name[nt]}: "
        + " | ".join(" ".join(name.get(s) or json.dumps(s) for s in r.rhs) for r in g.rules_of(nt))
        for nt in g.nonterminals
    ]
    return "\n".join(lines + ['%ignore " "'])


def earley_parser(g: Grammar, explicit_ambiguity: bool = False) -> Lark:
    """An Earley parser; with explicit ambiguity every parse tree stays in the result."""
    from lark import Lark

    start = f"n{g.nonterminals.index(g.start)}"
    if explicit_ambiguity:
        return Lark(
            lark_grammar_text(g),
            start=start,
            parser="earley",
            ambiguity="explicit",
            keep_all_tokens=True,
        )
    return Lark(lark_grammar_text(g), start=start, parser="earley")


def count_trees(tree: LarkTree | Token) -> int:
    """Parse trees in an explicit-ambiguity lark tree (`_ambig` nodes are alternatives)."""
    from lark import Tree as LarkTree

    if not isinstance(tree, LarkTree):
        return 1
    if tree.data == "_ambig":
        return sum(count_trees(c) for c in tree.children)
    return math.prod(count_trees(c) for c in tree.children)


def earley_counts(g: Grammar, strings: list[np.ndarray]) -> list[int]:
    """Parse trees of each string by lark's explicit-ambiguity Earley parser (0 outside the
    language): the reference the chart's exact counts are checked against."""
    from lark.exceptions import LarkError

    parser = earley_parser(g, explicit_ambiguity=True)
    counts = []
    for s in strings:
        try:
            counts.append(count_trees(parser.parse(" ".join(g.decode(s)))))
        except LarkError:
            counts.append(0)
    return counts

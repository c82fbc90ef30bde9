"""Which tree targets the probes and attention statistics key by: the paper's levels, or heights.

The paper's targets (Part 1, §4.1) are per level: s_l(i), the level-l ancestor of token i, and
b_l(i), whether i ends it. A level means something when every nonterminal sits at one depth in
every tree (the paper's cfg3 grammars; `nonterminals_at_one_depth`). For any other grammar (a
recursive one such as `Expr -> Expr "+" Term | Term`, or nonterminals reached at several depths)
depth from the root mixes unrelated constituents and runs to dozens of levels, so those
grammars are keyed by **height** instead, counted from the leaves up and capped at `MAX_HEIGHT`:

  ↑h ancestor   the h-th nonterminal above token i (↑1 its parent, ↑2 the parent's parent, …)
  ↑h boundary   whether i is the last token of that constituent

Every token with a path of at least h nonterminals has a ↑h label, whatever its depth, so the
targets stay few and readable on any CFG. Rows of the height view are indexed by h (row 0 is
empty and never a target), so the probe and attention code run unchanged on either view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.grammar.levels import level_name
from cfglab.grammar.sample import Samples

if TYPE_CHECKING:
    from cfglab.grammar.core import Grammar

LEVELS = "levels"  # the paper's per-level targets (tree depth from the root)
HEIGHTS = "heights"  # the h-th ancestor counted from the token up, h ≤ MAX_HEIGHT
MAX_HEIGHT = 6  # enough to see above the preterminals; few enough for an 80-column table

NOTES = {
    LEVELS: "levels: tree depth from the root (level l is the paper's NT{l+1}); every "
    "nonterminal of this grammar sits at one depth",
    HEIGHTS: "heights: ↑h is the h-th nonterminal above the token (↑1 its parent), at most "
    f"↑{MAX_HEIGHT}; the grammar's nonterminals sit at several depths (or it is recursive), so "
    "depth from the root does not name one kind of constituent",
}


def nonterminals_at_one_depth(grammar: Grammar) -> bool:
    """Every reachable nonterminal appears at a single tree depth in every derivation.

    True for the paper's layered grammars; terminals may sit at any depth (their level is not a
    target), and so may an implicit grammar's hidden terminals (Result 10: terminals behind bags,
    probed as their own `terminal` target). False for recursive grammars, which have no levels.
    """
    levels = grammar.levels
    if levels is None:
        return False
    hidden = set(grammar.hidden or ())
    for r in grammar.rules:
        if r.lhs not in levels or r.lhs in hidden:
            continue
        for s in r.rhs:
            if grammar.is_terminal(s) or s in hidden:
                continue
            if levels[s] != levels[r.lhs] + 1:
                return False
    return True


def target_kind(grammar: Grammar) -> str:
    return LEVELS if nonterminals_at_one_depth(grammar) else HEIGHTS


def target_name(kind: str, level: int) -> str:
    """A target row's short name: the paper's NT{l+1}, or ↑h."""
    return level_name(level) if kind == LEVELS else f"↑{level}"


def target_label(kind: str, level: int) -> str:
    """A column heading: `level 2 (NT3)` or `↑2`."""
    return f"level {level} ({level_name(level)})" if kind == LEVELS else f"↑{level}"


@dataclass
class HeightSamples(Samples):
    """Samples relabelled by height: row h holds every token's ↑h ancestor and its end bit.

    Labels only: `tree` and `uses_rule` read rows as depths, so ask the original samples.
    """

    @property
    def b_sharp(self) -> np.ndarray:
        """The most ancestral height (the largest h) at which each token ends a constituent."""
        ends = self.boundaries[::-1]
        last = (len(ends) - 1 - ends.argmax(axis=0)).astype(np.int32)
        return np.where(ends.any(axis=0), last, np.int32(-1))


def by_height(samples: Samples, cap: int = MAX_HEIGHT) -> HeightSamples:
    """The height view of sampled strings (rows 0..cap, row 0 empty)."""
    path = (samples.ancestors >= 0).sum(axis=0)  # nonterminals above each token
    total = samples.ancestors.shape[1]
    cols = np.arange(total)
    anc = np.full((cap + 1, total), -1, dtype=samples.ancestors.dtype)
    bnd = np.zeros((cap + 1, total), dtype=bool)
    rules = np.full((cap + 1, total), -1, dtype=samples.rules.dtype)
    for h in range(1, cap + 1):
        d = path - h
        ok = d >= 0
        anc[h, ok] = samples.ancestors[d[ok], cols[ok]]
        bnd[h, ok] = samples.boundaries[d[ok], cols[ok]]
        rules[h, ok] = samples.rules[d[ok], cols[ok]]
    return HeightSamples(
        samples.grammar, samples.tokens, samples.offsets, anc, bnd, rules, samples.rejected
    )


def target_view(samples: Samples) -> tuple[Samples, str]:
    """The samples keyed as their grammar's targets want, and which kind that is."""
    kind = target_kind(samples.grammar)
    return (samples if kind == LEVELS else by_height(samples)), kind


def names(kind: str, levels: Any) -> dict[str, str]:
    return {str(v): target_name(kind, int(v)) for v in levels}

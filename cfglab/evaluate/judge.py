"""The one door from evaluation to the exact chart: every verdict cfglab reports passes here.

Evaluation never parses on its own; it asks `cfglab.chart.front.Chart` (membership, inside
probabilities, fewest substitutions, next-token truth, parse trees) through this small adapter,
so a change of the chart's API touches one file. Strings are terminal-id arrays (0..T-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.grammar.core import Grammar

if TYPE_CHECKING:
    from cfglab.chart.front import Chart

Strings = Sequence[np.ndarray]


class Judge:
    """Exact answers about strings of one grammar."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self.n_terminals = len(grammar.terminals)

    @cached_property
    def chart(self) -> Chart:
        from cfglab.chart.front import Chart

        return Chart(self.grammar)

    def accepts(self, strings: Strings) -> np.ndarray:
        """(n,) bool: which strings are in the language (the empty string never is)."""
        return _by_nonempty(strings, False, lambda s: np.asarray(self.chart.accepts(s), bool))

    def log_prob(self, strings: Strings) -> np.ndarray:
        """(n,) float64 log p_true(x) (inside probability); -inf outside the language."""
        return _by_nonempty(
            strings, -np.inf, lambda s: np.asarray(self.chart.log_inside(s), np.float64)
        )

    def min_substitutions(self, strings: Strings) -> np.ndarray:
        """(n,) int64 fewest token substitutions that make each string valid (-1: none can)."""

        def run(s: list[np.ndarray]) -> np.ndarray:
            return np.array([_count(r) for r in self.chart.min_substitutions(s)], dtype=np.int64)

        return _by_nonempty(strings, -1, run)

    def prefix_substitutions(self, strings: Strings, prefix_lengths: Sequence[int]) -> np.ndarray:
        """(n,) fewest substitutions inside each string's first k tokens that make it valid.

        -1 where no change of the prefix alone can make the string valid.
        """

        def run(s: list[np.ndarray], ks: list[int]) -> np.ndarray:
            found = self.chart.min_substitutions(s, editable=ks)
            return np.array([_count(r) for r in found], dtype=np.int64)

        ks = [int(k) for k in prefix_lengths]
        keep = [i for i, s in enumerate(strings) if len(s)]
        out = np.full(len(strings), -1, dtype=np.int64)
        if keep:
            out[keep] = run([np.asarray(strings[i]) for i in keep], [ks[i] for i in keep])
        return out

    def next_token(self, string: np.ndarray) -> np.ndarray:
        """(len+1, 1+T) true next-token rows [p_eos, p_t0, ..., p_t(T-1)] after every prefix.

        A row of zeros: the prefix continues no string of the language.
        """
        return self.next_tokens([string])[0]

    def next_tokens(self, strings: Strings) -> list[np.ndarray]:
        """`next_token` of many strings in one batched chart pass."""
        rows = self.chart.next_token_batch([np.asarray(s, dtype=np.int64) for s in strings])
        return [np.asarray(r, np.float64) for r in rows]

    def uses_rule(self, strings: Strings, rule: int) -> np.ndarray:
        """(n,) bool: some parse tree of the (valid) string expands a node with `rule`.

        Exact for any number of parses (cfglab.chart.rules: the definition training and the
        reference frequency use too).
        """
        from cfglab.chart.rules import rule_use

        return rule_use(self.grammar, rule).uses(strings)


def _count(result: Any) -> int:  # a count, or (count, repaired)
    count = result[0] if isinstance(result, tuple) else result
    return -1 if count is None else int(count)


def _by_nonempty(
    strings: Strings, empty_value: Any, run: Callable[[list[np.ndarray]], Any]
) -> np.ndarray:
    """Apply a batched chart call to the non-empty strings; the empty string gets `empty_value`."""
    keep = [i for i, s in enumerate(strings) if len(s)]
    values = run([np.asarray(strings[i]) for i in keep]) if keep else np.zeros(0)
    out = np.full(len(strings), empty_value, dtype=values.dtype if keep else type(empty_value))
    if keep:
        out[keep] = values
    return out

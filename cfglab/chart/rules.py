"""Which strings use a rule: "some parse tree of the string expands a node with rule R".

One definition serves the held-out-rule experiment everywhere (the training filter, the rule's
true frequency, the verdict on generations): some parse, not every parse and not the sampled tree.
A learner never sees trees, so a training string that *can* be derived with R is evidence for R
even when its sampled tree avoided it; filtering on some-parse keeps every such string out of
training, and measuring generations and fresh strings the same way makes "the model generates R
as often as the grammar does" a like-for-like comparison. (Every-parse would let ambiguous
strings with an R-reading into training; the sampled tree is unknown for a generation.)

Exact, by counting: x uses R iff it has more parse trees under G than under G with R blocked
(R's right side replaced by a terminal no string contains), so no tree enumeration and no limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from cfglab.chart.front import Chart
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.sample import Samples

_BLOCK = "\x00blocked"  # a terminal no string contains: a rule rewritten to it never fires


class RuleUse:
    """`uses(strings)`: (n,) bool, some parse tree of each string uses rule index `rule`."""

    def __init__(self, grammar: Grammar, rule: int) -> None:
        self.grammar, self.rule = grammar, rule
        self.chart = Chart(grammar)
        self.blocked = Chart(blocked(grammar, rule))

    def uses(self, strings: Sequence[np.ndarray], avoided: np.ndarray | None = None) -> np.ndarray:
        """`avoided[i]`: a known parse of string i avoids R (a sampled tree), so an unambiguous
        string i does not use R and needs no second count."""
        strings = [np.asarray(s, dtype=np.int64) for s in strings]
        out = np.zeros(len(strings), dtype=bool)
        keep = [i for i, s in enumerate(strings) if len(s)]
        if not keep:
            return out
        full = self.chart.count_parses([strings[i] for i in keep])
        ask = [
            (i, c)
            for i, c in zip(keep, full)
            if c > 0 and not (avoided is not None and avoided[i] and c == 1)
        ]
        if ask:
            rest = self.blocked.count_parses([strings[i] for i, _ in ask])
            for (i, c), r in zip(ask, rest):
                out[i] = c > r
        return out


def samples_using(grammar: Grammar, samples: Samples, rule: int) -> np.ndarray:
    """(n,) bool: sampled strings with some parse using `rule` (the sampled tree answers first,
    so only strings whose sampled tree avoids the rule are charted, ambiguous ones twice)."""
    used = samples.uses_rule(rule)
    rest = np.flatnonzero(~used)
    if len(rest):
        strings = samples.strings()
        used[rest] = rule_use(grammar, rule).uses(
            [strings[i] for i in rest], avoided=np.ones(len(rest), dtype=bool)
        )
    return used


@cache
def rule_use(grammar: Grammar, rule: int) -> RuleUse:
    """One RuleUse per (grammar, rule), its charts compiled once."""
    return RuleUse(grammar, rule)


def blocked(grammar: Grammar, rule: int) -> Grammar:
    """The grammar with rule `rule` unable to fire (same terminal ids, one extra terminal)."""
    rules = list(grammar.rules)
    r = rules[rule]
    rules[rule] = Rule(r.lhs, (_BLOCK,), r.weight)
    return Grammar(
        name=f"{grammar.name}-without-{rule}",
        start=grammar.start,
        terminals=(*grammar.terminals, _BLOCK),
        rules=tuple(rules),
    )

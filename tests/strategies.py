"""Hypothesis strategies shared by the test suite: small random grammars."""

from __future__ import annotations

from hypothesis import strategies as st

from cfglab.grammar.core import Grammar, Rule


@st.composite
def layered_grammars(
    draw, max_levels: int = 3, max_width: int = 3, max_terminals: int = 3, weighted: bool = False
) -> Grammar:
    """A random layered grammar: level l's rules draw their right sides from level l+1."""
    n_levels = draw(st.integers(1, max_levels))
    widths = [1] + [draw(st.integers(1, max_width)) for _ in range(n_levels - 1)]
    n_terms = draw(st.integers(1, max_terminals))
    terminals = tuple("abcdefgh"[:n_terms])
    names = [[f"L{l}_{i}" for i in range(w)] for l, w in enumerate(widths)]
    rules: list[Rule] = []
    for l, level in enumerate(names):
        below = names[l + 1] if l + 1 < n_levels else list(terminals)
        for nt in level:
            n_rules = draw(st.integers(1, 3))
            seen = set()
            for _ in range(n_rules):
                rhs = tuple(draw(st.lists(st.sampled_from(below), min_size=1, max_size=3)))
                if rhs in seen:
                    continue
                seen.add(rhs)
                w = draw(st.floats(0.1, 5.0)) if weighted else 1.0
                rules.append(Rule(nt, rhs, w))
    return Grammar("random", names[0][0], terminals, tuple(rules))


@st.composite
def small_grammars(
    draw, max_nonterminals: int = 4, max_terminals: int = 3, recursive: bool = False
) -> Grammar:
    """A random ε-free grammar; non-recursive unless asked (rules point only to later NTs)."""
    n_nt = draw(st.integers(1, max_nonterminals))
    n_terms = draw(st.integers(1, max_terminals))
    terminals = tuple("abcdefgh"[:n_terms])
    nts = [f"N{i}" for i in range(n_nt)]
    rules: list[Rule] = []
    for i, nt in enumerate(nts):
        later = nts[i:] if recursive else nts[i + 1 :]
        pool = list(terminals) + later
        # the first rule is all-terminal so every nonterminal is productive
        first = tuple(draw(st.lists(st.sampled_from(terminals), min_size=1, max_size=2)))
        alts = {first}
        for _ in range(draw(st.integers(0, 2))):
            alts.add(tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))))
        rules.extend(Rule(nt, rhs) for rhs in sorted(alts))
    return Grammar("random", nts[0], terminals, tuple(rules))

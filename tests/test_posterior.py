"""Label posteriors (chart/posterior.py) against brute force: every parse tree enumerated straight
from the rules (no chart), on random small ambiguous grammars, and lark's explicit parse forest
on cfg3f strings."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cfglab.chart.front import Chart
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.sample import sample
from tests.strategies import layered_grammars, small_grammars

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TOL = 1e-9

# A tree here: (symbol, children) for a nonterminal node, a terminal name for a leaf.


def _trees_of(g: Grammar, tokens: tuple[str, ...]) -> list[tuple[float, object]]:
    """Every (probability, tree) deriving exactly `tokens` from the start symbol."""

    @cache
    def spans(sym: str, s: int, e: int) -> tuple[tuple[float, object], ...]:
        if g.is_terminal(sym):
            return ((1.0, sym),) if e == s + 1 and tokens[s] == sym else ()
        out = []
        for r in g.rules_of(sym):
            for p, kids in seqs(r.rhs, s, e):
                out.append((g.rule_probability(r) * p, (sym, kids)))
        return tuple(out)

    @cache
    def seqs(rhs: tuple[str, ...], s: int, e: int) -> tuple[tuple[float, tuple], ...]:
        if len(rhs) == 1:
            return tuple((p, (t,)) for p, t in spans(rhs[0], s, e))
        out = []
        for mid in range(s + 1, e - len(rhs) + 2):
            for p, first in spans(rhs[0], s, mid):
                for q, rest in seqs(rhs[1:], mid, e):
                    out.append((p * q, (first, *rest)))
        return tuple(out)

    return list(spans(g.start, 0, len(tokens)))


def _labels(g: Grammar, tree: object, n: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """One tree's one-hot ancestors (depth, n, N) and boundaries (depth, n)."""
    nts = {nt: k for k, nt in enumerate(g.nonterminals)}
    anc = np.zeros((depth, n, len(nts)))
    ends = np.zeros((depth, n, len(nts)))

    def walk(node: object, s: int, d: int) -> int:
        if isinstance(node, str):
            return s + 1
        sym, kids = node  # type: ignore[misc]
        e = s
        for k in kids:
            e = walk(k, e, d + 1)
        anc[d, s:e, nts[sym]] = 1
        ends[d, e - 1, nts[sym]] = 1
        return e

    walk(tree, 0, 0)
    return anc, ends


def _expected(g: Grammar, weighted: list[tuple[float, object]], n: int, prefix: int | None = None):
    depth = int(g.depth or 1)
    z = sum(p for p, _ in weighted)
    anc = np.zeros((depth, n, len(g.nonterminals)))
    ends = np.zeros((depth, n, len(g.nonterminals)))
    for p, tree in weighted:
        a, b = _labels(g, tree, _length(tree), depth)
        k = n if prefix is None else prefix
        anc[:, :k] += p / z * a[:, :k]
        ends[:, :k] += p / z * b[:, :k]
    return anc, ends


def _length(tree: object) -> int:
    return 1 if isinstance(tree, str) else sum(_length(k) for k in tree[1])  # type: ignore[index]


def _strings(g: Grammar, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    valid = [s for s in sample(g, n, seed).strings() if len(s) <= 9]
    flipped = []
    for s in valid[: n // 2]:
        s = s.copy()
        s[rng.integers(len(s))] = rng.integers(len(g.terminals))
        flipped.append(s)
    return valid + flipped


def _check_whole(g: Grammar, strings: list[np.ndarray]) -> None:
    chart = Chart(g)
    for s, post in zip(strings, chart.posteriors(strings)):
        weighted = _trees_of(g, tuple(g.decode(s)))
        if not weighted:
            assert post is None
            continue
        assert post is not None
        anc, ends = _expected(g, weighted, len(s))
        np.testing.assert_allclose(post.ancestors, anc, atol=TOL, rtol=0)
        np.testing.assert_allclose(post.ends, ends, atol=TOL, rtol=0)
        np.testing.assert_allclose(post.boundaries, ends.sum(-1), atol=TOL, rtol=0)


@SETTINGS
@given(g=layered_grammars(max_levels=4, weighted=True), seed=st.integers(0, 99))
def test_whole_string_posterior_matches_tree_enumeration_layered(g: Grammar, seed: int) -> None:
    _check_whole(g, _strings(g, 8, seed))


@SETTINGS
@given(g=small_grammars(max_nonterminals=5), seed=st.integers(0, 99))
def test_whole_string_posterior_matches_tree_enumeration_unlayered(g: Grammar, seed: int) -> None:
    """Terminals and nonterminals mixed on right sides: a symbol's depth varies by tree."""
    _check_whole(g, _strings(g, 8, seed))


def _language(g: Grammar, limit: int = 4000) -> list[tuple[float, object]] | None:
    """Every (probability, tree) of the grammar; None when there are more than `limit`."""
    count: dict[str, int] = {}
    levels = g.levels or {}
    for nt in sorted(levels, key=lambda x: -levels[x]):
        count[nt] = sum(
            math.prod(1 if g.is_terminal(s) else count[s] for s in r.rhs) for r in g.rules_of(nt)
        )
    if count[g.start] > limit:
        return None

    def trees(sym: str) -> list[tuple[float, object]]:
        if g.is_terminal(sym):
            return [(1.0, sym)]
        out: list[tuple[float, object]] = []
        for r in g.rules_of(sym):
            combos: list[tuple[float, tuple]] = [(g.rule_probability(r), ())]
            for child in r.rhs:
                combos = [(p * q, (*ks, t)) for p, ks in combos for q, t in trees(child)]
            out.extend((p, (sym, ks)) for p, ks in combos)
        return out

    return trees(g.start)


def _leaves(tree: object) -> tuple[str, ...]:
    if isinstance(tree, str):
        return (tree,)
    return tuple(x for k in tree[1] for x in _leaves(k))  # type: ignore[index]


def _check_prefix(g: Grammar, seed: int) -> None:
    language = _language(g)
    assume(language is not None)
    assert language is not None
    chart = Chart(g)
    rng = np.random.default_rng(seed)
    picks = [language[int(k)] for k in rng.integers(len(language), size=4)]
    lines = [g.encode(list(_leaves(t))).astype(np.int64) for _, t in picks]
    lines += [rng.integers(len(g.terminals), size=int(rng.integers(1, 5))) for _ in range(3)]
    posts = chart.posteriors(lines, prefix=True)
    for line, post in zip(lines, posts):
        words = tuple(g.decode(line))
        ok = [(p, t) for p, t in language if _leaves(t)[: len(words)] == words]
        if not ok:
            assert post is None
            continue
        assert post is not None
        for i in range(len(words)):
            given = [(p, t) for p, t in language if _leaves(t)[: i + 1] == words[: i + 1]]
            anc, ends = _expected(g, given, len(words), prefix=i + 1)
            np.testing.assert_allclose(post.ancestors[:, i], anc[:, i], atol=TOL, rtol=0)
            np.testing.assert_allclose(post.ends[:, i], ends[:, i], atol=TOL, rtol=0)
            np.testing.assert_allclose(post.boundaries[:, i], ends[:, i].sum(-1), atol=TOL)


@SETTINGS
@given(g=layered_grammars(max_levels=4, weighted=True), seed=st.integers(0, 99))
def test_prefix_posterior_marginalises_every_completion_layered(g: Grammar, seed: int) -> None:
    _check_prefix(g, seed)


@SETTINGS
@given(g=small_grammars(max_nonterminals=5), seed=st.integers(0, 99))
def test_prefix_posterior_marginalises_every_completion_unlayered(g: Grammar, seed: int) -> None:
    _check_prefix(g, seed)


def test_a_hand_checked_ambiguous_string() -> None:
    """S -> A "b" | "a" B (weights 3:1), A -> "a", B -> "b": "a b" has both trees at 3/4, 1/4."""
    g = Grammar(
        "amb",
        "S",
        ("a", "b"),
        (
            Rule("S", ("A", "b"), 3.0),
            Rule("S", ("a", "B"), 1.0),
            Rule("A", ("a",)),
            Rule("B", ("b",)),
        ),
    )
    (post,) = Chart(g).posteriors([np.array([0, 1])])
    a, b = g.nonterminals.index("A"), g.nonterminals.index("B")
    assert post.ancestors[1, 0, a] == pytest.approx(0.75)
    assert post.ancestors[1, 1, b] == pytest.approx(0.25)
    assert post.boundaries[1, 0] == pytest.approx(0.75)
    (pre,) = Chart(g).posteriors([np.array([0])], prefix=True)
    assert pre.ancestors[1, 0, a] == pytest.approx(0.75)


def _paper(name: str) -> Grammar:
    from cfglab.grammar.dsl import load_grammar

    return load_grammar(ROOT / "grammars" / f"{name}.cfg")


def test_unambiguous_cfg3b_posterior_is_the_sampled_tree() -> None:
    g = _paper("cfg3b")
    s = sample(g, 20, 3)
    posts = Chart(g).posteriors(s.strings())
    for i, post in enumerate(posts):
        anc, bnd = s.labels(i)
        depth = anc.shape[0]
        want = np.zeros_like(post.ancestors[:depth])
        d, k = np.nonzero(anc >= 0)
        want[d, k, anc[d, k]] = 1
        np.testing.assert_allclose(post.ancestors[:depth], want, atol=TOL)
        np.testing.assert_allclose(post.boundaries[:depth], bnd, atol=TOL)


def _lark_trees(node: object) -> list[object]:
    """The trees of an explicit-ambiguity lark forest, as (symbol name, children) / leaves."""
    from lark import Tree as LarkTree

    if not isinstance(node, LarkTree):
        return [str(node)]
    if node.data == "_ambig":
        return [t for c in node.children for t in _lark_trees(c)]
    combos: list[tuple] = [()]
    for c in node.children:
        combos = [(*ks, t) for ks in combos for t in _lark_trees(c)]
    return [(str(node.data), ks) for ks in combos]


def test_whole_string_posterior_matches_lark_forest_on_cfg3f() -> None:
    from cfglab.chart.earley import earley_parser

    g = _paper("cfg3f")
    names = {f"n{i}": nt for i, nt in enumerate(g.nonterminals)}
    rules = {(r.lhs, r.rhs): g.rule_probability(r) for r in g.rules}

    def rename(t: object) -> tuple[float, object]:
        if isinstance(t, str):
            return 1.0, t
        kids = [rename(k) for k in t[1]]  # type: ignore[index]
        sym = names[t[0]]  # type: ignore[index]
        rhs = tuple(k[1] if isinstance(k[1], str) else k[1][0] for k in kids)
        return rules[(sym, rhs)] * math.prod(p for p, _ in kids), (sym, tuple(k for _, k in kids))

    strings = sorted(sample(g, 60, 11).strings(), key=len)[:8]
    parser = earley_parser(g, explicit_ambiguity=True)
    posts = Chart(g).posteriors(strings)
    n_ambiguous = 0
    for s, post in zip(strings, posts):
        forest = _lark_trees(parser.parse(" ".join(g.decode(s))))
        weighted = [rename(t) for t in forest]
        n_ambiguous += len(weighted) > 1
        anc, ends = _expected(g, weighted, len(s))
        np.testing.assert_allclose(post.ancestors, anc, atol=TOL, rtol=0)
        np.testing.assert_allclose(post.ends, ends, atol=TOL, rtol=0)
        np.testing.assert_allclose(post.boundaries, ends.sum(-1), atol=TOL, rtol=0)
    assert n_ambiguous >= 1  # the test exercised a forest, not only single trees


def test_recursive_grammar_is_refused_with_a_message() -> None:
    g = Grammar("rec", "S", ("a",), (Rule("S", ("a", "S")), Rule("S", ("a",))))
    with pytest.raises(CfglabError, match="recursive"):
        Chart(g).posteriors([np.array([0, 0])])

"""Ambiguity statistics: counts against the chart, the witness's trees, the local score's DP
against enumeration of boundary vectors, flip sensitivity against brute force."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.analysis.ambiguity import (
    _window_bits,
    ambiguity_report,
    bracketed,
    first_difference,
    flip_sensitivity,
)
from cfglab.chart.front import Chart
from cfglab.grammar.core import Grammar, Rule, Tree
from cfglab.grammar.sample import sample

ROOT = Path(__file__).resolve().parents[1]


def _cfg3f() -> Grammar:
    from cfglab.grammar.dsl import load_grammar

    return load_grammar(ROOT / "grammars" / "cfg3f.cfg")


def _leaves_ids(g: Grammar, tree: Tree) -> list[int]:
    return [g.symbol_ids[x] for x in tree.leaves()]


def test_cfg3f_report_matches_the_chart_and_its_witness_is_real() -> None:
    g = _cfg3f()
    report = ambiguity_report(g, n_strings=120, seed=3)
    strings = sample(g, 120, np.random.default_rng(3)).strings()  # the report's own draw
    counts = Chart(g).count_parses(strings)
    assert report["n_strings"] == 120
    assert report["fraction_ambiguous"] == pytest.approx(np.mean([c > 1 for c in counts]))
    assert report["max_parses"] == max(counts)
    assert sum(report["parse_histogram"].values()) == 120
    assert 0 < report["fraction_ambiguous"] < 1  # the paper's cfg3f: some strings, not all
    json.dumps(report)  # JSON-ready
    w = report["witness"]
    tokens = g.encode(w["tokens"])
    assert w["parses"] == Chart(g).count_parses([tokens])[0] > 1
    assert len(tokens) == min(len(s) for s, c in zip(strings, counts) if c > 1)
    a, b = w["trees"]
    assert a != b and a.count('"') == b.count('"') == 2 * len(tokens)
    i, j = w["span"]
    ra, rb = w["readings"]
    assert ra != rb and ra.count('"') == rb.count('"') == 2 * (j - i)
    la = report["local_ambiguity"]
    assert set(la) >= {"window", "score", "definition"} and la["score"] >= 0
    assert all(r >= 1 for r in la["readings_per_constituent"].values())
    assert 0 <= report["flip_sensitivity"] < 0.5


def test_first_difference_finds_the_lowest_diverging_node() -> None:
    g = Grammar(
        "amb",
        "S",
        ("a",),
        (
            Rule("S", ("X", "a")),
            Rule("X", ("A", "A")),
            Rule("X", ("B", "B")),
            Rule("A", ("a",)),
            Rule("B", ("a",)),
        ),
    )
    trees = Chart(g).parse_trees([0, 0, 0], limit=5)
    assert len(trees) == 2
    (i, j), ra, rb = first_difference(*trees)
    assert (i, j) == (0, 2)
    assert {bracketed(ra), bracketed(rb)} == {'(X (A "a") (A "a"))', '(X (B "a") (B "a"))'}


def test_an_unambiguous_grammar_has_no_witness() -> None:
    g = Grammar(
        "plain",
        "S",
        ("a", "b"),
        (Rule("S", ("A", "B")), Rule("A", ("a",)), Rule("A", ("a", "a")), Rule("B", ("b",))),
    )
    report = ambiguity_report(g, n_strings=50, seed=0)
    assert report["fraction_ambiguous"] == 0 and report["max_parses"] == 1
    assert report["witness"] is None


def test_recursive_and_unit_cycle_grammars_are_reported_not_crashed() -> None:
    catalan = Grammar("catalan", "S", ("a",), (Rule("S", ("S", "S"), 0.2), Rule("S", ("a",), 0.8)))
    report = ambiguity_report(catalan, n_strings=30, seed=1)
    assert report["max_parses"] >= 1 and "note" in report["local_ambiguity"]
    assert report["flip_sensitivity"] is None  # one terminal: no substitution exists
    loop = Grammar(
        "loop", "S", ("a", "b"), (Rule("S", ("A",)), Rule("A", ("S",)), Rule("A", ("a", "b")))
    )
    report = ambiguity_report(loop, n_strings=10, seed=0)
    assert "fraction_ambiguous" not in report and "infinitely many" in report["note"]


def _admitted_by_enumeration(derivable: set[tuple[int, int]], a: int, w: int, max_len: int) -> int:
    total = 0
    for bits in itertools.product((0, 1), repeat=w):
        ends = [a + k for k, b in enumerate(bits) if b]
        if not ends:
            total += w <= max_len - 1
            continue
        ok = ends[0] - a + 1 <= max_len and (a + w - 1 - ends[-1]) <= max_len - 1
        ok &= all((x + 1, y + 1) in derivable for x, y in itertools.pairwise(ends))
        total += ok
    return total


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 11), st.integers(1, 5)), max_size=25),
    st.integers(1, 7),
    st.integers(1, 6),
)
def test_window_bits_count_boundary_vectors_like_enumeration(pairs, w: int, max_len: int) -> None:
    n = 12
    derivable = {(i, i + L) for i, L in pairs if i + L <= n}
    spans = np.array([(0, i, j) for i, j in sorted(derivable)], dtype=np.int64).reshape(-1, 3)
    bits = _window_bits(spans, n, w, max_len)
    for a in range(n - w + 1):
        want = _admitted_by_enumeration(derivable, a, w, max_len)
        assert bits[a] == pytest.approx(np.log2(max(want, 1)))


def test_flip_sensitivity_against_brute_force() -> None:
    # every string of length 2 over {a, b} is valid: every flip stays in the language
    g = Grammar(
        "all2", "S", ("a", "b"), (Rule("S", ("X", "X")), Rule("X", ("a",)), Rule("X", ("b",)))
    )
    strings = sample(g, 20, 0).strings()
    assert flip_sensitivity(Chart(g), strings, 4, np.random.default_rng(0)) == 1.0
    # only "a b": any single flip leaves the language
    h = Grammar("ab", "S", ("a", "b"), (Rule("S", ("a", "b")),))
    assert flip_sensitivity(Chart(h), sample(h, 5, 0).strings(), 3, np.random.default_rng(0)) == 0.0

"""The language's entropy: exact H(trees), the exact tree posterior, Monte Carlo H(strings)."""

from __future__ import annotations

import math
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from cfglab.analysis.checks import check_grammar
from cfglab.analysis.entropy import entropy_report, posterior_tree_entropy, tree_entropy
from cfglab.chart.front import Chart
from cfglab.errors import LocatedError
from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import load_grammar, parse_grammar
from tests.strategies import layered_grammars

ROOT = Path(__file__).resolve().parents[1]

# Finite and ambiguous: "a a" has two trees (S -> A A and S -> B), "a a a" three.
AMBIGUOUS = """grammar amb
start S
S -> A A [2] | B | A B | C
A -> "a" | "b"
B -> "a" "a" [3] | "a" A | A "b"
C -> A A A | "a" B
"""


def _by_recursion(g: Grammar) -> tuple[float, float]:
    """H(trees) and E[length] by the top-down recursion H(A) = Σ_r p_r (−log p_r + Σ H(child))."""

    @cache
    def h(sym: str) -> tuple[float, float]:
        if g.is_terminal(sym):
            return 0.0, 1.0
        ent = length = 0.0
        for rule in g.rules_of(sym):
            p = g.rule_probability(rule)
            kids = [h(s) for s in rule.rhs]
            ent += p * (-math.log(p) + sum(k[0] for k in kids))
            length += p * sum(k[1] for k in kids)
        return ent, length

    return h(g.start)


def _trees(g: Grammar, sym: str) -> list[tuple[tuple[str, ...], float]]:
    """Every (yield, log p) of the trees below `sym` (finite grammars only)."""
    if g.is_terminal(sym):
        return [((sym,), 0.0)]
    out = []
    for rule in g.rules_of(sym):
        parts: list[tuple[tuple[str, ...], float]] = [((), math.log(g.rule_probability(rule)))]
        for child in rule.rhs:
            parts = [(y + cy, lp + clp) for y, lp in parts for cy, clp in _trees(g, child)]
        out += parts
    return out


def _brute_force(g: Grammar) -> tuple[float, dict[tuple[str, ...], float]]:
    """Exact H(strings) and each string's H(tree | string) by enumerating every tree."""
    by_string: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for y, lp in _trees(g, g.start):
        by_string[y].append(lp)
    h_strings, posterior = 0.0, {}
    for y, lps in by_string.items():
        px = sum(math.exp(v) for v in lps)
        h_strings -= px * math.log(px)
        posterior[y] = -sum(math.exp(v) / px * (v - math.log(px)) for v in lps)
    return h_strings, posterior


def test_cfg3b_tree_entropy_matches_the_recursion_and_the_expected_length() -> None:
    g = load_grammar(ROOT / "grammars" / "cfg3b.cfg")
    exact = tree_entropy(g)
    assert exact is not None
    h, length = _by_recursion(g)
    assert math.isclose(exact["h_trees"], h, rel_tol=1e-12)
    assert math.isclose(exact["expected_length"], length, rel_tol=1e-12)
    checked = check_grammar(g, ambiguity_strings=0).lengths
    assert checked is not None and math.isclose(exact["expected_length"], checked.expected or 0)


def test_cfg3b_is_exact_and_matches_sampled_surprisal() -> None:
    """Unambiguous: H(strings) = H(trees), and −log p(x) of samples averages to it."""
    from cfglab.grammar.sample import sample

    g = load_grammar(ROOT / "grammars" / "cfg3b.cfg")
    report = entropy_report(g, n_strings=100, seed=1)
    assert report["exact"] and report["h_strings"] == report["h_trees"]
    surprisal = -Chart(g).log_inside(sample(g, 400, 3).strings())
    half = 1.96 * surprisal.std(ddof=1) / math.sqrt(len(surprisal))
    assert abs(surprisal.mean() - report["h_strings"]) < half + 1e-9
    assert math.isclose(report["per_token"], report["h_strings"] / report["expected_length"])


def test_posterior_entropy_is_exact_on_every_string_of_an_ambiguous_grammar() -> None:
    g = parse_grammar(AMBIGUOUS)
    _, posterior = _brute_force(g)
    strings = list(posterior)
    got = posterior_tree_entropy(Chart(g), [g.encode(list(s)) for s in strings])
    want = np.array([posterior[s] for s in strings])
    assert want.max() > 0.5  # the grammar really is ambiguous
    assert np.allclose(got, want, atol=1e-6)


def test_monte_carlo_h_strings_covers_brute_force_enumeration() -> None:
    g = parse_grammar(AMBIGUOUS)
    truth, _ = _brute_force(g)
    report = entropy_report(g, n_strings=3000, seed=0)
    lo, hi = report["h_strings_ci95"]
    assert not report["exact"] and report["h_strings"] < report["h_trees"]
    assert lo <= truth <= hi
    assert hi - lo < 0.1  # the interval says something


@settings(max_examples=25, deadline=None)
@given(layered_grammars(max_levels=3, max_width=2, weighted=True))
def test_posterior_entropy_matches_enumeration_on_random_grammars(g: Grammar) -> None:
    _, posterior = _brute_force(g)
    strings = list(posterior)[:40]
    got = posterior_tree_entropy(Chart(g), [g.encode(list(s)) for s in strings])
    assert np.allclose(got, [posterior[s] for s in strings], atol=1e-5)


def test_check_reports_entropy_in_json() -> None:
    g = load_grammar(ROOT / "grammars" / "mini.cfg")
    report = check_grammar(g, ambiguity_strings=50).model_dump(mode="json")
    ent = report["entropy"]
    assert ent["h_tree_given_string"]["n_strings"] == 50
    assert ent["h_strings"] <= ent["h_trees"]
    assert report["ambiguity"]["tree_given_string"] == ent["h_tree_given_string"]
    no_amb = check_grammar(g, ambiguity_strings=0).model_dump(mode="json")["entropy"]
    assert no_amb["h_trees"] == ent["h_trees"] and no_amb["h_strings"] is None


@pytest.mark.parametrize(
    "weights",
    [("1e-300", "1e300"), ("1e300", "1e-300"), ("5e-324", "1"), ("1e154", "1e154")],
)
def test_entropy_with_extreme_but_valid_weights_is_finite_or_a_note(
    weights: tuple[str, str],
) -> None:
    low, high = weights
    text = (
        f'grammar w\nstart S\nS -> A "x" [{low}] | "b" [{high}]\nA -> "a" [{high}] | "c" [{low}]\n'
    )
    if min(map(float, weights)) / sum(map(float, weights)) == 0:  # rounds to 0: refused
        with pytest.raises(LocatedError, match="negligible"):
            parse_grammar(text)
        return
    g = parse_grammar(text)
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # no silent NaN on the way
        report = entropy_report(g, n_strings=20)
    if "note" in report:
        assert "too extreme" in report["note"]
    else:
        assert math.isfinite(report["h_trees"]) and report["h_trees"] >= 0
        assert math.isfinite(report["per_token"])

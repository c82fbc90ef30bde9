"""cfglab.evaluate.diversity: birthday bound, distinct fraction, entropy gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_support import TINY, judge

from cfglab.data.vocab import Vocab
from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.context import fresh_strings
from cfglab.evaluate.diversity import entropy_gap, poisson_upper, support_bounds


@pytest.mark.parametrize(
    "k, expected",
    [
        (0, -math.log(0.05)),  # 2.9957
        (1, 4.74386),  # 0.5 * chi2.ppf(0.95, 4)
        (5, 10.51304),  # 0.5 * chi2.ppf(0.95, 12)
    ],
)
def test_poisson_upper_bound_matches_chi_square_values(k, expected) -> None:
    assert poisson_upper(k) == pytest.approx(expected, abs=1e-4)


def test_poisson_upper_bound_approximation_agrees_with_the_exact_one(monkeypatch) -> None:
    import cfglab.evaluate.diversity as diversity

    approx = [poisson_upper(k) for k in (1_001, 5_000)]
    monkeypatch.setattr(diversity, "_EXACT_POISSON", 10**6)
    exact = [poisson_upper(k) for k in (1_001, 5_000)]
    assert approx == pytest.approx(exact, rel=1e-4)


def test_support_bound_is_a_lower_bound_that_is_not_vacuous() -> None:
    rng = np.random.default_rng(0)
    for support in (5_000, 50_000, 500_000):
        draws = rng.integers(0, support, 2_000)
        strings = [np.array([d % 7, d // 7]) for d in draws]
        b = support_bounds(strings)
        assert b["support_lower_bound"] <= support
        assert b["support_lower_bound"] >= min(support, 2_000**2 / 6) / 25, (support, b)
        assert b["rare_collisions"]
    few = support_bounds([np.array([d]) for d in rng.integers(0, 20, 500)])
    assert few["support_lower_bound"] == few["distinct"] == 20 and not few["rare_collisions"]


def test_distinct_and_collisions_are_counted() -> None:
    strings = [np.array(s) for s in ([0], [0], [0], [1, 2], [1, 2], [2])]
    b = support_bounds(strings)
    assert b["distinct"] == 3 and b["colliding_pairs"] == 3 + 1
    assert b["distinct_fraction"] == pytest.approx(0.5)
    assert b["support_point_estimate"] == pytest.approx(15 / 4)
    assert support_bounds([])["distinct_fraction"] is None


def test_oracle_has_no_entropy_gap() -> None:
    j = judge(TINY)
    strings = fresh_strings(j.grammar, 40, seed=1)
    gap = entropy_gap(OracleModel(j), j, strings)
    assert gap["n"] == 40
    assert gap["nll_true"] == pytest.approx(math.log(8))  # each string has probability 1/8
    assert abs(gap["gap"]) < 1e-4


def test_uniform_entropy_gap_by_hand() -> None:
    j = judge(TINY)
    strings = fresh_strings(j.grammar, 40, seed=2)
    gap = entropy_gap(UniformModel(3), j, strings)
    by_hand = np.mean([(len(s) + 1) * math.log(4) for s in strings])  # 4 equal choices per token
    assert gap["nll_model"] == pytest.approx(by_hand, rel=1e-5)
    assert gap["gap"] == pytest.approx(by_hand - math.log(8), rel=1e-5)


def test_entropy_gap_skips_invalid_strings() -> None:
    j = judge(TINY)
    gap = entropy_gap(UniformModel(3), j, [np.array([0, 0, 0]), np.array([], dtype=np.int64)])
    assert gap["n"] == 0 and gap["gap"] is None


# --- H(model) beside H(true), per-level support --------------------------------------------------


def test_oracle_entropy_equals_the_languages_within_the_interval() -> None:
    """An oracle sampling the chart's law: its estimated H(model) covers the exact H(true)."""
    from eval_support import LONGER

    from cfglab.evaluate.diversity import diversity_of
    from cfglab.evaluate.generation import accuracy_at_cut

    j = judge(LONGER)
    done = accuracy_at_cut(OracleModel(j), j, 400, 0, max_length=40, seed=5, batch_size=200)
    d = diversity_of(
        OracleModel(j), j, done.strings, done.valid, ended=done.generations.ended, levels=True
    )
    h = d["h"]
    lo, hi = h["model"]["ci95"]
    assert h["model"]["n"] == 400 and hi - lo < 0.5  # a real interval, not a vacuous one
    assert h["true_in_model_ci"] and lo <= h["true"]["h"] <= hi
    assert h["ratio"] == pytest.approx(1.0, abs=0.05)
    levels = d["levels"]
    assert set(levels) == {"1", "2"}
    for lv in levels.values():  # the oracle's level-l sequences are as diverse as the truth's
        assert lv["generated"]["n"] == 400 and lv["true"]["n"] == 400
        assert (
            abs(lv["generated"]["distinct"] - lv["true"]["distinct"])
            <= 0.25 * lv["true"]["distinct"]
        )


def test_a_peaked_model_has_lower_entropy_than_the_language() -> None:
    """At T = 1 a sharpened oracle is another model: its H(model) falls below H(true)."""
    from eval_support import LONGER

    from cfglab.evaluate.diversity import entropies, model_entropy, true_entropy
    from cfglab.evaluate.generation import accuracy_at_cut

    class Sharp(OracleModel):
        def next_rows(self, tokens: list[int]) -> np.ndarray:
            rows = super().next_rows(tokens) * 4.0  # p^4, renormalised by the softmax
            return rows - np.logaddexp.reduce(rows, axis=1, keepdims=True)

    j = judge(LONGER)
    done = accuracy_at_cut(Sharp(j), j, 200, 0, max_length=40, seed=1, batch_size=200)
    m = model_entropy(Sharp(j), Vocab(j.n_terminals), done.strings, done.generations.ended)
    h = entropies(m, true_entropy(j.grammar))
    assert h["model"]["ci95"][1] < h["true"]["h"] and not h["true_in_model_ci"]


def test_level_sequences_read_the_tree_by_depth() -> None:
    from cfglab.evaluate.diversity import level_sequences
    from cfglab.grammar.core import Tree

    leaf = Tree("a", [])
    tree = Tree("S", [Tree("A", [leaf, leaf]), Tree("B", [leaf])])
    assert level_sequences(tree, 0) == ("S",)
    assert level_sequences(tree, 1) == ("A", "B")
    assert level_sequences(tree, 2) == ("a", "a", "a")

"""cfglab.evaluate.diversity: birthday bound, distinct fraction, entropy gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_support import TINY, judge

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

"""cfglab.evaluate.robustness: corrupted prompts, the three verdicts, the mode switch."""

from __future__ import annotations

import numpy as np
import pytest
from eval_support import LONGER, TINY, judge

from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.generation import accuracy_at_cut
from cfglab.evaluate.robustness import (
    corrupted_prompts,
    mode_switch,
    robust_prompts,
    robustness_sweep,
    substitution_summary,
)
from cfglab.runs import TrainConfig


@pytest.mark.parametrize("rate", [0.05, 0.15, 0.5])
def test_corruption_flips_at_the_requested_rate(rate) -> None:
    clean = np.random.default_rng(0).integers(0, 3, (2_000, 50))
    corrupted, flipped = corrupted_prompts(clean, rate, 3, seed=1)
    # 100,000 independent flips: sd of the observed rate <= sqrt(0.25 / 1e5) = 0.0016; allow 4 sd
    assert abs(flipped.mean() - rate) < 0.0064
    assert (corrupted[flipped] != clean[flipped]).all()  # a flip always changes the terminal
    assert (corrupted[~flipped] == clean[~flipped]).all()
    assert corrupted.min() >= 0 and corrupted.max() < 3


def test_flipped_terminals_are_uniform_over_the_others() -> None:
    clean = np.zeros((1_000, 100), dtype=np.int64)
    corrupted, flipped = corrupted_prompts(clean, 0.3, 4, seed=2)
    counts = np.bincount(corrupted[flipped], minlength=4)
    assert counts[0] == 0
    share = counts[1:] / counts[1:].sum()
    assert np.abs(share - 1 / 3).max() < 0.01  # ~30,000 flips: sd 0.0027 per share


def test_oracle_on_clean_prompts_repairs_everything() -> None:
    j = judge(LONGER)
    clean = robust_prompts(j.grammar, 60, 4, seed=0)
    report, runs = robustness_sweep(
        OracleModel(j),
        j,
        clean,
        rate=0.0,
        temperatures=(0.5, 1.0),
        max_length=30,
        seed=0,
        batch_size=32,
    )
    assert report["flipped_rate"] == 0.0 and report["n"] == 60
    for row in report["by_temperature"]:
        assert row["repaired"]["rate"] == row["corrupted_valid"]["rate"] == 1.0
        assert row["prefix_substitutions"]["consistent"]["rate"] == 1.0
    assert [r.temperature for r in runs] == [0.5, 1.0]


def test_the_three_verdicts_are_consistent_row_by_row() -> None:
    j = judge(LONGER)
    clean = robust_prompts(j.grammar, 150, 4, seed=3)
    report, runs = robustness_sweep(
        OracleModel(j),
        j,
        clean,
        rate=0.3,
        temperatures=(1.0,),
        max_length=30,
        seed=3,
        batch_size=50,
    )
    done = runs[0]
    subs, flips = done.extra["prefix_substitutions"], done.extra["flips"]
    repaired, ended = done.extra["repaired"], done.generations.ended
    assert 0.2 < report["flipped_rate"] < 0.4
    judged = 0
    for i in range(len(clean)):
        if not ended[i]:
            assert subs[i] is None and not done.valid[i]
            continue
        judged += 1
        assert (subs[i] == 0) == bool(done.valid[i])  # 0 substitutions = already consistent
        if repaired[i]:  # undoing the flips repairs the string: at most that many are needed
            assert 0 <= subs[i] <= flips[i]
    assert judged > 100
    assert report["by_temperature"][0]["prefix_substitutions"]["n"] == judged


def test_mode_switch_of_the_references() -> None:
    j = judge(TINY)
    config = TrainConfig(grammar="x.cfg", noise_fraction=0.1, noise_rate=0.2)
    good = accuracy_at_cut(OracleModel(j), j, 100, 0, max_length=10, seed=0)
    ms = mode_switch(j, good, config)
    assert ms["invalid"]["rate"] == 0.0 and ms["substitutions_to_valid"]["n"] == 0
    assert ms["train_noise_fraction"] == 0.1 and ms["train_noise_rate"] == 0.2
    bad = accuracy_at_cut(UniformModel(3), j, 300, 0, max_length=10, seed=0)
    ms = mode_switch(j, bad, config)
    assert ms["invalid"]["rate"] > 0.9
    subs = ms["substitutions_to_valid"]
    invalid_ended = ms["invalid_but_ended"]["k"]
    assert subs["n"] == invalid_ended and subs["mean"] >= 1  # invalid strings need >= 1 change


def test_substitution_summary_counts() -> None:
    s = substitution_summary(np.array([0, 0, 1, 3, -1]))
    assert s["consistent"]["k"] == 2 and s["impossible"] == 1
    assert s["mean"] == pytest.approx(1.0) and s["histogram"] == {-1: 1, 0: 2, 1: 1, 3: 1}

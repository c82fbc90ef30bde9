"""cfglab.evaluate.temperatures: accuracy across temperatures and the mode switch read off it."""

from __future__ import annotations

from eval_support import LONGER, judge

from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.temperatures import (
    accuracy_by_temperature,
    mode_switch_by_temperature,
    summarise,
)

TEMPERATURES = [0.0, 0.1, 0.5, 1.0]


def test_the_oracle_is_always_valid_at_temperatures_up_to_one() -> None:
    j = judge(LONGER)
    runs = accuracy_by_temperature(
        OracleModel(j), j, TEMPERATURES, (0, 4), n=40, max_length=40, seed=3
    )
    rows = summarise(runs)
    assert [r["temperature"] for r in rows] == TEMPERATURES
    for row in rows:
        for cut in ("cut0", "cut4"):
            acc = row[cut]["accuracy"]
            assert acc["n"] == 40 and acc["k"] == 40, (row["temperature"], cut)
    switch = mode_switch_by_temperature(rows)
    assert [s["invalid"]["k"] for s in switch] == [0] * len(TEMPERATURES)


def test_a_uniform_model_fails_more_often_than_the_oracle() -> None:
    """The measurement can fail: uniform guessing is mostly invalid at T = 1."""
    j = judge(LONGER)
    rows = summarise(
        accuracy_by_temperature(
            UniformModel(j.n_terminals), j, [1.0], (0,), n=60, max_length=40, seed=1
        )
    )
    assert rows[0]["cut0"]["accuracy"]["rate"] < 0.5
    assert mode_switch_by_temperature(rows)[0]["invalid"]["rate"] > 0.5


def test_each_temperature_draws_its_own_generations() -> None:
    j = judge(LONGER)
    runs = accuracy_by_temperature(OracleModel(j), j, [0.5, 1.0], (0,), n=30, max_length=40, seed=0)
    a, b = (set(map(tuple, r.strings)) for r in runs)
    assert a != b

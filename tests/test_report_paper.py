"""The paper table: one row per result, verdicts from the measured intervals."""

from __future__ import annotations

from cfglab.evaluate.generation import proportion
from cfglab.sweep.report.paper import CLAIMS, NOT_AT_BUDGET, NOT_MEASURED, REPRODUCED, paper_table


def _row(pe: str, k0: int, noise: float = 0.0, k_low: int | None = None, rule: str | None = None):
    ev = {
        "accuracy": {"cut0": {"accuracy": proportion(k0, 200), "temperature": 1.0}},
        "kl": {"mean": 0.002 if pe == "rot" else 0.03},
    }
    if k_low is not None:
        ev["accuracy_by_temperature"] = [
            {"temperature": 0.1, "cut0": {"accuracy": proportion(k_low, 200)}}
        ]
    if rule:
        ev["memorisation"] = {
            "novelty": {},
            "holdout": {
                "rule": rule,
                "generated_using": proportion(50, 190),
                "true_frequency": proportion(1100, 4000),
            },
        }
    rob = {
        "by_rate": {
            "0.15": {
                "by_temperature": [
                    {"temperature": 0.1, "repaired": proportion(160 if noise else 60, 200)},
                    {"temperature": 1.0, "repaired": proportion(90 if noise else 50, 200)},
                ]
            }
        }
    }
    return {
        "run": f"{pe}-{noise}-{rule}",
        "pe": pe,
        "noise_fraction": noise,
        "holdout_rule": rule,
        "_results": {"evaluate": ev, "robustness": rob},
    }


def test_every_result_gets_a_row_and_a_verdict() -> None:
    rows = [
        _row("abs", 120),
        _row("rot", 195),
        _row("rot", 178, noise=0.1, k_low=198),
        _row("rot", 190, rule="N14 -> N10 N12"),
    ]
    table = {line[0]: line for line in paper_table(rows)}
    assert len(table) == len(CLAIMS)
    assert table["1 accuracy"][3] == REPRODUCED and "abs below" in table["1 accuracy"][2]
    assert table["3 KL"][3] == REPRODUCED
    assert table["4 probes"][3] == NOT_MEASURED  # no probe results in these rows
    assert table["11 robustness"][3] == REPRODUCED
    assert table["12 mode switch"][3] == REPRODUCED  # 11% invalid vs 2.5%, training share 0.1
    assert table["13 temperature"][3] == REPRODUCED
    assert table["seed Q1"][3].startswith("generalises")


def test_a_weak_model_is_not_at_this_budget() -> None:
    table = {line[0]: line for line in paper_table([_row("abs", 100), _row("rot", 120)])}
    assert table["1 accuracy"][3] == NOT_AT_BUDGET
    assert table["12 mode switch"][3] == NOT_MEASURED  # no noisy run

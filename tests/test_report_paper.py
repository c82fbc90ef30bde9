"""The paper table: one row per result, verdicts from the measured intervals."""

from __future__ import annotations

import numpy as np

from cfglab.evaluate.generation import proportion
from cfglab.sweep.report.paper import (
    CLAIMS,
    CONTRADICTED,
    NOT_AT_BUDGET,
    NOT_MEASURED,
    REPRODUCED,
    paper_table,
)


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
    no_gap = {line[0]: line for line in paper_table([_row("abs", 186), _row("rot", 190)])}
    assert no_gap["1 accuracy"][3] == NOT_AT_BUDGET and "no abs gap" in no_gap["1 accuracy"][2]
    assert table["12 mode switch"][3] == NOT_MEASURED  # no noisy run


def test_kl_an_order_above_the_papers_is_not_a_match() -> None:
    rows = [_row("abs", 120), _row("rot", 195)]
    rows[1]["_results"]["evaluate"]["kl"]["mean"] = 0.0044
    table = {line[0]: line for line in paper_table(rows)}
    assert table["3 KL"][3] == NOT_AT_BUDGET
    rows[1]["_results"]["evaluate"]["kl"]["mean"] = 0.0019
    assert {line[0]: line for line in paper_table(rows)}["3 KL"][3] == REPRODUCED


def test_mode_switch_is_read_over_the_clean_twins_own_errors() -> None:
    # clean twin 17% invalid: a 10% mode switch predicts 0.1 + 0.9 * 0.17 = 0.253 invalid
    # four runs a side, pooled (n = 800), as paper-cpu's four PEs
    at_prediction = [_row("rot", 166) for _ in range(4)]
    at_prediction += [_row("rot", 149, noise=0.1, k_low=190) for _ in range(4)]
    table = {line[0]: line for line in paper_table(at_prediction)}
    assert (
        table["12 mode switch"][3] == REPRODUCED and "predicts 0.25" in table["12 mode switch"][2]
    )
    far_above = [_row("rot", 166), _row("rot", 100, noise=0.1, k_low=190)]  # 50% invalid
    assert {line[0]: line for line in paper_table(far_above)}["12 mode switch"][3] == NOT_AT_BUDGET


def test_diversity_says_when_the_language_is_smaller_than_the_training_set() -> None:
    rows = [_row("abs", 120), _row("rot", 195)]
    for row, h in zip(rows, (12.3, 12.1)):
        row["_train"] = {"steps": 10_000, "batch": 32, "context": 64}
        row["_results"]["evaluate"]["diversity"] = {
            "all": {"distinct": 990, "n": 1000, "support_lower_bound": 3e4},
            "h": {
                "model": {"h": h, "ci95": [h - 0.1, h + 0.1], "mean_tokens": 30.0},
                "true": {"h": 11.9},
            },
        }
    text, verdict = {line[0]: line for line in paper_table(rows)}["2 diversity"][2:]
    assert "≈ 6.6e+05 training strings" in text and "untestable" in text  # e^11.9 ≈ 1.5e5
    assert verdict == REPRODUCED  # rot's H within 5% of the truth


def test_the_kl_row_reads_the_authors_recipe_and_names_the_stray_mass_apart() -> None:
    """Where a run has `kl.official` the verdict reads it, not cfglab's `kl.mean`."""
    rows = [_row("abs", 120), _row("rot", 195)]
    kl = rows[1]["_results"]["evaluate"]["kl"]
    kl.update(mean=0.0044, official={"mean": 0.0011}, stray_mass={"mean": 0.003})
    rows[0]["_results"]["evaluate"]["kl"]["official"] = {"mean": 0.02}
    line = {line[0]: line for line in paper_table(rows)}["3 KL"]
    assert line[3] == REPRODUCED and "rot 0.0011" in line[2] and "authors' recipe" in line[2]
    assert "stray mass (BOS/MASK) up to 0.003" in line[2]
    kl["official"]["mean"] = 0.0044
    kl["mean"] = 0.0011  # the other figure no longer decides
    assert {line[0]: line for line in paper_table(rows)}["3 KL"][3] == NOT_AT_BUDGET


def _attention_row(e2e_r1: float, adj_r1: float) -> dict:
    """One rot run's attention: end_to_end (L=1, H=2, ℓ′=2, ℓ=2, r=0..4) and adjacency
    (L=1, H=2, levels=2, r=0..4), flat except at r = 1."""
    r = [0, 1, 2, 3, 4]
    e2e = np.zeros((1, 2, 2, 2, 5))
    e2e[..., 1] = e2e_r1
    e2e[0, 0, 0, 1, 3] = None  # a cell with no pair at r = 3
    adj = np.zeros((1, 2, 2, 5))
    adj[..., 1] = adj_r1
    row = _row("rot", 195)
    row["_results"]["attention"] = {
        "end_to_end": {"r": r, "mean_B": e2e.tolist()},
        "adjacency": {"r": r, "mean_B": adj.tolist()},
    }
    return row


def test_results_8_9_read_the_bsharp_end_to_end_statistic_not_adjacency() -> None:
    # adjacency says yes, b♯ end→end says no: the verdict follows b♯
    line = {line[0]: line for line in paper_table([_attention_row(0.0, 0.2)])}["8–9 end→end"]
    assert line[3] == NOT_AT_BUDGET
    assert "b♯ end→end" in line[2] and "+0.000" in line[2]
    assert "extra, nested same-level adjacency" in line[2] and "+0.200" in line[2]
    # and the other way round
    line = {line[0]: line for line in paper_table([_attention_row(0.05, -0.1)])}["8–9 end→end"]
    assert line[3] == REPRODUCED and "+0.050" in line[2] and "-0.100" in line[2]


def test_results_8_9_without_end_to_end_is_not_measured() -> None:
    row = _attention_row(0.05, 0.2)
    del row["_results"]["attention"]["end_to_end"]
    line = {line[0]: line for line in paper_table([row])}["8–9 end→end"]
    assert line[3] == NOT_MEASURED


def _embedding(probe: float, twin: float, gap: float) -> dict:
    return {
        "trained": {"probe_accuracy": probe, "gap": gap, "within": gap, "between": 0.0},
        "untrained": {"probe_accuracy": twin, "gap": 0.0, "within": 0.0, "between": 0.0},
    }


def test_result_10_reads_the_embedding_verdict_of_implicit_runs() -> None:
    def verdict_of(k0: int, emb: dict | None) -> str:
        row = _row("rot", k0)
        if emb is not None:
            row["_results"]["embedding"] = emb
        return {line[0]: line for line in paper_table([row])}["10 implicit"][3]

    assert verdict_of(195, None) == NOT_MEASURED
    assert verdict_of(195, _embedding(1.0, 0.3, 0.4)) == REPRODUCED
    assert verdict_of(195, _embedding(0.5, 0.3, 0.4)) == CONTRADICTED  # learned, bags not grouped
    assert verdict_of(100, _embedding(0.5, 0.3, 0.4)) == NOT_AT_BUDGET


def _seeded(row: dict, seed: int) -> dict:
    return {**row, "seed": seed, "run": f"{row['run']}-s{seed}"}


def test_several_seeds_are_pooled_and_each_seeds_value_follows() -> None:
    # seed 0 has the abs gap, seed 1 has none: the pool decides, and both seeds are shown
    rows = [
        _seeded(_row("abs", 120), 0),
        _seeded(_row("rot", 196), 0),
        _seeded(_row("abs", 190), 1),
        _seeded(_row("rot", 192), 1),
        _seeded(_row("rot", 170, noise=0.1), 0),
        _seeded(_row("rot", 150, noise=0.1), 1),
    ]
    table = {line[0]: line for line in paper_table(rows)}
    accuracy = table["1 accuracy"][2]
    assert "per seed: s0 abs 0.60 rot 0.98 (reproduced); s1 abs 0.95 rot 0.96 (not at" in accuracy
    assert accuracy.startswith("cut0 (T=1): abs 0.78")  # (120 + 190) / 400, pooled
    switch = table["12 mode switch"][2]
    # seed 0: invalid 30/200 against 0.1 + 0.9 * 4/200; seed 1: 50/200 against 0.1 + 0.9 * 8/200
    assert "s0 invalid 0.15 vs 0.12 predicted" in switch
    assert "s1 invalid 0.25 vs 0.14 predicted" in switch
    assert table["seed Q2"][2] == "-"  # no probes: nothing per seed either


def test_one_seed_has_no_per_seed_tail() -> None:
    rows = [_seeded(_row("abs", 120), 0), _seeded(_row("rot", 196), 0)]
    assert all("per seed" not in line[2] for line in paper_table(rows))


def test_the_result_10_table_has_a_line_per_implicit_run_with_its_twin() -> None:
    from cfglab.sweep.report.embedding import embedding_rows, verdict_rule

    grouped = _row("rot", 195)
    grouped["_results"]["embedding"] = {
        **_embedding(1.0, 0.23, 0.29),
        "bag_sizes": [13, 12, 9],
        "shared_tokens": 9,
        "unused_tokens": 8,
        "encodes_terminal": True,
        "verdict_rule": "the rule",
    }
    plain = _row("abs", 195)  # not implicit: no line
    lines = embedding_rows([grouped, plain])
    assert lines == [
        ["rot-0.0-None", "13/12/9 (9, 8)", "0.29 / 0.00", "+0.29 (+0.00)", "1.00 (0.23)", "yes"]
    ]
    assert verdict_rule([grouped, plain]) == "the rule"
    assert embedding_rows([plain]) == []


def test_the_canon_table_puts_each_canon_run_beside_its_twin() -> None:
    from cfglab.sweep.report.canon import CANON_COLUMNS, canon_rows

    def run(pe: str, canon: str, k: int, seed: int = 0) -> dict:
        row = _row(pe, k)
        row.update(run=f"{pe}-{canon or 'plain'}-s{seed}", canon=canon, seed=seed)
        return row

    rows = [run("none", "ABCD", 198), run("uni", "", 170), run("none", "", 104)]
    rows.append(run("uni", "A", 190))
    rows.append(run("none", "ABCD", 150, seed=1))  # no twin of seed 1: no delta
    body = canon_rows(rows)
    assert [line[0] for line in body] == [
        "none-plain-s0", "none-ABCD-s0", "none-ABCD-s1", "uni-plain-s0", "uni-A-s0"
    ]  # fmt: skip
    assert all(len(line) == len(CANON_COLUMNS) for line in body)
    deltas = {line[0]: line[4] for line in body}
    assert deltas == {
        "none-plain-s0": "-", "none-ABCD-s0": "+0.470", "none-ABCD-s1": "-",
        "uni-plain-s0": "-", "uni-A-s0": "+0.100",
    }  # fmt: skip
    assert body[0][2] == "none" and body[1][2] == "ABCD" and body[1][3].startswith("0.990 [")
    assert canon_rows([run("rot", "", 190), run("abs", "", 150)]) == []  # no Canon axis
    assert canon_rows([run("rot", "ABCD", 190)]) == []  # Canon runs but no twin to compare

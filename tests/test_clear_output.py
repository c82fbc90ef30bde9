"""Clear output (issue 23, item 4): one entropy per meaning, each named; rows that do not apply
left out; no Python reprs (None, witness=None) and no label printed twice; the gloss of a
negative selectivity."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eval_support import LONGER, trained_run
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.cli.eval_cmds import _entropy_rows, summary_table

# A recursive grammar: no levels, and its H(strings) cannot be estimated.
ARITH = """grammar arith
start Expr
Expr -> Expr "+" Term [2] | Term [3]
Term -> Term "*" Factor [1] | Factor [3]
Factor -> "(" Expr ")" [1] | "x" [4]
"""
# Every string parses two ways: the check has a witness to show.
TWO_WAYS = """grammar two_ways
start S
S -> A B | C
A -> "a"
B -> "b"
C -> "a" "b"
"""


def _text(*renderables: Any, width: int = 120) -> str:
    """What rich prints, box lines and runs of spaces folded (a row reads as one line)."""
    console = Console(width=width, record=True, highlight=False)
    for r in renderables:
        console.print(r)
    return " ".join(re.sub("[\u2500-\u257f]", " ", console.export_text()).split())


@pytest.fixture(scope="module")
def evaluated() -> dict[str, Any]:
    """eval.json of a tiny clean-trained decoder (rot) run, every section."""
    from cfglab.evaluate.run import evaluate_run

    options = {
        "n": 8,
        "cut": 4,
        "temperatures": [1.0],
        "threads": 1,
        "max_length": 24,
        "masked_strings": 2,
        "masked_per_string": 2,
        "reference_n": 20,
        "diversity_n": 8,
        "write": False,
    }
    return evaluate_run(str(trained_run("rot")), options)


def test_a_decoder_shows_its_fill_in_figure_only_when_asked(evaluated: dict[str, Any]) -> None:
    assert evaluated["decoder"] and evaluated["masked"]["model"] == "decoder"
    default = _text(summary_table(evaluated))
    assert "masked" not in default and "fill-in" not in default
    asked = _text(summary_table(evaluated, {"masked"}))
    assert "one-token fill-in accuracy (decoder)" in asked
    assert "masked-token" not in asked and "Bayes ceiling" in asked


def test_an_encoders_masked_token_row_stays(evaluated: dict[str, Any]) -> None:
    mlm = copy.deepcopy(evaluated)
    mlm["masked"]["model"] = "encoder"
    assert "masked-token accuracy (mlm encoder)" in _text(summary_table(mlm))


def test_mode_switch_rows_only_for_a_noisy_or_unknown_training(evaluated: dict[str, Any]) -> None:
    switch = evaluated["robustness"]["mode_switch"]
    assert switch["train_noise_fraction"] == 0.0  # the tiny run trains on clean strings
    assert "mode switch" not in _text(summary_table(evaluated))

    noisy = copy.deepcopy(evaluated)
    noisy["robustness"]["mode_switch"] |= {"train_noise_fraction": 0.1, "train_noise_rate": 0.15}
    text = _text(summary_table(noisy))
    assert "mode switch: invalid at cut0" in text
    assert "training noise 0.1 of strings, 0.15 of their tokens" in text

    outside = copy.deepcopy(evaluated)  # as evaluate_hf leaves it: the noise is not known
    outside["robustness"]["mode_switch"] |= {"train_noise_fraction": None, "train_noise_rate": None}
    outside["hf"] = {"architecture": "GPT2LMHeadModel"}
    text = _text(summary_table(outside))
    assert "training noise unknown (outside model)" in text
    assert "None" not in text and "GPT2LMHeadModel (--hf)" in text


def test_each_entropy_has_one_row_named_for_what_it_is(evaluated: dict[str, Any]) -> None:
    text = _text(summary_table(evaluated))
    assert text.count("H(model), nats/string (T=1 samples)") == 1
    assert text.count("H(true), nats/string (the language)") == 1
    assert "H(true), nats/token (with EOS)" in text
    assert "entropy gap" not in text and "vs H(true)" not in text
    h_true = evaluated["diversity"]["h"]["true"]
    assert f"{h_true['h']:.2f}" in text and f"{h_true['per_token']:.3f}" in text
    assert "None" not in text and "?" not in text
    assert "…" not in _text(summary_table(evaluated, {"masked"}), width=80)  # the new labels fit


def test_h_true_that_cannot_be_computed_says_why() -> None:
    from cfglab.evaluate.diversity import entropies, true_entropy
    from cfglab.grammar.dsl import parse_grammar

    model_h = {"n": 0, "unended": 4, "h": None, "ci95": None, "per_token": None}
    h = entropies(model_h, true_entropy(parse_grammar(ARITH)))
    assert h["true"]["h"] is None and h["true"]["note"]
    table = Table()
    table.add_column("measure")
    table.add_column("value")
    _entropy_rows(table, h)
    text = _text(table)
    assert "H(true), the language recursive grammar: not estimated" in text
    assert "H(trees) = " in text and "bounds it above" in text
    assert "not estimated: 0 of 4 generations ended with EOS" in text
    assert "None" not in text and "?" not in text
    assert "…" not in _text(table, width=80)


def test_check_prints_no_reprs_and_each_prefix_once(tmp_path: Path) -> None:
    files = [tmp_path / "arith.cfg", tmp_path / "two_ways.cfg"]
    for f, text in zip(files, (ARITH, TWO_WAYS)):
        f.write_text(text)
    args = ["check", *map(str, files), "--ambiguity-strings", "40"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "None" not in text and "witness" not in text and "n_strings=" not in text
    assert "recursive: recursive:" not in text
    assert "warning recursive: Expr -> Expr (no levels" in text
    assert "recursive grammar: not estimated" in text  # why H(strings) is missing
    assert "40 sampled strings; 100.0% ambiguous" in text
    assert "shortest ambiguous: a b" in text
    assert "e-1" not in text  # the float residue of a zero entropy reads 0


def test_train_names_the_pe_once(tmp_path: Path) -> None:
    grammar = tmp_path / "longer.cfg"
    grammar.write_text(LONGER)
    args = ["train", "--grammar", str(grammar), "--pe", "abs", "--layers", "1", "--heads", "1"]
    args += ["--dim", "8", "--context", "32", "--batch", "2", "--steps", "1", "--threads", "1"]
    args += ["--eval-batches", "1", "--chunk-strings", "8", "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "model abs: 1 layers, 1 heads, 8 dims" in res.output
    assert "abs: abs:" not in res.output


# --- probe: the gloss of a negative selectivity -------------------------------------------------


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    console = Console(width=120, record=True, highlight=False)
    monkeypatch.setattr("cfglab.cli.probe_cmds.out", console)
    yield console


def _probe_result(selectivity: float) -> dict[str, Any]:
    """probe.json's shape for two layers and two levels, one selectivity as given."""
    scores = {"ancestor": {"1": 0.8, "2": 0.6}, "boundary": {"0": 0.9, "1": 0.7}}
    sel = {"ancestor": {"1": 0.1, "2": selectivity}, "boundary": {"0": 0.05, "1": 0.02}}
    return {
        "run": "runs/x",
        "plots": [],
        "scope": "whole",
        "layers": [0, 1],
        "levels": {"ancestor": [1, 2], "boundary": [0, 1]},
        "trained": {"0": scores, "1": scores},
        "untrained": {"0": scores, "1": scores},
        "selectivity": {"0": sel, "1": sel},
    }


@pytest.mark.parametrize("selectivity", [-0.05, 0.05])
def test_a_negative_selectivity_gets_its_gloss(recorded: Console, selectivity: float) -> None:
    from cfglab.cli.probe_cmds import NEGATIVE_SELECTIVITY, render_probe

    render_probe(_probe_result(selectivity))
    text = " ".join(recorded.export_text().split())
    assert f"{100 * selectivity:+.1f}" in text
    assert (" ".join(NEGATIVE_SELECTIVITY.split()) in text) == (selectivity < 0)
    assert "None" not in text

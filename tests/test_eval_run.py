"""cfglab.evaluate.run and `cfglab evaluate`: a real (tiny) run directory, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_support import LONGER, judge, trained_run
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.evaluate.generation import accuracy_report
from cfglab.evaluate.kl import kl_report
from cfglab.evaluate.robustness import robustness_report
from cfglab.evaluate.run import EvalOptions, evaluate_run

SMALL = {
    "n": 12,
    "cut": 4,
    "temperatures": [0.5, 1.0],
    "threads": 1,
    "max_length": 24,
    "masked_strings": 3,
    "masked_per_string": 2,
    "reference_n": 50,
    "accuracy_temperatures": [0.1, 1.0],
    "temperature_n": 4,
    "diversity_n": 16,
}


@pytest.fixture(scope="module")
def evaluated():
    run = trained_run("rot", 'X -> Z "b"')
    return run, evaluate_run(str(run), SMALL)


def test_eval_json_has_every_section_with_its_counts(evaluated) -> None:
    run, result = evaluated
    on_disk = json.loads((run / "eval" / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert result["step"] == 30 and result["decoder"] and result["cut"] == 4
    acc = result["accuracy"]
    assert set(acc) == {"cut0", "cut4"} and acc["cut0"]["accuracy"]["n"] == 12
    assert result["kl"]["n_strings"] == 3 and result["kl"]["mean"] >= 0  # n / 4
    rb = result["robustness"]
    assert rb["n"] == 6 and [r["temperature"] for r in rb["by_temperature"]] == [0.5, 1.0]
    assert rb["mode_switch"]["invalid"]["n"] == 12
    assert result["memorisation"]["holdout"]["rule"] == 'X -> Z "b"'
    assert result["memorisation"]["holdout"]["true_frequency"]["n"] == 50
    div = result["diversity"]
    assert div["all"]["n"] == 16 and div["n"] == 16  # 12 cut0 generations + 4 more
    assert div["h"]["model"]["n"] + div["h"]["model"]["unended"] == 16
    assert div["h"]["true"]["h"] > 0 and set(div["levels"]) == {"1", "2"}
    by_t = result["accuracy_by_temperature"]
    assert [r["temperature"] for r in by_t] == [0.1, 1.0]
    assert all(r["cut0"]["accuracy"]["n"] == 4 and r["cut4"]["accuracy"]["n"] == 4 for r in by_t)
    assert [s["temperature"] for s in rb["mode_switch"]["by_temperature"]] == [0.1, 1.0]
    assert result["masked"]["model"] == "decoder" and result["masked"]["n_positions"] == 6
    assert result["timing"]["generations"] == 24 and result["seconds"]["total"] > 0


def test_generations_jsonl_can_be_rechecked(evaluated) -> None:
    run, result = evaluated
    lines = [json.loads(x) for x in (run / "eval" / "generations.jsonl").read_text().splitlines()]
    assert len(lines) == 12 + 12 + 6 * 2 + 2 * 2 * 4
    sections = {"cut0", "cut4", "robustness"}
    sections |= {f"temperature{t}-cut{c}" for t in ("0.1", "1") for c in (0, 4)}
    assert {x["section"] for x in lines} == sections
    j = judge(LONGER)
    for x in lines:
        tokens = np.array(j.grammar.encode(x["string"].split()), dtype=np.int64)
        assert x["valid"] == (x["ended"] and bool(j.accepts([tokens])[0]))
        if x["section"] == "robustness":
            assert len(x["clean_prompt"].split()) == 4 and "repaired" in x
    cut0 = [x for x in lines if x["section"] == "cut0"]
    assert sum(x["valid"] for x in cut0) == result["accuracy"]["cut0"]["accuracy"]["k"]


def test_sections_run_alone_give_the_same_figures(evaluated) -> None:
    """What a Ray task computes from plain arguments equals the section of evaluate_run."""
    run, result = evaluated
    alone = accuracy_report(str(run), cut=4, n=12, max_length=24, threads=1)
    assert alone["accuracy"] == result["accuracy"]["cut4"]["accuracy"]
    kl = kl_report(str(run), n_strings=3, threads=1)
    assert kl["mean"] == pytest.approx(result["kl"]["mean"])
    rb = robustness_report(str(run), temperatures=(0.5, 1.0), n=6, cut=4, max_length=24, threads=1)
    verdicts = ("repaired", "corrupted_valid", "prefix_substitutions", "ended_with_eos")
    for a, b in zip(rb["by_temperature"], result["robustness"]["by_temperature"], strict=True):
        assert {k: a[k] for k in verdicts} == {k: b[k] for k in verdicts}
    assert rb["mode_switch"]["invalid"] == result["robustness"]["mode_switch"]["invalid"]


def test_mlm_run_reports_masked_tokens_only(tmp_path) -> None:
    run = trained_run("mlm")
    result = evaluate_run(str(run), {**SMALL, "write": False})
    assert not result["decoder"] and "accuracy" not in result
    assert result["masked"]["model"] == "encoder" and result["masked"]["n_positions"] == 6
    assert not (run / "eval").exists()


def test_options_are_validated() -> None:
    with pytest.raises(CfglabError, match="unknown evaluation section"):
        evaluate_run("nowhere", {"sections": ["acuracy"]})
    with pytest.raises(CfglabError, match="n: Input should be greater than or equal to 1"):
        evaluate_run("nowhere", {"n": 0})
    assert EvalOptions(n=40).counts() == {
        "robust_n": 20,
        "kl_strings": 10,
        "masked_strings": 4,
        "reference_n": 400,
        "temperature_n": 20,
        "diversity_n": 40,
    }


def test_missing_and_foreign_directories_are_clear_errors(tmp_path) -> None:
    with pytest.raises(CfglabError, match="no such directory"):
        evaluate_run(str(tmp_path / "absent"))
    with pytest.raises(CfglabError, match="not a run directory"):
        evaluate_run(str(tmp_path))


def test_cli_json_and_table(evaluated) -> None:
    run, _ = evaluated
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            "--n",
            "6",
            "--cut",
            "4",
            "--json",
            "--sections",
            "accuracy,kl",
            "--threads",
            "1",
            "--no-write",
            "--max-length",
            "24",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["accuracy"]["cut0"]["accuracy"]["n"] == 6 and "robustness" not in data
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            "--n",
            "6",
            "--cut",
            "4",
            "-q",
            "--temperatures",
            "1.0",
            "--threads",
            "1",
            "--no-write",
            "--max-length",
            "24",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "accuracy cut0" in res.output and "KL" in res.output
    assert "mode switch" not in res.output  # a clean-trained run has no noise mode to switch to
    assert "corrupted prompts" in res.output


def test_cli_refuses_bad_temperatures(evaluated) -> None:
    run, _ = evaluated
    res = CliRunner().invoke(app, ["evaluate", str(run), "--temperatures", "hot"])
    assert res.exit_code != 0
    assert "temperatures" in str(res.exception) + res.output


def test_cli_measures_accuracy_at_several_temperatures(evaluated) -> None:
    run, _ = evaluated
    args = ["evaluate", str(run), "--n", "6", "--cut", "4", "--threads", "1", "--max-length", "24"]
    args += ["--sections", "accuracy,diversity", "--accuracy-temperatures", "0.1,0.5", "--no-write"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [r["temperature"] for r in data["accuracy_by_temperature"]] == [0.1, 0.5]
    assert data["accuracy"]["cut0"]["temperature"] == 1.0  # the single-temperature option stays
    from rich.console import Console

    from cfglab.cli.eval_cmds import summary_table

    console = Console(width=200, record=True)
    console.print(summary_table(data))
    text = console.export_text()
    assert "cut0 at T=0.1" in text and "cut4 at T=0.5" in text
    has_h = data["diversity"]["h"]["model"]["h"] is not None  # a 30-step model rarely ends
    assert "H(model), nats/string" in text and "H(true), nats/string" in text
    assert ("generations ended with EOS" in text) != has_h  # else it says why it has none
    bad = CliRunner().invoke(app, [*args, "--accuracy-temperatures", "cold"])
    assert bad.exit_code != 0

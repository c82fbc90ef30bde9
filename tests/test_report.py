"""The report: rows from a sweep directory, results.csv, plots, one self-contained HTML page."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cfglab.errors import CfglabError
from cfglab.evaluate.generation import proportion, wilson
from cfglab.sweep.layout import SweepDir
from cfglab.sweep.report import (
    collect,
    flatten,
    headline,
    pooled,
    rich_table,
    write_report,
)
from cfglab.sweep.spec import TrialPlan

TRAIN = {
    "grammar": "/x/g.cfg",
    "layers": 2,
    "heads": 2,
    "dim": 64,
    "context": 128,
    "batch": 16,
    "steps": 100,
    "lr": 3e-3,
}


def _trial(pe: str, fraction: float, seed: int) -> TrialPlan:
    name = f"g-{pe}-{'clean' if not fraction else f'f{fraction:g}r0.15'}-s{seed}"
    coords = {
        "grammar": "g",
        "size": "L2H2D64",
        "layers": 2,
        "heads": 2,
        "dim": 64,
        "pe": pe,
        "noise_fraction": fraction,
        "noise_rate": 0.15 if fraction else 0.0,
        "seed": seed,
    }
    return TrialPlan(name, coords, {**TRAIN, "pe": pe, "seed": seed})


def _evaluate(k0: int, kk: int, n: int = 50) -> dict:
    return {
        "accuracy": {
            "cut0": {"accuracy": proportion(k0, n), "temperature": 1.0},
            "cut20": {"accuracy": proportion(kk, n), "temperature": 1.0},
        },
        "kl": {"mean": 0.0123, "by_position": list(range(100))},
    }


def _robustness(k: int, n: int = 40) -> dict:
    rows = [
        {"temperature": t, "repaired": proportion(k, n), "corrupted_valid": proportion(n - k, n)}
        for t in (0.1, 1.0)
    ]
    return {
        "by_rate": {
            "0.15": {
                "rate": 0.15,
                "cut": 20,
                "by_temperature": rows,
                "mode_switch": {"invalid": proportion(3, n)},
            }
        }
    }


def _probes(acc: float) -> dict:
    layers = {
        str(l): {"ancestor": {"1": acc, "2": acc / 2}, "boundary": {"1": 0.9}} for l in (0, 1, 2)
    }
    return {
        "trained": layers,
        "untrained": {l: {"ancestor": {"1": 0.3, "2": 0.2}} for l in layers},
        "majority": {"ancestor": {"1": 0.25, "2": 0.25}},
    }


def _metrics(run: Path, steps_done: int) -> None:
    run.mkdir(parents=True)
    lines = [
        {"step": s, "loss": 2.0 / s, "val_loss": 2.1 / s} for s in range(10, steps_done + 1, 10)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    (run / "model_card.json").write_text(json.dumps({"parameters": 104_000, "device": "cpu"}))


@pytest.fixture
def sweep(tmp_path: Path) -> SweepDir:
    """A finished 2 PE x 2 noise x 2 seed sweep, plus one run that stopped half way."""
    sweep = SweepDir(tmp_path / "sw")
    trials = [_trial(pe, f, s) for pe in ("abs", "rot") for f in (0.0, 0.1) for s in (0, 1)]
    sweep.path.mkdir()
    sweep.plan_path.write_text(json.dumps([t.__dict__ for t in trials]))
    spec = {
        "evaluate": {"enabled": True},
        "robustness": {"enabled": True},
        "probes": {"enabled": True},
        "attention": {"enabled": False},
    }
    sweep.spec_path.write_text(
        json.dumps({"name": "sw", "source": "s.yaml", "smoke": False, "spec": spec})
    )
    for i, t in enumerate(trials):
        _metrics(sweep.run(t.name), 50 if t.name == "g-rot-f0.1r0.15-s1" else 100)
        sweep.write_result(t.name, "evaluate", {"result": _evaluate(40 + i, 30 + i)})
        sweep.write_result(t.name, "robustness", {"result": _robustness(20 + i)})
        sweep.write_result(t.name, "probes", {"result": _probes(0.5 + i / 20)})
        sweep.log_start(t.name, 0)
    sweep.log_start(trials[0].name, 40)  # one retry
    return sweep


def test_rows_carry_coordinates_training_and_every_metric(sweep: SweepDir) -> None:
    spec, rows = collect(sweep.path)
    assert len(rows) == 8 and spec["name"] == "sw"
    first = rows[0]
    assert first["pe"] == "abs" and first["seed"] == 0 and first["status"] == "done"
    assert first["attempts"] == 2 and rows[1]["attempts"] == 1
    assert first["tokens"] == 100 * 16 * 128 and first["params"] == 104_000
    assert first["final_val_loss"] == pytest.approx(2.1 / 100)
    assert first["evaluate.accuracy.cut0.accuracy.k"] == 40
    assert first["robustness.by_rate.0.15.by_temperature.1.repaired.k"] == 20
    assert first["probes.trained.2.ancestor.1"] == pytest.approx(0.5)
    assert "evaluate.kl.by_position.0" not in first  # long curves stay out of the table
    partial = next(r for r in rows if r["run"] == "g-rot-f0.1r0.15-s1")
    assert partial["status"] == "partial" and partial["step"] == 50


def test_report_files(sweep: SweepDir) -> None:
    files = write_report(sweep.path)
    with open(files.csv) as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == [t.name for t in sweep.read_plan()]
    assert table[3]["evaluate.accuracy.cut20.accuracy.k"] == str(30 + 3)
    names = sorted(p.name for p in files.plots)
    assert names == ["accuracy.png", "probes.png", "robustness.png", "training.png"]
    for p in files.plots:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    page = files.html.read_text()
    # self-contained: every image inline, nothing fetched from elsewhere
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    # the budget beside the numbers, and no overclaiming
    page = html.unescape(page)
    assert "2 layers × 2 heads × 64 dims (parameters: abs 104,000, rot 104,000)" in page
    assert "SMOKE" not in page
    assert "100 steps × batch 16 = 204,800 tokens" in page
    assert "do not test the paper's claims" in page
    assert "did not finish training: g-rot-f0.1r0.15-s1" in page


def test_terminal_table_shows_headline_figures(sweep: SweepDir) -> None:
    _, rows = collect(sweep.path)
    console = Console(width=200, record=True)
    console.print(rich_table(rows))
    text = console.export_text()
    assert "g-abs-clean-s0" in text and "50/100 *" in text
    assert f"{40 / 50:.2f}" in text and "cut20" in text and "0.012" in text
    columns, body = headline(rows)
    assert columns[:4] == ["run", "step", "val loss", "cut0 acc [95% CI]"]
    lo, hi = wilson(40, 50)
    assert body[0][3] == f"0.80 [{lo:.2f},{hi:.2f}]"


def test_columns_without_data_are_left_out(tmp_path: Path, sweep: SweepDir) -> None:
    for p in (sweep.path / "results").rglob("*.json"):
        p.unlink()
    _, rows = collect(sweep.path)
    columns, _ = headline(rows)
    assert columns == ["run", "step", "val loss"]
    assert [p.name for p in write_report(sweep.path).plots] == ["training.png"]


def test_not_a_sweep_directory(tmp_path: Path) -> None:
    with pytest.raises(CfglabError, match="not a sweep directory"):
        write_report(tmp_path)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50)), min_size=1, max_size=5))
def test_pooling_adds_counts(parts: list[tuple[int, int]]) -> None:
    props = [{"k": min(k, n), "n": n} for k, n in parts]
    rate, lo, hi = pooled(props)
    k, n = sum(p["k"] for p in props), sum(p["n"] for p in props)
    assert rate == pytest.approx(k / n) and (lo, hi) == wilson(k, n)
    assert lo <= rate <= hi


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": [[1]], "f": object()}) == {
        "a.b": 1,
        "a.c.0": 1,
        "a.c.1": 2,
        "d": None,
    }


def _generation_results(k_high: int, k_low: int, h_model: float, n: int = 50) -> dict:
    ev = _evaluate(k_high, k_high)
    ev["accuracy_by_temperature"] = [
        {
            "temperature": 0.1,
            "cut0": {"accuracy": proportion(k_low, n)},
            "cut20": {"accuracy": proportion(k_low, n)},
        }
    ]
    ev["diversity"] = {
        "all": {"distinct": 48, "n": n, "support_lower_bound": 400.0},
        "h": {"model": {"h": h_model, "ci95": [h_model - 0.3, h_model + 0.3]}, "true": {"h": 11.9}},
    }
    return ev


def test_report_reads_temperatures_diversity_and_the_mode_switch(sweep: SweepDir) -> None:
    for i, t in enumerate(sweep.read_plan()):
        noisy = t.coordinates["noise_fraction"] > 0
        result = _generation_results(40 if noisy else 49, 49, 11.0 + i / 10)
        sweep.write_result(t.name, "evaluate", {"result": result})
    files = write_report(sweep.path)
    names = sorted(p.name for p in files.plots)
    assert "temperatures.png" in names and "diversity.png" in names
    page = html.unescape(files.html.read_text())
    assert "Mode switch across temperatures" in page
    # a noisy run: 10 of 50 invalid at T = 1, 1 of 50 at T = 0.1
    assert "0.200 [" in page and "(T=1)" in page and "0.020 [" in page and "(T=0.1)" in page
    _, rows = collect(sweep.path)
    columns, body = headline(rows)
    col = columns.index("H(model) [95% CI] / H(true)")
    assert body[0][col] == "11.00 [10.70,11.30] / 11.9"
    assert rows[0]["evaluate.accuracy_by_temperature.0.cut0.accuracy.k"] == 49  # in the CSV


def test_report_sets_held_out_rule_usage_beside_its_true_frequency(sweep: SweepDir) -> None:
    for t in sweep.read_plan():
        ev = _evaluate(45, 45)
        novelty = {"novel_valid": proportion(44, 50), "in_training": proportion(1, 50)}
        holdout = {
            "rule": "N14 -> N10 N12",
            "generated_using": proportion(11, 45),
            "true_frequency": proportion(1140, 4000),
        }
        ev["memorisation"] = {"novelty": novelty, "holdout": holdout}
        sweep.write_result(t.name, "evaluate", {"result": ev})
    page = html.unescape(write_report(sweep.path).html.read_text())
    assert "Memorisation: the held-out rule" in page and "N14 -> N10 N12" in page
    lo, hi = wilson(11, 45)
    assert f"0.244 [{lo:.3f},{hi:.3f}] (n=45)" in page and "0.285 [" in page


def test_paper_table_opens_the_page_when_the_sweep_asks(sweep: SweepDir) -> None:
    assert "The paper's results at this budget" not in write_report(sweep.path).html.read_text()
    record = json.loads(sweep.spec_path.read_text())
    record["spec"]["report"] = {"paper_table": True}
    sweep.spec_path.write_text(json.dumps(record))
    page = html.unescape(write_report(sweep.path).html.read_text())
    assert page.index("The paper's results at this budget") < page.index("<h2>Budget</h2>")
    assert "12 mode switch" in page and "seed Q2" in page


def test_the_budget_gives_each_pe_its_parameter_count(sweep: SweepDir) -> None:
    from cfglab.sweep.report.page import budget_lines

    for t in sweep.read_plan():
        if t.coordinates["pe"] == "rot":  # no position table: fewer parameters than abs
            card = sweep.run(t.name) / "model_card.json"
            card.write_text(json.dumps({"parameters": 95_808, "device": "cpu"}))
    _, rows = collect(sweep.path)
    lines = budget_lines(rows)
    assert "2 layers × 2 heads × 64 dims (parameters: abs 104,000, rot 95,808)" in lines[0]
    assert len(lines) == 2  # one budget, then the seeds


def test_a_smoke_report_says_so_first(sweep: SweepDir) -> None:
    from typer.testing import CliRunner

    from cfglab.cli import app

    record = json.loads(sweep.spec_path.read_text())
    record |= {"smoke": True, "name": "sw-smoke"}
    record["spec"]["smoke"] = {"train": {"steps": 20}}
    sweep.spec_path.write_text(json.dumps(record))
    res = CliRunner().invoke(app, ["report", str(sweep.path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "SMOKE run (a pipeline check, not a measurement)" in " ".join(res.output.split())
    page = html.unescape((sweep.report_dir / "report.html").read_text())
    assert page.index("SMOKE RUN") < page.index("<h2>Budget</h2>")
    assert '"steps": 20' in page


def test_a_missing_h_true_reads_n_a_with_its_reason(sweep: SweepDir) -> None:
    why = "recursive grammar: not estimated; H(trees) = 6.27 nats bounds it above"
    for t in sweep.read_plan():
        result = _generation_results(49, 49, 3.2)
        result["diversity"]["h"]["true"] = {"h": None, "note": why}
        sweep.write_result(t.name, "evaluate", {"result": result})
    _, rows = collect(sweep.path)
    columns, body = headline(rows)
    cells = {line[columns.index("H(model) [95% CI] / H(true)")] for line in body}
    assert cells == {"3.20 [2.90,3.50] / n/a"}
    page = html.unescape(write_report(sweep.path).html.read_text())
    assert f"H(true) n/a for g: {why}." in page and "?" not in " ".join(cells)


def _diversity_row(name: str, support: float) -> dict:
    h = {"model": {"h": 11.0, "ci95": [10.6, 11.4]}, "true": {"h": 11.9}}
    d = {"all": {"distinct": 150, "n": 200, "support_lower_bound": support}, "h": h}
    return {"run": name, "_results": {"evaluate": {"diversity": d}}}


@pytest.mark.parametrize("support", [300.0, 4e3, 3e8])
def test_diversity_axis_labels_do_not_overlap(support: float) -> None:
    from cfglab.plotting import pyplot
    from cfglab.sweep.report.generation import diversity_figure

    fig = diversity_figure([_diversity_row(f"g-abs-clean-s{s}", support * (s + 1)) for s in (0, 1)])
    assert fig is not None
    fig.canvas.draw()
    left, right = fig.axes[:2]
    lo, hi = right.get_xlim()
    shown = [
        t
        for t, x in zip(right.get_xticklabels(), right.get_xticks())
        if t.get_text() and lo <= x <= hi
    ]
    boxes = [t.get_window_extent() for t in shown]
    assert len(boxes) >= 2  # a scale to read
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert not any(t.get_text() for t in right.get_xminorticklabels())
    assert [t.get_text() for t in left.get_yticklabels()] == ["g-abs-clean-s0", "g-abs-clean-s1"]
    assert not any(t.get_visible() and t.get_text() for t in right.get_yticklabels())
    pyplot().close(fig)


def test_the_masked_column_only_beside_an_encoder(sweep: SweepDir) -> None:
    trials = sweep.read_plan()
    for t in trials:
        result = _evaluate(40, 30)
        result["masked"] = {"model": "decoder", "accuracy": proportion(21, 40)}
        sweep.write_result(t.name, "evaluate", {"result": result})
    _, rows = collect(sweep.path)
    assert {r["pe"] for r in rows} == {"abs", "rot"}
    columns, _ = headline(rows)
    assert "masked-token acc" not in columns  # decoders only: not their task
    rows[0]["pe"] = "mlm"  # an encoder in the sweep: the decoders' figures are its contrast
    columns, body = headline(rows)
    col = columns.index("masked-token acc")
    assert all(line[col].startswith("0.53 [") for line in body)

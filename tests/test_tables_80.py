"""Each command's table at 80 columns (a pipe's width): no name or number cut (`…`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eval_support import trained_run
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from cfglab.cli import console as consoles
from cfglab.cli.tables import write_csv
from cfglab.sweep.report.page import RunsTable


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    """The CLI's stdout console, 80 columns wide and recording."""
    c = Console(width=80, record=True, highlight=False)
    modules = ["cfglab.cli.probe_cmds", "cfglab.cli.eval_cmds", "cfglab.cli.sweep_cmds"]
    for module in [*modules, "cfglab.cli.posterior_cmds", "cfglab.cli.patch_cmds"]:
        monkeypatch.setattr(f"{module}.out", c, raising=False)
    monkeypatch.setattr(consoles, "out", c)
    yield c


NAMES = [
    "min-i-abs-clean-s0-with-a-long-tail",
    "min-i-rot-f0.1r0.15-s1",
    "min-i-uni-clean-s0",
]


def _runs_table() -> RunsTable:
    columns = ["run", "step", "val", "cut0", "cut20", "masked", "KL", "H m/t", "repair"]
    columns += ["inval", "probe"]
    body = [
        [n, "12000", "1.234", "0.98", "0.97", "-", "0.0123", "5.1/5.2", "0.88", "0.01", "0.93"]
        for n in NAMES
    ]
    return RunsTable(columns, body, "sweep demo")


def test_sweep_table_keeps_whole_run_names_at_80() -> None:
    c = Console(width=80, record=True)
    c.print(_runs_table())
    text = c.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in NAMES:
        assert name in text
    assert "0.0123" in text and "5.1/5.2" in text and "12000" in text


def test_sweep_table_wide_keeps_names_in_the_first_column() -> None:
    c = Console(width=200, record=True)
    c.print(_runs_table())
    lines = c.export_text().splitlines()
    assert any(line.lstrip().startswith(NAMES[0]) and "0.0123" in line for line in lines)
    assert not any(line.lstrip().startswith("#") for line in lines)


def _attention_result(sharp: bool) -> dict:
    p = [-2, -1, 0, 1, 2, 4, 8]
    levels = 3
    result = {
        "run": "runs/x",
        "plots": [],
        "distance": {
            "p": p,
            "mean": [[[0.1 * k / 7 for k in range(len(p))] for _ in range(4)] for _ in range(3)],
        },
        "offset": {
            "delta": [-2, -1, 0, 1, 2],
            "mean_B": [[[[-0.0421] * 5] * levels] * 4] * 3,
        },
        "adjacency": {"r": [0, 1, 2], "mean_B": [[[[0.3125] * 3] * levels] * 4] * 3},
    }
    if sharp:
        result["offset_sharp"] = {"delta": [-1, 0, 1], "mean_B": [[[[-0.5] * 3] * levels] * 4] * 3}
    return result


@pytest.mark.parametrize("sharp", [False, True])
def test_attention_b_columns_are_whole_numbers_at_80(narrow: Console, sharp: bool) -> None:
    from cfglab.cli.probe_cmds import render_attention

    render_attention(_attention_result(sharp))
    text = narrow.export_text()
    assert "…" not in text
    assert "-0.042" in text and "+0.312" in text and "B end" in text and "B prev" in text
    assert ("-0.500" in text) == sharp
    assert "B prev: B from an NT-end to the previous NT-end" in text


def test_train_help_is_grouped_and_whole_at_80() -> None:
    from typer.testing import CliRunner

    from cfglab.cli import app
    from cfglab.cli.config_flags import flag_name
    from cfglab.runs import TrainConfig

    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    text = res.output
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in [*TrainConfig.model_fields, "out", "resume", "quiet", "json"]:
        assert flag_name(name) in text, name
    heads = [f"─ {h} " for h in ("model", "optimiser", "data", "checkpoints and logs", "run")]
    assert all(h in text for h in heads)
    assert sorted(heads, key=text.index) == heads


def _whole(text: str) -> None:
    """Nothing cut, nothing wider than the 80 columns."""
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def _csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and "table" in rows[0]
    return rows


def _row_count(tables: list[Table]) -> int:
    return sum(t.row_count for t in tables)


# --- evaluate ----------------------------------------------------------------------------------

_EVAL_ARGS = ["--n", "8", "--cut", "4", "--temperatures", "1.0", "--threads", "1"]
_EVAL_ARGS += ["--max-length", "24", "--no-write", "-q"]


@pytest.fixture(scope="module")
def evaluated() -> dict[str, Any]:
    """eval.json of the tiny rot run, every section but the slow masked one."""
    res = CliRunner().invoke(app_(), ["evaluate", str(trained_run()), *_EVAL_ARGS, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def app_() -> Any:
    from cfglab.cli import app

    return app


def test_evaluate_tables_are_whole_at_80(narrow: Console, evaluated: dict[str, Any]) -> None:
    from cfglab.cli.eval_cmds import summary_tables

    for table in summary_tables(evaluated):
        narrow.print(table)
    text = narrow.export_text()
    _whole(text)
    acc = evaluated["accuracy"]["cut0"]["accuracy"]
    assert (
        f"{acc['rate']:.3f}  [{acc['ci95'][0]:.3f}, {acc['ci95'][1]:.3f}]  (n={acc['n']})" in text
    )
    assert f"{evaluated['kl']['mean']:.5f}" in text
    assert "KL(true ‖ model), mean over positions" in text
    for row in evaluated["robustness"]["by_temperature"]:
        assert f"{row['repaired']['rate']:.3f}" in text


def test_evaluate_format_csv_gives_the_table_rows(evaluated: dict[str, Any]) -> None:
    from cfglab.cli.eval_cmds import summary_tables

    res = CliRunner().invoke(
        app_(), ["evaluate", str(trained_run()), *_EVAL_ARGS, "--format", "csv"]
    )
    assert res.exit_code == 0, res.output
    rows = _csv(res.stdout)
    assert len(rows) == _row_count(summary_tables(evaluated))
    kl = next(r for r in rows if r["measure"] == "KL(true ‖ model), mean over positions")
    assert kl["value"] == f"{evaluated['kl']['mean']:.5f}"
    temps = [r["T"] for r in rows if r["T"]]
    assert temps == [str(t["temperature"]) for t in evaluated["robustness"]["by_temperature"]]


# --- probe -------------------------------------------------------------------------------------


def _probe_result(kind: str = "levels", n_levels: int = 6, layers: int = 4) -> dict[str, Any]:
    """probe.json's shape for a deep grammar: many level columns, CIs and every control."""
    anc, bnd = list(range(1, n_levels + 1)), list(range(n_levels))

    def by(levels: list[int], base: float) -> dict[str, float]:
        return {str(v): round(base - 0.0131 * v, 4) for v in levels}

    def family(base: float) -> dict[str, Any]:
        scores = {m: by(anc, base) for m in ("ancestor", "ancestor_at_end", "diagonal_at_end")}
        scores |= {"tridiagonal_at_end": by(anc, base), "boundary": by(bnd, base)}
        ci = {"ancestor_ci95": dict.fromkeys(map(str, anc), 0.0123)}
        return scores | ci | {"boundary_ci95": dict.fromkeys(map(str, bnd), 0.0234)}

    every = [str(l) for l in range(layers + 1)]
    per = {m: by(anc, 0.9) for m in ("ancestor", "ancestor_at_end")} | {"boundary": by(bnd, 0.9)}
    return {
        "run": "runs/x",
        "plots": [],
        "scope": "whole",
        "targets": kind,
        "targets_note": "heights ↑h",
        "layers": list(range(layers + 1)),
        "levels": {"ancestor": anc, "boundary": bnd},
        "trained": {l: family(0.987) for l in every},
        "untrained": {l: family(0.555) for l in every},
        "selectivity": {
            l: {"ancestor": by(anc, 0.333), "boundary": by(bnd, -0.044)} for l in every
        },
        "ceiling": per,
        "prefix_ceiling": per,
        "majority": per,
        "output_only": per,
        "output_tokens": per,
        "true_output_tokens": per,
        "positions": {"ancestor": by(anc, 500), "boundary": by(bnd, 500)},
    }


@pytest.mark.parametrize("kind", ["levels", "heights"])
def test_probe_tables_with_many_levels_are_whole_at_80(narrow: Console, kind: str) -> None:
    from cfglab.cli.probe_cmds import LEVEL_LEGEND, _short_label, render_probe

    result = _probe_result(kind, n_levels=7, layers=6)
    render_probe(result)
    text = narrow.export_text()
    _whole(text)
    for v in result["levels"]["ancestor"] + result["levels"]["boundary"]:
        assert _short_label(kind, v) in text
    assert ("NT2" in text) == (kind == "levels") and (LEVEL_LEGEND in text) == (kind == "levels")
    for layer in ("embedding", "layer 6", "  untrained", "token ⊕ true next-token rows"):
        assert layer in text
    trained, sel = result["trained"]["6"]["ancestor"], result["selectivity"]["6"]["boundary"]
    cells = [f"{100 * trained[str(v)]:.1f} ±1.2" for v in result["levels"]["ancestor"]]
    cells += [f"{100 * sel[str(v)]:+.1f}" for v in result["levels"]["boundary"]]
    for cell in cells:
        assert cell in text, cell
    # split, not squeezed: some table repeats the row names for the levels that did not fit
    assert text.count("ancestor NT (all positions)") == 1
    assert text.count("hidden states") > len(
        [m for m in result["trained"]["0"] if not m.endswith("_ci95")]
    )


def test_probe_tables_stay_one_table_when_wide() -> None:
    from cfglab.cli import probe_cmds

    c = Console(width=250, record=True)
    probe_cmds.out, saved = c, probe_cmds.out
    try:
        probe_cmds.render_probe(_probe_result(n_levels=7, layers=2))
    finally:
        probe_cmds.out = saved
    assert c.export_text().count("hidden states") == 5


def test_probe_format_csv_gives_the_table_rows() -> None:
    from cfglab.cli.probe_cmds import _probe_tables

    args = ["probe", str(trained_run()), "--n", "16", "--n-test", "8", "--threads", "1"]
    res = CliRunner().invoke(app_(), [*args, "--no-controls", "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = _csv(res.stdout)
    written = json.loads((trained_run() / "probe" / "probe.json").read_text())
    assert len(rows) == _row_count([t for t, _, _ in _probe_tables(written, flat=True)])
    first = next(r for r in rows if r["hidden states"] == "embedding")
    level = str(written["levels"]["ancestor"][0])
    value = written["trained"]["0"]["ancestor"][level]
    ci = written["trained"]["0"]["ancestor_ci95"][level]
    assert first["NT2"] == f"{100 * value:.1f} ±{100 * ci:.1f}"


# --- attention ---------------------------------------------------------------------------------


def test_attention_format_csv_gives_the_table_rows() -> None:
    args = ["attention", str(trained_run()), "--n", "8", "--threads", "1", "-q"]
    res = CliRunner().invoke(app_(), [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = _csv(res.stdout)
    written = json.loads((trained_run() / "attention" / "attention.json").read_text())
    heads = sum(len(layer) for layer in written["distance"]["mean"])
    assert len(rows) == heads
    assert [r["L"] for r in rows[:2]] == ["1", "1"] and [r["h"] for r in rows[:2]] == ["0", "1"]
    assert all(float(r["B end"]) == float(r["B end"]) for r in rows)  # numbers, no boxes


# --- posterior and patch -----------------------------------------------------------------------


def test_posterior_table_of_a_deep_grammar_is_whole_at_80(narrow: Console) -> None:
    root = Path(__file__).resolve().parents[1]
    grammar = str(root / "grammars" / "cfg3b.cfg")
    runner = CliRunner()
    sampled = runner.invoke(app_(), ["sample", grammar, "-n", "1", "--seed", "3", "--json"])
    line = " ".join(json.loads(sampled.stdout)["tokens"]) + "\n"
    record = json.loads(runner.invoke(app_(), ["posterior", grammar, "--json"], input=line).stdout)
    res = runner.invoke(app_(), ["posterior", grammar], input=line)
    assert res.exit_code == 0, res.output
    text = narrow.export_text()
    _whole(text)
    from cfglab.grammar.levels import level_label

    for level in range(len(record["ancestors"])):
        assert f"{level_label(level)}: ancestor" in text
    last = len(record["tokens"]) - 1
    top = record["ancestors"][-1][last]
    nt, p = next(iter(top.items()))
    assert f"{nt} {p:.2f}" in text and f" {last} " in text


def _patch_result(layers: int) -> dict[str, Any]:
    names = ["all", "last", *[f"nt_end_l{d}" for d in range(1, 7)]]
    names += [f"{n}_random" for n in names if n != "all"]
    rows = [
        {"layer": l, "positions": n, "restored": 0.8765 - 0.01 * l, "ci95": [0.8123, 0.9345]}
        for l in range(layers + 1)
        for n in names
    ]
    return {
        "run": "runs/x",
        "plots": [],
        "pairs": 200,
        "pe": "rot",
        "results": rows,
        "untrained": {"results": rows},
        "reference": {
            "base": {"kl_to_base_truth": 0.01, "kl_to_donor_truth": 1.2},
            "donor": {"kl_to_donor_truth": 0.02},
        },
        "restored_definition": "1 - KL / KL",
    }


def test_patch_tables_with_many_layers_are_whole_at_80(narrow: Console) -> None:
    from cfglab.cli.patch_cmds import render_patch

    render_patch(_patch_result(layers=12))
    text = narrow.export_text()
    _whole(text)
    for name in ("embedding", "layer 12", "nt_end_l6_random", "last_random"):
        assert name in text
    assert "0.88 [0.81, 0.93]" in text and "0.76 [0.81, 0.93]" in text


def test_write_csv_keeps_one_header_for_several_tables() -> None:
    a, b = Table(title="a"), Table(title="[bold]b[/bold]")
    a.add_column("x"), a.add_column("y")
    b.add_column("y"), b.add_column("z")
    a.add_row("1", "[dim]2[/dim]")
    b.add_row("3", "4")
    b.add_row("5", "6")
    stream = io.StringIO()
    assert write_csv([a, b], stream) == 3
    assert stream.getvalue().splitlines() == ["table,x,y,z", "a,1,2,", "b,,3,4", "b,,5,6"]

"""Each command's table at 80 columns (a pipe's width): no name or number cut (`…`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from cfglab.cli import console as consoles
from cfglab.sweep.report.page import RunsTable


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    """The CLI's stdout console, 80 columns wide and recording."""
    c = Console(width=80, record=True, highlight=False)
    for module in ("cfglab.cli.probe_cmds", "cfglab.cli.eval_cmds", "cfglab.cli.sweep_cmds"):
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

"""Progress without a terminal: plain lines on stderr at every tenth (or every N seconds), none
when quiet; `cfglab train` through typer's CliRunner (not a TTY) writes them; the sweep prints
trial lines instead of Tune's per-trial config dump unless verbose."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.progress import (
    PlainProgress,
    bars_redraw,
    stage_lines,
    training_progress,
    work_progress,
)
from tests.eval_support import LONGER


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain(total: int, **kw: Any) -> tuple[PlainProgress, list[str], FakeClock]:
    lines: list[str] = []
    clock = FakeClock()
    return PlainProgress("train", total, say=lines.append, clock=clock, **kw), lines, clock


def test_a_line_at_every_tenth_with_elapsed_and_time_left() -> None:
    bar, lines, clock = _plain(200)
    for step in range(1, 201):
        clock.now += 0.5  # 0.5 s a step: 100 s in all
        bar.update(step, "loss 1.2300")
    assert [int(re.match(r"train (\d+)/200 steps", l)[1]) for l in lines] == list(
        range(20, 201, 20)
    )
    assert lines[2] == "train 60/200 steps, loss 1.2300, 30 s elapsed, ~70 s left"
    assert lines[-1] == "train 200/200 steps, loss 1.2300, 1.7 min elapsed"  # nothing left


def test_a_line_every_n_seconds_when_tenths_are_slow() -> None:
    bar, lines, clock = _plain(1000, every_s=30.0)
    for step in range(1, 11):
        clock.now += 10.0
        bar.update(step)
    # 10 steps (1 %) in 100 s: no tenth reached, so one line each 30 s
    assert [l.split(",")[0] for l in lines] == [
        "train 3/1000 steps",
        "train 6/1000 steps",
        "train 9/1000 steps",
    ]
    assert lines[0] == "train 3/1000 steps, 30 s elapsed, ~2.8 h left"


def test_a_resumed_run_counts_its_rate_from_where_it_resumed() -> None:
    bar, lines, clock = _plain(1000, start=500, every_s=600.0)
    clock.now += 50.0
    bar.update(550)  # not yet a tenth past 500
    assert lines == []
    clock.now += 50.0
    bar.update(600)  # 100 steps in 100 s here: 400 left is ~400 s
    assert lines == ["train 600/1000 steps, 1.7 min elapsed, ~6.7 min left"]


def test_the_same_count_is_not_printed_twice() -> None:
    bar, lines, clock = _plain(10, every_s=1.0)
    bar.update(1)
    clock.now += 5
    bar.update(1)
    bar.advance(0)
    assert len(lines) == 1


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_terminal_work_progress_prints_plain_lines_on_stderr(
    no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not bars_redraw()  # capsys's stdout is no terminal
    with work_progress("attention", 20, unit="strings") as advance:
        for _ in range(20):
            advance(1)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("attention 20/20 strings, ")
    assert captured.out == ""


def test_quiet_prints_nothing(no_terminal: None, capsys: pytest.CaptureFixture[str]) -> None:
    with work_progress("probe", 5, quiet=True) as advance:
        for _ in range(5):
            advance(1)
    with training_progress(5, 0, quiet=True) as bar:
        for step in range(1, 6):
            bar.update(step, {"loss": 1.0})
    assert capsys.readouterr() == ("", "")


def test_on_a_terminal_the_rich_bar_stays(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's own switch: treat the stream as a tty
    assert bars_redraw()
    with work_progress("probe", 5) as advance:
        for _ in range(5):
            advance(1)
    assert "probe 5/5 steps" not in capsys.readouterr().err


def _train_args(tmp: Path) -> list[str]:
    grammar = tmp / "longer.cfg"
    grammar.write_text(LONGER)
    return [
        "train",
        "--grammar",
        str(grammar),
        "--pe",
        "rot",
        "--layers",
        "1",
        "--heads",
        "2",
        "--dim",
        "16",
        "--context",
        "64",
        "--batch",
        "8",
        "--steps",
        "30",
        "--threads",
        "1",
        "--checkpoint-every",
        "30",
        "--eval-every",
        "30",
        "--eval-batches",
        "1",
        "--log-every",
        "10",
        "--chunk-strings",
        "64",
    ]  # eval_support.tiny_config as flags


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """`cfglab train` through CliRunner (no terminal): the run directory and what it printed."""
    tmp = tmp_path_factory.mktemp("progress")
    result = CliRunner().invoke(app, [*_train_args(tmp), "--out", str(tmp / "run")])
    assert result.exit_code == 0, result.output
    return tmp / "run", result


def test_train_through_the_cli_writes_progress_lines_to_stderr(
    trained: tuple[Path, Result],
) -> None:
    result = trained[1]
    progress = [l for l in result.stderr.splitlines() if l.startswith("train ")]
    assert [l.split(",")[0] for l in progress] == [f"train {s}/30 steps" for s in (10, 20, 30)]
    assert re.match(r"train 10/30 steps, loss \d+\.\d{4}, \d+ s elapsed, ~\d+ s left$", progress[0])
    assert "held-out" in progress[-1]  # eval_every 30: the last record has the held-out loss
    assert "train 10/30" not in result.stdout


def test_train_quiet_prints_no_progress(tmp_path: Path) -> None:
    quiet = CliRunner().invoke(app, [*_train_args(tmp_path), "--out", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert not any(l.startswith("train ") for l in quiet.stderr.splitlines())


@pytest.mark.parametrize(
    "command, options, unit",
    [
        ("attention", ["--n", "10"], "strings"),
        ("probe", ["--n", "8", "--n-test", "8", "--no-controls", "--layers", "1"], "steps"),
    ],
)
def test_probe_and_attention_through_the_cli_write_progress_lines(
    trained: tuple[Path, Result], command: str, options: list[str], unit: str
) -> None:
    run = CliRunner().invoke(app, [command, str(trained[0]), *options, "--threads", "1"])
    assert run.exit_code == 0, run.output
    lines = [l for l in run.stderr.splitlines() if l.startswith(f"{command} ")]
    assert len(lines) == 10, run.stderr  # one a tenth
    assert re.match(rf"{command} (\d+)/\1 {unit}, ", lines[-1])  # the last: the whole count


def test_evaluate_through_the_cli_writes_its_stages_with_the_time_so_far(
    trained: tuple[Path, Result],
) -> None:
    args = ["evaluate", str(trained[0]), "--n", "8", "--sections", "accuracy", "--no-write"]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = [l for l in result.stderr.splitlines() if l.startswith("evaluate ")]
    assert lines and all(re.search(r"\(\d+ s elapsed\)$", l) for l in lines), result.stderr
    assert lines[0].startswith("evaluate cut0: 8 generations")
    quiet = CliRunner().invoke(app, [*args, "--threads", "1", "--quiet"])
    assert quiet.exit_code == 0 and "evaluate cut0" not in quiet.stderr


def test_stage_lines_carry_the_time_so_far_on_one_line() -> None:
    from rich.console import Console

    stream, clock = io.StringIO(), FakeClock()
    say = stage_lines("evaluate", Console(file=stream, width=40), clock)
    clock.now += 12
    say("cut0: 1000 generations of strings from the model")
    assert stream.getvalue() == (
        "evaluate cut0: 1000 generations of strings from the model (12 s elapsed)\n"
    )


# --- the sweep's output ------------------------------------------------------------------------


class FakeTrial:
    def __init__(self, config: dict[str, Any], last_result: dict[str, Any] | None = None) -> None:
        self.config, self.last_result = config, last_result or {}
        self.trial_id, self.status = config["run"], "RUNNING"

    def __str__(self) -> str:
        return self.config["run"]


def _trial_config(steps: int = 100) -> dict[str, Any]:
    train = {f"field_{i}": i for i in range(38)} | {"steps": steps}
    return {"run": "mini-rot-s0", "pe": "rot", "seed": 0, "train": train}


def test_tune_prints_its_own_output_only_when_verbose() -> None:
    from cfglab.sweep.tune import TrialLines, tune_output

    quiet_level, quiet_printers = tune_output("/sweeps/x", verbose=False)
    assert quiet_level == 0 and [type(p) for p in quiet_printers] == [TrialLines]
    assert tune_output("/sweeps/x", verbose=True) == (2, [])


@pytest.mark.parametrize("level", [0, 2])
def test_tune_dumps_a_trials_config_as_it_starts_unless_silent(
    level: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why verbosity 0: Tune's reporter prints every `train/*` field at a trial's start at 1 and
    up (and takes no reporter of ours in its new output engine)."""
    from ray.tune.experimental.output import AirVerbosity, TuneTerminalReporter

    reporter = TuneTerminalReporter(AirVerbosity(level))
    reporter.on_trial_start(0, [], FakeTrial(_trial_config()))
    printed = capsys.readouterr().out
    assert ("train/field_37" in printed) == (level > 0)


def test_trial_lines_give_coordinates_and_progress_not_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cfglab.sweep import tune as sweep_tune

    said: list[str] = []

    class Pool:
        def __init__(self) -> None:
            self.say, self.train = said.append, {"mini-rot-s0": {"steps": 100}}

    monkeypatch.setitem(sweep_tune._POOLS, "/sweeps/x", Pool())
    lines = sweep_tune.TrialLines("/sweeps/x")
    trial = FakeTrial(_trial_config(steps=100))
    lines.on_trial_start(0, [], trial)
    for step in range(10, 101, 10):
        lines.on_trial_result(0, [], trial, {"step": step, "loss": 2.0, "done": step == 100})
    assert said[0] == "trial mini-rot-s0 started: pe=rot, seed=0"
    assert not any("field_" in line for line in said)
    assert [l.split(",")[0] for l in said[1:]] == [
        f"train mini-rot-s0 {s}/100 steps" for s in range(10, 101, 10)
    ]
    assert "loss 2.0000" in said[-1]
    # Tune pickles its callbacks into the experiment state: the key travels, the clocks do not
    copy = pickle.loads(pickle.dumps(lines))
    assert copy.key == "/sweeps/x" and copy.bars == {}

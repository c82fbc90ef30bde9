"""Fuzzing `cfglab check` (issue 21): seeded mutations of the shipped grammars end in success or a
CfglabError (located where the DSL is at fault), never another exception, within a time and a
memory bound. A few random structural mutations still pass 10 s in benchmarks/bench_fuzz.py
(benchmarks/RESULTS.md); the structural cases here are the named big ones, and
tests/test_fuzz_budgets.py holds the fuzz run's slow inputs, built directly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from tests.fuzzing import GRAMMARS, MUTATIONS, TIME_BOUND_S, _bytes_edit, check_file

PEAK_BYTES = 400e6


def _mutated(seed: int) -> tuple[str, bytes]:
    rng = random.Random(seed)
    source = rng.choice(GRAMMARS).read_bytes()
    kind = ["token", "weight", "bytes"][seed % 3]
    if kind == "bytes":
        return kind, _bytes_edit(source, rng)
    return kind, MUTATIONS[kind](source.decode("utf-8"), rng).encode("utf-8")


def _big(kind: str) -> str:
    head = "grammar big\nstart C0\n"
    if kind == "cycle":
        return head + "\n".join([f"C{i} -> C{(i + 1) % 1000}" for i in range(1000)] + ['C0 -> "a"'])
    if kind == "rule_cycle":
        body = [f'C{i} -> C{(i + 1) % 1000} "b"' for i in range(1000)] + ['C0 -> "a"']
        return head + "\n".join(body)
    if kind == "unit_chain":
        return head + "\n".join([f"C{i} -> C{i + 1}" for i in range(2000)] + ['C2000 -> "a"'])
    if kind == "fan_out":
        return head + "C0 -> " + " | ".join(f'"a{i}" C1' for i in range(10_000)) + '\nC1 -> "x"'
    depth = int(kind.removeprefix("chain"))
    return head + "\n".join(
        [f"C{i} -> C{i + 1} C{i + 1}" for i in range(depth)] + [f'C{depth} -> "a"']
    )


def _assert_bounded(path: Path) -> None:
    outcome = check_file(path)
    assert outcome.kind in ("ok", "located"), (outcome.kind, outcome.detail)
    assert outcome.seconds < TIME_BOUND_S and outcome.peak_bytes < PEAK_BYTES


@pytest.mark.parametrize("seed", range(45))
def test_mutations_of_shipped_grammars_are_ok_or_located(tmp_path: Path, seed: int) -> None:
    _, data = _mutated(seed)
    path = tmp_path / "m.cfg"
    path.write_bytes(data)
    _assert_bounded(path)


@pytest.mark.parametrize(
    "kind", ["cycle", "rule_cycle", "unit_chain", "fan_out", "chain20", "chain30"]
)
def test_big_structures_finish_within_the_bounds(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "big.cfg"
    path.write_text(_big(kind))
    _assert_bounded(path)


@pytest.mark.parametrize("seed", range(4))
def test_the_real_cli_never_shows_a_traceback(tmp_path: Path, seed: int) -> None:
    _, data = _mutated(seed)
    path = tmp_path / "m.cfg"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["check", str(path), "--ambiguity-strings", "20"])
    assert result.exception is None or isinstance(result.exception, (SystemExit, CfglabError))
    assert result.exit_code in (0, 1)

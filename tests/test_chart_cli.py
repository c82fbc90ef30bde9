"""`cfglab verify` and `cfglab next-token`: JSON shapes, agreement with the chart, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cfglab.chart.front import Chart
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample

ROOT = Path(__file__).resolve().parents[1]
CFG3F = ROOT / "grammars" / "cfg3f.cfg"
CATALAN = 'grammar catalan\nstart S\nterminals "a" "b"\nS -> S S | "a" | "b"\n'


def cfglab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cfglab", *args],
        input=stdin,
        text=True,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def strings_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    g = load_grammar(CFG3F)
    strings = sample(g, 6, 5).strings()
    rng = np.random.default_rng(0)
    for s in strings[3:]:
        k = rng.integers(len(s))
        s[k] = (s[k] + 1) % len(g.terminals)
    path = tmp_path_factory.mktemp("in") / "strings.txt"
    path.write_text("".join(" ".join(g.decode(s)) + "\n" for s in strings))
    return path, strings


def test_verify_json_answers_every_line_like_the_chart(strings_file) -> None:
    path, strings = strings_file
    run = cfglab("verify", str(CFG3F), str(path), "--json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == len(strings)
    chart = Chart(load_grammar(CFG3F))
    counts = chart.count_parses(strings)
    for rec, count, repair in zip(records, counts, chart.min_substitutions(strings)):
        assert set(rec) == {"valid", "parses", "substitutions"}
        assert rec["valid"] == (count > 0) and rec["parses"] == count
        assert rec["substitutions"] == repair.substitutions
        assert (rec["substitutions"] == 0) == rec["valid"]
    assert not all(r["valid"] for r in records) and any(r["valid"] for r in records)


def test_verify_reads_stdin_and_prints_a_table_without_json(strings_file) -> None:
    path, strings = strings_file
    run = cfglab("verify", str(CFG3F), "-", stdin=path.read_text())
    assert run.returncode == 0, run.stderr
    assert "substitutions" in run.stdout
    valid = int(np.sum(Chart(load_grammar(CFG3F)).accepts(strings)))
    assert f"{valid} of {len(strings)} strings" in run.stdout


def test_next_token_json_rows(strings_file) -> None:
    path, strings = strings_file
    g = load_grammar(CFG3F)
    run = cfglab("next-token", str(CFG3F), str(path), "--json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    chart = Chart(g)
    for rec, s in zip(records, strings):
        assert rec["tokens"] == g.decode(s)
        rows = np.array(rec["next"])
        assert rows.shape == (len(s) + 1, 1 + len(g.terminals))
        np.testing.assert_allclose(rows, chart.next_token_distributions(s), atol=1e-15)
    assert np.allclose(np.array(records[0]["next"]).sum(axis=1), 1.0)


@pytest.mark.parametrize("command", ["verify", "next-token"])
@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 2 3\n1 2 x 3\n", [":2:5", "unknown token 'x'", "terminals are 1 2 3"]),
        ("1 2 3\n\n", [":2:1", "empty line"]),
        ("1 " * 5000 + "\n", [":1:1", "5000 tokens", "bound of 4096"]),
    ],
)
def test_bad_lines_are_named_without_a_traceback(
    tmp_path: Path, command: str, text: str, expected: list[str]
) -> None:
    path = tmp_path / "in.txt"
    path.write_text(text)
    run = cfglab(command, str(CFG3F), str(path), "--json")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert str(path) in run.stderr
    for piece in expected:
        assert piece in run.stderr


def test_missing_input_and_empty_input_fail_cleanly(tmp_path: Path) -> None:
    run = cfglab("verify", str(CFG3F), str(tmp_path / "nope.txt"))
    assert run.returncode == 1 and "no such file" in run.stderr and "Traceback" not in run.stderr
    run = cfglab("verify", str(CFG3F), "-", stdin="")
    assert run.returncode == 1 and "no input lines" in run.stderr


def test_recursive_grammar_bound_and_big_exact_counts(tmp_path: Path) -> None:
    grammar = tmp_path / "catalan.cfg"
    grammar.write_text(CATALAN)
    n = 60
    run = cfglab("verify", str(grammar), "-", "--json", stdin="a " * n + "\n")
    assert run.returncode == 0, run.stderr
    catalan = [1]
    for k in range(1, n):
        catalan.append(catalan[-1] * 2 * (2 * k - 1) // (k + 1))
    assert json.loads(run.stdout) == {"valid": True, "parses": catalan[n - 1], "substitutions": 0}
    run = cfglab("verify", str(grammar), "-", stdin="a " * 401 + "\n")
    assert run.returncode == 1 and "bound of 400" in run.stderr


def test_commands_import_neither_torch_nor_ray(strings_file) -> None:
    path, _ = strings_file
    code = (
        "import sys\n"
        "from cfglab.cli import app\n"
        f"for cmd in ('verify', 'next-token'):\n"
        f"    app([cmd, {str(CFG3F)!r}, {str(path)!r}, '--json'], standalone_mode=False)\n"
        "print('HEAVY', sorted(m for m in ('torch', 'ray') if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], text=True, capture_output=True, cwd=ROOT, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stdout

"""The string-length bound (analysis/graph.MAX_STRING_LENGTH): grammars whose shortest string
cannot fit are refused before anything is allocated, by `check` and by every command that
samples or charts."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfglab.analysis.checks import check_grammar
from cfglab.analysis.graph import MAX_STRING_LENGTH, require_string_length
from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.grammar.dsl import parse_grammar


def binary_chain(depth: int) -> str:
    """C0 -> C1 C1, C1 -> C2 C2, ...: the only string has 2^depth tokens."""
    rules = [f"C{i} -> C{i + 1} C{i + 1}" for i in range(depth)] + [f'C{depth} -> "a"']
    return "grammar chain\nstart C0\n" + "\n".join(rules) + "\n"


@pytest.mark.parametrize("depth", [20, 30])
def test_check_reports_a_binary_chain_past_the_bound_fast_and_small(depth: int) -> None:
    grammar = parse_grammar(binary_chain(depth))
    tracemalloc.start()
    began = time.perf_counter()
    report = check_grammar(grammar)
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    codes = [e.code for e in report.errors]
    assert "string-length-bound" in codes
    message = next(e.message for e in report.errors if e.code == "string-length-bound")
    assert f"{2**depth:,}" in message and f"{MAX_STRING_LENGTH:,}" in message
    assert report.ambiguity is None  # nothing was sampled
    assert seconds < 2.0 and peak < 20e6


def test_the_bound_is_inclusive() -> None:
    depth = MAX_STRING_LENGTH.bit_length() - 1  # 2^depth <= MAX_STRING_LENGTH < 2^(depth+1)
    require_string_length(parse_grammar(binary_chain(depth)))
    with pytest.raises(CfglabError, match="MAX_STRING_LENGTH"):
        require_string_length(parse_grammar(binary_chain(depth + 1)))


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "{g}", "-n", "2"],
        ["verify", "{g}", "{s}"],
        ["next-token", "{g}", "{s}"],
        ["posterior", "{g}", "{s}"],
        ["train", "--grammar", "{g}", "--out", "{o}", "--steps", "1", "--quiet"],
        ["check", "{g}"],
    ],
)
def test_every_command_refuses_a_grammar_past_the_bound(tmp_path: Path, args: list[str]) -> None:
    grammar = tmp_path / "chain.cfg"
    grammar.write_text(binary_chain(30))
    strings = tmp_path / "strings.txt"
    strings.write_text("a a\n")
    names = {"g": str(grammar), "s": str(strings), "o": str(tmp_path / "run")}
    tracemalloc.start()
    result = CliRunner().invoke(app, [a.format(**names) for a in args])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a CfglabError passes through the typer app (cfglab.cli.main prints it); `check` reports it
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, CfglabError), result.exception
    else:
        assert result.exit_code == 1, result.output
    text = " ".join((result.output + str(result.exception or "")).split())
    assert "1,073,741,824" in text and "MAX_STRING_LENGTH" in text and "fix" in text
    assert peak < 300e6  # importing torch for `train` counts; 2^30 tokens would be gigabytes
    assert not (tmp_path / "run").exists()

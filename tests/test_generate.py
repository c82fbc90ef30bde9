"""cfglab.analysis.generate and `cfglab new-grammar`: every knob holds, seeds reproduce, retries
stop at the first passing seed, and the CLI writes, refuses and explains."""

from __future__ import annotations

import itertools
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from cfglab.analysis.checks import CheckConstraints, check_grammar
from cfglab.analysis.generate import GeneratorKnobs, generate_grammar, new_grammar
from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar

ROOT = Path(__file__).resolve().parents[1]


def _distinct_bodies(below: int, length: int, no_repeat: bool) -> int:
    return math.perm(below, length) if no_repeat else below**length


@st.composite
def feasible_knobs(draw) -> GeneratorKnobs:
    """Knobs that can always be met: every level has enough slots to use the level below."""
    rules = tuple(sorted(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2))))
    length = tuple(sorted(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2))))
    levels = draw(st.integers(1, 4))
    no_repeat = draw(st.booleans())
    distinct = draw(st.booleans())
    sizes = [1]
    for _ in range(levels + 1):  # nonterminal levels, then the terminals
        low = length[0] if no_repeat else 1
        sizes.append(draw(st.integers(low, max(low, min(5, sizes[-1] * rules[0] * length[0])))))
    for above, below in itertools.pairwise(sizes):
        assume(below <= above * rules[0] * length[0])
        if distinct:
            assume(_distinct_bodies(below, length[0], no_repeat) >= rules[0])
    width = sizes[1:-1] if draw(st.booleans()) else sizes[1]
    if isinstance(width, int):
        assume(all(w == width for w in sizes[1:-1]))
    return GeneratorKnobs(
        levels=levels,
        width=width,
        rules=rules,
        rule_length=length,
        terminals=sizes[-1],
        distinct_rules=distinct,
        no_repeat_symbol=no_repeat,
    )


def levels_of(g: Grammar) -> list[list[str]]:
    by: dict[int, list[str]] = {}
    for nt, lv in (g.levels or {}).items():
        by.setdefault(lv, []).append(nt)
    return [sorted(by[lv], key=lambda n: int(n[1:])) for lv in sorted(by)]


@settings(max_examples=150, deadline=None)
@given(feasible_knobs(), st.integers(0, 10**6))
def test_generated_grammars_satisfy_every_knob(knobs: GeneratorKnobs, seed: int) -> None:
    g = generate_grammar(knobs, seed, name="g")
    report = check_grammar(g, CheckConstraints(strict=True), ambiguity_strings=0)
    assert report.ok and not report.warnings  # nothing unreachable, unused or duplicated
    assert report.depth.layered and report.depth.depth == knobs.levels + 1
    assert report.depth.widths == [1] + knobs.widths
    assert g.terminals == tuple(str(i) for i in range(1, knobs.terminals + 1))
    for nt in g.nonterminals:
        rules = g.rules_of(nt)
        bodies = [r.rhs for r in rules]
        drawn = sum(r.weight for r in rules)  # a body drawn k times is one rule of weight k
        assert knobs.rules[0] <= drawn <= knobs.rules[1]
        assert all(knobs.rule_length[0] <= len(b) <= knobs.rule_length[1] for b in bodies)
        if knobs.distinct_rules:
            assert all(r.weight == 1.0 for r in rules)
        if knobs.no_repeat_symbol:
            assert all(len(set(b)) == len(b) for b in bodies)
        assert len(set(bodies)) == len(bodies)


@settings(max_examples=40, deadline=None)
@given(feasible_knobs(), st.integers(0, 10**6))
def test_names_follow_the_authors_numbering(knobs: GeneratorKnobs, seed: int) -> None:
    """Nonterminal ids run from T+4 on the bottom level up to the start symbol, contiguously."""
    g = generate_grammar(knobs, seed)
    ids = [int(nt[1:]) for level in reversed(levels_of(g)) for nt in level]
    first = knobs.terminals + 4
    assert ids == list(range(first, first + len(ids)))
    assert g.start == f"N{first + len(ids) - 1}"


def test_the_authors_shape_gives_the_authors_names() -> None:
    g = generate_grammar(GeneratorKnobs(levels=5, width=3, rules=(3, 4)), seed=3)
    assert levels_of(g) == [
        ["N22"],
        ["N19", "N20", "N21"],
        ["N16", "N17", "N18"],
        ["N13", "N14", "N15"],
        ["N10", "N11", "N12"],
        ["N7", "N8", "N9"],
    ]
    r = check_grammar(g, ambiguity_strings=0).lengths
    assert r.shortest >= 2**6 and r.longest <= 3**6


def test_same_seed_same_grammar_and_seeds_differ() -> None:
    knobs = GeneratorKnobs(levels=3, width=[2, 3, 4], rules=(1, 3), rule_length=(1, 3))
    a, b = generate_grammar(knobs, 11, "x"), generate_grammar(knobs, 11, "x")
    assert a == b and a.header == b.header
    assert len({generate_grammar(knobs, s, "x").rules for s in range(5)}) > 1


def test_header_records_knobs_seed_and_command() -> None:
    knobs = GeneratorKnobs(levels=2, width=[2, 3], rules=(2, 2), no_repeat_symbol=True)
    header = "\n".join(generate_grammar(knobs, 42, "demo").header)
    assert "seed: 42" in header
    assert (
        "cfglab new-grammar demo --levels 2 --width 2,3 --rules 2 --rule-length 2-3 "
        "--terminals 3 --distinct-rules --no-repeat-symbol --seed 42"
    ) in header


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(rules=(3, 2)), "rules range"),
        (dict(rule_length=(0, 2)), "rule_length range"),
        (dict(levels=3, width=[3, 3]), "width lists 2 levels"),
        (dict(levels=2, width=[3, 0]), "at least one"),
    ],
)
def test_inconsistent_knobs_are_refused(kwargs: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        GeneratorKnobs(**kwargs)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(levels=1, width=10, rules=(1, 1), rule_length=(2, 2)), "right-side slots"),
        (
            dict(levels=1, width=2, terminals=1, rule_length=(2, 2), no_repeat_symbol=True),
            "no-repeat",
        ),
        (dict(levels=1, width=1, terminals=1, rules=(3, 3), rule_length=(1, 2)), "distinct rules"),
    ],
)
def test_unsatisfiable_knobs_say_why(kwargs: dict, words: str) -> None:
    with pytest.raises(CfglabError, match=words):
        generate_grammar(GeneratorKnobs(**kwargs), seed=0)


def test_new_grammar_returns_the_first_seed_that_passes() -> None:
    knobs = GeneratorKnobs(levels=2, width=2, rules=(1, 3), rule_length=(1, 3))
    shortest = [
        check_grammar(generate_grammar(knobs, s), ambiguity_strings=0).lengths.shortest
        for s in range(30)
    ]
    need = shortest[0] + 1  # seed 0 fails, so new_grammar has to retry
    first = next(s for s, n in enumerate(shortest) if n >= need)
    g, report, used = new_grammar(
        "m", knobs, CheckConstraints(min_length=need), seed=0, max_tries=30
    )
    assert used == first and report.ok and report.lengths.shortest >= need
    assert g == generate_grammar(knobs, first, "m")


def test_new_grammar_gives_up_clearly() -> None:
    with pytest.raises(CfglabError, match=r"0\.\.2.*min-length \(3\)"):
        new_grammar("m", GeneratorKnobs(levels=1), CheckConstraints(min_length=10**6), 0, 3)


# --- CLI -----------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(app, ["new-grammar", *args, "--ambiguity-strings", "0"])


def test_cli_writes_a_grammar_that_loads_back(tmp_path: Path) -> None:
    dsl = pytest.importorskip("cfglab.grammar.dsl")
    result = invoke(
        "demo",
        "--levels",
        "3",
        "--width",
        "2,3,3",
        "--rules",
        "2",
        "--seed",
        "5",
        "--out-dir",
        str(tmp_path),
        "--min-length",
        "12",
    )
    assert result.exit_code == 0, result.output
    g = dsl.load_grammar(tmp_path / "demo.cfg")
    report = check_grammar(g, ambiguity_strings=0)
    assert report.depth.widths == [1, 2, 3, 3] and report.lengths.shortest >= 12
    assert "shortest string" in result.output and "OK" in result.output


def test_cli_regenerate_line_reproduces_the_file(tmp_path: Path) -> None:
    pytest.importorskip("cfglab.grammar.dsl")
    first = tmp_path / "a"
    assert (
        invoke(
            "demo",
            "--width",
            "3",
            "--levels",
            "2",
            "--seed",
            "7",
            "--min-length",
            "9",
            "--out-dir",
            str(first),
        ).exit_code
        == 0
    )
    text = (first / "demo.cfg").read_text()
    command = re.search(r"^# regenerate: cfglab (.*)$", text, re.M).group(1)
    second = tmp_path / "b"
    assert command.startswith("new-grammar demo ")
    result = CliRunner().invoke(app, [*shlex.split(command), "--out-dir", str(second)])
    assert result.exit_code == 0, result.output
    assert (second / "demo.cfg").read_text() == text


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    pytest.importorskip("cfglab.grammar.dsl")
    args = ("demo", "--levels", "2", "--out-dir", str(tmp_path))
    assert invoke(*args).exit_code == 0
    before = (tmp_path / "demo.cfg").read_text()
    refused = invoke(*args, "--seed", "9")
    assert isinstance(refused.exception, CfglabError) and "--force" in str(refused.exception)
    assert (tmp_path / "demo.cfg").read_text() == before
    assert invoke(*args, "--seed", "9", "--force").exit_code == 0
    assert (tmp_path / "demo.cfg").read_text() != before


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--rules", "3-2"], "--rules"),
        (["--rules", "x"], "--rules"),
        (["--rule-length", "2-3-4"], "--rule-length"),
        (["--width", "3,0"], "--width"),
        (["--width", "3,3", "--levels", "3"], "--width"),
    ],
)
def test_cli_bad_values_name_their_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    result = invoke("demo", *args, "--out-dir", str(tmp_path))
    assert isinstance(result.exception, CfglabError) and flag in str(result.exception)
    assert not (tmp_path / "demo.cfg").exists()


def test_cli_process_reports_a_bad_range_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfglab",
            "new-grammar",
            "demo",
            "--rules",
            "3-2",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "--rules" in proc.stderr and "Traceback" not in proc.stderr

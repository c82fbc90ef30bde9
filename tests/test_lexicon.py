"""Implicit CFGs (Result 10): the DSL's bags, `cfglab implicit`, and the chart over observed tokens
against the definition (a terminal string of the hidden CFG, each terminal replaced by a token of
its bag), enumerated by brute force on small grammars with overlapping, weighted bags."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cfglab.chart.front import Chart
from cfglab.cli import app
from cfglab.errors import CfglabError, LocatedError
from cfglab.grammar.core import Grammar, Rule, yield_bounds
from cfglab.grammar.dsl import format_grammar, load_grammar, parse_grammar
from cfglab.grammar.lexicon import bag_of, deal, draw, hidden_grammar, implicit
from cfglab.grammar.sample import sample
from tests.strategies import layered_grammars, small_grammars
from tests.test_chart import _true_rows, enumerate_language
from tests.test_posterior import _check_whole

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

BASE = """grammar g
start S
S -> A "x" | "y"
A -> "x" "y"
"""


# --- the DSL ---------------------------------------------------------------------------------
def test_bags_parse_into_a_unary_level_and_write_back() -> None:
    g = parse_grammar(BASE + 'bag "x" -> "a" "b" [2]\nbag "y" -> "b" "c"\n')
    assert g.terminals == ("a", "b", "c") and g.hidden == ("x", "y")
    assert [(r.rhs, r.weight) for r in g.rules_of("x")] == [(("a",), 1.0), (("b",), 2.0)]
    assert g.levels == {"S": 0, "A": 1, "x": 2, "y": 2}
    assert parse_grammar(format_grammar(g)) == g


@pytest.mark.parametrize(
    ("bags", "where", "says"),
    [
        ('bag "z" -> "a"\nbag "x" -> "b"\nbag "y" -> "c"', "5:5", 'unknown terminal "z"'),
        ('bag "x" ->\nbag "y" -> "b"', "5:11", 'an empty bag for terminal "x"'),
        ('bag "x" -> "y"\nbag "y" -> "b"', "5:12", "used both as a terminal"),
        ('bag "x" -> "a" [-1]\nbag "y" -> "b"', "5:16", "is not positive"),
        ('bag "x" -> "a" [x]\nbag "y" -> "b"', "5:16", "is not a number"),
        ('bag "x" -> "a" "a"\nbag "y" -> "b"', "5:16", "twice in the bag"),
        ('bag "x" -> "a"', "3:14", 'terminal "y" has no bag'),
        ('bag "x" -> "a"\nbag "y" -> "b"\nbag "x" -> "c"', "7:5", "a second bag"),
        ('bag "x" -> "S"\nbag "y" -> "b"', "5:12", "same name as the nonterminal"),
    ],
)
def test_every_lexicon_mistake_is_located_with_a_hint(bags: str, where: str, says: str) -> None:
    with pytest.raises(LocatedError) as info:
        parse_grammar(BASE + bags + "\n", file="g.cfg")
    text = str(info.value)
    assert f"g.cfg:{where}:" in text and says in text and "hint:" in text


@SETTINGS
@given(g=layered_grammars(weighted=True), data=st.data())
def test_implicit_grammars_round_trip_through_the_dsl(g: Grammar, data: st.DataObject) -> None:
    imp = _with_bags(g, data)
    assert parse_grammar(format_grammar(imp)) == imp


# --- the authors' bags -----------------------------------------------------------------------
def test_disjoint_bags_deal_round_robin_and_overlap_bags_draw_three_halves() -> None:
    assert deal(3, 7) == [[0, 3, 6], [1, 4], [2, 5]]
    bags = draw(3, 30, seed=1)
    assert all(1 <= len(b) <= 15 and b == sorted(set(b)) for b in bags)
    assert len(set().union(*map(set, bags))) < 45  # ⌊3·30/6⌋ = 15 draws each, deduplicated


def test_nu1_weights_count_up_within_each_bag() -> None:
    g = implicit(load_grammar(ROOT / "grammars/cfg3b.cfg"), 9, "disjoint", "nu1")
    assert [r.weight for r in g.rules_of("1")] == [1.0, 2.0, 3.0]
    with pytest.raises(CfglabError, match="below the 3 terminals"):
        implicit(load_grammar(ROOT / "grammars/cfg3b.cfg"), 2)


# --- acceptance on cfg3b ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cfg3b_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Grammar, Grammar]:
    out = tmp_path_factory.mktemp("imp") / "imp.cfg"
    args = ["implicit", str(ROOT / "grammars/cfg3b.cfg"), "--vocab", "30", "--bags", "disjoint"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return load_grammar(ROOT / "grammars/cfg3b.cfg"), load_grammar(out)


def _hidden_strings(imp: Grammar, tokens: list[np.ndarray]) -> list[list[str]]:
    owner = {tok: t for t, bag in bag_of(imp).items() for tok in bag}  # disjoint: one owner
    return [[owner[w] for w in imp.decode(s)] for s in tokens]


@pytest.mark.slow
def test_cfg3b_disjoint_sampled_strings_and_their_terminals_verify(cfg3b_pair) -> None:
    base, imp = cfg3b_pair
    strings = sample(imp, 20, seed=3).strings()
    assert Chart(imp).accepts(strings).all()
    assert Chart(base).accepts([base.encode(h) for h in _hidden_strings(imp, strings)]).all()


@pytest.mark.slow
def test_cfg3b_disjoint_rows_summed_over_bags_are_cfg3b_rows(cfg3b_pair) -> None:
    base, imp = cfg3b_pair
    strings = sample(imp, 3, seed=4).strings()
    bags = bag_of(imp)
    for s, h in zip(strings, _hidden_strings(imp, strings)):
        rows, want = (
            Chart(imp).next_token_distributions(s),
            Chart(base).next_token_distributions(base.encode(h)),
        )
        np.testing.assert_allclose(rows[:, 0], want[:, 0], atol=1e-9)
        for k, t in enumerate(base.terminals):
            cols = [1 + imp.terminals.index(w) for w in bags[t]]
            np.testing.assert_allclose(rows[:, cols].sum(1), want[:, 1 + k], atol=1e-9)
            np.testing.assert_allclose(
                rows[:, cols], want[:, [1 + k]] / len(cols) * np.ones((1, len(cols))), atol=1e-9
            )  # a uniform bag: equal shares


@pytest.mark.slow
def test_cfg3b_disjoint_swap_verdict_is_cfg3b_verdict(cfg3b_pair) -> None:
    base, imp = cfg3b_pair
    rng = np.random.default_rng(5)
    strings = sample(imp, 6, seed=5).strings()
    swapped = []
    for s in strings:
        s = s.copy()
        s[rng.integers(len(s))] = rng.integers(len(imp.terminals))
        swapped.append(s)
    got = [v.valid for v in Chart(imp).verify(swapped)]
    want = [
        v.valid for v in Chart(base).verify([base.encode(h) for h in _hidden_strings(imp, swapped)])
    ]
    assert got == want and not all(want)


# --- the chart over observed tokens against the definition -------------------------------------
def _with_bags(g: Grammar, data: st.DataObject, vocab: int = 4) -> Grammar:
    """`g` with random overlapping, weighted bags over `vocab` tokens."""
    tokens = tuple(f"w{i}" for i in range(vocab))
    used = tuple(t for t in g.terminals if any(t in r.rhs for r in g.rules))
    rules = []
    for t in used:
        bag = data.draw(st.lists(st.sampled_from(tokens), min_size=1, max_size=3, unique=True))
        rules += [Rule(t, (w,), data.draw(st.sampled_from([1.0, 2.0, 0.5]))) for w in bag]
    return Grammar(g.name, g.start, tokens, g.rules + tuple(rules), hidden=used)


def _by_definition(imp: Grammar, max_len: int) -> dict[tuple[int, ...], tuple[int, float]] | None:
    """Token strings of at most max_len: (trees, probability), each hidden terminal string of the
    hidden CFG expanded by every choice of a token per terminal."""
    base = hidden_grammar(imp)
    lang = enumerate_language(base, max_len)
    if lang is None:
        return None
    ids = {w: i for i, w in enumerate(imp.terminals)}
    out: dict[tuple[int, ...], tuple[int, float]] = {}
    for u, (count, p) in lang.items():
        choices = [
            [(ids[r.rhs[0]], imp.rule_probability(r)) for r in imp.rules_of(base.terminals[k])]
            for k in u
        ]
        for pick in itertools.product(*choices):
            w = tuple(i for i, _ in pick)
            c, q = out.get(w, (0, 0.0))
            out[w] = (c + count, q + p * math.prod(x for _, x in pick))
    return out


def _grammars() -> st.SearchStrategy[Grammar]:
    return st.one_of(small_grammars(recursive=False), layered_grammars(weighted=True))


@SETTINGS
@given(g=_grammars(), data=st.data())
def test_membership_and_counts_over_tokens_match_the_definition(g: Grammar, data) -> None:
    imp = _with_bags(g, data)
    lang = _by_definition(imp, 3)
    assume(lang is not None)
    strings = [s for n in (1, 2, 3) for s in itertools.product(range(4), repeat=n)]
    chart = Chart(imp)
    for s, ok, c, lp in zip(
        strings, chart.accepts(strings), chart.count_parses(strings), chart.log_inside(strings)
    ):
        want_c, want_p = lang.get(s, (0, 0.0))
        assert ok == (want_c > 0) and c == want_c, s
        if want_c:
            assert lp == pytest.approx(math.log(want_p), rel=1e-9, abs=1e-9)


@SETTINGS
@given(g=_grammars(), data=st.data(), seed=st.integers(0, 2**16))
def test_next_token_rows_over_tokens_match_the_definition(g: Grammar, data, seed: int) -> None:
    imp = _with_bags(g, data)
    assume(yield_bounds(g)[1][g.start] <= 8)  # the whole (finite) language is enumerated
    lang = _by_definition(imp, 8)
    assume(lang is not None and 0 < len(lang) < 5000)
    rng = np.random.default_rng(seed)
    words = list(lang)
    picks = [words[i] for i in rng.choice(len(words), min(4, len(words)), replace=False)]
    picks.append(tuple(int(x) for x in rng.integers(0, 4, 3)))
    chart = Chart(imp)
    for s in picks:
        got = chart.next_token_distributions(np.array(s))
        np.testing.assert_allclose(got, _true_rows(lang, s, 4), atol=1e-9)


@SETTINGS
@given(g=layered_grammars(max_levels=3, weighted=True), data=st.data(), seed=st.integers(0, 99))
def test_posteriors_over_tokens_match_tree_enumeration(g: Grammar, data, seed: int) -> None:
    imp = _with_bags(g, data)
    rng = np.random.default_rng(seed)
    valid = [s for s in sample(imp, 6, seed).strings() if len(s) <= 8]
    flipped = [np.where(np.arange(len(s)) == 0, rng.integers(4), s) for s in valid[:2]]
    _check_whole(imp, valid + flipped)


# --- the commands ------------------------------------------------------------------------------
def test_sample_json_names_hidden_terminals_and_next_token_names_columns(tmp_path: Path) -> None:
    path = tmp_path / "g.cfg"
    path.write_text(BASE + 'bag "x" -> "a" "b" [2]\nbag "y" -> "b" "c"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(path), "-n", "5", "--json"])
    assert result.exit_code == 0, result.output
    g = load_grammar(path)
    for line in result.stdout.splitlines():
        rec = json.loads(line)
        assert len(rec["terminals"]) == len(rec["tokens"])
        assert all(w in bag_of(g)[t] for w, t in zip(rec["tokens"], rec["terminals"]))
        assert Chart(hidden_grammar(g)).accepts([hidden_grammar(g).encode(rec["terminals"])])[0]
    strings = tmp_path / "s.txt"
    strings.write_text("a b\n")
    result = runner.invoke(app, ["next-token", str(path), str(strings), "--json"])
    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["columns"] == ["EOS", "a", "b", "c"] and len(rec["next"][0]) == 4
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0 and "lexicon" in result.stdout

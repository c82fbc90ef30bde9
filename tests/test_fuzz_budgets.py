"""Regressions of the fuzz run's slow and memory-hungry inputs (issue 21 item 3), each built
directly: a long unit chain under a cfg3 nonterminal (thousands of levels for the local-ambiguity
score), a 30-deep binary chain offered as one alternative (sampling grew every doomed derivation
to max_length tokens, 50 rounds over), and 10,000 terminal alternatives in a recursive grammar
(the dense chart copied every rule's child spans; its size is now budgeted); a unit chain too
long for max_depth under a cfg3 nonterminal (every string through it ran all max_depth rounds
at full length before being dropped, 50 redraws over: 9-11 s)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cfglab.analysis import ambiguity
from cfglab.analysis.ambiguity import _window_bits, local_ambiguity
from cfglab.analysis.graph import lowest_height
from cfglab.chart import budget, general, sparse
from cfglab.chart.earley import earley_counts
from cfglab.chart.front import Chart
from cfglab.chart.semiring import BOOLEAN, COUNTING, LOG_INSIDE
from cfglab.data.corrupt import flip_tokens
from cfglab.errors import CfglabError
from cfglab.grammar import sample as sampling
from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import load_grammar, parse_grammar
from cfglab.grammar.sample import sample
from tests.fuzzing import GRAMMARS, TIME_BOUND_S, check_file


def _shipped(name: str) -> Path:
    return next(p for p in GRAMMARS if p.name == f"{name}.cfg")


TINY = _shipped("tiny")


def _tiny_plus(extra: list[str]) -> str:
    lines = [line for line in TINY.read_text().split("\n") if not line.startswith("terminals")]
    return "\n".join(lines + extra) + "\n"


def _fan_out(n: int) -> Grammar:
    """tiny with N9 -> "f0" N13 | "f1" N7 | ...: recursive, with n more terminals."""
    nts = ["N13", "N7", "N8", "N9", "N10"]
    alts = " | ".join(f'"f{i}" {nts[i % len(nts)]}' for i in range(n))
    return parse_grammar(_tiny_plus([f"N9 -> {alts}"]))


def test_a_long_unit_chain_leaves_check_fast_and_its_levels_share_their_bits(
    tmp_path: Path,
) -> None:
    chain = [f"Z{i} -> Z{i + 1}" for i in range(300)] + ["N8 -> Z0", 'Z300 -> "z"']
    path = tmp_path / "chain.cfg"
    path.write_text(_tiny_plus(chain))
    began = time.perf_counter()
    outcome = check_file(path)
    assert outcome.kind == "ok", outcome.detail
    assert time.perf_counter() - began < TIME_BOUND_S  # was over 30 s: a pass per level per string

    g = load_grammar(path)
    chart, samples = Chart(g), sample(g, 40, np.random.default_rng(1))
    report = local_ambiguity(chart, samples)
    # every Z level derives the same spans (each "z"), so they show the same bits
    z_levels = {g.levels[f"Z{i}"] for i in range(1, 300)}  # type: ignore[index]
    values = {report["per_level"][str(level)] for level in z_levels}
    assert len(values) == 1 and "note" not in report


def test_window_bits_of_strings_end_to_end_are_those_of_each_string() -> None:
    g = load_grammar(TINY)
    chart, samples = Chart(g), sample(g, 30, np.random.default_rng(2))
    strings, spans = samples.strings(), chart.derivable_spans(samples.strings())
    windows = ambiguity._Windows.of(strings, spans, 12)
    whole = _window_bits(windows.spans, windows.total, 12, 5, windows.starts)
    each = [_window_bits(sp, len(s), 12, 5) for s, sp in zip(strings, spans) if len(s) >= 12]
    np.testing.assert_array_equal(whole, np.concatenate(each))


def test_a_doomed_alternative_is_abandoned_at_once_when_sampling(tmp_path: Path) -> None:
    chain = [f"Z{i} -> Z{i + 1} Z{i + 1}" for i in range(30)] + ['Z30 -> "z"', "N8 -> Z0"]
    g = parse_grammar(_tiny_plus(chain))  # shortest string fine; Z0's is 2^30 tokens
    began = time.perf_counter()
    tracemalloc.start()
    try:
        s = sample(g, 200, np.random.default_rng(0), max_length=10_000)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - began < 3 and peak < 10e6  # was 76 MB here, 19 s on cfg3j
    assert s.rejected > 0 and len(s) == 200
    assert s.lengths.max() <= 10_000 and "z" not in g.decode(s.tokens)


def test_blocks_of_binary_rules_change_no_chart_value(monkeypatch: pytest.MonkeyPatch) -> None:
    g = _fan_out(300)
    t = general.GeneralTables.build(g)
    s = sample(g, 5, np.random.default_rng(3), max_length=24).strings()
    for sr in (BOOLEAN, COUNTING, LOG_INSIDE):
        whole = [general.inside(t, x, sr) for x in s]
        monkeypatch.setattr(general, "_BLOCK_ITEMS", 7)  # a handful of rules per step
        blocked = [general.inside(t, x, sr) for x in s]
        monkeypatch.undo()
        for a, b in zip(whole, blocked):
            np.testing.assert_array_equal(a, b)


def test_a_wide_recursive_grammar_counts_as_lark_earley_does() -> None:
    """The dense chart's leaves over hundreds of terminals and its length-major layout give the
    counts of an independent parser, on valid strings and on strings with a token flipped."""
    g = _fan_out(300)
    valid = sorted(sample(g, 60, np.random.default_rng(5), max_length=24).strings(), key=len)
    valid = [s for s in valid if (s >= len(g.terminals) - 300).any()][:8]  # some "f" terminal
    rng = np.random.default_rng(6)
    flipped = [flip_tokens(s, 0.25, len(g.terminals), rng)[0] for s in valid]
    want = earley_counts(g, valid + flipped)
    chart = Chart(g)
    assert chart.recursive and len(valid) == 8
    assert chart.count_parses(valid + flipped) == want
    assert all(c > 0 for c in want[:8]) and 0 in want[8:]


def test_the_dense_chart_is_budgeted_and_copies_no_rule_spans() -> None:
    g = _fan_out(10_000)
    t = general.GeneralTables.build(g)
    n_fit = 40
    chart_bytes = t.n_symbols * n_fit * (n_fit + 1) * 8
    tokens = np.zeros(n_fit, dtype=np.int64)
    tracemalloc.start()
    try:
        general.inside(t, tokens, LOG_INSIDE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # V itself plus bounded blocks; a copy of every rule's child spans doubled it (804 MB)
    assert peak < 1.5 * chart_bytes
    too_long = np.zeros(64, dtype=np.int64)
    assert t.n_symbols * 64 * 65 * 8 > general.CHART_BUDGET_BYTES
    with pytest.raises(budget.ChartBudgetError, match="CHART_BUDGET_BYTES"):
        general.inside(t, too_long, LOG_INSIDE)
    assert issubclass(budget.ChartBudgetError, CfglabError)


def test_ambiguity_turns_the_chart_budget_into_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(general, "CHART_BUDGET_BYTES", 1)
    report = ambiguity.ambiguity_report(_fan_out(50), n_strings=20)
    assert "CHART_BUDGET_BYTES" in report["note"] and "max_parses" not in report


def test_a_derivation_too_high_for_max_depth_is_abandoned_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = [f"Z{i} -> Z{i + 1}" for i in range(100)] + ["N8 -> Z0", 'Z100 -> "z"']
    g = parse_grammar(_tiny_plus(chain))  # Z0's least height is 101 > DEFAULT_MAX_DEPTH
    height = lowest_height(g)
    assert height["Z100"] == 1 and height["Z0"] == 101
    rounds = draws = 0
    choose, draw = sampling._choose_rules, sampling._draw

    def counted_choose(*args: object) -> np.ndarray:
        nonlocal rounds
        rounds += 1
        return choose(*args)  # type: ignore[arg-type]

    def counted_draw(*args: object) -> sampling._Draw:
        nonlocal draws
        draws += 1
        return draw(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sampling, "_choose_rules", counted_choose)
    monkeypatch.setattr(sampling, "_draw", counted_draw)
    s = sample(g, 200, np.random.default_rng(0))
    assert len(s) == 200 and s.rejected > 0 and "z" not in g.decode(s.tokens)
    # tiny's own trees are a few rounds high; the doomed ones ran all 65 (783 rounds here)
    tiny_height = max(lowest_height(load_grammar(TINY)).values())
    assert s.depth <= tiny_height + 1 and rounds <= draws * (tiny_height + 1)


def test_the_sparse_chart_passes_over_levels_that_derive_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = [f"Z{i} -> Z{i + 1}" for i in range(500)] + ["N8 -> Z0", 'Z500 -> "z"']
    g = parse_grammar(_tiny_plus(chain))
    t = sparse.SparseTables.build(g)
    strings = sample(g, 20, np.random.default_rng(4)).strings()  # no "z": the chain is empty
    z = g.terminals.index("z")
    with_z = [np.concatenate([s, [z]]) for s in strings]
    walks = 0
    apply_rules = sparse._apply_rules

    def counted(*args: object) -> tuple[np.ndarray, ...]:
        nonlocal walks
        walks += 1
        return apply_rules(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sparse, "_apply_rules", counted)
    chart = sparse.inside(t, sparse.Batch.of(strings), COUNTING)
    assert walks < 10  # tiny's own levels; every one of the 500 chain levels was walked
    monkeypatch.undo()
    assert len(chart.sym) > 0
    # passing over a level leaves the chart and its lookup table as a walk would have
    for x in (strings, with_z):
        batch = sparse.Batch.of(x)
        fast, slow = sparse.inside(t, batch, COUNTING), _walk_every_level(t, batch)
        for column in ("sym", "start", "end", "val", "first"):
            np.testing.assert_array_equal(getattr(fast, column), getattr(slow, column))


def _walk_every_level(t: sparse.SparseTables, batch: sparse.Batch) -> sparse.SpanSet:
    """sparse.inside with every level walked by its rules (the code before the pass-over)."""
    stride = int(batch.length.max()) + 1
    chart = sparse._leaves(t, batch, COUNTING, None, stride, None)
    chart.index(t.n_symbols)
    rule_val = COUNTING.rule_values(t.rule_prob)
    for rules, (lo, hi) in zip(t.levels, t.level_symbols):
        items = sparse._apply_rules(t, chart, rules, rule_val, COUNTING, None)
        items = sparse._aggregate(*items, COUNTING, batch.width, stride)
        chart = chart.append_level(*items, lo, hi)
    return chart


def test_ambiguity_samples_within_a_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    g = load_grammar(TINY)
    mean = ambiguity.expected_length(g)
    drawn = sample(g, 2000, np.random.default_rng(5)).lengths
    assert abs(drawn.mean() - mean) < 0.05 * mean  # the exact mean the budget is judged by
    whole = ambiguity.ambiguity_report(g, n_strings=200)
    assert whole["n_strings"] == 200 and "note" not in whole
    # a binary chain 8 deep under cfg3k's N9 drew 566,000 tokens for 200 strings (485 MB)
    monkeypatch.setattr(ambiguity, "TOKENS_PER_STRING", mean / 2)
    report = ambiguity.ambiguity_report(g, n_strings=200)
    assert report["n_strings"] == 100
    assert "TOKENS_PER_STRING" in report["note"] and "local_ambiguity" in report


def _unit_rules_plus_a_rule_cycle(n: int, cyclic: bool) -> Grammar:
    """tiny with n unit rules Z0 -> Z1 -> ... (a cycle or a chain) beside a rule cycle."""
    units = [f"Z{i} -> Z{(i + 1) % n if cyclic else i + 1}" for i in range(n)]
    rules = [f'Z{i} -> Z{(i + 1) % 50} "z"' for i in range(50)]
    tail = [] if cyclic else [f'Z{n} -> "y"']
    return parse_grammar(_tiny_plus([*units, *rules, *tail, "N8 -> Z0", 'Z0 -> "z"']))


def test_unit_closures_share_one_reachability_and_multiply_as_matrices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    reachability = general._reachability

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        nonlocal calls
        calls += 1
        return reachability(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(general, "_reachability", counted)
    chain = general.GeneralTables.build(_unit_rules_plus_a_rule_cycle(200, cyclic=False))
    for sr in (BOOLEAN, COUNTING, LOG_INSIDE):
        general.unit_star(chain, sr)
    assert calls == 1  # each semiring recomputed it: 4 passes before
    monkeypatch.undo()
    # the matrix product gives what the semiring's ufuncs give, span by span
    cycle = general.GeneralTables.build(_unit_rules_plus_a_rule_cycle(200, cyclic=True))
    for t, sr in ((cycle, BOOLEAN), (chain, COUNTING), (chain, BOOLEAN)):
        g = t.grammar
        strings = sample(g, 4, np.random.default_rng(6), max_length=12).strings()
        z = np.full(7, g.terminals.index("z"))  # through the unit rules and the rule cycle
        fast = [general.inside(t, x, sr) for x in [*strings, z]]
        monkeypatch.setattr(general, "_MATMUL", {})
        slow = [general.inside(t, x, sr) for x in [*strings, z]]
        monkeypatch.undo()
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a, b)
        assert any(a[t.start].any() for a in fast)


# --- the sparse chart's memory budget and the report's work budget (fuzz run of round 8) -----
_DENSE = (  # cfg3k with one rule cut to a terminal: almost every span derivable (fuzz seed 5287)
    ("N15 -> N12 N11 | N10 N10 | N11 N12", "N15 -> N12 N11 | N10 | N11 N12"),
    ('N7  -> "3" "3" | "1" "3" "1" | "2" "1"', 'N7 -> "3" "3" | "1" | "1" "3" "2" "1"'),
)


def _dense_cfg3k() -> Grammar:
    text = _shipped("cfg3k").read_text(encoding="utf-8")
    for old, new in _DENSE:
        assert old in text
        text = text.replace(old, new)
    return parse_grammar(text)


def test_a_sparse_batch_past_the_budget_is_charted_in_halves_to_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = load_grammar(TINY)
    strings = sample(g, 40, np.random.default_rng(0)).strings()
    whole = Chart(g).count_parses(strings)
    spans = Chart(g).derivable_spans(strings)
    one = max(sparse.inside(Chart(g)._sparse, sparse.Batch.of([s]), COUNTING).work for s in strings)
    # room for any one string's level, not for forty strings' together
    monkeypatch.setattr(budget, "CHART_BUDGET_BYTES", 4 * one * sparse._ITEM_BYTES)
    with pytest.raises(budget.SparseBudgetError):
        sparse.inside(Chart(g)._sparse, sparse.Batch.of(strings), COUNTING)
    assert Chart(g).count_parses(strings) == whole
    assert all(np.array_equal(a, b) for a, b in zip(Chart(g).derivable_spans(strings), spans))
    monkeypatch.setattr(budget, "CHART_BUDGET_BYTES", sparse._ITEM_BYTES)  # no string fits
    with pytest.raises(budget.ChartBudgetError, match="CHART_BUDGET_BYTES") as info:
        Chart(g).count_parses(strings[:1])
    assert "fix:" in str(info.value) and isinstance(info.value, CfglabError)


def test_the_sparse_chart_stops_at_its_work_limit() -> None:
    g = load_grammar(TINY)
    strings = sample(g, 20, np.random.default_rng(1)).strings()
    chart = Chart(g)
    chart.count_parses(strings)
    needed = chart.work
    assert needed > 0
    again = Chart(g)
    again.count_parses(strings)
    assert again.work == needed  # a measure of the work, not of the machine
    limited = Chart(g)
    limited.work_limit = needed // 2
    with pytest.raises(budget.WorkBudgetError):
        limited.count_parses(strings)


def test_ambiguity_of_a_dense_grammar_stays_within_its_work_budget() -> None:
    g = _dense_cfg3k()
    began = time.monotonic()
    report = ambiguity.ambiguity_report(g, n_strings=200, seed=0)
    assert time.monotonic() - began < TIME_BOUND_S
    assert "WORK_BUDGET" in report["note"]
    n = report["n_strings"]
    assert 0 < n < 200
    assert sum(report["parse_histogram"].values()) == n
    assert report["tree_given_string"]["n_strings"] == n


def test_the_largest_shipped_report_needs_a_fraction_of_the_work_budget() -> None:
    report = ambiguity.ambiguity_report(load_grammar(_shipped("cfg3k")), n_strings=200, seed=0)
    assert report["n_strings"] == 200 and "note" not in report


def test_samples_head_keeps_the_first_strings_and_their_labels() -> None:
    s = sample(load_grammar(TINY), 12, np.random.default_rng(2))
    head = s.head(5)
    assert len(head) == 5
    assert all(np.array_equal(a, b) for a, b in zip(head.strings(), s.strings()[:5]))
    for i in range(5):
        assert all(np.array_equal(a, b) for a, b in zip(head.labels(i), s.labels(i)))
    assert len(s.head(99)) == 12

"""How ambiguous a grammar is, measured on sampled strings with the exact chart.

`ambiguity_report(grammar, n_strings, seed)` returns a plain dict (JSON-ready) that
`cfglab check` shows and checks constraints against:

  n_strings            strings sampled (seeded) and parsed
  fraction_ambiguous   fraction of them with two or more parse trees
  max_parses           the largest parse-tree count (exact integer)
  mean_parses          mean parse-tree count
  parse_histogram      {count: how many strings}
  witness              the shortest ambiguous string: {tokens, trees: [two bracketed trees],
                       span: [i, j] and readings: [two bracketed subtrees] where they first differ}
                       (None when no sampled string is ambiguous)
  local_ambiguity      {window, score, per_level, readings_per_constituent, definition}: bits of
                       boundary uncertainty a window of w tokens leaves, and locally derivable
                       spans per real constituent, by level (docs/ambiguity.md)
  tree_given_string    E[H(tree | string)] in nats over the sampled strings, with its 95%
                       interval: the mean entropy of the exact posterior over parse trees
                       (cfglab.analysis.entropy; 0 for an unambiguous sample)
  flip_sensitivity     fraction of random single-token substitutions (several per string) whose
                       result is still in the language
A grammar with a unit-rule cycle has strings with infinitely many parse trees: the report then
leaves out fraction_ambiguous (a constraint on it cannot be evaluated) and says why in `note`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfglab.analysis.entropy import conditional_entropy
from cfglab.analysis.graph import MAX_STRING_LENGTH
from cfglab.chart.budget import ChartBudgetError, WorkBudgetError
from cfglab.chart.front import Chart
from cfglab.chart.general import InfiniteParsesError
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Tree, yield_bounds
from cfglab.grammar.sample import Samples, sample

WINDOW = 12  # tokens per window of the local-ambiguity score
FLIPS_PER_STRING = 5
RECURSIVE_BUDGET_S = 4.0  # parse counting of a recursive grammar's samples, then a note
LOCAL_BUDGET_S = 4.0  # the local-ambiguity score's levels, then a note
RECURSIVE_MAX_LENGTH = 64  # recursive grammars: sampled strings are kept this short (O(n³) chart)
# Sampled tokens per requested string, in expectation: a grammar whose mean string is longer gets
# proportionally fewer strings (with a note), so the charts and windows stay within what the
# request would take on a paper-sized grammar. Over twice the longest shipped mean (cfg3j: 544
# tokens); a binary chain under a cfg3k nonterminal (mean 2,763) drew 566,000 tokens, 485 MB.
TOKENS_PER_STRING = 1_250
# A non-recursive grammar's report is bounded in chart work, not time, so that its figures do not
# depend on the machine: rule completions of all its sparse passes (Chart.work). The shipped
# grammars need 0.35M (cfg3e1) to 5.2M (cfg3k); a grammar whose nonterminals derive almost every
# span (a cfg3k rule cut down to one terminal) needs 60-80M, 10 s. Past the budget the report
# covers the first strings that fit it, with a note.
WORK_BUDGET = 20_000_000
REPORT_PASSES = 10  # the report's work in counting passes: count 1, entropy ~3, spans 1, flips ~5
COUNT_CHUNK = 25  # strings counted at a time while the work is watched

DEFINITION = (
    "score: mean over the levels l >= 1 whose constituents fit in a window of w tokens, of the "
    "mean over windows of log2 of the number of level-l boundary placements the window's tokens "
    "admit on their own (inner segments derivable by a level-l nonterminal, edge segments no "
    "longer than the level's longest constituent); 0 bits = the window fixes the boundaries. "
    "readings_per_constituent: level-l spans derivable on their own / level-l nodes of the sampled "
    "trees (1 = no spurious local readings). See docs/ambiguity.md"
)


def ambiguity_report(
    grammar: Grammar,
    n_strings: int = 200,
    seed: int = 0,
    window: int = WINDOW,
    flips_per_string: int = FLIPS_PER_STRING,
) -> dict:
    """Exact ambiguity statistics of `n_strings` strings sampled with `seed` (see module doc)."""
    chart = Chart(grammar)
    rng = np.random.default_rng(seed)
    max_length = RECURSIVE_MAX_LENGTH if chart.recursive else MAX_STRING_LENGTH
    report: dict = {}
    mean = None if chart.recursive else expected_length(grammar)  # recursive: <= 64 tokens
    if mean is not None and mean > TOKENS_PER_STRING:
        fewer = max(1, int(n_strings * TOKENS_PER_STRING // mean))
        report["note"] = (
            f"the grammar's strings have {mean:,.0f} tokens on average, past the budget of "
            f"{TOKENS_PER_STRING:,} per requested string (ambiguity.TOKENS_PER_STRING): the "
            f"figures cover {fewer} strings, not {n_strings}"
        )
        n_strings = fewer
    try:
        samples = sample(grammar, n_strings, rng, max_length=max_length)
    except CfglabError as err:
        return {"n_strings": 0, "note": f"no strings to analyse: {err}"}
    strings = samples.strings()
    report["n_strings"] = len(strings)
    began = time.monotonic()
    try:
        counts = _counts_within_budget(chart, strings)
    except InfiniteParsesError as err:
        report["note"] = str(err)
        counts = None
    except ChartBudgetError as err:  # every later pass charts the same strings: stop here
        report["note"] = f"parse counts not computed: {err}"
        return report
    if not chart.recursive and counts is not None and len(counts) < len(strings):
        _note(
            report,
            f"chart work budget of {WORK_BUDGET:,} rule completions (ambiguity.WORK_BUDGET) "
            f"spent: the figures cover the first {len(counts)} of {len(strings)} sampled "
            f"strings (counting alone took {chart.work:,}; nonterminals that derive many spans "
            "of the same tokens make every chart large)",
        )
        report["n_strings"] = len(counts)
        strings, samples = strings[: len(counts)], samples.head(len(counts))
    elif counts is not None and len(counts) < len(strings):
        report["n_strings"] = len(counts)
        report["note"] = (
            f"time budget of {RECURSIVE_BUDGET_S:g} s spent after {len(counts)} of "
            f"{len(strings)} sampled strings (the recursive grammar's O(n³) chart over "
            f"{len(chart.grammar.symbols):,} symbols); the figures cover those strings only"
        )
        report.update(_count_stats(counts))
        report["witness"] = _witness(chart, strings[: len(counts)], counts)
        return report
    if counts is not None:
        report.update(_count_stats(counts))
        _within_work(report, "witness", lambda: _witness(chart, strings, counts))
        if not chart.recursive:  # a recursive grammar's strings here are truncated samples
            _within_work(
                report, "tree_given_string", lambda: conditional_entropy(chart, strings, counts)
            )
    if chart.recursive and time.monotonic() - began > RECURSIVE_BUDGET_S / 4:
        # flips re-chart every string several times: past the budget for this chart
        report["note"] = (
            f"local ambiguity and flip sensitivity not computed: counting alone took over "
            f"{RECURSIVE_BUDGET_S / 4:g} s of the {RECURSIVE_BUDGET_S:g} s budget"
        )
        return report
    _within_work(report, "local_ambiguity", lambda: local_ambiguity(chart, samples, window))
    deadline = began + RECURSIVE_BUDGET_S if chart.recursive else None
    _within_work(
        report,
        "flip_sensitivity",
        lambda: flip_sensitivity(chart, strings, flips_per_string, rng, deadline),
    )
    if deadline is not None and time.monotonic() > deadline:
        report["note"] = (
            f"flip sensitivity covers the flips charted within the {RECURSIVE_BUDGET_S:g} s "
            "budget of the recursive grammar's chart, in sample order"
        )
    return report


def _counts_within_budget(chart: Chart, strings: list[np.ndarray]) -> list[int]:
    """Parse counts of the first strings the report can afford: a non-recursive grammar's as
    many as the whole report's WORK_BUDGET covers (estimated from counting's own work), a
    recursive grammar's until RECURSIVE_BUDGET_S is spent (its dense chart costs
    O(symbols² · n²) per string through unit closures)."""
    if not chart.recursive:
        return _counts_within_work(chart, strings)
    deadline = time.monotonic() + RECURSIVE_BUDGET_S
    counts: list[int] = []
    for s in strings:
        if time.monotonic() > deadline:
            break
        counts += chart.count_parses([s])
    return counts


def _note(report: dict, text: str) -> None:
    """Add to the report's note (a budget note does not hide the one before it)."""
    report["note"] = f"{report['note']}; {text}" if report.get("note") else text


def _within_work(report: dict, key: str, compute: Callable[[], Any]) -> None:
    """report[key] = compute(), or a note where the chart's work budget runs out first."""
    try:
        report[key] = compute()
    except WorkBudgetError:
        _note(report, f"{key} not computed: the chart work budget (WORK_BUDGET) was spent")


def _counts_within_work(chart: Chart, strings: list[np.ndarray]) -> list[int]:
    """Counts of the first strings whose whole report fits WORK_BUDGET: counted in chunks that
    double from one string (a few long strings can hold all the work), within a tenth of the
    budget, then cut to what the other passes can afford at counting's cost per string. The
    chart's `work_limit` is left at WORK_BUDGET for those passes."""
    chart.work_limit = WORK_BUDGET // REPORT_PASSES
    counts: list[int] = []
    size = 1
    try:
        while len(counts) < len(strings):
            counts += chart.count_parses(strings[len(counts) : len(counts) + size])
            size = min(2 * size, COUNT_CHUNK)
    except WorkBudgetError:
        if not counts:
            raise
    chart.work_limit = WORK_BUDGET
    affordable = int(WORK_BUDGET * len(counts) / (REPORT_PASSES * max(chart.work, 1)))
    return counts[: max(1, min(len(counts), affordable))]


def _count_stats(counts: list[int]) -> dict:
    hist: dict[int, int] = {}
    for c in counts:
        hist[c] = hist.get(c, 0) + 1
    return {
        "fraction_ambiguous": sum(c > 1 for c in counts) / max(len(counts), 1),
        "max_parses": max(counts, default=0),
        "mean_parses": _mean(counts),
        "parse_histogram": {str(k): hist[k] for k in sorted(hist)},
    }


def _mean(counts: list[int]) -> float | None:
    """Mean of exact counts; None past float range (JSON has no infinity)."""
    try:
        return sum(counts) / len(counts) if counts else 0.0
    except OverflowError:
        return None


# --- the witness ------------------------------------------------------------------------------
def _witness(chart: Chart, strings: list[np.ndarray], counts: list[int]) -> dict | None:
    ambiguous = [i for i, c in enumerate(counts) if c > 1]
    if not ambiguous:
        return None
    i = min(ambiguous, key=lambda k: (len(strings[k]), k))
    first, second = chart.parse_trees(strings[i], limit=2)
    span, a, b = first_difference(first, second)
    return {
        "tokens": chart.grammar.decode(strings[i]),
        "parses": counts[i],
        "trees": [bracketed(first), bracketed(second)],
        "span": list(span),
        "readings": [bracketed(a), bracketed(b)],
    }


def bracketed(tree: Tree) -> str:
    """(N22 (N19 "1" "2") ...): nonterminals bare, terminals quoted."""
    if not tree.children:
        return f'"{tree.symbol}"'
    return "(" + " ".join([tree.symbol, *(bracketed(c) for c in tree.children)]) + ")"


def first_difference(a: Tree, b: Tree, start: int = 0) -> tuple[tuple[int, int], Tree, Tree]:
    """The lowest pair of nodes over the same span where two trees of one string part ways:
    ([start, end) token span, a's subtree, b's subtree)."""
    while a.rule == b.rule and a.children:
        sizes_a = [len(c.leaves()) for c in a.children]
        sizes_b = [len(c.leaves()) for c in b.children]
        if sizes_a != sizes_b:
            break
        for k, (ca, cb) in enumerate(zip(a.children, b.children)):
            if _same(ca, cb):
                start += sizes_a[k]
                continue
            a, b = ca, cb
            break
        else:  # identical trees
            break
    return (start, start + len(a.leaves())), a, b


def _same(a: Tree, b: Tree) -> bool:
    return (
        a.symbol == b.symbol
        and a.rule == b.rule
        and len(a.children) == len(b.children)
        and all(_same(x, y) for x, y in zip(a.children, b.children))
    )


def expected_length(g: Grammar) -> float:
    """E[len] of a non-recursive grammar's strings under its rule weights: E[A] = Σ_r p_r
    Σ_{s in rhs r} E[s], E[terminal] = 1, children (deeper levels) first."""
    levels = g.levels
    assert levels is not None, "expected_length needs a non-recursive grammar"
    mean: dict[str, float] = {}
    for nt in sorted(levels, key=lambda nt: -levels[nt]):
        mean[nt] = sum(
            g.rule_probability(r) * sum(1.0 if g.is_terminal(s) else mean[s] for s in r.rhs)
            for r in g.rules_of(nt)
        )
    return mean[g.start]


# --- local ambiguity ----------------------------------------------------------------------------
def local_ambiguity(chart: Chart, samples: Samples, window: int = WINDOW) -> dict:
    """Boundary bits per window and readings per constituent, by level (docs/ambiguity.md)."""
    g = chart.grammar
    levels = g.levels
    out: dict = {
        "window": window,
        "score": None,
        "per_level": {},
        "readings_per_constituent": {},
        "definition": DEFINITION,
    }
    if levels is None:
        out["note"] = "a recursive grammar has no levels"
        return out
    strings = samples.strings()
    longest = yield_bounds(g)[1]
    spans = chart.derivable_spans(strings)
    level_of_nt = np.array([levels.get(nt, -1) for nt in g.nonterminals])
    found = np.bincount(
        np.concatenate([level_of_nt[sp[:, 0]] for sp in spans]) + 1,
        minlength=max(levels.values()) + 2,
    )[1:]
    used = _constituents_per_level(samples, level_of_nt)
    windows = _Windows.of(strings, spans, window)
    by_level = windows.spans_by_level(level_of_nt)
    level_longest: dict[int, int] = {}  # the longest yield of each level's nonterminals
    for nt, level in levels.items():
        level_longest[level] = max(level_longest.get(level, 0), longest[nt])
    bits_of: dict[tuple[int, bytes], float] = {}  # levels whose spans coincide share their bits
    deadline = time.monotonic() + LOCAL_BUDGET_S
    for level in sorted({lv for lv in levels.values() if lv >= 1}):
        if used[level]:
            out["readings_per_constituent"][str(level)] = float(found[level] / used[level])
        max_len = level_longest[level]
        if max_len > window or not len(windows.starts):  # no whole constituent fits
            continue
        level_spans = by_level.get(level, np.zeros((0, 3), dtype=np.int64))
        key = (max_len, np.unique(level_spans[:, 1:], axis=0).tobytes())
        if key not in bits_of:
            if time.monotonic() > deadline:
                out["note"] = (
                    f"time budget of {LOCAL_BUDGET_S:g} s spent: per_level covers the levels "
                    f"up to {level - 1} of {max(levels.values())}"
                )
                break
            bits = _window_bits(level_spans, windows.total, window, max_len, windows.starts)
            bits_of[key] = float(bits.mean())
        out["per_level"][str(level)] = bits_of[key]
    if out["per_level"]:
        out["score"] = float(np.mean(list(out["per_level"].values())))
    return out


@dataclass(frozen=True)
class _Windows:
    """The sampled strings at least one window long, end to end: their spans in positions of
    the concatenation (a window never crosses a string, so one pass serves every string)."""

    spans: np.ndarray  # (m, 3) nonterminal, start, end in the concatenation
    starts: np.ndarray  # the first position of every window
    total: int  # tokens in the concatenation

    @staticmethod
    def of(strings: list[np.ndarray], spans: list[np.ndarray], window: int) -> _Windows:
        rows, starts, at = [np.zeros((0, 3), dtype=np.int64)], [np.zeros(0, dtype=np.int64)], 0
        for s, sp in zip(strings, spans):
            if len(s) < window:
                continue
            rows.append(sp + np.array([0, at, at]))
            starts.append(at + np.arange(len(s) - window + 1))
            at += len(s)
        return _Windows(np.concatenate(rows), np.concatenate(starts), at)

    def spans_by_level(self, level_of_nt: np.ndarray) -> dict[int, np.ndarray]:
        """One sort, not one scan of every span per level (a unit chain has thousands)."""
        level = level_of_nt[self.spans[:, 0]]
        order = np.argsort(level, kind="stable")
        values, firsts = np.unique(level[order], return_index=True)
        parts = np.split(self.spans[order], firsts[1:])
        return {int(v): part for v, part in zip(values, parts)}


def _constituents_per_level(samples: Samples, level_of_nt: np.ndarray) -> np.ndarray:
    """How many nodes of each level the sampled trees have (a node ends where its bit is set)."""
    ends = samples.boundaries & (samples.ancestors >= 0)
    levels = level_of_nt[samples.ancestors[ends]]
    return np.bincount(levels, minlength=level_of_nt.max() + 1)


def _window_bits(
    spans: np.ndarray, n: int, w: int, max_len: int, starts: np.ndarray | None = None
) -> np.ndarray:
    """log2 of admitted boundary vectors, for every window [a, a + w) of one string (or for the
    windows at `starts` of strings laid end to end, n tokens in all).

    N[a, k] counts admitted boundary placements of window a whose last boundary is after token
    a+k: the head segment (to the first boundary) is at most max_len long, and every later
    segment [a+j+1, a+k+1) is a span some level nonterminal derives.
    """
    derives = np.zeros((n + 1, w + 1), dtype=bool)  # derives[i, L]: span [i, i+L) derivable
    short = spans[spans[:, 2] - spans[:, 1] <= w]
    derives[short[:, 1], short[:, 2] - short[:, 1]] = True
    starts = np.arange(n - w + 1) if starts is None else starts
    counts = np.zeros((len(starts), w))
    for k in range(w):
        counts[:, k] = float(k + 1 <= max_len)
        for j in range(k):
            counts[:, k] += counts[:, j] * derives[starts + j + 1, k - j]
    tail_ok = (w - 1 - np.arange(w)) <= max_len - 1
    total = counts[:, tail_ok].sum(axis=1) + float(w <= max_len - 1)
    return np.log2(np.maximum(total, 1.0))


# --- flip sensitivity ---------------------------------------------------------------------------
def flip_sensitivity(
    chart: Chart,
    strings: list[np.ndarray],
    per_string: int,
    rng: np.random.Generator,
    deadline: float | None = None,
) -> float | None:
    """Fraction of random single-token substitutions that leave a string in the language; with
    a `deadline` (time.monotonic()), over the strings' flips charted before it (at least one
    string's)."""
    T = chart.n_terminals
    if T < 2 or not strings or per_string < 1:
        return None
    flipped = []
    for s in strings:
        pos = rng.integers(0, len(s), per_string)
        shift = rng.integers(1, T, per_string)
        for p, d in zip(pos, shift):
            f = s.copy()
            f[p] = (f[p] + d) % T
            flipped.append(f)
    if deadline is None:
        return float(np.mean(chart.accepts(flipped)))
    accepted: list[bool] = []
    for lo in range(0, len(flipped), per_string):
        accepted.extend(chart.accepts(flipped[lo : lo + per_string]))
        if time.monotonic() > deadline:
            break
    return float(np.mean(accepted))

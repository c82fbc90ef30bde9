"""The chart against brute force (every derivation enumerated), against lark's Earley parser, and
its three schedules (sparse levels, dense windows, general CKY) against each other."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cfglab.chart.earley import earley_counts
from cfglab.chart.front import GENERAL_MAX_TOKENS, Chart
from cfglab.chart.general import InfiniteParsesError
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Rule, Tree
from cfglab.grammar.sample import sample
from tests.strategies import layered_grammars, small_grammars

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- brute force ----------------------------------------------------------------------------------
def _shortest(g: Grammar) -> dict[str, int]:
    short = dict.fromkeys(g.terminals, 1)
    changed = True
    while changed:
        changed = False
        for r in g.rules:
            if all(s in short for s in r.rhs):
                n = sum(short[s] for s in r.rhs)
                if n < short.get(r.lhs, math.inf):
                    short[r.lhs], changed = n, True
    return short


def enumerate_language(
    g: Grammar, max_len: int, max_steps: int = 300_000
) -> dict[tuple[int, ...], tuple[int, float]] | None:
    """Every string of at most max_len tokens with (number of leftmost derivations = parse trees,
    probability). None when the enumeration would be too long (or a unit cycle makes it endless)."""
    short = _shortest(g)
    ids = g.symbol_ids
    out: dict[tuple[int, ...], tuple[int, float]] = {}
    stack: list[tuple[tuple[str, ...], float]] = [((g.start,), 1.0)]
    steps = 0
    while stack:
        steps += 1
        if steps > max_steps:
            return None
        form, p = stack.pop()
        i = next((k for k, s in enumerate(form) if not g.is_terminal(s)), None)
        if i is None:
            key = tuple(ids[s] for s in form)
            c, q = out.get(key, (0, 0.0))
            out[key] = (c + 1, q + p)
            continue
        for r in g.rules_of(form[i]):
            new = form[:i] + r.rhs + form[i + 1 :]
            if sum(short.get(s, math.inf) for s in new) <= max_len:
                stack.append((new, p * g.rule_probability(r)))
    return out


def _has_unit_cycle(g: Grammar) -> bool:
    edges = {
        nt: {r.rhs[0] for r in g.rules_of(nt) if len(r.rhs) == 1 and not g.is_terminal(r.rhs[0])}
        for nt in g.nonterminals
    }
    for nt in g.nonterminals:
        seen, todo = set(), list(edges[nt])
        while todo:
            x = todo.pop()
            if x == nt:
                return True
            if x not in seen:
                seen.add(x)
                todo.extend(edges.get(x, ()))
    return False


def _all_strings(n_terminals: int, max_len: int) -> list[tuple[int, ...]]:
    return [
        s for n in range(1, max_len + 1) for s in itertools.product(range(n_terminals), repeat=n)
    ]


def _any_grammar() -> st.SearchStrategy[Grammar]:
    return st.one_of(
        small_grammars(recursive=False),
        small_grammars(recursive=True),
        layered_grammars(weighted=True),
    )


# --- the inside semirings against enumeration -----------------------------------------------------
@SETTINGS
@given(_any_grammar(), st.booleans())
def test_membership_counts_and_probabilities_match_enumeration(g: Grammar, general: bool) -> None:
    max_len = 4
    lang = enumerate_language(g, max_len)
    assume(lang is not None and not _has_unit_cycle(g))
    chart = Chart(g, general=general)
    strings = _all_strings(len(g.terminals), max_len)
    accepted = chart.accepts(strings)
    counts = chart.count_parses(strings)
    logp = chart.log_inside(strings)
    for s, ok, c, lp in zip(strings, accepted, counts, logp):
        want_c, want_p = lang.get(s, (0, 0.0))
        assert ok == (want_c > 0), s
        assert c == want_c, s
        if want_c:
            assert lp == pytest.approx(math.log(want_p), rel=1e-9, abs=1e-9), s
        else:
            assert lp == -np.inf


@SETTINGS
@given(_any_grammar(), st.booleans())
def test_min_substitutions_match_brute_force(g: Grammar, general: bool) -> None:
    max_len = 4
    lang = enumerate_language(g, max_len)
    assume(lang is not None)
    chart = Chart(g, general=general)
    strings = _all_strings(len(g.terminals), max_len)
    for s, (count, repaired) in zip(strings, chart.min_substitutions(strings)):
        same_length = [w for w in lang if len(w) == len(s)]
        if not same_length:
            assert count is None and repaired is None
            continue
        best = min(sum(a != b for a, b in zip(w, s)) for w in same_length)
        assert count == best, s
        assert tuple(int(x) for x in repaired) in lang
        assert int((np.asarray(repaired) != np.asarray(s)).sum()) == best


@SETTINGS
@given(_any_grammar(), st.data())
def test_substitutions_confined_to_a_prefix(g: Grammar, data: st.DataObject) -> None:
    max_len = 4
    lang = enumerate_language(g, max_len)
    assume(lang is not None)
    strings = _all_strings(len(g.terminals), max_len)
    ks = [data.draw(st.integers(0, len(s))) for s in strings]
    for s, k, (count, repaired) in zip(
        strings, ks, Chart(g).min_substitutions(strings, editable=ks)
    ):
        fits = [w for w in lang if len(w) == len(s) and w[k:] == s[k:]]
        if not fits:
            assert count is None
            continue
        assert count == min(sum(a != b for a, b in zip(w, s)) for w in fits)
        assert tuple(int(x) for x in repaired) in fits


# --- next-token distributions ---------------------------------------------------------------------
def _true_rows(
    lang: dict[tuple[int, ...], tuple[int, float]], s: tuple[int, ...], T: int
) -> np.ndarray:
    rows = np.zeros((len(s) + 1, 1 + T))
    for w, (_, p) in lang.items():
        for k in range(len(s) + 1):
            if w[:k] != s[:k]:
                break
            rows[k, 0 if len(w) == k else 1 + w[k]] += p
    total = rows.sum(axis=1, keepdims=True)
    return np.divide(rows, total, out=np.zeros_like(rows), where=total > 0)


@SETTINGS
@given(
    st.one_of(small_grammars(recursive=False), layered_grammars(max_levels=3, weighted=True)),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_next_token_rows_match_the_enumerated_language(
    g: Grammar, general: bool, seed: int
) -> None:
    short = _shortest(g)
    lang = enumerate_language(g, 64, 20_000)  # a non-recursive grammar's language is finite
    assume(lang is not None)
    T = len(g.terminals)
    chart = Chart(g, general=general)
    rng = np.random.default_rng(seed)
    words = list(lang)
    picks = [words[i] for i in rng.choice(len(words), min(4, len(words)), replace=False)]
    picks.append(tuple(int(x) for x in rng.integers(0, T, short[g.start] + 1)))  # likely invalid
    for s in picks:
        got = chart.next_token_distributions(np.array(s))
        assert got.shape == (len(s) + 1, 1 + T)
        np.testing.assert_allclose(got, _true_rows(lang, s, T), atol=1e-9)


def _consistent(g: Grammar) -> bool:
    """Spectral radius of the expected-children matrix below 1: no mass leaks to infinity."""
    nts = g.nonterminals
    at = {nt: i for i, nt in enumerate(nts)}
    m = np.zeros((len(nts), len(nts)))
    for r in g.rules:
        for s in r.rhs:
            if s in at:
                m[at[r.lhs], at[s]] += g.rule_probability(r)
    return bool(np.max(np.abs(np.linalg.eigvals(m))) < 0.95)


@SETTINGS
@given(small_grammars(recursive=True), st.integers(0, 2**16))
def test_next_token_rows_of_recursive_grammars_obey_the_chain_rule(g: Grammar, seed: int) -> None:
    assume(g.levels is None and _consistent(g))
    chart = Chart(g)
    strings = sample(g, 4, seed, max_length=30).strings()
    logp = chart.log_inside(strings)
    for s, lp in zip(strings, logp):
        rows = chart.next_token_distributions(s)
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-9)
        chain = np.log(rows[np.arange(len(s)), 1 + s]).sum() + np.log(rows[len(s), 0])
        assert chain == pytest.approx(lp, abs=1e-7)
    lang = enumerate_language(g, 6, 50_000)
    assume(lang is not None)
    tail = 1.0 - sum(p for _, p in lang.values())  # mass of strings longer than 6
    for s in strings:
        if len(s) <= 4 and tail < 1e-3:
            want = _true_rows(lang, tuple(int(x) for x in s), len(g.terminals))
            got = chart.next_token_distributions(s)
            for k in range(len(s) + 1):  # a truncated language is exact up to its tail mass
                if want[k].sum():
                    assert np.abs(got[k] - want[k]).max() < 50 * tail + 1e-9


# --- trees ----------------------------------------------------------------------------------------
def _check_tree(g: Grammar, node: Tree) -> None:
    if not node.children:
        assert g.is_terminal(node.symbol)
        return
    rule = g.rules[node.rule]
    assert rule.lhs == node.symbol and rule.rhs == tuple(c.symbol for c in node.children)
    for c in node.children:
        _check_tree(g, c)


def _shape(node: Tree) -> tuple:
    return (node.symbol, node.rule, tuple(_shape(c) for c in node.children))


@SETTINGS
@given(_any_grammar(), st.booleans())
def test_parse_trees_are_distinct_derivations_as_many_as_counted(g: Grammar, general: bool) -> None:
    lang = enumerate_language(g, 4)
    assume(lang is not None and not _has_unit_cycle(g))
    chart = Chart(g, general=general)
    for s, (count, _) in list(lang.items())[:20]:
        trees = chart.parse_trees(np.array(s), limit=50)
        assert len(trees) == min(count, 50)
        assert len({_shape(t) for t in trees}) == len(trees)
        for tree in trees:
            _check_tree(g, tree)
            assert tuple(g.symbol_ids[x] for x in tree.leaves()) == s
    assert chart.parse_trees(np.array([0] * 5), limit=3) == [] or chart.accepts([[0] * 5])[0]


# --- exactness of big counts, bounds, bad input ---------------------------------------------------
def test_counts_beyond_float_precision_are_exact_big_integers() -> None:
    # N_l and M_l both expand to (N_{l+1} N_{l+1}) or (M_{l+1} M_{l+1}): c_l = 2 c_{l+1}^2.
    depth = 7
    rules = []
    for l in range(depth):
        for a in ("N", "M"):
            rules += [
                Rule(f"{a}{l}", (f"N{l + 1}", f"N{l + 1}")),
                Rule(f"{a}{l}", (f"M{l + 1}", f"M{l + 1}")),
            ]
    rules += [Rule(f"N{depth}", ("a",)), Rule(f"M{depth}", ("a",))]
    g = Grammar("doubling", "N0", ("a",), tuple(rules))
    want = 2 ** (2**depth - 1)  # 2^127, far past 2^53
    assert Chart(g).count_parses([[0] * 2**depth]) == [want]
    catalan = Grammar("catalan", "S", ("a",), (Rule("S", ("S", "S")), Rule("S", ("a",))))
    n = 40
    assert Chart(catalan).count_parses([[0] * n]) == [math.comb(2 * n - 2, n - 1) // n]


def test_unit_cycles_make_counts_infinite_but_leave_the_rest_exact() -> None:
    g = Grammar(
        "loop",
        "S",
        ("a", "b"),
        (Rule("S", ("A",)), Rule("A", ("S",)), Rule("A", ("a", "b")), Rule("S", ("a",))),
    )
    chart = Chart(g)
    with pytest.raises(InfiniteParsesError):
        chart.count_parses([[0, 1]])
    assert list(chart.accepts([[0, 1], [0], [1]])) == [True, True, False]
    # P(S => a b) = sum over k of (1/2 * 1/2)^k * 1/2 * 1/2 ... : S->A (1/2), A->S (1/2) loops
    assert math.exp(chart.log_inside([[0, 1]])[0]) == pytest.approx((0.25) / (1 - 0.25))
    verdicts = chart.verify([[0, 1], [1, 1]])
    assert verdicts[0].valid and verdicts[0].parses is None and verdicts[1].substitutions == 1


def test_bad_input_is_refused_clearly() -> None:
    catalan = Grammar("catalan", "S", ("a",), (Rule("S", ("S", "S")), Rule("S", ("a",))))
    chart = Chart(catalan)
    with pytest.raises(CfglabError, match="too long"):
        chart.accepts([[0] * (GENERAL_MAX_TOKENS + 1)])
    with pytest.raises(ValueError, match="terminal ids"):
        chart.accepts([[1]])
    assert list(chart.accepts([[]])) == [False] and chart.count_parses([[]]) == [0]
    assert chart.min_substitutions([[]])[0] == (None, None)
    rows = chart.next_token_distributions(np.array([], dtype=int))
    assert rows.shape == (1, 2) and rows[0, 1] == 1.0


def test_deep_trees_of_recursive_grammars_are_read_back() -> None:
    g = Grammar("right", "S", ("a", "b"), (Rule("S", ("a", "S")), Rule("S", ("a",))))
    chart = Chart(g)
    s = np.zeros(GENERAL_MAX_TOKENS, dtype=int)
    (tree,) = chart.parse_trees(s, limit=3)
    assert len(tree.leaves()) == len(s)
    s[7] = 1
    count, repaired = chart.min_substitutions([s])[0]
    assert count == 1 and not repaired.any()


# --- the paper's grammars: lark, schedules, next-token properties ---------------------------------
def _paper(name: str) -> Grammar:
    from cfglab.grammar.dsl import load_grammar

    path = ROOT / "grammars" / f"{name}.cfg"
    if not path.exists():
        pytest.skip(f"{path} not shipped")
    return load_grammar(path)


def _flipped(strings: list[np.ndarray], n_terminals: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in strings:
        s = s.copy()
        i = rng.integers(len(s))
        s[i] = (s[i] + rng.integers(1, n_terminals)) % n_terminals
        out.append(s)
    return out


def test_membership_and_counts_agree_with_lark_earley_on_cfg3f() -> None:
    g = _paper("cfg3f")
    valid = sorted(sample(g, 40, 7).strings(), key=len)[:12]  # the shorter ones: lark is slow
    strings = valid + _flipped(valid, len(g.terminals), 3)
    want_counts = earley_counts(g, strings)
    chart = Chart(g)
    assert list(chart.accepts(strings)) == [c > 0 for c in want_counts]
    assert chart.count_parses(strings) == want_counts
    assert all(c > 0 for c in want_counts[: len(valid)])


def test_cfg3f_is_ambiguous_with_a_few_trees_per_string() -> None:
    g = _paper("cfg3f")
    counts = np.array(Chart(g).count_parses(sample(g, 200, 0).strings()))
    assert counts.min() >= 1
    assert 0.1 < (counts > 1).mean() < 0.9
    assert set(range(2, 5)) <= set(counts.tolist())


def _schedules_agree(g: Grammar, strings: list[np.ndarray]) -> None:
    sparse, general = Chart(g), Chart(g, general=True)
    assert sparse.count_parses(strings) == general.count_parses(strings)
    np.testing.assert_allclose(
        sparse.log_inside(strings), general.log_inside(strings), rtol=1e-12, atol=1e-12
    )
    for a, b in zip(sparse.min_substitutions(strings), general.min_substitutions(strings)):
        assert a.substitutions == b.substitutions
        if a.repaired is not None:
            assert sparse.accepts([a.repaired])[0] and general.accepts([b.repaired])[0]
    for s in strings:
        np.testing.assert_allclose(
            sparse.next_token_distributions(s), general.next_token_distributions(s), atol=1e-10
        )


@SETTINGS
@given(layered_grammars(max_levels=4, weighted=True), st.integers(0, 2**16))
def test_the_three_schedules_agree_on_layered_grammars(g: Grammar, seed: int) -> None:
    strings = [s for s in sample(g, 4, seed).strings() if len(s) <= 40]
    rng = np.random.default_rng(seed)
    noisy = [
        np.where(rng.random(len(s)) < 0.3, rng.integers(0, len(g.terminals), len(s)), s)
        for s in strings
    ]
    _schedules_agree(g, strings + noisy)


@pytest.mark.slow
def test_the_three_schedules_agree_on_cfg3f() -> None:
    g = _paper("cfg3f")
    strings = sorted(sample(g, 30, 1).strings(), key=len)[:2]
    _schedules_agree(g, strings + _flipped(strings, len(g.terminals), 5))


def test_repairs_of_paper_strings_far_from_the_language() -> None:
    g = _paper("cfg3f")
    chart = Chart(g)
    rng = np.random.default_rng(0)
    valid = sample(g, 6, 11).strings()
    noisy = []
    for s in valid:
        s = s.copy()
        pos = rng.choice(len(s), 6, replace=False)
        s[pos] = (s[pos] + 1) % 3
        noisy.append(s)
    noisy.append(rng.integers(0, 3, 100))
    for s, (count, repaired) in zip(noisy, chart.min_substitutions(noisy)):
        assert 1 <= count <= 6 or len(s) == 100
        assert chart.accepts([repaired])[0]
        assert int((repaired != s).sum()) == count
    # six flips undo to at most six; the chart finds no cheaper repair than the sampled string
    assert all(r.substitutions <= 6 for r in chart.min_substitutions(noisy[:-1]))


@pytest.mark.parametrize("name", ["cfg3f", "cfg3b"])
def test_next_token_rows_on_paper_grammars(name: str) -> None:
    g = _paper(name)
    chart = Chart(g)
    T = len(g.terminals)
    for s in sample(g, 3, 2).strings():
        rows = chart.next_token_distributions(s)
        assert rows.shape == (len(s) + 1, 1 + T)
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-9)
        assert (rows[np.arange(len(s)), 1 + s] > 0).all()  # the string's own tokens are possible
        prefixes_valid = chart.accepts([s[:k] for k in range(1, len(s) + 1)])
        assert np.array_equal(rows[1:, 0] > 0, prefixes_valid)  # EOS > 0 exactly at valid ends
        assert rows[0, 0] == 0
        flips = _all_single_flips(s, T, limit=60)
        ok = chart.accepts([f for _, _, f in flips])
        for (k, t, _), valid in zip(flips, ok):
            if valid:
                assert rows[k, 1 + t] > 0  # a valid continuation exists, so t is possible at k
    broken = sample(g, 1, 9).string(0).copy()
    broken[:4] = [0, 0, 0, 0]
    rows = chart.next_token_distributions(broken)
    dead = rows.sum(axis=1) == 0
    assert dead.any() and (dead[np.argmax(dead) :]).all()  # once impossible, always impossible


def _all_single_flips(s: np.ndarray, T: int, limit: int) -> list[tuple[int, int, np.ndarray]]:
    out = []
    for k in range(len(s)):
        for t in range(T):
            if t != s[k]:
                f = s.copy()
                f[k] = t
                out.append((k, t, f))
    step = max(1, len(out) // limit)
    return out[::step]


def test_next_token_batch_equals_one_by_one() -> None:
    g = _paper("cfg3b")
    chart = Chart(g)
    strings = sample(g, 5, 4).strings()
    strings[2] = strings[2][:50]
    for a, s in zip(chart.next_token_batch(strings), strings):
        np.testing.assert_array_equal(a, chart.next_token_distributions(s))


@SETTINGS
@given(layered_grammars(max_levels=4, max_width=3, max_terminals=3), st.data())
def test_substituted_leaves_are_those_of_the_first_repair_tree(g: Grammar, data) -> None:
    """TreeReader.substitutions (the repairs' fast path: only the costly children are entered)
    gives exactly the leaves where `trees`' first tree of the same budget differs from the
    tokens, in the sparse chart (budget 1, as verify uses it) and in the windows' chart."""
    from cfglab.chart import sparse as chart_sparse
    from cfglab.chart import window as chart_window
    from cfglab.chart.semiring import MIN_PLUS

    chart = Chart(g)
    t, T = chart._sparse, len(g.terminals)
    seed = data.draw(st.integers(0, 2**16))
    strings = sample(g, 6, seed).strings()
    rng = np.random.default_rng(seed)
    for s in strings:
        flips = rng.choice(len(s), min(len(s), int(rng.integers(0, 3))), replace=False)
        s[flips] = (s[flips] + rng.integers(0, T, len(flips))) % T
    batch = chart_sparse.Batch.of(strings)
    sparse_chart = chart_sparse.inside(t, batch, MIN_PLUS, budget=1)
    charts = [(sparse_chart, int(b), s) for b, s in zip(batch.base, strings)]
    for s in strings:
        windows = chart_window.inside(t, s, MIN_PLUS, chart._lengths, None)
        cost = float(chart_window.value(windows, t.start, 0, len(s), MIN_PLUS))
        if np.isfinite(cost):
            charts.append((chart_window.to_spanset(windows, MIN_PLUS, len(s), cost), 0, s))
    for spans, b, s in charts:
        hit = spans.find(t.start, b, b + len(s))
        if hit < 0:
            continue
        cost = float(spans.val[hit])
        reader = chart_sparse.TreeReader(t, spans)
        first = next(reader.trees(t.start, b, b + len(s), cost))
        leaves = g.encode(first.leaves())
        want = [(b + p, int(leaves[p])) for p in np.flatnonzero(leaves != s)]
        fresh = chart_sparse.TreeReader(t, spans)  # no memo shared with the tree walk
        assert fresh.substitutions(t.start, b, b + len(s), cost) == want
        assert len(want) == cost


@SETTINGS
@given(layered_grammars(max_levels=4, max_width=3, max_terminals=3), st.data())
def test_narrow_first_pass_keeps_repairs_exact(g: Grammar, data) -> None:
    """Repairs try one substitution near where the prefix dies first, then anywhere before it:
    with the first window at its narrowest (1 token) the counts still match brute force and the
    repaired strings are valid."""
    from unittest import mock

    from cfglab.chart import front

    max_len = 5
    lang = enumerate_language(g, max_len)
    assume(lang is not None and lang)
    strings = data.draw(
        st.lists(
            st.lists(st.integers(0, len(g.terminals) - 1), min_size=1, max_size=max_len),
            min_size=1,
            max_size=12,
        )
    )
    with mock.patch.object(front, "ONE_EDIT_WINDOW", 1):
        chart = Chart(g)
        repairs = chart.min_substitutions(strings)
        verdicts = chart.verify(strings)
    for s, (count, repaired), v in zip(strings, repairs, verdicts):
        same_length = [w for w in lang if len(w) == len(s)]
        best = min((sum(a != b for a, b in zip(w, s)) for w in same_length), default=None)
        assert count == best, s
        assert v.substitutions == (0 if v.valid else best)
        if best is not None:
            assert tuple(int(x) for x in repaired) in lang


def test_verify_counts_equal_the_unrestricted_chart_on_paper_strings() -> None:
    """cfg3f strings with 1-3 flipped tokens: verify's substitutions (windowed passes, no trees
    read) equal the budget-1 min-plus chart with every token editable, and min_substitutions'."""
    from cfglab.chart import sparse as chart_sparse
    from cfglab.chart.semiring import MIN_PLUS

    g = _paper("cfg3f")
    T = len(g.terminals)
    rng = np.random.default_rng(7)
    strings = sample(g, 60, 3).strings()
    for s in strings:
        flips = rng.choice(len(s), int(rng.integers(1, 4)), replace=False)
        s[flips] = (s[flips] + rng.integers(1, T, len(flips))) % T
    chart = Chart(g)
    verdicts = chart.verify(strings)
    repairs = chart.min_substitutions(strings)
    t = chart._sparse
    batch = chart_sparse.Batch.of(strings)
    full = chart_sparse.inside(t, batch, MIN_PLUS, budget=1)
    hit = full.find(t.start, batch.base, batch.base + batch.length)
    assert sum(v.substitutions == 1 for v in verdicts) > 10  # the windowed pass is exercised
    for s, v, r, h in zip(strings, verdicts, repairs, hit):
        want_one = h >= 0 and full.val[h] == 1
        assert (v.substitutions == 1) == want_one
        assert r.substitutions == v.substitutions
        if r.repaired is not None:
            assert chart.accepts([r.repaired])[0]
            assert int((r.repaired != s).sum()) == r.substitutions


@settings(max_examples=40, deadline=None)
@given(layered_grammars(max_levels=3, max_width=2, max_terminals=2))
def test_yield_bounds_are_the_shortest_and_longest_strings(g: Grammar) -> None:
    from cfglab.grammar.core import yield_bounds

    shortest, longest = yield_bounds(g)
    language = enumerate_language(g, longest[g.start])
    assume(language is not None)
    lengths = [len(s) for s in language]
    assert (shortest[g.start], longest[g.start]) == (min(lengths), max(lengths))

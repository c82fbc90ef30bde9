"""Attention statistics on hand-built matrices, against a brute-force reference, and on runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.interpret.attention import AttentionStats, attention_run
from tests.grammars import LAYERED

GRAMMAR = LAYERED


def nan_equal(a, b) -> bool:
    a = np.array(a, dtype=float)
    b = np.array(b, dtype=float)
    return a.shape == b.shape and np.allclose(a, b, atol=1e-7, equal_nan=True)


def test_hand_example() -> None:
    """One string, 3 tokens, one head; worked by hand in the comments."""
    A = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    ends = np.array([[True, True, True], [True, False, True]])  # level 1: tokens 0 and 2
    stats = AttentionStats(1, 1, 3, levels=[1], causal=True, offsets=[0, 1], max_adjacency=1)
    stats.add(A[None, None], ends)
    r = stats.result()
    assert r["distance"]["p"] == [0, 1, 2]
    # Ā_0 = (1 + .5 + .5)/3, Ā_1 = (.5 + .3)/2, Ā_2 = .2
    assert nan_equal(r["distance"]["mean"], [[[2 / 3, 0.4, 0.2]]])
    # B: (0,0) 1/3, (1,0) .1, (1,1) -1/6, (2,0) 0, (2,1) -.1, (2,2) -1/6
    # δ=0, keys {0, 2}: pairs (0,0) (1,0) (2,0) (2,2) -> (1/3 + .1 + 0 - 1/6)/4
    # δ=1, key {1} (token after the end at 0): pairs (1,1) (2,1) -> (-1/6 - .1)/2
    assert nan_equal(r["offset"]["mean_B"], [[[[(1 / 3 + 0.1 - 1 / 6) / 4, (-1 / 6 - 0.1) / 2]]]])
    assert r["offset"]["pairs"] == [[4, 2]]
    # r=0: (0,0) (2,2) -> (1/3 - 1/6)/2; r=1: (2,0) -> 0
    assert nan_equal(r["adjacency"]["mean_B"], [[[[(1 / 3 - 1 / 6) / 2, 0.0]]]])


def test_attention_explained_by_distance_leaves_no_b() -> None:
    rng = np.random.default_rng(0)
    stats = AttentionStats(2, 3, 20, levels=[1, 2], causal=True)
    for n in (5, 11, 20):
        A = np.broadcast_to(np.eye(n), (2, 3, n, n))  # every head attends to itself
        stats.add(A, rng.random((3, n)) < 0.4)
    r = stats.result()
    mean = np.array(r["distance"]["mean"], dtype=float)
    assert np.all(mean[..., 0] == 1.0) and np.all(mean[..., 1:] == 0.0)
    for key in ("offset", "adjacency"):
        b = np.array(r[key]["mean_B"], dtype=float)
        assert np.all(np.isnan(b) | (np.abs(b) < 1e-12)) and not np.all(np.isnan(b))


def reference(strings, levels, causal, offsets, adjacency):
    """The definitions, pair by pair."""
    L, H = strings[0][0].shape[:2]
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for A, _ in strings:
        n = A.shape[-1]
        for i in range(n):
            for k in range(n):
                if causal and k > i:
                    continue
                sums[i - k] = sums.get(i - k, 0) + A[:, :, i, k]
                counts[i - k] = counts.get(i - k, 0) + 1
    abar = {p: sums[p] / counts[p] for p in sums}

    def mean_b(pairs_of):
        out = np.full((L, H, len(levels), len(pairs_of)), np.nan)
        for a, level in enumerate(levels):
            for j, which in enumerate(pairs_of):
                total, m = np.zeros((L, H)), 0
                for A, bnd in strings:
                    for i, k in which(bnd[level], A.shape[-1]):
                        total += A[:, :, i, k] - abar[i - k]
                        m += 1
                if m:
                    out[:, :, a, j] = total / m
        return out

    def offset_pairs(delta):
        def pairs(ends, n):
            return [
                (i, k)
                for k in range(n)
                for i in range(n)
                if 0 <= k - delta < n and ends[k - delta] and not (causal and k > i)
            ]

        return pairs

    def adjacency_pairs(r):
        def pairs(ends, n):
            e = list(np.flatnonzero(ends))
            return [(e[j], e[j - r]) for j in range(len(e)) if 0 <= j - r < len(e)]

        return pairs

    return (
        {p: abar[p] for p in sorted(abar)},
        mean_b([offset_pairs(d) for d in offsets]),
        mean_b([adjacency_pairs(r) for r in adjacency]),
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_matches_the_brute_force_reference(seed: int, causal: bool, lengths: list[int]) -> None:
    rng = np.random.default_rng(seed)
    L, H, depth = 2, 2, 3
    strings = []
    for n in lengths:
        logits = rng.normal(size=(L, H, n, n)) * 2
        if causal:
            logits = np.where(np.tril(np.ones((n, n))) > 0, logits, -np.inf)
        A = np.exp(logits - logits.max(-1, keepdims=True))
        strings.append((A / A.sum(-1, keepdims=True), rng.random((depth, n)) < 0.5))
    stats = AttentionStats(L, H, max(lengths), levels=[1, 2], causal=causal, max_adjacency=2)
    for A, bnd in strings:
        stats.add(A, bnd)
    r = stats.result()
    abar, off, adj = reference(strings, [1, 2], causal, stats.offsets, stats.adjacency)
    assert r["distance"]["p"] == list(abar)
    assert nan_equal(r["distance"]["mean"], np.stack(list(abar.values()), axis=-1))
    assert nan_equal(r["offset"]["mean_B"], off)
    assert nan_equal(r["adjacency"]["mean_B"], adj)
    assert stats.adjacency == ([0, 1, 2] if causal else [-2, -1, 0, 1, 2])


# --- runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    root = tmp_path_factory.mktemp("attention_runs")
    (root / "g.cfg").write_text(GRAMMAR)
    out = {}
    for pe in ("rot", "mlm", "pos", "uni"):
        cfg = TrainConfig(
            grammar=str(root / "g.cfg"),
            pe=pe,
            layers=2,
            heads=2,
            dim=16,
            context=64,
            batch=4,
            steps=5,
            threads=1,
            checkpoint_every=5,
        )
        out[pe] = train(cfg, root / pe, quiet=True)
    return out


def test_attention_run_writes_json_and_plots(runs: dict[str, Path]) -> None:
    for pe in ("rot", "mlm"):
        r = attention_run(str(runs[pe]), n_strings=12, seed=0)
        assert r == json.loads((runs[pe] / "attention" / "attention.json").read_text())
        assert r["meaningful"] and r["bidirectional"] == (pe == "mlm")
        mean = np.array(r["distance"]["mean"], dtype=float)
        assert mean.shape[:2] == (2, 2) and len(r["distance"]["p"]) == mean.shape[2]
        assert (min(r["distance"]["p"]) < 0) == (pe == "mlm")
        assert np.array(r["offset"]["mean_B"], dtype=float).shape == (2, 2, len(r["levels"]), 5)
        for path in r["plots"]:
            assert Path(path).stat().st_size > 10_000


def test_position_only_heads_get_a_sentence_not_numbers(runs: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from cfglab.cli import app

    for pe in ("pos", "uni"):
        r = attention_run(str(runs[pe]), n_strings=4)
        assert r["meaningful"] is False and "not meaningful" in r["reason"]
        assert not {"distance", "offset", "adjacency"} & set(r)
    res = CliRunner().invoke(app, ["attention", str(runs["pos"]), "--n", "4"])
    assert res.exit_code == 0 and "not meaningful" in res.output
    res = CliRunner().invoke(app, ["attention", str(runs["rot"]), "--n", "4", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["meaningful"] is True


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.booleans())
def test_b_sharp_offsets_and_end_to_end_match_their_definitions(seed: int, causal: bool) -> None:
    """offset_sharp and end_to_end against the definitions, pair by pair, on sampled trees."""
    from cfglab.grammar.dsl import parse_grammar
    from cfglab.grammar.sample import sample

    s = sample(parse_grammar(GRAMMAR), 4, seed)
    rng = np.random.default_rng(seed)
    levels, offsets, R = [1, 2], [-1, 0, 1], 2
    max_len = int(s.lengths.max())
    stats = AttentionStats(1, 2, max_len, levels, causal, offsets, max_adjacency=R)
    strings = []
    for i in range(len(s)):
        lo, hi = s.offsets[i], s.offsets[i + 1]
        n = hi - lo
        A = rng.random((1, 2, n, n))
        if causal:
            A = np.tril(A)
        A /= A.sum(-1, keepdims=True)
        sharp, index = s.b_sharp[lo:hi], s.ancestor_index[:, lo:hi]
        stats.add(A, s.boundaries[:, lo:hi], sharp, index)
        strings.append((A, sharp, index))
    r = stats.result()
    abar = np.nan_to_num(stats.mean_by_distance())

    def b(A, i, k):
        return A[0, :, i, k] - abar[0, :, i - k + max_len - 1]

    def ok(i, k):
        return k <= i if causal else True

    rs = list(range(0 if causal else -R, R + 1))
    for a, lv in enumerate(levels):
        for o, delta in enumerate(offsets):
            vals = [
                b(A, i, k)
                for A, sharp, _ in strings
                for k in range(len(sharp))
                if 0 <= k - delta < len(sharp) and sharp[k - delta] == lv
                for i in range(len(sharp))
                if ok(i, k)
            ]
            want = np.mean(vals, axis=0) if vals else [None, None]
            got = [r["offset_sharp"]["mean_B"][0][h][a][o] for h in range(2)]
            assert nan_equal(got, want)
        for c, lk in enumerate(levels):
            for j, rr in enumerate(rs):
                vals = [
                    b(A, i, k)
                    for A, sharp, index in strings
                    for i in np.flatnonzero(sharp == lv)
                    for k in np.flatnonzero(sharp == lk)
                    if ok(i, k) and index[lk, i] - index[lk, k] == rr
                ]
                want = np.mean(vals, axis=0) if vals else [None, None]
                got = [r["end_to_end"]["mean_B"][0][h][a][c][j] for h in range(2)]
                assert nan_equal(got, want), (lv, lk, rr)

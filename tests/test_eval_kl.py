"""cfglab.evaluate.kl (and the scoring it reads): KL(true ‖ model) the authors' way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_support import SINGLE, TINY, judge
from hypothesis import given
from hypothesis import strategies as st

from cfglab.data.vocab import Vocab
from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.context import fresh_strings
from cfglab.evaluate.kl import (
    EPS,
    kl_rows,
    kl_rows_official,
    kl_to_truth,
    smooth,
    summarise,
)
from cfglab.evaluate.scoring import next_token_probs, sequence_log_probs
from cfglab.models import ModelConfig, build_model


def test_uniform_model_kl_on_a_single_string_grammar_by_hand() -> None:
    # Truth is one-hot on 4 outcomes (EOS, a, b, c) at each of the 4 positions of "a b c".
    # After smoothing: the certain outcome has (1 + e)/(1 + 4e), the others e/(1 + 4e); the
    # uniform model stays uniform, 1/4.
    e = EPS
    p1, p0 = (1 + e) / (1 + 4 * e), e / (1 + 4 * e)
    by_hand = p1 * math.log(4 * p1) + 3 * p0 * math.log(4 * p0)
    j = judge(SINGLE)
    got = kl_to_truth(UniformModel(3), j, [np.array([0, 1, 2])])
    assert got["n_positions"] == 4
    assert got["mean_support_only"] == pytest.approx(by_hand, rel=1e-9)
    # With the stray outcome (BOS/MASK, probability 0 for both): 5 outcomes after smoothing.
    q1, q0, m = (1 + e) / (1 + 5 * e), e / (1 + 5 * e), 1 / (1 + 5 * e)
    with_stray = q1 * math.log(q1 / (m / 4 + q0)) + 3 * q0 * math.log(q0 / (m / 4 + q0))
    with_stray += q0 * math.log(q0 / q0)  # the stray outcome: eps on both sides
    assert got["mean"] == pytest.approx(with_stray, rel=1e-6)
    assert got["by_position"] == pytest.approx([with_stray] * 4, rel=1e-6)
    assert got["stray_mass"]["mean"] == 0.0
    # the authors' recipe: weights from the raw one-hot row, no stray column: log(4·p1) alone
    assert got["official"]["mean"] == pytest.approx(math.log(4 * p1), rel=1e-9)
    assert got["official"]["n_positions"] == 4 and got["official"]["eps"] == EPS


def test_official_kl_rows_by_hand() -> None:
    """Two hand rows; on the first, raw and smoothed weights give different figures."""
    e = EPS
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.5, 0.5], [0.9, 0.1]])
    p1, p0 = (1 + e) / (1 + 2 * e), e / (1 + 2 * e)
    q9, q1 = (0.9 + e) / (1 + 2 * e), (0.1 + e) / (1 + 2 * e)
    half = (0.5 + e) / (1 + 2 * e)
    by_hand = [
        math.log(p1 / 0.5),  # the zero entry of p weighs nothing
        0.5 * math.log(half / q9) + 0.5 * math.log(half / q1),
    ]
    assert kl_rows_official(p, q) == pytest.approx(by_hand, rel=1e-12)
    smoothed = p1 * math.log(p1 / 0.5) + p0 * math.log(p0 / 0.5)
    assert kl_rows(p, q)[0] == pytest.approx(smoothed, rel=1e-12)
    assert kl_rows_official(p, q)[0] != pytest.approx(smoothed, rel=1e-6)


def test_oracle_kl_is_zero_and_uniform_kl_is_positive() -> None:
    j = judge(TINY)
    strings = fresh_strings(j.grammar, 30, seed=0)
    oracle = kl_to_truth(OracleModel(j), j, strings)
    uniform = kl_to_truth(UniformModel(3), j, strings)
    assert oracle["n_positions"] == sum(len(s) + 1 for s in strings)
    assert 0 <= oracle["mean"] < 1e-5
    assert uniform["mean"] > 0.3
    # uniform: the KL of each truth row against 1/4, recomputed here row by row
    truth = np.concatenate([j.next_token(s) for s in strings])
    p = smooth(truth)
    assert uniform["mean_support_only"] == pytest.approx(
        float((p * np.log(4 * p)).sum(axis=1).mean())
    )
    assert uniform["mean"] == pytest.approx(uniform["mean_support_only"], abs=1e-4)


def test_stray_mass_is_reported_and_paid_for() -> None:
    """A model leaking s of its mass onto BOS pays about −log(1 − s) nats per position."""
    j, leak = judge(TINY), 0.2

    class Leaky(OracleModel):
        def next_rows(self, tokens: list[int]) -> np.ndarray:
            rows = super().next_rows(tokens) + math.log(1 - leak)
            rows[:, self.vocab.bos] = math.log(leak)
            return rows

    strings = fresh_strings(j.grammar, 20, seed=0)
    got = kl_to_truth(Leaky(j), j, strings)
    assert got["stray_mass"]["mean"] == pytest.approx(leak, rel=1e-5)
    assert got["mean_support_only"] < 1e-5  # dropping the leak hides it entirely
    assert got["mean"] == pytest.approx(-math.log(1 - leak), rel=0.01)
    # the authors' recipe has no stray column: the leak is renormalised away, reported apart
    assert got["official"]["mean"] < 1e-5


@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=6),
    st.lists(st.floats(0, 1), min_size=2, max_size=6),
)
def test_kl_rows_is_nonnegative_and_zero_on_equal_rows(a, b) -> None:
    n = min(len(a), len(b))
    p, q = np.array(a[:n]) + 1e-3, np.array(b[:n]) + 1e-3
    p, q = p / p.sum(), q / q.sum()
    assert kl_rows(p[None], q[None])[0] >= -1e-12
    assert abs(kl_rows(p[None], p[None])[0]) < 1e-12


def test_summary_curve_averages_strings_that_reach_a_position() -> None:
    s = summarise([np.array([1.0, 3.0]), np.array([2.0, 4.0, 6.0])])
    assert s["by_position"] == [1.5, 3.5, 6.0] and s["strings_at_position"] == [2, 2, 1]
    assert s["mean"] == pytest.approx(16 / 5) and s["n_positions"] == 5
    assert summarise([])["mean"] is None


def test_scoring_agrees_with_itself_across_padding() -> None:
    """log p(x EOS) from sequence_log_probs = sum of the logs of next_token_probs' entries."""
    torch.manual_seed(0)
    vocab = Vocab(3)
    model = build_model(
        ModelConfig(vocab_size=vocab.size, context=32, n_layer=1, n_head=2, n_embd=16, pe="rot")
    ).eval()
    strings = [np.array(s) for s in ([0, 1], [2, 2, 1, 0, 1], [1], [0, 0, 0, 2])]
    rows = next_token_probs(model, strings, vocab, batch_size=3)
    seq = sequence_log_probs(model, strings, vocab, batch_size=3)
    for s, r, lp in zip(strings, rows, seq):
        assert r.shape == (len(s) + 1, 4)
        picked = [r[i, 1 + t] for i, t in enumerate(s)] + [r[len(s), 0]]
        assert lp == pytest.approx(float(np.log(picked).sum()), abs=1e-4)
    alone = sequence_log_probs(model, strings[1:2], vocab)
    assert alone[0] == pytest.approx(seq[1], abs=1e-5)

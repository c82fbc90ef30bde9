"""cfglab.evaluate.mlm: one masked token against the true conditional (encoder and decoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_support import LONGER, TINY, judge

from cfglab.data.vocab import Vocab
from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.context import fresh_strings
from cfglab.evaluate.kl import smooth
from cfglab.evaluate.mlm import (
    choose_positions,
    encoder_conditionals,
    masked_token,
    true_conditionals,
    variants,
)
from cfglab.models import ModelConfig, build_model


def test_true_conditional_by_hand() -> None:
    j = judge(TINY)
    x = np.array(j.grammar.encode(["a", "b", "c", "b"]))  # a=0 b=1 c=2
    truth = true_conditionals(j, x, np.array([0, 2]))
    # position 0: "? b c b" is valid for a (A -> a b) and for b? "b b c b" is not; c: "c b c b" no
    assert truth[0] == pytest.approx([1.0, 0.0, 0.0])
    # position 2: "a b ? b": only c makes B -> c A
    assert truth[1] == pytest.approx([0.0, 0.0, 1.0])
    y = np.array(j.grammar.encode(["c", "b", "b"]))
    # position 2 of "c b ?": "c b a"? no; "c b b" yes (B A, A -> b); "c b c" no
    assert true_conditionals(j, y, np.array([2]))[0] == pytest.approx([0.0, 1.0, 0.0])


def test_variants_are_position_major() -> None:
    v = variants(np.array([0, 0]), np.array([1]), 3)
    assert [x.tolist() for x in v] == [[0, 0], [0, 1], [0, 2]]


def test_oracle_decoder_matches_the_truth() -> None:
    j = judge(LONGER)
    strings = fresh_strings(j.grammar, 10, seed=0)
    got = masked_token(OracleModel(j), j, strings, 3, encoder=False, seed=0)
    assert got["n_positions"] == 30
    assert got["kl_mean"] < 1e-4
    # (argmax ties between equally likely fills may break either way, so accuracies can differ)
    assert got["valid_fill"]["rate"] == 1.0


def test_uniform_decoder_kl_by_hand() -> None:
    j = judge(TINY)
    strings = fresh_strings(j.grammar, 10, seed=1)
    got = masked_token(UniformModel(3), j, strings, 2, encoder=False, seed=1)
    # all T variants have the same length, so the uniform decoder gives each 1/3: the KL is
    # that of the smoothed truth against 1/3 at the same positions
    positions = choose_positions(strings, 2, 1)
    truth = np.concatenate([true_conditionals(j, s, p) for s, p in zip(strings, positions)])
    p = smooth(truth)
    assert got["n_positions"] == 20
    assert got["kl_mean"] == pytest.approx(float((p * np.log(3 * p)).sum(axis=1).mean()), rel=1e-6)
    # argmax of a uniform row is terminal 0, so accuracy counts the masked a's
    originals = np.concatenate([s[p] for s, p in zip(strings, positions)])
    assert got["accuracy"]["k"] == int((originals == 0).sum())


def test_encoder_reads_the_masked_position() -> None:
    torch.manual_seed(0)
    vocab = Vocab(3)
    model = build_model(
        ModelConfig(
            vocab_size=vocab.size,
            context=16,
            n_layer=1,
            n_head=2,
            n_embd=16,
            pe="mlm",
            mlm_pe="abs",
        )
    ).eval()
    x = np.array([0, 1, 2, 1, 0])
    probs = encoder_conditionals(model, x, np.array([0, 3]), vocab)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)
    # the model's input had [MASK] at the position: compare with a direct call
    inp = torch.tensor([[vocab.bos, 0, 1, 2, vocab.mask, 0, vocab.eos]])
    direct = torch.softmax(model(inp)[0][0, 4, :3].double(), dim=-1).detach().numpy()
    assert probs[1] == pytest.approx(direct, abs=1e-6)

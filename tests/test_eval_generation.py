"""cfglab.evaluate.generation: Wilson intervals, KV-cached sampling, accuracy against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_support import SINGLE, TINY, TINY_STRINGS, judge
from hypothesis import given
from hypothesis import strategies as st

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.evaluate.baselines import OracleModel, UniformModel
from cfglab.evaluate.generation import (
    accuracy_at_cut,
    complete,
    generate,
    proportion,
    records,
    wilson,
)
from cfglab.models import DECODER_PES, ModelConfig, build_model

# --- Wilson ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        (0, 10, 0.0, 0.27753),  # upper = z^2 / (n + z^2)
        (10, 10, 0.72247, 1.0),
        (5, 10, 0.23659, 0.76341),  # textbook (e.g. statsmodels proportion_confint method="wilson")
        (1, 10, 0.01788, 0.40415),
        (81, 263, 0.25529, 0.36621),
    ],
)
def test_wilson_matches_known_values(k, n, lo, hi) -> None:
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_without_trials_is_the_whole_interval() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert proportion(0, 0)["rate"] is None


@given(st.integers(1, 10_000), st.data())
def test_wilson_contains_the_estimate_and_narrows_with_n(n, data) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo4, hi4 = wilson(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


# --- KV cache -------------------------------------------------------------------------------------


def _gpt(pe: str, vocab: int = 6, context: int = 32) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model(
        ModelConfig(
            vocab_size=vocab, context=context, n_layer=2, n_head=2, n_embd=16, pe=pe, max_rel=8
        )
    ).eval()


@pytest.mark.parametrize("pe", [p.value for p in DECODER_PES])
@pytest.mark.parametrize("prompt_len", [1, 4])
def test_cached_generation_equals_uncached_token_for_token(pe, prompt_len) -> None:
    vocab = Vocab(3)
    model = _gpt(pe)
    rng = np.random.default_rng(0)
    prompts = np.concatenate(
        [np.full((9, 1), vocab.bos), rng.integers(0, 3, (9, prompt_len - 1))], axis=1
    )
    a = generate(model, prompts, vocab, 20, temperature=1.0, seed=7, batch_size=4)
    b = generate(model, prompts, vocab, 20, temperature=1.0, seed=7, batch_size=4, use_cache=False)
    assert [c.tolist() for c in a.completions] == [c.tolist() for c in b.completions]
    assert a.ended.tolist() == b.ended.tolist() and a.stray.tolist() == b.stray.tolist()
    # near-uniform weights stop rows at different steps: the batch was compacted on the way
    assert len({len(c) for c in a.completions}) > 2


def test_generation_is_reproducible_and_seed_dependent() -> None:
    vocab, model = Vocab(3), _gpt("rot")
    prompts = np.full((16, 1), vocab.bos)
    a = generate(model, prompts, vocab, 10, seed=3)
    b = generate(model, prompts, vocab, 10, seed=3)
    c = generate(model, prompts, vocab, 10, seed=4)

    def as_lists(g):
        return [x.tolist() for x in g.completions]

    assert as_lists(a) == as_lists(b) != as_lists(c)


def test_stop_tokens_are_classified() -> None:
    vocab, model = Vocab(3), _gpt("rot")
    g = generate(model, np.full((64, 1), vocab.bos), vocab, 6, seed=0)
    lengths = np.array([len(c) for c in g.completions])
    assert not (g.ended & g.stray).any()
    assert (lengths[~(g.ended | g.stray)] == 6).all()  # hit the cap
    assert all((c < 3).all() for c in g.completions)  # completions hold terminals only
    assert g.stray.any() and g.ended.any()  # BOS/MASK and EOS both get drawn by a random model


def test_cap_of_zero_tokens_is_refused() -> None:
    with pytest.raises(CfglabError, match="cap"):
        generate(_gpt("rot"), np.full((1, 1), 3), Vocab(3), 0)


def test_abs_model_generation_stays_inside_its_context() -> None:
    j = judge(TINY)
    model = _gpt("abs", vocab=Vocab(3).size, context=8)
    done = accuracy_at_cut(model, j, 20, 0, max_length=50, context_limit=8)
    assert done.extra["max_new_tokens"] == 7
    assert max(len(c) for c in done.generations.completions) <= 7


# --- accuracy of the references -------------------------------------------------------------------


def test_oracle_generates_only_valid_strings_at_cut0_and_cutk() -> None:
    j = judge(TINY)
    oracle = OracleModel(j)
    for cut in (0, 2):
        done = accuracy_at_cut(oracle, j, 200, cut, max_length=10, seed=1, batch_size=64)
        assert done.valid.all(), cut
    strings = {" ".join(j.grammar.decode(s)) for s in done.strings}
    assert strings <= set(TINY_STRINGS)


def test_oracle_generates_the_grammar_distribution() -> None:
    j = judge(TINY)
    done = accuracy_at_cut(OracleModel(j), j, 800, 0, max_length=10, seed=2, batch_size=200)
    counts = dict.fromkeys(TINY_STRINGS, 0)
    for s in done.strings:
        counts[" ".join(j.grammar.decode(s))] += 1
    # each string has probability 1/8: 800 draws give 100 +- 9.4 (sd); allow 4 sd
    assert all(abs(c - 100) < 38 for c in counts.values()), counts


def test_uniform_model_accuracy_is_the_chance_of_guessing_a_string() -> None:
    j = judge(TINY)
    done = accuracy_at_cut(UniformModel(3), j, 3000, 0, max_length=10, seed=3, batch_size=500)
    # a string of length L is guessed with probability 4^-(L+1) (T + 1 = 4 equal choices)
    chance = sum(4.0 ** -(len(s.split()) + 1) for s in TINY_STRINGS)
    assert chance == pytest.approx(0.01221, abs=1e-5)
    lo, hi = done.summary()["accuracy"]["ci95"]
    assert lo <= chance <= hi and hi < 0.03


def test_single_string_grammar_uniform_accuracy() -> None:
    j = judge(SINGLE)
    done = accuracy_at_cut(UniformModel(3), j, 4000, 0, max_length=6, seed=4, batch_size=1000)
    lo, hi = done.summary()["accuracy"]["ci95"]
    assert lo <= 4.0**-4 <= hi


def test_summary_and_records_agree_with_the_judge() -> None:
    j = judge(TINY)
    done = accuracy_at_cut(UniformModel(3), j, 100, 2, max_length=10, seed=5)
    s = done.summary()
    assert s["accuracy"]["k"] == int(done.valid.sum()) and s["cut"] == 2
    assert s["tokens_per_s"] > 0 and s["generate_s"] > 0
    lines = records(done, "cut2", j.grammar)
    assert len(lines) == 100
    for line, string in zip(lines, done.strings):
        assert line["string"] == " ".join(j.grammar.decode(string))
        assert line["string"].startswith(line["prompt"])
        tokens = np.array(j.grammar.encode(line["string"].split()))
        assert line["valid"] == (line["ended"] and bool(j.accepts([tokens])[0]))


def test_prompts_of_unequal_length_are_refused() -> None:
    j = judge(TINY)
    with pytest.raises((ValueError, CfglabError)):
        complete(
            UniformModel(3),
            j,
            [np.array([0]), np.array([0, 1])],
            cut=1,
            temperature=1.0,
            max_length=5,
            seed=0,
        )


def test_greedy_generation_is_deterministic() -> None:
    j = judge(TINY)
    a = accuracy_at_cut(OracleModel(j), j, 5, 0, temperature=0.0, max_length=10, seed=1)
    b = accuracy_at_cut(OracleModel(j), j, 5, 0, temperature=0.0, max_length=10, seed=2)
    assert len({tuple(s) for s in a.strings}) == 1
    assert [s.tolist() for s in a.strings] == [s.tolist() for s in b.strings]
    assert math.isfinite(a.summary()["mean_length"])

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.data.corpus import (
    NoiseConfig,
    StreamState,
    TokenStream,
    hash_token_strings,
    pack,
)
from cfglab.data.corrupt import flip_tokens
from cfglab.data.vocab import Vocab
from cfglab.grammar.core import Grammar, Rule

G = Grammar(
    "g",
    "S",
    ("a", "b", "c"),
    (
        Rule("S", ("A", "B")),
        Rule("S", ("B", "A", "A")),
        Rule("A", ("a", "b")),
        Rule("A", ("c",)),
        Rule("B", ("b", "b", "c")),
        Rule("B", ("a",)),
    ),
)


def _split_packed(stream: np.ndarray, vocab: Vocab) -> list[list[int]]:
    strings, cur = [], None
    for t in stream.tolist():
        if t == vocab.bos:
            cur = []
        elif t == vocab.eos:
            strings.append(cur)
            cur = None
        elif cur is not None:
            cur.append(t)
    return strings


def test_pack_puts_every_string_between_bos_and_eos() -> None:
    vocab = Vocab(3)
    tokens = np.array([0, 1, 2, 2, 1], dtype=np.int32)
    offsets = np.array([0, 2, 2 + 1, 5])
    assert pack(tokens, offsets, vocab).tolist() == [3, 0, 1, 4, 3, 2, 4, 3, 2, 1, 4]


def test_stream_is_deterministic_per_seed_and_worker() -> None:
    a = TokenStream(G, seed=1).batch(4, 16)[0]
    b = TokenStream(G, seed=1).batch(4, 16)[0]
    c = TokenStream(G, seed=1, worker=1).batch(4, 16)[0]
    d = TokenStream(G, seed=2).batch(4, 16)[0]
    assert (a == b).all() and not (a == c).all() and not (a == d).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=8), st.integers(0, 1000))
def test_restoring_the_state_continues_the_same_stream(takes: list[int], seed: int) -> None:
    ref = TokenStream(G, seed=seed, chunk_strings=16)
    whole = ref.take(sum(takes) + 50)[0]
    s = TokenStream(G, seed=seed, chunk_strings=16)
    got = []
    for n in takes:
        got.append(s.take(n)[0])
        s = TokenStream(
            G, seed=seed, chunk_strings=16, state=StreamState(s.state.chunk, s.state.position)
        )  # a fresh process
    got.append(s.take(50)[0])
    assert np.concatenate(got).tolist() == whole.tolist()


def test_windows_are_shifted_targets() -> None:
    x, y, clean = TokenStream(G, seed=0).batch(3, 10)
    assert x.shape == y.shape == clean.shape == (3, 10)
    assert (x[:, 1:] == y[:, :-1]).all()


def test_clean_stream_holds_valid_strings_and_noise_corrupts_the_requested_share() -> None:
    vocab = Vocab(3)
    noise = NoiseConfig(fraction=0.5, rate=0.3)
    s = TokenStream(G, seed=3, noise=noise, chunk_strings=4000)
    noisy, clean = s.take(20000)
    language = {
        (0, 1, 1, 1, 2),
        (0, 1, 0),
        (2, 1, 1, 2),
        (2, 0),
        (1, 1, 2, 0, 1, 0, 1),
        (1, 1, 2, 0, 1, 2),
        (1, 1, 2, 2, 0, 1),
        (1, 1, 2, 2, 2),
        (0, 0, 1, 0, 1),
        (0, 0, 1, 2),
        (0, 2, 0, 1),
        (0, 2, 2),
    }
    clean_strings = _split_packed(clean, vocab)
    assert all(tuple(x) in language for x in clean_strings)
    noisy_strings = _split_packed(noisy, vocab)
    changed = np.mean([a != b for a, b in zip(noisy_strings, clean_strings)])
    # a corrupted string of length L stays unchanged with probability 0.7**L; lengths are 2..7
    assert 0.25 < changed < 0.5
    flips = noisy != clean
    assert (noisy[flips] < 3).all()  # only terminals flip, BOS/EOS stay


def test_flip_tokens_rate_and_always_to_another_terminal() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=200_000)
    out, mask = flip_tokens(tokens, 0.15, 4, rng)
    assert abs(mask.mean() - 0.15) < 0.005  # ~6 standard errors
    assert (out[mask] != tokens[mask]).all() and (out[~mask] == tokens[~mask]).all()
    counts = np.bincount(out[mask & (tokens == 0)], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 0.9 * counts[1:].max()


def test_hashes_identify_strings() -> None:
    h = hash_token_strings([[0, 1, 2], [0, 1, 2], [2, 1, 0], [0, 1], [0, 1, 2, 0]])
    assert h[0] == h[1] and len(set(h.tolist())) == 4


def test_holdout_rule_removes_its_strings() -> None:
    from cfglab.grammar.sample import sample

    smp = sample(G, 2000, 5)
    uses = smp.uses_rule(3)  # A -> c
    assert uses.any() and not uses.all()
    kept = {tuple(x) for x, u in zip(smp.strings(), uses) if not u}
    only_with_rule = {tuple(x) for x, u in zip(smp.strings(), uses) if u} - kept
    noisy, _ = TokenStream(G, seed=0, holdout_rule=3).take(5000)
    got = {tuple(x) for x in _split_packed(noisy, Vocab(3))}
    assert got and got <= kept
    assert not got & only_with_rule


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 6), st.integers(2, 40), st.integers(2, 40))
def test_aligned_windows_start_at_a_bos_and_resume_exactly(
    seed: int, batch: int, context: int, chunk: int
) -> None:
    vocab = Vocab(3)
    s = TokenStream(G, seed=seed, chunk_strings=chunk, aligned=True)
    x1, y1, _ = s.batch(batch, context)
    resumed = TokenStream(
        G,
        seed=seed,
        chunk_strings=chunk,
        aligned=True,
        state=StreamState(s.state.chunk, s.state.position),
    )
    x2, _, _ = s.batch(batch, context)
    assert (x1[:, 0] == vocab.bos).all() and (x2[:, 0] == vocab.bos).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()
    assert (resumed.batch(batch, context)[0] == x2).all()
    # each window is a piece of the packed stream: its strings are whole strings of the grammar
    whole = TokenStream(G, seed=seed, chunk_strings=chunk).take(50 * batch * (context + 1))[0]
    text = " " + " ".join(map(str, whole.tolist())) + " "
    for row in np.concatenate([x1, x2]):
        assert " " + " ".join(map(str, row.tolist())) + " " in text


def test_aligned_windows_skip_the_rest_of_a_cut_string() -> None:
    vocab = Vocab(3)
    aligned = TokenStream(G, seed=5, aligned=True).batch(64, 9)[0]
    cut_anywhere = TokenStream(G, seed=5).batch(64, 9)[0]
    assert (aligned[:, 0] == vocab.bos).all()
    assert (cut_anywhere[:, 0] != vocab.bos).sum() > 16  # without alignment most windows do not

"""An endless stream of fresh samples, packed as `BOS x EOS BOS x' EOS …` into training windows.

The paper never repeats a string, so the stream samples forever. It is cut into chunks of
`chunk_strings` strings; chunk k is a pure function of (seed, worker, k), so the stream's whole
state is two integers (`StreamState`) and a resumed run reads exactly the tokens it would have.

Windows are consecutive pieces of the stream. With `aligned` (the training default) every window
starts at a string's BOS, and the string the window's end cuts is not continued in the next
window: generation and every evaluation start a string at position 0 after BOS, and windows cut
anywhere almost never show that (a mini string starts at position 0 in ~1 window of 35).
Measured on mini (benchmarks/RESULTS.md): unaligned training left a 2-layer model further from
the true distribution at position 0 than after a preceding string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cfglab.data.corrupt import corrupt_strings
from cfglab.data.vocab import Vocab
from cfglab.grammar.core import Grammar
from cfglab.grammar.sample import sample

VALIDATION_WORKER = -1  # the held-out stream: a worker id no training worker uses


@dataclass(frozen=True)
class NoiseConfig:
    fraction: float = 0.0  # share of training strings corrupted
    rate: float = 0.0  # per-token flip probability inside a corrupted string


@dataclass
class StreamState:
    chunk: int = 0  # index of the chunk the next window starts in
    position: int = 0  # offset of the next window inside that chunk's packed tokens


@dataclass
class Chunk:
    """One chunk packed for training: noisy tokens, clean tokens, and its strings' hashes."""

    tokens: np.ndarray  # (L,) int64 packed BOS x EOS …, with noise
    clean: np.ndarray  # (L,) int64 the same without noise (for probes and analyses)
    string_hashes: np.ndarray  # (n,) uint64 hashes of the (noisy) strings as trained on
    starts: np.ndarray  # (n,) where each string's BOS sits in `tokens`, increasing


@dataclass
class TokenStream:
    """Deterministic per (seed, worker); `state` can be saved and restored exactly."""

    grammar: Grammar
    seed: int
    worker: int = 0
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    holdout_rule: int | None = None  # drop every string with some parse using this rule index
    chunk_strings: int = 512
    aligned: bool = False  # batch(): every window starts at a BOS (see the module docstring)
    state: StreamState = field(default_factory=StreamState)

    def __post_init__(self) -> None:
        self.vocab = Vocab(len(self.grammar.terminals))
        self._cache: tuple[int, Chunk] | None = None
        self.seen_hashes: list[np.ndarray] = []  # hashes of strings of chunks entered so far

    def chunk(self, k: int) -> Chunk:
        if self._cache is None or self._cache[0] != k:
            self._cache = (
                k,
                make_chunk(
                    self.grammar,
                    self.seed,
                    self.worker,
                    k,
                    self.chunk_strings,
                    self.noise,
                    self.holdout_rule,
                ),
            )
        return self._cache[1]

    def take(self, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """The next n_tokens of the stream (noisy, clean), advancing the state."""
        noisy, clean = [], []
        while n_tokens > 0:
            c = self.chunk(self.state.chunk)
            if self.state.position == 0:
                self.seen_hashes.append(c.string_hashes)
            piece = slice(self.state.position, self.state.position + n_tokens)
            noisy.append(c.tokens[piece])
            clean.append(c.clean[piece])
            n_tokens -= len(noisy[-1])
            self.state.position += len(noisy[-1])
            if self.state.position >= len(c.tokens):
                self.state = StreamState(self.state.chunk + 1, 0)
        return np.concatenate(noisy), np.concatenate(clean)

    def skip_to_string_start(self) -> None:
        """Advance the state to the next BOS (the current position if it is one)."""
        starts = self.chunk(self.state.chunk).starts
        i = int(np.searchsorted(starts, self.state.position))
        if i < len(starts):
            self.state.position = int(starts[i])
        else:  # chunks start with a BOS
            self.state = StreamState(self.state.chunk + 1, 0)

    def batch(self, batch_size: int, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, clean_x), each (batch_size, context): consecutive windows of context+1 tokens."""
        if self.aligned:
            windows = []
            for _ in range(batch_size):
                self.skip_to_string_start()
                windows.append(self.take(context + 1))
            noisy = np.stack([w[0] for w in windows])
            clean = np.stack([w[1] for w in windows])
        else:
            noisy, clean = self.take(batch_size * (context + 1))
            noisy = noisy.reshape(batch_size, context + 1)
            clean = clean.reshape(batch_size, context + 1)
        return noisy[:, :-1], noisy[:, 1:], clean[:, :-1]


def make_chunk(
    grammar: Grammar,
    seed: int,
    worker: int,
    k: int,
    n_strings: int,
    noise: NoiseConfig,
    holdout_rule: int | None,
) -> Chunk:
    rng = np.random.default_rng(np.random.SeedSequence([seed, worker + 1, k]))
    s = sample(grammar, n_strings, rng)
    tokens, offsets = s.tokens, s.offsets
    if holdout_rule is not None:  # some parse uses the rule: cfglab.chart.rules says why
        from cfglab.chart.rules import samples_using

        tokens, offsets = _drop_strings(tokens, offsets, samples_using(grammar, s, holdout_rule))
    noisy = tokens
    if noise.fraction > 0 and noise.rate > 0:
        noisy, _ = corrupt_strings(
            tokens, offsets, noise.fraction, noise.rate, len(grammar.terminals), rng
        )
    vocab = Vocab(len(grammar.terminals))
    return Chunk(
        pack(noisy, offsets, vocab),
        pack(tokens, offsets, vocab),
        hash_strings(noisy, offsets),
        bos_positions(offsets),
    )


def pack(tokens: np.ndarray, offsets: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Concatenate strings as BOS x EOS BOS x' EOS … (int64, ready for torch)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    out = np.empty(len(tokens) + 2 * n, dtype=np.int64)
    starts = bos_positions(offsets)
    out[starts] = vocab.bos
    out[starts + lengths + 1] = vocab.eos
    body = np.ones(len(out), dtype=bool)
    body[starts] = False
    body[starts + lengths + 1] = False
    out[body] = tokens
    return out


def bos_positions(offsets: np.ndarray) -> np.ndarray:
    """Where each string's BOS lands in `pack`'s output (each earlier string adds BOS and EOS)."""
    return (offsets[:-1] + 2 * np.arange(len(offsets) - 1)).astype(np.int64)


def hash_strings(tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A 64-bit hash per string (vectorised polynomial hash; equal strings, equal hashes)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(tokens)) - offsets[:-1][owner]
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        terms = (tokens.astype(np.uint64) + np.uint64(1)) * _powers(int(lengths.max(initial=0)))[
            pos
        ]
        np.add.at(h, owner, terms)
        h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return h


def _powers(n: int) -> np.ndarray:
    """P**i mod 2**64 for i < n (uint64 arithmetic wraps, which is what a hash wants)."""
    with np.errstate(over="ignore"):
        return np.concatenate(
            [[1], np.cumprod(np.full(max(n - 1, 0), 1099511628211, dtype=np.uint64))]
        ).astype(np.uint64)


def _drop_strings(
    tokens: np.ndarray, offsets: np.ndarray, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    keep_token = np.repeat(~drop, np.diff(offsets))
    lengths = np.diff(offsets)[~drop]
    return tokens[keep_token], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def hash_token_strings(strings: list[np.ndarray] | list[list[int]]) -> np.ndarray:
    """Hashes of individual strings, comparable with `Chunk.string_hashes`."""
    arrays = [np.asarray(s, dtype=np.int64) for s in strings]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return hash_strings(flat, offsets)

"""Noise: flip tokens to a *different* terminal, the paper's corruption of strings and prompts."""

from __future__ import annotations

import numpy as np


def flip_tokens(
    tokens: np.ndarray, rate: float, n_terminals: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each token flips with probability `rate` to a uniformly chosen other terminal.

    Returns (corrupted copy, bool mask of flipped positions).
    """
    tokens = np.asarray(tokens)
    flipped = rng.random(tokens.shape) < rate
    if n_terminals < 2:
        return tokens.copy(), np.zeros(tokens.shape, dtype=bool)
    # adding 1..T-1 modulo T always lands on another terminal, uniformly
    shift = rng.integers(1, n_terminals, size=tokens.shape)
    out = np.where(flipped, (tokens + shift) % n_terminals, tokens).astype(tokens.dtype)
    return out, flipped


def corrupt_strings(
    tokens: np.ndarray,
    offsets: np.ndarray,
    fraction: float,
    rate: float,
    n_terminals: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt a `fraction` of the strings (concatenated with `offsets`), each token at `rate`.

    Returns (tokens, bool per string: chosen for corruption).
    """
    n = len(offsets) - 1
    chosen = rng.random(n) < fraction
    per_token = np.repeat(chosen, np.diff(offsets))
    flipped_all, _ = flip_tokens(tokens, rate, n_terminals, rng)
    return np.where(per_token, flipped_all, tokens).astype(tokens.dtype), chosen

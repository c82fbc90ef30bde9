"""A decoder's probabilities along given strings (teacher forcing), batched by length.

Each string x is fed as BOS x EOS. Rows of a batch are padded at the end with EOS; a causal
model's predictions at earlier positions never see the padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cfglab.data.vocab import Vocab


class Scorer(Protocol):
    """What teacher-forced scoring needs of a model: logits (B, T, V) first in its output."""

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def _batches(strings: Sequence[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Indices of strings, grouped by similar length (less padding)."""
    order = np.argsort([len(s) for s in strings], kind="stable")
    for lo in range(0, len(order), batch_size):
        yield order[lo : lo + batch_size]


def _inputs(
    strings: Sequence[np.ndarray], rows: np.ndarray, vocab: Vocab, device: str
) -> torch.Tensor:
    """(b, L + 2) BOS x EOS, padded with EOS, L the longest string of the batch."""
    longest = max(len(strings[i]) for i in rows)
    inp = np.full((len(rows), longest + 2), vocab.eos, dtype=np.int64)
    inp[:, 0] = vocab.bos
    for j, i in enumerate(rows):
        inp[j, 1 : 1 + len(strings[i])] = strings[i]
    return torch.as_tensor(inp, device=device)


@torch.no_grad()
def next_token_probs(
    model: Scorer,
    strings: Sequence[np.ndarray],
    vocab: Vocab,
    batch_size: int = 64,
    device: str = "cpu",
    stray: bool = False,
) -> list[np.ndarray]:
    """Per string, (len+1, 1+T): the model's p(EOS), p(t0..) after each prefix (full softmax).

    The columns follow the chart's next-token rows. `stray`: one more column, the mass the model
    puts on BOS and MASK (tokens the grammar never emits), so the rows sum to 1.
    """
    cols = [vocab.eos, *range(vocab.n_terminals)]
    out: list[np.ndarray] = [np.zeros(0)] * len(strings)
    for rows in _batches(strings, batch_size):
        inp = _inputs(strings, rows, vocab, device)[:, :-1]  # BOS x (padded): predicts x EOS
        full = F.softmax(model(inp)[0].float(), dim=-1).double()
        probs = full[:, :, cols]
        if stray:
            off = full[:, :, [vocab.bos, vocab.mask]].sum(dim=-1, keepdim=True)
            probs = torch.cat([probs, off], dim=-1)
        rows_np = probs.cpu().numpy()
        for j, i in enumerate(rows):
            out[i] = rows_np[j, : len(strings[i]) + 1]
    return out


@torch.no_grad()
def sequence_log_probs(
    model: Scorer,
    strings: Sequence[np.ndarray],
    vocab: Vocab,
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """(n,) log p_model(x EOS | BOS) at temperature 1 (natural log)."""
    out = np.zeros(len(strings), dtype=np.float64)
    for rows in _batches(strings, batch_size):
        inp = _inputs(strings, rows, vocab, device)
        logp = F.log_softmax(model(inp[:, :-1])[0].float(), dim=-1)
        token_logp = logp.gather(-1, inp[:, 1:, None])[:, :, 0].double()  # (b, L + 1)
        lengths = torch.as_tensor([len(strings[i]) + 1 for i in rows], device=inp.device)
        mask = torch.arange(inp.size(1) - 1, device=inp.device)[None, :] < lengths[:, None]
        out[rows] = torch.where(mask, token_logp, 0.0).sum(dim=1).cpu().numpy()
    return out

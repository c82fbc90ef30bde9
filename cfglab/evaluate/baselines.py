"""Reference "models" with the decoder interface: the grammar's truth, and uniform guessing.

`OracleModel` returns the chart's true next-token distribution (log-probabilities as logits), so
it generates exactly from the grammar: accuracy 1 and KL 0 by construction, the ceiling every
measurement is checked against. `UniformModel` spreads its mass evenly over EOS and the
terminals: the floor, whose KL can be computed by hand. Both run through the same evaluation code
as a trained GPT (forward, `init_cache`, `step`, and a cache that can drop finished rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cfglab.data.vocab import Vocab
from cfglab.evaluate.judge import Judge


@dataclass
class TokenCache:
    """A cache that keeps the tokens themselves (the reference models need nothing else)."""

    rows: list[list[int]]
    length: int = 0

    def select(self, keep: Tensor) -> TokenCache:
        kept = [r for r, k in zip(self.rows, keep.tolist()) if k]
        return TokenCache(kept, self.length)


class _Reference:
    """Forward/step plumbing shared by the reference models; subclasses give the distributions."""

    def __init__(self, n_terminals: int) -> None:
        self.vocab = Vocab(n_terminals)

    def next_rows(self, tokens: list[int]) -> np.ndarray:
        """(len(tokens), V) log-probabilities after each prefix of one token row."""
        raise NotImplementedError

    def __call__(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, None]:
        rows = [self.next_rows(r) for r in idx.tolist()]
        return torch.as_tensor(np.stack(rows), dtype=torch.float32, device=idx.device), None

    def init_cache(self, batch: int, capacity: int | None = None) -> TokenCache:
        return TokenCache([[] for _ in range(batch)])

    def step(self, idx_new: Tensor, cache: TokenCache) -> Tensor:
        n = idx_new.size(1)
        for row, new in zip(cache.rows, idx_new.tolist()):
            row.extend(new)
        cache.length += n
        rows = [self.next_rows(r)[-n:] for r in cache.rows]
        return torch.as_tensor(np.stack(rows), dtype=torch.float32, device=idx_new.device)

    def eval(self) -> _Reference:
        return self

    def _uniform_row(self) -> np.ndarray:
        """Even mass on EOS and the terminals; none on BOS and MASK."""
        v = self.vocab
        row = np.full(v.size, -np.inf)
        row[: v.n_terminals] = row[v.eos] = -np.log(v.n_terminals + 1)
        return row


class UniformModel(_Reference):
    """p(EOS) = p(t) = 1 / (T + 1) after every prefix."""

    def next_rows(self, tokens: list[int]) -> np.ndarray:
        return np.tile(self._uniform_row(), (len(tokens), 1))


class OracleModel(_Reference):
    """The grammar's true next-token distribution after each prefix (read from the chart).

    A row is read as BOS followed by terminals; after a prefix the grammar cannot continue (or
    after anything that is not a terminal) the oracle falls back to the uniform row, since the
    truth is undefined there.
    """

    def __init__(self, judge: Judge) -> None:
        super().__init__(judge.n_terminals)
        self.judge = judge

    def next_rows(self, tokens: list[int]) -> np.ndarray:
        v = self.vocab
        out = np.tile(self._uniform_row(), (len(tokens), 1))
        if not tokens or tokens[0] != v.bos:
            return out
        body = tokens[1:]
        m = next((i for i, t in enumerate(body) if t >= v.n_terminals), len(body))
        truth = self.judge.next_token(np.asarray(body[:m], dtype=np.int64))  # (m+1, 1+T)
        for j, p in enumerate(truth[: len(tokens)]):
            if p.sum() > 0:
                out[j] = self._as_logits(p)
        return out

    def _as_logits(self, p: np.ndarray) -> np.ndarray:
        v = self.vocab
        row = np.full(v.size, -np.inf)
        with np.errstate(divide="ignore"):
            row[v.eos] = np.log(p[0])
            row[: v.n_terminals] = np.log(p[1:])
        return row

"""The model vocabulary: the grammar's terminals, then BOS, EOS and MASK."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vocab:
    n_terminals: int  # terminals keep their grammar ids 0..T-1

    @property
    def bos(self) -> int:
        return self.n_terminals

    @property
    def eos(self) -> int:
        return self.n_terminals + 1

    @property
    def mask(self) -> int:
        return self.n_terminals + 2

    @property
    def size(self) -> int:
        return self.n_terminals + 3

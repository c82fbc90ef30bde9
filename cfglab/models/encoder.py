"""The encoder-only masked LM (BERT-style), for the paper's encoder-vs-decoder contrast.

It is the decoder's trunk with bidirectional attention (`mlm_pe`: abs or rel); the loss is taken
only where `mask_tokens` left a target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cfglab.models.config import ModelConfig
from cfglab.models.gpt import IGNORE_INDEX, Transformer

MASK_RATE = 0.15  # fraction of positions that get a target (BERT)
MASK_SPLIT = (0.8, 0.1, 0.1)  # of those: replaced by [MASK], by a random token, kept (BERT)


class MaskedLM(Transformer):
    """Bidirectional encoder: every position sees the whole window; logits for every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, causal=False)


def mask_tokens(
    idx: Tensor,
    mask_id: int,
    random_vocab: int,
    generator: torch.Generator | None = None,
    rate: float = MASK_RATE,
    maskable: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masking of idx (B, T) -> (inputs, targets), both (B, T).

    Each position (where `maskable`, default everywhere) is selected independently with
    probability `rate`; a selected one becomes `mask_id` with p 0.8, a token drawn uniformly from
    [0, random_vocab) with p 0.1 (it may equal the original, as in BERT), or stays with p 0.1.
    targets hold the original token at selected positions and -100 elsewhere.
    """

    def draw() -> Tensor:
        return torch.rand(idx.shape, generator=generator, device=idx.device)

    selected = draw() < rate
    if maskable is not None:
        selected &= maskable
    action = draw()
    p_mask, p_random, _ = MASK_SPLIT
    to_mask = selected & (action < p_mask)
    to_random = selected & (action >= p_mask) & (action < p_mask + p_random)
    random_ids = torch.randint(
        random_vocab, idx.shape, generator=generator, device=idx.device, dtype=idx.dtype
    )
    inputs = torch.where(to_mask, torch.full_like(idx, mask_id), idx)
    inputs = torch.where(to_random, random_ids, inputs)
    targets = torch.where(selected, idx, torch.full_like(idx, IGNORE_INDEX))
    return inputs, targets

"""The encoder-only contrast: one masked token, the model's guess against the grammar's truth.

For a fresh valid string x and one position i, the true conditional is
    p(x_i = t | the rest) ∝ p_true(x with x_i = t)      (inside probabilities from the chart)
over the T terminals. An mlm encoder reads BOS x EOS with x_i replaced by [MASK]; a decoder is put
on the same footing by scoring the T completed strings, p_model(x with x_i = t, EOS | BOS), and
normalising. Reported: masked-token accuracy (argmax = the original token), the Bayes ceiling
(the truth's own argmax = the original), the share of argmax fills that keep x valid, and the mean
KL(true ‖ model) with the KL's ε-smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from cfglab.data.vocab import Vocab
from cfglab.evaluate.generation import proportion
from cfglab.evaluate.judge import Judge
from cfglab.evaluate.kl import EPS, kl_rows

if TYPE_CHECKING:
    from torch import nn

    from cfglab.evaluate.context import EvalContext


def variants(string: np.ndarray, positions: np.ndarray, n_terminals: int) -> list[np.ndarray]:
    """For each position, the T strings with that token set to each terminal (position-major)."""
    out = []
    for i in positions:
        for t in range(n_terminals):
            v = string.copy()
            v[i] = t
            out.append(v)
    return out


def true_conditionals(judge: Judge, string: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(m, T) p(x_i = t | rest) from inside probabilities of the T variants."""
    logp = judge.log_prob(variants(string, positions, judge.n_terminals))
    return _normalise(logp.reshape(len(positions), judge.n_terminals))


def _normalise(logp: np.ndarray) -> np.ndarray:
    top = logp.max(axis=1, keepdims=True)
    p = np.exp(logp - top)
    return p / p.sum(axis=1, keepdims=True)


@torch.no_grad()
def encoder_conditionals(
    model: nn.Module,
    string: np.ndarray,
    positions: np.ndarray,
    vocab: Vocab,
    device: str = "cpu",
) -> np.ndarray:
    """(m, T) an encoder's distribution over terminals at each masked position (one per row)."""
    row = np.concatenate([[vocab.bos], string, [vocab.eos]]).astype(np.int64)
    inp = np.tile(row, (len(positions), 1))
    inp[np.arange(len(positions)), positions + 1] = vocab.mask
    logits = model(torch.as_tensor(inp, device=device))[0]  # (m, L + 2, V)
    rows = torch.arange(len(positions), device=logits.device)
    at = logits[rows, torch.as_tensor(positions + 1, device=logits.device)]  # (m, V)
    return F.softmax(at[:, : vocab.n_terminals].double(), dim=-1).cpu().numpy()


def decoder_conditionals(
    model: nn.Module,
    string: np.ndarray,
    positions: np.ndarray,
    vocab: Vocab,
    device: str = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """(m, T) a decoder's conditional: its probabilities of the T variants, normalised."""
    from cfglab.evaluate.scoring import sequence_log_probs

    logp = sequence_log_probs(
        model, variants(string, positions, vocab.n_terminals), vocab, batch_size, device
    )
    return _normalise(logp.reshape(len(positions), vocab.n_terminals))


def choose_positions(strings: Sequence[np.ndarray], per_string: int, seed: int) -> list[np.ndarray]:
    """Distinct random positions of each string (all of them when it is shorter), sorted."""
    rng = np.random.default_rng(seed)
    return [
        np.sort(rng.choice(len(s), size=min(per_string, len(s)), replace=False)) for s in strings
    ]


def masked_token(
    model: nn.Module,
    judge: Judge,
    strings: Sequence[np.ndarray],
    per_string: int,
    *,
    encoder: bool,
    seed: int,
    eps: float = EPS,
    device: str = "cpu",
) -> dict[str, Any]:
    """Masked-token figures over `per_string` random positions of each string."""
    vocab = Vocab(judge.n_terminals)
    hits = bayes = fills = total = 0
    kls: list[np.ndarray] = []
    for s, pos in zip(strings, choose_positions(strings, per_string, seed)):
        truth = true_conditionals(judge, s, pos)
        guess = (
            encoder_conditionals(model, s, pos, vocab, device)
            if encoder
            else decoder_conditionals(model, s, pos, vocab, device)
        )
        pick = guess.argmax(axis=1)
        hits += int((pick == s[pos]).sum())
        bayes += int((truth.argmax(axis=1) == s[pos]).sum())
        fills += int((truth[np.arange(len(pos)), pick] > 0).sum())
        total += len(pos)
        kls.append(kl_rows(truth, guess, eps))
    kl = np.concatenate(kls) if kls else np.zeros(0)
    return {
        "model": "encoder" if encoder else "decoder",
        "n_strings": len(strings),
        "n_positions": total,
        "accuracy": proportion(hits, total),
        "bayes_accuracy": proportion(bayes, total),
        "valid_fill": proportion(fills, total),
        "kl_mean": float(kl.mean()) if len(kl) else None,
        "eps": eps,
    }


def masked_for(
    ctx: EvalContext,
    n_strings: int,
    per_string: int,
    seed: int,
    eps: float = EPS,
) -> dict[str, Any]:
    from cfglab.evaluate.context import derive_seed, fresh_strings_counted, left_out

    limit = ctx.context_limit
    longest = None if limit is None else limit - (1 if ctx.is_decoder else 2)
    strings, too_long, drawn = fresh_strings_counted(
        ctx.grammar, n_strings, derive_seed(seed, "masked-strings"), max_length=longest
    )
    result = masked_token(
        ctx.model,
        ctx.judge,
        strings,
        per_string,
        encoder=not ctx.is_decoder,
        seed=derive_seed(seed, "masked-positions"),
        eps=eps,
        device=ctx.device,
    )
    return {
        **result,
        "seed": seed,
        "length_limited_to": longest,
        "left_out_too_long": left_out(too_long, drawn, limit),
    }

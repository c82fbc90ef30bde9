"""KL to the truth: along fresh valid strings, the grammar's next-token law against the model's.

The authors' convention: at every position of every string (after BOS and after each token,
up to and including the position where EOS is due), both distributions over {EOS} ∪ terminals get
ε = 1e-5 added and are renormalised; the figure is the mean over all positions of KL(true ‖ model).
The curve by position averages over the strings long enough to have that position.

Stray mass. The model also has BOS and MASK in its vocabulary, which the grammar never emits.
Their mass is kept as one more outcome (true probability 0) before smoothing, so a model that
leaks mass there pays for it in `mean` (about −log(1 − s) nats for a leak s), and `stray_mass`
reports the leak itself (mean and max over positions). `mean_support_only` is the KL with that
mass dropped before smoothing (cfglab's earlier figure), for comparison. Whether the paper's KL
ran over the model's whole vocabulary we could not confirm.

`official`: the authors' recipe as issue 20 reads their demo (PhysicsLM4, demo2_advanced_dp.py;
that file could not be read here, the recipe is the issue's reading of it): both rows restricted
to {EOS} ∪ terminals (no BOS/MASK column: the model's row is renormalised there by the
smoothing), ε added to both and renormalised, and the log-ratio weighted by the raw (unsmoothed)
true row, Σ_a p(a) (log p̃(a) − log q̃(a)), mean over positions. It differs from `mean` in the
weights (raw vs smoothed true row) and the stray column; at KL ~1e-4 that moves the digits.
The model's leak outside the grammar stays its own figure, `stray_mass`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.data.vocab import Vocab
from cfglab.evaluate.judge import Judge

if TYPE_CHECKING:
    from torch import nn

    from cfglab.evaluate.context import EvalContext

EPS = 1e-5


def smooth(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Add eps to every entry of each row and renormalise the row."""
    q = np.asarray(p, dtype=np.float64) + eps
    return q / q.sum(axis=-1, keepdims=True)


def kl_rows(p_true: np.ndarray, q_model: np.ndarray, eps: float = EPS) -> np.ndarray:
    """(rows,) KL(smooth(p) ‖ smooth(q)) in nats, row by row."""
    p, q = smooth(p_true, eps), smooth(q_model, eps)
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def kl_rows_official(p_true: np.ndarray, q_model: np.ndarray, eps: float = EPS) -> np.ndarray:
    """(rows,) Σ_a p(a) (log smooth(p)(a) − log smooth(q)(a)): weights from the raw true row."""
    p = np.asarray(p_true, dtype=np.float64)
    ratio = np.log(smooth(p, eps)) - np.log(smooth(q_model, eps))
    return (p * ratio).sum(axis=-1)


def kl_curves(
    truth: Sequence[np.ndarray], model: Sequence[np.ndarray], eps: float = EPS
) -> list[np.ndarray]:
    """Per string, the KL at each of its len+1 positions."""
    return [kl_rows(t, m, eps) for t, m in zip(truth, model)]


def summarise(curves: Sequence[np.ndarray], eps: float = EPS) -> dict[str, Any]:
    """Pooled mean over positions, per-string spread, and the mean curve by position."""
    if not curves:
        return {"n_strings": 0, "n_positions": 0, "mean": None, "by_position": [], "eps": eps}
    pooled = np.concatenate(curves)
    longest = max(len(c) for c in curves)
    total, count = np.zeros(longest), np.zeros(longest)
    for c in curves:
        total[: len(c)] += c
        count[: len(c)] += 1
    per_string = np.array([c.mean() for c in curves])
    return {
        "n_strings": len(curves),
        "n_positions": len(pooled),
        "mean": float(pooled.mean()),
        "max": float(pooled.max()),
        "per_string_mean_sd": [float(per_string.mean()), float(per_string.std())],
        "by_position": [round(float(x), 7) for x in total / count],
        "strings_at_position": count.astype(int).tolist(),
        "eps": eps,
    }


def kl_to_truth(
    model: nn.Module,
    judge: Judge,
    strings: Sequence[np.ndarray],
    *,
    eps: float = EPS,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """KL(true ‖ model) along the given valid strings (see the module docstring)."""
    from cfglab.evaluate.scoring import next_token_probs

    vocab = Vocab(judge.n_terminals)
    truth = judge.next_tokens(strings)
    rows = next_token_probs(model, strings, vocab, batch_size, device, stray=True)
    with_stray = [np.concatenate([t, np.zeros((len(t), 1))], axis=1) for t in truth]
    out = summarise(kl_curves(with_stray, rows, eps), eps)
    support = summarise(kl_curves(truth, [r[:, :-1] for r in rows], eps), eps)
    official = summarise([kl_rows_official(t, r[:, :-1], eps) for t, r in zip(truth, rows)], eps)
    leak = np.concatenate([r[:, -1] for r in rows]) if rows else np.zeros(0)
    return {
        **out,
        "mean_support_only": support["mean"],
        "official": {
            k: official[k] for k in ("mean", "max", "per_string_mean_sd", "n_positions", "eps")
        }
        | {"recipe": "authors' demo: ε on both rows over {EOS} ∪ T, raw true row as weights"},
        "stray_mass": {
            "mean": float(leak.mean()) if leak.size else None,
            "max": float(leak.max()) if leak.size else None,
            "tokens": "BOS, MASK",
        },
    }


def kl_report(
    run_dir: str,
    n_strings: int = 50,
    seed: int = 0,
    eps: float = EPS,
    batch_size: int = 64,
    threads: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """KL of a decoder run along n fresh strings, from plain arguments (a Ray task can call it)."""
    from cfglab.errors import CfglabError
    from cfglab.evaluate.context import open_run

    ctx = open_run(run_dir, threads, device)
    if not ctx.is_decoder:
        raise CfglabError(
            f"{run_dir}: next-token KL needs a decoder; an mlm run has "
            "cfglab.evaluate.mlm (KL of the masked-token conditional)"
        )
    return kl_for(ctx, n_strings, seed, eps, batch_size)


def kl_for(
    ctx: EvalContext,
    n_strings: int,
    seed: int,
    eps: float = EPS,
    batch_size: int = 64,
) -> dict[str, Any]:
    from cfglab.evaluate.context import derive_seed, fresh_strings_counted, left_out

    limit = ctx.context_limit
    strings, too_long, drawn = fresh_strings_counted(
        ctx.grammar,
        n_strings,
        derive_seed(seed, "kl"),
        max_length=None if limit is None else limit - 1,
    )
    result = kl_to_truth(
        ctx.model, ctx.judge, strings, eps=eps, batch_size=batch_size, device=ctx.device
    )
    return {
        **result,
        "seed": seed,
        "length_limited_to": None if limit is None else limit - 1,
        "left_out_too_long": left_out(too_long, drawn, limit),
    }

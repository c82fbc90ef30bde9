"""Diversity of generations: distinct fraction, a birthday-paradox bound on the support, and
the entropy gap between the model's and the grammar's probability of what the model generated.

Birthday bound. Let q = Σ_x p(x)² be the chance two independent generations coincide. Among N
generations the number of coinciding pairs has mean C(N, 2)·q, and q ≥ 1/|support| (Cauchy–
Schwarz), so |support| ≥ C(N, 2) / E[pairs]. With c pairs observed, a one-sided 95% Poisson upper
bound λ on E[pairs] gives the lower bound C(N, 2)/λ (c = 0: λ ≈ 3, the "N² / 6" rule). The
Poisson law of the pair count holds while collisions are rare (c ≲ N, flagged `rare_collisions`);
the distinct strings seen are a lower bound in every regime, and the larger of the two is reported.

Entropy gap. On the valid generations x, mean −log p_model(x EOS | BOS) against mean −log p_true(x)
(the chart's inside probability). A model that samples the grammar's own law has gap ≈ 0;
E_model[log p_model − log p_true] is KL(model ‖ true) when every generation is valid.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.data.vocab import Vocab
from cfglab.evaluate.judge import Judge

if TYPE_CHECKING:
    from torch import nn

_EXACT_POISSON = 1000  # largest pair count whose Poisson bound is computed exactly


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """λ with P(X ≤ k | Poisson(λ)) = 1 − confidence.

    Exact (bisection on the CDF, summed in log space) up to k = 1000; beyond, the
    Wilson–Hilferty cube-root approximation (relative error well under 1e-3 there).
    """
    target = 1.0 - confidence
    if k > _EXACT_POISSON:
        z = NormalDist().inv_cdf(confidence)
        m = k + 1
        return m * (1 - 1 / (9 * m) + z / (3 * math.sqrt(m))) ** 3

    def log_cdf(lam: float) -> float:
        terms = [-lam + i * math.log(lam) - math.lgamma(i + 1) for i in range(k + 1)]
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms))

    log_target = math.log(target)
    lo, hi = 1e-12, max(10.0, 4.0 * (k + 1))
    while log_cdf(hi) > log_target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_cdf(mid) > log_target else (lo, mid)
    return (lo + hi) / 2


def support_bounds(strings: Sequence[np.ndarray], confidence: float = 0.95) -> dict[str, Any]:
    """Distinct fraction, coinciding pairs, and the birthday lower bound on the support size."""
    n = len(strings)
    counts = Counter(np.asarray(s, dtype=np.int64).tobytes() for s in strings)
    pairs = n * (n - 1) // 2
    collisions = sum(c * (c - 1) // 2 for c in counts.values())
    birthday = pairs / poisson_upper(collisions, confidence) if pairs else 0.0
    lower = max(float(len(counts)), birthday)  # what was seen is in the support
    return {
        "n": n,
        "distinct": len(counts),
        "distinct_fraction": len(counts) / n if n else None,
        "colliding_pairs": collisions,
        "support_lower_bound": lower,
        "confidence": confidence,
        "rare_collisions": collisions <= n,  # the Poisson approximation's regime
        "support_point_estimate": pairs / collisions if collisions else None,
    }


def entropy_gap(
    model: nn.Module,
    judge: Judge,
    strings: Sequence[np.ndarray],
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """Mean −log p_model and −log p_true (nats) over the valid strings given."""
    from cfglab.evaluate.scoring import sequence_log_probs

    strings = [s for s in strings if len(s)]
    if not strings:
        return {"n": 0, "nll_model": None, "nll_true": None, "gap": None, "gap_per_token": None}
    true_lp = judge.log_prob(strings)
    ok = np.isfinite(true_lp)
    strings = [s for s, k in zip(strings, ok) if k]
    if not strings:
        return {"n": 0, "nll_model": None, "nll_true": None, "gap": None, "gap_per_token": None}
    model_lp = sequence_log_probs(model, strings, Vocab(judge.n_terminals), batch_size, device)
    tokens = sum(len(s) + 1 for s in strings)  # + EOS
    nll_model, nll_true = -model_lp.mean(), -true_lp[ok].mean()
    return {
        "n": len(strings),
        "nll_model": float(nll_model),
        "nll_true": float(nll_true),
        "gap": float(nll_model - nll_true),
        "gap_per_token": float((nll_model - nll_true) * len(strings) / tokens),
    }


def diversity_of(
    model: nn.Module,
    judge: Judge,
    strings: Sequence[np.ndarray],
    valid: np.ndarray,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """Support figures over all generations; the entropy gap over the valid ones."""
    all_valid = [s for s, v in zip(strings, valid) if v]
    return {
        "all": support_bounds(strings),
        "valid": support_bounds(all_valid),
        "entropy": entropy_gap(model, judge, all_valid, batch_size=batch_size, device=device),
    }

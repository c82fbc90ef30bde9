"""Diversity of generations (the paper's Result 2, in its generation section — section number
unconfirmed): the model's entropy beside the language's, a birthday-paradox bound on the
support, and the same per level of the tree.

H(model) against H(true). The paper sets the entropy of the model's distribution over generated
strings beside the true CFG's. H(model) = E_{x ~ model}[−log p_model(x EOS | BOS)] is estimated
from the model's own T = 1 cut0 samples and their log-probabilities (a mean with a 95% normal
interval); H(true) is the grammar's exact entropy (`cfglab.analysis.entropy`: exact H(trees),
minus a Monte Carlo E[H(tree | string)] for ambiguous grammars). Only generations that ended with
EOS enter H(model) (the others are counted in `unended`: their string is cut off, so they bias
the estimate slightly low when they are frequent). The paper's own estimator of H(model) is not
in the text we could read (we read a third-party reproduction's notes, not the paper itself), so
this unbiased plug-in is cfglab's.

Birthday bound. Let q = Σ_x p(x)² be the chance two independent generations coincide. Among N
generations the number of coinciding pairs has mean C(N, 2)·q, and q ≥ 1/|support| (Cauchy–
Schwarz), so |support| ≥ C(N, 2) / E[pairs]. With c pairs observed, a one-sided 95% Poisson upper
bound λ on E[pairs] gives the lower bound C(N, 2)/λ (c = 0: λ ≈ 3, the "N² / 6" rule). The
Poisson law of the pair count holds while collisions are rare (c ≲ N, flagged `rare_collisions`);
the distinct strings seen are a lower bound in every regime, and the larger of the two is reported.
The paper draws about 20k generations (support ≳ 10⁸, more than the model's parameters); N is set
by the evaluation's `diversity_n`.

Per level. The paper also reads diversity at the nonterminal levels: for each level l, the
sequence of level-l symbols of a valid generation's parse tree (its first tree, for an ambiguous
string) gets the same distinct fraction and birthday bound, beside those of as many fresh samples
of the grammar (their sampled trees); at most LEVEL_STRINGS generations are parsed for it. Which
statistic the paper plots per level we could not confirm; these are cfglab's.

Entropy gap (kept, beyond the paper). On the valid generations x, mean −log p_model(x) against
mean −log p_true(x): E_model[log p_model − log p_true] is KL(model ‖ true) when every generation
is valid.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import cache
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.data.vocab import Vocab
from cfglab.evaluate.judge import Judge
from cfglab.grammar.core import Grammar, Tree

if TYPE_CHECKING:
    from cfglab.evaluate.generation import Decoder

Z95 = 1.959963984540054
LEVEL_STRINGS = 1000  # per-level support reads at most this many valid generations (a parse each)

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
    model: Decoder,
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


def model_entropy(
    model: Decoder,
    vocab: Vocab,
    strings: Sequence[np.ndarray],
    ended: np.ndarray,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """H(model) in nats per string (and per token, EOS included) from T = 1 samples, 95% CI."""
    from cfglab.evaluate.scoring import sequence_log_probs

    kept = [s for s, e in zip(strings, ended) if e]
    out: dict[str, Any] = {"n": len(kept), "unended": len(strings) - len(kept)}
    if len(kept) < 2:
        return {**out, "h": None, "ci95": None, "per_token": None}
    nll = -sequence_log_probs(model, kept, vocab, batch_size, device)
    mean, half = float(nll.mean()), Z95 * float(nll.std(ddof=1)) / math.sqrt(len(nll))
    tokens = float(np.mean([len(s) + 1 for s in kept]))
    return {
        **out,
        "h": mean,
        "ci95": [mean - half, mean + half],
        "per_token": mean / tokens,
        "per_token_ci95": [(mean - half) / tokens, (mean + half) / tokens],
        "mean_tokens": tokens,
    }


def true_entropy(grammar: Grammar) -> dict[str, Any]:
    """The language's entropy (cfglab.analysis.entropy), computed once per grammar."""
    return _true_entropy(grammar)


@cache
def _true_entropy(grammar: Grammar) -> dict[str, Any]:
    from cfglab.analysis.entropy import entropy_report

    return entropy_report(grammar, n_strings=400, seed=0)


def entropies(model_h: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """H(model) beside H(true), and whether H(true) lies in H(model)'s interval."""
    h_true = truth.get("h_strings")
    per_tok = None if h_true is None else h_true / (truth["expected_length"] + 1)
    ci = model_h.get("ci95")
    return {
        "model": model_h,
        "true": {
            "h": h_true,
            "ci95": truth.get("h_strings_ci95"),
            "per_token": per_tok,  # with EOS, as the model's per-token figure
            "exact": truth.get("exact"),
            "h_trees": truth.get("h_trees"),
            "note": None if h_true is not None else unknown_h_reason(truth),
        },
        "ratio": model_h["h"] / h_true if model_h.get("h") is not None and h_true else None,
        "true_in_model_ci": None if ci is None or h_true is None else ci[0] <= h_true <= ci[1],
    }


def unknown_h_reason(truth: dict[str, Any]) -> str:
    """Why H(true) is missing, in words (the entropy report's own note where it has one)."""
    cond = truth.get("h_tree_given_string") or {}
    why = truth.get("note") or cond.get("note") or "E[H(tree | string)] not estimated"
    if truth.get("h_trees") is not None:  # H(strings) ≤ H(trees): the bound is still worth saying
        why += f"; H(trees) = {truth['h_trees']:.4g} nats bounds it above"
    return why


def level_sequences(tree: Tree, level: int) -> tuple[str, ...]:
    """The symbols of the tree's nodes at depth `level` (root = 0), left to right."""
    nodes = [tree]
    for _ in range(level):
        nodes = [c for n in nodes for c in (n.children or [n])]
    return tuple(n.symbol for n in nodes)


def level_diversity(
    judge: Judge, strings: Sequence[np.ndarray], valid: np.ndarray, n_reference: int, seed: int
) -> dict[str, Any] | None:
    """Per level: distinct fraction and birthday bound of the generations' level-l sequences,
    beside those of as many fresh samples (layered grammars only; None otherwise)."""
    from cfglab.grammar.sample import sample

    depth = judge.grammar.depth
    if depth is None or depth < 2:
        return None
    kept = [np.asarray(s) for s, v in zip(strings, valid) if v][:LEVEL_STRINGS]
    trees = [judge.chart.parse_trees(s, limit=1)[0] for s in kept]
    ref = sample(judge.grammar, max(min(n_reference, LEVEL_STRINGS), 1), seed)
    ref_trees = [ref.tree(i) for i in range(len(ref))]
    out = {}
    for level in range(1, depth):
        gen = [_ids(level_sequences(t, level)) for t in trees]
        truth = [_ids(level_sequences(t, level)) for t in ref_trees]
        out[str(level)] = {
            "generated": _short(support_bounds(gen)),
            "true": _short(support_bounds(truth)),
        }
    return out


def _ids(symbols: tuple[str, ...]) -> np.ndarray:
    return np.frombuffer("\x1f".join(symbols).encode(), dtype=np.uint8)


def _short(bounds: dict[str, Any]) -> dict[str, Any]:
    keep = ("n", "distinct", "distinct_fraction", "support_lower_bound")
    return {k: bounds[k] for k in keep}


def diversity_of(
    model: Decoder,
    judge: Judge,
    strings: Sequence[np.ndarray],
    valid: np.ndarray,
    *,
    ended: np.ndarray | None = None,
    temperature: float = 1.0,
    levels: bool = False,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Any]:
    """Support figures over all generations; the entropy gap over the valid ones; H(model)
    beside H(true) when the generations were drawn at T = 1; per-level support if asked."""
    all_valid = [s for s, v in zip(strings, valid) if v]
    out: dict[str, Any] = {
        "all": support_bounds(strings),
        "valid": support_bounds(all_valid),
        "entropy": entropy_gap(model, judge, all_valid, batch_size=batch_size, device=device),
        "h": None,
        "levels": None,
    }
    if temperature == 1.0 and ended is not None:
        vocab = Vocab(judge.n_terminals)
        h_model = model_entropy(model, vocab, strings, ended, batch_size=batch_size, device=device)
        out["h"] = entropies(h_model, true_entropy(judge.grammar))
    if levels:
        out["levels"] = level_diversity(judge, strings, valid, len(strings), seed)
    return out

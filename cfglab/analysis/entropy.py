"""The entropy of a grammar's language: nats per string and per token (the paper's H(true)).

The paper's Result 2 (Section 3, "generation diversity") sets the entropy of what a model
generates beside the entropy of the true CFG's distribution over strings. cfglab computes the
latter from the grammar itself (beyond the paper, which estimates it; the paper's own estimator
is not spelled out in the text we could read, so this is cfglab's definition):

Trees. With c_A the expected number of A-nodes in a sampled tree (c = e_start + Mᵀc, M[A, B] the
expected number of B children of one A), each rule r: A → α is used c_A·p_r times on average, and

    H(trees) = Σ_r c_A·p_r·(−log p_r),      E[length] = Σ_r c_A·p_r·(terminals in α),

exact (a linear solve; a triangular one for the paper's non-recursive grammars).

Strings. A string's probability sums its trees', so H(strings) = H(trees) − E_x[H(tree | x)]
(the chain rule: the tree determines the string). For an unambiguous grammar the second term is
0 and H(strings) is exact. For an ambiguous one, H(tree | x) is the exact entropy of the posterior
over x's parse trees, from the chart:

    H(tree | x) = log p(x) − E[log p(t) | x],   E[log p(t) | x] = d/dβ log Σ_t p(t)^β at β = 1,

the derivative taken by a central difference of the tilted inside value
(`Chart.log_inside(power=β)`; error ~1e-7 nats). Its mean over n sampled strings is a Monte
Carlo estimate with a 95% normal interval. Only the strings with two or more parses are charted,
so an unambiguous grammar costs a parse count. Sampling cannot prove a grammar unambiguous:
`exact` says that no sampled string was ambiguous, i.e. that H(strings) = H(trees) up to what n
strings can see.

Per token: H(strings) / E[length] (terminals) and / (E[length] + 1) (with EOS, the unit of a
model's per-token loss).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from cfglab.grammar.core import Grammar

if TYPE_CHECKING:
    from cfglab.chart.front import Chart

Z95 = 1.959963984540054
_STEP = 1e-4  # β step of the central difference
MAX_DENSE = 3_000  # nonterminals beyond this: no dense solve, entropy not computed


def expected_rule_uses(grammar: Grammar) -> np.ndarray | None:
    """(R,) expected number of uses of each rule in one sampled tree; None when infinite."""
    a = grammar.arrays
    n = a.n_nonterminals
    if n > MAX_DENSE:
        return None
    mean = np.zeros((n, n))
    for r in range(len(a.rule_lhs)):
        lhs = a.rule_lhs[r] - a.n_terminals
        for s in a.rule_rhs[r, : a.rule_len[r]]:
            if s >= a.n_terminals:
                mean[lhs, s - a.n_terminals] += a.rule_prob[r]
    start = np.zeros(n)
    start[a.start - a.n_terminals] = 1.0
    try:
        counts = np.linalg.solve(np.eye(n) - mean.T, start)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(counts)) or counts.min() < -1e-9:  # spectral radius >= 1
        return None
    return counts[a.rule_lhs - a.n_terminals] * a.rule_prob


def tree_entropy(grammar: Grammar) -> dict[str, float] | None:
    """Exact H(trees) (nats) and E[length] (terminals) from expected rule uses."""
    uses = expected_rule_uses(grammar)
    if uses is None:
        return None
    a = grammar.arrays
    terminals = np.array(
        [int(np.sum(a.rule_rhs[r, : a.rule_len[r]] < a.n_terminals)) for r in range(len(uses))]
    )
    prob = a.rule_prob
    # p·log p → 0 as p → 0: a rule whose probability underflows to 0 (weights 1e-300 beside
    # 1e300) adds nothing, rather than 0·inf = NaN.
    surprisal = -np.log(prob, out=np.zeros_like(prob), where=prob > 0)
    return {
        "h_trees": float(np.sum(uses * surprisal)),
        "expected_length": float(np.sum(uses * terminals)),
    }


def posterior_tree_entropy(chart: Chart, strings: list[np.ndarray]) -> np.ndarray:
    """(n,) exact H(tree | x) in nats of each (valid) string, from the tilted inside values."""
    if not strings:
        return np.zeros(0)
    lp = chart.log_inside(strings)
    up = chart.log_inside(strings, power=1 + _STEP)
    down = chart.log_inside(strings, power=1 - _STEP)
    mean_log_tree = (up - down) / (2 * _STEP)
    return np.maximum(lp - mean_log_tree, 0.0)


def entropy_report(
    grammar: Grammar,
    n_strings: int = 200,
    seed: int = 0,
    conditional: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """H(trees), E[length], and H(strings) with its 95% interval (see the module docstring).

    `conditional`: an H(tree | string) summary already computed on sampled strings (the
    ambiguity analysis makes one); otherwise n_strings are sampled with `seed` and charted.
    """
    exact = tree_entropy(grammar)
    if exact is None:
        return {"note": "expected rule counts are infinite or too large to solve"}
    h_trees, length = exact["h_trees"], exact["expected_length"]
    if not (math.isfinite(h_trees) and math.isfinite(length) and length > 0):
        return {
            "note": f"not computed: H(trees) = {h_trees:.4g} and E[length] = {length:.4g} "
            "(the rule weights are too extreme for float arithmetic; scale them toward 1)"
        }
    cond = conditional if conditional is not None else sampled_conditional(grammar, n_strings, seed)
    out: dict[str, Any] = {"h_trees": h_trees, "expected_length": length}
    out["h_tree_given_string"] = cond
    if cond.get("mean") is None:  # not estimable: H(trees) bounds H(strings) from above
        return {**out, "h_strings": None, "exact": False}
    h = h_trees - cond["mean"]
    lo, hi = h_trees - cond["ci95"][1], h_trees - cond["ci95"][0]
    return {
        **out,
        "h_strings": h,
        "h_strings_ci95": [lo, hi],
        "exact": cond["ambiguous"] == 0,
        "per_token": h / length,
        "per_token_with_eos": h / (length + 1),
        "per_token_ci95": [lo / length, hi / length],
    }


def conditional_entropy(
    chart: Chart, strings: list[np.ndarray], counts: list[int]
) -> dict[str, Any]:
    """Monte Carlo mean of H(tree | x) over sampled strings (with their parse counts), 95% CI."""
    ambiguous = [s for s, c in zip(strings, counts) if c > 1]
    values = np.zeros(len(strings))
    values[: len(ambiguous)] = posterior_tree_entropy(chart, ambiguous)
    n = len(values)
    mean = float(values.mean()) if n else None
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return {
        "n_strings": n,
        "ambiguous": len(ambiguous),
        "mean": mean,
        "ci95": None if mean is None else [max(0.0, mean - half), mean + half],
        "max": float(values.max()) if n else None,
    }


def sampled_conditional(grammar: Grammar, n_strings: int, seed: int) -> dict[str, Any]:
    """`conditional_entropy` over n strings sampled with `seed` (none for recursive grammars)."""
    from cfglab.chart.front import Chart
    from cfglab.chart.general import InfiniteParsesError
    from cfglab.errors import CfglabError
    from cfglab.grammar.sample import sample

    chart = Chart(grammar)
    if chart.recursive:  # its chart is O(n³) and bounded in length: sampling would be biased
        return {"n_strings": 0, "mean": None, "note": "recursive grammar: not estimated"}
    try:
        strings = sample(grammar, n_strings, np.random.default_rng(seed)).strings()
        counts = chart.count_parses(strings)
    except (CfglabError, InfiniteParsesError) as err:
        return {"n_strings": 0, "mean": None, "note": str(err)}
    return conditional_entropy(chart, strings, counts)

"""Probe ceilings: the Bayes accuracy of an ideal reader of the string, exact from the chart.

Beyond the paper (which reports probe accuracies without a ceiling): on an ambiguous grammar
(cfg3f: about a third of the strings have several parse trees) no reader of x can always
recover the sampled tree's labels. Under the PCFG, the sampled tree given x is distributed as
the posterior over parse trees, so the reader that answers argmax_A P(s_l(i) = A | x) is right
with probability max_A P(s_l(i) = A | x) at each position; its expected accuracy on the probe's
held-out strings is the ceiling of any probe of the same target and the same positions:

  ancestor            Σ_i max_A P(s_l(i) = A | ·) / P(i has a level-l ancestor | ·), over the
                      positions the probe scores
  ancestor_at_end     Σ_i max_A P(s_l(i) = A, b_l(i) = 1 | ·) / Σ_i P(b_l(i) = 1 | ·): the reader
  (and the local        that knows i ends a level-l node, as the NT-end probes are trained only
  NT-end probes)        there (a ratio of expectations: its estimate of that reader's accuracy)
  boundary            Σ_i max(P(b_l(i) = 1 | ·), P(b_l(i) = 0 | ·)), same positions
  terminal            Σ_i max_h P(t(i) = h | ·), t(i) the hidden terminal of token i in an
                      implicit grammar (1 with disjoint bags; overlapping bags make it ambiguous)

with "·" the whole string x (`ceiling`) or x[:i+1] (`prefix_ceiling`, every valid completion
weighed in). The 95% intervals treat strings as clusters, like the probes' own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfglab.interpret.probe_data import ProbeData, ProbeScores, ratio_ci


def no_ceiling_reason(grammar: Any, kind: str) -> str | None:
    """Why the exact ceilings cannot be computed for these targets, or None when they can."""
    from cfglab.interpret.targets import LEVELS

    if grammar.levels is None:
        return (
            "not computed: the grammar is recursive, and the chart's posterior over ancestors "
            "is by tree depth, which a recursive grammar does not bound"
        )
    if kind != LEVELS:
        return (
            "not computed: the chart's posterior is by depth from the root, and these targets "
            "are by height (↑h), which it does not give"
        )
    return None


def ceilings(samples: Any, data: ProbeData, prefix: bool) -> ProbeScores | None:
    """Ceilings of every target on the held-out strings; None where `no_ceiling_reason` says."""
    from cfglab.chart.front import Chart
    from cfglab.interpret.targets import target_kind

    if no_ceiling_reason(samples.grammar, target_kind(samples.grammar)) is not None:
        return None
    chart = Chart(samples.grammar)
    test = range(data.n_train, len(samples))
    posts = chart.posteriors([samples.string(i) for i in test], prefix=prefix)
    grammar = samples.grammar
    hidden = [grammar.nonterminals.index(h) for h in grammar.hidden]
    G, n = len(data.targets), len(test)
    num = np.zeros((2, G, n))  # rows: all positions, NT-ends
    den = np.zeros((2, G, n))
    for k, (i, post) in enumerate(zip(test, posts)):
        lo, hi = int(samples.offsets[i]), int(samples.offsets[i + 1])
        if post is None:  # cannot happen for sampled strings; leave the string out
            continue
        for g, t in enumerate(data.targets):
            labelled = data.labels[g, lo:hi] >= 0
            if t.kind == "terminal":
                # P(t(i) = h | x): h's node over token i sits at one depth in each parse
                p = post.ancestors[:, :, hidden][:, labelled].sum(axis=0)
                best = p.max(axis=1) / np.maximum(p.sum(axis=1), 1e-300)
                num[0, g, k] = num[1, g, k] = best.sum()
                den[0, g, k] = den[1, g, k] = labelled.sum()
                continue
            anc = post.ancestors[t.level][labelled]
            reach = anc.sum(axis=1)
            ok = reach > 0
            if t.kind == "ancestor":
                num[0, g, k] = (anc.max(axis=1)[ok] / reach[ok]).sum()
                ends = post.ends[t.level]
                num[1, g, k] = ends.max(axis=1).sum()
                den[1, g, k] = ends.sum()
            else:
                b = post.boundaries[t.level][labelled]
                num[0, g, k] = (np.maximum(b, reach - b)[ok] / reach[ok]).sum()
            den[0, g, k] = labelled.sum()
    acc = np.full((2, G), np.nan)
    ci = np.full((2, G), np.nan)
    for row in range(2):
        for g in range(G):
            acc[row, g], ci[row, g] = ratio_ci(num[row, g], den[row, g])
    return ProbeScores(acc[0], acc[1], acc[1].copy(), acc[1].copy(), ci[0], ci[1])

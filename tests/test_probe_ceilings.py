"""Probe ceilings (interpret/ceilings.py) and the probe scopes: a probe given the true posterior
reaches the ceiling, noise stays at the majority, the prefix scope never sees later tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cfglab.chart.front import Chart
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample
from cfglab.interpret.ceilings import ceilings
from cfglab.interpret.probe_data import majority_scores, make_probe_data
from cfglab.interpret.probe_fit import LocalProbes, MultiHeadProbe, ProbeSettings, fit_probes

ROOT = Path(__file__).resolve().parents[1]
FAST = ProbeSettings(heads=2, pos_dim=8, epochs=8, batch=16, lr=3e-2)


def _grammar(name: str):
    return load_grammar(ROOT / "grammars" / f"{name}.cfg")


def test_cfg3b_whole_string_ceiling_is_one_and_the_prefix_ceiling_is_not() -> None:
    g = _grammar("cfg3b")
    s = sample(g, 40, 4)
    data = make_probe_data(s, 20)
    whole, prefix = ceilings(s, data, False), ceilings(s, data, True)
    assert whole is not None and prefix is not None
    anc = [k for k, t in enumerate(data.targets) if t.kind == "ancestor"]
    assert np.allclose(whole.all, 1.0) and np.allclose(whole.at_end[anc], 1.0)
    assert (prefix.all < 1 - 1e-3).any()  # later tokens decide some labels
    assert np.all(prefix.all <= whole.all + 1e-12)


def test_ambiguous_mini_has_ceilings_below_one() -> None:
    g = _grammar("mini")
    s = sample(g, 200, 1)
    data = make_probe_data(s, 100)
    whole = ceilings(s, data, False)
    assert whole is not None
    anc = [k for k, t in enumerate(data.targets) if t.kind == "ancestor"]
    assert (whole.all[anc] < 0.999).any() and (whole.all[anc] > 0.5).all()


def _posterior_features(s, data) -> torch.Tensor:
    """Each token's whole-string posterior of every target (ancestor rows and P(end) per level)."""
    posts = Chart(s.grammar).posteriors(s.strings())
    rows = []
    for post in posts:
        n = post.ancestors.shape[1]
        rows.append(
            np.concatenate(
                [post.ancestors.transpose(1, 0, 2).reshape(n, -1), post.boundaries.T], axis=1
            )
        )
    return torch.tensor(np.concatenate(rows), dtype=torch.float32)


def test_a_model_carrying_the_true_posterior_reaches_the_ceiling() -> None:
    g = _grammar("mini")
    s = sample(g, 600, 2)
    data = make_probe_data(s, 400)
    feats = _posterior_features(s, data)
    anc = [k for k, t in enumerate(data.targets) if t.kind == "ancestor"]
    got = fit_probes(feats, data, FAST, causal=False, diagonal=anc)
    ceiling = ceilings(s, data, False)
    assert ceiling is not None and got.all_ci is not None
    for k in range(len(data.targets)):
        # at the ceiling within the sampling noise of the held-out strings, never far above it
        assert abs(got.all[k] - ceiling.all[k]) <= max(got.all_ci[k], 0.01) + 0.01, k
    assert (ceiling.all[anc] < 0.999).any()  # the test is about an ambiguous grammar


def test_noise_stays_at_the_majority_baseline_in_both_scopes() -> None:
    g = _grammar("mini")
    s = sample(g, 300, 3)
    data = make_probe_data(s, 200)
    noise = torch.randn(len(data.tokens), 6, generator=torch.Generator().manual_seed(0))
    base = majority_scores(data)
    for causal in (False, True):
        got = fit_probes(noise, data, FAST, causal=causal)
        assert got.all_ci is not None
        # never above the majority; below it only by what fitting noise on 200 strings costs,
        # within the held-out strings' 95% interval (seed 0, target 0: 0.05 below, ci 0.08)
        assert np.all(got.all < base.all + 0.03), (causal, got.all, base.all)
        slack = np.maximum(np.nan_to_num(got.all_ci), 0.03)
        assert np.all(got.all > base.all - slack), (causal, got.all, base.all)


@pytest.mark.parametrize("j", [0, 5, 11])
def test_the_prefix_scope_never_sees_later_tokens(j: int) -> None:
    """Change every hidden state after position j: the prefix-scope probes' outputs at positions
    ≤ j stay the same (multi-head and local), the whole-string ones change."""
    torch.manual_seed(0)
    B, T, C = 3, 12, 5
    x = torch.randn(B, T, C)
    y = x.clone()
    y[:, j + 1 :] = torch.randn(B, T - j - 1, C)
    mask = torch.ones(B, T, dtype=torch.bool)
    for causal in (True, False):
        probe = MultiHeadProbe(C, [3, 2], heads=2, pos_dim=4, max_len=T, causal=causal)
        local = LocalProbes(C, [3], [0], causal=causal, heads=2, pos_dim=4, max_len=T)
        with torch.no_grad():
            a = [o[:, : j + 1] for o in probe(x, mask)] + [o[:, : j + 1] for o in local(x, mask)[1]]
            b = [o[:, : j + 1] for o in probe(y, mask)] + [o[:, : j + 1] for o in local(y, mask)[1]]
        same = all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a, b))
        if causal:
            assert same
        elif j < T - 1:
            assert not same

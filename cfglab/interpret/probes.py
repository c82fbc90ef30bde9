"""Multi-head linear probes: is the parse tree linearly readable from a layer's hidden states?

The paper's probe (Allen-Zhu & Li, Part 1, §4; `cfglab.interpret.probe_fit`) on hidden states E_k
of one layer, G_i = Σ_r Σ_k w_{r,i→k} f_r(E_k), with k over the **whole string** by default, for
a GPT as for an encoder (the paper's equation; `scope: whole`). `scope: prefix` restricts k ≤ i:
a different question, beyond the paper, named as such in probe.json, the table and the plots.
Targets per tree level l (level l is the paper's NT{l+1}; `cfglab.grammar.levels`): the ancestor
s_l(i) and the NT-end bit b_l(i). A grammar whose nonterminals do not each sit at one depth
(recursive, or reached at several depths) is keyed by height instead, ↑h the h-th nonterminal
above the token, h ≤ 6 (`cfglab.interpret.targets`); probe.json's `targets` says which. On an
implicit grammar (Result 10) one more target, the hidden
terminal t(i) of each token (the bag it was drawn from), under the metric `terminal`:
{"all": multi-head probe, "diagonal": the local probe f(E_i), "tridiagonal": |k − i| ≤ 1}, every
position being the end of its terminal; in a layered grammar it equals ancestor level L.

Scores, on held-out strings (with 95% intervals, strings as clusters: `*_ci95`):
  ancestor             multi-head probe for s_l(i), all positions
  ancestor_at_end      the same probe scored where b_l(i) = 1
  diagonal_at_end      the local probe G_i = f(E_i) (δ = 0), trained and scored at NT-ends
  tridiagonal_at_end   the multi-head probe with k restricted to |k − i| ≤ 1, at NT-ends
  boundary             multi-head probe for b_l(i), all positions
Ceilings (beyond the paper: exact, from the chart's posterior on the same held-out strings;
`cfglab.interpret.ceilings`), the same for every layer:
  ceiling              Bayes accuracy of the ideal reader of the whole string (1 on an
                       unambiguous grammar such as cfg3b)
  prefix_ceiling       Bayes accuracy of the ideal reader of the tokens up to i
                       (both null for a recursive grammar or height targets, with the reason
                       in `ceiling_reason`)
Controls (a probe is only as good as what it beats; all beyond the paper except GPT_rand):
  untrained            the same probes on an untrained model of the same architecture (GPT_rand)
  majority             the most frequent training label of each target
  control              Hewitt & Liang's control task (random label per n-gram type);
                       selectivity = real − control accuracy
  output_only          the probes on the model's next-token log-probabilities alone
  output_tokens        token identity ⊕ the model's next-token log-probs (what the output says)
  true_output_tokens   token identity ⊕ the chart's true next-token rows (the best any output
                       could say), log(p + 1e-5)
For an encoder (mlm) the "next-token" log-probs are its output distribution at each unmasked
position, which is not a next-token prediction; read its output baselines accordingly.

Everything runs from plain arguments (`probe_run(run_dir, ...)`), so a sweep can ship it as a
Ray task; this module never imports Ray.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter, ValidationError
from torch import Tensor

from cfglab.errors import CfglabError
from cfglab.interpret.probe_data import (
    PROBE_STREAM,
    ProbeData,
    ProbeScores,
    Target,
    control_labels,
    dropped_note,
    majority_scores,
    make_probe_data,
    probe_strings,
    probe_strings_counted,
)
from cfglab.interpret.probe_fit import (
    OPTIMIZERS,
    SCOPES,
    ProbeSettings,
    fit_probes,
    probe_steps,
)
from cfglab.interpret.targets import NOTES, target_view
from cfglab.interpret.targets import names as target_names
from cfglab.threads import set_threads

if TYPE_CHECKING:
    from cfglab.grammar.core import Grammar
    from cfglab.models.gpt import Transformer

__all__ = [
    "PROBE_STREAM",
    "ProbeData",
    "ProbeScores",
    "ProbeSettings",
    "Target",
    "control_labels",
    "fit_probes",
    "majority_scores",
    "make_probe_data",
    "model_features",
    "probe_run",
    "probe_settings",
    "probe_strings",
]

METRICS = ("ancestor", "ancestor_at_end", "diagonal_at_end", "tridiagonal_at_end", "boundary")
BASELINES = ("output_only", "output_tokens", "true_output_tokens")


# --- features from a model ---------------------------------------------------------------------


@torch.no_grad()
def model_features(
    model: Transformer,
    tokens: np.ndarray,
    offsets: np.ndarray,
    n_terminals: int,
    layer: int | None,
    batch: int = 32,
    device: str = "cpu",
) -> Tensor:
    """(total, C) hidden states of `layer` at each string token, fed as [BOS] x [EOS].

    layer 0 is the embedding output, layer l the residual stream after block l; None gives the
    next-token log-probabilities instead (the output-only baseline). Decoders batch strings
    padded after EOS (a causal model never sees the padding); a bidirectional model would, so it
    only batches strings of equal length.
    """
    from cfglab.data.vocab import Vocab

    vocab = Vocab(n_terminals)
    lengths = np.diff(offsets)
    out: Tensor | None = None
    for group in _model_groups(lengths, batch, exact=not getattr(model, "causal", True)):
        T = int(lengths[group].max())
        idx = np.full((len(group), T + 2), vocab.eos, dtype=np.int64)
        idx[:, 0] = vocab.bos
        pos = np.arange(T)[None, :]
        valid = pos < lengths[group][:, None]
        idx[:, 1 : T + 1][valid] = tokens[(offsets[group][:, None] + pos)[valid]]
        x = torch.from_numpy(idx).to(device)
        h = (
            model.forward_hidden(x)[layer]
            if layer is not None
            else F.log_softmax(model(x)[0].float(), dim=-1)
        )
        h = h[:, 1 : T + 1].float().cpu()
        if out is None:
            out = torch.empty(len(tokens), h.size(-1))
        flat = torch.from_numpy((offsets[group][:, None] + pos)[valid])
        out[flat] = h[torch.from_numpy(valid)]
    assert out is not None
    return out


def _model_groups(lengths: np.ndarray, batch: int, exact: bool) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    if not exact:
        return [order[i : i + batch] for i in range(0, len(order), batch)]
    groups = []
    for n in np.unique(lengths):
        same = order[lengths[order] == n]
        groups += [same[i : i + batch] for i in range(0, len(same), batch)]
    return groups


# --- one run -----------------------------------------------------------------------------------


def probe_run(
    run_dir: str,
    layers: Sequence[int] | None = None,
    n_strings: int = ProbeSettings.n_train,
    n_test: int = ProbeSettings.n_test,
    seed: int = 0,
    threads: int = 1,
    quiet: bool = True,
    step: int | None = None,
    device: str = "cpu",
    controls: bool = True,
    plots: bool = True,
    settings: dict[str, Any] | None = None,
    scope: str | None = None,
) -> dict[str, Any]:
    """Probe a run's layers (default: all, 0 = embeddings) beside ceilings and every control.

    `scope` is "whole" (the paper's probe, default) or "prefix"; `settings` sets any
    ProbeSettings field (heads, pos_dim, steps, val_strings, patience, ...). Writes
    RUN_DIR/probe/probe.json (and probe.png with `plots`) and returns the same dict.
    `controls=False` skips the untrained model, the control task and the output baselines.
    """
    from cfglab.progress import work_progress
    from cfglab.runs import load_run, untrained_model

    set_threads(threads)
    given = {**(settings or {}), "n_train": n_strings, "n_test": n_test, "seed": seed}
    if scope is not None:
        given["scope"] = scope
    cfg = probe_settings(given)
    started = time.perf_counter()
    loaded = load_run(run_dir, step=step, device=device)
    model, grammar, config = loaded.model, loaded.grammar, loaded.config
    n_layers = config.layers
    layers = list(range(n_layers + 1)) if layers is None else sorted(set(layers))
    if not layers or any(not 0 <= l <= n_layers for l in layers):
        raise CfglabError(f"probe: layers must lie in 0..{n_layers} (0 = embeddings), got {layers}")
    samples, dropped, drawn = probe_strings_counted(
        grammar, cfg.n_train + cfg.n_test, config.context, seed
    )
    samples, kind = target_view(samples)
    data = make_probe_data(samples, cfg.n_train)
    control = control_labels(data, cfg.control_ngram, seed) if controls else None
    # the targets that also get the local (diagonal, tridiagonal) probes
    ancestors = [g for g, t in enumerate(data.targets) if t.kind in ("ancestor", "terminal")]
    causal = cfg.scope == "prefix"
    T = len(grammar.terminals)
    rand = untrained_model(config, T, seed=seed + 1).to(device) if controls else None

    n_fit = cfg.n_train - min(cfg.val_strings, cfg.n_train // 2)
    steps_per_fit = probe_steps(cfg, math.ceil(n_fit / cfg.batch))
    fits = (3 if controls else 1) * len(layers) + (len(BASELINES) if controls else 0)
    result = _header(loaded, cfg, data, layers, dropped, config.pe == "mlm", kind)
    result["strings"].update(drawn=drawn, dropped_note=dropped_note(dropped, drawn, config.context))
    result["positions"] = _positions(data)
    result.update(_ceilings(samples, data, kind))
    per_layer = []
    with work_progress("probe", steps_per_fit * fits, quiet) as advance:

        def fit(
            features: Tensor, labels: np.ndarray | None = None, diag: Sequence[int] = ancestors
        ) -> ProbeScores:
            return fit_probes(features.to(device), data, cfg, causal, labels, diag, advance)

        for layer in layers:
            t0 = time.perf_counter()
            feats = model_features(model, data.tokens, data.offsets, T, layer, device=device)
            scores = fit(feats)
            result["trained"][str(layer)] = _by_metric(data, scores)
            result["curves"][str(layer)] = scores.curve
            if rand is not None:
                ctrl = _by_metric(data, fit(feats, control, ()))
                result["control"][str(layer)] = _pick(ctrl, ("ancestor", "boundary"))
                result["selectivity"][str(layer)] = _difference(result["trained"][str(layer)], ctrl)
                rfeats = model_features(rand, data.tokens, data.offsets, T, layer, device=device)
                result["untrained"][str(layer)] = _by_metric(data, fit(rfeats))
            per_layer.append(round(time.perf_counter() - t0, 2))
        if controls:
            for name, feats in _output_features(model, grammar, data, device).items():
                result[name] = _by_metric(data, fit(feats))
    result["majority"] = _by_metric(data, majority_scores(data))
    result["seconds"] = {
        "total": round(time.perf_counter() - started, 2),
        "per_layer": dict(zip(map(str, layers), per_layer)),
    }
    _write(Path(run_dir), result, plots)
    return result


def probe_settings(given: dict[str, Any]) -> ProbeSettings:
    """ProbeSettings from a plain dict (a sweep file's `settings`), every field checked."""
    known = set(ProbeSettings.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise CfglabError(
            f"probe settings: unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    try:  # types checked by pydantic (a YAML list of betas becomes the tuple)
        cfg = TypeAdapter(ProbeSettings).validate_python(given)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise CfglabError(f"probe settings: {bad}") from None
    if cfg.scope not in SCOPES:
        raise CfglabError(f"probe scope: {cfg.scope!r} is not one of {', '.join(SCOPES)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise CfglabError(
            f"probe settings: optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}"
        )
    if not all(0.0 <= b < 1.0 for b in cfg.betas) or cfg.weight_decay < 0:
        raise CfglabError(
            f"probe settings: betas must lie in [0, 1) and weight_decay ≥ 0, "
            f"got betas {list(cfg.betas)}, weight_decay {cfg.weight_decay}"
        )
    return cfg


def _output_features(
    model: Transformer, grammar: Grammar, data: ProbeData, device: str
) -> dict[str, Tensor]:
    """The output-only baselines' features, one row per string token."""
    from cfglab.chart.front import Chart

    T = len(grammar.terminals)
    logp = model_features(model, data.tokens, data.offsets, T, None, device=device)
    tokens = F.one_hot(torch.from_numpy(data.tokens.astype(np.int64)), T).float()
    strings = np.split(data.tokens, data.offsets[1:-1])
    rows = Chart(grammar).next_token_batch(strings)  # row k: P(token k | tokens[:k])
    true_next = np.concatenate([r[1:] for r in rows])  # after token i: row i + 1
    true_feats = torch.from_numpy(np.log(true_next + 1e-5)).float()
    return {
        "output_only": logp,
        "output_tokens": torch.cat([tokens, logp], dim=1),
        "true_output_tokens": torch.cat([tokens, true_feats], dim=1),
    }


def _ceilings(samples: Any, data: ProbeData, kind: str) -> dict[str, Any]:
    from cfglab.interpret.ceilings import ceilings, no_ceiling_reason

    out: dict[str, Any] = {"ceiling_reason": no_ceiling_reason(samples.grammar, kind)}
    for key, prefix in (("ceiling", False), ("prefix_ceiling", True)):
        scores = ceilings(samples, data, prefix)
        out[key] = None if scores is None else _by_metric(data, scores)
    return out


def _header(
    loaded: Any,
    cfg: ProbeSettings,
    data: ProbeData,
    layers: list[int],
    dropped: int,
    mlm: bool,
    kind: str,
) -> dict[str, Any]:
    lengths = np.diff(data.offsets)
    levels: dict[str, list[int]] = {"ancestor": [], "boundary": []}
    classes: dict[str, dict[str, int]] = {"ancestor": {}, "boundary": {}}
    tree = [t for t in data.targets if t.kind != "terminal"]
    for t in tree:
        levels[t.kind].append(t.level)
        classes[t.kind][str(t.level)] = t.classes
    all_levels = sorted({t.level for t in tree})
    hidden = loaded.grammar.hidden
    return {
        "run": str(Path(loaded.run.path).resolve()),
        "step": loaded.step,
        "pe": loaded.config.pe,
        "bidirectional": mlm,
        "scope": cfg.scope,
        "probe": _probe_name(cfg.scope),
        "settings": asdict(cfg),
        "control_task": f"random labels per {cfg.control_ngram}-gram type ending at the token "
        "(Hewitt & Liang), drawn from each target's label distribution",
        "strings": {
            "train": cfg.n_train,
            "test": cfg.n_test,
            "dropped_too_long": dropped,
            "mean_length": round(float(lengths.mean()), 1),
        },
        "layers": layers,
        "targets": kind,
        "targets_note": NOTES[kind],
        "levels": levels,
        "level_names": target_names(kind, all_levels),
        "classes": classes,
        # Result 10: the hidden-terminal target (metric `terminal`), null for an ordinary
        # grammar or where the probe strings use a single terminal
        "hidden_terminal": {"classes": len(hidden), "hidden": list(hidden)}
        if any(t.kind == "terminal" for t in data.targets)
        else None,
        "ceiling_note": "ceiling / prefix_ceiling: Bayes accuracy of the ideal reader of the "
        "whole string / of the tokens up to i, exact from the grammar's posterior on the same "
        "held-out strings (the same for every layer); null where `ceiling_reason` says why",
        "trained": {},
        "untrained": {},
        "control": {},
        "selectivity": {},
        "curves": {},
        "output_only": None,
        "output_tokens": None,
        "true_output_tokens": None,
        "majority": None,
    }


def _positions(data: ProbeData) -> dict[str, dict[str, int]]:
    """Held-out positions each score averages over: a deep target may have only a handful."""
    split = data.train_tokens
    out: dict[str, dict[str, int]] = {"ancestor": {}, "ancestor_at_end": {}, "boundary": {}}
    for g, t in enumerate(data.targets):
        labelled = data.labels[g, split:] >= 0
        out.setdefault(t.kind, {})[str(t.level)] = int(labelled.sum())  # "terminal" too
        if t.kind == "ancestor":
            out["ancestor_at_end"][str(t.level)] = int((labelled & data.ends[g, split:]).sum())
    return out


def _probe_name(scope: str) -> str:
    if scope == "prefix":
        return "prefix probe: Σ over k ≤ i (beyond the paper)"
    return "whole-string probe: Σ over every k of the string (the paper's, §4)"


def _by_metric(data: ProbeData, s: ProbeScores) -> dict[str, dict[str, float | None]]:
    """{metric: {level: accuracy}} (and {metric_ci95: {level: half-width}}), nulls where a score
    does not apply."""
    keys = (*METRICS, "ancestor_ci95", "ancestor_at_end_ci95", "boundary_ci95")
    out: dict[str, dict[str, float | None]] = {m: {} for m in keys}
    nan = np.full(len(data.targets), np.nan)
    tri = nan if s.tridiagonal is None else s.tridiagonal
    all_ci = nan if s.all_ci is None else s.all_ci
    end_ci = nan if s.at_end_ci is None else s.at_end_ci
    for g, t in enumerate(data.targets):
        lv = str(t.level)
        if t.kind == "terminal":  # one target, no level: keyed by score instead
            out["terminal"] = {
                "all": _num(s.all[g]),
                "diagonal": _num(s.diagonal[g]),
                "tridiagonal": _num(tri[g]),
            }
            out["terminal_ci95"] = {"all": _num(all_ci[g])}
        elif t.kind == "boundary":
            out["boundary"][lv] = _num(s.all[g])
            out["boundary_ci95"][lv] = _num(all_ci[g])
        else:
            out["ancestor"][lv] = _num(s.all[g])
            out["ancestor_ci95"][lv] = _num(all_ci[g])
            out["ancestor_at_end"][lv] = _num(s.at_end[g])
            out["ancestor_at_end_ci95"][lv] = _num(end_ci[g])
            out["diagonal_at_end"][lv] = _num(s.diagonal[g])
            out["tridiagonal_at_end"][lv] = _num(tri[g])
    return out


def _num(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def _pick(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: d[k] for k in keys}


def _difference(
    real: dict[str, dict[str, float | None]], control: dict[str, dict[str, float | None]]
) -> dict[str, dict[str, float | None]]:
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 4)

    return {
        m: {lv: diff(a, control[m].get(lv)) for lv, a in real[m].items()}
        for m in ("ancestor", "boundary")
    }


def _write(run_dir: Path, result: dict[str, Any], plots: bool) -> None:
    from cfglab.runs import write_atomic

    out = run_dir / "probe"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "probe.json", json.dumps(result, indent=1).encode())
    if plots:
        from cfglab.interpret.plots import plot_probe

        result["plots"] = [str(plot_probe(result, out / "probe.png"))]
        write_atomic(out / "probe.json", json.dumps(result, indent=1).encode())

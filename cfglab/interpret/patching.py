"""Activation patching judged by the exact chart: does the model use what its residual stream holds?

A pair is two valid prefixes of equal length k, a base p and a donor p′, whose true next-token rows
(the chart's, `Judge.next_tokens`) differ by a total variation of at least `min_tv`. Both are fed
as BOS p (positions 0..k; token t sits at position t + 1). At one layer and one set of positions
the base run's residual stream is replaced by the donor's, and the next-token distribution q at
the last position (k) is read.

Layers: 0 is the embedding output (`hook_embed`, before block 1), l ≥ 1 the residual stream after
block l (`blocks.{l-1}.hook_resid_post`), as in `cfglab probe`.

Position sets (masks over positions 0..k, per pair):
  all           every position: at layer 0 this *is* the donor's run
  last          position k only
  nt_end_l{d}   positions whose token ends a depth-d nonterminal in the base's or the donor's
                sampled tree (the union: the base's own summaries there would otherwise remain).
                The labels are those of the sampled string the prefix was cut from; the prefix
                alone may admit other trees (cfglab's choice, beside the paper)
  {name}_random the control: per pair, as many positions as `{name}` has, holding the last
                position exactly when `{name}` does (the last position alone restores much
                after layer 1) and the others drawn uniformly from 0..k−1; for `last` itself,
                one position drawn from 0..k−1

Measures, per (layer, positions), over the N pairs:
  restored          1 − Σ KL(q ‖ m(p′)) / Σ KL(m(p) ‖ m(p′)), KL in nats over the model's whole
                    vocabulary, sums over pairs: how far q moved from the model's output on the
                    base toward its output on the donor. 0 = no effect (q = m(p)), 1 = all the way
                    (q = m(p′)); it can leave [0, 1] (past the donor, or away from both). A ratio
                    of sums, not a mean of ratios: pairs the model hardly tells apart would
                    otherwise dominate with noise
  ci95              a percentile bootstrap of `restored` over pairs (1000 resamples)
  kl_to_base_truth  mean KL(true row after p ‖ q), the authors' KL convention of
                    `cfglab.evaluate.kl` (ε = 1e-5, BOS and MASK kept as a stray outcome)
  kl_to_donor_truth the same against the true row after p′
The exact columns are what samples cannot give: a patched model can move toward the donor's
*output* without moving toward the donor's *language*. `reference` gives both columns for the
unpatched runs (q = m(p), q = m(p′)). The untrained twin (the run's architecture, freshly
initialised; `cfglab.runs.untrained_model`) gets the same pairs.

`patch_run` adds the subtree swap of cfglab.interpret.subtree under "subtree" (trained and
untrained). Pairs run in batches; a full patch still reproduces the donor's run bit for bit.

Beyond the paper: Part 1 has no interventions; this follows the activation-patching literature,
judged with the chart. Decoders only (an encoder has no next-token distribution).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError

BOOTSTRAP = 1000  # resamples of the pairs for ci95
MIN_TV = 0.5  # pairs: total variation between the two true next-token rows, at least this


def hook_name(layer: int) -> str:
    """The hook point holding the residual stream of `layer` (0 = embeddings)."""
    return "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


@dataclass
class Pairs:
    """N pairs of equal-length prefixes as model inputs, with their truth and NT-end labels."""

    base: np.ndarray  # (N, T) int64 BOS p, padded with EOS after position k
    donor: np.ndarray  # (N, T) int64 BOS p′, padded likewise
    last: np.ndarray  # (N,) k: the last position (the prefix length)
    base_truth: np.ndarray  # (N, 1+T_terminals) the chart's row after p
    donor_truth: np.ndarray  # (N, 1+T_terminals) the chart's row after p′
    nt_ends: np.ndarray  # (D, N, T) bool: position ends a depth-d NT in the base's or donor's tree

    def __len__(self) -> int:
        return len(self.last)

    def position_sets(self, seed: int) -> dict[str, np.ndarray]:
        """Every named position set as an (N, T) mask, random controls included."""
        pos = np.arange(self.base.shape[1])[None, :]
        inside = pos <= self.last[:, None]
        sets = {"all": inside, "last": pos == self.last[:, None]}
        for d, ends in enumerate(self.nt_ends):
            if ends.any():
                sets[f"nt_end_l{d}"] = ends & inside
        rng = np.random.default_rng(seed)
        for name in [n for n in sets if n != "all"]:
            sets[f"{name}_random"] = _random_like(sets[name], self.last, rng, name != "last")
        return sets


def _random_like(
    mask: np.ndarray, last: np.ndarray, rng: np.random.Generator, keep_last: bool = True
) -> np.ndarray:
    """Random positions, as many per row as `mask` has, the last one where `mask` has it."""
    out = np.zeros_like(mask)
    for n, k in enumerate(last):
        at_last = keep_last and bool(mask[n, k])
        count = min(int(mask[n].sum()) - int(at_last), int(k))
        out[n, rng.choice(int(k), size=count, replace=False)] = True
        out[n, k] = at_last
    return out


def make_pairs(
    samples: Any,
    truth: Sequence[np.ndarray],
    n_pairs: int,
    seed: int,
    min_tv: float = MIN_TV,
    max_tokens: int | None = None,
) -> Pairs:
    """Draw pairs (i, j, k) from sampled strings until n_pairs have rows at least min_tv apart.

    `truth[i]` is string i's (len+1, 1+T) chart rows; `max_tokens` bounds BOS p (abs models)."""
    rng = np.random.default_rng(seed)
    lengths = samples.lengths
    chosen: list[tuple[int, int, int]] = []
    for _ in range(50 * n_pairs):
        if len(chosen) == n_pairs:
            break
        i, j = rng.choice(len(lengths), size=2, replace=False)
        top = min(lengths[i], lengths[j], max_tokens - 1 if max_tokens else lengths[i])
        if top < 1:
            continue
        k = int(rng.integers(1, top + 1))
        if 0.5 * np.abs(truth[i][k] - truth[j][k]).sum() >= min_tv:
            chosen.append((int(i), int(j), k))
    if len(chosen) < 2:
        raise CfglabError(
            f"patch: found {len(chosen)} prefix pairs whose true next-token rows differ by a "
            f"total variation >= {min_tv}; lower --min-tv or use a grammar with more choice"
        )
    return _assemble(samples, truth, chosen)


def _assemble(
    samples: Any, truth: Sequence[np.ndarray], chosen: list[tuple[int, int, int]]
) -> Pairs:
    vocab = Vocab(len(samples.grammar.terminals))
    N, T = len(chosen), max(k for _, _, k in chosen) + 1
    base = np.full((N, T), vocab.eos, dtype=np.int64)
    donor = base.copy()
    base[:, 0] = donor[:, 0] = vocab.bos
    ends = np.zeros((samples.depth, N, T), dtype=bool)
    for n, (i, j, k) in enumerate(chosen):
        for row, s in ((base, i), (donor, j)):
            lo = samples.offsets[s]
            row[n, 1 : k + 1] = samples.tokens[lo : lo + k]
            ends[:, n, 1 : k + 1] |= samples.boundaries[:, lo : lo + k]
    return Pairs(
        base=base,
        donor=donor,
        last=np.array([k for _, _, k in chosen], dtype=np.int64),
        base_truth=np.stack([truth[i][k] for i, _, k in chosen]),
        donor_truth=np.stack([truth[j][k] for _, j, k in chosen]),
        nt_ends=ends,
    )


# --- the intervention --------------------------------------------------------------------------


@torch.no_grad()
def residual(model: nn.Module, idx: Tensor, layer: int) -> Tensor:
    """(B, T, C) the residual stream of `layer` on inputs idx."""
    from cfglab.models.hooks import capture

    with capture(model, [hook_name(layer)]) as seen:
        model(idx)
    return seen[hook_name(layer)]


@torch.no_grad()
def patched_logits(
    model: nn.Module, base: Tensor, layer: int, mask: Tensor, donor_stream: Tensor
) -> Tensor:
    """(B, T, V) logits of the base run with the residual stream of `layer` replaced by
    `donor_stream` where mask (B, T) is true."""

    def swap(_m: nn.Module, _i: object, out: Tensor) -> Tensor:
        return torch.where(mask[..., None], donor_stream.to(out.dtype), out)

    handle = model.get_submodule(hook_name(layer)).register_forward_hook(swap)
    try:
        return model(base)[0]
    finally:
        handle.remove()


def restored(q: np.ndarray, m_base: np.ndarray, m_donor: np.ndarray) -> float:
    """1 − Σ KL(q ‖ m_donor) / Σ KL(m_base ‖ m_donor) over rows (N, V) of probabilities."""
    den = _kl(m_base, m_donor).sum()
    return float("nan") if den <= 0 else float(1.0 - _kl(q, m_donor).sum() / den)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N,) KL(p ‖ q) in nats, rows of full-vocabulary softmaxes (strictly positive)."""
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def _bootstrap(q: np.ndarray, b: np.ndarray, d: np.ndarray, seed: int) -> list[float | None]:
    num, den = _kl(q, d), _kl(b, d)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(num), size=(BOOTSTRAP, len(num)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = 1.0 - num[draws].sum(axis=1) / den[draws].sum(axis=1)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return [None, None]
    return [round(float(x), 4) for x in np.percentile(ratios, [2.5, 97.5])]


def _last_probs(logits: Tensor, last: Tensor) -> np.ndarray:
    rows = logits[torch.arange(len(last)), last].double()
    return F.softmax(rows, dim=-1).cpu().numpy()


def _truth_kl(truth: np.ndarray, q: np.ndarray, vocab: Vocab) -> float:
    """Mean KL(true ‖ q), q with BOS and MASK folded into one stray outcome (cfglab.evaluate.kl)."""
    from cfglab.evaluate.kl import kl_rows

    cols = [vocab.eos, *range(vocab.n_terminals)]
    model = np.concatenate([q[:, cols], q[:, [vocab.bos, vocab.mask]].sum(1, keepdims=True)], 1)
    true = np.concatenate([truth, np.zeros((len(truth), 1))], axis=1)
    return round(float(kl_rows(true, model).mean()), 5)


def patch_model(
    model: nn.Module,
    pairs: Pairs,
    layers: Sequence[int],
    sets: dict[str, np.ndarray],
    vocab: Vocab,
    seed: int = 0,
    device: str = "cpu",
    batch: int = 64,
) -> dict[str, Any]:
    """Every (layer, position set) patch of one model: {"results": [...], "reference": {...}}.

    Pairs run `batch` at a time; a patched run and the donor run it copies from share the batch's
    shape, so a full patch reproduces the donor's output bit for bit."""
    chunks = [slice(lo, lo + batch) for lo in range(0, len(pairs), batch)]
    m_base = _probs(model, pairs.base, pairs.last, chunks, device)
    m_donor = _probs(model, pairs.donor, pairs.last, chunks, device)
    results = []
    for layer in layers:
        streams = [residual(model, _on(pairs.donor[c], device), layer) for c in chunks]
        for name, mask in sets.items():
            q = _patched_probs(model, pairs, layer, mask, chunks, streams, device)
            results.append(_row(layer, name, q, m_base, m_donor, pairs, mask, vocab, seed))
    reference: dict[str, Any] = {
        who: {
            "kl_to_base_truth": _truth_kl(pairs.base_truth, rows, vocab),
            "kl_to_donor_truth": _truth_kl(pairs.donor_truth, rows, vocab),
        }
        for who, rows in (("base", m_base), ("donor", m_donor))
    }
    reference["kl_model_base_to_donor"] = round(float(_kl(m_base, m_donor).mean()), 5)
    return {"results": results, "reference": reference}


def _on(a: np.ndarray, device: str) -> Tensor:
    return torch.as_tensor(a, device=device)


@torch.no_grad()
def _probs(
    model: nn.Module, inputs: np.ndarray, last: np.ndarray, chunks: list[slice], device: str
) -> np.ndarray:
    """(N, V) the unpatched next-token distributions at each pair's last position."""
    return np.concatenate(
        [_last_probs(model(_on(inputs[c], device))[0], _on(last[c], device)) for c in chunks]
    )


def _patched_probs(
    model: nn.Module,
    pairs: Pairs,
    layer: int,
    mask: np.ndarray,
    chunks: list[slice],
    streams: list[Tensor],
    device: str,
) -> np.ndarray:
    out = []
    for c, stream in zip(chunks, streams):
        base, where = _on(pairs.base[c], device), _on(mask[c], device)
        out.append(
            _last_probs(
                patched_logits(model, base, layer, where, stream), _on(pairs.last[c], device)
            )
        )
    return np.concatenate(out)


def _row(
    layer: int,
    name: str,
    q: np.ndarray,
    m_base: np.ndarray,
    m_donor: np.ndarray,
    pairs: Pairs,
    mask: np.ndarray,
    vocab: Vocab,
    seed: int,
) -> dict[str, Any]:
    r = restored(q, m_base, m_donor)
    return {
        "layer": layer,
        "positions": name,
        "restored": None if np.isnan(r) else round(r, 4),
        "ci95": _bootstrap(q, m_base, m_donor, seed),
        "kl_to_base_truth": _truth_kl(pairs.base_truth, q, vocab),
        "kl_to_donor_truth": _truth_kl(pairs.donor_truth, q, vocab),
        "mean_positions": round(float(mask.sum(axis=1).mean()), 2),
    }


# --- one run -----------------------------------------------------------------------------------


def patch_run(
    run_dir: str,
    n_pairs: int = 200,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    min_tv: float = MIN_TV,
    threads: int = 1,
    step: int | None = None,
    device: str = "cpu",
    controls: bool = True,
    plots: bool = True,
    subtree: bool = True,
) -> dict[str, Any]:
    """Patch a decoder run at every layer × position set; writes RUN_DIR/patch/patch.json (and
    patch.png with `plots`) and returns the same dict. Plain arguments: a Ray task can call it.
    `subtree`: also the subtree swap (cfglab.interpret.subtree), under "subtree"."""
    from cfglab.evaluate.context import derive_seed, open_run
    from cfglab.grammar.sample import sample
    from cfglab.runs import untrained_model

    ctx = open_run(run_dir, threads, device, step)
    if not ctx.is_decoder:
        raise CfglabError(
            f"{run_dir}: patching reads next-token distributions; an mlm run has none"
        )
    L = ctx.config.layers
    layers = list(range(L + 1)) if layers is None else sorted(set(layers))
    if not layers or any(not 0 <= l <= L for l in layers):
        raise CfglabError(f"patch: layers must lie in 0..{L} (0 = embeddings), got {layers}")
    samples = sample(ctx.grammar, max(4 * n_pairs, 64), derive_seed(seed, "patch"))
    truth = ctx.judge.next_tokens(samples.strings())
    pairs = make_pairs(
        samples, truth, n_pairs, derive_seed(seed, "pairs"), min_tv, ctx.context_limit
    )
    sets = pairs.position_sets(derive_seed(seed, "random positions"))
    vocab = ctx.vocab
    result: dict[str, Any] = {
        "run": str(ctx.run_dir),
        "step": ctx.step,
        "pe": ctx.config.pe,
        "pairs": len(pairs),
        "asked_pairs": n_pairs,
        "min_tv": min_tv,
        "seed": seed,
        "mean_prefix_length": round(float(pairs.last.mean()), 2),
        "layers": layers,
        "restored_definition": "1 - sum KL(q || m(donor)) / sum KL(m(base) || m(donor)), "
        "nats over the model's vocabulary, sums over pairs",
        **patch_model(ctx.model, pairs, layers, sets, vocab, seed, ctx.device),
    }
    models = {"trained": ctx.model}
    if controls:
        twin = untrained_model(ctx.config, vocab.n_terminals, seed=seed + 1).to(ctx.device)
        models["untrained"] = twin
        result["untrained"] = patch_model(twin, pairs, layers, sets, vocab, seed, ctx.device)
    else:
        result["untrained"] = {}
    if subtree:
        _subtree(result, models, samples, ctx, layers, seed)
    _write(Path(run_dir), result, plots)
    return result


def _subtree(
    result: dict[str, Any],
    models: dict[str, nn.Module],
    samples: Any,
    ctx: Any,
    layers: list[int],
    seed: int,
) -> None:
    from cfglab.evaluate.context import derive_seed
    from cfglab.interpret.subtree import make_swaps, subtree_experiment

    swaps = make_swaps(
        samples, ctx.judge, result["pairs"], derive_seed(seed, "swaps"), ctx.context_limit
    )
    for family, model in models.items():
        target = result if family == "trained" else result["untrained"]
        if swaps is None:
            target["subtree"] = None
            continue
        random_kl = target["reference"]["kl_model_base_to_donor"]
        target["subtree"] = subtree_experiment(model, swaps, layers, seed, ctx.device, random_kl)


def _write(run_dir: Path, result: dict[str, Any], plots: bool) -> None:
    from cfglab.runs import write_atomic

    out = run_dir / "patch"
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from cfglab.interpret.patch_plots import plot_patch

        result["plots"] = [str(plot_patch(result, out / "patch.png"))]
    write_atomic(out / "patch.json", json.dumps(result, indent=1).encode())

"""Residual streams with their parse-tree labels, as safetensors: what an SAE trainer or any probing
library reads, with no cfglab code.

    OUT/layer_{l}.safetensors, one per asked layer (0 = embeddings, l = after block l), each
    self-contained (every tensor aligned on the first axis, one row per string token):

      resid           (n_tokens, d)      float32  the residual stream at the token's position
      token           (n_tokens,)        int64    terminal id (`terminals` in the metadata)
      string          (n_tokens,)        int64    index of the string in `cfglab sample
                                                  GRAMMAR -n N --seed SEED --json`'s output
      position        (n_tokens,)        int64    index of the token in its string (the model
                                                  saw it at position + 1, after BOS)
      ancestors       (n_tokens, depth)  int64    nonterminal id (`nonterminals`) of the token's
                                                  depth-d ancestor, -1 where none
      nt_end          (n_tokens, depth)  bool     the token ends its depth-d ancestor (b_d(i))
      b_sharp         (n_tokens,)        int64    the most ancestral depth at which it ends one
                                                  (-1: none)
      ancestor_index  (n_tokens, depth)  int64    p_d(i): which depth-d node of the string

    Metadata (safetensors' str → str header, JSON where structured): run, step, pe, layer, hook,
    grammar, terminals, nonterminals, seed, n_strings, dropped (strings too long for an abs
    model's context, by index; they are absent from every tensor).

The strings are `cfglab.grammar.sample.sample(grammar, n, seed)`, the very draw `cfglab sample`
makes, fed as BOS x EOS (hidden states as `cfglab probe` reads them: no final LayerNorm).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cfglab.errors import CfglabError


def write_activations(
    run_dir: str | Path,
    out_dir: str | Path,
    n: int,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    step: int | None = None,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 32,
) -> dict[str, Any]:
    """Write one safetensors file per layer (see the module docstring); returns a summary."""
    from safetensors.torch import save_file

    from cfglab.evaluate.context import open_run
    from cfglab.grammar.sample import sample
    from cfglab.interpret.probes import model_features

    ctx = open_run(run_dir, threads, device, step)
    L = ctx.config.layers
    layers = list(range(L + 1)) if layers is None else sorted(set(layers))
    if not layers or any(not 0 <= l <= L for l in layers):
        raise CfglabError(f"activations: layers must lie in 0..{L} (0 = embeddings), got {layers}")
    samples = sample(ctx.grammar, n, seed)
    limit = ctx.context_limit
    keep = np.flatnonzero(samples.lengths + 2 <= limit) if limit else np.arange(n)
    if not len(keep):
        raise CfglabError(
            f"activations: none of the {n} strings fits the model's context of {limit} tokens "
            "with BOS and EOS"
        )
    labels = _labels(samples, keep)
    offsets = np.concatenate([[0], np.cumsum(samples.lengths[keep])]).astype(np.int64)
    T = len(ctx.grammar.terminals)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = _metadata(ctx, samples, seed, n, sorted(set(range(n)) - set(keep.tolist())))
    files = []
    for layer in layers:
        resid = model_features(
            ctx.model, labels["token"].numpy(), offsets, T, layer, batch, ctx.device
        )
        tensors = {"resid": resid.float().contiguous(), **labels}
        path = out / f"layer_{layer}.safetensors"
        hook = "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"
        save_file(tensors, str(path), metadata={**meta, "layer": str(layer), "hook": hook})
        files.append(str(path))
    return {
        "out_dir": str(out.resolve()),
        "files": files,
        "layers": layers,
        "n_strings": len(keep),
        "n_tokens": int(offsets[-1]),
        "dropped": json.loads(meta["dropped"]),
        "d_model": int(ctx.config.dim),
    }


def _labels(samples: Any, keep: np.ndarray) -> dict[str, Any]:
    """The per-token label tensors of the kept strings, concatenated in string order."""
    import torch

    idx = np.concatenate(
        [np.arange(samples.offsets[i], samples.offsets[i + 1]) for i in keep] or [np.zeros(0, int)]
    ).astype(np.int64)
    string = np.repeat(keep, samples.lengths[keep]).astype(np.int64)
    position = idx - samples.offsets[string]
    cols = {
        "token": samples.tokens[idx],
        "string": string,
        "position": position,
        "ancestors": samples.ancestors[:, idx].T,
        "nt_end": samples.boundaries[:, idx].T,
        "b_sharp": samples.b_sharp[idx],
        "ancestor_index": samples.ancestor_index[:, idx].T,
    }
    return {
        k: torch.from_numpy(np.ascontiguousarray(v if v.dtype == bool else v.astype(np.int64)))
        for k, v in cols.items()
    }


def _metadata(ctx: Any, samples: Any, seed: int, n: int, dropped: list[int]) -> dict[str, str]:
    g = ctx.grammar
    return {
        "format": "cfglab-activations",
        "run": str(ctx.run_dir),
        "step": str(ctx.step),
        "pe": str(ctx.config.pe),
        "grammar": str(ctx.config.grammar),
        "terminals": json.dumps(list(g.terminals)),
        "nonterminals": json.dumps(list(g.nonterminals)),
        "depth": str(samples.depth),
        "seed": str(seed),
        "n_strings": str(n),
        "dropped": json.dumps(dropped),
    }

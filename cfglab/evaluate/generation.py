"""Generation accuracy the paper's way: sample completions with a KV cache, let the chart judge.

cut0 generates from BOS, cutK from BOS and the first K tokens of a fresh valid string. A
generation is correct iff the model emits EOS within the length cap and prefix + completion is
in the language. A model is anything with the decoder interface below (a trained GPT, or the
oracle and uniform models of `baselines`), so the same code measures all of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.evaluate.judge import Judge

Z95 = 1.959963984540054  # two-sided 95% normal quantile
_COMPACT_BELOW = 0.5  # drop finished rows from the batch once fewer than this share is live


class Decoder(Protocol):
    """What generation needs from a model (cfglab.models.GPT has it)."""

    def init_cache(self, batch: int, capacity: int | None = None) -> Any: ...

    def step(self, idx_new: Tensor, cache: Any) -> Tensor:  # (B, Tn) -> logits (B, Tn, V)
        ...

    def __call__(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:  # logits (B, T, V)
        ...


# --- statistics --------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends: rounding leaves ~1e-17
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def proportion(k: int, n: int) -> dict[str, Any]:
    """A rate with its count, trials and 95% Wilson interval, as eval.json stores it."""
    lo, hi = wilson(int(k), int(n))
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "ci95": [lo, hi]}


# --- sampling ----------------------------------------------------------------------------------


@dataclass
class Generations:
    """Completions of a batch of prompts (all prompts of one call have the same length)."""

    completions: list[np.ndarray]  # terminals sampled after the prompt (the stop token excluded)
    ended: np.ndarray  # (n,) bool: stopped with EOS within the cap
    stray: np.ndarray  # (n,) bool: stopped on a token that is neither a terminal nor EOS
    sampled: int  # tokens drawn for live rows (the tokens/s numerator)
    seconds: float


@torch.no_grad()
def generate(
    model: Decoder,
    prompts: np.ndarray,
    vocab: Vocab,
    max_new: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    use_cache: bool = True,
    device: str = "cpu",
) -> Generations:
    """Sample up to max_new tokens after each prompt row (n, P) of model tokens (BOS first).

    With use_cache=False every step re-runs the whole sequence; the random draws are the same,
    so both paths give the same tokens (the test of the cache).
    """
    if max_new < 1:
        raise CfglabError(f"generation length cap must be >= 1 token, got {max_new}")
    gen = torch.Generator(device=device).manual_seed(seed)
    start, parts = time.perf_counter(), []
    for lo in range(0, len(prompts), batch_size):
        batch = torch.as_tensor(
            np.asarray(prompts[lo : lo + batch_size]), dtype=torch.long, device=device
        )
        parts.append(_generate_batch(model, batch, vocab, max_new, temperature, gen, use_cache))
    seconds = time.perf_counter() - start
    return Generations(
        completions=[c for p in parts for c in p.completions],
        ended=np.concatenate([p.ended for p in parts]) if parts else np.zeros(0, bool),
        stray=np.concatenate([p.stray for p in parts]) if parts else np.zeros(0, bool),
        sampled=sum(p.sampled for p in parts),
        seconds=seconds,
    )


@dataclass
class _Live:
    """The rows still generating and how to feed them."""

    rows: Tensor  # (b,) index of each live row in the batch
    cache: Any  # the model's cache (use_cache) or None
    seq: Tensor  # (b, t) whole sequences (only grown without a cache)


def _generate_batch(
    model: Decoder,
    idx: Tensor,
    vocab: Vocab,
    max_new: int,
    temperature: float,
    gen: torch.Generator,
    use_cache: bool,
) -> Generations:
    B, P = idx.shape
    out = torch.full((B, max_new), vocab.eos, dtype=torch.long, device=idx.device)
    stop_at = np.full(B, max_new)  # completion length where the row stopped (cap: max_new)
    stop_tok = np.full(B, -1)  # the token it stopped on (-1: it hit the cap)
    live = _Live(
        torch.arange(B, device=idx.device),
        model.init_cache(B, P + max_new) if use_cache else None,
        idx,
    )
    logits = _logits(model, idx, live)
    running = torch.ones(B, dtype=torch.bool, device=idx.device)  # per row of `live`
    sampled, n_live = 0, B
    for i in range(max_new):
        nxt = _sample(logits, temperature, gen)  # (b,)
        out[live.rows, i] = nxt  # read back only up to each row's stop
        sampled += n_live
        stops = running & (nxt >= vocab.n_terminals)  # EOS, or a stray BOS/MASK
        n_stops = int(stops.sum())
        if n_stops:
            where = live.rows[stops].cpu().numpy()
            stop_at[where], stop_tok[where] = i, nxt[stops].cpu().numpy()
            running, n_live = running & ~stops, n_live - n_stops
        if i + 1 == max_new or n_live == 0:
            break
        if n_live < _COMPACT_BELOW * len(running):
            live, nxt, running = _compact(live, running), nxt[running], running[running]
        logits = _logits(model, nxt[:, None], live)
    tokens = out.cpu().numpy()
    completions = [tokens[r, : stop_at[r]].copy() for r in range(B)]
    stray = (stop_tok >= 0) & (stop_tok != vocab.eos)
    return Generations(completions, stop_tok == vocab.eos, stray, sampled, 0.0)


def _logits(model: Decoder, new: Tensor, live: _Live) -> Tensor:
    """(b, V) next-token logits of every live row after feeding `new` (b, t)."""
    if live.cache is not None:
        return model.step(new, live.cache)[:, -1]
    if new is not live.seq:
        live.seq = torch.cat([live.seq, new], dim=1)
    return model(live.seq)[0][:, -1]


def _sample(logits: Tensor, temperature: float, gen: torch.Generator) -> Tensor:
    """(b, V) -> (b,) token ids; temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


def _compact(live: _Live, keep: Tensor) -> _Live:
    """Drop finished rows from the batch (and from the model's cache)."""
    cache = live.cache
    if cache is not None:
        cache = cache.select(keep)
    return _Live(live.rows[keep], cache, live.seq[keep])


# --- accuracy ----------------------------------------------------------------------------------


@dataclass
class Completed:
    """One setting's generations with the chart's verdicts."""

    cut: int
    temperature: float
    prompts: list[np.ndarray]  # terminals the model saw after BOS (possibly corrupted)
    generations: Generations
    valid: np.ndarray  # (n,) bool: prompt + completion ended with EOS and is in the language
    check_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def strings(self) -> list[np.ndarray]:
        """prompt + completion of every row (computed once)."""
        return [np.concatenate([p, c]) for p, c in zip(self.prompts, self.generations.completions)]

    def summary(self) -> dict[str, Any]:
        g = self.generations
        lengths = [len(s) for s in self.strings]
        return {
            "cut": self.cut,
            "temperature": self.temperature,
            "accuracy": proportion(int(self.valid.sum()), len(self.valid)),
            "ended_with_eos": proportion(int(g.ended.sum()), len(g.ended)),
            "stray_special_token": int(g.stray.sum()),
            "mean_length": float(np.mean(lengths)) if lengths else None,
            "generate_s": g.seconds,
            "check_s": self.check_s,
            "tokens_per_s": g.sampled / g.seconds if g.seconds > 0 else None,
        }


def judge_completions(
    judge: Judge, prompts: list[np.ndarray], gens: Generations
) -> tuple[np.ndarray, float]:
    """(valid per row, seconds the chart took): valid iff EOS ended it and the string parses."""
    start = time.perf_counter()
    valid = np.zeros(len(prompts), dtype=bool)
    ok = np.flatnonzero(gens.ended)
    if len(ok):
        valid[ok] = judge.accepts([np.concatenate([prompts[i], gens.completions[i]]) for i in ok])
    return valid, time.perf_counter() - start


def complete(
    model: Decoder,
    judge: Judge,
    prompts: list[np.ndarray],
    *,
    cut: int,
    temperature: float,
    max_length: int,
    seed: int,
    batch_size: int = 256,
    device: str = "cpu",
    context_limit: int | None = None,
) -> Completed:
    """Generate after BOS + each prompt (all of length `cut`) and judge prompt + completion."""
    vocab = Vocab(judge.n_terminals)
    rows = np.array([[vocab.bos, *p] for p in prompts], dtype=np.int64).reshape(
        len(prompts), cut + 1
    )
    max_new = max_length - cut + 1  # room for EOS after a string of max_length tokens
    if context_limit is not None:
        max_new = min(max_new, context_limit - (cut + 1))
        if max_new < 1:
            raise CfglabError(
                f"cut {cut} leaves no room to generate within the model's "
                f"context of {context_limit} tokens"
            )
    gens = generate(model, rows, vocab, max_new, temperature, seed, batch_size, device=device)
    valid, check_s = judge_completions(judge, prompts, gens)
    return Completed(
        cut,
        temperature,
        [np.asarray(p) for p in prompts],
        gens,
        valid,
        check_s,
        {"max_new_tokens": max_new},
    )


def accuracy_at_cut(
    model: Decoder,
    judge: Judge,
    n: int,
    cut: int,
    *,
    temperature: float = 1.0,
    max_length: int,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    context_limit: int | None = None,
) -> Completed:
    """n generations at cut K (prompts: the first K tokens of fresh valid strings)."""
    from cfglab.evaluate.context import derive_seed, fresh_strings

    if cut:
        strings = fresh_strings(judge.grammar, n, derive_seed(seed, "prompts", str(cut)), cut + 1)
        prompts = [s[:cut] for s in strings]
    else:
        prompts = [np.zeros(0, dtype=np.int64)] * n
    return complete(
        model,
        judge,
        prompts,
        cut=cut,
        temperature=temperature,
        max_length=max_length,
        seed=derive_seed(seed, "generate", str(cut), str(temperature)),
        batch_size=batch_size,
        device=device,
        context_limit=context_limit,
    )


def records(done: Completed, section: str, grammar: Any) -> list[dict[str, Any]]:
    """generations.jsonl lines: prompt, completion, and the string as `cfglab verify` reads it."""
    from cfglab.evaluate.context import names

    g = done.generations
    out = []
    for i, (p, c) in enumerate(zip(done.prompts, g.completions)):
        rec = {
            "section": section,
            "cut": done.cut,
            "temperature": done.temperature,
            "prompt": names(grammar, p),
            "completion": names(grammar, c),
            "string": names(grammar, np.concatenate([p, c])),
            "ended": bool(g.ended[i]),
            "valid": bool(done.valid[i]),
        }
        for key, values in done.extra.items():
            if isinstance(values, (list, np.ndarray)) and len(values) == len(done.prompts):
                rec[key] = _plain(values[i], grammar)
        out.append(rec)
    return out


def _plain(value: Any, grammar: Any) -> Any:
    from cfglab.evaluate.context import names

    if isinstance(value, np.ndarray):
        return names(grammar, value) if value.dtype.kind in "iu" else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def accuracy_report(
    run_dir: str,
    cut: int = 0,
    n: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    max_length: int | None = None,
    batch_size: int = 256,
    threads: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Generation accuracy of a run at one cut, from plain arguments (a Ray task can call it)."""
    from cfglab.evaluate.context import longest_string, open_run

    ctx = open_run(run_dir, threads, device)
    if not ctx.is_decoder:
        raise CfglabError(f"{run_dir}: an mlm run cannot generate; see cfglab.evaluate.mlm")
    cap = max_length or default_max_length(longest_string(ctx.grammar, seed))
    done = accuracy_at_cut(
        ctx.model,
        ctx.judge,
        n,
        cut,
        temperature=temperature,
        max_length=cap,
        seed=seed,
        batch_size=batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )
    return {**done.summary(), "max_length": cap, "seed": seed}


def default_max_length(longest_sampled: int) -> int:
    """The length cap: half again the longest of 512 fresh strings."""
    return math.ceil(1.5 * longest_sampled)

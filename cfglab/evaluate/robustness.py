"""Robustness to corrupted prompts and the mode switch (Allen-Zhu & Li, Part 1, Results 11–13).

Prompts are the first `cut` tokens of fresh valid strings with each token flipped, with
probability `rate`, to a different terminal (`cfglab.data.corrupt.flip_tokens`). For every
completion c of a corrupted prefix p' (clean prefix p) three verdicts sit side by side:
  repaired           p + c is valid: the model completed the string it should have seen
  corrupted_valid    p' + c is valid: the model took the corruption at its word
  prefix_subs        the fewest substitutions inside p' that make p' + c valid (0 = p' + c is
                     already consistent; -1 = no change of the prefix alone can), over completions
                     that ended with EOS
Mode switch: at cut0, the share of invalid generations and their fewest substitutions to a valid
string, beside the share and rate of corruption the run was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cfglab.data.corrupt import flip_tokens
from cfglab.evaluate.generation import Completed, Decoder, complete, proportion
from cfglab.evaluate.judge import Judge

TEMPERATURES = (0.1, 0.2, 0.5, 1.0)


def corrupted_prompts(
    clean: np.ndarray, rate: float, n_terminals: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) clean prefixes -> (corrupted copy, bool mask of flipped tokens)."""
    return flip_tokens(clean, rate, n_terminals, np.random.default_rng(seed))


def substitution_summary(counts: np.ndarray) -> dict[str, Any]:
    """Counts of fewest substitutions (-1 = impossible) as rates and a mean over the possible."""
    possible = counts[counts >= 0]
    return {
        "n": len(counts),
        "consistent": proportion(int((counts == 0).sum()), len(counts)),
        "impossible": int((counts < 0).sum()),
        "mean": float(possible.mean()) if len(possible) else None,
        "histogram": {int(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
    }


def judge_corrupted(judge: Judge, done: Completed, clean: np.ndarray) -> dict[str, Any]:
    """The three verdicts of one temperature's completions of corrupted prompts."""
    g = done.generations
    ended = np.flatnonzero(g.ended)
    repaired = np.zeros(len(clean), dtype=bool)
    subs = np.zeros(0, dtype=np.int64)
    if len(ended):
        repaired[ended] = judge.accepts(
            [np.concatenate([clean[i], g.completions[i]]) for i in ended]
        )
        subs = judge.prefix_substitutions([done.strings[i] for i in ended], [done.cut] * len(ended))
    per_row: list[int | None] = [None] * len(clean)  # None: no EOS, nothing to repair
    for i, k in zip(ended, subs):
        per_row[i] = int(k)
    done.extra.update(repaired=repaired, prefix_substitutions=per_row)
    return {
        "temperature": done.temperature,
        "n": len(clean),
        "repaired": proportion(int(repaired.sum()), len(clean)),
        "corrupted_valid": proportion(int(done.valid.sum()), len(clean)),
        "ended_with_eos": proportion(len(ended), len(clean)),
        "prefix_substitutions": substitution_summary(subs),
        "generate_s": g.seconds,
        "check_s": done.check_s,
    }


def robustness_sweep(
    model: Decoder,
    judge: Judge,
    clean: np.ndarray,
    *,
    rate: float,
    temperatures: Sequence[float],
    max_length: int,
    seed: int,
    batch_size: int = 256,
    device: str = "cpu",
    context_limit: int | None = None,
) -> tuple[dict[str, Any], list[Completed]]:
    """Corrupt the prompts once, complete them at every temperature, judge each."""
    from cfglab.evaluate.context import derive_seed

    cut = clean.shape[1]
    corrupted, flipped = corrupted_prompts(
        clean, rate, judge.n_terminals, derive_seed(seed, "corrupt", str(cut), str(rate))
    )
    rows, runs = [], []
    for t in temperatures:
        done = complete(
            model,
            judge,
            list(corrupted),
            cut=cut,
            temperature=t,
            max_length=max_length,
            device=device,
            batch_size=batch_size,
            seed=derive_seed(seed, "robust", str(cut), str(rate), str(t)),
            context_limit=context_limit,
        )
        done.extra.update(clean_prompt=list(clean), flips=flipped.sum(axis=1))
        rows.append(judge_corrupted(judge, done, clean))
        runs.append(done)
    report = {
        "rate": rate,
        "cut": cut,
        "n": len(clean),
        "flipped_rate": float(flipped.mean()) if flipped.size else None,
        "prompts_with_a_flip": proportion(int(flipped.any(axis=1).sum()), len(clean)),
        "by_temperature": rows,
    }
    return report, runs


def mode_switch(judge: Judge, cut0: Completed, config: Any) -> dict[str, Any]:  # TrainConfig
    """Invalid cut0 generations and their distance to the language, against training noise."""
    invalid = np.flatnonzero(~cut0.valid & cut0.generations.ended)
    subs = (
        judge.min_substitutions([cut0.strings[i] for i in invalid])
        if len(invalid)
        else np.zeros(0, dtype=np.int64)
    )
    lengths = [len(s) for s in cut0.strings]
    return {
        "temperature": cut0.temperature,
        "invalid": proportion(int((~cut0.valid).sum()), len(cut0.valid)),
        "invalid_but_ended": proportion(len(invalid), len(cut0.valid)),
        "substitutions_to_valid": substitution_summary(subs),
        "train_noise_fraction": float(config.noise_fraction),
        "train_noise_rate": float(config.noise_rate),
        "expected_flips_in_a_corrupted_string": float(config.noise_rate * np.mean(lengths))
        if lengths
        else None,
    }


def robustness_report(
    run_dir: str,
    rate: float = 0.15,
    temperatures: Sequence[float] = TEMPERATURES,
    n: int = 100,
    cut: int = 50,
    seed: int = 0,
    max_length: int | None = None,
    batch_size: int = 256,
    threads: int = 0,
    device: str = "cpu",
    mode_switch_n: int | None = None,
) -> dict[str, Any]:
    """Corrupted-prompt sweep and mode switch of a run, from plain arguments (a Ray task).

    n prompts per temperature; the mode switch reads mode_switch_n cut0 generations (2 n, as
    `evaluate_run` does with its n cut0 generations and n / 2 robustness prompts).
    """
    from cfglab.errors import CfglabError
    from cfglab.evaluate.context import longest_string, open_run
    from cfglab.evaluate.generation import accuracy_at_cut, default_max_length

    ctx = open_run(run_dir, threads, device)
    if not ctx.is_decoder:
        raise CfglabError(f"{run_dir}: an mlm run cannot generate; robustness needs a decoder")
    cap = max_length or default_max_length(longest_string(ctx.grammar, seed))
    clean = robust_prompts(ctx.grammar, n, cut, seed)
    report, _ = robustness_sweep(
        ctx.model,
        ctx.judge,
        clean,
        rate=rate,
        temperatures=temperatures,
        max_length=cap,
        seed=seed,
        batch_size=batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )
    cut0 = accuracy_at_cut(
        ctx.model,
        ctx.judge,
        mode_switch_n or 2 * n,
        0,
        max_length=cap,
        seed=seed,
        batch_size=batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )
    return {**report, "mode_switch": mode_switch(ctx.judge, cut0, ctx.config), "seed": seed}


def robust_prompts(grammar: Any, n: int, cut: int, seed: int) -> np.ndarray:
    """(n, cut) clean prefixes of fresh strings longer than cut."""
    from cfglab.evaluate.context import derive_seed, fresh_strings

    strings = fresh_strings(grammar, n, derive_seed(seed, "robust-prompts", str(cut)), cut + 1)
    return np.stack([s[:cut] for s in strings]) if strings else np.zeros((0, cut), np.int64)

"""`evaluate_run`: every measurement of a run, written to RUN_DIR/eval/.

    RUN_DIR/eval/eval.json          every figure, with its N, seed and 95% interval
    RUN_DIR/eval/generations.jsonl  one generation per line: section, cut, temperature, prompt,
                                    completion, the whole string (as `cfglab verify` reads it),
                                    whether it ended with EOS and the chart's verdict

Sections (a decoder run has all but the encoder's; an mlm run has only `masked`):
  accuracy      cut0 and cutK generation accuracy          generation.py
                (+ accuracy_by_temperature: the same on clean prompts at each of
                `accuracy_temperatures`)                    temperatures.py
  diversity     H(model) beside H(true), distinct fraction, birthday bound (also per
                level), entropy gap                          diversity.py
  kl            KL(true ‖ model) along fresh strings        kl.py
  robustness    corrupted prompts × temperatures, mode switch   robustness.py
  memorisation  novelty, held-out rule usage                 memorisation.py
  masked        one masked token vs the true conditional     mlm.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cfglab.errors import CfglabError

if TYPE_CHECKING:
    from cfglab.evaluate.context import EvalContext
    from cfglab.evaluate.generation import Completed

SECTIONS = ("accuracy", "diversity", "kl", "robustness", "memorisation", "masked")
DEFAULT_CUT = 50  # the paper's cut50
MIN_CUT = 2  # a cutK prompt of one token says almost nothing about the model's reading
LONG_ENOUGH = 0.1  # the least share of strings a default cut may draw its prompts from


class EvalOptions(BaseModel):
    """Every knob of an evaluation; `n` scales the sample counts left unset."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(200, ge=1, description="cut0 and cutK generations; scales the other counts")
    seed: int = 0
    cut: int | None = Field(
        None,
        ge=1,
        description="K of cutK; default 50, or half the shortest sampled string when the "
        "grammar's strings are shorter (at least 2: else half the median of the longer ones)",
    )
    temperature: float = Field(1.0, ge=0, description="of the accuracy generations")
    temperatures: list[float] = Field([0.1, 0.2, 0.5, 1.0], description="robustness sweep")
    corruption_rate: float = Field(0.15, ge=0, le=1)
    robust_n: int | None = Field(None, ge=1, description="prompts per temperature (n / 2)")
    kl_strings: int | None = Field(None, ge=1, description="strings for KL (n / 4)")
    masked_strings: int | None = Field(None, ge=1, description="strings for masked tokens (n / 10)")
    masked_per_string: int = Field(4, ge=1)
    reference_n: int | None = Field(
        None, ge=1, description="fresh strings for a rule's true frequency (10 n)"
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="length cap of a generated string; "
        "default 1.5 x the longest of 512 fresh strings",
    )
    eps: float = Field(1e-5, gt=0)
    batch_size: int = Field(256, ge=1)
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    device: str = "cpu"
    step: int | None = None
    sections: list[str] = Field(list(SECTIONS))
    write: bool = True  # write RUN_DIR/eval/
    accuracy_temperatures: list[float] = Field(
        [],
        description="cut0/cutK accuracy on clean prompts also at each of these temperatures "
        "(accuracy_by_temperature; the mode switch's recovery at low T)",
    )
    temperature_n: int | None = Field(
        None, ge=1, description="generations per temperature and cut (n / 2)"
    )
    diversity_n: int | None = Field(
        None,
        ge=1,
        description="cut0 generations the diversity reads (default n; more are drawn when "
        "larger: the paper's birthday bound uses about 20k)",
    )
    diversity_levels: bool = Field(
        True, description="diversity of the level-l nonterminal sequences too (parses each)"
    )

    def counts(self) -> dict[str, int]:
        n = self.n
        return {
            "robust_n": self.robust_n or max(1, n // 2),
            "kl_strings": self.kl_strings or max(1, n // 4),
            "masked_strings": self.masked_strings or max(1, n // 10),
            "reference_n": self.reference_n or 10 * n,
            "temperature_n": self.temperature_n or max(1, n // 2),
            "diversity_n": self.diversity_n or n,
        }


def make_options(options: EvalOptions | dict[str, Any] | None) -> EvalOptions:
    if isinstance(options, EvalOptions):
        return options
    try:
        opts = EvalOptions(**(options or {}))
    except ValidationError as err:
        from cfglab.errors import format_validation_error

        raise CfglabError(
            format_validation_error(err, "evaluation options: invalid configuration")
        ) from None
    unknown = sorted(set(opts.sections) - set(SECTIONS))
    if unknown:
        raise CfglabError(
            f"unknown evaluation section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return opts


Progress = Callable[[str], None]


def evaluate_run(
    run_dir: str | Path,
    options: EvalOptions | dict[str, Any] | None = None,
    progress: Progress | None = None,
    context: EvalContext | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory; returns what eval.json holds (and writes it unless told not).

    `context`: an already opened model (`cfglab.interop.hf_model.open_hf` for an outside
    model) instead of opening `run_dir`."""
    from cfglab.evaluate.context import open_run

    opts = make_options(options)
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    ctx = context or open_run(run_dir, opts.threads, opts.device, opts.step)
    result: dict[str, Any] = _header(ctx, opts)
    lines: list[dict[str, Any]] = []
    if ctx.is_decoder:
        _decoder_sections(ctx, opts, result, lines, say)
    if "masked" in opts.sections:
        say("masked tokens")
        result["masked"] = _timed(result, "masked", lambda: _masked(ctx, opts))
    result["seconds"]["total"] = time.perf_counter() - started
    if opts.write:
        write_eval(ctx.run_dir, result, lines)
    return result


def _header(ctx: EvalContext, opts: EvalOptions) -> dict[str, Any]:
    return {
        "run_dir": str(ctx.run_dir),
        "step": ctx.step,
        "grammar": ctx.grammar.name,
        "pe": ctx.config.pe,
        "decoder": ctx.is_decoder,
        "device": ctx.device,
        "options": opts.model_dump(),
        "counts": opts.counts(),
        "seconds": {},
    }


def _timed(result: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    result["seconds"][name] = time.perf_counter() - start
    return value


def _decoder_sections(
    ctx: EvalContext,
    opts: EvalOptions,
    result: dict[str, Any],
    lines: list[dict[str, Any]],
    say: Progress,
) -> None:
    from cfglab.evaluate.context import longest_string
    from cfglab.evaluate.generation import default_max_length

    secs, counts = set(opts.sections), opts.counts()
    cap = opts.max_length or default_max_length(longest_string(ctx.grammar, opts.seed))
    cut, why = (opts.cut, "given") if opts.cut else _default_cut(ctx, opts.seed)
    result.update(max_length=cap, cut=cut, cut_rule=why)
    cut0: Completed | None = None  # set whenever a section that reads it runs
    if secs & {"accuracy", "diversity", "memorisation", "robustness"}:
        say(f"cut0: {opts.n} generations")
        cut0 = _timed(result, "cut0", lambda: _generate(ctx, opts, 0, cap))
        lines += _records(cut0, "cut0", ctx)
    if "accuracy" in secs:
        say(f"cut{cut}: {opts.n} generations")
        cutk = _timed(result, f"cut{cut}", lambda: _generate(ctx, opts, cut, cap))
        lines += _records(cutk, f"cut{cut}", ctx)
        assert cut0 is not None
        result["accuracy"] = {"cut0": cut0.summary(), f"cut{cut}": cutk.summary()}
        result["timing"] = _timing([cut0, cutk])
    if "accuracy" in secs and opts.accuracy_temperatures:
        say(f"accuracy at temperatures {opts.accuracy_temperatures}")
        result["accuracy_by_temperature"] = _timed(
            result, "temperatures", lambda: _temperatures(ctx, opts, cut, cap, lines)
        )
    if "diversity" in secs:
        assert cut0 is not None
        say("diversity")
        result["diversity"] = _timed(
            result, "diversity", lambda: _diversity(ctx, opts, cut0, cap, lines)
        )
    if "kl" in secs:
        say(f"KL along {counts['kl_strings']} strings")
        result["kl"] = _timed(result, "kl", lambda: _kl(ctx, opts))
    if "robustness" in secs:
        assert cut0 is not None
        say(f"robustness: {counts['robust_n']} prompts x {len(opts.temperatures)} temperatures")
        result["robustness"] = _timed(
            result, "robustness", lambda: _robustness(ctx, opts, cut, cap, cut0, lines, result)
        )
    if "memorisation" in secs:
        assert cut0 is not None
        say("memorisation")
        result["memorisation"] = _timed(
            result, "memorisation", lambda: _memorisation(ctx, opts, cut0)
        )


def _default_cut(ctx: EvalContext, seed: int) -> tuple[int, str]:
    """cutK's K from 512 samples' lengths, with the rule that chose it (`choose_cut`)."""
    from cfglab.grammar.sample import sample

    return choose_cut(sample(ctx.grammar, 512, seed).lengths, ctx.grammar.name)


def choose_cut(lengths: np.ndarray, grammar: str) -> tuple[int, str]:
    """A cut that leaves a prompt of MIN_CUT tokens or more and something to complete.

    The paper's 50 when every sampled string is longer; else half the shortest string, as long
    as that is at least MIN_CUT (a grammar of similar lengths, such as cfg3's smaller cousins).
    A recursive grammar has strings of one token, so half the shortest is cut1, a trivial
    prompt: then half the median length of the strings with 2·MIN_CUT tokens or more (prompts
    are drawn from strings longer than the cut). Refused when too few strings are that long.
    """
    n, shortest = len(lengths), int(lengths.min())
    if shortest > DEFAULT_CUT:
        return DEFAULT_CUT, "the paper's cut50: every sampled string is longer"
    if shortest // 2 >= MIN_CUT:
        return shortest // 2, f"half the shortest of {n} sampled strings ({shortest} tokens)"
    long = lengths[lengths >= 2 * MIN_CUT]
    if len(long) < LONG_ENOUGH * n:
        raise CfglabError(
            f"evaluate: grammar {grammar} has no cut that makes a non-trivial cutK prompt: only "
            f"{len(long)} of {n} sampled strings have {2 * MIN_CUT} tokens or more (a prompt of "
            f"{MIN_CUT}+ tokens and room to complete it); pass --cut K, or leave out the "
            "accuracy and robustness sections"
        )
    median = int(np.median(long))
    cut = min(DEFAULT_CUT, median // 2)
    return cut, (
        f"half the median length ({median}) of the {len(long)} of {n} sampled strings with "
        f"{2 * MIN_CUT}+ tokens; half the shortest (cut{shortest // 2}) would be a trivial prompt"
    )


def _generate(
    ctx: EvalContext, opts: EvalOptions, cut: int, cap: int, seed: int | None = None
) -> Completed:
    from cfglab.evaluate.generation import accuracy_at_cut

    return accuracy_at_cut(
        ctx.model,
        ctx.judge,
        opts.n,
        cut,
        temperature=opts.temperature,
        max_length=cap,
        seed=opts.seed if seed is None else seed,
        batch_size=opts.batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )


def _records(done: Completed, section: str, ctx: EvalContext) -> list[dict[str, Any]]:
    from cfglab.evaluate.generation import records

    return records(done, section, ctx.grammar)


def _timing(runs: list) -> dict[str, Any]:
    generate_s = sum(r.generations.seconds for r in runs)
    check_s = sum(r.check_s for r in runs)
    tokens = sum(r.generations.sampled for r in runs)
    return {
        "generations": sum(len(r.valid) for r in runs),
        "tokens": tokens,
        "generate_s": generate_s,
        "check_s": check_s,
        "tokens_per_s": tokens / generate_s if generate_s > 0 else None,
        "check_share": check_s / (generate_s + check_s) if generate_s + check_s else None,
    }


def _temperatures(
    ctx: EvalContext,
    opts: EvalOptions,
    cut: int,
    cap: int,
    lines: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    from cfglab.evaluate.temperatures import accuracy_by_temperature, summarise

    runs = accuracy_by_temperature(
        ctx.model,
        ctx.judge,
        opts.accuracy_temperatures,
        (0, cut),
        n=opts.counts()["temperature_n"],
        max_length=cap,
        seed=opts.seed,
        batch_size=opts.batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )
    for done in runs:
        lines += _records(done, f"temperature{done.temperature:g}-cut{done.cut}", ctx)
    return summarise(runs)


def _diversity(
    ctx: EvalContext, opts: EvalOptions, cut0: Completed, cap: int, lines: list[dict[str, Any]]
) -> dict[str, Any]:
    import numpy as np

    from cfglab.evaluate.context import derive_seed
    from cfglab.evaluate.diversity import diversity_of

    strings, valid, ended = cut0.strings, cut0.valid, cut0.generations.ended
    extra_n = opts.counts()["diversity_n"] - len(strings)
    if extra_n > 0:  # more cut0 generations than the accuracy drew, with their own seed
        more = _generate(
            ctx,
            opts.model_copy(update={"n": extra_n}),
            0,
            cap,
            seed=derive_seed(opts.seed, "diversity"),
        )
        strings = strings + more.strings
        valid = np.concatenate([valid, more.valid])
        ended = np.concatenate([ended, more.generations.ended])
    out = diversity_of(
        ctx.model,
        ctx.judge,
        strings,
        valid,
        ended=ended,
        temperature=cut0.temperature,
        levels=opts.diversity_levels,
        seed=derive_seed(opts.seed, "diversity-levels"),
        batch_size=min(opts.batch_size, 64),
        device=ctx.device,
    )
    return {**out, "temperature": cut0.temperature, "n": len(strings)}


def _kl(ctx: EvalContext, opts: EvalOptions) -> dict[str, Any]:
    from cfglab.evaluate.kl import kl_for

    return kl_for(ctx, opts.counts()["kl_strings"], opts.seed, opts.eps)


def _robustness(
    ctx: EvalContext,
    opts: EvalOptions,
    cut: int,
    cap: int,
    cut0: Completed,
    lines: list[dict[str, Any]],
    result: dict[str, Any],
) -> dict[str, Any]:
    from cfglab.evaluate.robustness import mode_switch, robust_prompts, robustness_sweep

    clean = robust_prompts(ctx.grammar, opts.counts()["robust_n"], cut, opts.seed)
    report, runs = robustness_sweep(
        ctx.model,
        ctx.judge,
        clean,
        rate=opts.corruption_rate,
        temperatures=opts.temperatures,
        max_length=cap,
        seed=opts.seed,
        batch_size=opts.batch_size,
        device=ctx.device,
        context_limit=ctx.context_limit,
    )
    for done in runs:
        lines += _records(done, "robustness", ctx)
    switch = mode_switch(ctx.judge, cut0, ctx.config)
    if "accuracy_by_temperature" in result:
        from cfglab.evaluate.temperatures import mode_switch_by_temperature

        switch["by_temperature"] = mode_switch_by_temperature(result["accuracy_by_temperature"])
    return {**report, "mode_switch": switch}


def _memorisation(ctx: EvalContext, opts: EvalOptions, cut0: Completed) -> dict[str, Any]:
    from cfglab.evaluate.memorisation import memorisation_of
    from cfglab.runs import RunDir

    hashes = RunDir(ctx.run_dir).train_string_hashes()
    return memorisation_of(
        ctx.judge,
        cut0.strings,
        cut0.valid,
        hashes,
        ctx.config.holdout_rule,
        n_reference=opts.counts()["reference_n"],
        seed=opts.seed,
    )


def _masked(ctx: EvalContext, opts: EvalOptions) -> dict[str, Any]:
    from cfglab.evaluate.mlm import masked_for

    return masked_for(
        ctx, opts.counts()["masked_strings"], opts.masked_per_string, opts.seed, opts.eps
    )


def write_eval(run_dir: Path, result: dict[str, Any], lines: list[dict[str, Any]]) -> Path:
    """Write eval.json and generations.jsonl atomically into RUN_DIR/eval/."""
    from cfglab.runs import write_atomic

    out = Path(run_dir) / "eval"
    out.mkdir(exist_ok=True)
    write_atomic(
        out / "generations.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()
    )
    write_atomic(out / "eval.json", json.dumps(result, indent=2).encode())
    return out

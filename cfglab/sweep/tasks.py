"""The evaluations a finished trial gets, each one a plain function of a run directory.

The sweep runs them as Ray tasks submitted from the driver; nothing here imports Ray, so every
task also runs in a plain process (`run_task("probes", RUN_DIR, {...})`). TASKS maps a task kind
to the function that does the work, named "module:function" and imported in the worker only:
the driver never pays for torch-heavy evaluation modules it does not run.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from typing import Any

from cfglab.errors import CfglabError

# kind -> the evaluation it runs
TASKS: dict[str, str] = {
    "evaluate": "cfglab.evaluate.run:evaluate_run",
    "robustness": "cfglab.evaluate.robustness:robustness_report",
    "probes": "cfglab.interpret.probes:probe_run",
    "attention": "cfglab.interpret.attention:attention_run",
    "patch": "cfglab.interpret.patching:patch_run",
    "embedding": "cfglab.interpret.embedding:embedding_run",
}


@functools.lru_cache(maxsize=64)
def _implicit(grammar: str) -> bool:
    """The grammar file has a lexicon (bags of observed tokens): read once per file."""
    from cfglab.grammar.dsl import load_grammar

    return bool(load_grammar(grammar).hidden)


# Tasks that do not apply to every run, decided from its TrainConfig fields (the others do;
# attention on pos/uni runs returns the module's own "not meaningful" note).
APPLIES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "robustness": lambda train: train["pe"] != "mlm",  # an encoder cannot complete a prompt
    "patch": lambda train: train["pe"] != "mlm",  # nor give a next-token distribution
    "embedding": lambda train: _implicit(train["grammar"]),  # Result 10: bags to group
}


def applies(kind: str, train: dict[str, Any]) -> bool:
    return APPLIES.get(kind, lambda _: True)(train)


def load_target(target: str) -> Callable[..., dict[str, Any]]:
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CfglabError(f"task function {target} is not available ({err})") from None


# Set by the sweep itself, never by a sweep file's `options`.
_SWEEP_SETS = {"run_dir", "threads", "device", "quiet", "progress", "options"}


def accepted_options(kind: str) -> set[str]:
    """The option names a task's function takes (EvalOptions' fields for `evaluate`)."""
    import inspect

    fn = load_target(TASKS[kind])
    if kind == "evaluate":
        from cfglab.evaluate.run import EvalOptions

        names = set(EvalOptions.model_fields)
    else:
        names = set(inspect.signature(fn).parameters)
    return names - _SWEEP_SETS


def _given(section: dict[str, Any], *names: str) -> dict[str, Any]:
    """The section's values for `names`, leaving out those not set (the module's default)."""
    return {k: section[k] for k in names if section.get(k) is not None}


def _evaluate(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    options = {
        **_given(section, "n", "cut", "temperature", "sections", "seed"),
        **section.get("options", {}),
        "threads": threads,
        "device": device,
    }
    return fn(run_dir, options)


def _robustness(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    """One report per corruption rate, each over the section's temperatures."""
    args = {
        **_given(section, "temperatures", "n", "cut", "seed"),
        **section.get("options", {}),
        "threads": threads,
        "device": device,
    }
    return {"by_rate": {f"{rate:g}": fn(run_dir, rate=rate, **args) for rate in section["rates"]}}


def _probes(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    return fn(
        run_dir,
        layers=section.get("layers"),
        seed=section.get("seed", 0),
        **section.get("options", {}),
        threads=threads,
        device=device,
        quiet=True,
    )


def _attention(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    return fn(
        run_dir,
        seed=section.get("seed", 0),
        **section.get("options", {}),
        threads=threads,
        device=device,
        quiet=True,
    )


def _patch(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    return fn(
        run_dir,
        layers=section.get("layers"),
        seed=section.get("seed", 0),
        **({"n_pairs": section["pairs"]} if section.get("pairs") else {}),
        **section.get("options", {}),
        threads=threads,
        device=device,
    )


def _embedding(
    fn: Callable, run_dir: str, section: dict[str, Any], threads: int, device: str
) -> dict[str, Any]:
    return fn(run_dir, seed=section.get("seed", 0), **section.get("options", {}), threads=threads)


_CALLS: dict[str, Callable[..., dict[str, Any]]] = {
    "evaluate": _evaluate,
    "robustness": _robustness,
    "probes": _probes,
    "attention": _attention,
    "patch": _patch,
    "embedding": _embedding,
}


def run_task(
    kind: str,
    run_dir: str,
    section: dict[str, Any],
    threads: int = 1,
    device: str = "cpu",
    target: str | None = None,
) -> dict[str, Any]:
    """Run one evaluation of one run: {"kind", "seconds", "result"}. `target` overrides TASKS."""
    from cfglab.threads import set_threads

    set_threads(threads)
    fn = load_target(target or TASKS[kind])
    started = time.perf_counter()
    result = _CALLS[kind](fn, run_dir, section, threads, device)
    return {"kind": kind, "seconds": round(time.perf_counter() - started, 2), "result": result}

"""What every evaluation needs: a model, its grammar's judge, fresh strings and seeds.

Each evaluation is callable on its own from a run directory in a fresh process (the sweep runs
them as Ray tasks), so seeds are derived per section from one user seed: a section gives the same
figures whether it runs alone or inside `evaluate_run`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.evaluate.judge import Judge
from cfglab.grammar.core import Grammar
from cfglab.grammar.sample import sample
from cfglab.threads import set_threads

_MAX_ROUNDS = 50  # rounds of drawing strings before a length filter is declared hopeless


@dataclass
class EvalContext:
    """A loaded run, ready to evaluate."""

    run_dir: Path
    config: Any  # cfglab.runs.TrainConfig
    grammar: Grammar
    model: Any  # a decoder (GPT-like) or an encoder (MaskedLM-like)
    step: int
    judge: Judge
    device: str
    max_tokens: int | None = None  # an outside model's position limit (cfglab.interop.hf_model)

    @property
    def vocab(self) -> Vocab:
        return Vocab(len(self.grammar.terminals))

    @property
    def is_decoder(self) -> bool:
        return self.config.pe != "mlm"

    @property
    def context_limit(self) -> int | None:
        """Longest token sequence the model accepts (abs position tables end at the context)."""
        if self.max_tokens is not None:
            return self.max_tokens
        pe = self.config.mlm_pe if self.config.pe == "mlm" else self.config.pe
        return self.config.context if pe == "abs" else None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CfglabError("device cuda asked for, but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise CfglabError(f"device must be cpu, cuda or auto, got {device!r}")
    return device


def open_run(
    run_dir: str | Path, threads: int = 0, device: str = "cpu", step: int | None = None
) -> EvalContext:
    """Load the run's newest good checkpoint (or `step`); clear errors for a wrong directory."""
    from cfglab.runs import load_run

    path = Path(run_dir)
    if not path.exists():
        raise CfglabError(f"{path}: no such directory")
    if not path.is_dir():
        raise CfglabError(f"{path}: not a directory (expected a run directory from cfglab train)")
    set_threads(threads)
    device = resolve_device(device)
    loaded = load_run(path, step=step, device=device)
    return EvalContext(
        path.resolve(),
        loaded.config,
        loaded.grammar,
        loaded.model,
        loaded.step,
        Judge(loaded.grammar),
        device,
    )


def derive_seed(seed: int, *names: str) -> int:
    """A 63-bit seed for one named section, a pure function of the user's seed."""
    words = [seed & 0xFFFFFFFF, seed >> 32] + [zlib.crc32(n.encode()) for n in names]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def fresh_strings(
    grammar: Grammar, n: int, seed: int, min_length: int = 1, max_length: int | None = None
) -> list[np.ndarray]:
    """n fresh samples with min_length <= len <= max_length (rejection, seeded)."""
    return fresh_strings_counted(grammar, n, seed, min_length, max_length)[0]


def fresh_strings_counted(
    grammar: Grammar, n: int, seed: int, min_length: int = 1, max_length: int | None = None
) -> tuple[list[np.ndarray], int, int]:
    """`fresh_strings`, with how many drawn strings were longer than max_length, of how many."""
    rng = np.random.default_rng(seed)
    found: list[np.ndarray] = []
    drawn = too_long = 0
    for _ in range(_MAX_ROUNDS):
        if len(found) >= n:
            break
        batch = sample(grammar, max(2 * (n - len(found)), 16), rng).strings()
        drawn += len(batch)
        too_long += sum(max_length is not None and len(s) > max_length for s in batch)
        found += [
            s.astype(np.int64)
            for s in batch
            if len(s) >= min_length and (max_length is None or len(s) <= max_length)
        ]
    if len(found) < n:
        bounds = f"at least {min_length}" + (f" and at most {max_length}" if max_length else "")
        raise CfglabError(
            f"grammar {grammar.name}: only {len(found)} of {drawn} sampled strings have "
            f"{bounds} tokens; choose a smaller cut (or a larger context for abs models)"
        )
    return found[:n], too_long, drawn


def left_out(too_long: int, drawn: int, limit: int | None) -> dict[str, Any] | None:
    """eval.json's record of strings left out for the context (None when none were)."""
    if not too_long or limit is None:
        return None
    return {
        "n": too_long,
        "of": drawn,
        "note": f"{too_long} of {drawn} sampled strings longer than the context "
        f"({limit} tokens) were left out",
    }


def longest_string(grammar: Grammar, seed: int, n: int = 512) -> int:
    """Longest of n samples: the scale for the generation length cap."""
    return int(sample(grammar, n, seed).lengths.max())


def names(grammar: Grammar, tokens: np.ndarray) -> str:
    """Terminal ids as the space-separated names `cfglab verify` reads."""
    return " ".join(grammar.terminals[int(t)] for t in tokens)

"""Memorisation (beyond the paper): does the model copy its training stream, or generalise?

Novelty: the share of generated strings that occur among the strings the run trained on (the
run directory records their 64-bit hashes; a generation is hashed the same way).
Held-out pattern: a run trained with `holdout_rule` never saw a string that uses that rule. How
often do its valid generations use the rule, against how often fresh strings of the grammar do?
"Uses" means the same everywhere — in the training filter, the true frequency and the verdict on
generations: some parse tree of the string expands a node with the rule (cfglab.chart.rules says
why some-parse). Both rates come with 95% Wilson intervals; a model that only reproduced its
training distribution would score 0, one that learned the grammar the true frequency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cfglab.chart.rules import samples_using
from cfglab.data.corpus import hash_token_strings
from cfglab.evaluate.generation import proportion
from cfglab.evaluate.judge import Judge
from cfglab.grammar.core import find_rule
from cfglab.grammar.sample import sample


def novelty(
    strings: Sequence[np.ndarray], valid: np.ndarray, train_hashes: np.ndarray
) -> dict[str, Any]:
    """Share of generations (all, and valid ones) whose string was a training string."""
    seen = (
        np.isin(hash_token_strings(list(strings)), train_hashes)
        if len(strings)
        else np.zeros(0, dtype=bool)
    )
    valid = np.asarray(valid, dtype=bool)
    return {
        "train_strings_recorded": len(train_hashes),
        "in_training": proportion(int(seen.sum()), len(seen)),
        "valid_in_training": proportion(int((seen & valid).sum()), int(valid.sum())),
        "novel_valid": proportion(int((~seen & valid).sum()), len(seen)),
    }


def holdout_usage(
    judge: Judge,
    strings: Sequence[np.ndarray],
    valid: np.ndarray,
    rule: str,
    *,
    n_reference: int,
    seed: int,
) -> dict[str, Any]:
    """How often valid generations use `rule`, against its frequency in fresh samples."""
    from cfglab.evaluate.context import derive_seed

    index = find_rule(judge.grammar, rule)
    kept = [s for s, v in zip(strings, valid) if v]
    used = judge.uses_rule(kept, index) if kept else np.zeros(0, dtype=bool)
    reference = sample(judge.grammar, n_reference, derive_seed(seed, "holdout-reference"))
    truth = samples_using(judge.grammar, reference, index)
    return {
        "rule": rule,
        "rule_index": index,
        "generated_using": proportion(int(used.sum()), len(used)),
        "true_frequency": proportion(int(truth.sum()), len(truth)),
    }


def memorisation_of(
    judge: Judge,
    strings: Sequence[np.ndarray],
    valid: np.ndarray,
    train_hashes: np.ndarray,
    rule: str | None,
    *,
    n_reference: int,
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"novelty": novelty(strings, valid, train_hashes), "holdout": None}
    if rule:
        out["holdout"] = holdout_usage(
            judge, strings, valid, rule, n_reference=n_reference, seed=seed
        )
    return out

"""cfglab.evaluate.memorisation: novelty against the recorded training stream, held-out rules."""

from __future__ import annotations

import numpy as np
import pytest
from eval_support import TINY, judge

from cfglab.data.corpus import hash_token_strings
from cfglab.errors import CfglabError
from cfglab.evaluate.baselines import OracleModel
from cfglab.evaluate.generation import accuracy_at_cut
from cfglab.evaluate.memorisation import holdout_usage, memorisation_of, novelty


def test_novelty_counts_strings_seen_in_training() -> None:
    strings = [np.array(s) for s in ([0, 1], [1, 1, 2], [2], [0, 1], [2, 2])]
    valid = np.array([True, True, False, True, False])
    train = np.sort(hash_token_strings([[0, 1], [2], [1, 0, 0]]))
    got = novelty(strings, valid, train)
    assert got["in_training"]["k"] == 3 and got["in_training"]["n"] == 5  # [0,1] twice, [2]
    assert got["valid_in_training"]["k"] == 2 and got["valid_in_training"]["n"] == 3
    assert got["novel_valid"]["k"] == 1 and got["train_strings_recorded"] == 3


def test_novelty_without_a_recorded_stream() -> None:
    got = novelty([np.array([0])], np.array([True]), np.zeros(0, dtype=np.uint64))
    assert got["in_training"]["k"] == 0


def test_oracle_uses_a_rule_as_often_as_the_grammar() -> None:
    j = judge(TINY)
    done = accuracy_at_cut(OracleModel(j), j, 400, 0, max_length=10, seed=0, batch_size=200)
    h = holdout_usage(j, done.strings, done.valid, 'A -> "a" "b"', n_reference=4_000, seed=0)
    # every string has two A's (one directly, one inside B -> c A), each expanded by A -> a b
    # with probability 1/2: the rule is used with probability 1 - 1/4
    assert h["true_frequency"]["rate"] == pytest.approx(0.75, abs=0.03)
    lo, hi = h["generated_using"]["ci95"]
    assert lo <= 0.75 <= hi and h["generated_using"]["n"] == 400


def test_rule_usage_is_read_from_the_parse() -> None:
    j = judge(TINY)
    strings = [np.array(j.grammar.encode(s.split())) for s in ("a b c b", "b c b", "c a b b")]
    h = holdout_usage(j, strings, np.ones(3, bool), 'B -> "c" A', n_reference=10, seed=0)
    assert h["generated_using"]["k"] == 3
    h = holdout_usage(j, strings, np.ones(3, bool), 'A -> "a" "b"', n_reference=10, seed=0)
    assert h["generated_using"]["k"] == 2  # "b c b" uses A -> b twice


def test_unknown_rule_is_a_clear_error() -> None:
    j = judge(TINY)
    with pytest.raises(CfglabError, match="not in grammar"):
        memorisation_of(
            j, [], np.zeros(0, bool), np.zeros(0, np.uint64), "A -> c", n_reference=10, seed=0
        )

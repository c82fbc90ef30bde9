"""Result 10's embedding analysis: cosine gap, held-out probe and the verdict, on embeddings whose
answer is known (clustered by bag vs random), and on a tiny trained run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from cfglab.grammar.dsl import parse_grammar
from cfglab.interpret.embedding import (
    bag_matrix,
    cosine_gap,
    embedding_report,
    measure,
    probe_accuracy,
    verdict,
)

IMPLICIT = """grammar longer
start S
S -> X X Y | Y X
X -> "a" Z | Z "b"
Y -> Z Z "c" | "c" Z
Z -> "a" "b" | "b" "a" "a" | "c" "a"
bag "a" -> "t0" "t3" "t6" "t9"
bag "b" -> "t1" "t4" "t7" "t10"
bag "c" -> "t2" "t5" "t8" "t11"
"""


def _bags() -> np.ndarray:
    return bag_matrix(parse_grammar(IMPLICIT))


def test_bag_matrix_follows_token_order_of_first_appearance() -> None:
    bags = _bags()
    assert bags.shape == (12, 3) and (bags.argmax(1) == np.arange(12) // 4).all()  # bag order


def test_clustered_embeddings_pass_and_random_ones_do_not() -> None:
    rng = np.random.default_rng(0)
    bags = _bags()
    centres = rng.normal(size=(3, 32)) * 3
    clustered = centres[bags.argmax(1)] + rng.normal(size=(12, 32)) * 0.3
    random = rng.normal(size=(12, 32))
    good, bad = measure(clustered, bags), measure(random, bags)
    assert good["gap"] > 0.5 > abs(bad["gap"])
    assert good["probe_accuracy"] == 1.0 and bad["probe_accuracy"] < 0.7
    assert verdict(good, bad) and not verdict(bad, good)


def test_probe_is_held_out_so_a_random_labelling_is_not_learned() -> None:
    rng = np.random.default_rng(1)
    bags = np.eye(3, dtype=bool)[rng.integers(0, 3, 30)]
    assert probe_accuracy(rng.normal(size=(30, 64)), bags) < 0.6
    assert np.isnan(cosine_gap(rng.normal(size=(2, 4)), np.eye(2, dtype=bool))["within"])


@pytest.mark.slow
def test_tiny_run_on_an_implicit_grammar_trains_evaluates_and_reports(tmp_path) -> None:
    from eval_support import tiny_config

    from cfglab.evaluate.run import evaluate_run
    from cfglab.train import train

    gfile = tmp_path / "imp.cfg"
    gfile.write_text(IMPLICIT)
    config = tiny_config(gfile)
    run = train(config, tmp_path / "run", quiet=True)
    small = {
        "n": 8,
        "cut": 4,
        "temperatures": [1.0],
        "threads": 1,
        "max_length": 24,
        "masked_strings": 2,
        "masked_per_string": 1,
        "reference_n": 20,
        "accuracy_temperatures": [1.0],
        "temperature_n": 2,
        "diversity_n": 8,
    }
    report = evaluate_run(str(run), small)
    assert report  # accuracy, KL, diversity and robustness ran over observed tokens
    emb = embedding_report(run)
    assert set(emb["trained"]) == {"within", "between", "gap", "probe_accuracy"}
    assert emb["tokens"][:3] == ["t0", "t3", "t6"] and emb["hidden"] == ["a", "b", "c"]

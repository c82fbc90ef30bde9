"""Result 10's embedding analysis: cosine gap, held-out probe and the verdict, on embeddings whose
answer is known (clustered by bag vs random), and on a tiny trained run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_support import LONGER_IMPLICIT as IMPLICIT
from eval_support import LONGER_OVERLAP, implicit_run, trained_run
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.grammar.dsl import parse_grammar
from cfglab.interpret.embedding import (
    bag_matrix,
    bag_order,
    cosine_gap,
    embedding_report,
    embedding_run,
    measure,
    plot_similarity,
    probe_accuracy,
    verdict,
)


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


def test_bag_order_groups_tokens_by_first_bag_and_puts_bagless_tokens_last() -> None:
    bags = np.array([[0, 1], [1, 0], [0, 0], [1, 1], [0, 1]], dtype=bool)
    assert bag_order(bags).tolist() == [1, 3, 0, 4, 2]


def test_similarity_plot_is_written(tmp_path) -> None:
    rng = np.random.default_rng(2)
    bags = _bags()
    emb = rng.normal(size=(12, 8))
    result = {"trained": measure(emb, bags), "untrained": measure(emb, bags)}
    result["encodes_terminal"] = verdict(result["trained"], result["untrained"])
    path = plot_similarity(emb, emb, bags, result, tmp_path / "e" / "embedding.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_embedding_prints_the_figures_and_writes_json_and_plot() -> None:
    run = implicit_run()
    res = CliRunner().invoke(app, ["embedding", str(run)])
    assert res.exit_code == 0, res.output
    written = json.loads((run / "embedding" / "embedding.json").read_text())
    assert (run / "embedding" / "embedding.png").stat().st_size > 0
    assert written["tokens"] == list(parse_grammar(IMPLICIT).terminals)
    assert written["bag_sizes"] == [4, 4, 4] and written["shared_tokens"] == 0
    for family in ("trained", "untrained"):  # the table shows the file's own numbers
        assert f"{written[family]['probe_accuracy']:.3f}" in res.output
        assert f"{written[family]['gap']:.3f}" in res.output
    assert "held out" in res.output and "embedding.png" in res.output
    as_json = CliRunner().invoke(app, ["embedding", str(run), "--json", "--no-plot"])
    assert json.loads(as_json.output)["trained"] == written["trained"]


def test_embedding_of_overlap_bags_leaves_shared_tokens_out_of_the_probe() -> None:
    result = embedding_run(str(implicit_run(LONGER_OVERLAP)), plots=False)
    assert result["shared_tokens"] == 1 and result["bag_sizes"] == [3, 2, 2]
    assert "plots" not in result


def test_embedding_of_an_ordinary_run_is_a_clear_error() -> None:
    with pytest.raises(CfglabError, match=r"not implicit.*cfglab implicit"):
        embedding_run(str(trained_run()))


def test_sweep_task_runs_the_embedding_only_on_implicit_runs() -> None:
    from cfglab.runs import RunDir
    from cfglab.sweep.tasks import applies, run_task

    run = implicit_run()
    record = run_task("embedding", str(run), {"seed": 0, "options": {"plots": False}})
    assert record["kind"] == "embedding"
    assert record["result"]["trained"] == embedding_report(run)["trained"]
    for path, implicit in ((run, True), (trained_run(), False)):
        train = RunDir(path).read_config().model_dump()
        assert applies("embedding", train) is implicit

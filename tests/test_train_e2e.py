"""End to end: a small rot model on grammars/mini.cfg approaches the grammar's true entropy.

The gap is measured on whole fresh strings (BOS x EOS): mean over tokens of log p_true − log
p_model, with p_true from the exact chart. CI runs this (slow) test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cfglab.chart.front import Chart
from cfglab.data.vocab import Vocab
from cfglab.evaluate.scoring import sequence_log_probs
from cfglab.grammar.sample import sample
from cfglab.runs import TrainConfig, load_run
from cfglab.train import train

MINI = Path(__file__).resolve().parents[1] / "grammars" / "mini.cfg"
STEPS = 3000
# nats per token above the true entropy after STEPS steps of the demo's recipe (BOS-aligned
# windows of 64, batch 32, 4 heads). Measured on mini with this test: 0.0132 (fp32) and 0.0126
# (bf16) after 3,000 steps, 0.0208 / 0.0192 after 2,000; 0.0013 after the demo's 12,000
# (benchmarks/RESULTS.md, calibration). 3,000 steps keep the test under a minute on the AVX2-only
# kind's share of `make test` while the margin still fails a model that learned half as much.
MARGIN = 0.025


def excess_per_token(run_dir: Path, n: int = 200) -> tuple[float, float]:
    run = load_run(run_dir)
    strings = sample(run.grammar, n, 12345).strings()
    log_p = Chart(run.grammar).log_inside(strings)
    log_q = sequence_log_probs(run.model, strings, Vocab(len(run.grammar.terminals)))
    tokens = sum(len(s) + 1 for s in strings)
    return float(-log_p.sum() / tokens), float((log_p - log_q).sum() / tokens)


@pytest.mark.slow
def test_rot_on_mini_gets_close_to_the_true_entropy(tmp_path: Path) -> None:
    cfg = TrainConfig(
        grammar=str(MINI),
        pe="rot",
        layers=2,
        heads=4,
        dim=64,
        context=64,
        batch=32,
        steps=STEPS,
        lr=6e-3,
        warmup=300,
        threads=2,
        checkpoint_every=STEPS,
        eval_every=500,
    )
    train(cfg, tmp_path / "run", quiet=True)
    entropy, excess = excess_per_token(tmp_path / "run")
    untrained_gap = np.log(Vocab(3).size) - entropy  # a uniform guess over the vocabulary
    assert 0.2 < entropy < 0.6
    assert excess < MARGIN, f"excess {excess:.4f} nats/token over entropy {entropy:.4f}"
    assert excess < untrained_gap / 10

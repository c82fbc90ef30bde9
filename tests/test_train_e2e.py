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
STEPS = 1200
# nats per token above the true entropy (0.382) after STEPS steps of the demo's recipe (BOS-aligned
# windows of 64, batch 32, 4 heads) at lr 1e-2, one thread. Measured with this test's recipe (bf16,
# Intel Xeon with AMX-BF16, loaded): 0.039 / 0.039 / 0.047 for seeds 0 / 1 / 2, 0.031 in fp32;
# 0.068 after 600 steps, 0.0132 (fp32) / 0.0126 (bf16) after 3,000 of the earlier lr 6e-3 recipe,
# 0.0013 after the demo's 12,000. 1,200 steps take ~30 s on one loaded core, so this test no longer
# dominates `make test` on the AVX2-only kind; the margin is 1.4x the worst seed.
MARGIN = 0.065


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
        lr=1e-2,
        warmup=120,
        threads=1,
        checkpoint_every=STEPS,
        eval_every=STEPS,
    )
    train(cfg, tmp_path / "run", quiet=True)
    entropy, excess = excess_per_token(tmp_path / "run")
    untrained_gap = np.log(Vocab(3).size) - entropy  # a uniform guess over the vocabulary
    assert 0.2 < entropy < 0.6
    assert excess < MARGIN, f"excess {excess:.4f} nats/token over entropy {entropy:.4f}"
    assert excess < untrained_gap / 10

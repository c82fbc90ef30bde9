"""Choose a grammar seed by measurement: train each candidate for a fixed wall-clock budget with
the real training loop, then measure cut0 accuracy (chart-verified) and the excess loss over the
grammar's true entropy on whole strings.

Run: .venv/bin/python benchmarks/calibrate_grammar.py --seeds 2 430 --minutes 5 [--pe rot]
Candidates are drawn with the mini knobs (new-grammar --levels 3 --width 3 --rules 2
--rule-length 2-3 --terminals 3); the baseline printed beside each is the grammar's own entropy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cfglab.data.vocab import Vocab
from cfglab.evaluate.generation import accuracy_report
from cfglab.evaluate.scoring import sequence_log_probs
from cfglab.grammar.chart import Chart
from cfglab.grammar.dsl import save_grammar
from cfglab.grammar.generate import GeneratorKnobs, generate_grammar
from cfglab.grammar.sample import sample
from cfglab.runs import TrainConfig, load_run
from cfglab.train import train

MINI_KNOBS = GeneratorKnobs(levels=3, width=3, rules=(2, 2), rule_length=(2, 3), terminals=3)


class TimeUp(Exception):
    pass


def excess_nats_per_token(run_dir: Path, n: int = 300, seed: int = 99) -> tuple[float, float]:
    """(true entropy per token, model excess per token) on whole fresh strings `BOS x EOS`."""
    run = load_run(run_dir)
    strings = sample(run.grammar, n, seed).strings()
    log_p = Chart(run.grammar).log_inside(strings)
    log_q = sequence_log_probs(run.model, strings, Vocab(len(run.grammar.terminals)))
    tokens = np.array([len(s) + 1 for s in strings])  # x and EOS are predicted
    return float(-log_p.sum() / tokens.sum()), float((log_p - log_q).sum() / tokens.sum())


def calibrate(seed: int, minutes: float, pe: str, steps: int, workdir: Path) -> dict:
    grammar = generate_grammar(MINI_KNOBS, seed, f"mini{seed}")
    path = workdir / f"mini{seed}.cfg"
    save_grammar(grammar, path)
    cfg = TrainConfig(grammar=str(path), pe=pe, layers=2, heads=2, dim=64, context=128, batch=16,
                      steps=steps, lr=3e-3, threads=1, checkpoint_every=500, eval_every=250)
    start = time.perf_counter()

    def budget(event: dict) -> None:
        if time.perf_counter() - start > minutes * 60:
            raise TimeUp

    run_dir = workdir / f"run-{seed}-{pe}"
    try:
        train(cfg, run_dir, quiet=True, callback=budget)
    except TimeUp:
        pass
    acc = accuracy_report(str(run_dir), cut=0, n=300, threads=1)
    entropy, excess = excess_nats_per_token(run_dir)
    return {"seed": seed, "pe": pe, "minutes": round((time.perf_counter() - start) / 60, 2),
            "steps_done": load_run(run_dir).step, "cut0": acc["accuracy"],
            "entropy_per_token": round(entropy, 4), "excess_per_token": round(excess, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=7000, help="schedule length (lr decays to 0)")
    ap.add_argument("--pe", default="rot")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="calibrate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        print(json.dumps(calibrate(seed, args.minutes, args.pe, args.steps, workdir)), flush=True)


if __name__ == "__main__":
    main()

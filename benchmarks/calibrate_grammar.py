"""Choose a grammar seed by measurement: train each candidate for a fixed wall-clock budget with
the real training loop, then measure cut0 accuracy (chart-verified) and the excess loss over the
grammar's true entropy on whole strings.

Run: .venv/bin/python benchmarks/calibrate_grammar.py --seeds 2 430 --minutes 5 [--pe rot]
     .venv/bin/python benchmarks/calibrate_grammar.py --grammar grammars/mini.cfg --pe abs --lr 3e-3
Candidates are drawn with the mini knobs (new-grammar --levels 3 --width 3 --rules 2
--rule-length 2-3 --terminals 3), or one grammar file is given; the baseline printed beside each is
the grammar's own entropy. The recipe flags default to sweeps/quick.yaml's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cfglab.analysis.generate import GeneratorKnobs, generate_grammar
from cfglab.chart.front import Chart
from cfglab.data.vocab import Vocab
from cfglab.evaluate.generation import accuracy_report
from cfglab.evaluate.scoring import sequence_log_probs
from cfglab.grammar.dsl import save_grammar
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


def candidate(seed: int, workdir: Path) -> Path:
    path = workdir / f"mini{seed}.cfg"
    save_grammar(generate_grammar(MINI_KNOBS, seed, f"mini{seed}"), path)
    return path


def calibrate(path: Path, minutes: float, recipe: dict, workdir: Path, seed: int = 0) -> dict:
    cfg = TrainConfig(
        grammar=str(path),
        layers=2,
        dim=64,
        threads=1,
        seed=seed,
        checkpoint_every=500,
        eval_every=250,
        **recipe,
    )
    start = time.perf_counter()

    def budget(event: dict) -> None:
        if time.perf_counter() - start > minutes * 60:
            raise TimeUp

    run_dir = workdir / f"run-{path.stem}-{cfg.pe}-{seed}-{time.time_ns()}"
    with contextlib.suppress(TimeUp):
        train(cfg, run_dir, quiet=True, callback=budget)
    acc = accuracy_report(str(run_dir), cut=0, n=300, threads=1)
    entropy, excess = excess_nats_per_token(run_dir)
    elapsed = round((time.perf_counter() - start) / 60, 2)
    return {
        "grammar": path.stem,
        **recipe,
        "seed": seed,
        "minutes": elapsed,
        "steps_done": load_run(run_dir).step,
        "cut0": acc["accuracy"],
        "entropy_per_token": round(entropy, 4),
        "excess_per_token": round(excess, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", help="grammar seeds to draw candidates from")
    ap.add_argument("--grammar", type=Path, help="calibrate this grammar file instead")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=12000, help="schedule length (lr decays to 0)")
    ap.add_argument("--pe", default="rot")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="calibrate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = {
        "pe": args.pe,
        "heads": args.heads,
        "batch": args.batch,
        "context": args.context,
        "steps": args.steps,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "precision": args.precision,
    }
    paths = [args.grammar] if args.grammar else [candidate(s, workdir) for s in args.seeds or []]
    for path in paths:
        for seed in args.train_seeds:
            print(json.dumps(calibrate(path, args.minutes, recipe, workdir, seed)), flush=True)


if __name__ == "__main__":
    main()

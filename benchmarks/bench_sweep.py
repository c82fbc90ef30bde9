"""Sweep throughput: 2 trials on 2 CPUs through Ray Tune against the same 2 trained in sequence.

Run: .venv/bin/python benchmarks/bench_sweep.py [--steps 2000] [--grammar grammars/mini.cfg]

Measured in one run, on the same trial configs (quick.yaml's model: 2 layers, 64 dims, batch 16,
context 128, one torch thread per trial, no evaluation tasks):
  sequential   cfglab.train.train on each config in turn, in this process (no Ray at all)
  processes    the same two in two plain processes at once (no Ray): the machine's own ceiling
  ray start    ray.init of a local 2-CPU Ray (dashboard off)
  sweep x2     run_sweep, both trials at once (max_concurrent 2)
  sweep x1     run_sweep, one trial at a time: (sweep x1 - sequential) / 2 = overhead per trial
Prints the speed-up sequential / sweep x2 (target >= 1.7) and the overheads.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = """grammar bench
start S
S -> A B C | B C A
A -> B B | C B C
B -> "1" "2" "3" | "3" "1"
C -> "2" "2" | "1" "3" "3"
"""


def sweep_yaml(grammar: Path, storage: Path, name: str, steps: int, concurrent: int) -> Path:
    text = f"""name: {name}
grammars: [{grammar}]
model: {{pe: [abs, rot], size: {{layers: 2, heads: 2, dim: 64}}, context: 128}}
train: {{steps: {steps}, batch: 16, lr: 3.0e-3, checkpoint_every: {max(steps // 4, 1)},
         eval_every: {max(steps // 4, 1)}}}
evaluate: {{enabled: false}}
resources: {{cpu: 1}}
max_concurrent: {concurrent}
storage: {storage}
"""
    path = storage / f"{name}.yaml"
    path.write_text(text)
    return path


def timed_sweep(path: Path) -> float:
    from cfglab.sweep.spec import load_sweep
    from cfglab.sweep.tune import run_sweep

    t = time.perf_counter()
    outcome = run_sweep(load_sweep(path), dashboard=False, say=lambda m: None)
    assert set(outcome.statuses.values()) == {"TERMINATED"}, outcome.statuses
    return time.perf_counter() - t


def sequential(path: Path, out: Path) -> float:
    from cfglab.runs import TrainConfig
    from cfglab.sweep.spec import expand, load_sweep
    from cfglab.train import train

    t = time.perf_counter()
    for trial in expand(load_sweep(path)).trials:
        train(TrainConfig(**trial.train), out / trial.name, quiet=True)
    return time.perf_counter() - t


def _train_one(train_fields: dict, out: str) -> None:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    train(TrainConfig(**train_fields), out, quiet=True)


def processes(path: Path, out: Path) -> float:
    """Both trials at once in two spawned processes: what two cores give without Ray."""
    import multiprocessing as mp

    from cfglab.sweep.spec import expand, load_sweep

    ctx = mp.get_context("spawn")
    trials = expand(load_sweep(path)).trials
    t = time.perf_counter()
    procs = [ctx.Process(target=_train_one, args=(tr.train, str(out / tr.name))) for tr in trials]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps per trial")
    ap.add_argument("--grammar", type=Path, default=ROOT / "grammars" / "mini.cfg")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        tmp = Path(tmp)
        grammar = args.grammar
        if not grammar.exists():
            grammar = tmp / "bench.cfg"
            grammar.write_text(FALLBACK)
        par = sweep_yaml(grammar, tmp, "par", args.steps, 2)
        one = sweep_yaml(grammar, tmp, "one", args.steps, 1)
        print(
            f"grammar {grammar.name}, 2 trials x {args.steps} steps (2 layers, 64 dims, "
            f"batch 16, context 128, 1 thread each), {os.cpu_count()} cores"
        )
        seq_s = sequential(par, tmp / "seq")
        print(f"sequential (plain train, no Ray)   {seq_s:7.1f} s")
        proc_s = processes(par, tmp / "proc")
        print(f"2 plain processes at once (no Ray) {proc_s:7.1f} s")

        import ray

        t = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        init_s = time.perf_counter() - t
        print(f"ray start (local, 2 CPUs)          {init_s:7.1f} s")
        try:
            par_s = timed_sweep(par)
            print(f"sweep, 2 trials at once            {par_s:7.1f} s")
            one_s = timed_sweep(one)
            print(f"sweep, 1 trial at a time           {one_s:7.1f} s")
        finally:
            ray.shutdown()
    print(f"speed-up, sequential / sweep x2:     {seq_s / par_s:5.2f}x  (target >= 1.7)")
    print(f"machine ceiling, sequential / 2 plain processes: {seq_s / proc_s:5.2f}x")
    print(f"overhead per trial (sweep x1 - sequential) / 2: {(one_s - seq_s) / 2:5.1f} s")
    print(f"sweep x2 with ray start, vs sequential: {seq_s / (par_s + init_s):5.2f}x")


if __name__ == "__main__":
    main()

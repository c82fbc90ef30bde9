"""cut0 generation + verification of a 2-layer model on cfg3b: the split and the KV cache's gain.

Run: .venv/bin/python benchmarks/bench_evaluate.py [--run RUN_DIR] [--n 1000] [--threads 2]

Without --run it first trains a 2-layer, 64-dim rot model on cfg3b (--train-steps, a few minutes
on 2 cores) so that generations are cfg3b-sized strings. Measured in the same run:
  evaluate     n cut0 generations (KV cache, finished rows dropped from the batch) + the chart's
               verdicts: the target is <= 120 s for n = 1000 on 2 CPU cores
  baselines    on the first --baseline-n prompts with the same seed: the same loop without the
               cache (every step re-runs the whole prefix). (GPT.generate, once a second loop
               compared here, is gone: cfglab.evaluate.generation.generate is the only one.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cfglab.data.vocab import Vocab
from cfglab.evaluate.context import longest_string, open_run
from cfglab.evaluate.generation import accuracy_at_cut, default_max_length, generate

ROOT = Path(__file__).resolve().parents[1]


def train_small(out: Path, steps: int, threads: int) -> Path:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    cfg = TrainConfig(
        grammar=str(ROOT / "grammars" / "cfg3b.cfg"),
        pe="rot",
        layers=2,
        heads=2,
        dim=64,
        context=256,
        batch=16,
        steps=steps,
        lr=3e-3,
        warmup=50,
        threads=threads,
        checkpoint_every=steps,
        eval_every=steps,
        log_every=50,
    )
    return train(cfg, out, quiet=True)


def tokens_per_s(model, prompts: np.ndarray, vocab: Vocab, max_new: int, **kw) -> tuple[float, int]:
    g = generate(model, prompts, vocab, max_new, seed=11, **kw)
    return g.sampled / g.seconds, g.sampled


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--baseline-n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=600)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="bench-eval-")) / "cfg3b-rot"
        t0 = time.perf_counter()
        train_small(run, args.train_steps, args.threads)
        print(f"trained {run} ({args.train_steps} steps) in {time.perf_counter() - t0:.0f} s")
    ctx = open_run(run, threads=args.threads, device=args.device)
    cap = default_max_length(longest_string(ctx.grammar, 0))
    print(
        f"model: {ctx.config.layers} layers, {ctx.config.dim} dims, pe {ctx.config.pe}, "
        f"step {ctx.step}; torch threads {torch.get_num_threads()}; device {ctx.device}; "
        f"length cap {cap}"
    )

    done = accuracy_at_cut(
        ctx.model,
        ctx.judge,
        args.n,
        0,
        max_length=cap,
        seed=0,
        batch_size=args.batch_size,
        device=ctx.device,
    )
    s, g = done.summary(), done.generations
    total = g.seconds + done.check_s
    print(
        f"\nevaluate: {args.n} cut0 generations, mean length {s['mean_length']:.0f}, "
        f"accuracy {s['accuracy']['rate']:.3f}, ended with EOS {s['ended_with_eos']['rate']:.3f}"
    )
    print(f"  generate {g.seconds:7.1f} s   ({s['tokens_per_s']:,.0f} tokens/s)")
    print(f"  check    {done.check_s:7.1f} s   ({args.n / done.check_s:,.0f} strings/s)")
    print(f"  total    {total:7.1f} s   target <= 120 s: {'met' if total <= 120 else 'MISSED'}")

    vocab, m = ctx.vocab, args.baseline_n
    prompts = np.full((m, 1), vocab.bos, dtype=np.int64)
    bs = args.batch_size
    ours, _ = tokens_per_s(ctx.model, prompts, vocab, cap + 1, batch_size=bs, device=ctx.device)
    nocache, _ = tokens_per_s(
        ctx.model, prompts, vocab, cap + 1, batch_size=bs, use_cache=False, device=ctx.device
    )
    print(f"\nbaselines on {m} prompts (tokens/s):")
    print(f"  KV cache + compaction   {ours:10,.0f}")
    print(f"  no cache (re-run all)   {nocache:10,.0f}   ratio {ours / nocache:6.1f}x")


if __name__ == "__main__":
    main()

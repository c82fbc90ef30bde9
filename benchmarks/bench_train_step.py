"""One step of the real training loop (cfglab.train: data, forward, backward, clip, AdamW) at the
demo's size, variant against variant in the same run.

Variants are built from the same TrainConfig and timed interleaved, round by round (the median
round counts), so a loaded machine slows them alike; ratios are against `base`, the default path.

    .venv/bin/python benchmarks/bench_train_step.py                     # demo size, 1 thread
    .venv/bin/python benchmarks/bench_train_step.py --profile base      # where a step's time goes
    .venv/bin/python benchmarks/bench_train_step.py --device cuda --layers 12 --heads 12 \
        --dim 768 --context 512 --batch 32 --variants base,compile      # paper size (GPU)

Variants: base (the loop as `cfglab train` runs it: precision auto), compile
(TrainConfig.compile = true), bf16 and fp32 (that precision), canon (Canon layers ABCD) or
canonAC (those places), and any of them with `+` (e.g. compile+bf16, canon+fp32).

    .venv/bin/python benchmarks/bench_train_step.py --variants base,canon,base,canon  # Canon
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cfglab.runs import RunDir, TrainConfig
from cfglab.threads import set_threads
from cfglab.train import Trainer, _build, _train_step

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grammar", default=str(ROOT / "grammars" / "mini.cfg"))
    ap.add_argument("--pe", default="rot")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--variants", default="base,compile", help="comma-separated")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=40, help="steps per variant per round")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first")
    ap.add_argument("--profile", default="", help="a variant to profile 20 steps of")
    ap.add_argument("--grammar-chunk", type=int, default=512, help="TrainConfig.chunk_strings")
    return ap.parse_args()


def config_for(args: argparse.Namespace, variant: str) -> TrainConfig:
    parts = set(variant.split("+")) - {"base"}
    return TrainConfig.model_validate(
        dict(
            grammar=args.grammar,
            pe=args.pe,
            layers=args.layers,
            heads=args.heads,
            dim=args.dim,
            context=args.context,
            batch=args.batch,
            steps=10**9,
            lr=6e-3,
            warmup=300,
            threads=args.threads,
            device=args.device,
            precision=next((p for p in ("bf16", "fp32") if p in parts), "auto"),
            compile="compile" in parts,
            canon=next((p[len("canon") :] or "ABCD" for p in parts if p.startswith("canon")), ""),
        )
    )


def build(args: argparse.Namespace, variant: str, where: Path) -> Trainer:
    cfg = config_for(args, variant)
    run = RunDir(where / f"{len(list(where.iterdir()))}-{variant}")
    run.path.mkdir(parents=True)
    return _build(cfg, run)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(t: Trainer, n: int) -> float:
    sync(t.device.type)
    t0 = time.perf_counter()
    for _ in range(n):
        _train_step(t)
    sync(t.device.type)
    return (time.perf_counter() - t0) / n


def profile(t: Trainer, steps: int = 20) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if t.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            _train_step(t)
        sync(t.device.type)
    key = "self_cuda_time_total" if t.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25))


def matmul_peak(n: int = 8192, reps: int = 10) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    names = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [build(args, name, Path(tmp)) for name in names]  # a name twice: an A/A check
        for t in trainers:
            time_steps(t, args.warmup)
        if args.profile:
            profile(trainers[names.index(args.profile)])
            return
        sec: list[list[float]] = [[] for _ in names]
        for _ in range(args.rounds):
            for i, t in enumerate(trainers):
                sec[i].append(time_steps(t, args.steps))
    tokens = args.batch * args.context
    base = statistics.median(sec[0])
    # MFU against a big bf16 matmul timed here (CUDA only): 6N + 12 L d T FLOPs per token
    n_params = sum(p.numel() for p in trainers[0].model.parameters())
    flops = 6 * n_params + 12 * args.layers * args.dim * args.context
    peak = matmul_peak() if args.device == "cuda" else None
    print(
        f"{args.pe} {args.layers}x{args.dim} ctx {args.context} batch {args.batch}, "
        f"{args.device}, {args.threads} thread(s); median of {args.rounds} rounds"
    )
    for name, times in zip(names, sec):
        s = statistics.median(times)
        print(
            f"  {name:16s} {s * 1e3:8.2f} ms/step  {tokens / s / 1e3:8.1f} k tokens/s  "
            f"{base / s:5.2f}x {names[0]}"
            + (f"  MFU {tokens / s * flops / peak:.3f}" if peak else "")
        )
    if peak:
        print(f"  measured bf16 matmul peak {peak / 1e12:.0f} TFLOP/s")


if __name__ == "__main__":
    main()

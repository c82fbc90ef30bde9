"""GPU check: train cfg3f at the paper's size (12 layers, 12 heads, 768 dims, context 512, bf16)
for a fixed time with the real training loop, and print tokens/s and MFU.

Run (on a CUDA machine): python benchmarks/gpu_train_check.py --seconds 180 --pe rot
The baseline in the same run is the GPU's own measured bf16 matmul peak (MFU denominator).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
from bench_train_step import matmul_peak  # this folder is on sys.path when run as a script

from cfglab.runs import RunDir, TrainConfig
from cfglab.train import train

ROOT = Path(__file__).resolve().parents[1]


class TimeUp(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--pe", default="rot")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--grammar", default=str(ROOT / "grammars" / "cfg3f.cfg"))
    ap.add_argument("--compile", action="store_true", help="TrainConfig.compile = true")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = matmul_peak()
    cfg = TrainConfig(
        grammar=args.grammar,
        pe=args.pe,
        layers=12,
        heads=12,
        dim=768,
        context=512,
        batch=args.batch,
        steps=100_000,
        lr=3e-4,
        warmup=100,
        eval_every=50,
        eval_batches=1,
        log_every=10,
        checkpoint_every=100_000,
        device="cuda",
        chunk_strings=4096,
        compile=args.compile,
    )
    start = time.perf_counter()

    def stop(event: dict) -> None:
        if time.perf_counter() - start > args.seconds:
            raise TimeUp

    out = Path(tempfile.mkdtemp()) / "run"
    with contextlib.suppress(TimeUp):
        train(cfg, out, quiet=True, callback=stop)
    metrics = [m for m in RunDir(out).metrics() if "tokens_per_s" in m]
    steady = metrics[len(metrics) // 4 :]  # skip warm-up
    tps = sum(m["tokens_per_s"] for m in steady) / len(steady)
    card = json.loads((out / "model_card.json").read_text())
    n = card["parameters"]
    L, d, T = 12, 768, 512
    flops_per_token = 6 * n + 12 * L * d * T
    losses = [(m["step"], round(m["loss"], 4)) for m in metrics[:: max(len(metrics) // 8, 1)]]
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "pe": args.pe,
                "compile": args.compile,
                "params": n,
                "batch": args.batch,
                "context": T,
                "steps": metrics[-1]["step"],
                "tokens_per_s": round(tps),
                "measured_bf16_matmul_tflops": round(peak / 1e12, 1),
                "model_tflops": round(tps * flops_per_token / 1e12, 1),
                "mfu_vs_measured_peak": round(tps * flops_per_token / peak, 3),
                "mfu_vs_989_tflops": round(tps * flops_per_token / 989e12, 3),
                "loss_curve": losses,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

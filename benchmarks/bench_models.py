"""Training speed of every position encoding against HuggingFace GPT-2 of the same size.

One training step = forward + backward + AdamW step on random tokens. All models are timed in
the same run, interleaved round by round (the median round counts), so a noisy shared machine
slows them alike. Targets (issue 4): abs and rot >= 1.3x HF; rel, pos, uni <= 1.5x rot's cost.

    .venv/bin/python benchmarks/bench_models.py                  # CPU, 2 threads
    .venv/bin/python benchmarks/bench_models.py --precision bf16 # CPU, bf16 autocast for all
    .venv/bin/python benchmarks/bench_models.py --device cuda    # bf16 autocast
    ... --pes rot,rel,rel:eager                                   # rel with FlexAttention off too

MFU = tokens/s * (6N + 12 L d T) / peak, N the parameters without position tables, peak a big
matmul timed in the same run. HF needs `pip install transformers` (the `bench` extra); without
it the HF column is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from cfglab.models import ModelConfig, build_model
from cfglab.models.kernels import causal_blocks
from cfglab.train import uses_bf16


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=16)
    ap.add_argument("--pes", default="abs,rot,rel,pos,uni,mlm,mlm-rel", help="comma-separated")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="as `cfglab train --precision`: auto is fp32 on CPU, bf16 on CUDA",
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--steps", type=int, default=3, help="steps per model per round")
    ap.add_argument("--no-hf", action="store_true", help="skip the HuggingFace baseline")
    ap.add_argument("--compile", action="store_true", help="torch.compile every model (optional)")
    ap.add_argument("--profile", default="", help="comma-separated models to profile one step of")
    return ap.parse_args()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, precision: str):
    if uses_bf16(precision, torch.device(device)):
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compute_dtype(device: str, precision: str) -> torch.dtype:
    """The dtype the matmuls run in: bf16 under autocast, else fp32."""
    return torch.bfloat16 if uses_bf16(precision, torch.device(device)) else torch.float32


def peak_flops(device: str, precision: str) -> float:
    """FLOP/s of a big matmul in the training precision: the denominator of MFU."""
    n = 2048 if device == "cpu" else 8192
    dtype = compute_dtype(device, precision)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


class HFWrapper(nn.Module):
    """GPT2LMHeadModel behind our (idx, targets) -> (logits, loss) call."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=args.vocab,
            n_positions=args.context,
            n_embd=args.dim,
            n_layer=args.layers,
            n_head=args.heads,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
        config._attn_implementation = "sdpa"
        self.hf = GPT2LMHeadModel(config)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        logits = self.hf(input_ids=idx).logits
        return logits, F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1)
        )

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - (self.hf.transformer.wpe.weight.numel() if non_embedding else 0)


def make_models(args: argparse.Namespace) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {}
    if not args.no_hf:
        try:
            models["hf-gpt2"] = HFWrapper(args)
        except ImportError:
            print(
                "transformers is not installed: skipping the HF baseline (pip install transformers)"
            )
    for name in args.pes.split(","):
        # "rel:eager" / "pos:eager": FlexAttention off (the blocked / explicit path, as on CPU)
        spec, _, path = name.partition(":")
        pe, _, mlm_pe = spec.partition("-")  # "mlm-rel": the encoder with rel attention
        cfg = ModelConfig(
            vocab_size=args.vocab,
            context=args.context,
            n_layer=args.layers,
            n_head=args.heads,
            n_embd=args.dim,
            pe=pe,
            mlm_pe=mlm_pe or "abs",
        )
        models[name] = build_model(cfg)
        if path == "eager":
            for mod in models[name].modules():
                if hasattr(mod, "flex"):
                    mod.flex = False
    return models


def make_step(model: nn.Module, args: argparse.Namespace) -> Callable[[], None]:
    model.to(args.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.98), weight_decay=0.1)
    fwd = torch.compile(model) if args.compile else model
    shape = (args.batch, args.context)
    idx = torch.randint(args.vocab, shape, device=args.device)
    targets = torch.randint(args.vocab, shape, device=args.device)

    def step() -> None:
        with autocast(args.device, args.precision):
            _, loss = fwd(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def time_steps(step: Callable[[], None], n: int, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t) / n


def distance_core(args: argparse.Namespace) -> None:
    """pos/uni core, explicit (nh, T, T) @ v against SDPA with the bias as a float attn_mask."""
    B, H, T, hs = args.batch, args.heads, args.context, args.dim // args.heads
    dev = args.device
    w = torch.zeros(H, T, device=dev, requires_grad=True)
    v = torch.randn(B, H, T, hs, device=dev, requires_grad=True)
    d = torch.arange(T, device=dev)[:, None] - torch.arange(T, device=dev)[None, :]
    zeros = torch.zeros(B, H, T, hs, device=dev)

    def bias() -> torch.Tensor:
        return w[:, d.clamp(min=0)].masked_fill(d < 0, float("-inf"))  # (H, T, T)

    paths = {
        "explicit": lambda: (F.softmax(bias(), -1) @ v).sum().backward(),
        "sdpa+bias": lambda: (
            F.scaled_dot_product_attention(zeros, zeros, v, attn_mask=bias()).sum().backward()
        ),
    }
    for name, fn in paths.items():
        with autocast(dev, args.precision):
            time_steps(fn, 2, dev)
            sec = min(time_steps(fn, 5, dev) for _ in range(3))
        print(f"  distance attention core, {name:<10} fwd+bwd {sec * 1e3:7.2f} ms / layer")


def causal_core(args: argparse.Namespace) -> None:
    """abs/rot's core on a whole causal window: SDPA against causal_blocks (what bf16 on CPU
    runs), from q, k, v cast to the training precision."""
    B, H, T, hs = args.batch, args.heads, args.context, args.dim // args.heads
    dtype = compute_dtype(args.device, args.precision)
    q, k, v = (
        torch.randn(B, H, T, hs, device=args.device, dtype=dtype, requires_grad=True)
        for _ in range(3)
    )
    paths = {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward(),
        "blocks": lambda: causal_blocks(q, k, v).sum().backward(),
    }
    for name, fn in paths.items():
        time_steps(fn, 2, args.device)
        sec = min(time_steps(fn, 5, args.device) for _ in range(3))
        print(
            f"  causal attention core ({str(dtype)[6:]}), {name:<7} fwd+bwd "
            f"{sec * 1e3:7.2f} ms / layer"
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = make_models(args)
    steps = {name: make_step(m, args) for name, m in models.items()}
    for step in steps.values():  # warm-up (allocator, compile, threads)
        time_steps(step, 2, args.device)
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rounds[name].append(time_steps(step, args.steps, args.device))
    peak = peak_flops(args.device, args.precision)
    report(args, models, {n: statistics.median(r) for n, r in rounds.items()}, peak)
    distance_core(args)
    causal_core(args)
    for name in filter(None, args.profile.split(",")):
        profile(name, steps[name])


def profile(name: str, step: Callable[[], None]) -> None:
    """Where one model's training step spends its time (the top operators)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(f"== one training step of {name}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def report(args, models: dict[str, nn.Module], sec: dict[str, float], peak: float) -> None:
    tokens = args.batch * args.context
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"device {where}, threads {torch.get_num_threads()}, torch {torch.__version__}; "
        f"{args.layers} layers, {args.heads} heads, {args.dim} dims, context {args.context}, "
        f"batch {args.batch}, precision {args.precision}; peak {peak / 1e9:.1f} GFLOP/s (matmul)"
    )
    print(f"{'model':<9}{'params':>10}{'tokens/s':>11}{'vs HF':>8}{'cost/rot':>10}{'MFU':>8}")
    for name, s in sec.items():
        n = models[name].num_params(non_embedding=True)
        flops = 6 * n + 12 * args.layers * args.dim * args.context
        tps = tokens / s
        vs_hf = sec["hf-gpt2"] / s if "hf-gpt2" in sec else float("nan")
        cost = s / sec["rot"] if "rot" in sec else float("nan")
        print(
            f"{name:<9}{n:>10,}{tps:>11,.0f}{vs_hf:>7.2f}x{cost:>9.2f}x{tps * flops / peak:>8.1%}"
        )


if __name__ == "__main__":
    main()

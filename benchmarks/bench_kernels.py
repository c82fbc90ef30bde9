"""Do `_Skew` and `_Boxes` (cfglab/models/kernels.py) pay for themselves? rel's training step
(forward + backward, whole model) with them against plain views and slices with autograd's own
backward, in the same run, interleaved round by round (median round), one thread.

    .venv/bin/python benchmarks/bench_kernels.py                      # the sizes below
    .venv/bin/python benchmarks/bench_kernels.py --sizes 2x64x64x32    # layers x dim x ctx x batch

Default sizes: sweeps/cpu.yaml's rel (2 layers, 64 dims, 4 heads, context 64, batch 32: the
whole-window skews, no blocks at this context) and a larger CPU size (4 layers, 128 dims, 4
heads, context 256, batch 16: the blocked path, where `_Boxes` cuts p2c).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from unittest import mock

import torch

from cfglab.models import ModelConfig, build_model, kernels
from cfglab.models import attention as attention_module
from cfglab.models.kernels import skew_view


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2x64x64x32,4x128x256x16")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


class PlainSkew:
    """_Skew without its backward: the same views, autograd's slicing backward."""

    @staticmethod
    def apply(x: torch.Tensor, drop: int, width: int, ncols: int) -> torch.Tensor:
        return skew_view(x, drop, width, ncols)


class PlainBoxes:
    """_Boxes without its backward: one slice per box, autograd sums their gradients."""

    @staticmethod
    def apply(
        x: torch.Tensor,
        boxes: tuple[tuple[int, int, int], ...],
        view: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        y = view(x) if view else x
        return tuple(y[..., r0:r1, :c1] for r0, r1, c1 in boxes)


@contextlib.contextmanager
def plain() -> Iterator[None]:
    with (
        mock.patch.object(kernels, "_Skew", PlainSkew),
        mock.patch.object(attention_module, "_Boxes", PlainBoxes),
    ):
        yield


def make_step(size: str, precision: str) -> Callable[[], None]:
    layers, dim, context, batch = (int(v) for v in size.split("x"))
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=16, context=context, n_layer=layers, n_head=4, n_embd=dim, pe="rel"
    )
    model = build_model(cfg).train()
    x = torch.randint(0, 16, (batch, context))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, loss = model(x, x)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def timed(step: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def check_equal(step_size: str) -> None:
    """Both ways give the same gradients (the benchmark compares like with like)."""
    layers, dim, context, _ = (int(v) for v in step_size.split("x"))
    grads = []
    for ctx in (contextlib.nullcontext(), plain()):
        torch.manual_seed(0)
        cfg = ModelConfig(
            vocab_size=16, context=context, n_layer=layers, n_head=4, n_embd=dim, pe="rel"
        )
        model = build_model(cfg).train()
        x = torch.randint(0, 16, (2, context))
        with ctx:
            _, loss = model(x, x)
            grads.append(torch.autograd.grad(loss, list(model.parameters())))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"rel training step (fwd + bwd), {args.precision}, {args.threads} thread(s), "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    for size in args.sizes.split(","):
        check_equal(size)
        step = make_step(size, args.precision)
        kernel, slicing = [], []
        timed(step, 2)
        with plain():
            timed(step, 2)
        for _ in range(args.rounds):
            kernel.append(timed(step, args.steps))
            with plain():
                slicing.append(timed(step, args.steps))
        k, s = statistics.median(kernel), statistics.median(slicing)
        print(
            f"  {size:16s} with _Skew/_Boxes {k * 1e3:8.2f} ms   plain slicing {s * 1e3:8.2f} ms"
            f"   plain / kernels = {s / k:5.3f}"
        )


if __name__ == "__main__":
    main()

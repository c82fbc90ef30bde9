"""One training run: a TrainConfig in, a run directory out (see runs.py for its layout).

Resumable exactly: a checkpoint holds the model, the optimizer, the data stream's state and every
RNG state, so a run killed at any moment and resumed reproduces the uninterrupted loss curve on
CPU. The training code never imports Ray; sweeps wrap `train` and listen through `callback`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfglab.analysis.graph import require_string_length
from cfglab.compiler import cxx_compiler
from cfglab.data.corpus import VALIDATION_WORKER, NoiseConfig, StreamState, TokenStream
from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, find_rule
from cfglab.grammar.dsl import load_grammar
from cfglab.models import build_model
from cfglab.runs import (
    RunDir,
    TrainConfig,
    checkpoint_step,
    latest_checkpoint,
    model_config_for,
    save_checkpoint,
    save_weights,
    write_atomic,
)
from cfglab.threads import set_threads

Callback = Callable[[dict[str, Any]], None]


@dataclass
class Trainer:
    """The pieces of a run that live between steps."""

    config: TrainConfig
    run: RunDir
    grammar: Grammar
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stream: TokenStream
    mask_rng: torch.Generator
    device: torch.device
    bf16: bool = False  # under bf16 autocast: `precision` resolved once for the device
    compiled: bool = False
    step: int = 0


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    callback: Callback | None = None,
    extend_to: int | None = None,
) -> Path:
    """Train to `config.steps` (continuing from the last checkpoint when `resume`).

    `extend_to` (with `resume`): train the run on to this many steps in all, more than its own
    `steps`, finished or not; see `extend_run` for what becomes of the learning-rate schedule."""
    run = RunDir(Path(out).resolve())
    config = _prepare_run_dir(run, config, resume, extend_to)
    set_threads(config.threads)
    trainer = _build(config, run)
    if resume:
        _restore(trainer)
    elif not run.card_path.exists():
        _write_card(trainer)
    _loop(trainer, quiet, callback)
    return run.path


def _prepare_run_dir(
    run: RunDir, config: TrainConfig, resume: bool, extend_to: int | None = None
) -> TrainConfig:
    if extend_to is not None and not (resume and run.exists()):
        raise CfglabError(
            f"--extend-steps continues a run, and {run.path} "
            + ("holds one: add --resume" if run.exists() else "holds none to extend")
        )
    config = config.model_copy(update={"grammar": str(Path(config.grammar).resolve())})
    # a bad grammar or rule, or strings past the length bound, fail before anything is written
    grammar = require_string_length(load_grammar(config.grammar))
    if config.holdout_rule:
        find_rule(grammar, config.holdout_rule)
    if run.exists():
        if not resume:
            raise CfglabError(
                f"{run.path} already holds a run: pass --resume to continue it, "
                "or choose another --out"
            )
        saved = run.read_config()
        if extend_to is not None and config.steps == extend_to:  # --steps TOTAL said it twice
            config = config.model_copy(update={"steps": saved.steps})
        _refuse_changes(run, saved, config)
        if extend_to is not None:
            saved = extend_run(run, saved, extend_to)
        return saved.model_copy(update={"threads": config.threads, "device": config.device})
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    return config


def _refuse_changes(run: RunDir, saved: TrainConfig, config: TrainConfig) -> None:
    """A resumed run trains with its own config: say which fields were given differently."""
    differ = config_differences(saved, config)
    if not differ:
        return
    longer = config.steps > saved.steps
    raise CfglabError(
        f"{run.path}: --resume with a different configuration than the run's "
        f"config.yaml: {'; '.join(differ)}; resume with the same one"
        + (
            f" (to train it on to {config.steps} steps: --extend-steps {config.steps})"
            if longer
            else ""
        )
    )


def extend_run(run: RunDir, saved: TrainConfig, total: int) -> TrainConfig:
    """The run's config with `steps` raised to `total`, written to its config.yaml and noted in
    its model card (`extensions`), so that a later plain --resume goes on to `total` too.

    The learning-rate schedule is re-stretched to the new total: from the checkpoint on, each
    step gets the rate a run of `total` steps has at that step (`learning_rate` with the new
    `steps`), so it decays to min_lr at `total` instead of at the old end; a finished run thus
    restarts from the rate of the longer schedule at its step (e.g. half-way down from lr for
    2x the steps), with no second warm-up. The steps before the checkpoint keep the schedule
    they were trained with, so an extended run is not the run trained to `total` from scratch;
    resuming it is exact as for any run (model, optimizer, data stream and RNGs restored)."""
    if total <= saved.steps:
        raise CfglabError(
            f"{run.path}: --extend-steps {total} would not extend the run, which has "
            f"{saved.steps} steps; give the new total, more than {saved.steps}"
        )
    extended = saved.model_copy(update={"steps": total})
    run.write_config(extended)
    if run.card_path.exists():
        card = json.loads(run.card_path.read_text())
        kept = run.checkpoints()
        card.setdefault("extensions", []).append(
            {
                "steps_before": saved.steps,
                "steps": total,
                "from_step": checkpoint_step(kept[-1]) if kept else 0,
                "schedule": "re-stretched to the new total from the checkpoint",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        card["train"]["steps"] = total
        write_atomic(run.card_path, json.dumps(card, indent=2).encode())
    return extended


def config_differences(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """`--field: run has X, given Y` for each field (but threads and device, which may change
    between sessions) where `given` differs from the run's stored config."""
    a, b = saved.model_dump(), given.model_dump()
    return [
        f"--{k.replace('_', '-')}: run has {a[k]!r}, given {b[k]!r}"
        for k in a
        if k not in ("threads", "device") and a[k] != b.get(k)
    ]


def context_warning(grammar: Grammar, context: int) -> str | None:
    """Why `context` cannot hold the grammar's strings, with the fix; None when it can.

    A window holds BOS x EOS, so a string of n tokens needs n + 2; a model whose context holds
    no whole string can generate none, and every evaluation then fails or reports 0."""
    from cfglab.analysis.graph import shortest

    n = shortest(grammar).get(grammar.start)
    if n is None or n + 2 <= context:
        return None
    return (
        f"--context {context} cannot hold any string of this grammar: its shortest has {n} "
        f"tokens, {n + 2} with BOS and EOS; generation and evaluation need whole strings — "
        f"use --context {n + 2} or more (cfglab check GRAMMAR shows the length distribution)"
    )


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CfglabError("device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def compiles(config: TrainConfig, device: torch.device) -> bool:
    """Whether the model is torch.compiled: `compile` asked for, and on CPU a C++ compiler there
    for inductor's kernels. Without one the run trains eagerly (and its card says so) instead of
    failing at its first step: a sweep file written on one machine runs on another."""
    if not config.compile:
        return False
    if device.type == "cpu" and not cxx_compiler():
        warnings.warn(
            "compile: true, but no C++ compiler (CXX, g++ or clang++) is on PATH for "
            "torch.compile's CPU kernels; training eagerly",
            stacklevel=2,
        )
        return False
    return True


def _build(config: TrainConfig, run: RunDir) -> Trainer:
    grammar = load_grammar(config.grammar)
    holdout = find_rule(grammar, config.holdout_rule) if config.holdout_rule else None
    torch.manual_seed(config.seed)
    device = _device(config.device)
    model = build_model(model_config_for(config, len(grammar.terminals))).to(device)
    compiled = compiles(config, device)
    if compiled:
        model.compile()  # in place: state_dict keys and checkpoints stay those of the eager model
    stream = TokenStream(
        grammar,
        config.seed,
        noise=NoiseConfig(config.noise_fraction, config.noise_rate),
        holdout_rule=holdout,
        chunk_strings=config.chunk_strings,
        aligned=config.align_windows,
    )
    mask_rng = torch.Generator().manual_seed(config.seed + 1)
    return Trainer(
        config,
        run,
        grammar,
        model,
        _optimizer(model, config),
        stream,
        mask_rng,
        device,
        bf16=uses_bf16(config.precision, device),
        compiled=compiled,
    )


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings of size-1 shape (GPT practice)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused: one kernel for every tensor, on CUDA and on CPU alike (on CPU 2x faster than the
    # per-tensor loop; its numerics differ from the loop's in the last bits, so CPU runs from
    # before it do not reproduce to the digit: benchmarks/RESULTS.md, "The training loop").
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=bool(params) or None
    )


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then linear decay from lr to min_lr at the last step (`config.steps`: an
    extended run's new total, so its schedule is re-stretched, see `extend_run`)."""
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(config.steps - config.warmup, 1)
    frac = min(max(step - config.warmup, 0) / span, 1.0)
    return config.lr + (config.min_lr - config.lr) * frac


# --- checkpoints -------------------------------------------------------------------------------


def _state(t: Trainer) -> dict[str, Any]:
    return {
        "step": t.step,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "stream": {"chunk": t.stream.state.chunk, "position": t.stream.state.position},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "mask_rng": t.mask_rng.get_state(),
        "config": t.config.model_dump(),
    }


def _checkpoint(t: Trainer) -> Path:
    _save_train_strings(t)
    path = save_checkpoint(t.run, t.step, _state(t), t.config.keep_checkpoints)
    if t.step == t.config.steps:
        mcfg = model_config_for(t.config, len(t.grammar.terminals))
        save_weights(t.run, t.model, mcfg, t.step, t.grammar)
    return path


def _restore(t: Trainer) -> None:
    found = latest_checkpoint(t.run)
    if found is None:
        return  # killed before the first checkpoint: start from scratch
    _, state = found
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.stream.state = StreamState(**state["stream"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    t.mask_rng.set_state(state["mask_rng"])
    t.step = int(state["step"])
    _truncate_metrics(t.run, t.step)
    t.stream.seen_hashes = [t.run.train_string_hashes()]


def _truncate_metrics(run: RunDir, step: int) -> None:
    """Drop metrics logged after the checkpoint: the resumed run logs them again, identically."""
    kept = [m for m in run.metrics() if m["step"] <= step]
    write_atomic(run.metrics_path, "".join(json.dumps(m) + "\n" for m in kept).encode())


def _save_train_strings(t: Trainer) -> None:
    hashes = np.unique(np.concatenate(t.stream.seen_hashes or [np.zeros(0, np.uint64)]))
    t.stream.seen_hashes = [hashes]
    tmp = t.run.train_strings_path.with_name("train_strings.tmp.npy")
    np.save(tmp, hashes)
    os.replace(tmp, t.run.train_strings_path)


def _write_card(t: Trainer) -> None:
    from cfglab.models import describe

    mcfg = model_config_for(t.config, len(t.grammar.terminals))
    card = {
        "parameters": sum(p.numel() for p in t.model.parameters()),
        "parameters_by_part": describe(mcfg),
        "model": mcfg.to_dict(),
        "train": t.config.model_dump(),
        "grammar": {"name": t.grammar.name, "path": t.config.grammar},
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "device": str(t.device),
        "autocast": "bf16" if t.bf16 else "none (fp32)",
        "compiled": t.compiled,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(t.run.card_path, json.dumps(card, indent=2).encode())


def _git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- the loop ----------------------------------------------------------------------------------


def _batch(t: Trainer, stream: TokenStream) -> tuple[torch.Tensor, torch.Tensor]:
    """The next batch on the device. On CUDA the copy is asynchronous (pinned host memory): with
    no host sync in the step, the host samples batch k + 1 while the GPU still runs step k."""
    xs, ys, _ = stream.batch(t.config.batch, t.config.context)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    if t.config.pe == "mlm":
        from cfglab.models.encoder import mask_tokens

        vocab = Vocab(len(t.grammar.terminals))
        x, y = mask_tokens(
            x,
            vocab.mask,
            vocab.n_terminals,
            t.mask_rng,
            t.config.mask_prob,
            maskable=x < vocab.n_terminals,
        )  # terminals only, never BOS/EOS
    if t.device.type == "cuda":
        return x.pin_memory().to(t.device, non_blocking=True), y.pin_memory().to(
            t.device, non_blocking=True
        )
    return x.to(t.device), y.to(t.device)


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: `precision` resolved for the device. auto is
    bf16 on CUDA and on CPUs that compute bf16 in hardware, fp32 elsewhere."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


# x86 AVX512-BF16 and AMX-BF16, Arm's BF16 extension, as Linux names them in /proc/cpuinfo
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 instructions. There bf16 autocast trains the demo's models
    1.3x faster than fp32 and reached the same held-out excess and cut0 over the full demo
    schedule (benchmarks/RESULTS.md, "bf16 on the CPU"); without them bf16 is emulated and slow.
    Where the flags cannot be read (not Linux), fp32."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return False
    flags = {
        flag
        for line in lines
        if line.startswith(("flags", "Features"))
        for flag in line.partition(":")[2].split()
    }
    return not flags.isdisjoint(NATIVE_BF16_FLAGS)


def _loss(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=t.bf16):
        _, loss = t.model(x, y)
    return loss


def _train_step(t: Trainer) -> torch.Tensor:
    """One optimizer step; returns the loss as a detached tensor (reading it is a host sync, so
    the loop reads it on logged steps only)."""
    lr = learning_rate(t.config, t.step)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    x, y = _batch(t, t.stream)
    loss = _loss(t, x, y)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if t.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.config.grad_clip)
    t.optimizer.step()
    t.step += 1
    return loss.detach()


@torch.no_grad()
def held_out_loss(t: Trainer) -> float:
    """Loss on fixed fresh strings from a stream no training worker reads."""
    # The mask RNG and the global RNG must not be advanced by evaluation (exact resume).
    val = TokenStream(
        t.grammar,
        t.config.seed,
        worker=VALIDATION_WORKER,
        chunk_strings=t.config.chunk_strings,
        aligned=t.config.align_windows,
    )
    saved_mask, saved_rng = t.mask_rng.get_state(), torch.get_rng_state()
    t.mask_rng.manual_seed(t.config.seed + 2)
    t.model.eval()
    losses = [float(_loss(t, *_batch(t, val))) for _ in range(t.config.eval_batches)]
    t.model.train()
    t.mask_rng.set_state(saved_mask)
    torch.set_rng_state(saved_rng)
    return float(np.mean(losses))


def _loop(t: Trainer, quiet: bool, callback: Callback | None) -> None:
    from cfglab.progress import training_progress

    cfg = t.config
    t.model.train()
    tokens_per_step = cfg.batch * cfg.context
    board = _board(t)
    with (
        training_progress(cfg.steps, t.step, quiet) as progress,
        open(t.run.metrics_path, "a") as metrics,
    ):
        clock, window = time.perf_counter(), 0
        while t.step < cfg.steps:
            loss_t = _train_step(t)
            window += 1
            record: dict[str, Any] = {"step": t.step}
            if t.step % cfg.log_every == 0 or t.step == cfg.steps:
                # A non-finite loss poisons the weights, so every later loss is non-finite too:
                # checking the logged steps catches it without a host sync on every step.
                loss = float(loss_t)
                if not math.isfinite(loss):
                    raise CfglabError(f"loss became {loss} by step {t.step}: lower --lr")
                now = time.perf_counter()
                record.update(
                    loss=loss,
                    lr=learning_rate(cfg, t.step - 1),
                    tokens_per_s=window * tokens_per_step / max(now - clock, 1e-9),
                )
                clock, window = now, 0
            if t.step % cfg.eval_every == 0 or t.step == cfg.steps:
                record["val_loss"] = held_out_loss(t)
            if len(record) > 1:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                progress.update(t.step, record)
                if board is not None:
                    _board_log(board, t, record)
            if t.step % cfg.checkpoint_every == 0 or t.step == cfg.steps:
                metrics.flush()
                record["checkpoint"] = str(_checkpoint(t))
            if callback and ("val_loss" in record or "checkpoint" in record):
                callback({**record, "done": t.step == cfg.steps, "run_dir": str(t.run.path)})
    if board is not None:
        board.close()


# --- TensorBoard (config.tensorboard) ----------------------------------------------------------

_BOARD_SCALARS = ("loss", "val_loss", "lr", "tokens_per_s")


def _board(t: Trainer) -> Any:
    """A tensorboardX writer in RUN_DIR/tensorboard; a resumed run purges the steps after its
    checkpoint (they are logged again, identically, as metrics.jsonl is)."""
    if not t.config.tensorboard:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(t.run.path / "tensorboard"), purge_step=t.step + 1 if t.step else None)


def _board_log(board: Any, t: Trainer, record: dict[str, Any]) -> None:
    for key in _BOARD_SCALARS:
        if key in record:
            board.add_scalar(f"train/{key}", record[key], global_step=t.step)
    if t.step == t.config.steps:  # the run's config as hparams, with its final figures
        params = {
            k: v for k, v in t.config.model_dump().items() if isinstance(v, (str, bool, int, float))
        }
        final = {f"final/{k}": record[k] for k in ("loss", "val_loss") if k in record}
        board.add_hparams(params, final, name="hparams", global_step=t.step)
    board.flush()

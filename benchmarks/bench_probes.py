"""Speed of the probes and attention statistics on a 2-layer model (target: one layer ≤ 60 s on CPU).

Timed in one run, on the same strings and hidden states:
  baseline     a plain per-token linear probe (every target, same optimiser steps)
  probe        the paper's whole-string multi-head probe + the NT-end local probes, one layer
  layer        everything `probe_run` does per layer: probe, control task, untrained model
  probe_run    the whole `probe_run` (all layers, ceilings, the three output baselines), and
               `attention_run`

    .venv/bin/python benchmarks/bench_probes.py                    # trains a cfg3b model first
    .venv/bin/python benchmarks/bench_probes.py --run RUN_DIR --threads 2
    .venv/bin/python benchmarks/bench_probes.py --device cuda      # the same on a GPU

Without --run it trains 2 layers × 2 heads × 64 dims (rot, context 512) on grammars/cfg3b.cfg for
--train-steps steps; probe speed does not depend on how well the model learned.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cfglab.interpret.attention import attention_run
from cfglab.interpret.probes import (
    ProbeSettings,
    control_labels,
    fit_probes,
    make_probe_data,
    model_features,
    probe_run,
    probe_strings,
)
from cfglab.runs import load_run, untrained_model

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="an existing run directory (default: train one)")
    ap.add_argument("--grammar", default=str(ROOT / "grammars" / "cfg3b.cfg"))
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--n", type=int, default=ProbeSettings.n_train)
    ap.add_argument("--n-test", type=int, default=ProbeSettings.n_test)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--skip-full", action="store_true", help="skip the whole probe_run timing")
    return ap.parse_args()


def train_model(grammar: str, steps: int, out: Path, threads: int, device: str) -> Path:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    cfg = TrainConfig(
        grammar=grammar,
        pe="rot",
        layers=2,
        heads=2,
        dim=64,
        context=512,
        batch=8,
        steps=steps,
        lr=3e-3,
        threads=threads,
        checkpoint_every=steps,
        device=device,
    )
    return train(cfg, out, quiet=True)


def linear_baseline(features: torch.Tensor, data, settings: ProbeSettings) -> float:
    """Per-token linear probe for every target, the same number of Adam steps; held-out acc."""
    torch.manual_seed(0)
    x = features.float()
    x = (x - x[: data.train_tokens].mean(0)) / (x[: data.train_tokens].std(0) + 1e-6)
    y = torch.from_numpy(data.labels)
    head = nn.Linear(x.size(1), sum(data.classes))
    opt = torch.optim.Adam(head.parameters(), lr=settings.lr)
    n_batches = math.ceil(data.n_train / settings.batch)
    steps = max(settings.epochs, math.ceil(settings.min_steps / n_batches)) * n_batches
    bounds = data.offsets[np.linspace(0, data.n_train, n_batches + 1).astype(int)]
    for s in range(steps):
        lo, hi = int(bounds[s % n_batches]), int(bounds[s % n_batches + 1])
        loss = sum(
            F.cross_entropy(o[yg >= 0], yg[yg >= 0])
            for o, yg in zip(head(x[lo:hi]).split(data.classes, -1), y[:, lo:hi])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = head(x[data.train_tokens :]).split(data.classes, -1)
        yt = y[:, data.train_tokens :]
        return float(
            np.mean([(o.argmax(-1) == yg)[yg >= 0].float().mean() for o, yg in zip(out, yt)])
        )


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tmp = None
    if args.run is None:
        tmp = tempfile.TemporaryDirectory()
        args.run, secs, _ = timed(
            lambda: train_model(
                args.grammar, args.train_steps, Path(tmp.name) / "run", args.threads, args.device
            )
        )
        print(f"trained {args.train_steps} steps in {secs:.1f} s")
    loaded = load_run(args.run, device=args.device)
    cfg = ProbeSettings(n_train=args.n, n_test=args.n_test)
    samples, _ = probe_strings(loaded.grammar, args.n + args.n_test, loaded.config.context, 0)
    data = make_probe_data(samples, args.n)
    T = len(loaded.grammar.terminals)
    anc = [g for g, t in enumerate(data.targets) if t.kind == "ancestor"]
    print(
        f"run {args.run} (step {loaded.step}), layer {args.layer}, {args.n}+{args.n_test} "
        f"strings of mean length {np.diff(data.offsets).mean():.0f}, {len(data.targets)} "
        f"targets, torch threads {args.threads}, device {args.device}"
    )

    feats, t_feat, _ = timed(
        lambda: model_features(
            loaded.model, data.tokens, data.offsets, T, args.layer, device=args.device
        )
    )
    base_acc, t_base, c_base = timed(lambda: linear_baseline(feats, data, cfg))
    scores, t_probe, c_probe = timed(lambda: fit_probes(feats, data, cfg, False, diagonal=anc))
    ctrl = control_labels(data, cfg.control_ngram, 0)
    _, t_ctrl, c_ctrl = timed(lambda: fit_probes(feats, data, cfg, False, ctrl, ()))
    rand = untrained_model(loaded.config, T, seed=1).to(args.device)
    rfeats, t_rfeat, _ = timed(
        lambda: model_features(rand, data.tokens, data.offsets, T, args.layer, device=args.device)
    )
    _, t_rand, c_rand = timed(lambda: fit_probes(rfeats, data, cfg, False, diagonal=anc))
    layer_total = t_feat + t_probe + t_ctrl + t_rfeat + t_rand

    print(f"hidden states of one layer        {t_feat:7.1f} s")
    print(
        f"baseline: per-token linear probe  {t_base:7.1f} s (cpu {c_base:.1f} s), "
        f"mean held-out acc {base_acc:.3f}"
    )
    print(
        f"multi-head + diagonal probe       {t_probe:7.1f} s (cpu {c_probe:.1f} s) = "
        f"{t_probe / t_base:.1f}x the baseline; mean acc {np.nanmean(scores.all):.3f}"
    )
    print(f"control task probe                {t_ctrl:7.1f} s (cpu {c_ctrl:.1f} s)")
    print(f"untrained model: states + probe   {t_rfeat + t_rand:7.1f} s (cpu {c_rand:.1f} s)")
    print(
        f"one layer, probe + all controls   {layer_total:7.1f} s  (target ≤ 60 s for the "
        f"probe: {'OK' if t_feat + t_probe <= 60 else 'OVER'})"
    )
    _, t_one, _ = timed(
        lambda: probe_run(
            str(args.run),
            layers=[args.layer],
            n_strings=args.n,
            n_test=args.n_test,
            threads=args.threads,
            device=args.device,
            plots=False,
        )
    )
    print(
        f"probe_run, layer {args.layer} only, whole-string probe with every control (untrained, "
        f"control task, ceilings, 3 output baselines): {t_one:.1f} s  (target ≤ 60 s: "
        f"{'OK' if t_one <= 60 else 'OVER'})"
    )
    if not args.skip_full:
        r, t_run, _ = timed(
            lambda: probe_run(
                str(args.run),
                n_strings=args.n,
                n_test=args.n_test,
                threads=args.threads,
                device=args.device,
            )
        )
        print(
            f"probe_run, layers {r['layers']} + output-only, with plots: {t_run:.1f} s "
            f"(per layer {r['seconds']['per_layer']})"
        )
        a, t_att, _ = timed(
            lambda: attention_run(
                str(args.run), n_strings=64, threads=args.threads, device=args.device
            )
        )
        print(f"attention_run, 64 strings, with plots: {t_att:.1f} s")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

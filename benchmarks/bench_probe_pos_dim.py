"""Issue 20's off-diagonal task (label at i = token at i + 3) through `fit_probes` at d′ 16, 256
and 1024: the held-out accuracy (chance 1/3) and the mean self-weight w_{i→i} at init.

Two recipes: the CPU one (4 heads, Adam lr 3e-2, 200 steps, batch 16) and sweeps/pe.yaml's own
settings cut to 1,000 steps (16 heads, AdamW lr 3e-3, batch 60, 900 strings).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_probe_pos_dim.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfglab.interpret.probe_fit import MultiHeadProbe, ProbeSettings, fit_probes  # noqa: E402
from cfglab.interpret.probes import probe_settings  # noqa: E402
from tests.test_probes import offdiagonal  # noqa: E402


def self_weight(heads: int, pos_dim: int, length: int = 30) -> float:
    probe = MultiHeadProbe(3, [3], heads, pos_dim, length, causal=False)
    with torch.no_grad():
        return float(probe.weights(0, length).diagonal(dim1=1, dim2=2).mean())


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = yaml.safe_load((ROOT / "sweeps" / "pe.yaml").read_text())
    pe = {**spec["probes"]["options"]["settings"], "steps": 1000}
    for name, n, make in (
        ("cpu", 240, lambda d, n_train: ProbeSettings(heads=4, pos_dim=d, lr=3e-2, steps=200)),
        (
            "pe.yaml",
            900,
            lambda d, n_train: probe_settings({**pe, "pos_dim": d, "n_train": n_train}),
        ),
    ):
        data, x = offdiagonal(n=n)
        for d in (16, 256, 1024):
            cfg = make(d, data.n_train)
            t0 = time.perf_counter()
            acc = fit_probes(x, data, cfg, causal=False).all[0]
            print(
                f"{name:8s} d'={d:5d} heads={cfg.heads:2d} steps={cfg.steps:5d} "
                f"self-weight at init {self_weight(cfg.heads, d):.3f}  accuracy {acc:.3f}  "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()

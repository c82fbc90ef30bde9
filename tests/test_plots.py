"""Plots: written, of the size their panel grid implies, and not blank."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from cfglab.interpret.attention import AttentionStats
from cfglab.interpret.plots import (
    DPI,
    PANEL,
    attention_boundary_grid,
    attention_distance_grid,
    plot_attention_boundaries,
    plot_attention_distance,
    plot_probe,
    probe_grid,
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def check_image(path: Path, grid: tuple[int, int]) -> None:
    import matplotlib.image

    rows, cols = grid
    assert png_size(path) == (round(cols * PANEL[0] * DPI), round(rows * PANEL[1] * DPI))
    pixels = matplotlib.image.imread(path)
    assert pixels[..., :3].std() > 0.05  # something was drawn


def probe_result(controls: bool) -> dict:
    rng = np.random.default_rng(0)
    levels = {"ancestor": [1, 2, 3], "boundary": [0, 1, 2, 3]}

    def scores(lo: float = 0.0) -> dict:
        out = {}
        for m in ("ancestor", "ancestor_at_end", "diagonal_at_end", "boundary"):
            kind = "boundary" if m == "boundary" else "ancestor"
            out[m] = {str(v): float(rng.uniform(lo, 1)) for v in levels[kind]}
        return out

    layers = ["0", "1", "2"]
    result = {
        "pe": "rot",
        "step": 100,
        "layers": [0, 1, 2],
        "levels": levels,
        "trained": {l: scores() for l in layers},
        "majority": scores(),
        "untrained": {},
        "control": {},
        "selectivity": {},
        "output_only": None,
    }
    if controls:
        result["untrained"] = {l: scores() for l in layers}
        result["selectivity"] = {
            l: {
                m: {k: v - 0.5 for k, v in d.items()}
                for m, d in scores().items()
                if m in ("ancestor", "boundary")
            }
            for l in layers
        }
        result["output_only"] = scores()
        result["trained"]["1"]["ancestor"]["2"] = None  # a missing score leaves a gap
    return result


@pytest.mark.parametrize("controls", [True, False])
def test_probe_heatmap(tmp_path: Path, controls: bool) -> None:
    result = probe_result(controls)
    path = plot_probe(result, tmp_path / "sub" / "probe.png")
    assert probe_grid(result) == (5, 3 if controls else 1)  # five metrics, tridiagonal included
    check_image(path, probe_grid(result))


@pytest.mark.parametrize("layers,causal", [(1, True), (3, False), (6, True)])
def test_attention_plots(tmp_path: Path, layers: int, causal: bool) -> None:
    rng = np.random.default_rng(layers)
    stats = AttentionStats(layers, 2, 30, levels=[1, 2], causal=causal)
    for n in (10, 20, 30):
        A = rng.random((layers, 2, n, n))
        if causal:
            A = np.tril(A)
        stats.add(A / A.sum(-1, keepdims=True), rng.random((3, n)) < 0.3)
    result = {"pe": "rot", "step": 7, **stats.result()}
    assert attention_distance_grid(result) == ((layers + 3) // 4, min(layers, 4))
    check_image(
        plot_attention_distance(result, tmp_path / "d.png"), attention_distance_grid(result)
    )
    assert attention_boundary_grid(result) == (layers, 2)
    check_image(
        plot_attention_boundaries(result, tmp_path / "b.png"), attention_boundary_grid(result)
    )

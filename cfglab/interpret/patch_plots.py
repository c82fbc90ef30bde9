"""The plot of `cfglab patch`: restored fraction per layer × position set, trained beside the
untrained twin (matplotlib through cfglab.plotting, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cfglab.plotting import pyplot, save


def restored_grid(results: list[dict[str, Any]]) -> tuple[list[str], list[int], np.ndarray]:
    """(position sets, layers, (sets, layers) restored with NaN where null) from result rows."""
    names = list(dict.fromkeys(r["positions"] for r in results))
    layers = sorted({r["layer"] for r in results})
    grid = np.full((len(names), len(layers)), np.nan)
    for r in results:
        value = r["restored"]
        grid[names.index(r["positions"]), layers.index(r["layer"])] = (
            np.nan if value is None else value
        )
    return names, layers, grid


def plot_patch(result: dict[str, Any], path: str | Path) -> Path:
    panels = [("trained", result["results"])]
    if result.get("untrained"):
        panels.append(("untrained twin", result["untrained"]["results"]))
    names, _, _ = restored_grid(result["results"])
    fig, axes = pyplot().subplots(
        1, len(panels), figsize=(3.2 + 2.2 * len(panels), 1.2 + 0.32 * len(names)), squeeze=False
    )
    image = None
    for ax, (title, rows) in zip(axes[0], panels):
        names, layers, grid = restored_grid(rows)
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
        ax.set_xticks(range(len(layers)), [("emb" if l == 0 else str(l)) for l in layers])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("layer (residual stream after)")
        ax.set_title(f"{title}: restored", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(f"{result.get('pe', '')} activation patching, {result['pairs']} pairs", fontsize=9)
    return save(fig, path, dpi=110)

"""Matplotlib helpers shared by every plot cfglab writes (interpretability plots, the sweep's
report): headless (Agg, files only, never a window) and imported lazily, so commands that draw
nothing never pay matplotlib's import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(
    fig: Figure,
    path: str | Path,
    dpi: int,
    tight: bool = False,
    rect: tuple[float, float, float, float] | None = None,
) -> Path:
    """Write `fig` as a PNG and close it. `tight` lays the panels out again first (`rect`: the
    part of the figure they may use); without it the pixel size is exactly the figure's size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path

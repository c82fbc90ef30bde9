"""PNG plots of probe and attention results (matplotlib, Agg backend, imported lazily).

Each function takes the dict that `probe_run` / `attention_run` return (or read back from their
JSON), writes one PNG and returns its path. Figures are a grid of panels of `PANEL` inches at
`DPI`, never cropped, so a figure of r × c panels is exactly c·PANEL[0]·DPI × r·PANEL[1]·DPI
pixels.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cfglab.plotting import pyplot, save

PANEL = (4.5, 3.0)  # inches per panel (width, height)
DPI = 100
PROBE_ROWS = {
    "ancestor": "ancestor NT, all positions",
    "ancestor_at_end": "ancestor NT, at NT-ends",
    "diagonal_at_end": "ancestor NT, diagonal probe at NT-ends",
    "tridiagonal_at_end": "ancestor NT, tridiagonal probe at NT-ends",
    "boundary": "NT-end bit, all positions",
}
PROBE_BASELINES = (  # rows under the trained model's layers
    ("ceiling", "ceiling (whole)"),
    ("prefix_ceiling", "ceiling (prefix)"),
    ("majority", "majority"),
    ("output_only", "output only"),
    ("output_tokens", "token+log-probs"),
    ("true_output_tokens", "token+true rows"),
)


def _figure(nrows: int, ncols: int) -> tuple[Any, np.ndarray]:
    fig, axes = pyplot().subplots(
        nrows, ncols, figsize=(ncols * PANEL[0], nrows * PANEL[1]), dpi=DPI, squeeze=False
    )
    return fig, axes


def probe_grid(result: dict[str, Any]) -> tuple[int, int]:
    """(rows, columns) of panels `plot_probe` draws for this result."""
    has_controls = bool(result.get("untrained"))
    return len(PROBE_ROWS), 3 if has_controls else 1


# --- probes ------------------------------------------------------------------------------------


def plot_probe(result: dict[str, Any], path: str | Path) -> Path:
    """Heatmaps layer × level: trained (with majority and output-only rows), untrained,
    selectivity; one row of panels per metric."""
    nrows, ncols = probe_grid(result)
    fig, axes = _figure(nrows, ncols)
    layers = [str(l) for l in result["layers"]]
    heights = result.get("targets", "levels") != "levels"
    axis = (
        "height ↑h (the h-th nonterminal above the token)"
        if heights
        else "tree level (cfglab depth / the paper's NT name)"
    )
    for row, (metric, title) in enumerate(PROBE_ROWS.items()):
        kind = "boundary" if metric == "boundary" else "ancestor"
        levels = [str(v) for v in result["levels"][kind]]
        grid, labels = _probe_rows(result, "trained", metric, layers, levels, baselines=True)
        _heatmap(
            fig,
            axes[row, 0],
            grid,
            labels,
            [_level_tick(result, v) for v in levels],
            f"{title}\ntrained model, {_scope(result)}, by {result.get('targets', 'levels')}",
            0.0,
            1.0,
            n_layers=len(layers),
            xlabel=axis,
        )
        if ncols == 1:
            continue
        grid, labels = _probe_rows(result, "untrained", metric, layers, levels)
        _heatmap(
            fig,
            axes[row, 1],
            grid,
            labels,
            [_level_tick(result, v) for v in levels],
            f"{title}\nuntrained model (GPT_rand), {_scope(result)}",
            0.0,
            1.0,
            xlabel=axis,
        )
        if metric in ("ancestor", "boundary"):
            grid, labels = _probe_rows(result, "selectivity", metric, layers, levels)
            _heatmap(
                fig,
                axes[row, 2],
                grid,
                labels,
                [_level_tick(result, v) for v in levels],
                f"{title}\nselectivity (trained − control task)",
                -1.0,
                1.0,
                cmap="RdBu",
                xlabel=axis,
            )
        else:
            axes[row, 2].axis("off")
            axes[row, 2].text(
                0.5,
                0.5,
                "control task is scored\non all positions only",
                ha="center",
                va="center",
                fontsize=9,
                color="0.4",
            )
    fig.suptitle(
        f"Probe accuracy by layer and level — {result.get('pe', '?')}, "
        f"step {result.get('step', '?')} (held-out strings)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save(fig, path, DPI)


def _probe_rows(
    result: dict[str, Any],
    family: str,
    metric: str,
    layers: list[str],
    levels: list[str],
    baselines: bool = False,
) -> tuple[np.ndarray, list[str]]:
    rows, labels = [], []
    for l in layers:
        scores = (result.get(family) or {}).get(l, {}).get(metric, {})
        rows.append([_nan(scores.get(v)) for v in levels])
        labels.append("embedding" if l == "0" else f"layer {l}")
    if baselines:
        for name, label in PROBE_BASELINES:
            scores = (result.get(name) or {}).get(metric)
            if scores:
                rows.append([_nan(scores.get(v)) for v in levels])
                labels.append(label)
    return np.array(rows, dtype=float).reshape(len(rows), len(levels)), labels


def _scope(result: dict[str, Any]) -> str:
    scope = result.get("scope") or ("whole" if result.get("bidirectional") else "prefix")
    return f"{scope}-string probe" if scope == "whole" else "prefix probe (k ≤ i)"


def _level_tick(result: dict[str, Any], level: str) -> str:
    """cfglab's level beside the paper's name: `2\nNT3` (a height: `↑2`)."""
    from cfglab.interpret.targets import LEVELS, target_name

    kind = result.get("targets", LEVELS)
    name = target_name(kind, int(level))
    return f"{level}\n{name}" if kind == LEVELS else name


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _heatmap(
    fig: Any,
    ax: Any,
    grid: np.ndarray,
    ylabels: list[str],
    levels: list[str],
    title: str,
    vmin: float,
    vmax: float,
    cmap: str = "viridis",
    n_layers: int | None = None,
    xlabel: str = "tree level (cfglab depth / the paper's NT name)",
) -> None:
    n_layers = len(ylabels) if n_layers is None else n_layers
    im = ax.imshow(grid, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(levels)), levels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("hidden states")
    ax.set_title(title, fontsize=9)
    for (r, c), v in np.ndenumerate(grid):
        if not np.isnan(v):
            dark = abs(v) > 0.6 if vmin < 0 else (v - vmin) / (vmax - vmin) < 0.5
            ax.text(
                c,
                r,
                f"{100 * v:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    if n_layers < len(ylabels):  # baselines below a rule
        ax.axhline(n_layers - 0.5, color="white", lw=2)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


# --- attention ---------------------------------------------------------------------------------


def _band(ax: Any, x: np.ndarray, curves: np.ndarray, label: str) -> None:
    """Mean over heads as a line, range over heads as a band; x values no head has are gaps."""
    if np.all(np.isnan(curves)):
        return
    with warnings.catch_warnings():  # columns without data (e.g. r beyond a level's ends)
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
    line = ax.plot(x, mean, marker="o", ms=3, label=label)
    ax.fill_between(x, lo, hi, alpha=0.15, color=line[0].get_color())


def attention_distance_grid(result: dict[str, Any]) -> tuple[int, int]:
    L = len(result["distance"]["mean"])
    cols = min(L, 4)
    return math.ceil(L / cols), cols


def plot_attention_distance(result: dict[str, Any], path: str | Path) -> Path:
    """Ā_{l,h,p}: one panel per layer, one line per head, distance on a symlog axis."""
    nrows, ncols = attention_distance_grid(result)
    fig, axes = _figure(nrows, ncols)
    p = np.array(result["distance"]["p"])
    mean = np.array(result["distance"]["mean"], dtype=float)  # (L, H, P)
    for l in range(nrows * ncols):
        ax = axes[l // ncols, l % ncols]
        if l >= len(mean):
            ax.axis("off")
            continue
        for h, curve in enumerate(mean[l]):
            ax.plot(p, curve, lw=1.2, label=f"head {h}")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("log")
        ax.set_xlabel("distance p = query − key (tokens)")
        ax.set_ylabel("mean attention Ā")
        ax.set_title(f"layer {l + 1}", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Attention by distance — {result.get('pe', '?')}, step {result.get('step', '?')}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save(fig, path, DPI)


def attention_boundary_grid(result: dict[str, Any]) -> tuple[int, int]:
    return len(result["offset"]["mean_B"]), 2


def plot_attention_boundaries(result: dict[str, Any], path: str | Path) -> Path:
    """B = A − Ā at NT-end offsets δ (NT-ends of class b♯ = ℓ, the paper's disjoint classes,
    when the result has them) and between NT-ends at adjacency r: one row per layer, one line
    per level (mean over heads, band = range over heads)."""
    nrows, ncols = attention_boundary_grid(result)
    fig, axes = _figure(nrows, ncols)
    levels = result["levels"]
    sharp = "offset_sharp" in result
    panels = (
        (
            "offset_sharp" if sharp else "offset",
            "delta",
            "key offset δ from an NT-end of class b♯ = ℓ"
            if sharp
            else "key offset δ from a level-ℓ NT-end",
            "B averaged at NT-end offsets",
        ),
        (
            "adjacency",
            "r",
            "adjacency r (r-th previous NT-end of the level)",
            "B between NT-ends of one level",
        ),
    )
    for l in range(nrows):
        for c, (key, axis_key, xlabel, title) in enumerate(panels):
            ax = axes[l, c]
            x = np.array(result[key][axis_key])
            B = np.array(result[key]["mean_B"][l], dtype=float)  # (H, levels, x)
            for a, level in enumerate(levels):
                _band(ax, x, B[:, a], _name(result, level, long=True))
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.set_xticks(x)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("B = A − Ā (mean over heads)")
            ax.set_title(f"layer {l + 1}: {title}", fontsize=10)
            ax.legend(fontsize=7)
    fig.suptitle(
        f"Attention beyond distance at NT boundaries — {result.get('pe', '?')}, "
        f"step {result.get('step', '?')} (band: range over heads)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save(fig, path, DPI)


def _name(result: dict[str, Any], level: int, long: bool = False) -> str:
    """`level 2 (NT3)` (long) or `2 (NT3)`; a height is `↑2` either way."""
    from cfglab.interpret.targets import LEVELS, target_name

    kind = result.get("targets", LEVELS)
    name = target_name(kind, int(level))
    if kind != LEVELS:
        return name
    return f"level {level} ({name})" if long else f"{level} ({name})"


def attention_end_to_end_grid(result: dict[str, Any]) -> tuple[int, int]:
    """One row per layer, one column per r ≥ 1 shown (at most 3)."""
    rs = [r for r in result["end_to_end"]["r"] if r >= 1][:3]
    return len(result["end_to_end"]["mean_B"]), max(len(rs), 1)


def plot_attention_end_to_end(result: dict[str, Any], path: str | Path) -> Path:
    """B^{end→end}_{ℓ'→ℓ, r} heat maps: query class ℓ' (rows) × key class ℓ (columns), mean over
    heads, one panel per layer and adjacency r = 1, 2, 3."""
    nrows, ncols = attention_end_to_end_grid(result)
    fig, axes = _figure(nrows, ncols)
    e2e = result["end_to_end"]
    all_r = list(e2e["r"])
    rs = [r for r in all_r if r >= 1][:3]
    names = [_name(result, v) for v in result["levels"]]
    B = np.array(e2e["mean_B"], dtype=float)  # (L, H, ℓ', ℓ, r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(B, axis=1)  # (L, ℓ', ℓ, r)
    top = np.nanmax(np.abs(mean)) if np.isfinite(mean).any() else 1.0
    for l in range(nrows):
        for c in range(ncols):
            ax = axes[l, c]
            if c >= len(rs):
                ax.axis("off")
                continue
            grid = mean[l, :, :, all_r.index(rs[c])]
            im = ax.imshow(grid, vmin=-top, vmax=top, cmap="RdBu", aspect="auto")
            ax.set_xticks(range(len(names)), names, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xlabel("key: NT-end of class b♯ = ℓ")
            ax.set_ylabel("query: NT-end of class b♯ = ℓ'")
            ax.set_title(f"layer {l + 1}, r = {rs[c]} (level-ℓ nodes apart)", fontsize=9)
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(
        f"End→end attention beyond distance B, mean over heads — {result.get('pe', '?')}, "
        f"step {result.get('step', '?')}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save(fig, path, DPI)

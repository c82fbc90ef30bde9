"""The report's PNG plots: training curves, accuracy, robustness and the mode switch, probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfglab.models.config import PE
from cfglab.plotting import pyplot, save
from cfglab.sweep.report.collect import (
    accuracy,
    cut_name,
    mode_switch,
    pooled,
    probe_targets,
    robustness_rows,
)

DPI = 110
PE_ORDER = tuple(pe.value for pe in PE)
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


def noise_tag(row: dict[str, Any]) -> str:
    f, r = row["noise_fraction"], row["noise_rate"]
    return "clean data" if not f else f"noise {f:g} of strings, r={r:g}"


def _ordered(values: set[Any], order: tuple = ()) -> list[Any]:
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def write_plots(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every plot the rows can support (a plot with no data is skipped, not drawn empty)."""
    from cfglab.sweep.report.generation import plot_diversity, plot_temperatures

    makers = (
        ("training", plot_training),
        ("accuracy", plot_accuracy),
        ("temperatures", plot_temperatures),
        ("diversity", plot_diversity),
        ("robustness", plot_robustness),
        ("probes", plot_probes),
    )
    written = []
    for name, make in makers:
        path = make(rows, out / f"{name}.png")
        if path is not None:
            written.append(path)
    return written


def plot_training(rows: list[dict[str, Any]], path: Path) -> Path | None:
    curves = [(r["run"], r["_curve"]) for r in rows if r.get("_curve")]
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, curve) in enumerate(curves):
        steps, losses = zip(*curve)
        ax.plot(
            steps,
            losses,
            label=name,
            color=_COLORS[i % len(_COLORS)],
            linestyle=("-", "--", ":")[(i // len(_COLORS)) % 3],
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss during training")
    ax.legend(fontsize=7, ncol=2 if len(curves) > 8 else 1)
    return save(fig, path, DPI, tight=True)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Bars: accuracy by PE, per grammar and cut, one bar per noise setting; 95% Wilson
    intervals pooled over seeds, each seed a dot."""
    cuts = [c for c in ("cut0", cut_name(rows)) if c]
    if not any(accuracy(r, c) for r in rows for c in cuts):
        return None
    grammars = _ordered({r["grammar"] for r in rows})
    pes = _ordered({r["pe"] for r in rows}, PE_ORDER)
    noises = _ordered({noise_tag(r) for r in rows}, ("clean data",))
    plt = pyplot()
    fig, axes = plt.subplots(
        len(cuts),
        len(grammars),
        squeeze=False,
        figsize=(max(6.5, 1.5 + max(3.0, 0.9 * len(pes)) * len(grammars)), 0.6 + 3.2 * len(cuts)),
    )
    width = 0.8 / len(noises)
    for i, cut in enumerate(cuts):
        for j, grammar in enumerate(grammars):
            ax = axes[i][j]
            for n_i, noise in enumerate(noises):
                for p_i, pe in enumerate(pes):
                    props = [
                        p
                        for r in rows
                        if r["grammar"] == grammar and r["pe"] == pe and noise_tag(r) == noise
                        if (p := accuracy(r, cut)) and p.get("n")
                    ]
                    pool = pooled(props)
                    if pool is None:
                        continue
                    rate, lo, hi = pool
                    x = p_i + (n_i - (len(noises) - 1) / 2) * width
                    ax.bar(
                        x,
                        rate,
                        width,
                        color=_COLORS[n_i % len(_COLORS)],
                        label=noise if (p_i, i, j) == (0, 0, 0) else None,
                    )
                    ax.errorbar(
                        x,
                        rate,
                        yerr=[[rate - lo], [hi - rate]],
                        fmt="none",
                        ecolor="black",
                        capsize=3,
                        linewidth=1,
                    )
                    if len(props) > 1:
                        ax.scatter(
                            [x] * len(props),
                            [p["rate"] for p in props],
                            s=9,
                            color="black",
                            zorder=3,
                        )
            ax.set_xticks(range(len(pes)), pes)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{grammar} · {cut}")
            ax.set_ylabel("accuracy")
    fig.suptitle(
        "Generation accuracy by position encoding\n(95% Wilson intervals, pooled over "
        "seeds; dots: seeds)",
        fontsize=9,
    )
    fig.legend(loc="lower center", ncol=len(noises), fontsize=8)
    return save(fig, path, DPI, tight=True, rect=(0, 0.06, 1, 1))  # room for the legend below


def plot_robustness(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Left: repaired (solid) and corrupted-valid (dashed) completions against temperature, one
    line per PE × training noise × corruption rate. Right: the mode switch, invalid cut0
    generations against the run's training noise."""
    if not any(robustness_rows(r) for r in rows):
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    groups: dict[tuple, dict[float, list[tuple[dict, dict]]]] = {}
    for r in rows:
        for rec in robustness_rows(r):
            key = (r["grammar"], r["pe"], noise_tag(r), rec["rate"])
            groups.setdefault(key, {}).setdefault(rec["temperature"], []).append(
                (rec["repaired"], rec["corrupted_valid"])
            )
    for i, (key, by_t) in enumerate(sorted(groups.items())):
        temps = sorted(by_t)
        color = _COLORS[i % len(_COLORS)]
        for which, style in ((0, "-"), (1, "--")):
            stats = [pooled([pair[which] for pair in by_t[t] if pair[which]]) for t in temps]
            xs = [t for t, s in zip(temps, stats) if s]
            ys = [s for s in stats if s]
            if not ys:
                continue
            left.plot(
                xs,
                [y[0] for y in ys],
                style,
                color=color,
                marker="o",
                markersize=3,
                label=f"{key[0]} {key[1]}, {key[2]}, prompts r={key[3]:g}" if which == 0 else None,
            )
            left.fill_between(xs, [y[1] for y in ys], [y[2] for y in ys], color=color, alpha=0.12)
    left.set_xlabel("temperature")
    left.set_ylabel("share of completions")
    left.set_ylim(0, 1.05)
    left.set_title("Corrupted prompts: repaired (solid) vs corrupted-valid (dashed)", fontsize=9)
    left.legend(fontsize=7)
    _mode_switch_panel(right, rows)
    return save(fig, path, DPI, tight=True)


def _mode_switch_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    pes = _ordered({r["pe"] for r in rows}, PE_ORDER)
    for i, pe in enumerate(pes):
        by_noise: dict[float, list[dict]] = {}
        for r in rows:
            inv = mode_switch(r)
            if r["pe"] == pe and inv:
                by_noise.setdefault(r["noise_fraction"], []).append(inv)
        for j, (f, props) in enumerate(sorted(by_noise.items())):
            pool = pooled(props)
            if pool is None:
                continue
            rate, lo, hi = pool
            x = f + (i - (len(pes) - 1) / 2) * 0.01
            ax.errorbar(
                x,
                rate,
                yerr=[[rate - lo], [hi - rate]],
                fmt="o",
                color=_COLORS[i % len(_COLORS)],
                capsize=3,
                label=pe if j == 0 else None,
            )
    ax.set_xlabel("share of corrupted training strings")
    ax.set_ylabel("invalid cut0 generations (T=1)")
    ax.set_ylim(bottom=0)
    ax.set_title("Mode switch: invalid generations against training noise", fontsize=9)
    ax.legend(fontsize=7)


def _probe_layers(probes: dict[str, Any], which: str) -> dict[str, Any]:
    """{layer: {"ancestor": {level: acc}}}; the majority baseline is the same at every layer."""
    if which in ("majority", "ceiling"):  # the same at every layer
        same = probes.get(which) or {}
        return dict.fromkeys(probes.get("trained") or {}, same) if same else {}
    return probes.get(which) or {}


def _probe_matrix(rows: list[dict[str, Any]], which: str) -> tuple[list[str], list[str], list]:
    names, cols, cells = [], [], {}
    for r in rows:
        by_layer = _probe_layers(r["_results"].get("probes") or {}, which)
        if not by_layer:
            continue
        names.append(r["run"])
        heights = probe_targets(r) == "heights"
        for layer, metrics in by_layer.items():
            for level, v in (metrics.get("ancestor") or {}).items():
                # lvl l is the paper's NT{l+1}; ↑h the h-th nonterminal above the token
                col = f"L{layer}·↑{level}" if heights else f"L{layer}·lvl{level}"
                if col not in cols:
                    cols.append(col)
                cells[(r["run"], col)] = v
    cols.sort(key=_column_order)
    return names, cols, [[cells.get((n, c)) for c in cols] for n in names]


def _column_order(col: str) -> tuple[int, bool, int]:
    """L1·lvl2 before L1·↑1: by layer, then levels before heights, then the number."""
    layer, level = col[1:].split("·")
    heights = level.startswith("↑")
    return int(layer), heights, int(level.lstrip("↑lv"))


def plot_probes(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Heatmaps: ancestor-probe accuracy per run × (layer, level), trained beside untrained."""
    names, cols, trained = _probe_matrix(rows, "trained")
    if not names:
        return None
    scopes = {(r["_results"].get("probes") or {}).get("scope") or "?" for r in rows}
    scope = "/".join(sorted(scopes))  # whole: the paper's probe; prefix: k <= i only
    panels = [(f"trained model, {scope} probe", trained, cols)]
    for which, title in (
        ("ceiling", "ceiling: ideal reader of the whole string"),
        ("untrained", "untrained model (same architecture)"),
        ("majority", "majority-class baseline"),
    ):
        _, ccols, matrix = _probe_matrix(rows, which)
        if any(v is not None for line in matrix for v in line):
            panels.append((title, matrix, ccols))
    kinds = {probe_targets(r) for r in rows} - {None}
    key = " · ".join(
        ["lvl l = NT{l+1}"] * ("levels" in kinds) + ["↑h = h-th NT above"] * ("heights" in kinds)
    )
    plt = pyplot()
    import numpy as np

    # two panels a row: four in one row shrank each to ~270 px in the report's 1100 px column
    n_cols = min(2, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        figsize=(2.5 + 5.5 * n_cols, n_rows * (2.2 + 0.45 * len(names))),
    )
    for i, (title, matrix, columns) in enumerate(panels):
        ax = axes[i // n_cols][i % n_cols]
        data = np.array([[np.nan if v is None else v for v in line] for line in matrix])
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names if i % n_cols == 0 else [], fontsize=8)
        ax.set_title(f"Ancestor probe accuracy ({key}):\n{title}", fontsize=10)
        if data.size <= 300:
            for (y, x), v in np.ndenumerate(data):
                if not np.isnan(v):
                    ax.text(
                        x,
                        y,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if v < 0.6 else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.04)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    return save(fig, path, DPI, tight=True)

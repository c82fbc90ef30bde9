"""The report's generation figures: accuracy against temperature, the mode switch across
temperatures, and diversity (H(model) beside H(true), the birthday bound)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfglab.plotting import pyplot, save
from cfglab.sweep.report.collect import cut_name, pooled

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


def _evaluate(row: dict[str, Any]) -> dict[str, Any]:
    return row["_results"].get("evaluate") or {}


def accuracy_by_temperature(row: dict[str, Any], cut: str = "cut0") -> dict[float, dict]:
    """{T: accuracy proportion} of clean prompts: the evaluation's own T and its T list."""
    ev = _evaluate(row)
    out: dict[float, dict] = {}
    own = (ev.get("accuracy") or {}).get(cut)
    if own:
        out[float(own["temperature"])] = own["accuracy"]
    for rec in ev.get("accuracy_by_temperature") or []:
        if cut in rec:
            out[float(rec["temperature"])] = rec[cut]["accuracy"]
    return out


def kl_figure(row: dict[str, Any]) -> tuple[float | None, str]:
    """The per-position KL the report shows: the authors' recipe (`kl.official`) where the run
    has it, else cfglab's `kl.mean` (a result from before issue 20), with which one it is."""
    kl = _evaluate(row).get("kl") or {}
    if (official := (kl.get("official") or {}).get("mean")) is not None:
        return float(official), "official"
    return (None if kl.get("mean") is None else float(kl["mean"])), "cfglab"


def stray_mass(row: dict[str, Any]) -> float | None:
    """Mean model mass on BOS/MASK along the KL strings: a figure of its own, not in the KL."""
    return ((_evaluate(row).get("kl") or {}).get("stray_mass") or {}).get("mean")


def diversity(row: dict[str, Any]) -> dict[str, Any] | None:
    """H(model) [CI] and H(true) (nats/string), distinct generations, support bound."""
    d = _evaluate(row).get("diversity")
    if not d:
        return None
    h = d.get("h") or {}
    model, true = h.get("model") or {}, h.get("true") or {}
    return {
        "h_model": model.get("h"),
        "h_model_ci95": model.get("ci95"),
        "h_true": true.get("h"),
        "h_true_note": true.get("note"),  # why H(true) is missing, where it is
        "distinct": d["all"]["distinct"],
        "n": d["all"]["n"],
        "support_lower_bound": d["all"]["support_lower_bound"],
    }


def diversity_cell(row: dict[str, Any], compact: bool) -> str:
    d = diversity(row)
    if not d or d["h_model"] is None:
        return "-"
    true = "n/a" if d["h_true"] is None else f"{d['h_true']:.1f}"  # why: `h_true_notes`
    if compact:
        return f"{d['h_model']:.1f}/{true}"
    lo, hi = d["h_model_ci95"]
    return f"{d['h_model']:.2f} [{lo:.2f},{hi:.2f}] / {true}"


def h_true_notes(rows: list[dict[str, Any]]) -> dict[str, str]:
    """{grammar: why its H(true) is missing} over the rows whose evaluation gave the reason."""
    notes = {}
    for row in rows:
        d = diversity(row)
        if d and d["h_true"] is None and d["h_true_note"]:
            notes[str(row.get("grammar"))] = d["h_true_note"]
    return notes


def mode_switch_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per run: training noise, invalid cut0 generations at T = 1 and at the lowest T measured."""
    out = []
    for row in rows:
        by_t = accuracy_by_temperature(row)
        if len(by_t) < 2:
            continue
        low, high = min(by_t), max(by_t)
        cells = []
        for t in (high, low):
            a = by_t[t]
            lo, hi = a["ci95"]
            cells.append(f"{1 - a['rate']:.3f} [{1 - hi:.3f},{1 - lo:.3f}] (T={t:g})")
        out.append([row["run"], f"{row['noise_fraction']:g}", *cells])
    return out


def _ci(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "-"
    lo, hi = p["ci95"]
    return f"{p['rate']:.3f} [{lo:.3f},{hi:.3f}] (n={p['n']})"


def memorisation_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per run: the held-out rule, how often its valid generations use it against the rule's
    true frequency (both with 95% intervals), and novelty."""
    out = []
    for row in rows:
        m = _evaluate(row).get("memorisation")
        if not m:
            continue
        h, nov = m.get("holdout") or {}, m["novelty"]
        out.append(
            [
                row["run"],
                h.get("rule") or "(none)",
                _ci(h.get("generated_using")),
                _ci(h.get("true_frequency")),
                _ci(nov.get("novel_valid")),
                _ci(nov.get("in_training")),
            ]
        )
    return out


MEMORISATION_COLUMNS = [
    "run",
    "held-out rule",
    "valid generations using it",
    "fresh strings using it",
    "novel and valid",
    "seen in training",
]

MODE_SWITCH_COLUMNS = ["run", "corrupted training share", "invalid cut0, high T", "at low T"]


def plot_temperatures(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Clean-prompt accuracy (cut0, cutK) against temperature: one line per grammar × PE ×
    training noise, pooled over seeds, 95% band. Noisy-trained runs dashed."""
    cutk = cut_name(rows)
    cuts = ["cut0"] + ([cutk] if cutk else [])
    groups: dict[tuple, dict[str, dict[float, list[dict]]]] = {}
    for r in rows:
        key = (r["grammar"], r["pe"], r["noise_fraction"])
        for cut in cuts:
            for t, acc in accuracy_by_temperature(r, cut).items():
                groups.setdefault(key, {}).setdefault(cut, {}).setdefault(t, []).append(acc)
    if not any(len(by_t) > 1 for g in groups.values() for by_t in g.values()):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cuts), figsize=(5.5 * len(cuts), 4), squeeze=False)
    for i, (key, by_cut) in enumerate(sorted(groups.items())):
        color, style = _COLORS[i % len(_COLORS)], "--" if key[2] else "-"
        for ax, cut in zip(axes[0], cuts):
            by_t = by_cut.get(cut, {})
            temps = sorted(by_t)
            stats = [pooled(by_t[t]) for t in temps]
            xs = [t for t, s in zip(temps, stats) if s]
            ys = [s for s in stats if s]
            if not ys:
                continue
            label = f"{key[0]} {key[1]}, " + (f"noise {key[2]:g}" if key[2] else "clean")
            ax.plot(xs, [y[0] for y in ys], style, marker="o", ms=3, color=color, label=label)
            ax.fill_between(xs, [y[1] for y in ys], [y[2] for y in ys], color=color, alpha=0.12)
    for ax, cut in zip(axes[0], cuts):
        ax.set_xlabel("temperature")
        ax.set_ylabel(f"{cut} accuracy (clean prompts)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{cut}: accuracy against temperature (dashed: noisy training)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    return save(fig, path, DPI, tight=True)


def plot_diversity(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Left: H(model) with its 95% interval beside H(true) per run. Right: distinct generations
    and the birthday-paradox lower bound on the support (log scale)."""
    fig = diversity_figure(rows)
    return None if fig is None else save(fig, path, DPI, tight=True)


def diversity_figure(rows: list[dict[str, Any]]) -> Figure | None:
    """The figure `plot_diversity` saves (laid out, not yet saved), or None with no H(model)."""
    data = [(r["run"], d) for r in rows if (d := diversity(r)) and d["h_model"] is not None]
    if not data:
        return None
    plt = pyplot()
    # room for the legends above the panels even with one run (at 0.9 in they sat on the data)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 1.7 + 0.35 * len(data)), squeeze=True, sharey=True
    )
    ys = list(range(len(data)))
    for y, (_, d) in zip(ys, data):
        lo, hi = d["h_model_ci95"]
        left.errorbar(
            d["h_model"],
            y,
            xerr=[[d["h_model"] - lo], [hi - d["h_model"]]],
            fmt="o",
            color=_COLORS[0],
            capsize=3,
            label="H(model)" if y == 0 else None,
        )
        if d["h_true"] is not None:
            left.plot(d["h_true"], y, "x", color=_COLORS[3], label="H(true)" if y == 0 else None)
        right.barh(
            y,
            d["support_lower_bound"],
            color=_COLORS[2],
            alpha=0.6,
            label="support ≥ (birthday, 95%)" if y == 0 else None,
        )
        right.plot(d["distinct"], y, "|", color="k", ms=10, label="distinct" if y == 0 else None)
    left.set_yticks(ys, [name for name, _ in data], fontsize=7)  # shared: the right panel too
    left.invert_yaxis()
    right.tick_params(labelleft=False)
    for ax in (left, right):
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    left.set_xlabel("entropy (nats per string)")
    left.set_title("Diversity: the model's entropy beside the language's", fontsize=9, pad=18)
    right.set_xscale("log")
    values = [v for _, d in data for v in (d["support_lower_bound"], d["distinct"]) if v > 0]
    if values:
        _log_ticks(right, min(values), max(values))
    right.set_xlabel("strings")
    right.set_title("Distinct cut0 generations and the support bound", fontsize=9, pad=18)
    fig.tight_layout()
    return fig


def _log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Labels a log axis can hold side by side: 1-2-5 steps over two decades or less, powers of
    ten beyond; no minor labels (matplotlib's 2×10², 3×10², ... ran into each other)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    few = math.log10(hi / lo) <= 2
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if few else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count_label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _count_label(v: float) -> str:
    """20, 5,000; past 10⁵ as m×10^k (a tick of a log axis sits on 1, 2 or 5 times a power)."""
    if v < 1e5:
        return f"{v:,.0f}"
    k = math.floor(math.log10(v) + 1e-9)
    m = round(v / 10**k)
    return f"$10^{{{k}}}$" if m == 1 else f"${m}\\times10^{{{k}}}$"

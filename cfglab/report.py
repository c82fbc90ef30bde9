"""The report of a sweep: a rich table, results.csv, PNG plots and one self-contained HTML page.

    write_report(SWEEP_DIR)  ->  SWEEP_DIR/report/{report.html, results.csv, *.png}

It reads only files (cfglab.sweep.layout's sweep directory and each run directory), so it runs
without Ray, during a sweep (partial results) or long after it. Every figure is printed beside
the budget that produced it (model size, steps, tokens, seeds): small CPU runs say little about
the paper's GPU-scale claims, and the page says so.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfglab.errors import CfglabError
from cfglab.runs import RunDir
from cfglab.sweep.layout import SweepDir

COORDINATES = ("run", "grammar", "pe", "size", "layers", "heads", "dim", "noise_fraction",
               "noise_rate", "seed")
TRAINING = ("status", "step", "steps", "params", "tokens", "train_minutes", "attempts",
            "final_loss", "final_val_loss", "best_val_loss", "device")
_MAX_LIST = 16  # longer lists (curves by position, per-string values) stay out of the CSV


# --- collecting rows ---------------------------------------------------------------------------


def _last(records: list[dict[str, Any]], key: str) -> Any:
    for r in reversed(records):
        if key in r:
            return r[key]
    return None


def _train_seconds(sweep: SweepDir, name: str) -> float | None:
    """Tune's own clock for the trial (time_total_s of its last result), if it kept one."""
    result = sweep.tune_dir / name / "result.json"
    if not result.exists():
        return None
    lines = [x for x in result.read_text().splitlines() if x.strip()]
    try:
        return float(json.loads(lines[-1]).get("time_total_s")) if lines else None
    except (ValueError, TypeError):
        return None


def _training(sweep: SweepDir, name: str, train: dict[str, Any],
              starts: dict[str, int]) -> dict[str, Any]:
    run = RunDir(sweep.run(name))
    metrics = run.metrics()
    card = json.loads(run.card_path.read_text()) if run.card_path.exists() else {}
    step = metrics[-1]["step"] if metrics else 0
    curve = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    vals = [v for _, v in curve]
    seconds = _train_seconds(sweep, name)
    status = "done" if step >= train["steps"] else ("partial" if metrics else "not started")
    return {
        "status": status, "step": step, "steps": train["steps"],
        "params": card.get("parameters"), "device": card.get("device"),
        "tokens": step * train["batch"] * train["context"],
        "train_minutes": round(seconds / 60, 2) if seconds is not None else None,
        "attempts": starts.get(name, 0),
        "final_loss": _last(metrics, "loss"), "final_val_loss": vals[-1] if vals else None,
        "best_val_loss": min(vals) if vals else None, "_curve": curve,
    }


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and short lists to dotted scalar columns (`evaluate.kl.mean`)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        if len(value) <= _MAX_LIST and all(not isinstance(v, list) for v in value):
            for i, v in enumerate(value):
                out.update(flatten(v, f"{prefix}.{i}"))
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    return out


def collect(sweep_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the sweep's spec record, one row per trial with coordinates, training and task results).
    Each row also keeps the raw task results under "_results" for the plots."""
    sweep = SweepDir(Path(sweep_dir).resolve())
    spec = sweep.read_spec()
    kinds = _task_kinds(spec["spec"])
    starts: dict[str, int] = {}
    for s in sweep.starts():
        starts[s["run"]] = starts.get(s["run"], 0) + 1
    rows = []
    for trial in sweep.read_plan():
        row: dict[str, Any] = {"run": trial.name, **trial.coordinates}
        row.update(_training(sweep, trial.name, trial.train, starts))
        results = {}
        for kind in kinds:
            record = sweep.read_result(trial.name, kind)
            if record is not None:
                results[kind] = record.get("result", {})
                row.update(flatten(results[kind], kind))
        row["_results"] = results
        row["_train"] = trial.train
        rows.append(row)
    return spec, rows


def _task_kinds(spec: dict[str, Any]) -> list[str]:
    return [k for k in ("evaluate", "robustness", "probes", "attention")
            if spec.get(k, {}).get("enabled")]


# --- headline figures --------------------------------------------------------------------------


def accuracy(row: dict[str, Any], cut: str = "cut0") -> dict[str, Any] | None:
    """{"k", "n", "rate", "ci95"} of a cut ("cut0", or "cutK" for the other one)."""
    acc = row["_results"].get("evaluate", {}).get("accuracy") or {}
    if cut != "cut0":
        cut = next((c for c in acc if c != "cut0"), cut)
    entry = acc.get(cut)
    return entry.get("accuracy") if entry else None


def cut_name(rows: list[dict[str, Any]]) -> str | None:
    for row in rows:
        acc = row["_results"].get("evaluate", {}).get("accuracy") or {}
        other = [c for c in acc if c != "cut0"]
        if other:
            return other[0]
    return None


def robustness_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat (rate, temperature, repaired, corrupted_valid, cut) records of a run."""
    out = []
    by_rate = row["_results"].get("robustness", {}).get("by_rate", {})
    for rate, rep in by_rate.items():
        for t in rep.get("by_temperature", []):
            out.append({"rate": float(rate), "temperature": t.get("temperature"),
                        "repaired": t.get("repaired"), "corrupted_valid": t.get("corrupted_valid"),
                        "cut": rep.get("cut")})
    return out


def mode_switch(row: dict[str, Any]) -> dict[str, Any] | None:
    by_rate = row["_results"].get("robustness", {}).get("by_rate", {})
    for rep in by_rate.values():
        if rep.get("mode_switch"):
            return rep["mode_switch"].get("invalid")
    return None


def probe_summary(row: dict[str, Any], which: str = "trained") -> float | None:
    """Mean ancestor-probe accuracy over levels at the last probed layer."""
    probes = row["_results"].get("probes") or {}
    by_layer = probes.get(which) or {}
    if not by_layer:
        return None
    last = max(by_layer, key=int)
    values = [v for v in (by_layer[last].get("ancestor") or {}).values() if v is not None]
    return sum(values) / len(values) if values else None


def _fmt_rate(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "-"
    lo, hi = p["ci95"]
    return f"{p['rate']:.2f} [{lo:.2f},{hi:.2f}]"


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _fmt_short(p: dict[str, Any] | None) -> str:
    return "-" if not p or p.get("rate") is None else f"{p['rate']:.2f}"


def headline(rows: list[dict[str, Any]],
             compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The columns the terminal (`compact`: no intervals) and the HTML page show; every figure,
    with its N and interval, is in results.csv. Columns no run has a value for are left out."""
    cutk = cut_name(rows)
    rate = _fmt_short if compact else _fmt_rate
    columns = ["run", "step", "val" if compact else "val loss",
               "cut0" if compact else "cut0 acc [95% CI]"]
    columns += [cutk if compact else f"{cutk} acc"] if cutk else []
    columns += ["masked" if compact else "masked-token acc"]
    columns += ["KL", "repair" if compact else "repaired (T=1)",
                "inval" if compact else "invalid at cut0",
                "probe" if compact else "probe (untrained)"]
    body = []
    for row in rows:
        rob = [r for r in robustness_rows(row) if r["temperature"] == 1.0]
        step = f"{row['step']}/{row['steps']}" + ("" if row["status"] == "done" else " *")
        if compact and row["status"] == "done":
            step = str(row["step"])
        line = [row["run"], step, _fmt(row["final_val_loss"], ".3f" if compact else ".4f"),
                rate(accuracy(row))]
        line += [rate(accuracy(row, cutk))] if cutk else []
        evaluate = row["_results"].get("evaluate", {})
        line += [rate((evaluate.get("masked") or {}).get("accuracy"))]
        kl = (evaluate.get("kl") or {}).get("mean")
        trained, untrained = probe_summary(row), probe_summary(row, "untrained")
        line += [_fmt(kl, ".3f" if compact else ".4f"),
                 " ".join(_fmt((r["repaired"] or {}).get("rate"), ".2f") for r in rob) or "-",
                 rate(mode_switch(row)),
                 "-" if trained is None else f"{trained:.2f}" if compact else
                 f"{trained:.2f} ({_fmt(untrained, '.2f')})"]
        body.append(line)
    keep = [i for i, c in enumerate(columns) if i < 2 or any(line[i] != "-" for line in body)]
    return [columns[i] for i in keep], [[line[i] for i in keep] for line in body]


def rich_table(rows: list[dict[str, Any]], title: str = ""):  # -> rich.table.Table
    """The terminal summary: one row per run; a run that did not finish shows `step/steps *`."""
    from rich.table import Table

    columns, body = headline(rows, compact=True)
    table = Table(title=title or None, title_justify="left", padding=(0, 1), box=None,
                  header_style="bold")
    for i, c in enumerate(columns):
        if i == 0:  # names fold onto a second line rather than squeezing the numbers
            table.add_column(c, overflow="fold", ratio=1)
        else:
            table.add_column(c, justify="right", no_wrap=True,
                             min_width=max([len(c)] + [len(line[i]) for line in body]))
    for line in body:
        table.add_row(*line)
    return table


def budget_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the numbers were bought with: one line per distinct training budget."""
    seen: dict[tuple, list[str]] = {}
    for row in rows:
        t = row["_train"]
        key = (t["layers"], t["heads"], t["dim"], t["context"], t["steps"], t["batch"], t["lr"],
               row.get("params"), row.get("device"))
        seen.setdefault(key, []).append(row["run"])
    lines = []
    for (layers, heads, dim, context, steps, batch, lr, params, device), runs in seen.items():
        p = f"{params:,} parameters" if params else "parameters unknown"
        lines.append(f"{layers} layers × {heads} heads × {dim} dims ({p}), context {context}; "
                     f"{steps:,} steps × batch {batch} = {steps * batch * context:,} tokens, "
                     f"peak lr {lr:g}, on {device or '?'} — {len(runs)} run(s)")
    seeds = sorted({row["seed"] for row in rows})
    lines.append(f"seeds per grid point: {len(seeds)} ({', '.join(map(str, seeds))})")
    return lines


# --- files -------------------------------------------------------------------------------------


@dataclass
class ReportFiles:
    html: Path
    csv: Path
    plots: list[Path] = field(default_factory=list)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    metric_cols = sorted({k for r in rows for k in r if not k.startswith("_")}
                         - set(COORDINATES) - set(TRAINING))
    columns = list(COORDINATES) + list(TRAINING) + metric_cols
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in columns})
    return path


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> ReportFiles:
    """Collect, then write results.csv, the plots and report.html; returns their paths."""
    sweep = SweepDir(Path(sweep_dir).resolve())
    if not sweep.exists():
        raise CfglabError(f"{sweep.path}: not a sweep directory (no plan.json); give the "
                          "directory `cfglab sweep` printed")
    spec, rows = collect(sweep.path)
    out = Path(out_dir) if out_dir else sweep.report_dir
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out / "results.csv")
    plots = write_plots(rows, out)
    html_path = out / "report.html"
    html_path.write_text(render_html(spec, rows, plots, sweep))
    return ReportFiles(html_path, csv_path, plots)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(columns: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in line) + "</tr>"
                   for line in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;
padding:.25em .5em;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}code{background:#f3f3f3}"""


def _caveats(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    if any(row.get("device") == "cpu" for row in rows):
        notes.append("These are small models trained for minutes on a CPU. They show what this "
                     "budget learns; they do not test the paper's claims, which rest on GPU-scale "
                     "runs of its cfg3 grammars (e.g. sweeps/pe.yaml and sweeps/robustness.yaml "
                     "on a cluster).")
    if len({row["seed"] for row in rows}) < 3:
        notes.append("Fewer than three seeds per grid point: a difference between runs that lies "
                     "inside the 95% intervals (generations of one model) is not evidence of a "
                     "difference between settings; seed-to-seed spread is not measured.")
    unfinished = [r["run"] for r in rows if r["status"] != "done"]
    if unfinished:
        notes.append(f"{len(unfinished)} run(s) did not finish training: "
                     + ", ".join(unfinished[:8]) + (" ..." if len(unfinished) > 8 else ""))
    return notes


def render_html(spec: dict[str, Any], rows: list[dict[str, Any]], plots: list[Path],
                sweep: SweepDir) -> str:
    columns, body = headline(rows)
    name = html.escape(spec.get("name", sweep.path.name))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cfglab sweep {name}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Sweep <code>{name}</code></h1>",
             f"<p>From <code>{html.escape(str(spec.get('source', '?')))}</code>"
             f"{' (smoke overrides)' if spec.get('smoke') else ''}; {len(rows)} runs in "
             f"<code>{html.escape(str(sweep.path))}</code>. Every figure, with its N and interval, "
             "is in <code>results.csv</code>.</p>",
             "<h2>Budget</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>"
                                             for x in budget_lines(rows)) + "</ul>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in _caveats(rows)]
    parts += ["<h2>Results</h2>", _table_html(columns, body),
              "<p>cut0: generations from BOS; cutK: completions of the first K tokens of fresh "
              "strings; correct iff the model ends with EOS and the whole string is in the "
              "language (95% Wilson intervals). <em>repaired</em>: completions of prompts "
              "corrupted at rate r that make the <em>original</em> prompt valid. Masked-token "
              "accuracy: one masked token at a time, filled in by the model (an mlm encoder sees "
              "both sides; a decoder is scored on the same footing). Probe: mean "
              "ancestor-probe accuracy over levels at the last layer, the untrained model of the "
              "same architecture in brackets.</p>"]
    for p in plots:
        parts += [f"<h2>{html.escape(p.stem.replace('_', ' ').capitalize())}</h2>", _img(p, p.stem)]
    parts.append(_run_plots(rows, sweep))
    parts.append("</body></html>")
    return "\n".join(parts)


def _run_plots(rows: list[dict[str, Any]], sweep: SweepDir) -> str:
    """Each run's own plots (probes, attention), folded away."""
    blocks = []
    for row in rows:
        pngs = sorted(sweep.run(row["run"]).glob("*/*.png"))
        if pngs:
            blocks.append(f"<details><summary>{html.escape(row['run'])}</summary>"
                          + "".join(_img(p, f"{row['run']} {p.stem}") for p in pngs)
                          + "</details>")
    return ("<h2>Per-run plots</h2>" + "".join(blocks)) if blocks else ""


# --- intervals shared with the plots -----------------------------------------------------------


def pooled(props: list[dict[str, Any]]) -> tuple[float, float, float] | None:
    """Pool {"k", "n"} counts (e.g. over seeds): (rate, 95% Wilson low, high)."""
    from cfglab.evaluate.generation import wilson

    k = sum(p["k"] for p in props if p)
    n = sum(p["n"] for p in props if p)
    if n == 0:
        return None
    return (k / n, *wilson(k, n))


# --- plots -------------------------------------------------------------------------------------

PE_ORDER = ("abs", "rel", "rot", "pos", "uni", "mlm")
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (sweeps run headless)
    import matplotlib.pyplot as plt

    return plt


def noise_tag(row: dict[str, Any]) -> str:
    f, r = row["noise_fraction"], row["noise_rate"]
    return "clean data" if not f else f"noise {f:g} of strings, r={r:g}"


def _ordered(values: set[Any], order: tuple = ()) -> list[Any]:
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _save(plt: Any, fig: Any, path: Path, rect: tuple | None = None) -> Path:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every plot the rows can support (a plot with no data is skipped, not drawn empty)."""
    makers = (("training", plot_training), ("accuracy", plot_accuracy),
              ("robustness", plot_robustness), ("probes", plot_probes))
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, curve) in enumerate(curves):
        steps, losses = zip(*curve)
        ax.plot(steps, losses, label=name, color=_COLORS[i % len(_COLORS)],
                linestyle=("-", "--", ":")[(i // len(_COLORS)) % 3])
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss during training")
    ax.legend(fontsize=7, ncol=2 if len(curves) > 8 else 1)
    return _save(plt, fig, path)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Bars: accuracy by PE, per grammar and cut, one bar per noise setting; 95% Wilson
    intervals pooled over seeds, each seed a dot."""
    cuts = [c for c in ("cut0", cut_name(rows)) if c]
    if not any(accuracy(r, c) for r in rows for c in cuts):
        return None
    grammars = _ordered({r["grammar"] for r in rows})
    pes = _ordered({r["pe"] for r in rows}, PE_ORDER)
    noises = _ordered({noise_tag(r) for r in rows}, ("clean data",))
    plt = _pyplot()
    fig, axes = plt.subplots(len(cuts), len(grammars), squeeze=False,
                             figsize=(max(6.5, 1.5 + max(3.0, 0.9 * len(pes)) * len(grammars)),
                                      0.6 + 3.2 * len(cuts)))
    width = 0.8 / len(noises)
    for i, cut in enumerate(cuts):
        for j, grammar in enumerate(grammars):
            ax = axes[i][j]
            for n_i, noise in enumerate(noises):
                for p_i, pe in enumerate(pes):
                    props = [accuracy(r, cut) for r in rows if r["grammar"] == grammar
                             and r["pe"] == pe and noise_tag(r) == noise]
                    props = [p for p in props if p and p.get("n")]
                    if not props:
                        continue
                    rate, lo, hi = pooled(props)
                    x = p_i + (n_i - (len(noises) - 1) / 2) * width
                    ax.bar(x, rate, width, color=_COLORS[n_i % len(_COLORS)],
                           label=noise if (p_i, i, j) == (0, 0, 0) else None)
                    ax.errorbar(x, rate, yerr=[[rate - lo], [hi - rate]], fmt="none",
                                ecolor="black", capsize=3, linewidth=1)
                    if len(props) > 1:
                        ax.scatter([x] * len(props), [p["rate"] for p in props], s=9,
                                   color="black", zorder=3)
            ax.set_xticks(range(len(pes)), pes)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{grammar} · {cut}")
            ax.set_ylabel("accuracy")
    fig.suptitle("Generation accuracy by position encoding\n(95% Wilson intervals, pooled over "
                 "seeds; dots: seeds)", fontsize=9)
    fig.legend(loc="lower center", ncol=len(noises), fontsize=8)
    return _save(plt, fig, path, rect=(0, 0.06, 1, 1))  # room for the legend below


def plot_robustness(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Left: repaired (solid) and corrupted-valid (dashed) completions against temperature, one
    line per PE × training noise × corruption rate. Right: the mode switch, invalid cut0
    generations against the run's training noise."""
    if not any(robustness_rows(r) for r in rows):
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    groups: dict[tuple, dict[float, list[tuple[dict, dict]]]] = {}
    for r in rows:
        for rec in robustness_rows(r):
            key = (r["grammar"], r["pe"], noise_tag(r), rec["rate"])
            groups.setdefault(key, {}).setdefault(rec["temperature"], []).append(
                (rec["repaired"], rec["corrupted_valid"]))
    for i, (key, by_t) in enumerate(sorted(groups.items())):
        temps = sorted(by_t)
        color = _COLORS[i % len(_COLORS)]
        for which, style in ((0, "-"), (1, "--")):
            stats = [pooled([pair[which] for pair in by_t[t] if pair[which]]) for t in temps]
            xs = [t for t, s in zip(temps, stats) if s]
            ys = [s for s in stats if s]
            if not ys:
                continue
            left.plot(xs, [y[0] for y in ys], style, color=color, marker="o", markersize=3,
                      label=f"{key[0]} {key[1]}, {key[2]}, prompts r={key[3]:g}"
                      if which == 0 else None)
            left.fill_between(xs, [y[1] for y in ys], [y[2] for y in ys], color=color,
                              alpha=0.12)
    left.set_xlabel("temperature")
    left.set_ylabel("share of completions")
    left.set_ylim(0, 1.05)
    left.set_title("Corrupted prompts: repaired (solid) vs corrupted-valid (dashed)", fontsize=9)
    left.legend(fontsize=7)
    _mode_switch_panel(right, rows)
    return _save(plt, fig, path)


def _mode_switch_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    pes = _ordered({r["pe"] for r in rows}, PE_ORDER)
    for i, pe in enumerate(pes):
        by_noise: dict[float, list[dict]] = {}
        for r in rows:
            inv = mode_switch(r)
            if r["pe"] == pe and inv:
                by_noise.setdefault(r["noise_fraction"], []).append(inv)
        for j, (f, props) in enumerate(sorted(by_noise.items())):
            rate, lo, hi = pooled(props)
            x = f + (i - (len(pes) - 1) / 2) * 0.01
            ax.errorbar(x, rate, yerr=[[rate - lo], [hi - rate]], fmt="o",
                        color=_COLORS[i % len(_COLORS)], capsize=3, label=pe if j == 0 else None)
    ax.set_xlabel("share of corrupted training strings")
    ax.set_ylabel("invalid cut0 generations (T=1)")
    ax.set_ylim(bottom=0)
    ax.set_title("Mode switch: invalid generations against training noise", fontsize=9)
    ax.legend(fontsize=7)


def _probe_layers(probes: dict[str, Any], which: str) -> dict[str, Any]:
    """{layer: {"ancestor": {level: acc}}}; the majority baseline is the same at every layer."""
    if which == "majority":
        majority = probes.get("majority") or {}
        return {layer: majority for layer in (probes.get("trained") or {})} if majority else {}
    return probes.get(which) or {}


def _probe_matrix(rows: list[dict[str, Any]], which: str) -> tuple[list[str], list[str], list]:
    names, cols, cells = [], [], {}
    for r in rows:
        by_layer = _probe_layers(r["_results"].get("probes") or {}, which)
        if not by_layer:
            continue
        names.append(r["run"])
        for layer, metrics in by_layer.items():
            for level, v in (metrics.get("ancestor") or {}).items():
                col = f"L{layer}·lvl{level}"
                if col not in cols:
                    cols.append(col)
                cells[(r["run"], col)] = v
    cols.sort(key=lambda c: tuple(int(x) for x in c[1:].split("·lvl")))
    return names, cols, [[cells.get((n, c)) for c in cols] for n in names]


def plot_probes(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Heatmaps: ancestor-probe accuracy per run × (layer, level), trained beside untrained."""
    names, cols, trained = _probe_matrix(rows, "trained")
    if not names:
        return None
    panels = [("trained model", trained, cols)]
    for which, title in (("untrained", "untrained model (same architecture)"),
                         ("majority", "majority-class baseline")):
        _, ccols, matrix = _probe_matrix(rows, which)
        if any(v is not None for line in matrix for v in line):
            panels.append((title, matrix, ccols))
    plt = _pyplot()
    import numpy as np

    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(2 + 4 * len(panels), 1.6 + 0.35 * len(names)))
    for ax, (title, matrix, columns) in zip(axes[0], panels):
        data = np.array([[np.nan if v is None else v for v in line] for line in matrix])
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [], fontsize=7)
        ax.set_title(f"Ancestor probe accuracy:\n{title}", fontsize=9)
        if data.size <= 300:
            for (y, x), v in np.ndenumerate(data):
                if not np.isnan(v):
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(plt, fig, path)

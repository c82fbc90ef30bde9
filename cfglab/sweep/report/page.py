"""The report's text: the terminal table, results.csv and the self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfglab.errors import CfglabError
from cfglab.sweep.layout import SweepDir
from cfglab.sweep.report.collect import (
    COORDINATES,
    TRAINING,
    accuracy,
    collect,
    cut_name,
    mode_switch,
    probe_scope,
    probe_summary,
    probe_targets,
    robustness_rows,
)
from cfglab.sweep.report.generation import (
    MEMORISATION_COLUMNS,
    MODE_SWITCH_COLUMNS,
    diversity_cell,
    h_true_notes,
    kl_figure,
    memorisation_rows,
    mode_switch_rows,
)
from cfglab.sweep.report.plots import write_plots

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table


def _fmt_rate(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "-"
    lo, hi = p["ci95"]
    return f"{p['rate']:.2f} [{lo:.2f},{hi:.2f}]"


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _fmt_short(p: dict[str, Any] | None) -> str:
    return "-" if not p or p.get("rate") is None else f"{p['rate']:.2f}"


def headline(
    rows: list[dict[str, Any]], compact: bool = False
) -> tuple[list[str], list[list[str]]]:
    """The columns the terminal (`compact`: no intervals) and the HTML page show; every figure,
    with its N and interval, is in results.csv. Columns no run has a value for are left out."""
    cutk = cut_name(rows)
    rate = _fmt_short if compact else _fmt_rate
    columns = [
        "run",
        "step",
        "val" if compact else "val loss",
        "cut0" if compact else "cut0 acc [95% CI]",
    ]
    columns += [cutk if compact else f"{cutk} acc"] if cutk else []
    columns += ["masked" if compact else "masked-token acc"]
    columns += [
        "KL" if compact else "KL (authors' recipe)",
        "H m/t" if compact else "H(model) [95% CI] / H(true)",
        "repair" if compact else "repaired (T=1)",
        "inval" if compact else "invalid at cut0",
        "probe" if compact else "probe: scope (untrained) / ceiling",
    ]
    # a decoder's masked-token figure is the contrast to an encoder's: without an mlm run in
    # the sweep it is a task none of the models was trained for, and the column is left out
    encoders = any(row.get("pe") == "mlm" for row in rows)
    body = []
    for row in rows:
        rob = [r for r in robustness_rows(row) if r["temperature"] == 1.0]
        step = f"{row['step']}/{row['steps']}" + ("" if row["status"] == "done" else " *")
        if compact and row["status"] == "done":
            step = str(row["step"])
        line = [
            row["run"],
            step,
            _fmt(row["final_val_loss"], ".3f" if compact else ".4f"),
            rate(accuracy(row)),
        ]
        line += [rate(accuracy(row, cutk))] if cutk else []
        evaluate = row["_results"].get("evaluate", {})
        line += [rate((evaluate.get("masked") or {}).get("accuracy")) if encoders else "-"]
        kl, _ = kl_figure(row)
        trained, untrained = probe_summary(row), probe_summary(row, "untrained")
        ceiling, scope = probe_summary(row, "ceiling"), probe_scope(row)
        if probe_targets(row) == "heights":
            scope = f"{scope} ↑h"  # by height: the grammar's nonterminals are not layered
        line += [
            _fmt(kl, ".3f" if compact else ".4f"),
            diversity_cell(row, compact),
            " ".join(_fmt((r["repaired"] or {}).get("rate"), ".2f") for r in rob) or "-",
            rate(mode_switch(row)),
            "-"
            if trained is None
            else f"{trained:.2f}"
            if compact
            else f"{trained:.2f} {scope} ({_fmt(untrained, '.2f')}) / {_fmt(ceiling, '.2f')}",
        ]
        body.append(line)
    keep = [i for i, c in enumerate(columns) if i < 2 or any(line[i] != "-" for line in body)]
    return [columns[i] for i in keep], [[line[i] for i in keep] for line in body]


def rich_table(rows: list[dict[str, Any]], title: str = "") -> RunsTable:
    """The terminal summary: one row per run; a run that did not finish shows `step/steps *`."""
    columns, body = headline(rows, compact=True)
    return RunsTable(columns, body, title)


@dataclass
class RunsTable:
    """The runs table, laid out for the console it is printed on: with the run names in the
    first column where they fit whole, else with a number per run and the names listed whole
    under the table (a folded name is unreadable: `min / i-a / bs- …` at 80 columns)."""

    columns: list[str]
    body: list[list[str]]
    title: str = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        names = [line[0] for line in self.body]
        numbers = [line[1:] for line in self.body]
        widths = [
            max([len(c)] + [len(line[i]) for line in self.body]) for i, c in enumerate(self.columns)
        ]
        if sum(widths) + 2 * len(widths) <= options.max_width:
            yield self._table(self.columns, self.body)
            return
        index = [str(i + 1) for i in range(len(names))]
        yield self._table(["#", *self.columns[1:]], [[i, *n] for i, n in zip(index, numbers)])
        for i, name in zip(index, names):
            yield Text(f"{i:>3}  {name}", no_wrap=True, overflow="fold")

    def _table(self, columns: list[str], body: list[list[str]]) -> Table:
        from rich.table import Table

        table = Table(
            title=self.title or None,
            title_justify="left",
            padding=(0, 1),
            box=None,
            header_style="bold",
        )
        for i, c in enumerate(columns):
            table.add_column(
                c,
                justify="left" if i == 0 else "right",
                no_wrap=True,
                min_width=max([len(c)] + [len(line[i]) for line in body]),
            )
        for line in body:
            table.add_row(*line)
        return table


def budget_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the numbers were bought with: one line per distinct training budget, with the
    parameter count of each PE trained at it (the PEs' counts differ: abs adds a position table,
    rel its relative tables)."""
    seen: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        t = row["_train"]
        key = (
            t["layers"],
            t["heads"],
            t["dim"],
            t["context"],
            t["steps"],
            t["batch"],
            t["lr"],
            row.get("device"),
        )
        seen.setdefault(key, []).append(row)
    lines = []
    for (layers, heads, dim, context, steps, batch, lr, device), runs in seen.items():
        lines.append(
            f"{layers} layers × {heads} heads × {dim} dims ({_parameters(runs)}), "
            f"context {context}; "
            f"{steps:,} steps × batch {batch} = {steps * batch * context:,} tokens, "
            f"peak lr {lr:g}, on {device or 'an unrecorded device'} — {len(runs)} run(s)"
        )
    seeds = sorted({row["seed"] for row in rows})
    lines.append(f"seeds per grid point: {len(seeds)} ({', '.join(map(str, seeds))})")
    return lines


def _parameters(runs: list[dict[str, Any]]) -> str:
    """'parameters: abs 104,000, rot 103,936': each PE's count (several counts for one PE, as
    with --canon variants, are listed with a slash); 'parameters unknown' when none was kept."""
    by_pe: dict[str, list[int]] = {}
    for row in runs:
        if row.get("params"):
            counts = by_pe.setdefault(str(row.get("pe") or "unknown PE"), [])
            if row["params"] not in counts:
                counts.append(row["params"])
    if not by_pe:
        return "parameters unknown"
    shown = ", ".join(f"{pe} {' / '.join(f'{n:,}' for n in ns)}" for pe, ns in by_pe.items())
    return f"parameters: {shown}"


# --- files -------------------------------------------------------------------------------------


@dataclass
class ReportFiles:
    html: Path
    csv: Path
    plots: list[Path] = field(default_factory=list)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    metric_cols = sorted(
        {k for r in rows for k in r if not k.startswith("_")} - set(COORDINATES) - set(TRAINING)
    )
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
        raise CfglabError(
            f"{sweep.path}: not a sweep directory (no plan.json); give the "
            "directory `cfglab sweep` printed"
        )
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
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in line) + "</tr>" for line in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;
padding:.25em .5em;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.smoke{background:#fde2e1;border:2px solid #c44e52;padding:.5em 1em;font-size:1.2em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}code{background:#f3f3f3}"""


def _caveats(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    if any(row.get("device") == "cpu" for row in rows):
        notes.append(
            "These are small models trained for minutes on a CPU. They show what this "
            "budget learns; they do not test the paper's claims, which rest on GPU-scale "
            "runs of its cfg3 grammars (e.g. sweeps/pe.yaml and sweeps/robustness.yaml "
            "on a cluster)."
        )
    if len({row["seed"] for row in rows}) < 3:
        notes.append(
            "Fewer than three seeds per grid point: a difference between runs that lies "
            "inside the 95% intervals (generations of one model) is not evidence of a "
            "difference between settings; seed-to-seed spread is not measured."
        )
    unfinished = [r["run"] for r in rows if r["status"] != "done"]
    if unfinished:
        notes.append(
            f"{len(unfinished)} run(s) did not finish training: "
            + ", ".join(unfinished[:8])
            + (" ..." if len(unfinished) > 8 else "")
        )
    return notes


def _smoke_banner(spec: dict[str, Any]) -> list[str]:
    """A smoke sweep (`cfglab sweep --smoke`) says so before anything else: its figures check
    that the pipeline runs, at a budget too small to mean anything about the models."""
    if not spec.get("smoke"):
        return []
    overrides = (spec.get("spec") or {}).get("smoke") or {}
    what = f" (overrides: {html.escape(json.dumps(overrides))})" if overrides else ""
    return [
        "<p class='smoke'><strong>SMOKE RUN</strong>: a quick check that every stage runs"
        f"{what}; no figure on this page measures what the models can learn.</p>"
    ]


def render_html(
    spec: dict[str, Any], rows: list[dict[str, Any]], plots: list[Path], sweep: SweepDir
) -> str:
    columns, body = headline(rows)
    name = html.escape(spec.get("name", sweep.path.name))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cfglab sweep {name}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>Sweep <code>{name}</code></h1>",
        *_smoke_banner(spec),
        f"<p>From <code>{html.escape(str(spec.get('source', '?')))}</code>"
        f"{' (smoke overrides)' if spec.get('smoke') else ''}; {len(rows)} runs in "
        f"<code>{html.escape(str(sweep.path))}</code>. Every figure, with its N and interval, "
        "is in <code>results.csv</code>.</p>",
        "<h2>Budget</h2><ul>"
        + "".join(f"<li>{html.escape(x)}</li>" for x in budget_lines(rows))
        + "</ul>",
    ]
    if (spec.get("spec") or {}).get("report", {}).get("paper_table"):
        from cfglab.sweep.report.paper import COLUMNS, paper_table

        parts[2:2] = [
            "<h2>The paper's results at this budget</h2>",
            _table_html(COLUMNS, paper_table(rows)),
            "<p>Verdicts are mechanical (thresholds in cfglab/sweep/report/paper.py); the "
            "paper's figures are for its cfg3 grammars and GPT-2-small budgets.</p>",
        ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in _caveats(rows)]
    parts += [
        "<h2>Results</h2>",
        _table_html(columns, body),
        "<p>cut0: generations from BOS; cutK: completions of the first K tokens of fresh "
        "strings; correct iff the model ends with EOS and the whole string is in the "
        "language (95% Wilson intervals). <em>repaired</em>: completions of prompts "
        "corrupted at rate r that make the <em>original</em> prompt valid. Masked-token "
        "accuracy: one masked token at a time, filled in by the model (an mlm encoder sees "
        "both sides; a decoder is scored on the same footing). Probe: mean "
        "ancestor-probe accuracy over levels at the last layer, with its scope: "
        "<em>whole</em> is the paper's probe (Σ over every position of the string, for a "
        "GPT as for an encoder), <em>prefix</em> reads only positions k ≤ i; the untrained "
        "model of the same architecture in brackets; after the slash the ceiling, the Bayes "
        "accuracy of the ideal reader of the whole string (exact, from the grammar's "
        "posterior on the same held-out strings; 1 on an unambiguous grammar). ↑h: a grammar "
        "that is not layered (recursive, or nonterminals at several depths) is probed by "
        "height, ↑h the h-th nonterminal above the token (h ≤ 6), without a ceiling. H: the "
        "model's entropy over its T=1 cut0 generations (nats per string, from its own "
        "log-probabilities, 95% interval) beside the language's exact entropy.</p>",
    ]
    parts += [
        f"<p>H(true) n/a for {html.escape(g)}: {html.escape(why)}.</p>"
        for g, why in h_true_notes(rows).items()
    ]
    parts += _section(
        "Mode switch across temperatures",
        "Invalid cut0 generations (1 − accuracy) at the highest and the lowest "
        "temperature measured, beside the share of corrupted training strings: the "
        "paper's mode switch has noisy-trained runs generate invalid strings at T = 1 "
        "about as often as their data was corrupted, and recover at low T.",
        MODE_SWITCH_COLUMNS,
        mode_switch_rows(rows),
    )
    memo = memorisation_rows(rows)
    parts += _section(
        "Memorisation: the held-out rule",
        "A run trained without any string that has some parse using the rule: how "
        "often its valid cut0 generations use the rule (some parse), beside how often "
        "fresh strings of the grammar do (95% Wilson intervals). A model that only "
        "reproduced its training distribution would score 0; one that learned the "
        "grammar, the true frequency. Novelty: valid generations not among the training "
        "strings.",
        MEMORISATION_COLUMNS,
        memo if any(line[1] != "(none)" for line in memo) else [],
    )
    parts += _canon_section(rows)
    parts += _embedding_section(rows)
    for p in plots:
        parts += [f"<h2>{html.escape(p.stem.replace('_', ' ').capitalize())}</h2>", _img(p, p.stem)]
    parts.append(_run_plots(rows, sweep))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(title: str, intro: str, columns: list[str], body: list[list[str]]) -> list[str]:
    """A heading, its introduction (HTML) and a table; nothing when the table has no line."""
    if not body:
        return []
    return [f"<h2>{html.escape(title)}</h2>", f"<p>{intro}</p>", _table_html(columns, body)]


def _canon_section(rows: list[dict[str, Any]]) -> list[str]:
    from cfglab.sweep.report.canon import CANON_COLUMNS, canon_rows

    return _section(
        "Canon layers (Part 4.1)",
        "Each run with Canon layers below its twin without them (same grammar, size, "
        "position encoding, noise and seed); Δ is its cut0 accuracy minus the twin's (95% "
        "Wilson intervals on each). KL is per position, the authors' recipe where the run has "
        "it. A Canon model also mixes tokens outside attention, so its attention statistics "
        "show only part of how tokens are mixed.",
        CANON_COLUMNS,
        canon_rows(rows),
    )


def _embedding_section(rows: list[dict[str, Any]]) -> list[str]:
    from cfglab.sweep.report.embedding import EMBEDDING_COLUMNS, embedding_rows, verdict_rule

    return _section(
        "Result 10: token embeddings and hidden terminals",
        "Mean cosine similarity of the token embeddings within a hidden terminal's bag and "
        "between bags; the gap is within − between. The probe is a ridge classifier from a "
        "token's embedding to its terminal, each token scored by a probe fitted without it "
        "(leave-one-out). The untrained twin (same architecture and seed, no training) in "
        "brackets. Bag sizes per terminal; shared tokens lie in several bags (overlap), unused "
        f"ones in none. A run groups its bags when: {html.escape(verdict_rule(rows))}. Each "
        "run's similarity matrix is under <em>Per-run plots</em>.",
        EMBEDDING_COLUMNS,
        embedding_rows(rows),
    )


def _run_plots(rows: list[dict[str, Any]], sweep: SweepDir) -> str:
    """Each run's own plots (probes, attention), folded away."""
    blocks = []
    for row in rows:
        pngs = sorted(sweep.run(row["run"]).glob("*/*.png"))
        if pngs:
            blocks.append(
                f"<details><summary>{html.escape(row['run'])}</summary>"
                + "".join(_img(p, f"{row['run']} {p.stem}") for p in pngs)
                + "</details>"
            )
    return ("<h2>Per-run plots</h2>" + "".join(blocks)) if blocks else ""

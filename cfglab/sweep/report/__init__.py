"""The report of a sweep: a rich table, results.csv, PNG plots and one self-contained HTML page.

    write_report(SWEEP_DIR)  ->  SWEEP_DIR/report/{report.html, results.csv, *.png}

It reads only files (cfglab.sweep.layout's sweep directory and each run directory), so it runs
without Ray, during a sweep (partial results) or long after it. Every figure is printed beside
the budget that produced it (model size, steps, tokens, seeds): small CPU runs say little about
the paper's GPU-scale claims, and the page says so.
"""

from __future__ import annotations

from cfglab.sweep.report.collect import (
    COORDINATES,
    TRAINING,
    accuracy,
    collect,
    flatten,
    pooled,
    probe_scope,
    probe_summary,
)
from cfglab.sweep.report.page import (
    ReportFiles,
    headline,
    render_html,
    rich_table,
    write_csv,
    write_report,
)
from cfglab.sweep.report.plots import write_plots

__all__ = [
    "COORDINATES",
    "TRAINING",
    "ReportFiles",
    "accuracy",
    "collect",
    "flatten",
    "headline",
    "pooled",
    "probe_scope",
    "probe_summary",
    "render_html",
    "rich_table",
    "write_csv",
    "write_plots",
    "write_report",
]

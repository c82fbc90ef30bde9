"""The report's Canon table (Part 4.1): each run with Canon layers beside its twin without them
(the same grammar, size, position encoding, noise and seed), so a reader sees what Canon adds."""

from __future__ import annotations

from typing import Any

from cfglab.sweep.report.collect import COORDINATES, accuracy
from cfglab.sweep.report.generation import _ci, kl_figure

CANON_COLUMNS = [
    "run",
    "pe",
    "Canon",
    "cut0 [95% CI] (n)",
    "Δ cut0 against no Canon",
    "KL / position",
    "val loss",
    "train min",
]


def _twin_key(row: dict[str, Any]) -> tuple[str, ...]:
    """Every coordinate but the run's name and its Canon places."""
    return tuple(str(row.get(k)) for k in COORDINATES if k not in ("run", "canon"))


def canon_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per run of a sweep with a Canon axis, each group's run without Canon first;
    none when no run with Canon layers has a twin without them."""
    plain = {_twin_key(r): r for r in rows if not r.get("canon")}
    if not any(_twin_key(r) in plain for r in rows if r.get("canon")):
        return []
    ordered = sorted(rows, key=lambda r: (_twin_key(r), str(r.get("canon") or "")))
    return [_line(r, plain.get(_twin_key(r))) for r in ordered]


def _line(row: dict[str, Any], twin: dict[str, Any] | None) -> list[str]:
    acc = accuracy(row)
    delta = "-"
    if row.get("canon") and twin is not None:
        base = accuracy(twin)
        if acc and base and acc.get("rate") is not None and base.get("rate") is not None:
            delta = f"{acc['rate'] - base['rate']:+.3f}"
    kl, _ = kl_figure(row)
    val, minutes = row.get("final_val_loss"), row.get("train_minutes")
    return [
        row["run"],
        str(row.get("pe", "-")),
        row.get("canon") or "none",
        _ci(acc),
        delta,
        "-" if kl is None else f"{kl:.4f}",
        "-" if val is None else f"{val:.3f}",
        "-" if minutes is None else f"{minutes:.1f}",
    ]

"""The report's Result 10 table: per implicit run, how its token embeddings group the bags of
their hidden terminals (`cfglab.interpret.embedding`), beside the untrained twin."""

from __future__ import annotations

from typing import Any

EMBEDDING_COLUMNS = [
    "run",
    "bags (shared, unused tokens)",
    "cosine within / between",
    "gap (twin)",
    "probe → terminal (twin)",
    "groups its bags",
]


def embedding_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per run with an `embedding` result; none for a sweep without implicit runs."""
    out = []
    for row in rows:
        e = (row.get("_results") or {}).get("embedding")
        if not e:
            continue
        t, u = e["trained"], e["untrained"]
        sizes = "/".join(str(n) for n in e.get("bag_sizes", []))
        out.append(
            [
                row["run"],
                f"{sizes} ({e.get('shared_tokens', 0)}, {e.get('unused_tokens', 0)})",
                f"{t['within']:.2f} / {t['between']:.2f}",
                f"{t['gap']:+.2f} ({u['gap']:+.2f})",
                f"{t['probe_accuracy']:.2f} ({u['probe_accuracy']:.2f})",
                "yes" if e.get("encodes_terminal") else "no",
            ]
        )
    return out


def verdict_rule(rows: list[dict[str, Any]]) -> str:
    """The rule the runs' own results state (cfglab.interpret.embedding.verdict)."""
    rules = {
        e.get("verdict_rule") for r in rows if (e := (r.get("_results") or {}).get("embedding"))
    }
    return "; ".join(sorted(x for x in rules if x)) or "-"

"""Whole-string vs prefix probes on trained runs, beside exact ceilings and the untrained twin.

For each run: the paper's whole-string probe with every control (untrained twin, control task,
output baselines) and the prefix probe, at one layer, on the same probe strings (same seed).
Prints one table per run and checks, per level of the ancestor target:
  whole ≥ prefix (within the 95% intervals), whole ≤ ceiling (within the whole probe's 95%
  interval), whole − untrained (the margin over the untrained twin).
Results go to benchmarks/results/probe_measure_<run>.json.

    .venv/bin/python benchmarks/measure_probes.py runs/mini-rot runs/mini-abs --layer 2 \
        --settings '{"heads": 8, "pos_dim": 32, "steps": 1000, "lr": 0.02}' --n 1024
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cfglab.grammar.levels import level_name
from cfglab.interpret.probes import probe_run

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--settings", default="{}")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    settings = json.loads(args.settings)
    for run in args.runs:
        out = {}
        for scope, controls in (("whole", True), ("prefix", False)):
            t0 = time.perf_counter()
            out[scope] = probe_run(
                run,
                layers=[args.layer],
                n_strings=args.n,
                n_test=args.n_test,
                threads=args.threads,
                controls=controls,
                settings=settings,
                scope=scope,
                plots=False,
            )
            out[scope]["wall_s"] = round(time.perf_counter() - t0, 1)
        name = Path(run).name
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / f"probe_measure_{name}.json").write_text(json.dumps(out, indent=1))
        report(name, out, str(args.layer))


def report(name: str, out: dict, layer: str) -> None:
    w, p = out["whole"], out["prefix"]
    tw, tp, tu = w["trained"][layer], p["trained"][layer], w["untrained"][layer]
    print(f"\n{name} (step {w['step']}), layer {layer}, ancestor probe, accuracy % ± 95%:")
    print(
        "| level | whole-string probe | prefix probe | ceiling (whole) | ceiling (prefix) "
        "| untrained twin (whole) | token ⊕ true next rows | checks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for lv in tw["ancestor"]:
        a, ca = tw["ancestor"][lv], tw["ancestor_ci95"][lv]
        b, cb = tp["ancestor"][lv], tp["ancestor_ci95"][lv]
        u, cu = tu["ancestor"][lv], tu["ancestor_ci95"][lv]
        c, cp = w["ceiling"]["ancestor"][lv], w["prefix_ceiling"]["ancestor"][lv]
        t = (w.get("true_output_tokens") or {}).get("ancestor", {}).get(lv)
        checks = [
            "whole ≥ prefix" if a + ca >= b - cb else "whole < prefix",
            "≤ ceiling" if a - ca <= c else "ABOVE ceiling",
            f"+{100 * (a - u):.1f} over untrained",
        ]
        print(
            f"| {lv} ({level_name(int(lv))}) | {100 * a:.1f} ± {100 * ca:.1f} "
            f"| {100 * b:.1f} ± {100 * cb:.1f} | {100 * c:.1f} | {100 * cp:.1f} "
            f"| {100 * u:.1f} ± {100 * cu:.1f} | {'-' if t is None else f'{100 * t:.1f}'} "
            f"| {', '.join(checks)} |"
        )
    print(f"seconds: whole with controls {w['wall_s']}, prefix {p['wall_s']}")


if __name__ == "__main__":
    main()

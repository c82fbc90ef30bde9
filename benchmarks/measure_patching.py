"""Activation patching on trained runs beside their untrained twins: markdown tables per run.

For each run: `cfglab.interpret.patching.patch_run` (every layer × position set, the untrained
twin, the subtree swap), printed as restored [95% CI] per layer with the untrained twin's after a
slash, and the exact columns (KL of the patched prediction to the base's / the donor's true rows).
Results go to benchmarks/results/patch_measure_<run>.json.

    .venv/bin/python benchmarks/measure_patching.py runs/mini-rot runs/mini-abs --pairs 400
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cfglab.interpret.patching import patch_run

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for run in args.runs:
        t0 = time.perf_counter()
        out = patch_run(run, n_pairs=args.pairs, seed=args.seed, threads=args.threads)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        name = Path(run).name
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / f"patch_measure_{name}.json").write_text(json.dumps(out, indent=1))
        report(name, out)


def _cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return "–" if r["restored"] is None else f"{r['restored']:.2f} [{lo:.2f}, {hi:.2f}]"


def report(name: str, out: dict) -> None:
    print(
        f"\n{name} ({out['pe']}, step {out['step']}): {out['pairs']} pairs, mean prefix "
        f"length {out['mean_prefix_length']}, {out['wall_s']} s"
    )
    table(out["results"], out["untrained"]["results"], out["layers"])
    base, donor = out["reference"]["base"], out["reference"]["donor"]
    print(
        f"unpatched: base run {base['kl_to_base_truth']:.3f} / {base['kl_to_donor_truth']:.3f}, "
        f"donor run {donor['kl_to_base_truth']:.3f} / {donor['kl_to_donor_truth']:.3f} "
        "(KL to base / donor truth)"
    )
    sub, twin = out.get("subtree"), (out.get("untrained") or {}).get("subtree")
    if sub and twin:
        print(
            f"\nsubtree swap: {sub['swaps']} swaps, span {sub['mean_span']} tokens, "
            f"{sub['mean_after']} after it; true rows equal in {sub['truth_equal']:.0%} "
            f"(mean TV {sub['true_tv']:.3f}); model KL(base || swapped) {sub['model_kl']:.4f} vs "
            f"{sub['random_pair_kl']:.3f} for random pairs (untrained {twin['model_kl']:.5f} vs "
            f"{twin['random_pair_kl']:.4f})"
        )
        table(sub["results"], twin["results"], out["layers"])


def table(trained_rows: list, twin_rows: list, layers: list) -> None:
    """restored [95% CI] per layer, the untrained twin after the slash; then KL to both truths."""
    trained = {(r["positions"], r["layer"]): r for r in trained_rows}
    twin = {(r["positions"], r["layer"]): r for r in twin_rows}
    names = list(dict.fromkeys(r["positions"] for r in trained_rows))
    head = " | ".join(("emb" if l == 0 else f"layer {l}") for l in layers)
    kl_head = " | ".join(f"KL b/d {'emb' if l == 0 else l}" for l in layers)
    print(f"| positions | {head} | {kl_head} |")
    print("|---" * (2 * len(layers) + 1) + "|")
    for n in names:
        cells = " | ".join(
            f"{_cell(trained[(n, l)])} / {_num(twin[(n, l)]['restored'])}" for l in layers
        )
        rows = [trained[(n, l)] for l in layers]
        kls = " | ".join(
            f"{r['kl_to_base_truth']:.2f} / {r['kl_to_donor_truth']:.2f}" for r in rows
        )
        print(f"| {n} | {cells} | {kls} |")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    main()

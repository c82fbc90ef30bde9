"""Activation patching on trained runs beside their untrained twins: one markdown table per run.

For each run: `cfglab.interpret.patching.patch_run` (every layer × position set, the untrained
twin), printed as restored [95% CI] per layer, trained | untrained, with the exact columns
(KL of the patched prediction to the base's and the donor's true rows) at the last layer.
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
    layers = out["layers"]
    trained = {(r["positions"], r["layer"]): r for r in out["results"]}
    twin = {(r["positions"], r["layer"]): r for r in out["untrained"]["results"]}
    names = list(dict.fromkeys(r["positions"] for r in out["results"]))
    top = layers[-1]
    print(
        f"\n{name} ({out['pe']}, step {out['step']}): {out['pairs']} pairs, mean prefix "
        f"length {out['mean_prefix_length']}, {out['wall_s']} s"
    )
    head = " | ".join(("emb" if l == 0 else f"layer {l}") for l in layers)
    kl_head = f"KL to base / donor truth, layer {top}"
    print(f"| positions | {head} | untrained, layer {top} | {kl_head} |")
    print("|---" * (len(layers) + 3) + "|")
    for n in names:
        cells = " | ".join(_cell(trained[(n, l)]) for l in layers)
        r = trained[(n, top)]
        kl = f"{r['kl_to_base_truth']:.3f} / {r['kl_to_donor_truth']:.3f}"
        print(f"| {n} | {cells} | {_cell(twin[(n, top)])} | {kl} |")
    base, donor = out["reference"]["base"], out["reference"]["donor"]
    print(
        f"unpatched: base run {base['kl_to_base_truth']:.3f} / {base['kl_to_donor_truth']:.3f}, "
        f"donor run {donor['kl_to_base_truth']:.3f} / {donor['kl_to_donor_truth']:.3f} "
        "(KL to base / donor truth)"
    )


if __name__ == "__main__":
    main()

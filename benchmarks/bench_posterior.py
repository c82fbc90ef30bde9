"""Label posteriors (`cfglab posterior`, chart/posterior.py) beside `verify` in the same run.

  whole    exact P(s_l(i) = A | x) and P(b_l(i) = 1 | x) of every token of 500 cfg3f strings
           (fresh samples), against membership + exact parse counts of the same strings
           (`Chart.count_parses`, what `cfglab verify` computes first). Target: ≥ 500 strings/s.
  prefix   the same labels of every token given only the tokens up to it, for one cfg3b string
           of ~300 tokens (every valid completion weighed in). Target: ≤ 50 ms.
  json     the whole `cfglab posterior --json` answer (library call + JSON encoding), 100 cfg3f
           strings, for what a pipe sees.

One thread (numpy only). Run: .venv/bin/python benchmarks/bench_posterior.py [--strings 500]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from bench_chart import best_of  # this folder is on sys.path when run as a script

from cfglab.chart.front import Chart
from cfglab.cli.posterior_cmds import posterior_record
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strings", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    g = load_grammar(ROOT / "grammars" / "cfg3f.cfg")
    chart = Chart(g)
    strings = sample(g, args.strings, 1).strings()
    chart.posteriors(strings[:2])  # tables built once
    t_post = best_of(args.repeats, lambda: chart.posteriors(strings))
    t_verify = best_of(args.repeats, lambda: chart.count_parses(strings))
    n = len(strings)
    print(f"cfg3f, {n} strings, mean length {np.mean([len(s) for s in strings]):.0f}")
    print(
        f"  whole-string posterior : {n / t_post:6.0f} strings/s  ({1e3 * t_post / n:.2f} ms each)"
    )
    print(
        f"  verify (count parses)  : {n / t_verify:6.0f} strings/s  "
        f"({1e3 * t_verify / n:.2f} ms each)"
    )
    print(
        f"  posterior / verify time: {t_post / t_verify:.2f}x   target >= 500 strings/s: "
        f"{'met' if n / t_post >= 500 else 'NOT met'}"
    )

    few = strings[:100]
    t_json = best_of(
        args.repeats,
        lambda: [json.dumps(posterior_record(g, s, p)) for s, p in zip(few, chart.posteriors(few))],
    )
    print(f"  posterior + JSON lines : {len(few) / t_json:8.0f} strings/s")

    gb = load_grammar(ROOT / "grammars" / "cfg3b.cfg")
    cb = Chart(gb)
    pool = sample(gb, 200, 2).strings()
    one = min(pool, key=lambda s: abs(len(s) - 300))
    cb.posteriors([one], prefix=True)
    t_prefix = best_of(args.repeats, lambda: cb.posteriors([one], prefix=True))
    t_next = best_of(args.repeats, lambda: cb.next_token_distributions(one))
    t_whole = best_of(args.repeats, lambda: cb.posteriors([one]))
    print(f"cfg3b, one string of {len(one)} tokens")
    print(
        f"  prefix posterior       : {1e3 * t_prefix:8.1f} ms   target <= 50 ms: "
        f"{'met' if t_prefix <= 0.05 else 'NOT met'}"
    )
    print(f"  whole-string posterior : {1e3 * t_whole:8.1f} ms")
    print(
        f"  next-token rows        : {1e3 * t_next:8.1f} ms   (prefix / next-token: "
        f"{t_prefix / t_next:.1f}x)"
    )


if __name__ == "__main__":
    main()

"""Sampler with labels on cfg3f: tokens/s of the vectorised sampler against a plain recursive one.

Run: .venv/bin/python benchmarks/bench_sampler.py [--strings 20000] [--grammar grammars/cfg3f.cfg]
Both samplers produce the same labels (tokens, ancestors and boundary bits per level).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import numpy as np

from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample

ROOT = Path(__file__).resolve().parents[1]


def recursive_sample(
    g: Grammar, n: int, seed: int
) -> list[tuple[list[int], list[list[int]], list[list[int]]]]:
    """The baseline: one Python recursion per node, labels collected on the way down."""
    rng = random.Random(seed)
    ids = g.symbol_ids
    nt_index = {nt: i for i, nt in enumerate(g.nonterminals)}
    choices = {
        nt: ([r.rhs for r in g.rules_of(nt)], [r.weight for r in g.rules_of(nt)])
        for nt in g.nonterminals
    }
    out = []
    for _ in range(n):
        tokens: list[int] = []
        ancestors: list[list[int]] = []
        boundaries: list[list[int]] = []

        def expand(  # this iteration's lists bound as defaults: the closure outlives no loop
            sym: str,
            path: list[int],
            tokens: list[int] = tokens,
            ancestors: list[list[int]] = ancestors,
            boundaries: list[list[int]] = boundaries,
        ) -> None:
            if g.is_terminal(sym):
                tokens.append(ids[sym])
                ancestors.append(list(path))
                boundaries.append([0] * len(path))
                return
            rhs_options, weights = choices[sym]
            rhs = rng.choices(rhs_options, weights)[0]
            path.append(nt_index[sym])
            for s in rhs:
                expand(s, path)
            boundaries[-1][len(path) - 1] = 1
            path.pop()

        expand(g.start, [])
        out.append((tokens, ancestors, boundaries))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grammar", default=str(ROOT / "grammars" / "cfg3f.cfg"))
    ap.add_argument("--strings", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = load_grammar(args.grammar)

    n_base = max(args.strings // 10, 200)
    t0 = time.perf_counter()
    base = recursive_sample(g, n_base, 0)
    base_rate = sum(len(t) for t, _, _ in base) / (time.perf_counter() - t0)

    sample(g, 100, 0)  # warm-up
    rates = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        s = sample(g, args.strings, r)
        rates.append(len(s.tokens) / (time.perf_counter() - t0))
    fast_rate = float(np.median(rates))
    print(f"grammar {g.name}: {args.strings} strings, {len(s.tokens)} tokens, depth {s.depth}")
    print(f"recursive sampler (baseline): {base_rate / 1e6:8.3f} M tokens/s with labels")
    print(
        f"vectorised sampler          : {fast_rate / 1e6:8.3f} M tokens/s with labels "
        f"(median of {args.repeats})"
    )
    print(
        f"ratio vectorised / recursive: {fast_rate / base_rate:8.1f}x  "
        "(target >= 8x, >= 10 M tokens/s)"
    )


if __name__ == "__main__":
    main()

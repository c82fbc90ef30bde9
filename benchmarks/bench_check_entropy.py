"""What the language's entropy adds to `cfglab check` on the nine paper grammars.

Run: .venv/bin/python benchmarks/bench_check_entropy.py [--repeats 3]

Per grammar, in one process and one thread, best of --repeats: the whole check (ambiguity
analysis included, as `cfglab check` runs it), and what the entropy adds to it: exact H(trees)
plus E[H(tree | string)] over the ambiguity pass's 200 sampled strings (the posterior of the
ambiguous ones, from the tilted inside values). Then `cfglab check` on all nine files as one
subprocess (wall time, interpreter start included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["cfg3b", "cfg3i", "cfg3h", "cfg3g", "cfg3f", "cfg3e1", "cfg3e2", "cfg3j", "cfg3k"]


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import numpy as np

    import cfglab.analysis.checks as checks
    from cfglab.analysis.entropy import conditional_entropy, tree_entropy
    from cfglab.chart.front import Chart
    from cfglab.grammar.dsl import load_grammar
    from cfglab.grammar.sample import sample

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{'grammar':8} {'check s':>8} {'entropy s':>9} {'share':>6}")
    for name in PAPER:
        g = load_grammar(ROOT / "grammars" / f"{name}.cfg")
        chart = Chart(g)
        strings = sample(g, 200, np.random.default_rng(0)).strings()
        counts = chart.count_parses(strings)
        whole = best(lambda g=g: checks.check_grammar(g), args.repeats)
        added = best(
            lambda g=g, c=chart, s=strings, k=counts: (
                tree_entropy(g),
                conditional_entropy(c, s, k),
            ),
            args.repeats,
        )
        print(f"{name:8} {whole:8.3f} {added:9.4f} {added / whole:6.1%}")
    files = [str(ROOT / "grammars" / f"{n}.cfg") for n in PAPER]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cfglab", "check", *files], capture_output=True, check=True
    )
    print(f"cfglab check on all nine, one process: {time.perf_counter() - start:.2f} s wall")


if __name__ == "__main__":
    main()

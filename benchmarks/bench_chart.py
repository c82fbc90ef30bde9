"""Chart speed on the paper's grammars, against baselines measured in the same run.

  verify   200 cfg3f strings, half valid samples, half with one token flipped: membership + exact
           parse counts (`Chart.count_parses`, count > 0 is membership), against lark's Earley
           parser on a subset of the same strings: plain (membership only) and with
           ambiguity="explicit" and the trees counted (the same answer as the chart's).
           Target: ≥ 30× faster than lark.
  next     next-token distributions of a cfg3b string of ~280 tokens, against the general O(n³)
           chart (Jelinek–Lafferty prefix probabilities over the binarised grammar), which is the
           textbook method. Target: ≤ 20 ms.
  repair   fewest substitutions with a repaired string: one flip (sparse chart, budget 1) and
           eight flips (dense windows).
  startup  wall clock of `cfglab verify --help` and of a one-line `cfglab verify --json`.
  process  whole `cfglab verify --json` processes (start-up included) on N valid and on N invalid
           cfg3f strings (one token flipped, still-valid flips dropped: every one gets a
           repair), per string, against lark's Earley membership parse of the same strings in
           this process. Targets: invalid ≥ 10×, valid ≥ 30×.

Run: .venv/bin/python benchmarks/bench_chart.py [--strings 200] [--lark-strings 40] [--no-general]
     [--process-strings 500] [--only process]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from cfglab.chart.earley import count_trees, earley_parser
from cfglab.chart.front import Chart
from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def flipped(strings: list[np.ndarray], n_flips: int, T: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in strings:
        s = s.copy()
        pos = rng.choice(len(s), n_flips, replace=False)
        s[pos] = (s[pos] + rng.integers(1, T, n_flips)) % T
        out.append(s)
    return out


def lark_run(parser, g: Grammar, strings: list[np.ndarray], count: bool) -> list[int]:
    from lark.exceptions import LarkError

    out = []
    for s in strings:
        try:
            tree = parser.parse(" ".join(g.decode(s)))
            out.append(count_trees(tree) if count else 1)
        except LarkError:
            out.append(0)
    return out


def bench_verify(n: int, n_lark: int) -> None:
    g = load_grammar(ROOT / "grammars" / "cfg3f.cfg")
    T = len(g.terminals)
    valid = sample(g, n // 2, 0).strings()
    strings = valid + flipped(sample(g, n - n // 2, 1).strings(), 1, T, 2)
    chart = Chart(g)
    counts = chart.count_parses(strings)
    t_chart = best_of(3, lambda: chart.count_parses(strings)) / len(strings)
    half = n_lark // 2
    picked = list(range(half)) + list(range(n // 2, n // 2 + n_lark - half))
    subset = [strings[i] for i in picked]
    t_chart_subset = best_of(3, lambda: chart.count_parses(subset)) / len(subset)
    plain, explicit = earley_parser(g), earley_parser(g, explicit_ambiguity=True)
    t0 = time.perf_counter()
    member = lark_run(plain, g, subset, count=False)
    t_plain = (time.perf_counter() - t0) / len(subset)
    t0 = time.perf_counter()
    lark_counts = lark_run(explicit, g, subset, count=True)
    t_explicit = (time.perf_counter() - t0) / len(subset)
    mine = [counts[i] for i in picked]
    agree = mine == lark_counts and [c > 0 for c in mine] == [m > 0 for m in member]
    print(
        f"verify  cfg3f: {len(strings)} strings ({sum(c > 0 for c in counts)} valid, "
        f"mean length {np.mean([len(s) for s in strings]):.0f}), parse counts up to {max(counts)}"
    )
    print(
        f"  chart membership + counts   {t_chart * 1e3:8.3f} ms/string (all {len(strings)})  "
        f"{t_chart_subset * 1e3:8.3f} ms/string (the lark subset)"
    )
    print(
        f"  lark Earley, membership     {t_plain * 1e3:8.1f} ms/string ({len(subset)} strings)"
        f"  ratio {t_plain / t_chart:6.0f}x"
    )
    print(
        f"  lark Earley, explicit+count {t_explicit * 1e3:8.1f} ms/string"
        f"                  ratio {t_explicit / t_chart:6.0f}x"
    )
    print(f"  counts agree with lark on the subset: {agree}   (target: ratio >= 30x)")


def bench_next(general: bool) -> None:
    g = load_grammar(ROOT / "grammars" / "cfg3b.cfg")
    strings = sample(g, 200, 0).strings()
    s = min(strings, key=lambda x: abs(len(x) - 280))
    t0 = time.perf_counter()
    chart = Chart(g)
    t_build = time.perf_counter() - t0
    rows = chart.next_token_distributions(s)
    t = best_of(5, lambda: chart.next_token_distributions(s))
    print(
        f"next    cfg3b string of {len(s)} tokens: rows {rows.shape}, "
        f"min p(actual token) {rows[np.arange(len(s)), 1 + s].min():.3g}"
    )
    print(
        f"  chart (sparse levels + forward)  {t * 1e3:8.2f} ms   (tables built once in "
        f"{t_build * 1e3:.1f} ms)   target <= 20 ms"
    )
    if general:
        slow = Chart(g, general=True)
        t0 = time.perf_counter()
        ref = slow.next_token_distributions(s)
        t_gen = time.perf_counter() - t0
        print(
            f"  general O(n^3) chart             {t_gen * 1e3:8.0f} ms   ratio {t_gen / t:6.0f}x"
            f"   max |diff| {np.abs(ref - rows).max():.1e}"
        )


def bench_repair() -> None:
    g = load_grammar(ROOT / "grammars" / "cfg3f.cfg")
    T = len(g.terminals)
    chart = Chart(g)
    for flips, n in ((1, 40), (8, 5)):
        strings = flipped(sample(g, n, 10 + flips).strings(), flips, T, flips)
        t0 = time.perf_counter()
        repairs = chart.min_substitutions(strings)
        t = (time.perf_counter() - t0) / n
        costs = [r.substitutions for r in repairs]
        print(
            f"repair  cfg3f, {flips} flip(s): {t * 1e3:8.1f} ms/string  substitutions "
            f"{min(costs)}..{max(costs)} (mean length {np.mean([len(s) for s in strings]):.0f})"
        )


def bench_startup() -> None:
    line = " ".join(
        load_grammar(ROOT / "grammars" / "cfg3f.cfg").decode(
            sample(load_grammar(ROOT / "grammars" / "cfg3f.cfg"), 1, 0).string(0)
        )
    )
    exe = [sys.executable, "-m", "cfglab"]
    t_help = best_of(
        3, lambda: subprocess.run(exe + ["verify", "--help"], capture_output=True, check=True)
    )
    t_one = best_of(
        3,
        lambda: subprocess.run(
            exe + ["verify", "grammars/cfg3f.cfg", "-", "--json"],
            input=line + "\n",
            text=True,
            capture_output=True,
            check=True,
            cwd=ROOT,
        ),
    )
    t_py = best_of(3, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    print(
        f"startup `cfglab verify --help` {t_help:.2f} s, one-line verify {t_one:.2f} s "
        f"(bare python {t_py:.2f} s)   target < 1 s"
    )


def bench_process(n: int, n_lark: int, repeats: int = 3) -> None:
    import tempfile

    g = load_grammar(ROOT / "grammars" / "cfg3f.cfg")
    T = len(g.terminals)
    chart = Chart(g)
    valid = sample(g, n, 3).strings()
    candidates = flipped(sample(g, 2 * n, 4).strings(), 1, T, 5)
    invalid = [s for s, ok in zip(candidates, chart.accepts(candidates)) if not ok][:n]
    parser = earley_parser(g)
    exe = [sys.executable, "-m", "cfglab", "verify", str(ROOT / "grammars" / "cfg3f.cfg")]
    print(f"process cfg3f, `cfglab verify --json` on {n} strings per kind (start-up included)")
    for kind, strings in (("valid", valid), ("invalid", invalid)):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(" ".join(g.decode(s)) + "\n" for s in strings))
        t_cli, t_lark = float("inf"), float("inf")
        for _ in range(repeats):  # alternated, best of each: load swings hit both alike
            t0 = time.perf_counter()
            done = subprocess.run(
                [*exe, f.name, "--json"], capture_output=True, text=True, check=True
            )
            t_cli = min(t_cli, (time.perf_counter() - t0) / len(strings))
            assert len(done.stdout.splitlines()) == len(strings)
            t0 = time.perf_counter()
            member = lark_run(parser, g, strings[:n_lark], count=False)
            t_lark = min(t_lark, (time.perf_counter() - t0) / n_lark)
            assert all(m == (kind == "valid") for m in member)
        os.unlink(f.name)
        t_in = best_of(repeats, lambda: chart.verify(strings)) / len(strings)  # noqa: B023
        target = 30 if kind == "valid" else 10
        print(
            f"  {kind:8s} cfglab verify {t_cli * 1e3:7.2f} ms/string (in-process "
            f"{t_in * 1e3:5.2f})   lark Earley {t_lark * 1e3:7.2f} ms/string ({n_lark} strings)"
            f"   ratio {t_lark / t_cli:6.1f}x   (target >= {target}x)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strings", type=int, default=200)
    ap.add_argument("--lark-strings", type=int, default=40)
    ap.add_argument("--no-general", action="store_true", help="skip the O(n³) baseline")
    ap.add_argument("--process-strings", type=int, default=500)
    ap.add_argument("--process-lark-strings", type=int, default=50)
    ap.add_argument(
        "--only", default="", help="comma-separated: verify,next,repair,startup,process"
    )
    args = ap.parse_args()
    parts = {
        "verify": lambda: bench_verify(args.strings, args.lark_strings),
        "next": lambda: bench_next(not args.no_general),
        "repair": bench_repair,
        "startup": bench_startup,
        "process": lambda: bench_process(args.process_strings, args.process_lark_strings),
    }
    for name in args.only.split(",") if args.only else parts:
        parts[name]()


if __name__ == "__main__":
    main()

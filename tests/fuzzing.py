"""Seeded mutations of the shipped grammars, and one bounded run of `cfglab check` on each:
the shared half of tests/test_fuzz.py and benchmarks/bench_fuzz.py.

Mutation classes (issue 21): token deletes, inserts and swaps; random bytes (non-UTF-8, NUL);
weights (overflowing, tiny, zero, negative, NaN); structural additions: big unit and rule
cycles, long unit chains, binary chains, huge fan-out.
"""

from __future__ import annotations

import random
import re
import signal
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cfglab.analysis.checks import check_grammar
from cfglab.errors import CfglabError, LocatedError
from cfglab.grammar.dsl import load_grammar

GRAMMARS = sorted((Path(__file__).resolve().parents[1] / "grammars").glob("*.cfg"))
TIME_BOUND_S = 10
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|->|\||\S+')
_WEIRD_WEIGHTS = ["1e308", "1.8e308", "1e-300", "1e300", "5e-324", "1e-400", "0", "-1", "nan",
                  "inf", "1e309", "0.0", "1e154", "2"]  # fmt: skip
_JUNK_TOKENS = ["->", "|", "[1]", '"x"', "N1", "grammar", "start", "terminals", '"', "[", "]",
                "#", "S ->", '""', "[1e308]", "\\"]  # fmt: skip


@dataclass
class Outcome:
    kind: str  # ok | located | error (CfglabError without a location) | other | timeout
    seconds: float
    peak_bytes: int
    detail: str = ""


class _Timeout(BaseException):
    pass


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _join(tokens: list[str], rng: random.Random) -> str:
    return " ".join(tokens) if rng.random() < 0.5 else "\n".join(tokens)


def _token_edit(text: str, rng: random.Random) -> str:
    """Delete, insert or swap one token, keeping the other lines intact."""
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    toks = _tokens(lines[i]) or [""]
    op = rng.choice(["delete", "insert", "swap"])
    k = rng.randrange(len(toks))
    if op == "delete":
        del toks[k]
    elif op == "insert":
        toks.insert(k, rng.choice(_JUNK_TOKENS + toks))
    else:
        j = rng.randrange(len(toks))
        toks[k], toks[j] = toks[j], toks[k]
    lines[i] = " ".join(toks)
    return "\n".join(lines)


def _bytes_edit(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return data[:at] + junk + data[at + rng.randint(0, 2) :]


def _weight_edit(text: str, rng: random.Random) -> str:
    lines = [i for i, line in enumerate(text.split("\n")) if "->" in line]
    out = text.split("\n")
    for i in rng.sample(lines, min(len(lines), rng.randint(1, 3))):
        alts = out[i].split("|")
        for k in rng.sample(range(len(alts)), min(len(alts), 2)):
            alts[k] = (
                re.sub(r"\s*\[[^\]]*\]\s*$", "", alts[k]) + f" [{rng.choice(_WEIRD_WEIGHTS)}] "
            )
        out[i] = "|".join(alts)
    return "\n".join(out)


def _nonterminals(text: str) -> list[str]:
    return re.findall(r"^\s*(\w+)\s*->", text, re.M) or ["S"]


def _structural_edit(text: str, rng: random.Random) -> str:
    nts = _nonterminals(text)
    a = rng.choice(nts)
    kind = rng.choice(["unit_cycle", "rule_cycle", "unit_chain", "binary_chain", "fan_out"])
    n = rng.choice([10, 100, 1000, 2000])
    if kind == "unit_cycle":
        extra = [f"Z{i} -> Z{(i + 1) % n}" for i in range(n)] + [f"{a} -> Z0", 'Z0 -> "z"']
    elif kind == "rule_cycle":
        extra = [f'Z{i} -> Z{(i + 1) % n} "z"' for i in range(n)] + [f"{a} -> Z0", 'Z0 -> "y"']
    elif kind == "unit_chain":
        extra = [f"Z{i} -> Z{i + 1}" for i in range(n)] + [f"{a} -> Z0", f'Z{n} -> "z"']
    elif kind == "binary_chain":
        d = rng.choice([8, 14, 20, 30])
        extra = [f"Z{i} -> Z{i + 1} Z{i + 1}" for i in range(d)] + [f'Z{d} -> "z"']
        extra.append(f"{a} -> Z0" if rng.random() < 0.5 else f"{a} -> Z0 {a}")
    else:
        m = rng.choice([100, 1000, 10000])
        extra = [f"{a} -> " + " | ".join(f'"f{i}" {rng.choice(nts)}' for i in range(m))]
    if '"z"' in "".join(extra) or '"y"' in text:
        text = re.sub(r"^terminals .*$", "", text, flags=re.M)  # new terminals are undeclared
    text = re.sub(r"^terminals .*$", "", text, flags=re.M) if "f0" in "".join(extra) else text
    return text + "\n" + "\n".join(extra) + "\n"


MUTATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "token": _token_edit,
    "weight": _weight_edit,
    "structural": _structural_edit,
}


def mutate(seed: int) -> tuple[str, bytes]:
    """(mutation class, file bytes) for one seed: the same bytes every time."""
    rng = random.Random(seed)
    source = rng.choice(GRAMMARS).read_bytes()
    kind = rng.choice([*MUTATIONS, "bytes"])
    if kind == "bytes":
        return kind, _bytes_edit(source, rng)
    text = source.decode("utf-8")
    for _ in range(rng.choice([1, 1, 2, 3])):
        text = MUTATIONS[kind](text, rng)
    return kind, text.encode("utf-8")


def check_file(path: Path, time_bound_s: int = TIME_BOUND_S) -> Outcome:
    """load_grammar + check_grammar as `cfglab check` runs them, under an alarm and tracemalloc."""

    def _alarm(signum: int, frame: object) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    began = time.perf_counter()
    kind, detail = "ok", ""
    signal.alarm(time_bound_s)
    try:
        check_grammar(load_grammar(path))
    except _Timeout:
        kind = "timeout"
    except LocatedError as err:
        kind, detail = "located", err.message
    except CfglabError as err:
        kind, detail = "error", str(err)
    except Exception as err:
        kind, detail = "other", f"{type(err).__name__}: {err}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Outcome(kind, seconds, peak, detail)

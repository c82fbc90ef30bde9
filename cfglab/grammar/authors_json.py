"""The authors' JSON grammars (Physics of LMs Part 1, facebookresearch/PhysicsLM4) ⇄ Grammar.

Their format describes a layered grammar level by level:
  sizes[l]            how many symbols level l has (level 0: the start symbol; the last level:
                      the terminals, ids 1..num_sym)
  idx[l][i]           the numeric id of symbol i on level l
  all[l][i].children  the rules of nonterminal i on level l, each a list of 0-based indices into
                      level l+1 (rules are drawn uniformly when sampling)
  eos_token           num_sym + 1 (then mask_token, sep_token; nonterminal ids start above them)

Imported nonterminals are called N<id> (N22 is cfg3b's start symbol) and terminals "<id>", so
the names in a .cfg file are the ids in the paper's figures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cfglab.errors import CfglabError, LocatedError, Location
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.dsl import MAX_RULES, NAME_RE, read_text_file

_RESERVED_TOKENS = 3  # eos, mask, sep sit between the terminals and the first nonterminal id


# --- import --------------------------------------------------------------------------------
def load_authors_json(path: str | Path) -> Grammar:
    """Read one of the authors' JSON files; malformed input is a CfglabError naming the file
    and the JSON path of the offending value."""
    p = Path(path)
    text = read_text_file(
        p,
        "JSON grammar file",
        empty_hint="an authors' grammar is one JSON object with sizes, idx, all",
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        lines = text.split("\n")
        line = lines[err.lineno - 1] if err.lineno <= len(lines) else ""
        near = ""
        if len(line) > 120:  # one-line JSON: show a window instead of the whole line
            window = line[max(err.colno - 40, 0) : err.colno + 20]
            near, line = f" near {window!r}", ""
        where = Location(str(p), err.lineno, err.colno, line)
        raise LocatedError(
            f"invalid JSON: {err.msg}{near}", where, _json_hint(text, err.pos)
        ) from None
    except RecursionError:
        raise CfglabError(f"{p}: JSON nested too deeply to be a grammar") from None
    except ValueError as err:  # e.g. a number with more digits than Python converts
        raise CfglabError(f"{p}: invalid JSON ({err})") from None
    g = from_authors_json(data, _name_from_path(p), file=str(p))
    header = (f"Converted from the authors' JSON {p.name} by cfglab import-json.", *g.header)
    return Grammar(g.name, g.start, g.terminals, g.rules, header=header, source=str(p))


def _json_hint(text: str, pos: int) -> str:
    if pos >= len(text.rstrip()):
        return "the file ends too early: is it truncated?"
    if not text[:pos].strip():
        return (
            "this does not start like JSON; a .cfg grammar file is read by other commands "
            "(export-json converts one to JSON)"
        )
    return "an authors' grammar file is one JSON object with sizes, idx and all"


def from_authors_json(data: Any, name: str, file: str = "<json>") -> Grammar:
    """The Grammar of an authors' JSON object (already decoded).

    Nonterminals are N<id>, terminals "<id>" in the order of the last level; rules come level by
    level, top down, in the file's order. Errors name the JSON path, e.g. `all[2][1].children`.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CfglabError(f"grammar name {name!r} is not an identifier (letters, digits, _)")
    reader = _Reader(file)
    obj = reader.object(data, "")
    sizes = reader.sizes(obj)
    idx = reader.ids(obj, sizes)
    levels = reader.as_list(reader.key(obj, "all"), "all", len(sizes))
    rules: list[Rule] = []
    for l in range(len(sizes) - 1):
        names = [f"N{i}" for i in idx[l]]
        below = (
            [f"N{i}" for i in idx[l + 1]] if l + 2 < len(sizes) else [str(i) for i in idx[l + 1]]
        )
        nodes = reader.as_list(levels[l], f"all[{l}]", sizes[l])
        for i, node in enumerate(nodes):
            rules += reader.rules(node, f"all[{l}][{i}]", names[i], below)
            if len(rules) > MAX_RULES:
                raise CfglabError(f"{file}: more than {MAX_RULES:,} rules; refusing to import")
    reader.as_list(levels[-1], f"all[{len(sizes) - 1}]", sizes[-1])
    terminals = tuple(str(i) for i in idx[-1])
    g = Grammar(name, f"N{idx[0][0]}", terminals, tuple(rules))
    return Grammar(g.name, g.start, g.terminals, g.rules, header=(summarise(g, sizes),))


def summarise(g: Grammar, sizes: list[int]) -> str:
    """One line: levels, nonterminals per level, rules per nonterminal, rule lengths."""
    per_nt = [len(g.rules_of(nt)) for nt in g.nonterminals]
    lengths = [len(r.rhs) for r in g.rules]
    text = (
        f"{len(sizes) - 1} levels of nonterminals ({','.join(map(str, sizes[:-1]))} per "
        f"level) over {sizes[-1]} terminals; {_span(per_nt)} rules per nonterminal, "
        f"of length {_span(lengths)}; {len(g.rules)} rules in all"
    )
    levels = g.levels or {}
    unreachable = sum(nt not in levels for nt in g.nonterminals)
    if unreachable:
        text += f"; {unreachable} nonterminals are unreachable from the start symbol"
    return text + "."


def _span(values: Any) -> str:
    values = list(values)
    lo, hi = min(values, default=0), max(values, default=0)
    return str(lo) if lo == hi else f"{lo}–{hi}"


class _Reader:
    """Checks the decoded JSON piece by piece; every error names the JSON path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, what: str) -> CfglabError:
        return CfglabError(f"{self.file}: {path or 'the top level'}: {what}")

    def object(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, found {_kind(value)}")
        return value

    def key(self, obj: dict, key: str) -> Any:
        if key not in obj:
            raise self.fail("", f"missing the key {key!r}")
        return obj[key]

    def as_list(self, value: Any, path: str, length: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, found {_kind(value)}")
        if length is not None and len(value) != length:
            raise self.fail(path, f"expected {length} entries (from sizes), found {len(value)}")
        return value

    def as_int(self, value: Any, path: str, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected a whole number, found {_kind(value)}")
        if value < low:
            raise self.fail(path, f"expected a number ≥ {low}, found {value}")
        return value

    def sizes(self, obj: dict) -> list[int]:
        sizes = [
            self.as_int(v, f"sizes[{l}]", 1)
            for l, v in enumerate(self.as_list(self.key(obj, "sizes"), "sizes"))
        ]
        if len(sizes) < 2:
            raise self.fail(
                "sizes", "expected at least two levels (the start symbol and the terminals)"
            )
        if sizes[0] != 1:
            raise self.fail(
                "sizes[0]", f"level 0 must hold exactly one start symbol, found {sizes[0]}"
            )
        if sum(sizes) > 4 * MAX_RULES:
            raise self.fail("sizes", f"{sum(sizes):,} symbols; refusing a grammar this large")
        num_sym = obj.get("num_sym")
        if num_sym is not None and self.as_int(num_sym, "num_sym", 1) != sizes[-1]:
            raise self.fail(
                "num_sym", f"{num_sym} terminals, but the last level of sizes has {sizes[-1]}"
            )
        return sizes

    def ids(self, obj: dict, sizes: list[int]) -> list[list[int]]:
        idx = self.as_list(self.key(obj, "idx"), "idx", len(sizes))
        ids = [
            [
                self.as_int(v, f"idx[{l}][{i}]", 1)
                for i, v in enumerate(self.as_list(row, f"idx[{l}]", sizes[l]))
            ]
            for l, row in enumerate(idx)
        ]
        seen: dict[int, str] = {}
        for l, row in enumerate(ids):
            for i, v in enumerate(row):
                if v in seen:
                    raise self.fail(f"idx[{l}][{i}]", f"id {v} is used twice (also at {seen[v]})")
                seen[v] = f"idx[{l}][{i}]"
        return ids

    def rules(self, node: Any, path: str, lhs: str, below: list[str]) -> list[Rule]:
        node = self.object(node, path)
        if "children" not in node:
            raise self.fail(path, "missing the key 'children' (the rules of this nonterminal)")
        children = self.as_list(node["children"], f"{path}.children")
        if not children:
            raise self.fail(f"{path}.children", "a nonterminal with no rules")
        rules: list[Rule] = []
        seen: set[tuple[str, ...]] = set()
        for k, rule in enumerate(children):
            rpath = f"{path}.children[{k}]"
            rhs = tuple(
                below[self.index(j, f"{rpath}[{m}]", len(below))]
                for m, j in enumerate(self.as_list(rule, rpath))
            )
            if not rhs:
                raise self.fail(rpath, "an empty rule (ε-rules are not supported)")
            if rhs in seen:
                raise self.fail(rpath, f"duplicate rule {lhs} -> {' '.join(rhs)}")
            seen.add(rhs)
            rules.append(Rule(lhs, rhs))
        return rules

    def index(self, value: Any, path: str, n: int) -> int:
        j = self.as_int(value, path, 0)
        if j >= n:
            raise self.fail(
                path,
                f"index {j} is out of range: the level below has {n} symbols (indices 0..{n - 1})",
            )
        return j


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    text = repr(value)
    shown = text if len(text) <= 30 else text[:29] + "…"
    return f"{names.get(type(value), type(value).__name__)} ({shown})"


def _name_from_path(p: Path) -> str:
    """A grammar name from a file name: cfg3f.json → cfg3f (non-identifier characters → _)."""
    name = re.sub(r"\W", "_", p.stem) or "grammar"
    return name if NAME_RE.match(name) else f"g_{name}"


# --- export --------------------------------------------------------------------------------
def to_authors_json(g: Grammar) -> dict:
    """The authors' JSON object for a layered grammar with uniform rule weights.

    Ids: when every nonterminal is called N<id> (ids distinct and above the terminal and special
    tokens) and the terminals are "1".."T" in order, those ids are kept, so importing and
    exporting one of the authors' files gives back the same ids; otherwise terminals are 1..T and
    nonterminals are numbered from the bottom level up, as the authors do.
    """
    levels = _export_levels(g)
    ids = _export_ids(g, levels)
    n_terms = len(g.terminals)
    index = {s: i for level in levels for i, s in enumerate(level)}
    index.update({t: i for i, t in enumerate(g.terminals)})
    rows = levels + [list(g.terminals)]
    all_levels = [[_node(g, s, l, ids, index) for s in row] for l, row in enumerate(rows)]
    per_nt = [len(g.rules_of(nt)) for nt in g.nonterminals]
    lengths = [len(r.rhs) for r in g.rules]
    return {
        "depth": len(rows) - 1,
        "num_sym": n_terms,
        "vocab_size": n_terms,
        "deg_min": min(per_nt),
        "deg_max": max(per_nt),
        "len_min": min(lengths),
        "len_max": max(lengths),
        "eos_token": n_terms + 1,
        "mask_token": n_terms + 2,
        "sep_token": n_terms + 3,
        "sizes": [len(row) for row in rows],
        "idx": [[ids[s] for s in row] for row in rows],
        "all": all_levels,
        "count": max(ids.values()),
    }


def _node(g: Grammar, symbol: str, level: int, ids: dict[str, int], index: dict[str, int]) -> dict:
    children = None
    if not g.is_terminal(symbol):
        children = [[index[s] for s in r.rhs] for r in g.rules_of(symbol)]
    return {"depth": level, "id": ids[symbol], "name": _letters(ids[symbol]), "children": children}


def _letters(i: int) -> str:
    """The authors' two-letter symbol names: 1 → AA, 7 → AG, 22 → AV, 160 → GD."""
    out = ""
    n = i - 1
    while True:
        n, r = divmod(n, 26)
        out = chr(ord("A") + r) + out
        if n == 0 and len(out) >= 2:
            return out


def _export_levels(g: Grammar) -> list[list[str]]:
    """Nonterminals level by level (first-appearance order within a level), or a CfglabError
    saying why the grammar is not layered.

    A nonterminal's level is the start symbol's height minus its own, where the height is the
    distance down to the terminals. That agrees with the longest path from the start symbol on
    a layered grammar, and it also places nonterminals the start cannot reach (cfg3e1 has some).
    """
    why = f"cannot export grammar {g.name} to the authors' JSON format"
    heights = _heights(g, why)
    depth = heights[g.start]
    rows: list[list[str]] = [[] for _ in range(depth)]
    for nt in g.nonterminals:
        if heights[nt] > depth:
            raise CfglabError(
                f"{why}: {nt} sits {heights[nt]} levels above the terminals, "
                f"higher than the start symbol {g.start} ({depth})"
            )
        if len({r.weight for r in g.rules_of(nt)}) > 1:
            raise CfglabError(
                f"{why}: the rules of {nt} have different weights, and that "
                "format draws rules uniformly"
            )
        rows[depth - heights[nt]].append(nt)
    return rows


def _heights(g: Grammar, why: str) -> dict[str, int]:
    """Levels above the terminals of every nonterminal; CfglabError unless the grammar is
    layered (each nonterminal's right sides all one level down) and acyclic."""
    heights: dict[str, int] = dict.fromkeys(g.terminals, 0)
    pending = {nt: {s for r in g.rules_of(nt) for s in r.rhs} for nt in g.nonterminals}
    for symbols in pending.values():
        missing = [s for s in symbols if s not in pending and s not in heights]
        if missing:
            raise CfglabError(f"{why}: {missing[0]} has no rules")
    while pending:
        ready = [nt for nt, symbols in pending.items() if all(s in heights for s in symbols)]
        if not ready:
            raise CfglabError(
                f"{why}: it is recursive ({min(pending)} is on a cycle or below "
                "one), and that format describes a layered grammar"
            )
        for nt in ready:
            below = {heights[s] for s in pending.pop(nt)}
            if len(below) > 1:
                raise CfglabError(
                    f"{why}: it is not layered: the rules of {nt} mix symbols "
                    f"{min(below)} and {max(below)} levels above the terminals, "
                    "but every right side must sit on the next level"
                )
            heights[nt] = below.pop() + 1
    return heights


def _export_ids(g: Grammar, levels: list[list[str]]) -> dict[str, int]:
    n_terms = len(g.terminals)
    ids = {t: i + 1 for i, t in enumerate(g.terminals)}
    kept = {nt: int(nt[1:]) for nt in g.nonterminals if re.fullmatch(r"N[1-9]\d{0,8}", nt)}
    keep = (
        len(kept) == len(g.nonterminals)
        and len(set(kept.values())) == len(kept)
        and min(kept.values(), default=n_terms + _RESERVED_TOKENS + 1) > n_terms + _RESERVED_TOKENS
        and list(g.terminals) == [str(i + 1) for i in range(n_terms)]
    )
    if keep:
        return {**ids, **kept}
    next_id = n_terms + _RESERVED_TOKENS + 1
    for row in reversed(levels):
        for nt in row:
            ids[nt] = next_id
            next_id += 1
    return ids

"""Facts about a grammar's graph of nonterminals, computed once per check: reachability,
productivity with the shortest string of every nonterminal (Knuth 1977), strongly connected
components (Tarjan) and the shortest cycle through a recursive nonterminal."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Rule

LENGTH_BOUND = 10**15  # longer strings are unsampleable: lengths beyond are not reported exactly
CAP = LENGTH_BOUND + 1  # lengths saturate here, so absurd grammars never build huge integers
# The longest shortest string cfglab samples, parses or trains on (beyond the paper, whose
# longest cfg3 string has 2,052 tokens): a binary chain 20 deep (shortest 2^20) would otherwise
# allocate gigabytes in `sample` before any bound on a string's length could reject it.
MAX_STRING_LENGTH = 10_000


def string_length_problem(g: Grammar, shortest_length: int | None) -> str | None:
    """Why g's strings cannot fit MAX_STRING_LENGTH, with the fix; None when they can."""
    if shortest_length is None or shortest_length <= MAX_STRING_LENGTH:
        return None
    shown = f"{shortest_length:,}" if shortest_length < CAP else f"more than {LENGTH_BOUND:.0e}"
    return (
        f"the shortest string of grammar {g.name} has {shown} tokens, over the bound of "
        f"{MAX_STRING_LENGTH:,} tokens (MAX_STRING_LENGTH) that cfglab samples, parses and "
        "trains on; fix: give the nonterminals on the way from the start a shorter "
        "alternative (a rule that repeats a nonterminal, like C0 -> C1 C1, doubles the length "
        "at each level)"
    )


def require_string_length(g: Grammar) -> Grammar:
    """g, or a CfglabError when its shortest string exceeds MAX_STRING_LENGTH (before any
    sampling or chart allocates for it)."""
    problem = string_length_problem(g, shortest(g).get(g.start))
    if problem:
        where = f"{g.source}: " if g.source else ""
        raise CfglabError(where + problem)
    return g


class Facts:
    """Reachability, productivity and shortest lengths, computed once."""

    def __init__(self, g: Grammar) -> None:
        self.defined = set(g.nonterminals)
        self.used = {s for r in g.rules for s in r.rhs}
        self.undefined = sorted(
            s for s in self.used if not g.is_terminal(s) and s not in self.defined
        )
        self.reachable = reachable(g)
        self.shortest = shortest(g)  # productive nonterminals only
        self.productive = set(self.shortest)
        total: dict[str, float] = {}
        for r in g.rules:
            total[r.lhs] = total.get(r.lhs, 0.0) + r.weight
        # (probability, right side) per nonterminal, once: Grammar.rule_probability re-sums.
        self.weighted: dict[str, list[tuple[float, tuple[str, ...]]]] = {}
        for r in g.rules:
            p = r.weight / total[r.lhs] if total[r.lhs] > 0 else math.nan
            self.weighted.setdefault(r.lhs, []).append((p, r.rhs))
        # Weighted analyses need proper rules: non-empty, positive finite weights, NT left sides.
        self.sound = all(
            r.rhs and math.isfinite(r.weight) and r.weight > 0 and not g.is_terminal(r.lhs)
            for r in g.rules
        )


def reachable(g: Grammar) -> list[str]:
    """Nonterminals reachable from the start (undefined ones included), in BFS order."""
    order = [g.start]
    seen = {g.start}
    for nt in order:  # `order` grows while we walk it: a BFS queue that is also the answer
        for r in g.rules_of(nt):
            for s in r.rhs:
                if not g.is_terminal(s) and s not in seen:
                    seen.add(s)
                    order.append(s)
    return order


def shortest(g: Grammar) -> dict[str, int]:
    """Shortest string of every productive nonterminal (Knuth 1977: Dijkstra for grammars).

    A rule's candidate length becomes known once all of its nonterminals are settled; the
    smallest candidate in the heap is final because lengths only grow when summed.
    """
    return _knuth(g, lambda r: sum(g.is_terminal(s) for s in r.rhs), lambda p, n: p + n)


def lowest_height(g: Grammar) -> dict[str, int]:
    """Least height of a derivation tree of every productive nonterminal (a rule over terminals
    only: 1): the fewest sampling rounds that can finish it. The same Knuth pass as `shortest`,
    with 1 + max in place of the sum (also a superior function, so the heap order holds)."""
    return _knuth(g, lambda r: 1, lambda p, n: max(p, n + 1))


def _knuth(
    g: Grammar, base: Callable[[Rule], int], combine: Callable[[int, int], int]
) -> dict[str, int]:
    """Least value of every productive nonterminal over its rules, a rule's value growing from
    `base` by `combine` with each right-side nonterminal's settled value (saturating at CAP)."""
    waiting: list[int] = []  # per rule: right-side nonterminals not yet settled
    partial: list[int] = []  # per rule: value so far
    uses: dict[str, list[int]] = {}  # nonterminal -> rules it occurs in (with multiplicity)
    heap: list[tuple[int, str]] = []
    for i, r in enumerate(g.rules):
        nts = [s for s in r.rhs if not g.is_terminal(s)]
        waiting.append(len(nts))
        partial.append(base(r))
        for s in nts:
            uses.setdefault(s, []).append(i)
        if not nts and r.rhs:
            heap.append((partial[i], r.lhs))
    heapq.heapify(heap)
    done: dict[str, int] = {}
    while heap:
        value, nt = heapq.heappop(heap)
        if nt in done:
            continue
        done[nt] = value
        for i in uses.get(nt, ()):
            partial[i] = min(combine(partial[i], value), CAP)
            waiting[i] -= 1
            if waiting[i] == 0:
                heapq.heappush(heap, (partial[i], g.rules[i].lhs))
    return done


def children(g: Grammar, nt: str) -> list[str]:
    return list(dict.fromkeys(s for r in g.rules_of(nt) for s in r.rhs if not g.is_terminal(s)))


def find_cycle(g: Grammar, reachable: list[str]) -> list[str] | None:
    """The shortest cycle through the first recursive nonterminal (grammar order)."""
    graph = {nt: children(g, nt) for nt in reachable}
    comps = components(graph)
    where = {nt: i for i, comp in enumerate(comps) for nt in comp}
    order = {nt: i for i, nt in enumerate(g.nonterminals)}
    looping = [nt for nt in reachable if _on_cycle(nt, graph, comps[where[nt]])]
    if not looping:
        return None
    head = min(looping, key=lambda nt: order.get(nt, len(order)))
    members = set(comps[where[head]])
    parent: dict[str, str] = {}
    queue = deque([head])
    while queue:  # BFS inside the component until an edge returns to head
        nt = queue.popleft()
        for child in graph[nt]:
            if child == head:
                path = [nt]
                while path[-1] != head:
                    path.append(parent[path[-1]])
                return path[::-1] + [head]
            if child in members and child not in parent:
                parent[child] = nt
                queue.append(child)
    return None


def _on_cycle(nt: str, graph: dict[str, list[str]], comp: list[str]) -> bool:
    return len(comp) > 1 or nt in graph[nt]


def components(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), children's components first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            nt, i = work.pop()
            if i == 0:
                index[nt] = low[nt] = len(index)
                stack.append(nt)
                on_stack.add(nt)
            kids = graph.get(nt, [])
            if i < len(kids):
                work.append((nt, i + 1))
                kid = kids[i]
                if kid not in index:
                    work.append((kid, 0))
                elif kid in on_stack:
                    low[nt] = min(low[nt], index[kid])
                continue
            if low[nt] == index[nt]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == nt:
                        break
                comps.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nt])
    return comps

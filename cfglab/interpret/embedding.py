"""Result 10's analysis: does the token-embedding layer encode each token's hidden terminal?

For an implicit grammar (cfglab.grammar.lexicon) two measures on the rows of the embedding
matrix for the observed tokens, each beside the untrained twin (GPT_rand, same architecture):
  cosine   mean cosine similarity of token pairs that share a bag (within) and of pairs that
           share none (between); the paper's figure shows the within-bag block standing out.
  probe    a linear (ridge least-squares, one-hot) probe from a token's embedding to its hidden
           terminal, scored leave-one-token-out: with V tokens in d ≥ V dimensions any labelling
           is linearly separable on the training tokens, so only held-out tokens say something.
           Tokens in several bags (overlap) or none are left out of the probe.
The leave-one-out probe and the verdict rule are cfglab's; the paper shows the similarity matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar

# Verdict (Result 10 in the paper table): the embedding encodes the hidden terminal when the
# trained model's held-out probe accuracy is at least this and beats the untrained twin's by
# PROBE_MARGIN, and its within-bag cosine exceeds between-bag cosine by more than the twin's.
PROBE_ACCURACY = 0.9
PROBE_MARGIN = 0.2


def bag_matrix(g: Grammar) -> np.ndarray:
    """(T, |hidden|) bool: token i is in the bag of hidden terminal k."""
    ids = g.symbol_ids
    m = np.zeros((len(g.terminals), len(g.hidden)), dtype=bool)
    for k, t in enumerate(g.hidden):
        for r in g.rules_of(t):
            m[ids[r.rhs[0]], k] = True
    return m


def cosine_gap(emb: np.ndarray, bags: np.ndarray) -> dict[str, float]:
    """Mean cosine of distinct token pairs within a shared bag and between bags."""
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    share = (bags.astype(int) @ bags.T.astype(int)) > 0
    used = bags.any(1)
    pair = np.outer(used, used) & ~np.eye(len(emb), dtype=bool)
    within, between = cos[pair & share], cos[pair & ~share]
    w = float(within.mean()) if within.size else float("nan")
    b = float(between.mean()) if between.size else float("nan")
    return {"within": w, "between": b, "gap": w - b}


def probe_accuracy(emb: np.ndarray, bags: np.ndarray, ridge: float = 1e-3) -> float:
    """Leave-one-token-out accuracy of a ridge probe embedding → hidden terminal."""
    keep = bags.sum(1) == 1  # tokens of exactly one bag have one right answer
    x, y = emb[keep], bags[keep].argmax(1)
    if len(y) < 2:
        return float("nan")
    x = np.hstack([x - x.mean(0), np.ones((len(x), 1))])
    onehot = np.eye(bags.shape[1])[y]
    hits = 0
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        a = x[rest]
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ onehot[rest])
        hits += int((x[i] @ w).argmax() == y[i])
    return hits / len(y)


def measure(emb: np.ndarray, bags: np.ndarray) -> dict[str, Any]:
    return {**cosine_gap(emb, bags), "probe_accuracy": probe_accuracy(emb, bags)}


def verdict(trained: dict[str, Any], untrained: dict[str, Any]) -> bool:
    """Result 10's rule (see PROBE_ACCURACY, PROBE_MARGIN)."""
    return bool(
        trained["probe_accuracy"] >= PROBE_ACCURACY
        and trained["probe_accuracy"] >= untrained["probe_accuracy"] + PROBE_MARGIN
        and trained["gap"] > untrained["gap"]
    )


def embedding_report(path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Both measures for a run on an implicit grammar, beside its untrained twin."""
    from cfglab.runs import load_run, untrained_model

    run = load_run(path)
    g = run.grammar
    if not g.hidden:
        raise CfglabError(f"{path}: grammar {g.name} is not implicit (it has no bags)")
    bags = bag_matrix(g)
    T = len(g.terminals)
    twin = untrained_model(run.config, T, seed=seed + 1)
    trained = measure(_embeddings(run.model, T), bags)
    untrained = measure(_embeddings(twin, T), bags)
    return {
        "trained": trained,
        "untrained": untrained,
        "encodes_terminal": verdict(trained, untrained),
        "tokens": list(g.terminals),
        "hidden": list(g.hidden),
    }


def _embeddings(model: Any, n_tokens: int) -> np.ndarray:
    return model.wte.weight[:n_tokens].detach().float().cpu().numpy()

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
    cos = cosine_matrix(emb)
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


def embedding_report(path: str | Path, seed: int = 0, step: int | None = None) -> dict[str, Any]:
    """Both measures for a run on an implicit grammar, beside its untrained twin."""
    return _measure_run(path, seed, step)[0]


def embedding_run(
    run_dir: str,
    seed: int = 0,
    step: int | None = None,
    plots: bool = True,
    threads: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """`embedding_report` written to RUN_DIR/embedding/embedding.json, with embedding.png (the
    token-embedding cosine matrix ordered by bag, trained beside the twin) under `plots`.
    `threads` and `device` are the sweep's task arguments; the analysis is a few small matrix
    products on the CPU whatever they say."""
    import json

    from cfglab.runs import write_atomic
    from cfglab.threads import set_threads

    set_threads(threads)
    result, trained, twin, bags = _measure_run(run_dir, seed, step)
    out = Path(run_dir) / "embedding"
    out.mkdir(parents=True, exist_ok=True)
    result["run"] = str(Path(run_dir).resolve())
    if plots:
        result["plots"] = [str(plot_similarity(trained, twin, bags, result, out / "embedding.png"))]
    write_atomic(out / "embedding.json", json.dumps(result, indent=1).encode())
    return result


def _measure_run(
    path: str | Path, seed: int, step: int | None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    from cfglab.runs import load_run, untrained_model

    run = load_run(path, step=step)
    g = run.grammar
    if not g.hidden:
        raise CfglabError(
            f"{path}: grammar {g.name} is not implicit (it has no bags); "
            "write one with `cfglab implicit GRAMMAR --vocab V --bags disjoint`"
        )
    bags = bag_matrix(g)
    T = len(g.terminals)
    twin = untrained_model(run.config, T, seed=seed + 1)
    trained_emb, twin_emb = _embeddings(run.model, T), _embeddings(twin, T)
    trained, untrained = measure(trained_emb, bags), measure(twin_emb, bags)
    report = {
        "step": run.step,
        "trained": trained,
        "untrained": untrained,
        "encodes_terminal": verdict(trained, untrained),
        "verdict_rule": f"held-out probe ≥ {PROBE_ACCURACY} and ≥ the twin's + {PROBE_MARGIN}, "
        "and a within − between cosine gap above the twin's",
        "tokens": list(g.terminals),
        "hidden": list(g.hidden),
        "bag_sizes": [int(n) for n in bags.sum(0)],
        "shared_tokens": int((bags.sum(1) > 1).sum()),  # overlap bags: tokens left out of the probe
        "unused_tokens": int((bags.sum(1) == 0).sum()),
    }
    return report, trained_emb, twin_emb, bags


def _embeddings(model: Any, n_tokens: int) -> np.ndarray:
    return model.wte.weight[:n_tokens].detach().float().cpu().numpy()


def bag_order(bags: np.ndarray) -> np.ndarray:
    """Token indices grouped by (first) bag, in bag order; tokens of no bag last."""
    first = np.where(bags.any(1), bags.argmax(1), bags.shape[1])
    return np.argsort(first, kind="stable")


def cosine_matrix(emb: np.ndarray) -> np.ndarray:
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def plot_similarity(
    trained: np.ndarray,
    twin: np.ndarray,
    bags: np.ndarray,
    result: dict[str, Any],
    path: str | Path,
) -> Path:
    """The paper's picture of Result 10: cosine similarity of the token embeddings, tokens
    ordered by bag with the bags' edges drawn, trained beside the untrained twin."""
    from cfglab.plotting import pyplot, save

    plt = pyplot()
    order = bag_order(bags)
    first = np.where(bags.any(1), bags.argmax(1), bags.shape[1])[order]
    edges = np.flatnonzero(np.diff(first)) + 0.5
    names = [*result.get("hidden", range(bags.shape[1])), "no bag"]
    groups = np.unique(first)
    centres = [float(np.flatnonzero(first == k).mean()) for k in groups]
    ticks = [str(names[k]) for k in groups]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    panels = (("trained", trained), ("untrained twin", twin))
    image = None
    for ax, (title, emb) in zip(axes, panels, strict=True):
        image = ax.imshow(cosine_matrix(emb)[np.ix_(order, order)], vmin=-1, vmax=1, cmap="RdBu_r")
        for e in edges:
            ax.axhline(e, color="black", lw=0.6)
            ax.axvline(e, color="black", lw=0.6)
        m = result["trained" if title == "trained" else "untrained"]
        ax.set_title(
            f"{title}: within {m['within']:.2f}, between {m['between']:.2f}, "
            f"probe {m['probe_accuracy']:.2f}",
            fontsize=9,
        )
        ax.set_xticks(centres, ticks)
        ax.set_yticks(centres, ticks)
        ax.set_xlabel("observed tokens, by hidden terminal")
    axes[0].set_ylabel("observed tokens, by hidden terminal")
    assert image is not None
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    fig.suptitle(
        "Token embeddings by hidden terminal (Result 10) — "
        + ("encodes the terminal" if result["encodes_terminal"] else "does not pass the rule")
    )
    return save(fig, path, dpi=110)

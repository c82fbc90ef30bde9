"""Generation accuracy across sampling temperatures, and the mode switch read off it.

The paper's Results 12–13 (its robustness section; we could not read the paper's text itself,
only a third-party reproduction's notes and the project's fidelity review, so section numbers
and exact figures are unconfirmed): a model trained on partly corrupted data
generates corrupted strings at T = 1 about as often as its training data was corrupted (the
mode switch: γ of the cut0 generations are invalid), yet clean prompts are completed correctly
and low temperatures (τ ≈ 0.1–0.2) restore valid generations. So cut0 and cutK accuracy are
measured at every temperature of a list, on clean prompts (the corrupted-prompt side is
`cfglab.evaluate.robustness`). KL is a property of the model's distribution, not of sampling,
and is unaffected. The paper's exact temperature grid for clean prompts we could not confirm;
the defaults here are cfglab's (0.1, 0.2, 0.5, 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfglab.evaluate.generation import Completed, Decoder
    from cfglab.evaluate.judge import Judge


def accuracy_by_temperature(
    model: Decoder,
    judge: Judge,
    temperatures: Sequence[float],
    cuts: Sequence[int],
    *,
    n: int,
    max_length: int,
    seed: int,
    batch_size: int = 256,
    device: str = "cpu",
    context_limit: int | None = None,
) -> list[Completed]:
    """n generations at every (temperature, cut); each setting draws with its own seed."""
    from cfglab.evaluate.generation import accuracy_at_cut

    return [
        accuracy_at_cut(
            model,
            judge,
            n,
            cut,
            temperature=float(t),
            max_length=max_length,
            seed=seed,
            batch_size=batch_size,
            device=device,
            context_limit=context_limit,
        )
        for t in temperatures
        for cut in cuts
    ]


def summarise(runs: Sequence[Completed]) -> list[dict[str, Any]]:
    """One row per temperature: {temperature, cut0: summary, cutK: summary}."""
    rows: dict[float, dict[str, Any]] = {}
    for done in runs:
        row = rows.setdefault(done.temperature, {"temperature": done.temperature})
        row[f"cut{done.cut}"] = done.summary()
    return [rows[t] for t in sorted(rows)]


def mode_switch_by_temperature(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Invalid cut0 generations at each temperature (the mode switch and its recovery)."""
    from cfglab.evaluate.generation import proportion

    out = []
    for row in rows:
        acc = row.get("cut0", {}).get("accuracy")
        if acc:
            invalid = proportion(acc["n"] - acc["k"], acc["n"])
            out.append({"temperature": row["temperature"], "invalid": invalid})
    return out

"""`cfglab evaluate RUN_DIR`: measure a trained model the paper's way (see cfglab.evaluate.run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cfglab.cli.console import err, out
from cfglab.errors import CfglabError


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    run_dir: Path | None = typer.Argument(
        None, help="A run directory written by `cfglab train` (or use --hf)."
    ),
    hf: Path | None = typer.Option(
        None, "--hf", help="A local Hugging Face causal LM directory to evaluate instead of a run."
    ),
    grammar: Path | None = typer.Option(None, "--grammar", help="With --hf: the grammar (.cfg)."),
    token_map: Path | None = typer.Option(
        None,
        "--token-map",
        help="With --hf: YAML/JSON mapping terminal names, <bos>, <eos> to the model's tokens.",
    ),
    n: int = typer.Option(200, "--n", min=1, help="Generations per setting; scales every count."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json instead of a table."),
    cut: int | None = typer.Option(
        None, "--cut", min=1, help="K of cutK (default 50, shorter for short grammars)."
    ),
    temperature: float = typer.Option(
        1.0, "--temperature", min=0.0, help="Temperature of the accuracy generations."
    ),
    temperatures: str = typer.Option(
        "0.1,0.2,0.5,1.0", "--temperatures", help="Robustness sweep, comma-separated."
    ),
    accuracy_temperatures: str = typer.Option(
        "",
        "--accuracy-temperatures",
        help="Also cut0/cutK accuracy on clean prompts at each of these, comma-separated "
        "(e.g. 0.1,0.2,1.0).",
    ),
    diversity_n: int | None = typer.Option(
        None, "--diversity-n", min=1, help="cut0 generations for diversity (default --n)."
    ),
    corruption_rate: float = typer.Option(
        0.15,
        "--corruption-rate",
        min=0.0,
        max=1.0,
        help="Per-token flip probability of robustness prompts.",
    ),
    max_length: int | None = typer.Option(
        None, "--max-length", min=1, help="Length cap of a generated string."
    ),
    sections: str | None = typer.Option(
        None,
        "--sections",
        help="Comma-separated subset of: accuracy, diversity, "
        "kl, robustness, memorisation, masked.",
    ),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step (default newest)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0 = all cores)."),
    no_write: bool = typer.Option(False, "--no-write", help="Do not write RUN_DIR/eval/."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Generation accuracy (cut0/cutK), diversity, KL to the truth, robustness, memorisation.

    With --hf MODEL_DIR --grammar GRAMMAR: the same evaluation of any Hugging Face causal LM whose
    tokenizer has the grammar's terminals and BOS/EOS as tokens (or via --token-map).
    """
    from cfglab.evaluate.run import evaluate_run

    if (run_dir is None) == (hf is None) or (hf is not None) != (grammar is not None):
        raise CfglabError("give RUN_DIR, or --hf MODEL_DIR with --grammar GRAMMAR")
    if token_map is not None and hf is None:
        raise CfglabError("--token-map goes with --hf")

    options: dict[str, Any] = {
        "n": n,
        "seed": seed,
        "cut": cut,
        "temperature": temperature,
        "temperatures": _floats(temperatures, "--temperatures"),
        "accuracy_temperatures": _floats(accuracy_temperatures, "--accuracy-temperatures")
        if accuracy_temperatures.strip()
        else [],
        "diversity_n": diversity_n,
        "corruption_rate": corruption_rate,
        "max_length": max_length,
        "step": step,
        "device": device,
        "threads": threads,
        "write": not no_write,
    }
    if sections:
        options["sections"] = [s.strip() for s in sections.split(",") if s.strip()]
    from cfglab.progress import stage_lines

    say = None if quiet or as_json else stage_lines("evaluate", err)
    if hf is not None and grammar is not None:
        from cfglab.interop.hf_model import evaluate_hf

        result = evaluate_hf(hf, grammar, options, progress=say, token_map=token_map)
    else:
        result = evaluate_run(str(run_dir), options, progress=say)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for table in summary_tables(result):
        out.print(table)
    if not no_write:
        out.print(
            f"written: {Path(result['run_dir']) / 'eval' / 'eval.json'} and generations.jsonl"
        )


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CfglabError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise CfglabError(f"{flag}: give one or more temperatures >= 0, got {text!r}")
    return values


def _rate(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "-"
    lo, hi = p["ci95"]
    return f"{p['rate']:.3f}  [{lo:.3f}, {hi:.3f}]  (n={p['n']})"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def summary_tables(r: dict[str, Any]) -> list[Table]:
    """The headline figures, then the robustness sweep as its own table."""
    tables = [summary_table(r)]
    if r.get("robustness"):
        tables.append(robustness_table(r["robustness"]))
    return tables


def summary_table(r: dict[str, Any]) -> Table:
    """The headline figures of eval.json, one row each."""
    t = Table(title=f"{r['grammar']} · {r['pe']} · step {r['step']}", title_justify="left")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name, acc in (r.get("accuracy") or {}).items():
        t.add_row(f"accuracy {name} (T={acc['temperature']})", _rate(acc["accuracy"]))
    for row in r.get("accuracy_by_temperature") or []:
        for name, acc in row.items():
            if name != "temperature":
                t.add_row(f"  {name} at T={row['temperature']:g}", _rate(acc["accuracy"]))
    if "timing" in r:
        tm = r["timing"]
        t.add_row(
            "generate / check",
            f"{tm['generate_s']:.1f} s / {tm['check_s']:.1f} s  "
            f"({_num(tm['tokens_per_s'], ',.0f')} tokens/s)",
        )
    _diversity_rows(t, r.get("diversity"))
    if r.get("kl"):
        t.add_row("KL(true ‖ model), mean over positions", _num(r["kl"]["mean"], ".5f"))
        if official := r["kl"].get("official"):
            t.add_row("  the authors' recipe (raw true weights)", _num(official["mean"], ".5f"))
        if (stray := (r["kl"].get("stray_mass") or {}).get("mean")) is not None:
            t.add_row("  stray mass (BOS, MASK), mean", _num(stray, ".2g"))
    _robustness_rows(t, r.get("robustness"))
    _memorisation_rows(t, r.get("memorisation"))
    if r.get("masked"):
        m = r["masked"]
        t.add_row(f"masked-token accuracy ({m['model']})", _rate(m["accuracy"]))
        t.add_row(
            "  Bayes ceiling · KL",
            f"{_num(m['bayes_accuracy']['rate'], '.3f')} · {_num(m['kl_mean'], '.5f')}",
        )
    t.add_row("seconds", f"{r['seconds'].get('total', 0):.1f}")
    return t


def _diversity_rows(t: Table, d: dict[str, Any] | None) -> None:
    if not d:
        return
    a, e = d["all"], d["entropy"]
    h = d.get("h") or {}
    if h.get("model", {}).get("h") is not None:
        m, tr = h["model"], h["true"]
        lo, hi = m["ci95"]
        true_h = "-" if tr["h"] is None else f"{tr['h']:.2f}"
        t.add_row(
            "entropy H(model) vs H(true) (nats/string)",
            f"{m['h']:.2f} [{lo:.2f}, {hi:.2f}] vs {true_h}  (n={m['n']})",
        )
    t.add_row("distinct generations", f"{a['distinct']}/{a['n']}")
    t.add_row("support ≥ (birthday, 95%)", f"{a['support_lower_bound']:,.0f}")
    if e["n"]:
        t.add_row(
            "entropy gap (nats/string)",
            f"{e['gap']:+.3f}  "
            f"(model {e['nll_model']:.2f} vs true {e['nll_true']:.2f}, n={e['n']})",
        )


def _robustness_rows(t: Table, rb: dict[str, Any] | None) -> None:
    if not rb:
        return
    ms = rb["mode_switch"]
    t.add_row("mode switch: invalid at cut0", _rate(ms["invalid"]))
    subs = ms["substitutions_to_valid"]
    t.add_row("  their substitutions to valid (mean)", _num(subs["mean"], ".2f"))
    t.add_row(
        "  training noise: fraction · rate",
        f"{ms['train_noise_fraction']} · {ms['train_noise_rate']}",
    )


def robustness_table(rb: dict[str, Any]) -> Table:
    """One row per temperature: the three verdicts on corrupted prompts."""
    t = Table(
        title=f"corrupted prompts: cut{rb['cut']}, flip rate {rb['rate']} "
        f"(observed {_num(rb['flipped_rate'], '.3f')}), n={rb['n']}",
        title_justify="left",
    )
    for name in ("T", "repaired", "corrupted valid", "ended", "prefix subs: mean · 0 · none"):
        t.add_column(name, justify="right")
    for row in rb["by_temperature"]:
        subs = row["prefix_substitutions"]
        t.add_row(
            f"{row['temperature']}",
            _num(row["repaired"]["rate"], ".3f"),
            _num(row["corrupted_valid"]["rate"], ".3f"),
            _num(row["ended_with_eos"]["rate"], ".3f"),
            f"{_num(subs['mean'], '.2f')} · {subs['consistent']['k']} · {subs['impossible']}",
        )
    return t


def _memorisation_rows(t: Table, m: dict[str, Any] | None) -> None:
    if not m:
        return
    t.add_row("generations seen in training", _rate(m["novelty"]["in_training"]))
    h = m.get("holdout")
    if h:
        t.add_row(
            f"held-out rule {h['rule']}",
            f"used {_rate(h['generated_using'])} vs true "
            f"{_num(h['true_frequency']['rate'], '.3f')}",
        )

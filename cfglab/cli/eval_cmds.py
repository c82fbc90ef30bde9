"""`cfglab evaluate RUN_DIR`: measure a trained model the paper's way (see cfglab.evaluate.run)."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cfglab.cli.console import err, out
from cfglab.cli.tables import FORMAT_HELP, Format, write_csv
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
    fmt: Format = typer.Option(Format.table, "--format", help=FORMAT_HELP),
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

    as_json = as_json or fmt == Format.json
    say = None if quiet or as_json or fmt == Format.csv else stage_lines("evaluate", err)
    if hf is not None and grammar is not None:
        from cfglab.interop.hf_model import evaluate_hf

        result = evaluate_hf(hf, grammar, options, progress=say, token_map=token_map)
    else:
        result = evaluate_run(str(run_dir), options, progress=say)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    asked = set(options.get("sections") or [])
    if fmt == Format.csv:
        write_csv(summary_tables(result, asked))
        return
    for table in summary_tables(result, asked):
        out.print(table)
    for line in summary_notes(result):
        out.print(line)
    if not no_write:
        out.print(
            f"written: {Path(result['run_dir']) / 'eval' / 'eval.json'} and generations.jsonl"
        )


def summary_notes(result: dict[str, Any]) -> list[str]:
    """Lines under the tables: how cutK was chosen, and strings left out for the context."""
    lines = []
    if result.get("cut_rule") and result.get("cut"):
        lines.append(f"cut{result['cut']}: {result['cut_rule']}")
    for section in ("kl", "masked"):
        dropped = (result.get(section) or {}).get("left_out_too_long")
        if dropped:
            lines.append(f"[yellow]{section}: {dropped['note']}[/yellow]")
    return lines


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


def summary_tables(r: dict[str, Any], asked: Collection[str] = ()) -> list[Table]:
    """The headline figures, then the robustness sweep as its own table.

    `asked`: the sections named on the command line (`--sections`); a decoder's masked-token
    figure is shown only when asked for (see `summary_table`)."""
    tables = [summary_table(r, asked)]
    if r.get("robustness"):
        tables.append(robustness_table(r["robustness"]))
    return tables


def summary_table(r: dict[str, Any], asked: Collection[str] = ()) -> Table:
    """The headline figures of eval.json, one row each; rows that do not apply to the run are
    left out (eval.json keeps every figure)."""
    t = Table(title=_title(r), title_justify="left")
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
    _masked_rows(t, r.get("masked"), "masked" in asked)
    t.add_row("seconds", f"{r['seconds'].get('total', 0):.1f}")
    return t


def _title(r: dict[str, Any]) -> str:
    """grammar · PE · step of a run; an outside (--hf) model by its architecture, no step."""
    hf = r.get("hf")
    if hf:
        return f"{r['grammar']} · {hf.get('architecture') or 'outside model'} (--hf)"
    return f"{r['grammar']} · {r['pe']} · step {r['step']}"


def _masked_rows(t: Table, m: dict[str, Any] | None, asked: bool) -> None:
    """The encoder's measure; a decoder's figure (it scores the T completed strings, an mlm
    reads [MASK]) only when `--sections` asks for it, as it is not the model's own task."""
    if not m or (m["model"] == "decoder" and not asked):
        return
    label = (
        "masked-token accuracy (mlm encoder)"
        if m["model"] != "decoder"
        else "one-token fill-in accuracy (decoder)"
    )
    t.add_row(label, _rate(m["accuracy"]))
    t.add_row("  Bayes ceiling (the truth's argmax)", _num(m["bayes_accuracy"]["rate"], ".3f"))
    t.add_row("  KL(true ‖ model), filled token", _num(m["kl_mean"], ".5f"))


def _diversity_rows(t: Table, d: dict[str, Any] | None) -> None:
    if not d:
        return
    a, e = d["all"], d["entropy"]
    _entropy_rows(t, d.get("h"))
    t.add_row("distinct generations", f"{a['distinct']}/{a['n']}")
    t.add_row("support ≥ (birthday, 95%)", f"{a['support_lower_bound']:,.0f}")
    if e["n"]:
        # not an entropy: both sides score the model's own valid strings, so it is
        # E[log p_model − log p_true] there (KL(model ‖ true) when every generation is valid)
        t.add_row(
            "−log p, valid gens: model − true (nats)",
            f"{e['gap']:+.3f}/string  "
            f"(model {e['nll_model']:.2f} vs true {e['nll_true']:.2f}, n={e['n']})",
        )


def _entropy_rows(t: Table, h: dict[str, Any] | None) -> None:
    """H(model) and H(true), one row each, each named for what it is; a missing one says why.
    Absent altogether when the generations were not drawn at T = 1 (H(model) needs them)."""
    if not h:
        return
    m, tr = h["model"], h["true"]
    if m.get("h") is not None:
        lo, hi = m["ci95"]
        model = f"{m['h']:.2f} [{lo:.2f}, {hi:.2f}]  (n={m['n']})"
    else:
        model = f"not estimated: {m['n']} of {m['n'] + m['unended']} generations ended with EOS"
    t.add_row("H(model), nats/string (T=1 samples)", model)
    if m.get("per_token") is not None:
        lo, hi = m["per_token_ci95"]
        t.add_row("  H(model), nats/token (with EOS)", f"{m['per_token']:.3f} [{lo:.3f}, {hi:.3f}]")
    if tr.get("h") is not None:
        exact = "exact" if tr.get("exact") else "Monte Carlo"
        t.add_row("H(true), nats/string (the language)", f"{tr['h']:.2f}  ({exact})")
        if tr.get("per_token") is not None:
            t.add_row("  H(true), nats/token (with EOS)", f"{tr['per_token']:.3f}")
    else:
        t.add_row("H(true), the language", tr.get("note") or "not computed")


def _robustness_rows(t: Table, rb: dict[str, Any] | None) -> None:
    """The mode switch: only for a run trained on corrupted strings (or an outside model, whose
    training noise is unknown); on a clean-trained run there is no mode to switch to."""
    if not rb:
        return
    ms = rb["mode_switch"]
    fraction, rate = ms.get("train_noise_fraction"), ms.get("train_noise_rate")
    if fraction is not None and rate is not None and not (fraction and rate):
        return
    t.add_row("mode switch: invalid at cut0", _rate(ms["invalid"]))
    subs = ms["substitutions_to_valid"]
    t.add_row("  their substitutions to valid (mean)", _num(subs["mean"], ".2f"))
    noise = (
        "unknown (outside model)"
        if fraction is None or rate is None
        else f"{fraction:g} of strings, {rate:g} of their tokens"
    )
    t.add_row("  training noise", noise)


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

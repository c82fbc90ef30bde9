"""`cfglab import-json` and `cfglab export-json`: the authors' JSON grammars ⇄ .cfg files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from cfglab.cli.console import err
from cfglab.errors import CfglabError


def register(app: typer.Typer) -> None:
    app.command("import-json")(import_json)
    app.command("export-json")(export_json)


def import_json(
    file: Path = typer.Argument(..., help="The authors' grammar JSON (e.g. cfg3f.json)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the .cfg here (default: print it)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Grammar name (default: the file's stem)."
    ),
    note: list[str] | None = typer.Option(
        None,
        "--note",
        help="A header comment line to add (repeatable), e.g. where the file comes from.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Convert one of the authors' JSON grammars into the cfglab grammar DSL."""
    from cfglab.grammar.authors_json import load_authors_json
    from cfglab.grammar.core import Grammar
    from cfglab.grammar.dsl import format_grammar

    g = load_authors_json(file)
    g = Grammar(
        name or g.name,
        g.start,
        g.terminals,
        g.rules,
        header=(*(note or ()), *g.header),
        source=g.source,
    )
    _write(format_grammar(g), output, force)
    if output is not None:
        err.print(
            f"wrote {output}: grammar {g.name}, {len(g.nonterminals)} nonterminals, "
            f"{len(g.rules)} rules, {len(g.terminals)} terminals",
            soft_wrap=True,
        )


def export_json(
    grammar: Path = typer.Argument(..., help="A layered grammar file (.cfg)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the JSON here (default: print it)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Write a layered grammar in the authors' JSON format (sizes, idx, all)."""
    from cfglab.grammar.authors_json import to_authors_json
    from cfglab.grammar.dsl import load_grammar

    data = to_authors_json(load_grammar(grammar))
    _write(json.dumps(data) + "\n", output, force)
    if output is not None:
        err.print(f"wrote {output}", soft_wrap=True)


def _write(text: str, output: Path | None, force: bool) -> None:
    """Print `text` (plain, never re-wrapped) or write it to `output`, refusing to overwrite."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if output.is_dir():
        raise CfglabError(f"{output}: is a directory; give a file name with -o")
    if output.exists() and not force:
        raise CfglabError(f"{output}: already exists; pass --force to overwrite it")
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CfglabError(f"{output}: cannot write it ({error.strerror or error})") from None

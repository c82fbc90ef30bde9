"""The `cfglab` command line: thin typer commands over the library, rendered with rich.

Each command group lives in its own module with a `register(app)` function. Heavy libraries
(torch, ray) are imported inside command bodies so that `check`, `sample`, `verify` and
`next-token` start in well under a second.
"""

from __future__ import annotations

import sys

import typer

from cfglab.errors import CfglabError

app = typer.Typer(
    name="cfglab",
    help="A lab for studying how transformers learn context-free grammars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"cfglab {version('cfglab')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            print("cfglab (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print cfglab's version and exit.",
    ),
) -> None:
    """A lab for studying how transformers learn context-free grammars."""


_COMMAND_MODULES = (
    "cfglab.cli.dsl_cmds",  # import-json, export-json
    "cfglab.cli.check_cmds",  # check, new-grammar
    "cfglab.cli.sample_cmds",  # sample
    "cfglab.cli.chart_cmds",  # verify, next-token
    "cfglab.cli.posterior_cmds",  # posterior
    "cfglab.cli.train_cmds",
    "cfglab.cli.eval_cmds",  # evaluate
    "cfglab.cli.interop_cmds",  # export, activations
    "cfglab.cli.probe_cmds",  # probe, attention
    "cfglab.cli.patch_cmds",  # patch
    "cfglab.cli.sweep_cmds",  # sweep, report
    "cfglab.cli.demo_cmds",
    "cfglab.cli.lexicon_cmds",  # implicit
    "cfglab.cli.embedding_cmds",  # embedding
)


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Console entry point: user mistakes become one red message and exit 1, never a traceback.

    `app()` runs click in standalone mode, which turns usage errors, `typer.Exit` codes and
    Ctrl-C into exit codes itself; a CfglabError passes through it and is printed here.
    """
    from rich.console import Console

    try:
        app()
    except CfglabError as err:
        # soft_wrap: no re-wrapping at the terminal width, so a caret stays under its column
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            str(err), style="red", markup=False
        )
        sys.exit(1)

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
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = (
    "cfglab.cli.dsl_cmds",  # import-json, export-json
    "cfglab.cli.check_cmds",  # check, new-grammar
    "cfglab.cli.sample_cmds",  # sample
    "cfglab.cli.chart_cmds",  # verify, next-token
    "cfglab.cli.posterior_cmds",  # posterior
    "cfglab.cli.train_cmds",
    "cfglab.cli.eval_cmds",  # evaluate
    "cfglab.cli.probe_cmds",  # probe, attention
    "cfglab.cli.sweep_cmds",  # sweep, report
    "cfglab.cli.demo_cmds",
)


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Console entry point: user mistakes become one red message and exit 1, never a traceback.

    Click's standalone mode handles usage errors, `typer.Exit` codes and Ctrl-C itself.
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

"""The `interop` extra: a clear error naming `pip install -e .[interop]` when a package of it
is missing, instead of a bare ModuleNotFoundError deep in an import."""

from __future__ import annotations

import importlib.util

from cfglab.errors import CfglabError

INSTALL = "pip install -e .[interop]"


def require(*modules: str, what: str) -> None:
    """Raise a CfglabError naming the extra when any of `modules` cannot be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise CfglabError(
            f"{what} needs {', '.join(missing)}, which is not installed: {INSTALL} "
            "(transformers, transformer-lens and nnsight)"
        )

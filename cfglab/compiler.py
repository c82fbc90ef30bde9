"""The machine's C++ compiler, for torch.compile's inductor and for the fused Canon loop."""

from __future__ import annotations

import os
import shutil


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU, as it looks for one: $CXX, then g++, clang++."""
    names = [os.environ.get("CXX", ""), "g++", "clang++"]
    return next((path for name in names if name and (path := shutil.which(name))), None)

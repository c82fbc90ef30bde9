"""Every benchmark script still imports: they call private helpers of the package, which a
refactor can move (make bench would then fail before measuring anything)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(script.parent))  # as `python benchmarks/X.py` has it
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # module level only: main() runs under __main__
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"

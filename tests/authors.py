"""Where the tests read the authors' JSON grammars: tests/data/authors/, shipped in the repository
(Apache-2.0, see NOTICE there), so a clone with nothing beside it runs every test."""

from __future__ import annotations

from pathlib import Path

AUTHORS_JSON = Path(__file__).resolve().parent / "data" / "authors"

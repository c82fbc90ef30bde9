"""torch's CPU thread count, set the one way every entry point sets it."""

from __future__ import annotations

import os


def set_threads(threads: int) -> None:
    """Use `threads` torch threads (0: all cores). Set explicitly on every call, never inherited:
    Ray workers and process pools reuse a process across runs and tasks."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)

"""Shared rich consoles for the CLI (stdout for results, stderr for progress and errors).

Soft wrap: messages are not folded at the console's width (80 in a pipe), so a path or a
command to copy (`cfglab sweep … --resume`) stays on one line in logs; the terminal wraps it
on screen. Tables still fit the width."""

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

"""Terminal output shared by every command: consoles that keep whole lines in logs, and one-line warnings."""

from __future__ import annotations

import sys

from rich.console import Console

# Width of a console whose output goes to a file or pipe (nohup, Slurm logs, `| less`): wide enough that no
# table column is cut and no message is broken inside a command it names.
LOG_WIDTH = 1000


def make_console(stderr: bool = False) -> Console:
    """A rich console; when its stream is not a terminal, lines are never wrapped or truncated."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"warning: {message}", file=sys.stderr)

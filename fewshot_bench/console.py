"""Terminal output shared by every command: consoles that keep whole lines in logs, the package's logger
(one-line warnings, progress lines in log files) and its verbosity."""

from __future__ import annotations

import logging
import sys
import time

from rich.console import Console

# Width of a console whose output goes to a file or pipe (nohup, Slurm logs, `| less`): wide enough that no
# table column is cut and no message is broken inside a command it names.
LOG_WIDTH = 1000

logger = logging.getLogger("fewshot_bench")


_terminal_stderr: tuple[object, Console] | None = None


def make_console(stderr: bool = False) -> Console:
    """A rich console. On a terminal, text wraps at words to the terminal's width, and every user of stderr shares
    one console: the progress bars, the log handler and the messages, so that rich can print each line above
    the live bars (two consoles on one terminal each redraw over the other: lost lines, stale bars). When the
    stream is not a terminal (a log, a pipe), lines are never wrapped or truncated."""
    global _terminal_stderr
    if stderr and _terminal_stderr is not None and _terminal_stderr[0] is sys.stderr:
        return _terminal_stderr[1]
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=LOG_WIDTH)
    elif stderr:
        _terminal_stderr = (sys.stderr, console)
    return console


class _LineFormatter(logging.Formatter):
    """``warning: ...`` / ``error: ...`` one-liners; information as it is, stamped with the time in logs."""

    def __init__(self, stamp: bool) -> None:
        super().__init__()
        self.stamp = stamp

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        if record.levelno < logging.INFO:
            message = f"debug: {message}"
        return f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {message}" if self.stamp else message


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest and notebooks replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """The package logger's level: -1 (``-q``) warnings and errors only, 0 progress and results, 1 (``-v``)
    debugging detail too. On a terminal through rich's handler; otherwise (a log file) plain lines, the
    informational ones time-stamped."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        # A terminal: rich's handler on the shared stderr console (lines printed above live bars, wrapped at words,
        # nothing read as markup); no level column: warnings and errors say so themselves, as in a log.
        handler = RichHandler(console=make_console(stderr=True), show_time=False, show_path=False, show_level=False,
                              markup=False, highlighter=None)
        handler.setFormatter(_LineFormatter(stamp=False))
    else:
        handler = _StderrHandler()  # a log file or a test: plain, greppable, time-stamped lines
        handler.setFormatter(_LineFormatter(stamp=True))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.propagate = False


def warn(message: str) -> None:
    """A one-line warning on stderr (``warning: ...``)."""
    logger.warning(message)


if not logger.handlers:  # the Python API warns too, before (or without) any CLI set-up
    setup_logging()

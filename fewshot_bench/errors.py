"""User-facing errors: anything a user can cause is raised as a BenchError.

The CLI prints ``error: <message>`` for these and exits non-zero, without a traceback. Every message
names the problem and, where there is one, the fix.
"""

import difflib
from typing import Iterable


class BenchError(Exception):
    """An error caused by the user's request or inputs (config, names, data); printed without traceback."""


class ConfigError(BenchError):
    """A configuration key, value or file is invalid."""


class UnknownNameError(BenchError):
    """A method, dataset or backbone name is not registered."""


class EpisodeError(BenchError):
    """An episodic request cannot be satisfied by the data (too few classes or items)."""


class SplitError(BenchError):
    """A class split is inconsistent with itself or with the dataset."""


class LeakageError(BenchError):
    """An episode contains a class outside the split it was drawn for."""


class DatasetError(BenchError):
    """A dataset on disk is missing, malformed or corrupt."""


class RecordError(BenchError):
    """A file of a run folder (a cell record) is unreadable, incomplete or holds impossible values."""


class MethodContractError(BenchError):
    """A method (often a plugin) broke the method contract, e.g. returned scores of the wrong shape."""


class CellsFailed(BenchError):
    """Cells of a run failed (each marked failed in the run folder; ``--resume`` computes them again)."""


class ExitCode:
    """The exit status of ``bench``: what a script or a Slurm epilogue can branch on."""

    OK = 0
    FAILED_CELLS = 1   # the run ended, but some cells failed (listed; `bench run --resume` retries them)
    USAGE = 2          # the command line itself is wrong (unknown flag, missing argument)
    INPUT = 3          # a config, dataset, plugin or run folder is wrong (the message names it and the fix)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished cells and checkpoints are kept; `--resume` continues


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"did you mean 'X'? " for the known name closest to a mistyped ``name`` (case and ``-``/``_`` ignored), or
    "" when none is close."""
    known = list(known)

    def plain(text: str) -> str:
        return text.lower().replace("-", "_")

    by_plain = {plain(k): k for k in known}
    close = difflib.get_close_matches(plain(name), list(by_plain), n=1, cutoff=0.5)
    return f"did you mean '{by_plain[close[0]]}'? " if close else ""

"""What a run shows while it works: progress bars on a terminal, plain time-stamped lines in a log file
(``engine.progress``), and one line per finished cell; both follow -q/-v through the package logger."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fewshot_bench.console import logger
from fewshot_bench.engine.progress import LogLinesObserver, cell_line


class BarsObserver:
    """Rich progress bars for training and evaluation (a terminal), and one line per finished cell."""

    def __init__(self, console: Console, total_cells: int) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        self.progress = Progress(*columns, console=console, transient=True)
        self.cells = self.progress.add_task("cells", total=total_cells)
        self.train_task = self.eval_task = None
        self.label = ""

    def __enter__(self) -> BarsObserver:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def cell_started(self, label: str, shot: int, seed: int, train_episodes: int, test_episodes: int) -> None:
        for task in (self.train_task, self.eval_task):
            if task is not None:
                self.progress.remove_task(task)
        self.label = escape(f"{label} {shot}-shot seed {seed}")
        self.train_task = self.progress.add_task(f"train {self.label}", total=train_episodes)
        self.eval_task = self.progress.add_task(f"test  {self.label}", total=test_episodes)

    def trained(self, episodes: int, loss: float | None) -> None:
        description = f"train {self.label}" + (f" loss {loss:.4f}" if loss is not None else "")
        self.progress.update(self.train_task, advance=episodes,
                             **({"description": description} if loss is not None else {}))

    def evaluated(self, episodes: int) -> None:
        self.progress.update(self.eval_task, advance=episodes)

    def cell_finished(self, record: dict[str, Any], skipped: bool) -> None:
        self.progress.update(self.cells, advance=1)
        logger.info(cell_line(record, skipped))


def run_observer(console: Console, total_cells: int, log_interval: int) -> BarsObserver | LogLinesObserver:
    """Bars on a terminal, lines in a log; ``-q`` (warnings only) shows neither."""
    import logging

    if console.is_terminal and logger.isEnabledFor(logging.INFO):
        return BarsObserver(console, total_cells)
    return LogLinesObserver(total_cells, log_interval)

"""What a run shows while it works: progress bars on a terminal, plain time-stamped lines in a log file
(nohup, Slurm), and one line per finished cell; both follow -q/-v through the package logger."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fewshot_bench.console import logger
from fewshot_bench.stats import ci95


def cell_line(record: dict[str, Any], skipped: bool, aligned: bool = True) -> str:
    """``label K-shot seed S: mean ± ci (train Ns, test Ns)`` of a finished (or kept) cell; ``aligned`` pads
    the label into a column (a terminal), else a log line stays compact and greppable."""
    acc = np.asarray(record["accuracies"]) * 100
    what = "kept (already done)" if skipped else (
        f"train {record['train_seconds']:.0f}s, test {record['eval_seconds']:.0f}s")
    label = f"  {record['label']:<28}" if aligned else record["label"]
    return f"{label} {record['shot']}-shot seed {record['seed']}: {acc.mean():.2f} ± {ci95(acc):.2f}  ({what})"


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


class LogLinesObserver:
    """Plain progress lines for a log file: one per ``log_interval`` training (and test) episodes, with the
    loss, the speed and the time left, so a Slurm or nohup log shows that a long cell is alive."""

    def __init__(self, total_cells: int, log_interval: int) -> None:
        self.total_cells, self.interval = total_cells, max(1, log_interval)
        self.cells_done = 0
        self.label = ""

    def __enter__(self) -> LogLinesObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def cell_started(self, label: str, shot: int, seed: int, train_episodes: int, test_episodes: int) -> None:
        self.label = f"{label} {shot}-shot seed {seed}"
        self.train_total, self.test_total = train_episodes, test_episodes
        self.trained_count = self.tested = 0
        self.resumed_at: int | None = None
        self.start = self.test_start = time.perf_counter()
        logger.info(f"cell {self.cells_done + 1}/{self.total_cells}: {self.label}: training {train_episodes} "
                    f"episodes, then {test_episodes} test episodes")

    def trained(self, episodes: int, loss: float | None) -> None:
        if self.resumed_at is None:  # the first report of a resumed cell is where its checkpoint stopped
            self.resumed_at = episodes if self.trained_count == 0 and loss is not None else 0
            self.start = time.perf_counter()
        self.trained_count += episodes
        if loss is None:
            return
        rate = (self.trained_count - self.resumed_at) / max(time.perf_counter() - self.start, 1e-9)
        left = (self.train_total - self.trained_count) / rate if rate > 0 else float("nan")
        logger.info(f"{self.label}: train {self.trained_count}/{self.train_total} episodes, loss {loss:.4f}, "
                    f"{rate:.1f} episodes/s, {_duration(left)} left in training")

    def evaluated(self, episodes: int) -> None:
        if self.tested == 0:
            self.test_start = time.perf_counter()
        before, self.tested = self.tested, self.tested + episodes
        if self.tested // self.interval > before // self.interval and self.tested < self.test_total:
            rate = self.tested / max(time.perf_counter() - self.test_start, 1e-9)
            logger.info(f"{self.label}: test {self.tested}/{self.test_total} episodes, {rate:.1f} episodes/s, "
                        f"{_duration((self.test_total - self.tested) / rate)} left")

    def cell_finished(self, record: dict[str, Any], skipped: bool) -> None:
        self.cells_done += 1
        logger.info(cell_line(record, skipped, aligned=False))


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def run_observer(console: Console, total_cells: int, log_interval: int) -> BarsObserver | LogLinesObserver:
    """Bars on a terminal, lines in a log; ``-q`` (warnings only) shows neither."""
    import logging

    if console.is_terminal and logger.isEnabledFor(logging.INFO):
        return BarsObserver(console, total_cells)
    return LogLinesObserver(total_cells, log_interval)

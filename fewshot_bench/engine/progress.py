"""Progress as plain log lines: what a run writes to a log file (nohup, Slurm, a job worker's log), one line
per log interval with the loss, the speed and the time left, and one per finished cell."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

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
        self.baseline: tuple[int, float] | None = None
        training = f"training {train_episodes} episodes" if train_episodes else "no episodic training"
        logger.info(f"cell {self.cells_done + 1}/{self.total_cells}: {self.label}: {training}, then {test_episodes} "
                    "test episodes")

    def trained(self, episodes: int, loss: float | None) -> None:
        self.trained_count += episodes
        if self.baseline is None:
            # Speed is measured from the first report on: a resumed cell's first report is the episodes its
            # checkpoint had already trained, which took no time in this process.
            self.baseline = (self.trained_count, time.perf_counter())
            return
        if loss is None:
            return
        done, since = self.baseline
        rate = (self.trained_count - done) / max(time.perf_counter() - since, 1e-9)
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

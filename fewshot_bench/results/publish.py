"""Run records: the compact, committable copy of a run folder behind published numbers.

A record keeps everything a number is derived from and checked against — ``config.yaml``,
``environment.json``, ``plan.json``, every finished cell record (settings, code version, commit, per-episode
accuracies, loss curves), its context rows (floor, ceiling) and the saved test episodes — and leaves out what is large and re-derivable:
checkpoints, job logs, state markers, ``accuracies.csv`` and the summaries. A record folder reads like a run
folder, so ``bench table``, ``bench compare``, ``bench leaderboard`` and ``bench card`` take it as one.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
from pathlib import Path

from fewshot_bench.errors import ConfigError

RECORD_FILES = ("config.yaml", "environment.json", "plan.json")
RECORD_FOLDERS = {"cells": "*.json", "episodes": "*.npz", "context": "*.json"}
# Folders a run has only when it computed something for them (no empty folder in its record otherwise).
OPTIONAL_FOLDERS = ("context",)


def publish_run(run: Path, out: Path, weights: str | None = None) -> list[Path]:
    """Write the record of run folder ``run`` to ``out`` (replacing an earlier record there); the files written.
    ``weights``: a cell-id pattern (``*`` for all) whose finished cells' weights go into ``weights/`` too, so the
    record's models can be used without the run (``engine.reuse.load_cell``, ``bench predict``)."""
    cells = sorted((run / "cells").glob("*.json"))
    if not (run / "config.yaml").is_file() or not cells:
        raise ConfigError(f"run '{run}' has no config.yaml or no finished cells; nothing to publish")
    if out.resolve() == run.resolve():
        raise ConfigError(f"'{out}' is the run folder itself; publish to another folder, e.g. results/records/"
                          f"{run.name}")
    if out.exists() and not (out / "config.yaml").is_file():
        raise ConfigError(f"'{out}' exists and is not a run record; choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and swapped in, so a record is never half old, half new.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    for name in RECORD_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, staging / name)
    for folder, pattern in RECORD_FOLDERS.items():
        paths = sorted((run / folder).glob(pattern))
        if folder in OPTIONAL_FOLDERS and not paths:
            continue
        (staging / folder).mkdir()
        for path in paths:
            shutil.copy2(path, staging / folder / path.name)
    if weights is not None:
        chosen = [p.stem for p in cells if fnmatch.fnmatch(p.stem, weights)]
        missing = [c for c in chosen if not (run / "checkpoints" / f"{c}.pt").is_file()]
        if not chosen or missing:
            shutil.rmtree(staging)
            what = f"cell '{missing[0]}' has no saved weights" if missing else f"no finished cell matches '{weights}'"
            raise ConfigError(f"--weights: {what} in '{run}'; its cells: {', '.join(p.stem for p in cells)}")
        (staging / "weights").mkdir()
        for cell in chosen:
            shutil.copy2(run / "checkpoints" / f"{cell}.pt", staging / "weights" / f"{cell}.pt")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return sorted(p for p in out.rglob("*") if p.is_file())

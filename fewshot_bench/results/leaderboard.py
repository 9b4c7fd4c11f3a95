"""The leaderboard: every finished cell under ``results/`` aggregated into one CSV.

One row per (method variant, dataset, split, way, shot, query, backbone, settings hash, device kind,
precision): seeds that ran on another kind of device or in another precision are never pooled (see
``numerics``). Columns (documented in the README): identification, accuracy (mean, ci95 over episodes, std,
episodes, seeds, seed_std, seed_ci95 over seeds), cost (params,
train_episodes, train_seconds and eval_seconds per cell), provenance (device, device_kind, precision,
versions, run ids, timestamp). Rows are sorted by setting, then best first. When several runs hold the same seed of the same
row, the most recently finished cell is used, so rerunning is idempotent and never double-counts.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fewshot_bench.errors import BenchError
from fewshot_bench.fileio import atomic_write_text, locked
from fewshot_bench.results.frames import aggregate, cells_frame
from fewshot_bench.results.store import RunStore

COLUMNS = ["dataset", "split", "way", "shot", "query", "label", "method", "backbone", "settings_hash", "mean", "ci95", "std",
           "episodes", "seeds", "seed_std", "seed_ci95", "params", "train_episodes", "pretrain_epochs", "train_seconds", "eval_seconds", "device",
           "device_kind", "precision", "torch", "python", "fewshot_bench", "method_version", "git_commit", "train_way",
           "train_query", "lr", "test_episodes_sha", "run_ids", "timestamp"]
SETTING = ("dataset", "split", "way", "shot", "query")
# The numerics (device kind, precision) are part of a result's identity: never pooled across.
KEY = (*SETTING, "label", "backbone", "settings_hash", "device_kind", "precision")


def cell_settings_hash(cell: dict[str, Any]) -> str:
    """The cell's settings hash; cells recorded before it existed get one per run, so they are never pooled
    with another run's cells on the strength of a matching label alone."""
    return cell.get("settings_hash") or f"run:{cell.get('run_id', '?')}"


def run_folders(paths: Iterable[Path]) -> list[Path]:
    """Run folders (those holding ``cells/``) at or directly below each path."""
    found = []
    for path in paths:
        path = Path(path)
        if (path / "cells").is_dir():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob("*/cells") if p.is_dir()))
            found.extend(sorted(p.parent for p in path.glob("runs/*/cells") if p.is_dir()))
    return sorted(set(found))


def load_cells(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """Every finished cell, annotated with its run id and the run's environment."""
    cells = []
    for folder in run_folders(folders):
        environment = {}
        if (folder / "environment.json").is_file():
            environment = json.loads((folder / "environment.json").read_text())
        for cell in RunStore(folder).load_cells():
            cell["run_id"] = folder.name
            cell["environment"] = environment
            cells.append(cell)
    return cells


def leaderboard_rows(cells: Iterable[dict[str, Any]], dataset: str | None = None, way: int | None = None,
                     shot: int | None = None, method: str | None = None) -> list[dict[str, Any]]:
    """Aggregate cells into leaderboard rows (``frames.aggregate`` over ``KEY``), optionally filtered."""
    frame = cells_frame(cells)
    if frame.empty:
        return []
    frame["settings_hash"] = [cell_settings_hash({"settings_hash": h, "run_id": r})
                              for h, r in zip(frame["settings_hash"], frame["run_id"])]
    keep = np.ones(len(frame), dtype=bool)
    for column, wanted in (("dataset", dataset), ("way", way), ("shot", shot)):
        if wanted:
            keep &= (frame[column] == wanted).fillna(False).to_numpy(dtype=bool)
    if method:
        keep &= ((frame["method"] == method) | (frame["label"] == method)).to_numpy(dtype=bool)
    frame = frame[keep]
    # When several runs hold the same seed of a row, the most recently finished cell counts.
    stamp = frame.assign(_finished=frame["finished"].fillna(""), _run=frame["run_id"].fillna(""))
    latest = stamp.sort_values(["_finished", "_run"], kind="stable").drop_duplicates([*KEY, "seed"], keep="last")
    rows = aggregate(frame.loc[latest.index.sort_values()], KEY)
    rows.sort(key=lambda r: (*(str(r[k]) if k in ("dataset", "split") else r[k] for k in SETTING), -r["mean"], r["label"]))
    return rows


def render_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def write_leaderboard(sources: list[Path], out: Path, **filters: Any) -> list[dict[str, Any]]:
    """Rebuild ``out`` from every run under ``sources``; atomic and serialised between processes."""
    with locked(out):
        rows = leaderboard_rows(load_cells(sources), **filters)
        if not rows:
            raise BenchError(f"no finished cells found under {', '.join(map(str, sources))}; run `bench run` first")
        atomic_write_text(out, render_csv(rows))
    return rows


def read_leaderboard(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BenchError(f"leaderboard '{path}' does not exist; create it with `bench leaderboard`")
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key in ("way", "shot", "query", "episodes", "seeds", "params", "train_episodes"):
                row[key] = int(row[key])
            row["pretrain_epochs"] = int(row.get("pretrain_epochs") or 0)  # missing from older leaderboards
            for key in ("device_kind", "precision"):
                row.setdefault(key, "")  # missing from older leaderboards (which lack the amp setting to derive them)
            for key in ("mean", "ci95", "std", "seed_std", "seed_ci95", "train_seconds", "eval_seconds"):
                row[key] = float(row.get(key) or "nan")  # seed_ci95 is missing from older leaderboards
            rows.append(row)
    return rows

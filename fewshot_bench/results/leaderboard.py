"""The leaderboard: every finished cell under ``results/`` aggregated into one CSV.

One row per (method variant, dataset, split, way, shot, query, backbone, settings hash, device kind,
precision): seeds that ran on another kind of device or in another precision are never pooled (see
``numerics``). Columns (documented in docs/usage.md): identification, accuracy (mean, ci95 over episodes, std,
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

from fewshot_bench.config import CONTEXT_KINDS
from fewshot_bench.errors import BenchError
from fewshot_bench.fileio import atomic_write_text, locked
from fewshot_bench.results.frames import aggregate, cells_frame
from fewshot_bench.results.store import RunStore, seen_records, with_context_fields

COLUMNS = ["dataset", "split", "way", "shot", "query", "label", "method", "backbone", "settings_hash", "mean", "ci95", "std",
           "episodes", "seeds", "seed_std", "seed_ci95", "params", "train_episodes", "pretrain_epochs", "train_seconds", "eval_seconds", "device",
           "device_kind", "precision", "torch", "python", "fewshot_bench", "method_version", "git_commit", "train_way",
           "train_query", "lr", "test_episodes_sha", "run_ids", "timestamp", "context", "balanced_accuracy"]
SETTING = ("dataset", "split", "way", "shot", "query")
# The numerics (device kind, precision) are part of a result's identity: never pooled across.
KEY = (*SETTING, "label", "backbone", "settings_hash", "device_kind", "precision")


def cell_settings_hash(cell: dict[str, Any]) -> str:
    """The cell's settings hash; cells recorded before it existed get one per run, so they are never pooled
    with another run's cells on the strength of a matching label alone."""
    return cell.get("settings_hash") or f"run:{cell.get('run_id', '?')}"


def row_cells(cells: Iterable[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """The cell records that ``leaderboard_rows`` pooled into ``row``: same dataset, setting, variant, settings
    hash and numerics."""
    from fewshot_bench.results.numerics import record_numerics

    numerics = {"device_kind": row.get("device_kind"), "precision": row.get("precision")}
    return [c for c in cells if c.get("label") == row["label"] and c.get("dataset") == row["dataset"]
            and c.get("way") == row["way"] and c.get("shot") == row["shot"] and c.get("query") == row["query"]
            and cell_settings_hash(c) == row.get("settings_hash") and record_numerics(c) == numerics]


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
    """Every finished cell that verifies (``store.read_cell``), annotated with its run id and the run's
    environment; a damaged environment.json is named in a warning and its run shown without it."""
    cells = []
    for folder in run_folders(folders):
        environment = read_environment(folder)
        for cell in RunStore(folder).load_cells():
            cell["run_id"] = folder.name
            cell["environment"] = environment
            cells.append(cell)
    return cells


def load_context(folders: Iterable[Path], cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs' context records (``fewshot_bench.context``): their floor and ceiling rows that verify, and the
    seen-class evaluations of ``cells``, each annotated with its run id and environment like a cell."""
    records = []
    for folder in run_folders(folders):
        environment = read_environment(folder)
        for record in RunStore(folder).load_context():
            records.append({**record, "run_id": folder.name, "environment": environment})
    return records + seen_records(cells)


def read_environment(folder: Path) -> dict[str, Any]:
    """A run's environment.json (versions, device, host); {} when it is missing, and, with a warning naming
    it, when it is damaged (it is provenance: the run's numbers do not depend on it)."""
    from fewshot_bench.console import warn

    path = folder / "environment.json"
    if not path.is_file():
        return {}
    try:
        environment = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        warn(f"'{path}' is unreadable ({type(exc).__name__}); the run's cells are shown without its environment "
             "(versions, device)")
        return {}
    if not isinstance(environment, dict) or not all(isinstance(k, str) for k in environment):
        warn(f"'{path}' is damaged (not a mapping of names to values); the run's cells are shown without its "
             "environment (versions, device)")
        return {}
    return environment


def leaderboard_rows(cells: Iterable[dict[str, Any]], dataset: str | None = None, way: int | None = None,
                     shot: int | None = None, method: str | None = None,
                     context: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Aggregate cells into leaderboard rows (``frames.aggregate`` over ``KEY``), optionally filtered; the
    ``context`` records (``load_context``) follow each setting's methods, their ``context`` column naming their
    kind (floor, seen, ceiling), never ranked among them."""
    context = list(context)
    rows = _aggregated(cells, dataset, way, shot, method)
    if context:
        rows += with_context_fields(_aggregated(context, dataset, way, shot, None), context)
    # Within a setting: the methods best first, then the context rows by kind (floor, seen, ceiling).
    kinds = ("", *CONTEXT_KINDS)
    rows.sort(key=lambda r: (*(str(r[k]) if k in ("dataset", "split") else r[k] for k in SETTING),
                             kinds.index(r.get("context") or ""), -r["mean"], r["label"]))
    return rows


def _aggregated(cells: Iterable[dict[str, Any]], dataset: str | None, way: int | None, shot: int | None,
                method: str | None) -> list[dict[str, Any]]:
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
    return aggregate(frame.loc[latest.index.sort_values()], KEY)


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
        cells = load_cells(sources)
        rows = leaderboard_rows(cells, **filters, context=load_context(sources, cells))
        if not rows:
            raise BenchError(f"no finished cells found under {', '.join(map(str, sources))}; run `bench run` first")
        atomic_write_text(out, render_csv(rows))
    return rows


# Columns a leaderboard CSV must have, and how each is read (the rest are text).
_REQUIRED = ("dataset", "split", "label", "method", "way", "shot", "query", "mean", "episodes", "seeds", "params",
             "train_episodes")
_INTEGER_COLUMNS = {"way": 2, "shot": 1, "query": 1, "episodes": 1, "seeds": 1, "params": 0, "train_episodes": 0}
_FLOAT_COLUMNS = ("mean", "ci95", "std", "seed_std", "seed_ci95", "train_seconds", "eval_seconds")


def read_leaderboard(path: Path) -> list[dict[str, Any]]:
    """The rows of a leaderboard CSV, checked: UTF-8 text with the leaderboard's columns, whole numbers where
    they belong (way >= 2, shot, query, episodes, seeds >= 1), means in [0, 100]. Anything else is a one-line
    BenchError naming the file, the line and the column."""
    if not path.is_file():
        raise BenchError(f"leaderboard '{path}' does not exist; create it with `bench leaderboard`")
    fix = "rebuild it with `bench leaderboard`"
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchError(f"leaderboard '{path}' is not a leaderboard CSV (it lacks the column(s) "
                                 f"{', '.join(missing)}); {fix}")
            for row in reader:
                rows.append(_leaderboard_row(row, path, reader.line_num, fix))
    except UnicodeDecodeError:
        raise BenchError(f"leaderboard '{path}' is not UTF-8 text; {fix}") from None
    except csv.Error as exc:
        raise BenchError(f"leaderboard '{path}' is not a valid CSV ({exc}); {fix}") from None
    return rows


def _leaderboard_row(row: dict[str, Any], path: Path, line: int, fix: str) -> dict[str, Any]:
    if None in row or any(value is None for value in row.values()):
        raise BenchError(f"leaderboard '{path}' line {line} has {'more' if None in row else 'fewer'} fields than "
                         f"the header; {fix}")
    for key, minimum in _INTEGER_COLUMNS.items():
        try:
            row[key] = int(row[key])
        except ValueError:
            raise BenchError(f"leaderboard '{path}' line {line}: column {key} is {row[key]!r}, not a whole "
                             f"number; {fix}") from None
        if row[key] < minimum:
            raise BenchError(f"leaderboard '{path}' line {line}: column {key} is {row[key]}, below {minimum}; {fix}")
    try:
        row["pretrain_epochs"] = int(row.get("pretrain_epochs") or 0)  # missing from older leaderboards
    except ValueError:
        raise BenchError(f"leaderboard '{path}' line {line}: column pretrain_epochs is {row['pretrain_epochs']!r}, "
                         f"not a whole number; {fix}") from None
    for key in COLUMNS:
        # missing from older leaderboards (device_kind and precision: they lack the amp setting to derive them)
        row.setdefault(key, "")
    for key in _FLOAT_COLUMNS:
        try:
            row[key] = float(row.get(key) or "nan")  # seed_ci95 is missing from older leaderboards
        except ValueError:
            raise BenchError(f"leaderboard '{path}' line {line}: column {key} is {row[key]!r}, not a number; "
                             f"{fix}") from None
    try:
        row["balanced_accuracy"] = float(row["balanced_accuracy"]) if row.get("balanced_accuracy") else None
    except ValueError:
        raise BenchError(f"leaderboard '{path}' line {line}: column balanced_accuracy is {row['balanced_accuracy']!r}, "
                         f"not a number; {fix}") from None
    if not 0.0 <= row["mean"] <= 100.0:
        raise BenchError(f"leaderboard '{path}' line {line}: mean {row['mean']} is not a percentage in [0, 100]; {fix}")
    return row

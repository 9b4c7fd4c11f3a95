"""The run store: one folder per run, every file written atomically.

Layout of ``results/runs/<run-id>/``::

    config.yaml            merged configuration (enough to rerun the run)
    environment.json       versions, device, git commit, host, start time
    episodes/<setting>.npz the fixed test episodes of each setting (class ids + item indices)
    cells/<cell>.json      one finished cell: variant, setting, seed, per-episode accuracies, timings
    pretrained/<key>.pt    backbones pre-trained by the supervised stage, shared by the cells of one key
    accuracies.csv         every test episode of every cell (long format)
    summary.csv            one row per (variant, setting, device kind, precision): mean, ci95 (episodes),
                           seed_ci95 (seeds), std, ...
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, TypedDict

import numpy as np

from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.errors import RecordError
from fewshot_bench.fileio import atomic_write_bytes, atomic_write_text
from fewshot_bench.results.provenance import git_state


def environment_info(device: str) -> dict[str, Any]:
    """Versions, device and git commit, saved with every run."""
    import torch
    import torchvision

    from fewshot_bench import __version__

    info: dict[str, Any] = {
        "fewshot_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info["git_commit"], info["git_dirty"] = git_state()
    return info


def _job_id() -> str | None:
    """The Slurm job (array task) this process runs in: a requeued job keeps it, and with it its claims."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped) is not alive either.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class CellRecord(TypedDict, total=False):
    """A finished cell as stored in ``cells/<cell>.json``: what was run, what it measured, how, and with what.

    Records written by older versions lack some keys (``settings_hash``, ``code_version``, ...); readers use
    ``.get`` for those. ``read_cell`` guarantees the keys tables need (``CELL_KEYS``)."""

    cell: str                      # the cell id: variant label, episode shape, seed
    label: str                     # the variant as shown in tables, e.g. crn[dap=false]
    method: str
    method_source: str             # built-in, file <path>, package <dist> <version>
    method_version: str
    code_version: str              # hash of the method's, its backbone's and the core path's source
    git_commit: str | None
    git_dirty: bool | None
    options: dict[str, Any]
    backbone: str
    dataset: str
    split: str
    way: int
    shot: int
    query: int
    train_way: int
    train_query: int
    seed: int
    params: int
    train_episodes: int
    pretraining: dict[str, Any] | None
    train_seconds: float
    eval_seconds: float
    device: str
    threads: int
    compiled: str | None
    train_steps: str               # graph, or eager (reason)
    eval_steps: str
    batched_episodes: bool
    finished: str                  # ISO time
    loss_curve: dict[str, list[float]]
    val_curve: dict[str, Any]
    mean: float                    # percent
    accuracies: list[float]        # per test episode, fractions in [0, 1]
    class_accuracy: dict[str, float]
    test_episodes_file: str
    test_episodes_sha: str
    settings: dict[str, Any]       # the result-affecting settings (config keys of role "result", resolved)
    settings_hash: str
    numerics: dict[str, str]       # device_kind and precision (results.numerics); older records derive it
    dedup: bool | None
    run_id: str                    # added when cells are loaded from several runs
    environment: dict[str, Any]    # likewise: the run's environment.json


class SummaryRow(TypedDict):
    """One (variant, dataset, split, way, shot, query, device kind, precision) of a run, its seeds pooled
    (``summary.csv``); seeds that ran on another kind of device or in another precision are never pooled."""

    label: str
    method: str
    dataset: str
    split: str
    way: int
    shot: int
    query: int
    backbone: str
    mean: float
    ci95: float
    std: float
    episodes: int
    seeds: int
    seed_std: float
    seed_ci95: float
    params: int
    train_episodes: int
    device_kind: str               # cuda, cpu, mps (results.numerics)
    precision: str                 # bf16-autocast or fp32


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def run_id(self) -> str:
        return self.root.name

    def save_config(self, text: str) -> None:
        atomic_write_text(self.root / "config.yaml", text)

    def save_environment(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.root / "environment.json", json.dumps(info, indent=2) + "\n")

    def episodes_path(self, setting: str) -> Path:
        return self.root / "episodes" / f"{setting}.npz"

    def save_episodes(self, setting: str, episodes: EpisodeSet) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, class_ids=episodes.class_ids, support=episodes.support, query=episodes.query)
        atomic_write_bytes(self.episodes_path(setting), buffer.getvalue())

    def cell_path(self, cell_id: str) -> Path:
        return self.root / "cells" / f"{cell_id}.json"

    def has_cell(self, cell_id: str) -> bool:
        return self.cell_path(cell_id).exists()

    def save_cell(self, cell_id: str, record: CellRecord) -> None:
        atomic_write_text(self.cell_path(cell_id), json.dumps(record, indent=1) + "\n")

    def save_plan(self, cells: list[dict[str, Any]]) -> None:
        """The grid of the run (every cell ever planned into this folder), for ``bench status``."""
        path = self.root / "plan.json"
        try:
            planned = self.load_plan()
        except RecordError as exc:
            from fewshot_bench.console import warn

            warn(f"{exc}; it is written again")
            planned = []
        known = {c["cell"] for c in planned}
        planned += [c for c in cells if c["cell"] not in known]
        atomic_write_text(path, json.dumps(planned, indent=1) + "\n")

    def load_plan(self) -> list[dict[str, Any]]:
        """The run's planned cells; a damaged plan.json is a one-line RecordError with the fix."""
        path = self.root / "plan.json"
        if not path.exists():
            return []
        try:
            plan = json.loads(path.read_text())
            if not isinstance(plan, list) or not all(isinstance(c, dict) and "cell" in c for c in plan):
                raise ValueError("not a list of cells")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordError(f"'{path}' is damaged ({type(exc).__name__}); delete it and run `bench run --resume "
                              f"{self.run_id}`, which plans the cells again") from None
        return plan

    def mark_running(self, cell_id: str, **info: Any) -> None:
        """Note that this process works on the cell (host, pid, time; a Slurm job id when there is one)."""
        record = {"state": "running", "host": socket.gethostname(), "pid": os.getpid(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "job": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID"), **info}
        atomic_write_text(self.root / "state" / f"{cell_id}.json", json.dumps(record) + "\n")

    def mark_failed(self, cell_id: str, error: str, **info: Any) -> None:
        record = {"state": "failed", "error": error, "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "log": os.environ.get("FEWSHOT_BENCH_JOB_LOG"), **info}
        atomic_write_text(self.root / "state" / f"{cell_id}.json", json.dumps(record) + "\n")

    def claim(self, cell_id: str) -> bool:
        """Atomically take ``cell_id`` for this process; False when another live process holds it.

        A claim is a file created with O_EXCL, so of several workers sharing the store exactly one wins. A
        claim left by a dead process on this host (a killed run) is taken over: it is first renamed away,
        which only one contender can do.
        """
        path = self.root / "claims" / f"{cell_id}.claim"
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text())
                except (OSError, ValueError):
                    holder = {}  # being written right now, or damaged: treat as held
                    if not path.exists():
                        continue
                if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
                    return True  # this process holds it already: claiming again is harmless
                requeued = holder.get("job") is not None and holder.get("job") == _job_id()
                if not requeued and (holder.get("host") != socket.gethostname() or _pid_alive(holder.get("pid"))):
                    return False
                try:
                    os.rename(path, path.with_name(f".{path.name}.stale-{os.getpid()}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "job": _job_id()}) + "\n")
            return True
        return False

    def failed(self, cell_id: str) -> bool:
        """Whether the cell's state marker says it failed (a launch clears the markers it retries)."""
        try:
            return json.loads((self.root / "state" / f"{cell_id}.json").read_text()).get("state") == "failed"
        except (OSError, ValueError):
            return False

    def claim_holder(self, cell_id: str) -> str:
        """Who holds the cell's claim, and the file to delete if that process is gone, for messages."""
        path = self.root / "claims" / f"{cell_id}.claim"
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            return f"another process (claim file {path})"
        return f"pid {holder.get('pid')} on {holder.get('host')} (if it is gone, delete {path})"

    def release(self, cell_id: str) -> None:
        """Give up this process's claim on ``cell_id`` (after it finished or failed)."""
        (self.root / "claims" / f"{cell_id}.claim").unlink(missing_ok=True)

    def clear_state(self, cell_id: str) -> None:
        (self.root / "state" / f"{cell_id}.json").unlink(missing_ok=True)

    def cell_states(self) -> dict[str, dict[str, Any]]:
        """State of every planned cell: done, running, failed, interrupted (its process is gone) or pending."""
        states: dict[str, dict[str, Any]] = {}
        for entry in self.load_plan():
            cid = entry["cell"]
            marker = self.root / "state" / f"{cid}.json"
            if self.has_cell(cid):
                try:
                    read_cell(self.cell_path(cid))
                    state = {"state": "done"}
                except RecordError as exc:  # a damaged record is no result: resume computes the cell again
                    state = {"state": "failed", "error": str(exc)}
            elif marker.exists():
                try:
                    state = json.loads(marker.read_text())
                    state["state"]  # noqa: B018 - a marker without a state is as damaged as unreadable JSON
                except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                    state = {"state": "interrupted", "error": f"state file {marker} is damaged; --resume runs the cell"}
                if state["state"] == "running" and state.get("host") == socket.gethostname() \
                        and not _pid_alive(state.get("pid")):
                    state["state"] = "interrupted"
            else:
                state = {"state": "pending"}
            states[cid] = {**entry, **state}
        return states

    def checkpoint(self, cell_id: str) -> "CellCheckpoint":
        return CellCheckpoint(self.root / "checkpoints" / f"{cell_id}.pt")

    @property
    def pretrained_dir(self) -> Path:
        """Where the run keeps its pre-trained backbones (and their partial checkpoints), one file per key."""
        return self.root / "pretrained"

    def load_cell(self, cell_id: str) -> CellRecord:
        """A finished cell's record; RecordError (one line naming the file) when it is damaged."""
        return read_cell(self.cell_path(cell_id))

    def load_cells(self) -> list[CellRecord]:
        """Finished cells, in the order of the run's plan (cells not in the plan last, by name). A damaged
        record is left out with a warning naming it, so one bad file never hides the rest of the run."""
        from fewshot_bench.console import warn

        order = {entry["cell"]: i for i, entry in enumerate(self.load_plan())}
        paths = sorted((self.root / "cells").glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.name))
        cells = []
        for path in paths:
            try:
                cells.append(read_cell(path))
            except RecordError as exc:
                warn(f"{exc}; left out")
        return cells

    def quarantine(self, cell_id: str) -> Path:
        """Move a damaged cell record aside (``cells/<cell>.json.damaged``) so the cell is computed again."""
        path = self.cell_path(cell_id)
        target = path.with_name(path.name + ".damaged")
        os.replace(path, target)
        return target

    def write_tables(self, cells: Iterable[CellRecord]) -> list[SummaryRow]:
        """Write accuracies.csv and summary.csv from the cells; return the summary rows."""
        cells = list(cells)
        long = io.StringIO()
        writer = csv.writer(long, lineterminator="\n")
        writer.writerow(["label", "method", "dataset", "split", "way", "shot", "query", "seed", "episode", "accuracy"])
        for cell in cells:
            for i, accuracy in enumerate(cell["accuracies"]):
                writer.writerow([cell["label"], cell["method"], cell["dataset"], cell["split"], cell["way"],
                                 cell["shot"], cell["query"], cell["seed"], i, f"{accuracy:.6f}"])
        atomic_write_text(self.root / "accuracies.csv", long.getvalue())
        full = _aggregate_cells(cells)
        rows: list[SummaryRow] = [{key: row[key] for key in SummaryRow.__annotations__} for row in full]  # type: ignore
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(SummaryRow.__annotations__), lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.root / "summary.csv", out.getvalue())
        atomic_write_text(self.root / "summary.json", summary_json(self.run_id, full))
        return rows


def summary_json(run_id: str, rows: list[dict[str, Any]]) -> str:
    """summary.json: each setting of the run with its mean, both intervals (and how they are computed), n,
    seeds, and what makes it traceable (settings hash, code versions, commits, test episodes' sha)."""
    from fewshot_bench.stats import CI_FORMULA, SEED_CI_FORMULA

    keys = (*SummaryRow.__annotations__, "settings_hash", "method_version", "git_commit", "test_episodes_sha",
            "train_way", "train_query", "lr", "device", "torch", "fewshot_bench", "timestamp")
    settings = [{key: (None if isinstance(row.get(key), float) and not np.isfinite(row[key]) else row.get(key))
                 for key in keys} for row in rows]
    for setting in settings:
        setting["code_versions"] = setting.pop("method_version")
    document = {"run": run_id, "intervals": {"ci95": CI_FORMULA, "seed_ci95": SEED_CI_FORMULA},
                "settings": settings}
    return json.dumps(document, indent=1) + "\n"


def _aggregate_cells(cells: list[CellRecord]) -> list[dict[str, Any]]:
    from fewshot_bench.results.frames import aggregate, cells_frame

    return aggregate(cells_frame(cells), SUMMARY_KEYS) if cells else []


CELL_KEYS = ("label", "method", "way", "shot", "query", "seed", "accuracies")


def read_cell(path: Path) -> CellRecord:
    """A cell record from ``path``, checked: valid JSON, the keys tables need, accuracies in [0, 1]."""
    fix = "delete it (or move it away) and continue the run with --resume to compute the cell again"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"cell record '{path}' is unreadable ({type(exc).__name__}); {fix}") from None
    missing = [key for key in CELL_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise RecordError(f"cell record '{path}' lacks {', '.join(missing)}; {fix}")
    accuracies = record["accuracies"]
    if (not isinstance(accuracies, list) or not accuracies
            or not all(isinstance(a, (int, float)) and 0.0 <= a <= 1.0 for a in accuracies)):
        raise RecordError(f"cell record '{path}' holds accuracies outside [0, 1] (or none); {fix}")
    return record


# The numerics (device kind, precision) are part of a result's identity: seeds are never pooled across them.
SUMMARY_KEYS = ("label", "dataset", "split", "way", "shot", "query", "device_kind", "precision")


def summary_rows(cells: Iterable[CellRecord]) -> list[SummaryRow]:
    """One row per (variant, dataset, split, way, shot, query, device kind, precision), seeds pooled, in
    first-seen order (the aggregator of ``frames``, as for the leaderboard)."""
    return [{key: row[key] for key in SummaryRow.__annotations__} for row in _aggregate_cells(list(cells))]  # type: ignore


class CellCheckpoint:
    """The training state of one cell while it trains, then its final weights (``checkpoints/<cell>.pt``)."""

    def __init__(self, path: Path, code_version: str | None = None) -> None:
        self.path = path
        # The code version of the cell now: a checkpoint written by other code is not resumed from, so one
        # cell's numbers never mix two versions of its method.
        self.code_version = code_version

    def load(self) -> dict[str, Any] | None:
        """The saved training state, or None when there is none (or only a finished cell's final weights);
        an unreadable checkpoint, or one written by other code, costs the cell's progress, never the run."""
        import torch

        from fewshot_bench.console import warn

        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            warn(f"checkpoint '{self.path}' is unreadable ({type(exc).__name__}); the cell restarts from scratch")
            return None
        if "optimiser" not in state:
            return None
        saved_version = state.get("code_version")
        if self.code_version is not None and saved_version is not None and saved_version != self.code_version:
            warn(f"checkpoint '{self.path}' was written by other code ({saved_version}; now {self.code_version}); "
                 "the cell restarts from scratch")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save({**state, "code_version": self.code_version}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def save_final(self, model_state: dict[str, Any]) -> None:
        self.save({"model": model_state})

"""The run store: one folder per run, every file written atomically.

Layout of ``results/runs/<run-id>/``::

    config.yaml            merged configuration (enough to rerun the run), its checksum in the first line
    environment.json       versions, device, git commit, host, start time
    episodes/<setting>.npz the fixed test episodes of each setting (class ids + item indices)
    plan.json              every cell planned into the folder (id, label, shot, seed)
    cells/<cell>.json      one finished cell: variant, setting, seed, per-episode accuracies, timings, and the
                           checksum of all that; verified on every read (``read_cell``)
    claims/<cell>.claim    the process computing the cell (host, pid, its start time, Slurm job)
    pretrained/<key>.pt    backbones pre-trained by the supervised stage, shared by the cells of one key
    accuracies.csv         every test episode of every cell (long format)
    summary.csv            one row per (variant, setting, device kind, precision): mean, ci95 (episodes),
                           seed_ci95 (seeds), std, ...
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, TypedDict

import numpy as np

from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.errors import RecordError
from fewshot_bench.fileio import atomic_write_bytes, atomic_write_text, locked
from fewshot_bench.results.provenance import git_state


def environment_info(device: str) -> dict[str, Any]:
    """Versions, device and git commit, saved with every run."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from fewshot_bench import __version__

    try:  # read from the metadata: importing torchvision pulls in torch._dynamo (seconds per process)
        torchvision_version = version("torchvision")
    except PackageNotFoundError:
        torchvision_version = None

    info: dict[str, Any] = {
        "fewshot_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version,
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


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` is a process of this machine that exists and is not a zombie (ended, not yet reaped); the
    one liveness check of claims, running markers and the launcher's workers."""
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process
    that got the same pid; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _create_whole(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, atomically and only if it does not exist (a hard link of a complete
    temporary file); False when it exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive creation, then the content
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return True
    finally:
        os.unlink(tmp)


def _claim_holder(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(who holds a claim, why it is stale or None): a claim is stale when it is empty, unreadable or no
    claim at all (no host and pid), or when its process, on this host, has ended or its pid now belongs to a
    process that started later. Claims of other hosts are never stale: their processes cannot be checked."""
    try:
        holder = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        holder = None
    if not isinstance(holder, dict) or not isinstance(holder.get("host"), str) or not _is_int(holder.get("pid")):
        return None, "is empty or damaged (no host and pid of a holder)" if data.strip() else "is empty"
    if holder["host"] != socket.gethostname():
        return holder, None
    if not pid_alive(holder["pid"]):
        return holder, f"was left by process {holder['pid']}, which has ended"
    started = holder.get("start")
    if _is_int(started) and _process_start(holder["pid"]) not in (None, started):
        return holder, f"was left by process {holder['pid']}, which has ended (its pid is now another process's)"
    return holder, None


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
    class_ci95: dict[str, float]   # 95% CI of each class's accuracy over its test episodes; older records lack it
    test_episodes_file: str
    test_episodes_sha: str
    settings: dict[str, Any]       # the result-affecting settings (config keys of role "result", resolved)
    settings_hash: str
    numerics: dict[str, str]       # device_kind and precision (results.numerics); older records derive it
    dedup: bool | None
    near_dedup: dict[str, Any] | None  # what --near-dedup removed (threshold, counts), or None
    group_leak: dict[str, Any] | None  # support/query pairs of the test episodes sharing a group or sub-group
    checksum: str                  # sha256 of the rest of the record, as written (``seal``); older records lack it
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
        """Save the run's config (YAML) with a checksum line, so a file cut short or edited is recognised."""
        from fewshot_bench.config import seal_config

        atomic_write_text(self.root / "config.yaml", seal_config(text))

    def save_environment(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.root / "environment.json", json.dumps(info, indent=2) + "\n")

    def episodes_path(self, setting: str) -> Path:
        return self.root / "episodes" / f"{setting}.npz"

    def save_episodes(self, setting: str, episodes: EpisodeSet) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, class_ids=episodes.class_ids, support=episodes.support, query=episodes.query)
        atomic_write_bytes(self.episodes_path(setting), buffer.getvalue())

    def load_episodes(self, setting: str) -> EpisodeSet:
        """The saved test episodes of ``setting``; a damaged file is a RecordError naming it (never a pickle
        read: the arrays are loaded with allow_pickle off)."""
        path = self.episodes_path(setting)
        fix = "restore it from a copy, or delete it: the run draws the same episodes again from its seed"
        try:
            with np.load(path, allow_pickle=False) as data:
                episodes = EpisodeSet(data["class_ids"], data["support"], data["query"])
        except FileNotFoundError:
            raise
        except Exception as exc:  # zip, npy header, pickle refused, missing array: all mean a damaged file
            raise RecordError(f"test episodes file '{path}' is damaged ({type(exc).__name__}); {fix}") from None
        if not all(a.dtype.kind in "iu" and a.ndim == 2 for a in (episodes.class_ids, episodes.support, episodes.query)) \
                or len({len(episodes.class_ids), len(episodes.support), len(episodes.query)}) != 1:
            raise RecordError(f"test episodes file '{path}' is damaged (arrays of the wrong type or length); {fix}")
        return episodes

    def cell_path(self, cell_id: str) -> Path:
        return self.root / "cells" / f"{cell_id}.json"

    def has_cell(self, cell_id: str) -> bool:
        return self.cell_path(cell_id).exists()

    def save_cell(self, cell_id: str, record: CellRecord) -> None:
        """Store a finished cell, sealed with its checksum (``seal``)."""
        atomic_write_text(self.cell_path(cell_id), json.dumps(seal(record), indent=1) + "\n")

    def context_path(self, context_id: str) -> Path:
        return self.root / "context" / f"{context_id}.json"

    def save_context(self, context_id: str, record: dict[str, Any]) -> None:
        """Store a context row (``fewshot_bench.context``) apart from the cells, sealed like them."""
        path = self.context_path(context_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(seal(record), indent=1) + "\n")

    def load_context(self, quiet: bool = False) -> list[dict[str, Any]]:
        """The run's context rows that verify (checksum, shape); one that does not is left out with a warning
        naming it (``quiet``: without), like a damaged cell."""
        from fewshot_bench.console import warn

        rows = []
        for path in sorted((self.root / "context").glob("*.json")):
            try:
                rows.append(read_context(path))
            except RecordError as exc:
                if not quiet:
                    warn(f"{exc}; left out")
        # Floors before ceilings, and the rawest floor (pixels) first.
        return sorted(rows, key=lambda r: (r["context"] != "floor", r.get("backbone") != "pixels"))

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
        fix = f"delete it and run `bench run --resume {self.run_id}`, which plans the cells again"
        try:
            plan = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordError(f"'{path}' is damaged ({type(exc).__name__}); {fix}") from None
        if not isinstance(plan, list):
            raise RecordError(f"'{path}' is damaged (not a list of cells); {fix}")
        for i, entry in enumerate(plan):
            problem = _plan_entry_problem(entry)
            if problem:
                raise RecordError(f"'{path}' is damaged (entry {i + 1}: {problem}); {fix}")
        return plan

    def mark_running(self, cell_id: str, **info: Any) -> None:
        """Note that this process works on the cell (host, pid, time; a Slurm job id when there is one)."""
        record = {"state": "running", "host": socket.gethostname(), "pid": os.getpid(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  # The array task's id (1234_5), as squeue and scancel name it; `slurm` says squeue knows it.
                  "job": _job_id() or os.environ.get("SUBMITIT_LOCAL_JOB_ID"), "slurm": _job_id() is not None,
                  **info}
        atomic_write_text(self.root / "state" / f"{cell_id}.json", json.dumps(record) + "\n")

    def mark_failed(self, cell_id: str, error: str, **info: Any) -> None:
        record = {"state": "failed", "error": error, "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "log": os.environ.get("FEWSHOT_BENCH_JOB_LOG"), **info}
        atomic_write_text(self.root / "state" / f"{cell_id}.json", json.dumps(record) + "\n")

    def claim(self, cell_id: str) -> bool:
        """Atomically take ``cell_id`` for this process; False when another live process holds it.

        A claim is a file naming its holder (host, pid, the pid's start time, Slurm job), created whole with
        a hard link, so of several workers sharing the store exactly one wins and no reader ever sees it
        half-written. A stale claim is taken over with a warning naming it: one left by a dead process of
        this host (or by a process whose pid now belongs to another), and an empty, unreadable or foreign
        file, which no process of bench wrote. A claim of a live process, or of another host (whose
        processes cannot be checked from here), is respected; a requeued Slurm job takes back its own.
        """
        from fewshot_bench.console import warn

        path = self.root / "claims" / f"{cell_id}.claim"
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
                "job": _job_id()}
        for _ in range(3):
            if _create_whole(path, (json.dumps(mine) + "\n").encode()):
                return True
            try:
                seen = path.read_bytes()
            except FileNotFoundError:
                continue  # released meanwhile: try again
            holder, stale = _claim_holder(seen)
            if holder is not None and holder.get("host") == mine["host"] and holder.get("pid") == mine["pid"]:
                return True  # this process holds it already: claiming again is harmless
            requeued = holder is not None and holder.get("job") is not None and holder.get("job") == mine["job"]
            if stale is None and not requeued:
                return False
            # Move the stale file aside (one contender can); if what was moved is not what was judged stale (a
            # fresh claim was made meanwhile), it is put back and the loop looks again.
            aside = path.with_name(f".{path.name}.stale-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            if aside.read_bytes() != seen:
                _create_whole(path, aside.read_bytes())
                aside.unlink(missing_ok=True)
                continue
            aside.unlink(missing_ok=True)
            if stale is not None:
                warn(f"claim file '{path}' {stale}; this process takes the cell over")
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
            holder, _ = _claim_holder(path.read_bytes())
        except OSError:
            holder = None
        if holder is None:
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
        plan = self.load_plan()
        context = RunContext.of(self.root)
        for entry in plan:
            cid = entry["cell"]
            marker = self.root / "state" / f"{cid}.json"
            if self.has_cell(cid):
                try:
                    read_cell(self.cell_path(cid), context)
                    state = {"state": "done"}
                except RecordError as exc:  # a damaged record is no result: resume computes the cell again
                    state = {"state": "failed", "error": str(exc)}
            elif marker.exists():
                try:
                    state = json.loads(marker.read_text())
                    # A marker is written by this store (running or failed): anything else is damaged.
                    if not isinstance(state, dict) or state.get("state") not in MARKER_STATES:
                        raise ValueError("not a state marker")
                except (OSError, UnicodeDecodeError, ValueError):
                    state = {"state": "interrupted", "error": f"state file {marker} is damaged; --resume runs the cell"}
                if state["state"] == "running" and state.get("host") == socket.gethostname() \
                        and not pid_alive(state.get("pid")):
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
        """A finished cell's record, verified (``read_cell``); RecordError (one line naming the file) when it
        does not verify."""
        return read_cell(self.cell_path(cell_id), RunContext.of(self.root))

    def load_cells(self, quiet: bool = False) -> list[CellRecord]:
        """Finished cells that verify (``read_cell``), in the order of the run's plan (cells not in the plan
        last, by name). A record that does not verify is left out with a warning naming it (``quiet``: without),
        so one bad file never hides, or crashes, the rest of the run."""
        from fewshot_bench.console import warn

        context = RunContext.of(self.root)
        if not quiet:
            for problem in context.problems:
                warn(problem)
        order = {cid: i for i, cid in enumerate(context.plan or {})}
        paths = sorted((self.root / "cells").glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.name))
        cells = []
        for path in paths:
            try:
                cells.append(read_cell(path, context))
            except RecordError as exc:
                if not quiet:
                    warn(f"{exc}; left out")
        return cells

    def quarantine(self, cell_id: str) -> Path:
        """Move a damaged cell record aside (``cells/<cell>.json.damaged``) so the cell is computed again."""
        path = self.cell_path(cell_id)
        target = path.with_name(path.name + ".damaged")
        os.replace(path, target)
        return target

    def write_tables(self, cells: Iterable[CellRecord] | None = None) -> list[SummaryRow]:
        """Write accuracies.csv, summary.csv and summary.json from every verified cell of the run; return the
        summary rows.

        Several processes may finish cells of one run at once (each adding its methods): the tables are
        written under a lock and from the cells read inside it, so the last writer's tables hold every cell
        stored before it, and no variant is dropped. ``cells`` (a snapshot the caller read before the lock)
        is accepted for compatibility only: the records on disk are the truth."""
        with locked(self.root / "summary.csv"):
            return self._write_tables(self.load_cells(quiet=True))

    def _write_tables(self, cells: list[CellRecord]) -> list[SummaryRow]:
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
# The states a marker in state/ may hold (``mark_running``, ``mark_failed``).
MARKER_STATES = ("running", "failed")
# Fields a record need not have (older versions lacked them) but that must have these types when present.
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "cell": (str,), "dataset": (str,), "split": (str,), "backbone": (str,), "settings_hash": (str,),
    "test_episodes_sha": (str,), "code_version": (str,), "finished": (str,), "device": (str,),
    "options": (dict,), "settings": (dict,), "train_episodes": (int,), "params": (int,), "train_way": (int,),
    "train_query": (int,), "train_seconds": (int, float), "eval_seconds": (int, float), "mean": (int, float),
}
# How far a record's mean may sit from its accuracies' (percent): it was computed in float32.
_MEAN_TOLERANCE = 1e-4


def seal(record: CellRecord | dict[str, Any]) -> dict[str, Any]:
    """``record`` with its checksum: ``sha256:`` and the hex sha256 of the canonical JSON of every other field
    (keys sorted, no spaces) — computed on the record as JSON will read it back, so it verifies on any
    machine. A checksum it already has is replaced."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != "checksum"}))
    return {**body, "checksum": _checksum(body)}


def seen_records(cells: Iterable[CellRecord]) -> list[dict[str, Any]]:
    """Each cell with a ``seen`` block (the ``evaluate_seen`` stage) as a context record of its own, labelled
    ``seen: <variant>``, ready for the aggregator like a floor or ceiling row."""
    return [{**cell, "kind": "context", "context": "seen", "label": f"seen: {cell['label']}",
             "accuracies": cell["seen"]["accuracies"], "test_episodes_sha": None,
             "episodes_sha": cell["seen"]["episodes_sha"]}
            for cell in cells if isinstance(cell.get("seen"), dict)]


def with_context_fields(rows: list[dict[str, Any]], records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregated context ``rows`` (of ``records``) with each one's ``context`` kind and ``balanced_accuracy``: the
    mean over its ceiling records' seeds, None for other kinds (tables and the leaderboard alike)."""
    records = list(records)
    kinds = {r["label"]: r["context"] for r in records}
    balanced: dict[tuple, list[float]] = {}
    for r in records:
        if r["context"] == "ceiling":
            balanced.setdefault((r["label"], r["dataset"], r["way"], r["shot"], r["query"]), []).append(
                float(r["ceiling"]["balanced_accuracy"]))
    for row in rows:
        values = balanced.get((row["label"], row["dataset"], row["way"], row["shot"], row["query"]))
        row.update(context=kinds[row["label"]], balanced_accuracy=float(np.mean(values)) if values else None)
    return rows


CONTEXT_KEYS = ("context", "label", "way", "shot", "query", "seed", "accuracies", "mean")


def read_context(path: Path) -> dict[str, Any]:
    """A context row as stored, verified: readable JSON, its checksum, its keys and accuracies in [0, 1] whose mean
    is ``mean``; a RecordError naming the file and the fix otherwise."""
    fix = "delete it; `bench run --resume` computes it again"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"context row '{path}' is damaged ({type(exc).__name__}); {fix}") from None
    if not isinstance(record, dict) or record.get("kind") != "context":
        raise RecordError(f"context row '{path}' is not one (no kind: context); {fix}")
    body = {k: v for k, v in record.items() if k != "checksum"}
    if record.get("checksum") != _checksum(body):
        raise RecordError(f"context row '{path}' does not match its checksum (edited or torn); {fix}")
    missing = [key for key in CONTEXT_KEYS if key not in record]
    accuracies = record.get("accuracies")
    if missing or not isinstance(accuracies, list) or not accuracies or not all(
            isinstance(a, (int, float)) and 0 <= a <= 1 for a in accuracies):
        raise RecordError(f"context row '{path}' lacks {', '.join(missing) or 'accuracies in [0, 1]'}; {fix}")
    if abs(float(np.mean(accuracies)) * 100 - float(record["mean"])) > _MEAN_TOLERANCE:
        raise RecordError(f"context row '{path}' has a mean that is not its accuracies'; {fix}")
    return record


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class RunContext:
    """What a run folder says a cell record must agree with: its config (test episodes, way, query, grid,
    result settings) and its plan. Either may be missing (older runs, or folders built by hand); what is
    missing is not checked. ``problems`` lists, in one line each, the files that could not be read."""

    config: dict[str, Any] | None = None
    plan: dict[str, dict[str, Any]] | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, root: Path) -> "RunContext":
        from fewshot_bench.config import check_saved_config
        from fewshot_bench.errors import ConfigError

        config, plan, problems = None, None, []
        if (root / "config.yaml").is_file():
            try:
                config = check_saved_config(root / "config.yaml")
            except ConfigError as exc:
                problems.append(f"{exc}; the run's cells are checked against their own records only")
            except OSError as exc:
                problems.append(f"run config '{root / 'config.yaml'}' is unreadable ({exc.strerror})")
        try:
            plan = {entry["cell"]: entry for entry in RunStore(root).load_plan()} if (root / "plan.json").is_file() \
                else None
        except RecordError as exc:
            problems.append(f"{exc}; the run's cells are checked without it")
        return cls(config, plan, tuple(problems))


def _is_int(value: Any, minimum: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def _plan_entry_problem(entry: Any) -> str | None:
    """What is wrong with one entry of plan.json (a dict of cell, label, shot, seed), or None."""
    if not isinstance(entry, dict):
        return "not a mapping"
    if not isinstance(entry.get("cell"), str) or not entry["cell"]:
        return "no cell id"
    if not isinstance(entry.get("label"), str) or not entry["label"].strip():
        return f"cell {entry['cell']} has no label"
    if not _is_int(entry.get("shot"), 1) or not _is_int(entry.get("seed"), 0):
        return f"cell {entry['cell']} has no whole shot >= 1 and seed >= 0"
    return _cell_id_problem(entry["cell"], entry["label"], shot=entry["shot"], seed=entry["seed"])


def _cell_id_problem(cid: str, label: str, **numbers: Any) -> str | None:
    """Whether the cell id ``cid`` (``engine.runner.cell_id``) names ``label`` and ``numbers`` (way, shot,
    query, seed); ids of another shape (written by hand, or by tests) are not checked."""
    from fewshot_bench.config import CELL_ID_SHAPE

    match = CELL_ID_SHAPE.match(cid)
    if match is None:
        return None
    if match["digest"] != hashlib.sha256(label.encode()).hexdigest()[:6] \
            or match["slug"] != re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-"):
        return f"cell id {cid} is not that of the label {label!r}"
    for key, value in numbers.items():
        if int(match[key]) != value:
            return f"cell id {cid} says {key} {match[key]}, the record {value!r}"
    return None


def _record_problem(record: Any, path: Path, context: RunContext) -> str | None:
    """What makes ``record`` (read from ``path``, its checksum removed) no result, or None: the schema of
    types and ranges, its own consistency, and its agreement with the run's config and plan."""
    if not isinstance(record, dict):
        return "is not a mapping"
    missing = [key for key in CELL_KEYS if key not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in ("label", "method"):
        if not isinstance(record[key], str) or not record[key].strip():
            return f"has no {key} (got {record[key]!r})"
    for key, minimum in (("way", 2), ("shot", 1), ("query", 1), ("seed", 0)):
        if not _is_int(record[key], minimum):
            return f"has {key} {record[key]!r}, not a whole number >= {minimum}"
    for key, kinds in _OPTIONAL_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"has {key} {value!r} of the wrong type"
    accuracies = record["accuracies"]
    if (not isinstance(accuracies, list) or not accuracies
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0.0 <= a <= 1.0 for a in accuracies)):
        return "holds accuracies outside [0, 1] (or none)"
    mean = record.get("mean")
    if mean is not None and not (math.isfinite(mean) and abs(mean - 100 * float(np.mean(accuracies))) <= _MEAN_TOLERANCE):
        return f"has mean {mean!r}, but its accuracies average {100 * float(np.mean(accuracies)):.4f}"
    settings = record.get("settings")
    # The hash is computable where the settings are the full set it was computed from (``runner.result_settings``,
    # which always holds the data's fingerprint); partial settings (records built by hand) are not checked.
    if settings is not None and "data_fingerprint" in settings and record.get("settings_hash") is not None:
        computed = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
        if computed != record["settings_hash"]:
            return f"has settings hash {record['settings_hash']}, but its settings hash to {computed}"
    if settings is not None:
        for key in ("way", "query"):
            if key in settings and settings[key] != record[key]:
                return f"says {key} {record[key]}, its settings {settings[key]!r}"
    cid = record.get("cell")
    if cid is not None and cid != path.stem:
        return f"is the record of cell {cid}, not of {path.stem}"
    problem = _cell_id_problem(cid or path.stem, record["label"], way=record["way"], shot=record["shot"],
                               query=record["query"], seed=record["seed"])
    if problem:
        return problem
    config = context.config
    expected = (config or {}).get("test_episodes", (settings or {}).get("test_episodes"))
    if _is_int(expected) and len(accuracies) != expected:
        return f"holds {len(accuracies)} test episodes, the run {expected}"
    if config is not None:
        for key in ("way", "query"):
            if key in config and config[key] != record[key]:
                return f"says {key} {record[key]}, the run's config {config[key]!r}"
        for key, grid in (("shot", "shots"), ("seed", "seeds")):
            if isinstance(config.get(grid), list) and record[key] not in config[grid]:
                return f"says {key} {record[key]}, not one of the run's {grid} {config[grid]}"
        for key, value in (settings or {}).items():
            if key in config and key not in ("split", "data_root") and config[key] != value:
                return f"was computed with {key}={value!r}, the run's config says {config[key]!r}"
    entry = (context.plan or {}).get(cid or path.stem)
    if entry is not None:
        for key in ("label", "shot", "seed"):
            if entry.get(key) != record[key]:
                return f"says {key} {record[key]!r}, the run's plan {entry.get(key)!r}"
    return None


def read_cell(path: Path, context: RunContext | None = None) -> CellRecord:
    """A cell record from ``path``, verified: valid JSON; its checksum, when it has one (records written
    before checksums existed have none), matches; the schema (types and ranges of the keys tables need,
    accuracies in [0, 1], one per test episode of the run, the mean theirs); the cell id, the run's config
    (way, query, grid, result settings and their hash) and plan agree with it (``context``: the run folder's,
    read from ``path`` when not given). Anything else is a RecordError naming the file and what is wrong;
    the record is returned without its checksum."""
    fix = "delete it (or move it away) and continue the run with --resume to compute the cell again"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"cell record '{path}' is unreadable ({type(exc).__name__}); {fix}") from None
    if isinstance(record, dict) and "checksum" in record:
        recorded = record.pop("checksum")
        if recorded != _checksum(record):
            raise RecordError(f"cell record '{path}' does not match its checksum (edited or damaged after it was "
                              f"written); {fix}")
    problem = _record_problem(record, path, context if context is not None else RunContext.of(path.parent.parent))
    if problem:
        raise RecordError(f"cell record '{path}' {problem}; {fix}")
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
        if not isinstance(state, dict):
            warn(f"checkpoint '{self.path}' is not a training checkpoint ({type(state).__name__}); the cell restarts "
                 "from scratch")
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

    def save_final(self, model_state: dict[str, Any], about: dict[str, Any] | None = None) -> None:
        """The finished cell's weights, with what using them needs (``about``: the variant's label, the image
        shape and the normalisation; see ``engine.reuse``)."""
        self.save({"model": model_state, **({"about": about} if about else {})})

"""Running a grid's cells as jobs through submitit: Slurm job arrays, or local worker processes.

Every job reads the run's saved config, rebuilds the (cached) dataset and protocol, and writes its cells
into the same run store as a sequential run would — atomically, so many machines can share it. A job
that Slurm preempts or times out is requeued by submitit's checkpointing hook and resumes its cell from
the cell's last training checkpoint. A failing cell is marked failed with its error and log, and does not
stop the others.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from fewshot_bench.config import RunConfig, merge
from fewshot_bench.engine.progress import LogLinesObserver
from fewshot_bench.engine.slurm import ACTIVE, JobStates, check_controller, live_jobs, queue_states
from fewshot_bench.errors import BenchError, ConfigError
from fewshot_bench.report import Column, Report, Value
from fewshot_bench.results.store import RunStore, pid_alive

if TYPE_CHECKING:
    from fewshot_bench.engine.runner import RunResult


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm and multi-job launchers need submitit: pip install submitit") from None
    return submitit


class CellsJob:
    """A job running cells of a run: one cell per Slurm array task; for local workers, every pending cell in
    plan order, each worker claiming the next unclaimed one (a shared queue, so no worker idles while
    cells are left)."""

    def __init__(self, run_folder: str, cell_ids: Sequence[str], threads: int | None = None,
                 overrides: dict[str, Any] | None = None, run_pid: int | None = None) -> None:
        self.run_folder = str(run_folder)
        self.cell_ids = list(cell_ids)
        self.threads = threads
        self.overrides = dict(overrides or {})
        # The `bench run` process of local workers: they stop when it is gone (never outlive their run).
        self.run_pid = run_pid

    def __call__(self) -> list[str]:
        """Run the cells; returns the ids of those this job ran."""
        if os.environ.get("SUBMITIT_EXECUTOR") == "local" and threading.current_thread() is threading.main_thread():
            _stop_with_run(self.run_pid)
            try:
                return self._run()
            except KeyboardInterrupt:
                # Stopped by its run (SIGTERM) or because the run is gone: the cell it computed is left
                # interrupted (`--resume` continues it from its checkpoint); exit quietly.
                print("stopped: its run was interrupted or ended; the cell resumes with `bench run --resume`",
                      file=sys.stderr, flush=True)
                raise SystemExit(130) from None
        return self._run()

    def _run(self) -> list[str]:
        from fewshot_bench.engine.runner import CellRunner, plan_cells, run_cells

        submitit = _submitit()
        try:
            os.environ["FEWSHOT_BENCH_JOB_LOG"] = str(submitit.JobEnvironment().paths.stderr)
        except RuntimeError:
            pass  # called outside a submitit job (tests call it directly)
        from fewshot_bench.registry import load_plugin_file

        store = RunStore(Path(self.run_folder))
        config = merge(store.root / "config.yaml", {**({"threads": self.threads} if self.threads else {}),
                                                    **self.overrides})
        for plugin in config.plugins:
            load_plugin_file(plugin)
        cells = {cell.cell_id: cell for cell in plan_cells(config)}
        # A cell another worker failed in this launch is not retried here; the runner's claim keeps workers
        # off each other's cells.
        todo = [cells[cid] for cid in self.cell_ids if not (store.has_cell(cid) or store.failed(cid))]
        computed = ComputedCells(len(todo), config.log_interval)
        failures = run_cells(CellRunner(config, store), todo, computed, skip_failed=True,
                             log_tracebacks=True) if todo else []
        if failures:
            raise RuntimeError("; ".join(failures))
        return computed.cell_ids

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's preemption/timeout hook: requeue the same job; cells resume from their checkpoints."""
        return _submitit().helpers.DelayedSubmission(CellsJob(self.run_folder, self.cell_ids, self.threads,
                                                              self.overrides, self.run_pid))


def _stop_with_run(run_pid: int | None) -> None:
    """In a local worker: SIGTERM (from its run, directly or through submitit's controller, which forwards it)
    stops the worker at once, as KeyboardInterrupt in its main thread; submitit's own handler would ignore it
    ("Bypassing signal SIGTERM", right for Slurm, whose SIGTERM precedes a requeue). Repeats are ignored, so
    the cell's cleanup is not cut short. A watcher thread stops the worker the same way when its run process
    or its controller is gone (a killed run), and ends it if that does not stop it within seconds."""
    stopping: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    controller = os.getppid()

    def watch() -> None:
        while os.getppid() == controller and (run_pid is None or pid_alive(run_pid)):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(130)

    threading.Thread(target=watch, name="fewshot-bench-run-watch", daemon=True).start()


class ComputedCells(LogLinesObserver):
    """A job worker's observer: progress lines into the job's log, and the cells this process computed (not
    those it found finished)."""

    def __init__(self, total_cells: int, log_interval: int) -> None:
        super().__init__(total_cells, log_interval)
        self.cell_ids: list[str] = []

    def cell_finished(self, record: dict[str, Any], skipped: bool) -> None:
        super().cell_finished(record, skipped)
        if not skipped:
            self.cell_ids.append(record["cell"])


def make_executor(config: RunConfig, folder: Path):
    """A submitit executor configured from the run's launcher settings."""
    submitit = _submitit()
    settings = config.slurm
    if config.launcher == "slurm":
        try:
            executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        except RuntimeError as exc:
            raise BenchError(f"cannot submit to Slurm here ({exc}); run bench on a login node of your cluster, "
                             "or use --launcher local") from None
        parameters = {
            "name": f"fsb-{config.run_id}"[:60],
            "timeout_min": settings.get("time_min", 60),
            "slurm_partition": settings.get("partition"),
            "gpus_per_node": settings.get("gpus"),
            "cpus_per_task": settings.get("cpus"),
            "mem_gb": settings.get("mem_gb"),
            "slurm_array_parallelism": settings.get("array_parallelism"),
            "slurm_account": settings.get("account"),
            "slurm_qos": settings.get("qos"),
            "slurm_constraint": settings.get("constraint"),
        }
    else:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="local")
        parameters = {"name": f"fsb-{config.run_id}"[:60], "timeout_min": settings.get("time_min", 24 * 60)}
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    return executor


def require_slurm() -> None:
    """Refuse at once, in one line, where no Slurm job can be submitted: no ``sbatch`` on PATH, or a controller that
    does not answer. Called before the run folder is touched, so a refused run leaves nothing behind."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise BenchError("cannot submit to Slurm here (no `sbatch` on PATH); run bench on a login node of your "
                         "cluster, or use --launcher local")
    check_controller(sbatch)


def submit(config: RunConfig, store: RunStore, cell_ids: Sequence[str]) -> list[Any]:
    """Submit the given cells: one job per cell on Slurm, ``config.jobs`` workers locally."""
    executor = make_executor(config, store.root / "jobs")
    if not cell_ids:
        return []
    if config.launcher == "slurm":
        try:
            # submitit prints sbatch's error output itself: it is kept for the one line below instead.
            with redirect_stderr(io.StringIO()), executor.batch():
                jobs = [executor.submit(CellsJob(str(store.root), [cid])) for cid in cell_ids]
        except Exception as exc:  # sbatch failed, or answered what submitit cannot read: one line, no traceback
            raise BenchError(slurm_failure(exc)) from None
        return jobs
    workers = max(1, min(config.jobs, len(cell_ids)))
    jobs: list[Any] = []
    try:
        with _ctrl_c_deferred():
            _start_local_workers(executor, config, store, cell_ids, workers, jobs)
    except KeyboardInterrupt:  # Ctrl-C (held until the workers were started) or SIGTERM meanwhile
        stop_local_workers(jobs)
        raise
    return jobs


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Start processes with SIGINT blocked, which they inherit (they never see it): Ctrl-C in a terminal
    reaches the whole process group, and submitit's controllers would each print a traceback. A Ctrl-C
    meanwhile is held, not lost: it reaches this process when the block ends, and the run's own handling
    stops the workers (``stop_local_workers``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGTERM is held too (noted by a handler, which the processes started do not inherit): raised amid a
    # start, it would leave a worker running that the run does not know of.
    terms: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terms.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if terms:
            raise KeyboardInterrupt


def _start_local_workers(executor: Any, config: RunConfig, store: RunStore, cell_ids: Sequence[str],
                         workers: int, jobs: list[Any]) -> None:
    """Start ``workers`` local worker processes sharing ``cell_ids``, appending each job to ``jobs`` as it
    starts (so an interruption meanwhile knows which to stop)."""
    # Threads follow the requested --jobs (not how many cells remain), so a resumed cell computes exactly
    # as it would have in the original run.
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, config.jobs))
    gpus = local_gpus(config.device)
    for worker in range(workers):
        overrides: dict[str, Any] = {}
        if gpus:
            # submitit's local executor hides every GPU from its jobs unless told otherwise: each worker sees
            # one GPU (round robin over the visible ones), which is then its "cuda".
            executor.update_parameters(local_setup=[f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpus[worker % len(gpus)])}"])
            if config.device.startswith("cuda"):
                overrides["device"] = "cuda"
        job = CellsJob(str(store.root), cell_ids, threads, overrides)
        job.run_pid = os.getpid()  # the worker stops when this process is gone
        jobs.append(executor.submit(job))


@dataclass
class Submission:
    """A grid handed to job workers: the run, its cells, the ones submitted and the submitit jobs."""

    config: RunConfig
    store: RunStore
    total: int
    pending: list[str]
    jobs: list[Any]

    @property
    def where(self) -> str:
        return "Slurm" if self.config.launcher == "slurm" else f"{len(self.jobs)} local worker process(es)"


def submit_run(config: RunConfig) -> Submission:
    """Start (or continue) ``config``'s run folder and submit its unfinished cells as jobs; failed and
    interrupted cells are retried."""
    from fewshot_bench.engine.runner import plan_cells, start_run

    if config.launcher == "slurm":
        require_slurm()
    if config.run_id:  # before the run folder is touched (its config, plan and environment are written again)
        store = RunStore(Path(config.output_dir) / config.run_id)
        if config.launcher == "slurm":
            refuse_live_slurm_jobs(store)
        refuse_live_workers(store, [cell.cell_id for cell in plan_cells(config)])
    started = start_run(config)
    pending = unfinished(started.store, [c.cell_id for c in started.cells])
    for cid in pending:
        started.store.clear_state(cid)
    return Submission(started.config, started.store, len(started.cells), pending,
                      submit(started.config, started.store, pending))


def wait_run(submission: Submission, on_poll: Callable[[], None] | None = None) -> "RunResult":
    """Wait for a submission's jobs (calling ``on_poll`` at each poll), then write the run's tables; failed
    jobs are listed in the result."""
    from fewshot_bench.engine.runner import RunResult

    failures = wait(submission.jobs, on_poll, slurm=submission.config.launcher == "slurm")
    if any(kind in submission.config.context for kind in ("floor", "ceiling")):
        from fewshot_bench.context.rows import compute_context
        from fewshot_bench.engine.runner import CellRunner, plan_cells

        # The floor and ceiling rows need no method: this process computes them once the workers are done.
        failures += compute_context(CellRunner(submission.config, submission.store), plan_cells(submission.config))
    summary = submission.store.write_tables()
    return RunResult(submission.store, summary, submission.config, failures)


def execute(config: RunConfig, observer: Any = None, progress: bool = True) -> "RunResult":
    """Run ``config``'s grid the way it asks: in this process (``jobs: 1``, local launcher), or as local
    worker processes or a Slurm array, waiting for them. The one entry point of the CLI and the Python API.

    ``observer`` receives each cell's progress (``engine.runner.RunObserver``); without one, progress goes to the
    package logger as plain lines (a cell's start, its loss every ``log_interval`` episodes, its result), unless
    ``progress=False``. ``logging.getLogger("fewshot_bench")`` decides where those lines go."""
    from fewshot_bench.engine.progress import LogLinesObserver
    from fewshot_bench.engine.runner import plan_cells, run

    if config.launcher == "slurm" or config.jobs > 1:
        return wait_run(submit_run(config))
    if observer is None and progress:
        observer = LogLinesObserver(len(plan_cells(config)), config.log_interval)
    return run(config, observer)


def local_gpus(device: str) -> list[str]:
    """The GPUs (as CUDA_VISIBLE_DEVICES entries) local workers share for a run on ``device``: none for CPU
    and MPS runs, the one named by ``cuda:N``, else every GPU this process sees."""
    import torch

    if device not in ("auto", "cuda") and not device.startswith("cuda:"):
        return []
    if not torch.cuda.is_available():
        if device == "auto":
            return []
        raise ConfigError(f"device '{device}' was requested but CUDA is not available; use --device auto or cpu")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else \
        [str(i) for i in range(torch.cuda.device_count())]
    ids = ids[:torch.cuda.device_count()]
    if device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        if index >= len(ids):
            raise ConfigError(f"device '{device}' does not exist; this machine has {len(ids)} GPU(s)")
        return [ids[index]]
    return ids


def unfinished(store: RunStore, cell_ids: Sequence[str]) -> list[str]:
    """The cells without a usable record; a damaged record is moved aside first, so its cell runs again."""
    from fewshot_bench.errors import RecordError
    from fewshot_bench.console import warn

    pending = []
    for cid in cell_ids:
        if store.has_cell(cid):
            try:
                store.load_cell(cid)
                continue
            except RecordError as exc:
                warn(f"{exc}; moved to {store.quarantine(cid)} and computed again")
        pending.append(cid)
    return pending


def wait(jobs: Sequence[Any], on_poll: Callable[[], None] | None = None, poll_s: float = 1.0,
         slurm: bool = False) -> list[str]:
    """Wait until every job ended, calling ``on_poll`` at each poll (the CLI redraws the cells' states);
    returns one line per failed job. Slurm jobs' states come from ``JobStates`` (squeue where accounting cannot
    say): submitit alone would wait forever for a cancelled job's result where there is no accounting."""
    states = JobStates() if slurm else None
    done: Callable[[Any], bool] = states.done if states else (lambda job: job.done())
    try:
        while not all(done(job) for job in jobs):
            time.sleep(poll_s)
            if on_poll:
                on_poll()
    except KeyboardInterrupt:
        stop_local_workers(jobs)
        raise
    if on_poll:
        on_poll()
    failures = []
    for job in jobs:
        if states is not None:
            # A Slurm job without a result file has none to read (submitit's exception() would wait for it).
            state = states.state(job)
            if states.failed(job) or not job.paths.result_pickle.exists() or _has_exception(job):
                failures.append(f"job {job.job_id} failed (Slurm: {state}); log: {job.paths.stderr}")
        elif job.state in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "INTERRUPTED") or (
                job.done() and _has_exception(job)):
            failures.append(f"job {job.job_id} failed; log: {job.paths.stderr}")
    return failures


def stop_local_workers(jobs: Sequence[Any], grace_s: float = 10.0) -> None:
    """Stop local worker processes and wait until they are gone, so none outlives the run (nor writes into
    it afterwards) and `--resume` finds their cells interrupted. Slurm jobs are left to run: they belong to
    the cluster, and `bench status` follows them.

    Every process started for the jobs (submitit's controllers, the shells of GPU set-ups, the workers) gets
    SIGTERM, again each second (a worker still starting up ignores it); a worker then stops its cell at
    once. What is left after ``grace_s``, or at a second Ctrl-C / SIGTERM meanwhile, is killed."""
    local = [job._process for job in jobs if getattr(job, "_process", None) is not None]
    if not local:
        return
    again: list[int] = []
    with _signals_noted(again):
        known: set[int] = set()
        deadline = time.monotonic() + grace_s
        signalled = 0.0
        while True:
            for process in local:
                process.poll()  # reaps a controller that ended (a zombie is not alive)
            known |= process_tree([p.pid for p in local] + sorted(known))
            alive = {pid for pid in known if pid_alive(pid)}
            now = time.monotonic()
            if not alive or now > deadline + 5:
                break
            kill = again or now >= deadline
            if kill or now - signalled >= 1.0:
                for pid in alive:
                    try:
                        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
                    except (ProcessLookupError, PermissionError):
                        pass
                signalled = now
            time.sleep(0.1)
    for process in local:
        try:
            process.wait(timeout=1)
        except Exception:
            pass


@contextmanager
def _signals_noted(noted: list[int]) -> Iterator[None]:
    """While stopping workers, a second Ctrl-C or SIGTERM is noted (stop at once) rather than raised (which
    would leave them running)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: noted.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process of this machine as pid: (parent pid, command line), from /proc (Linux), else ``ps``;
    empty where neither can be read."""
    table: dict[int, tuple[int, str]] = {}
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            table[int(entry.name)] = (ppid, cmdline)
        return table
    try:
        listing = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "args="], capture_output=True,
                                 text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return table
    for line in listing.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            table[int(fields[0])] = (int(fields[1]), fields[2] if len(fields) > 2 else "")
    return table


def process_tree(roots: Sequence[int]) -> set[int]:
    """``roots`` and all their descendants (those that can be seen: see ``_processes``)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in _processes().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def run_processes(store: RunStore, cell_ids: Sequence[str] | None = None) -> dict[int, str]:
    """Live processes of this machine working for the run (other than this one and its children): holders of
    the claims of ``cell_ids`` (of every cell when None), and submitit controllers and workers of its jobs
    folder."""
    me = os.getpid()
    found: dict[int, str] = {}
    claims = store.root / "claims"
    paths = sorted(claims.glob("*.claim")) if cell_ids is None else [claims / f"{cid}.claim" for cid in cell_ids]
    for path in paths:
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = holder.get("pid") if isinstance(holder, dict) else None
        if isinstance(pid, int) and pid != me and holder.get("host") == socket.gethostname() and pid_alive(pid):
            found[pid] = f"computing {path.name.removesuffix('.claim')}"
    folders = {str(store.root.expanduser().absolute() / "jobs") + os.sep,
               str(store.root.expanduser().resolve() / "jobs") + os.sep}
    for pid, (ppid, cmdline) in _processes().items():
        if pid != me and ppid != me and "submitit" in cmdline and any(f in cmdline for f in folders) \
                and pid_alive(pid):
            found.setdefault(pid, "a worker process")
    return found


def refuse_live_slurm_jobs(store: RunStore) -> None:
    """A Slurm run whose jobs are still queued or running (on any node) is not launched again: its cells
    would be submitted twice, and the new jobs would race the old ones."""
    jobs_folder = store.root / "jobs"
    submitted = [path.name for path in jobs_folder.iterdir() if path.is_dir()] if jobs_folder.is_dir() else []
    live = live_jobs(submitted) if submitted and shutil.which("squeue") else []
    if live:
        arrays = " ".join(sorted({job.split("_")[0] for job in live}))
        raise BenchError(f"run '{store.run_id}' still has Slurm jobs queued or running ({', '.join(live)}); wait for "
                         f"them (`squeue`) or cancel them (`scancel {arrays}`), then run it again")


def refuse_live_workers(store: RunStore, cell_ids: Sequence[str]) -> None:
    """A run whose cells live processes of this machine still compute (a run not yet stopped, or another
    launch of it) is not launched again: that would clear their markers and race their cells."""
    live = run_processes(store, cell_ids)
    if live:
        listing = ", ".join(f"pid {pid} ({what})" for pid, what in sorted(live.items()))
        raise BenchError(f"run '{store.run_id}' is still being computed by {listing}; wait for them to end or stop "
                         f"them (kill {' '.join(str(pid) for pid in sorted(live))}), then run it again")


def slurm_failure(exc: BaseException) -> str:
    """One line for a failed Slurm submission: sbatch's own error line, and what to do."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(exc).__name__)
    if "contact slurm controller" in said.lower() or "connection refused" in said.lower():
        return (f"Slurm's controller cannot be reached ({said}); check the cluster with `sinfo`, or use "
                "--launcher local")
    return (f"Slurm rejected the run's jobs ({said}); check the --slurm-* settings (partition, account, qos, "
            "time, memory) against `sinfo`, or use --launcher local")


def _has_exception(job: Any) -> bool:
    try:
        return job.exception() is not None
    except Exception:
        return True


STATE_STYLE = {"done": "green", "running": "cyan", "failed": "red", "interrupted": "yellow", "pending": "white"}


def _check_remote_jobs(states: dict[str, dict[str, Any]]) -> None:
    """A cell marked running on another machine by a Slurm job: its process cannot be looked up from here, but
    Slurm can say whether the job still runs. One that squeue no longer lists as queued or running (it was
    cancelled, killed with its node, or ran out of time) is interrupted; nothing is changed where squeue
    cannot answer."""
    here = socket.gethostname()
    remote = {cid: state for cid, state in states.items()
              if state["state"] == "running" and state.get("slurm") and state.get("job") and state.get("host") != here}
    if not remote:
        return
    queue = queue_states()
    if queue is None:
        return
    for state in remote.values():
        job = str(state["job"])
        if queue.get(job) not in ACTIVE:
            seen = queue.get(job, "no longer listed")
            state["state"] = "interrupted"
            state["error"] = (f"its Slurm job {job} on {state['host']} is gone ({seen.lower()} in squeue); "
                              "--resume runs the cell")


def status_report(store: RunStore) -> Report:
    """Every planned cell's state (where it runs, or its error and log), with the counts in the title."""
    states = store.cell_states()
    if not states:
        raise BenchError(f"run '{store.run_id}' has no plan.json; it was not started by this version of bench")
    _check_remote_jobs(states)
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state["state"]] = counts.get(state["state"], 0) + 1
    title = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "interrupted", "pending"))
    rows = []
    for cid, state in states.items():
        where = state.get("error") or " ".join(
            str(x) for x in (state.get("host"), f"job {state['job']}" if state.get("job") else "",
                             state.get("since")) if x) if state["state"] != "pending" else ""
        if state["state"] == "failed" and state.get("log"):
            where += f" (log: {state['log']})"
        if state["state"] == "done":
            where = ""
        rows.append([Value({"id": cid, "label": state["label"]}, state["label"]), state["shot"], state["seed"],
                     Value(state["state"], state["state"], style=STATE_STYLE[state["state"]]), where])
    columns = [Column(name) for name in ("cell", "shot", "seed", "state", "where / error")]
    return Report(f"run {store.run_id}: {title}", columns, rows, kind="status",
                  extra={"run": store.run_id, "counts": counts})

"""What bench asks Slurm itself, beside submitit: is the controller up, which jobs of a run are still queued,
and in which state a job is when accounting (``sacct``, submitit's only source) cannot say.

Many clusters, and every single-node Slurm set up without slurmdbd, have no accounting: submitit then
warns "Bypassing sacct error" at each of its polls (sacct adding its own error line) and never learns that
a job was cancelled or killed: it waits for a result file that never comes. Here job states come from the
run's result files and ``squeue`` (which lists a job for ``MinJobAge`` seconds after it ended, 300 by
default), sacct is asked only about a job squeue no longer lists, and its absence is said once.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from fewshot_bench.console import warn
from fewshot_bench.errors import BenchError

# How long a Slurm command may take before bench gives up on it: a controller that is down answers
# `scontrol ping` at once, but a missing slurm.conf makes every Slurm command retry for a minute.
COMMAND_TIMEOUT_S = 10.0
# squeue is asked at most this often while waiting: it queries the controller, which a cluster's users share.
QUEUE_INTERVAL_S = 5.0
# How long a job that Slurm calls COMPLETED may take to show its result file here.
RESULT_DELAY_S = 15.0
# Job states in which a job may still write its cells (squeue's long names).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "PREEMPTED", "UNKNOWN"}
# Ended states that mean the job did not finish its work.
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "INTERRUPTED",
          "REVOKED", "SPECIAL_EXIT", "ENDED"}
SACCT_NOTE = ("Slurm accounting (sacct) is not available here; job states come from squeue and the run folder "
              "(a job that ended more than MinJobAge ago without a result counts as failed)")


def _run(command: Sequence[str]) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of a Slurm command; status None when it did not answer in time."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        said = [part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                for part in (exc.stdout, exc.stderr)]
        return None, said[0], said[1]
    except OSError as exc:
        return 1, "", str(exc)
    return done.returncode, done.stdout, done.stderr


def _first_error(output: str) -> str:
    """The line of a Slurm command's output that says what is wrong: its fatal error (the cause, where the
    lines before it are the steps that led there), else its first error, else a controller found DOWN."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.lstrip().startswith("*")]
    for word in ("fatal", "error", "down"):
        found = next((line for line in lines if word in line.lower()), None)
        if found:
            return found
    return lines[0] if lines else "no output"


def check_controller(sbatch: str) -> None:
    """Refuse, in one line, a submission that cannot reach Slurm's controller: `scontrol ping` of the Slurm
    installation the ``sbatch`` belongs to answers at once, where sbatch itself would retry for many seconds.
    Without a ``scontrol`` beside it there is nothing to ask, and sbatch's own error is reported instead."""
    scontrol = Path(sbatch).with_name("scontrol")
    if not scontrol.is_file():
        return
    status, out, err = _run([str(scontrol), "ping"])
    output = out + err
    if status == 0 and " UP" in output:
        return
    said = (f"no answer from `scontrol ping` within {COMMAND_TIMEOUT_S:.0f} s" if status is None else "") + (
        f"{'; ' if status is None else ''}{_first_error(output)}" if output.strip() else "")
    raise BenchError(f"Slurm's controller cannot be reached ({said}); check the cluster with `sinfo`, and that "
                     "SLURM_CONF (or /etc/slurm/slurm.conf) is its configuration, or use --launcher local")


def queue_states(user: str | None = None) -> dict[str, str] | None:
    """The state of every job of ``user`` (default: this user) that squeue lists, each array task under its
    own id (``1234_5``); None when squeue cannot answer."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    status, output, _ = _run([squeue, "--noheader", "--array", "--states=all", "--user",
                              user or getpass.getuser(), "--format=%i|%T"])
    if status != 0:
        return None
    states = {}
    for line in output.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state:
            states[job_id] = state.strip().upper()
    return states


def live_jobs(job_ids: Sequence[str]) -> list[str]:
    """Those of ``job_ids`` (array tasks ``1234_5``, or whole arrays ``1234``) that squeue lists as queued or
    running; empty when squeue cannot answer (nothing is then known to be live)."""
    states = queue_states() or {}
    wanted = set(job_ids)
    return sorted(job for job, state in states.items()
                  if state in ACTIVE and (job in wanted or job.split("_")[0] in wanted))


class JobStates:
    """Slurm jobs' states while bench waits for them. A job that wrote its result is COMPLETED; else squeue
    says (asked at most every ``interval_s`` for all jobs at once); a job squeue no longer lists is asked of
    accounting, and where there is none it is ENDED: it will never write a result.

    submitit's own watcher is not used: it asks only sacct, and where there is no accounting it warns at each
    poll (with sacct's own error line beside) and never learns that a job was cancelled. The lack of
    accounting is said once, when it matters."""

    def __init__(self, interval_s: float = QUEUE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._queue: dict[str, str] | None = None
        self._asked = float("-inf")
        self._accounted: dict[str, str] = {}
        self._completed: dict[str, float] = {}
        self.noted = False

    def _queue_now(self) -> dict[str, str] | None:
        if time.monotonic() - self._asked >= self.interval_s:
            self._queue, self._asked = queue_states(), time.monotonic()
        return self._queue

    def _accounting(self, job_id: str) -> str | None:
        """The job's final state from sacct; None where accounting does not know it, or cannot answer (said
        once, and then not asked again: it will not answer any better in this wait)."""
        if job_id not in self._accounted and not self.noted:
            sacct = shutil.which("sacct")
            status, output, _ = _run([sacct, "--noheader", "--parsable2", "--allocations", "--format=State",
                                      "--jobs", job_id]) if sacct else (1, "", "")
            if status != 0:
                self.noted = True
                warn(SACCT_NOTE)
                return None
            self._accounted[job_id] = output.split()[0].upper() if output.split() else ""
        return self._accounted.get(job_id) or None

    def state(self, job: Any) -> str:
        """squeue's (or sacct's) name of the job's state, COMPLETED once it wrote its result, ENDED when
        it is gone without one, UNKNOWN while nothing can be asked."""
        if job.paths.result_pickle.exists():
            return "COMPLETED"
        job_id = str(job.job_id)
        queue = self._queue_now()
        if queue is not None and job_id in queue:
            if queue[job_id] == "COMPLETED":
                # Its result file may reach this machine later than Slurm's word (a shared file system's
                # caching): allowed RESULT_DELAY_S, as submitit does.
                seen = self._completed.setdefault(job_id, time.monotonic())
                if time.monotonic() - seen < RESULT_DELAY_S:
                    return "COMPLETING"
            return queue[job_id]
        final = self._accounting(job_id)
        if final is not None:
            return final
        # Not listed by a squeue that answered: it ended (more than MinJobAge ago). squeue not answering (the
        # controller restarting, say): wait for it.
        return "ENDED" if queue is not None else "UNKNOWN"

    def done(self, job: Any) -> bool:
        return self.state(job) not in ACTIVE

    def failed(self, job: Any) -> bool:
        return self.state(job) in FAILED

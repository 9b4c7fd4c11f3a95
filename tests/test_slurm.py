"""A real Slurm (single node, from Debian's packages, no accounting; see slurm_cluster.py): a grid through
`--launcher slurm --wait`, cancelled part way and resumed, ends byte-identical to the local run, without a
flood of submitit's sacct warnings; a `sbatch` without a reachable controller is one line, at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO
from fake_commands import fake_commands
from fewshot_bench.cli.main import main
from fewshot_bench.results.store import RunStore
from inprocess import bench_here
from slurm_cluster import SlurmCluster, SlurmUnavailable, ensure_installed, free_port, start_cluster
from waiting import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux (/proc)")

# Two cells of a tiny grid, one thread each (the last bits of CPU scores depend on the thread count), long
# enough in training (100 episodes, a checkpoint every 4) that a cell is caught between checkpoints.
GRID = ["--methods", "protonet", "--shots", "1,2", "--train-episodes", "100", "--checkpoint-interval", "4",
        "--log-interval", "20", "--query", "3", "--test-episodes", "6", "--dataset-option", "total=300",
        "--dataset-option", "identities=20", "--image-size", "20", "--device", "cpu", "--threads", "1",
        "--context", "none"]
# One CPU per job and one job at a time (the machine may have two cores, shared): the second cell starts
# after the first one's record is written, which is when the test cancels the run.
SLURM = ["--launcher", "slurm", "--wait", "--slurm-cpus", "1", "--slurm-array-parallelism", "1",
         "--slurm-time-min", "10"]


@pytest.fixture(scope="session")
def slurm_installed() -> None:
    try:
        ensure_installed()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def slurm_cluster(slurm_installed) -> SlurmCluster:
    """The session's single-node Slurm, ended (daemons and jobs) after the last test that uses it."""
    try:
        cluster = start_cluster()
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm could be brought up here: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def on_cluster(slurm_cluster, monkeypatch) -> SlurmCluster:
    """This test's `bench` commands (in this process, or started from it) submit to the session's cluster.
    sbatch passes this environment on to the jobs: the checkout, one OpenMP thread, the private cache."""
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_cluster.env[key])
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return slurm_cluster


def _accuracies(folder: Path):
    return {(c["label"], c["shot"], c["seed"]): c["accuracies"] for c in RunStore(folder).load_cells()}


def _one_done_one_computing(folder: Path):
    """(Slurm job id, worker pid) of the second cell once the first cell's record is written and the second
    one is being computed past a checkpoint; None before."""
    store = RunStore(folder)
    if not (folder / "plan.json").exists():
        return None
    cells = [entry["cell"] for entry in store.load_plan()]
    if sum(store.has_cell(cid) for cid in cells) != 1:
        return None
    for cid in cells:
        marker = folder / "state" / f"{cid}.json"
        try:
            state = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if state.get("state") == "running" and (folder / "checkpoints" / f"{cid}.pt").exists():
            return state.get("job"), state.get("pid")
    return None


def _sacct_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "sacct" in line]


def test_a_cancelled_slurm_run_resumes_byte_identical_to_the_local_run(tmp_path, on_cluster, capsys):
    runs = tmp_path / "runs"
    assert bench_here("run", *GRID, "--output-dir", runs, "--run-id", "local") == 0

    # The run to cancel is a process of its own (as a user's terminal would run it), waiting on its jobs.
    folder = runs / "cluster"
    first = subprocess.Popen([sys.executable, "-m", "fewshot_bench", "run", *GRID, *SLURM, "--output-dir", str(runs),
                              "--run-id", "cluster"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job, worker = wait_for(lambda: _one_done_one_computing(folder), "one cell done and the other computing",
                                180, first)
        # Cancelled as a user or an administrator would. Slurm's SIGTERM is ignored by submitit's workers, and
        # its SIGKILL comes seconds later (KillWait), when the cell may have finished: the test kills the
        # worker itself at once (the node is this machine).
        cancel = on_cluster.command("scancel", str(job))
        assert cancel.returncode == 0, cancel.stderr
        os.kill(worker, signal.SIGKILL)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # With no accounting, the waiting run learns from squeue that the job was cancelled (submitit alone would
    # wait for its result file forever), and says how to go on.
    assert first.returncode == 1, out + err
    assert "(Slurm: CANCELLED)" in err and "bench run --resume cluster" in err, out + err
    assert "Traceback" not in out + err
    states = [s["state"] for s in RunStore(folder).cell_states().values()]
    assert sorted(states) == ["done", "interrupted"], states

    capsys.readouterr()
    assert bench_here("run", "--resume", "cluster", "--output-dir", runs, "--wait") == 0
    again = "".join(capsys.readouterr())
    assert "1 of 2 cells submitted to Slurm" in again
    assert (folder / "accuracies.csv").read_bytes() == (runs / "local" / "accuracies.csv").read_bytes()
    assert _accuracies(folder) == _accuracies(runs / "local")
    for output in (out + err, again):
        # Accounting is off: at most one note that states come from squeue, never a warning at every poll.
        assert "Bypassing sacct error" not in output and "accounting storage is disabled" not in output
        assert len(_sacct_lines(output)) <= 1, _sacct_lines(output)


def test_a_resume_while_its_slurm_jobs_are_queued_is_refused(tmp_path, on_cluster, capsys):
    # A job holding the run's only cell for longer than the test: a second launch must not submit it again.
    runs = tmp_path / "runs"
    endless = [*GRID, "--shots", "1", "--train-episodes", "100000"]  # (the last of a repeated flag counts)
    assert bench_here("run", *endless, "--launcher", "slurm", "--slurm-cpus", "1", "--output-dir", runs,
                      "--run-id", "busy") == 0
    out = capsys.readouterr().out
    assert "1 of 1 cells submitted to Slurm" in out, out
    job = out.split("job ids ")[1].split()[0].rstrip(";,")
    try:
        assert bench_here("run", "--resume", "busy", "--output-dir", runs) == 3
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "still has Slurm jobs queued or running" in lines[0] and job in lines[0] \
            and f"scancel {job.split('_')[0]}" in lines[0], lines
    finally:
        on_cluster.command("scancel", job.split("_")[0])


def test_sbatch_without_a_reachable_controller_is_one_line_at_once(tmp_path, monkeypatch, capsys, slurm_installed):
    # A slurm.conf whose controller port nothing listens on: as a login node whose controller is down.
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={free_port()}\n"
                    "NodeName=localhost CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}{os.pathsep}/usr/sbin")
    started = time.monotonic()
    code = main(["run", *GRID, "--launcher", "slurm", "--output-dir", str(tmp_path / "runs"), "--run-id", "down"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1, err
    assert "Slurm's controller cannot be reached" in lines[0] and "DOWN" in lines[0], err
    assert "sinfo" in lines[0] and "--launcher local" in lines[0], err
    assert took < 15, f"took {took:.1f} s"  # sbatch itself retries for about 10 s before it gives up
    assert not (tmp_path / "runs").exists()  # refused before any run folder was written


class _Job:
    """What JobStates reads of a submitit job: its id and where its result file would be."""

    def __init__(self, job_id: str, folder: Path, finished: bool = False) -> None:
        self.job_id = job_id
        self.paths = SimpleNamespace(result_pickle=folder / f"{job_id}_result.pkl")
        if finished:
            self.paths.result_pickle.write_bytes(b"")


def test_job_states_come_from_squeue_and_missing_accounting_is_said_once(tmp_path, monkeypatch, capsys):
    from fewshot_bench.engine.slurm import SACCT_NOTE, JobStates

    listing = ["7_0|COMPLETED", "7_1|RUNNING", "7_2|CANCELLED", "7_3|COMPLETED", "8|PENDING"]
    # sacct as it answers on a cluster without accounting: its error on stderr, exit status 1.
    fake_commands(tmp_path, monkeypatch, squeue="".join(f"echo '{line}'\n" for line in listing),
                  sacct="echo 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    states = JobStates(interval_s=0)
    finished, running, cancelled, queued, gone, also_gone = (
        _Job("7_0", tmp_path, finished=True), _Job("7_1", tmp_path), _Job("7_2", tmp_path), _Job("8", tmp_path),
        _Job("6_0", tmp_path), _Job("5", tmp_path))
    assert [states.state(job) for job in (finished, running, cancelled, queued)] == \
        ["COMPLETED", "RUNNING", "CANCELLED", "PENDING"]
    assert [states.done(job) for job in (finished, running, cancelled, queued)] == [True, False, True, False]
    assert not states.failed(finished) and states.failed(cancelled)
    # Slurm says it completed, but its result file is not here yet (a shared file system's delay): wait for it.
    assert states.state(_Job("7_3", tmp_path)) == "COMPLETING"
    # Ended before squeue's memory (MinJobAge) and no accounting to ask: ended without a result, a failure.
    assert states.state(gone) == "ENDED" and states.failed(gone) and states.state(also_gone) == "ENDED"
    err = capsys.readouterr().err
    assert err.count(SACCT_NOTE) == 1 and "accounting storage is disabled" not in err, err

    # Where there is accounting, it names how a job squeue forgot ended.
    fake_commands(tmp_path, monkeypatch, sacct="echo 'TIMEOUT'\n")
    assert JobStates(interval_s=0).state(gone) == "TIMEOUT"

"""Signals stop everything a run started: `--jobs` workers end with their run (SIGTERM, Ctrl-C once or
twice), nothing of the run writes after it exited, a second launch while its workers live is refused, and
every Slurm failure is one line. Real `bench run` processes, each in its own session, as a terminal or a
scheduler would start them."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from fake_commands import fake_commands
from fewshot_bench.cli.main import main
from waiting import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists() or sys.platform == "win32",
                                reason="reads processes from /proc")

TINY = ["--dataset-option", "total=300", "--dataset-option", "identities=20", "--image-size", "20",
        "--test-episodes", "3", "--threads", "1", "--query", "3", "--device", "cpu"]


def _command(runs, run_id, *extra):
    # Training far longer than any test waits: the run is always stopped mid-cell.
    return [sys.executable, "-m", "fewshot_bench", "run", "--methods", "protonet", "--shots", "1,2",
            "--train-episodes", "100000", "--checkpoint-interval", "20", *TINY, "--output-dir", str(runs),
            "--run-id", run_id, *extra]


def _start(runs, run_id, *extra):
    """`bench run` as a foreground command of its own terminal session (default SIGINT disposition: a
    shell's background job, as CI may start pytest, would ignore it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = runs.parent / f"{run_id}.log"
    runs.mkdir(exist_ok=True)
    with log.open("w") as handle:
        return subprocess.Popen(_command(runs, run_id, *extra), stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _running(folder):
    """pid of each cell a worker marked running."""
    pids = {}
    for marker in (folder / "state").glob("*.json") if (folder / "state").is_dir() else []:
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if record.get("state") == "running":
            pids[marker.stem] = record["pid"]
    return pids


def _both_workers_computing(folder, process):
    """{cell: pid} once both workers of a ``--jobs 2`` run are computing a cell."""
    return wait_for(lambda: len(_running(folder)) == 2 and _running(folder), "both workers computing",
                     process=process)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _processes_of(folder):
    """Live processes whose command line names the run folder (submitit controllers and workers)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return sorted(p.pid for p in psutil.process_iter(["cmdline", "status"])
                      if str(folder) in " ".join(p.info["cmdline"] or []) and p.info["status"] != "zombie")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return sorted(found)


def _files(folder):
    """Every file the run's cells write, with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for sub in ("cells", "state", "claims", "checkpoints", "pretrained") if (folder / sub).is_dir()
            for p in (folder / sub).iterdir()}


def _kill_all(process, folder):
    """Cleanup, also after a failed assertion: nothing of the test's runs is left behind."""
    for pid in [process.pid] * (process.poll() is None) + _processes_of(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


@pytest.mark.parametrize("how", ["sigterm", "sigterm-to-group", "ctrl-c", "ctrl-c-twice"])
def test_a_signal_stops_the_jobs_workers_and_nothing_writes_after_the_run_exited(tmp_path, how):
    runs = tmp_path / "runs"
    process = _start(runs, "stopped", "--jobs", "2")
    folder = runs / "stopped"
    try:
        workers = _both_workers_computing(folder, process)
        started = time.monotonic()
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        elif how == "sigterm-to-group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
            if how == "ctrl-c-twice":  # again as soon as the run is stopping its workers
                logs = folder / "jobs"
                wait_for(lambda: process.poll() is not None or any(
                    "stopped" in p.read_text() for p in logs.rglob("*.err")), "the workers being stopped")
                try:
                    os.killpg(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        code = process.wait(timeout=60)
        elapsed = time.monotonic() - started
        files = _files(folder)
        left = _processes_of(folder) + [pid for pid in workers.values() if _alive(pid)]
        output = (tmp_path / "stopped.log").read_text()
        assert code == 130, output
        assert elapsed < 30, f"the run took {elapsed:.1f} s to stop"
        assert not left, f"processes of the run outlived it: {left}"
        assert "Traceback" not in output and "bench run --resume stopped" in output.strip().splitlines()[-1]
        assert not (folder / "summary.csv").exists()
        time.sleep(3)  # anything still writing for the run would show now
        assert _files(folder) == files, "files of the run were written after it exited"
        worker_logs = " ".join(p.read_text() for p in (folder / "jobs").rglob("*.err"))
        assert "Bypassing signal" not in worker_logs and "Traceback" not in worker_logs
    finally:
        _kill_all(process, folder)


def test_a_launch_while_workers_of_the_run_live_is_refused_naming_them(tmp_path):
    """A second launch of a run whose workers still compute (a run not yet stopped) is refused in one line
    naming them; their running markers are left as they are."""
    runs = tmp_path / "runs"
    process = _start(runs, "busy", "--jobs", "2")
    folder = runs / "busy"
    try:
        workers = _both_workers_computing(folder, process)
        markers = {p.name: p.read_text() for p in (folder / "state").iterdir()}
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        again = subprocess.run([sys.executable, "-m", "fewshot_bench", "run", "--resume", str(folder)],
                               capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 3, again.stdout + again.stderr
        lines = again.stderr.strip().splitlines()
        assert len(lines) == 1 and "is still being computed by" in lines[0], again.stderr
        assert all(f"pid {pid}" in lines[0] for pid in workers.values())
        assert {p.name: p.read_text() for p in (folder / "state").iterdir()} == markers
        assert process.poll() is None and all(_alive(pid) for pid in workers.values())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
        assert not _processes_of(folder)
    finally:
        _kill_all(process, folder)


def test_workers_of_a_killed_run_stop_themselves(tmp_path):
    """SIGKILL cannot be handled by the run: its workers notice it is gone and stop within seconds."""
    runs = tmp_path / "runs"
    process = _start(runs, "killed", "--jobs", "2")
    folder = runs / "killed"
    try:
        _both_workers_computing(folder, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_for(lambda: not _processes_of(folder), "the workers to stop", timeout=30)
    finally:
        _kill_all(process, folder)


SBATCH_ERRORS = {
    "unreachable": ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect "
                    "failure)", "controller cannot be reached"),
    "rejected": ("sbatch: error: Batch job submission failed: Invalid partition name specified",
                 "Slurm rejected the run's jobs"),
}


@pytest.mark.parametrize("case", ["no-sbatch", *SBATCH_ERRORS])
def test_every_slurm_failure_is_one_line(tmp_path, monkeypatch, capsys, case):
    tools = {"srun": "exit 1\n"}  # submitit looks for srun to detect Slurm
    if case != "no-sbatch":
        tools["sbatch"] = f"echo '{SBATCH_ERRORS[case][0]}' >&2\nexit 1\n"
    fake_commands(tmp_path, monkeypatch, only=True, **tools)
    code = main(["run", "--methods", "protonet", "--shots", "1", "--train-episodes", "2", *TINY,
                 "--output-dir", str(tmp_path / "runs"), "--run-id", "slurm", "--launcher", "slurm"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if case == "no-sbatch":
        assert "no `sbatch` on PATH" in err
    else:
        message, meaning = SBATCH_ERRORS[case]
        assert meaning in err and message.removeprefix("sbatch: error: ") in err and "--launcher local" in err

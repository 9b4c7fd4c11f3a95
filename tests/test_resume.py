"""Interrupted runs resume to exactly the numbers of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import REPO, tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import SilentObserver, run
from fewshot_bench.fileio import atomic_write_text
from fewshot_bench.results.store import RunStore
from inprocess import bench_here


class StopAfter(SilentObserver):
    """Interrupts training (like Ctrl-C) once ``limit`` episodes of the current run have been trained."""

    def __init__(self, limit):
        self.limit, self.seen = limit, 0

    def trained(self, episodes, loss):
        self.seen += episodes
        if self.seen >= self.limit:
            raise KeyboardInterrupt


def accuracies(store):
    return {(c["label"], c["shot"], c["seed"]): c["accuracies"] for c in store.load_cells()}


FLAGS = dict(methods=["protonet", "crn"], shots=[1], train_episodes=12, log_interval=2, checkpoint_interval=4,
             test_episodes=8)


def test_interrupted_training_resumes_to_identical_per_episode_accuracies(tmp_path):
    reference = run(merge(None, tiny_run_flags(tmp_path, run_id="straight", **FLAGS)))
    config = merge(None, tiny_run_flags(tmp_path, run_id="interrupted", **FLAGS))
    with pytest.raises(KeyboardInterrupt):
        run(config, StopAfter(7))  # protonet: checkpoint at episode 4, killed at 7
    checkpoints = list((tmp_path / "runs" / "interrupted" / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 1
    with pytest.raises(KeyboardInterrupt):
        run(config, StopAfter(12 - 4 + 9))  # resumes protonet at 4, finishes it, crn killed at 9
    resumed = run(config)
    assert accuracies(resumed.store) == accuracies(reference.store)
    first = resumed.store.load_cells()[0]
    assert first["loss_curve"] == next(c for c in reference.store.load_cells()
                                       if c["label"] == first["label"])["loss_curve"]


def test_atomic_write_leaves_the_previous_file_on_a_crash(tmp_path, monkeypatch):
    target = tmp_path / "cell.json"
    atomic_write_text(target, '{"ok": 1}')

    def crash(*args, **kwargs):
        raise OSError("disk vanished mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_text(target, '{"ok": 2, "half": ')
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]  # no temporary file left behind


def test_sigkill_of_a_real_bench_run_then_resume(tmp_path, straight):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(_tiny_command(tmp_path, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    folder = tmp_path / "runs" / "killed"
    deadline = time.time() + 120
    while time.time() < deadline and not list((folder / "checkpoints").glob("*.pt")):
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "summary.csv").exists(), "the run finished before it could be killed"
    assert bench_here("run", "--resume", "killed", "--output-dir", tmp_path / "runs") == 0  # what it left suffices
    assert accuracies(RunStore(folder)) == straight.accuracies and len(straight.accuracies) == 2


def test_augmented_training_is_reproducible_resumable_and_never_touches_test_episodes(tmp_path):
    flags = dict(FLAGS, methods=["protonet"], augment=True)
    reference = run(merge(None, tiny_run_flags(tmp_path, run_id="aug", **flags)))
    plain = run(merge(None, tiny_run_flags(tmp_path, run_id="plain", **dict(flags, augment=False))))
    config = merge(None, tiny_run_flags(tmp_path, run_id="aug-interrupted", **flags))
    with pytest.raises(KeyboardInterrupt):
        run(config, StopAfter(7))
    resumed = run(config)
    assert accuracies(resumed.store) == accuracies(reference.store)
    assert accuracies(plain.store) != accuracies(reference.store)  # augmentation changed training
    ref, other = reference.store.load_cells()[0], plain.store.load_cells()[0]
    assert ref["test_episodes_sha"] == other["test_episodes_sha"]


def test_augmenter_flips_shifts_and_jitters_deterministically():
    import torch

    from fewshot_bench.episodic.augment import EpisodeAugmenter

    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    a = EpisodeAugmenter(torch.device("cpu"), seed=3)(images)
    b = EpisodeAugmenter(torch.device("cpu"), seed=3)(images)
    assert torch.equal(a, b) and not torch.equal(a, images)
    flip_only = EpisodeAugmenter(torch.device("cpu"), seed=0, max_shift=0.0, jitter=0.0)
    flipped = flip_only(images)
    for i in range(2):
        assert torch.allclose(flipped[i], images[i], atol=1e-4) or torch.allclose(flipped[i], images[i].flip(-1), atol=1e-4)


def test_a_cell_held_by_another_live_process_is_left_to_it(tmp_path, capsys):
    import socket

    flags = tiny_run_flags(tmp_path, shots=[1, 2], methods=["protonet"])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from fewshot_bench.engine.runner import plan_cells

        held = plan_cells(merge(None, flags))[1].cell_id
        claim = tmp_path / "runs" / "tiny" / "claims" / f"{held}.claim"
        claim.parent.mkdir(parents=True)
        claim.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        result = run(merge(None, flags))
        assert [c["shot"] for c in result.store.load_cells()] == [1]
        err = " ".join(capsys.readouterr().err.split())
        assert f"cell {held} is being computed by pid {holder.pid}" in err and "delete" in err
    finally:
        holder.kill()
        holder.wait()
    assert [c["shot"] for c in run(merge(None, flags)).store.load_cells()] == [1, 2]  # the holder is gone


def _tiny_command(tmp_path, run_id, *extra, episodes=60):
    """A seconds-long `bench run` on a tiny synthetic-fer. One CPU thread per process, always (also for each of
    --jobs workers): CPU results depend on the thread count in the last bits, so every run here, the shared
    reference included, computes the same bits; a later flag in ``extra`` overrides an earlier one."""
    return [sys.executable, "-m", "fewshot_bench", "run", "--methods", "protonet", "--shots", "1,2", "--query", "3",
            "--train-episodes", str(episodes), "--log-interval", "10", "--checkpoint-interval", "4",
            "--test-episodes", "8", "--dataset-option", "total=300", "--image-size", "20", "--threads", "1",
            "--output-dir", str(tmp_path / "runs"), "--run-id", run_id, "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted run of ``_tiny_command``, logged to a file as under nohup or Slurm (stderr is a file):
    the numbers every stopped-and-resumed run must reach, and the log the logging test reads."""
    tmp = tmp_path_factory.mktemp("straight")
    log = tmp / "run.log"
    with log.open("w") as handle:
        subprocess.run(_tiny_command(tmp, "straight"), check=True, stdout=handle, stderr=subprocess.STDOUT,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    return SimpleNamespace(accuracies=accuracies(RunStore(tmp / "runs" / "straight")), log=log)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("jobs, ctrl_c", [(1, False), (2, False), (2, True)])
def test_sigterm_and_ctrl_c_stop_a_run_and_resume_finishes_it(tmp_path, straight, jobs, ctrl_c):
    """SIGTERM to the run's process, or Ctrl-C in a terminal (SIGINT to its whole process group, workers
    included): one line, exit 130, no worker left, no traceback from any of them; --resume finishes it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A shell's background job (how CI may start pytest) ignores SIGINT, and children inherit that: start
    # this one as a foreground command would be, with the default disposition.
    # The same thread count as the straight run (one per process, workers included), named rather than left
    # to torch's default (which OMP_NUM_THREADS changes), so the two compute the same bits.
    process = subprocess.Popen(_tiny_command(tmp_path, "stopped", "--jobs", str(jobs)),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    folder = tmp_path / "runs" / "stopped"
    workers: set[int] = set()
    deadline = time.time() + 180
    while time.time() < deadline and not list((folder / "checkpoints").glob("*.pt")):
        for marker in (folder / "state").glob("*.json") if (folder / "state").exists() else []:
            try:
                workers.add(json.loads(marker.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.05)
    if ctrl_c:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    else:
        process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "bench run --resume stopped" in stderr
    assert not [pid for pid in workers if pid != process.pid and _alive(pid)], "a worker outlived its run"
    assert not (folder / "summary.csv").exists(), "the run finished before it could be stopped"
    # The resume (with the run's saved --jobs) needs no process of its own: what the stopped run left suffices.
    assert bench_here("run", "--resume", "stopped", "--output-dir", tmp_path / "runs") == 0
    assert accuracies(RunStore(folder)) == straight.accuracies


def test_a_run_logged_to_a_file_shows_progress_lines_and_quiet_shows_none(tmp_path, straight):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    lines = straight.log.read_text().splitlines()  # as under nohup or Slurm: stderr is a file
    progress = [line for line in lines if "train " in line and "episodes, loss" in line]
    assert len(progress) >= 2 * 6  # every 10 of 60 episodes, in both cells
    assert all(line[:8].count(":") == 2 for line in progress)  # time-stamped HH:MM:SS
    assert any("episodes/s" in line and "left in training" in line for line in progress)
    assert any("protonet 2-shot seed 0:" in line and "±" in line for line in lines)  # the finished cell
    # Long enough that, without -q, it would log progress lines (at 20 episodes) and a line per cell.
    quiet = subprocess.run(_tiny_command(tmp_path, "quiet", "-q", episodes=20), check=True, capture_output=True,
                           text=True, env=env, timeout=300)
    assert quiet.stderr.strip() == "" and "protonet" in quiet.stdout  # the table still comes


def test_verbose_adds_debugging_detail(tmp_path, capsys):
    assert bench_here(*_tiny_command(tmp_path, "verbose", "-v", "--shots", "1", episodes=2)[3:]) == 0
    stderr = capsys.readouterr().err
    assert "debug: run verbose: synthetic-fer" in stderr and "training steps eager" in stderr


@pytest.mark.parametrize("tamper", ["other method", "other code"])
def test_a_checkpoint_that_no_longer_fits_restarts_its_cell_instead_of_failing_forever(tmp_path, capsys, tamper):
    import torch

    flags = dict(FLAGS, methods=["protonet"])
    reference = run(merge(None, tiny_run_flags(tmp_path, run_id="straight", **flags)))
    config = merge(None, tiny_run_flags(tmp_path, run_id="interrupted", **flags))
    with pytest.raises(KeyboardInterrupt):
        run(config, StopAfter(7))
    path = next((tmp_path / "runs" / "interrupted" / "checkpoints").glob("*.pt"))
    state = torch.load(path, weights_only=True)
    if tamper == "other method":  # as if a plugin's layers changed between the kill and the resume
        state["model"] = {f"renamed.{k}": v for k, v in state["model"].items()}
    else:
        state["code_version"] = "code:000000000000"
    torch.save(state, path)
    capsys.readouterr()
    resumed = run(config)
    err = capsys.readouterr().err
    assert ("does not fit the method" if tamper == "other method" else "written by other code") in err
    assert "restarts from scratch" in err and not resumed.failures
    assert accuracies(resumed.store) == accuracies(reference.store)


def test_damaged_plan_and_state_files_are_named_not_tracebacks(tmp_path, capsys):
    from fewshot_bench.cli.main import main

    flags = tiny_run_flags(tmp_path, methods=["protonet"], shots=[1])
    store = run(merge(None, flags)).store
    where = ["--output-dir", str(tmp_path / "runs")]
    (store.root / "state").mkdir(exist_ok=True)
    (store.root / "state" / "ghost.json").write_text("{")  # a marker cut short
    (store.root / "plan.json").write_text('[{"cell": ')
    assert main(["status", "tiny", *where]) == 3
    err = capsys.readouterr().err
    assert "plan.json' is damaged" in err and "bench run --resume tiny" in err and "Traceback" not in err
    assert main(["run", "--resume", "tiny", *where]) == 0  # plans the cells again
    assert "is written again" in capsys.readouterr().err
    plan = json.loads((store.root / "plan.json").read_text())
    (store.root / "plan.json").write_text(json.dumps(plan + [{"cell": "ghost", "label": "x", "shot": 1, "seed": 0}]))
    assert main(["status", "tiny", *where, "--format", "json"]) == 0
    ghost = next(row for row in json.loads(capsys.readouterr().out)["rows"] if row["cell"]["id"] == "ghost")
    assert ghost["state"] == "interrupted" and "is damaged" in ghost["where / error"]


def test_a_jobs_run_logged_to_a_file_shows_cell_counts_and_each_worker_logs_its_progress(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "run.log"
    with log.open("w") as handle:
        subprocess.run(_tiny_command(tmp_path, "workers", "--jobs", "2"), check=True, stdout=handle,
                       stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log.read_text()
    assert "run workers: 2 done, 0 running, 0 failed, 0 interrupted, 0 pending" in text
    worker_logs = " ".join(path.read_text() for path in (tmp_path / "runs" / "workers" / "jobs").rglob("*.err"))
    assert "train 60/60 episodes, loss" in worker_logs and "2-shot seed 0:" in worker_logs

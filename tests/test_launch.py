"""Cells as jobs through submitit: local workers match the sequential runner, survive a killed worker,
report a failing cell without stopping the others; Slurm submissions carry the requested parameters."""

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from fake_commands import fake_commands
from fewshot_bench.cli.main import main
from fewshot_bench.results.store import RunStore
from inprocess import bench_here

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def accuracies(folder: Path):
    return {(c["label"], c["shot"], c["seed"]): c["accuracies"] for c in RunStore(folder).load_cells()}


def bench(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, "-m", "fewshot_bench", *args], capture_output=True, text=True,
                            env=ENV, timeout=600, **kwargs)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


# One CPU thread per process, each worker included: the sequential references use one thread too (CPU float
# reductions, hence the last bits of the scores, depend on the thread count).
TINY = ["--shots", "1,2", "--query", "3", "--test-episodes", "8", "--dataset-option", "total=300",
        "--image-size", "20", "--device", "cpu", "--threads", "1"]


# The runs launching workers run their `bench run` in this process (bench_here: the workers are processes of
# their own either way), as do the sequential references and `bench status`; a run whose plugin file would
# stay registered in this process, or that this test must signal, is a process of its own.


def test_local_jobs_match_the_sequential_run_cell_for_cell(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert bench_here("run", "--methods", "protonet,crn", "--train-episodes", "6", *TINY, "--output-dir", runs,
                      "--run-id", "sequential") == 0
    capsys.readouterr()
    assert bench_here("run", "--methods", "protonet,crn", "--train-episodes", "6", *TINY, "--output-dir", runs,
                      "--run-id", "parallel", "--jobs", "2") == 0
    assert "4 of 4 cells submitted to 2 local worker process(es)" in capsys.readouterr().out
    assert accuracies(runs / "parallel") == accuracies(runs / "sequential")
    assert bench_here("status", "parallel", "--output-dir", runs) == 0
    status = capsys.readouterr().out
    assert "4 done, 0 running, 0 failed, 0 interrupted, 0 pending" in " ".join(status.split())


def test_a_killed_worker_is_reported_and_resumed(tmp_path, capsys, monkeypatch):
    from submitit.local.local import LocalJob

    runs = str(tmp_path / "runs")
    common = ["--methods", "protonet", "--train-episodes", "80", "--log-interval", "2", "--checkpoint-interval", "4",
              *TINY, "--output-dir", runs]
    assert bench_here("run", *common, "--run-id", "straight") == 0
    folder = tmp_path / "runs" / "killed"
    victims: list[int] = []
    run_ended = threading.Event()

    def kill_a_worker_past_its_first_checkpoint():  # while the run goes on in this process's main thread
        deadline = time.time() + 180
        while time.time() < deadline and not run_ended.is_set():
            for marker in (folder / "state").glob("*.json") if (folder / "state").exists() else []:
                cell = marker.stem
                if (folder / "checkpoints" / f"{cell}.pt").exists():
                    victim = json.loads(marker.read_text())["pid"]
                    if victim == os.getpid():  # the cell ran in this process, not in a worker: no victim
                        return
                    os.kill(victim, signal.SIGKILL)
                    victims.append(victim)
                    return
            time.sleep(0.05)

    # submitit waits up to 15 s for the result file that a killed worker never writes (an allowance for slow
    # shared file systems); this run's folder is local.
    monkeypatch.setattr(LocalJob, "_results_timeout_s", 1)
    killer = threading.Thread(target=kill_a_worker_past_its_first_checkpoint, daemon=True)
    capsys.readouterr()
    killer.start()
    try:
        code = bench_here("run", *common, "--run-id", "killed", "--jobs", "2")
    finally:
        run_ended.set()
        killer.join()
    stdout, stderr = capsys.readouterr()
    assert victims, f"no worker reached a checkpoint: {stdout + stderr}"
    assert code == 1, stdout + stderr
    assert "1 failed" in stderr and "bench run --resume killed" in stderr
    assert bench_here("status", "killed", "--output-dir", runs) == 0
    status = " ".join(capsys.readouterr().out.split())
    # Either the other worker reached the killed one's cell after it died, took over its claim and continued
    # from its checkpoint (the shared queue leaves no cell behind), or the cell waits for --resume.
    if "2 done" not in status:
        assert "1 interrupted" in status or "1 failed" in status, status
        assert bench_here("run", "--resume", "killed", "--output-dir", runs, "--jobs", "2") == 0
        assert "1 of 2 cells submitted" in capsys.readouterr().out
    assert accuracies(folder) == accuracies(tmp_path / "runs" / "straight")


FAILING_PLUGIN = '''
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.registry import register_method


@register_method("fails-at-2-shot")
class FailsAtTwoShot(ProtoNet):
    """Raises during training on 2-shot episodes (a broken research idea)."""

    def loss(self, task):
        if task.n_shot == 2:
            raise RuntimeError("the idea does not work at 2 shots")
        return super().loss(task)
'''


def test_a_failing_cell_is_reported_with_its_log_and_the_others_finish(tmp_path):
    plugin = tmp_path / "failing.py"
    plugin.write_text(FAILING_PLUGIN)
    # The plugin file is recorded in the run's config, so the worker processes load it too.
    result = bench("run", "--plugin", str(plugin), "--methods", "fails-at-2-shot,protonet", "--train-episodes", "4",
                   *TINY, "--output-dir", str(tmp_path / "runs"), "--run-id", "failing", "--jobs", "2", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed; log:" in result.stderr
    store = RunStore(tmp_path / "runs" / "failing")
    states = store.cell_states()
    failed = [s for s in states.values() if s["state"] == "failed"]
    assert len(failed) == 1 and "the idea does not work at 2 shots" in failed[0]["error"]
    assert failed[0]["log"] and Path(failed[0]["log"]).is_file()
    assert sum(s["state"] == "done" for s in states.values()) == 3


def test_without_jobs_a_failing_cell_also_leaves_the_others_to_finish(tmp_path):
    plugin = tmp_path / "failing.py"
    plugin.write_text(FAILING_PLUGIN)
    runs = str(tmp_path / "runs")
    result = bench("run", "--plugin", str(plugin), "--methods", "fails-at-2-shot,protonet", "--train-episodes", "4",
                   *TINY, "--output-dir", runs, "--run-id", "failing", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "3w2s3q__seed0: RuntimeError: the idea does not work at 2 shots" in \
        " ".join(result.stderr.split())
    assert "bench run --resume failing" in result.stderr
    states = RunStore(tmp_path / "runs" / "failing").cell_states()
    failed = [s for s in states.values() if s["state"] == "failed"]
    assert len(failed) == 1 and "in loss" in failed[0]["traceback"]  # the traceback is kept for the author
    assert sum(s["state"] == "done" for s in states.values()) == 3
    assert "protonet" in result.stdout  # the finished cells' table is still printed


def test_slurm_array_is_submitted_with_the_requested_parameters(tmp_path, monkeypatch, capsys):
    fake_commands(tmp_path, monkeypatch, sbatch='echo "Submitted batch job 4242"\n', srun="exit 0\n")
    config = tmp_path / "slurm.yaml"
    config.write_text("launcher: slurm\nslurm: {partition: gpu, time_min: 45, gpus: 1, cpus: 8, mem_gb: 32, "
                      "array_parallelism: 2, account: fsl}\n")
    args = ["run", "--config", str(config), "--methods", "protonet,crn", "--shots", "1", "--query", "3",
            "--dataset-option", "total=500", "--image-size", "24", "--output-dir", str(tmp_path / "runs"),
            "--run-id", "cluster", "--slurm-cpus", "6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 of 2 cells submitted to Slurm; job ids 4242_0, 4242_1" in out and "bench status cluster" in out
    script = next((tmp_path / "runs" / "cluster" / "jobs").rglob("*_submission.sh")).read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=45", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=32GB", "#SBATCH --array=0-1%2",
                 "#SBATCH --account=fsl", "#SBATCH --signal=USR2@90"):
        assert line in script, line
    status = " ".join(main_output(["status", "cluster", "--output-dir", str(tmp_path / "runs")], capsys).split())
    assert "0 done, 0 running, 0 failed, 0 interrupted, 2 pending" in status


def test_status_asks_slurm_about_a_cell_running_on_another_node(tmp_path, monkeypatch, capsys):
    """A cell marked running by a Slurm job on another node: its process cannot be checked from here, so squeue
    is asked; a job it no longer lists as queued or running (killed with its node, cancelled) is interrupted."""
    fake_commands(tmp_path, monkeypatch, sbatch='echo "Submitted batch job 4242"\n',
                  squeue="echo '4242_0|RUNNING'\necho '4242_1|CANCELLED'\necho '4243|RUNNING'\n")
    runs = tmp_path / "runs"
    args = ["run", "--launcher", "slurm", "--methods", "protonet,crn,maml", "--shots", "1", "--query", "3",
            "--dataset-option", "total=500", "--image-size", "24", "--output-dir", str(runs), "--run-id", "cluster"]
    assert main(args) == 0
    capsys.readouterr()
    cells = [entry["cell"] for entry in json.loads((runs / "cluster" / "plan.json").read_text())]
    (runs / "cluster" / "state").mkdir(exist_ok=True)
    for cell, job in zip(cells, ("4242_0", "4242_1", "4242_2")):
        (runs / "cluster" / "state" / f"{cell}.json").write_text(json.dumps(
            {"state": "running", "host": "node-elsewhere", "pid": 1, "since": "2026-12-07T05:00:00+00:00",
             "job": job, "slurm": True}))
    status = " ".join(main_output(["status", "cluster", "--output-dir", str(runs)], capsys).split())
    assert "0 done, 1 running, 0 failed, 2 interrupted, 0 pending" in status, status
    assert "its Slurm job 4242_1 on node-elsewhere is gone (cancelled in squeue)" in status, status
    assert "its Slurm job 4242_2 on node-elsewhere is gone (no longer listed in squeue)" in status, status
    # A local worker's job on another machine (submitit's local id, unknown to squeue) is not Slurm's to judge.
    local = runs / "cluster" / "state" / f"{cells[2]}.json"
    local.write_text(json.dumps({**json.loads(local.read_text()), "job": "31337", "slurm": False}))
    status = " ".join(main_output(["status", "cluster", "--output-dir", str(runs)], capsys).split())
    assert "0 done, 2 running, 0 failed, 1 interrupted, 0 pending" in status, status
    # Where squeue cannot answer, nothing is known: the cells stay as their markers say.
    fake_commands(tmp_path, monkeypatch, squeue="exit 1\n")
    status = " ".join(main_output(["status", "cluster", "--output-dir", str(runs)], capsys).split())
    assert "0 done, 3 running" in status, status


def main_output(args, capsys):
    assert main(args) == 0
    return capsys.readouterr().out


def test_slurm_is_refused_cleanly_where_there_is_no_cluster(tmp_path, monkeypatch, capsys):
    # No Slurm command at all (a real Slurm installed here, as test_slurm.py may do, must not be found).
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    args = ["run", "--launcher", "slurm", "--methods", "protonet", "--shots", "1", "--query", "3",
            "--dataset-option", "total=500", "--image-size", "24", "--output-dir", str(tmp_path / "runs")]
    assert main(args) == 3
    assert "cannot submit to Slurm here" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any run folder was written


def test_cells_job_requeues_itself_on_preemption(tmp_path):
    from fewshot_bench.engine.launch import CellsJob

    job = CellsJob(str(tmp_path), ["a", "b"], threads=1)
    delayed = job.checkpoint()
    assert isinstance(delayed.function, CellsJob) and delayed.function.cell_ids == ["a", "b"]


@pytest.mark.parametrize("device, visible, expected", [
    ("cuda", None, ["0", "1", "0"]),
    ("auto", "4,6", ["4", "6", "4"]),
    ("cuda:1", "4,6", ["6", "6", "6"]),
])
def test_local_workers_on_cuda_each_see_a_gpu(tmp_path, monkeypatch, device, visible, expected):
    # No GPU here: the parent is told it has two, and each worker reports the GPUs it was given.
    import torch

    from fewshot_bench.engine import launch
    from fewshot_bench.config import RunConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    class EnvironmentProbe:  # defined here so that submitit pickles it by value for the worker
        def __init__(self, run_folder, cell_ids, threads, overrides):
            self.overrides = overrides

        def __call__(self):
            return os.environ.get("CUDA_VISIBLE_DEVICES"), self.overrides

    monkeypatch.setattr(launch, "CellsJob", EnvironmentProbe)
    config = RunConfig(device=device, jobs=3, run_id="gpus")
    jobs = launch.submit(config, RunStore(tmp_path / "gpus"), ["a", "b", "c", "d"])
    seen = [job.result() for job in jobs]
    assert [gpu for gpu, _ in seen] == expected
    assert all(overrides == ({} if device == "auto" else {"device": "cuda"}) for _, overrides in seen)


def test_cpu_runs_give_local_workers_no_gpu(monkeypatch):
    from fewshot_bench.engine.launch import local_gpus

    assert local_gpus("cpu") == [] and local_gpus("mps") == []


def test_a_cell_is_claimed_by_one_process_and_a_dead_holder_loses_it(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.claim("cell") and store.claim("cell")  # this process holds it (claims are re-entrant)
    other = subprocess.run([sys.executable, "-c", "import sys; from fewshot_bench.results.store import RunStore; "
                            f"sys.exit(0 if RunStore(__import__('pathlib').Path({str(tmp_path / 'run')!r})).claim('cell') "
                            "else 3)"], env=ENV)
    assert other.returncode == 3  # another live process does not get it
    holder = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = tmp_path / "run" / "claims" / "cell.claim"
    data = json.loads(claim.read_text())
    claim.write_text(json.dumps({**data, "pid": int(holder.stdout)}))  # a process that has ended
    assert store.claim("cell")
    store.release("cell")
    assert not claim.exists() and store.claim("cell")


def test_local_workers_share_one_queue_of_cells(tmp_path, capsys):
    # Three cells, two workers: whichever worker is free takes the next unclaimed cell, and none runs twice.
    assert bench_here("run", "--methods", "protonet", "--shots", "1,2,3", "--train-episodes", "4", *TINY[2:],
                      "--output-dir", tmp_path / "runs", "--run-id", "queue", "--jobs", "2") == 0
    assert "3 of 3 cells submitted to 2 local worker process(es)" in capsys.readouterr().out
    cells = RunStore(tmp_path / "runs" / "queue").load_cells()
    assert sorted(c["shot"] for c in cells) == [1, 2, 3]
    ran = []
    for result in (tmp_path / "runs" / "queue" / "jobs").rglob("*_result.pkl"):
        status, cell_ids = pickle.loads(result.read_bytes())
        assert status == "success"
        ran += cell_ids
    assert sorted(ran) == sorted(c["cell"] for c in RunStore(tmp_path / "runs" / "queue").load_plan())


def test_a_requeued_slurm_job_takes_back_its_own_claim(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    claim = tmp_path / "run" / "claims" / "cell.claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"host": "node-7", "pid": 1, "job": "4242_3"}))  # preempted on another node
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    assert not store.claim("cell")  # another array task's claim is respected
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert store.claim("cell")  # the same task, requeued

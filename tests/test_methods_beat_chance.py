"""After a short training on synthetic-fer every method beats chance on the unseen test classes.

A seeded, CI-sized run (not a timing): 200 test episodes, 3-way 5-shot, identical for every method, on 24×24
faces (the smallest size at which every method here still learns clearly: at 20×20 CRN stays near chance
after 100 episodes). MAML learns more slowly than the metric-based methods, so it gets more episodes and
the one-step Omniglot-style inner loop (inner_lr 0.4) to stay within seconds; its run is a `bench run` in
a second process, alongside the metric methods' run in this one (one CPU thread each), so the two take the
time of the longer rather than of both.
"""

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.results.store import RunStore, summary_rows

CHANCE = 100 / 3
METRIC_METHODS = ["protonet", "matchingnet", "relationnet", "crn"]
MAML = "maml[inner_steps=1,inner_lr=0.4]"


def cli_args(flags: dict) -> list[str]:
    """``bench run`` flags for a dict of config values."""
    args = []
    for key, value in flags.items():
        if key == "dataset_options":
            args += [arg for k, v in value.items() for arg in ("--dataset-option", f"{k}={v}")]
        else:
            args += [f"--{key.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return args


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chance")
    common = dict(dataset_options={"total": 1500}, image_size=24, shots=[5], query=5, test_episodes=200, threads=1)
    maml = tiny_run_flags(tmp, methods=[MAML], train_episodes=200, run_id="maml", **common)
    log = tmp / "maml.log"
    with log.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "fewshot_bench", "run", *cli_args(maml)], stdout=handle,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    threads = torch.get_num_threads()  # --threads sets it process-wide
    try:
        metric = tiny_run_flags(tmp, methods=METRIC_METHODS, train_episodes=100, run_id="metric", **common)
        rows = {row["label"]: row for row in run(merge(None, metric)).summary}
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        torch.set_num_threads(threads)
    assert process.wait(timeout=600) == 0, log.read_text()
    rows.update({row["label"]: row for row in summary_rows(RunStore(tmp / "runs" / "maml").load_cells())})
    return rows


def test_every_method_beats_chance_by_a_clear_margin(short_runs):
    # One test over the methods (not one per method): two test workers would each compute the shared runs.
    below = [f"{method}: {short_runs[method]['mean']:.1f} ± {short_runs[method]['ci95']:.1f}"
             for method in METRIC_METHODS + [MAML] if short_runs[method]["mean"] - short_runs[method]["ci95"] <= CHANCE + 5]
    assert all(short_runs[method]["episodes"] == 200 for method in METRIC_METHODS + [MAML])
    assert not below, below

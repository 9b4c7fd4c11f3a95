"""After a short training on synthetic-fer every method beats chance on the unseen test classes.

A seeded, CI-sized run (not a timing): 200 test episodes, 3-way 5-shot, identical for every method.
MAML learns more slowly than the metric-based methods, so it gets more episodes and the one-step
Omniglot-style inner loop (inner_lr 0.4) to stay within seconds.
"""

import pytest

from conftest import tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run

CHANCE = 100 / 3
METRIC_METHODS = ["protonet", "matchingnet", "relationnet", "crn"]
MAML = "maml[inner_steps=1,inner_lr=0.4]"


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chance")
    common = dict(dataset_options={"total": 1500}, image_size=32, shots=[5], query=5, test_episodes=200)
    rows = {}
    for methods, episodes, run_id in ((METRIC_METHODS, 150, "metric"), ([MAML], 400, "maml")):
        flags = tiny_run_flags(tmp, methods=methods, train_episodes=episodes, run_id=run_id, **common)
        rows.update({row["label"]: row for row in run(merge(None, flags)).summary})
    return rows


@pytest.mark.parametrize("method", METRIC_METHODS + [MAML])
def test_beats_chance_by_a_clear_margin(short_runs, method):
    row = short_runs[method]
    assert row["episodes"] == 200
    assert row["mean"] - row["ci95"] > CHANCE + 5, f"{method}: {row['mean']:.1f} ± {row['ci95']:.1f}"

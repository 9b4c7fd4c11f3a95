"""A cell is a pipeline of declared stages: which stages run follows from the variant's declarations, each
stage writes its own block of the record, and a new stage is one file."""

import json
import subprocess
import sys

from conftest import tiny_run_flags
from fewshot_bench.config import RunConfig
from fewshot_bench.engine.cell import pipeline
from fewshot_bench.engine.runner import run

EXTRA_STAGE = '''
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import Stage


@register_stage("query_census")
class QueryCensus(Stage):
    """Counts the test queries a cell saw (a stand-in for an audit stage)."""

    order = 60  # after evaluate

    def applies(self, cell):
        return cell.method.meta_trained

    def run(self, cell):
        return {"query_census": {"episodes": len(cell.test_episodes), "queries": int(cell.test_episodes.query.size)}}

    def skipped(self, cell):
        return {"query_census": None}
'''


def test_the_builtin_pipeline_and_its_order():
    assert [name for name, _ in pipeline()] == ["pretrain", "load_weights", "compile", "meta_train",
                                                "fit_training_classes", "evaluate", "evaluate_seen"]


def test_each_variant_runs_the_stages_it_declares(tmp_path):
    flags = tiny_run_flags(tmp_path, shots=[1], train_episodes=2, test_episodes=2,
                           methods=["protonet", "protonet[pretrain_epochs=1]", "simpleshot[pretrain_epochs=1]"])
    result = run(RunConfig(**flags))
    assert not result.failures
    stages = {cell["label"]: cell["stages"] for cell in result.store.load_cells()}
    assert stages == {"protonet": ["meta_train", "evaluate"],
                      "protonet[pretrain_epochs=1]": ["pretrain", "meta_train", "evaluate"],
                      "simpleshot[pretrain_epochs=1]": ["pretrain", "fit_training_classes", "evaluate"]}
    cells = {cell["label"]: cell for cell in result.store.load_cells()}
    # a stage that does not apply writes what the record says in its place
    assert cells["protonet"]["pretraining"] is None and cells["protonet"]["compiled"] is None
    assert cells["simpleshot[pretrain_epochs=1]"]["train_episodes"] == 0
    assert cells["simpleshot[pretrain_epochs=1]"]["train_steps"] == "none"
    assert cells["simpleshot[pretrain_epochs=1]"]["fitted_training_images"] > 0
    assert cells["protonet[pretrain_epochs=1]"]["pretraining"]["epochs"] == 1


def test_a_new_stage_is_one_file(tmp_path):
    plugin = tmp_path / "census.py"
    plugin.write_text(EXTRA_STAGE)
    flags = tiny_run_flags(tmp_path, shots=[1], train_episodes=2, test_episodes=3)
    command = [sys.executable, "-m", "fewshot_bench", "run", "--plugin", str(plugin), "--methods",
               "protonet,simpleshot[pretrain_epochs=1]", "--shots", "1", "--query", "3", "--train-episodes", "2",
               "--test-episodes", "3", "--dataset-option", "total=500", "--dataset-option", "identities=20",
               "--image-size", "24", "--output-dir", flags["output_dir"], "--run-id", "census", "--device", "cpu",
               "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cells = {}
    for path in (tmp_path / "runs" / "census" / "cells").glob("*.json"):
        record = json.loads(path.read_text())
        cells[record["label"]] = record
    assert cells["protonet"]["stages"] == ["meta_train", "evaluate", "query_census"]
    assert cells["protonet"]["query_census"] == {"episodes": 3, "queries": 27}  # 3 episodes × 3 ways × 3 queries
    assert cells["simpleshot[pretrain_epochs=1]"]["query_census"] is None  # declared not to apply there
    assert "query_census" not in cells["simpleshot[pretrain_epochs=1]"]["stages"]

"""Progress where people look: ``execute()`` from Python says what it is doing (not minutes of silence), and
``--tensorboard DIR`` writes each cell's loss, validation, budget-curve and test accuracy as TensorBoard events."""

import pytest

from fewshot_bench.config import merge
from fewshot_bench.engine.launch import execute

TINY = {"methods": ["protonet"], "shots": [1], "query": 2, "train_episodes": 4, "test_episodes": 3,
        "image_size": 20, "device": "cpu", "threads": 1, "context": [], "log_interval": 2,
        "dataset_options": {"total": 300}}


def test_the_python_api_reports_progress_by_default_and_can_be_silenced(tmp_path, capsys):
    execute(merge(None, {**TINY, "output_dir": str(tmp_path), "run_id": "api"}))
    err = capsys.readouterr().err
    assert "cell 1/1: protonet 1-shot seed 0" in err and "train 4/4 episodes" in err and "protonet 1-shot seed 0:" in err
    execute(merge(None, {**TINY, "output_dir": str(tmp_path), "run_id": "quiet"}), progress=False)
    assert "cell 1/1" not in capsys.readouterr().err


def test_tensorboard_events_hold_each_cells_curves_and_result(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = merge(None, {**TINY, "output_dir": str(tmp_path / "runs"), "run_id": "tb", "budget_curve": [2],
                          "tensorboard": str(tmp_path / "tb")})
    result = execute(config, progress=False)
    cell, = result.store.load_cells()
    folder = tmp_path / "tb" / "tb" / cell["cell"]
    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "test/accuracy", "test/ci95", "test/accuracy_at_budget"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == cell["loss_curve"]["episode"]
    final, = events.Scalars("test/accuracy")
    assert final.step == 4 and final.value == pytest.approx(cell["mean"])

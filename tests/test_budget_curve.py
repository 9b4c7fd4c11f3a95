"""The accuracy-versus-budget curve (``budget_curve``): each point is what the cell scores with that many training
episodes, the curve leaves the cell's own result alone, and the audit and the figures read it."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.errors import ConfigError
from fewshot_bench.reporting.audit import audit_cells
from inprocess import bench_here


def _cells(result) -> dict[str, dict]:
    return {c["label"]: c for c in (json.loads(p.read_text()) for p in (result.store.root / "cells").glob("*.json"))}


def _run(tmp_path, run_id: str, **overrides):
    flags = tiny_run_flags(tmp_path, methods=["protonet", "baseline[pretrain_epochs=1]"], shots=[1],
                           test_episodes=8, run_id=run_id, log_interval=3, **overrides)
    return run(merge(None, flags))


def test_a_curve_point_is_what_the_cell_scores_with_that_budget_and_the_curve_changes_nothing(tmp_path, capsys):
    curved = _cells(_run(tmp_path, "curved", train_episodes=12, budget_curve=[3, 6]))
    shorter = _cells(_run(tmp_path, "six", train_episodes=6))
    plain = _cells(_run(tmp_path, "plain", train_episodes=12))
    curve = curved["protonet"]["budget_curve"]
    assert curve["episode"] == [3, 6] and len(curve["mean"]) == len(curve["ci95"]) == 2
    # The point at 6 is the 6-episode run's result, on the same test episodes.
    assert curve["mean"][1] == pytest.approx(shorter["protonet"]["mean"], abs=1e-3)
    # Evaluating along the way leaves training alone: the same accuracies as without the curve.
    assert curved["protonet"]["accuracies"] == plain["protonet"]["accuracies"]
    assert curved["protonet"]["loss_curve"] == plain["protonet"]["loss_curve"]
    # A cell that does no episodic training has no curve, and a run without one records none.
    assert "budget_curve" not in curved["baseline[pretrain_epochs=1]"] and "budget_curve" not in plain["protonet"]

    (row,) = [r for r in audit_cells(list(curved.values())) if r.label == "protonet"]
    assert row.best_checkpoint == pytest.approx(max(*curve["mean"], curved["protonet"]["mean"]))
    assert row.checkpoints == 3
    root = tmp_path / "runs" / "curved"
    assert bench_here("audit", root, "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert "best checkpoint (test episodes)" in document["columns"]
    assert bench_here("plot", root) == 0
    assert (root / "figures" / "accuracy_vs_budget.png").stat().st_size > 0


def test_a_curve_point_beyond_the_training_budget_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"budget_curve point\(s\) 50 lie beyond train_episodes \(12\)"):
        _run(tmp_path, "beyond", train_episodes=12, budget_curve=[6, 50])
    assert not (tmp_path / "runs" / "beyond").exists()
    args = ["run", "--methods", "protonet", "--train-episodes", "12", "--budget-curve", "0",
            "--output-dir", str(tmp_path / "runs"), "--device", "cpu"]
    assert bench_here(*args) != 0
    assert "budget_curve' must contain integers of at least 1" in capsys.readouterr().err


def test_an_interrupted_cell_resumes_with_its_curve(tmp_path):
    from test_resume import StopAfter

    flags = dict(methods=["protonet"], shots=[1], train_episodes=12, log_interval=2, checkpoint_interval=4,
                 test_episodes=8, budget_curve=[2, 10])
    straight = run(merge(None, tiny_run_flags(tmp_path, run_id="straight", **flags)))
    config = merge(None, tiny_run_flags(tmp_path, run_id="interrupted", **flags))
    with pytest.raises(KeyboardInterrupt):
        run(config, StopAfter(7))  # the point at 2 is in the checkpoint at 4; the one at 10 comes after the resume
    resumed = run(config)
    (before,), (after,) = straight.store.load_cells(), resumed.store.load_cells()
    assert after["budget_curve"]["episode"] == [2, 10]
    assert after["budget_curve"]["mean"] == before["budget_curve"]["mean"]
    assert after["accuracies"] == before["accuracies"]

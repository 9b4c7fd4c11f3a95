"""The runner enforces the method contract on every episode, whatever the conformance kit was told: queries
arrive in a seeded random order, non-finite scores or losses and episodes edited in place fail the cell in one
line, and a failed cell never becomes a number."""

import json

import numpy as np
import pytest

from fewshot_bench.cli.main import main
from fewshot_bench.engine.evaluation import query_orders
from fewshot_bench.episodic.episodes import EpisodeSet

CHEATS = '''
import torch
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.registry import register_method


@register_method("layout-cheat")
class LayoutCheat(ProtoNet):
    """Reads each query's label off its position (queries used to arrive class by class)."""

    def predict(self, support, support_labels, query, n_way):
        scores = super().predict(support, support_labels, query, n_way)
        cheat = torch.nn.functional.one_hot(torch.arange(n_way).repeat_interleave(len(query) // n_way), n_way)
        return scores * 0 + cheat.float() * 100


@register_method("nan-at-test")
class NanAtTest(ProtoNet):
    """Trains normally, then scores NaN at test time only."""

    def predict(self, support, support_labels, query, n_way):
        scores = super().predict(support, support_labels, query, n_way)
        return scores if self.training else scores * float("nan")


@register_method("edits-support")
class EditsSupport(ProtoNet):
    """Centres the support images in place (the caller's tensor changes)."""

    def predict(self, support, support_labels, query, n_way):
        support -= support.mean()
        return super().predict(support, support_labels, query, n_way)


@register_method("edits-in-loss")
class EditsInLoss(ProtoNet):
    """Brightens the training episode's support images in place inside its loss."""

    def loss(self, task):
        task.support.add_(1.0)
        return super().loss(task)
'''


def _run(tmp_path, methods, run_id):
    plugin = tmp_path / "cheats.py"
    plugin.write_text(CHEATS)
    return main(["run", "--plugin", str(plugin), "--methods", methods, "--shots", "1", "--query", "5",
                 "--train-episodes", "4", "--test-episodes", "20", "--dataset-option", "total=300",
                 "--dataset-option", "identities=20", "--image-size", "20", "--output-dir", str(tmp_path / "runs"),
                 "--run-id", run_id, "--device", "cpu", "--threads", "1"])


def _cells(tmp_path, run_id):
    return {json.loads(p.read_text())["label"]: json.loads(p.read_text())
            for p in (tmp_path / "runs" / run_id / "cells").glob("*.json")}


def test_reading_labels_off_the_query_order_scores_chance_not_100(tmp_path):
    assert _run(tmp_path, "layout-cheat", "cheat") == 0
    cell = _cells(tmp_path, "cheat")["layout-cheat"]
    assert cell["mean"] < 60  # 3-way: about a third, never 100 ± 0
    assert cell["query_order"].startswith("shuffled per episode")


def test_query_orders_are_seeded_by_the_episodes_and_shuffle_every_episode():
    rng = np.random.default_rng(0)
    episodes = EpisodeSet(rng.integers(0, 9, (4, 3)), rng.integers(0, 99, (4, 3)), rng.integers(0, 99, (4, 15)))
    orders = query_orders(episodes)
    assert orders.shape == (4, 15) and all(sorted(o) == list(range(15)) for o in orders)
    assert (query_orders(episodes) == orders).all()  # the same for every method
    assert not (orders == np.arange(15)).all(axis=1).any()  # never class by class


@pytest.mark.parametrize("methods, message", [
    ("nan-at-test", "NanAtTest returned non-finite scores (NaN or inf) on test episode 1 of 20"),
    ("protonet[lr=1e999]", "ProtoNet's training loss is not finite (nan) over training episodes"),
    ("edits-in-loss", "EditsInLoss's loss modified the episode's images in place (training episodes 1-"),
    ("edits-support", "EditsSupport.predict modified the episode's images in place (test episode 1)"),
])
def test_broken_numbers_fail_the_cell_in_one_line_and_never_reach_a_table(tmp_path, capsys, methods, message):
    assert _run(tmp_path, methods, "broken") == 1
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert _cells(tmp_path, "broken") == {}  # no record, so no row in any table or leaderboard


def test_a_run_id_with_a_nul_byte_is_one_line(tmp_path, capsys):
    assert main(["table", "demo\x00x", "--output-dir", str(tmp_path)]) == 3
    assert main(["run", "--run-id", "a\x00b", "--output-dir", str(tmp_path), "--train-episodes", "1"]) == 3
    err = capsys.readouterr().err
    assert "control character" in err and "must be a folder name" in err and "Traceback" not in err

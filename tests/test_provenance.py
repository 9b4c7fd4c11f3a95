"""Numbers that can be trusted: a seed interval beside the episode interval, seeds pooled only under the
same settings, and pairs only on the same test episodes."""

import csv
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.errors import CellsFailed
from fewshot_bench.report import render
from fewshot_bench.reporting.comparison import compare_with_baseline
from fewshot_bench.reporting.tables import accuracy_report, table_from_cells
from fewshot_bench.results.leaderboard import write_leaderboard
from fewshot_bench.stats import summarize
from test_reporting import A, B, make_cell, write_run


def test_the_seed_interval_is_a_t_interval_over_the_seed_means():
    per_seed = {0: np.array([0.5, 0.6, 0.7]), 1: np.array([0.3, 0.4, 0.5]), 2: np.array([0.6, 0.6, 0.6])}
    summary = summarize(per_seed)
    means = np.array([60.0, 40.0, 60.0])
    assert summary.seed_ci95 == pytest.approx(stats.t.ppf(0.975, 2) * means.std(ddof=1) / np.sqrt(3))
    assert summary.seed_ci95 > summary.ci95  # the episodes of one seed share one model
    assert np.isnan(summarize({0: per_seed[0]}).seed_ci95)


def test_tables_show_both_intervals_and_say_which_is_which():
    cells = [make_cell("protonet", 1, seed, A + 0.05 * seed) for seed in (0, 1)]
    cells += [make_cell("crn", 1, 0, B)]
    from fewshot_bench.results.store import summary_rows

    text = render(accuracy_report(table_from_cells(cells, summary_rows(cells))), "markdown")
    protonet_line = next(line for line in text.splitlines() if line.startswith("| protonet"))
    assert protonet_line.count("±") == 2 and "(±" in protonet_line
    crn_line = next(line for line in text.splitlines() if line.startswith("| crn"))
    assert crn_line.count("±") == 1  # one seed: no seed interval
    assert "CI over seeds" in text


def test_the_leaderboard_never_pools_seeds_trained_under_other_settings(tmp_path):
    flags = tiny_run_flags(tmp_path, shots=[1], methods=["protonet"])
    run(merge(None, {**flags, "run_id": "short", "seeds": [0], "train_episodes": 2}))
    run(merge(None, {**flags, "run_id": "long", "seeds": [1], "train_episodes": 4}))
    run(merge(None, {**flags, "run_id": "long-too", "seeds": [0], "train_episodes": 4}))
    rows = write_leaderboard([tmp_path / "runs"], tmp_path / "board.csv")
    assert sorted((r["train_episodes"], r["seeds"]) for r in rows) == [(2, 1), (4, 2)]
    with (tmp_path / "board.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert {"settings_hash", "seed_ci95", "test_episodes_sha", "git_commit", "lr"} <= set(written[0])
    assert len({r["settings_hash"] for r in written}) == 2
    assert {float(r["lr"]) for r in written} == {1e-3}  # ProtoNet's own learning rate, from the variant


def test_a_run_wide_learning_rate_makes_other_variants_never_pooled_with_the_recipe(tmp_path):
    flags = tiny_run_flags(tmp_path, shots=[1], methods=["matchingnet"], train_episodes=2)
    run(merge(None, {**flags, "run_id": "recipe"}))
    run(merge(None, {**flags, "run_id": "halving", "lr_step": 1, "lr": 0.01}))
    rows = write_leaderboard([tmp_path / "runs"], tmp_path / "board.csv")
    assert sorted((r["label"], r["lr"]) for r in rows) == [("matchingnet", 1e-3),
                                                           ("matchingnet[lr=0.01,lr_step=1]", 0.01)]


def test_cells_of_older_versions_are_pooled_within_their_run_only(tmp_path):
    write_run(tmp_path, "old-a", [make_cell("protonet", 1, 0, A)])
    write_run(tmp_path, "old-b", [make_cell("protonet", 1, 1, B)])
    rows = write_leaderboard([tmp_path], tmp_path / "board.csv")
    assert [r["seeds"] for r in rows] == [1, 1]


def test_pairs_are_only_made_on_the_same_test_episodes(capsys):
    cells = [make_cell("protonet", 1, 0, A, test_episodes_sha="aaa"), make_cell("crn", 1, 0, B, test_episodes_sha="bbb"),
             make_cell("protonet", 1, 1, A, test_episodes_sha="ccc"), make_cell("crn", 1, 1, B, test_episodes_sha="ccc")]
    [comparison] = compare_with_baseline(cells, "protonet")
    assert comparison.result.n == len(A)  # seed 1 only
    assert "seed 0 were scored on different test episodes" in capsys.readouterr().err
    from fewshot_bench.results.store import summary_rows

    mismatched = [c for c in cells if c["seed"] == 0]
    table = table_from_cells(mismatched, summary_rows(mismatched))
    assert not table.tied  # no paired test, so no "tied with the best" mark either


def test_a_run_refuses_new_cells_whose_test_episodes_differ_from_the_saved_ones(tmp_path):
    flags = tiny_run_flags(tmp_path, shots=[1], methods=["protonet"], context=["floor"])
    run(merge(None, flags))
    path = next((tmp_path / "runs" / "tiny" / "episodes").glob("*.npz"))
    saved = EpisodeSet.load(path)
    EpisodeSet(saved.class_ids, saved.support[::-1].copy(), saved.query).save(path)  # as if the data had changed
    result = run(merge(None, {**flags, "methods": ["protonet", "crn"]}))
    # The crn cell, and the context rows (floor of crn's backbone) of the same setting.
    assert len(result.failures) == 2 and all("differ from those saved" in f for f in result.failures)
    assert result.failures[0].startswith("cell crn") and result.failures[1].startswith("context rows of 1-shot")
    assert [cell["label"] for cell in result.store.load_cells()] == ["protonet"]
    with pytest.raises(CellsFailed, match="2 cell"):
        result.raise_for_failures()


def test_the_code_version_follows_the_source_of_the_method(tmp_path):
    import importlib.util

    from fewshot_bench.backbones import conv4
    from fewshot_bench.results.provenance import code_version

    path = tmp_path / "my_method.py"

    def load(body):
        path.write_text("from fewshot_bench.methods.protonet import ProtoNet\n"
                        f"class Mine(ProtoNet):\n    scale = {body}\n")
        spec = importlib.util.spec_from_file_location(f"my_method_{body}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as the plugin loader registers a plugin file
        spec.loader.exec_module(module)
        return module.Mine

    first = code_version(load(1), conv4)
    assert first.startswith("code:") and code_version(load(1), conv4) == first
    assert code_version(load(2), conv4) != first  # the plugin changed
    from fewshot_bench.methods.protonet import ProtoNet
    from fewshot_bench.methods.relationnet import RelationNet

    assert code_version(ProtoNet, conv4) != code_version(RelationNet, conv4)


def test_cells_record_their_code_and_a_run_reports_finished_cells_of_other_code(tmp_path, capsys):
    import json

    flags = tiny_run_flags(tmp_path, shots=[1], methods=["protonet"])
    result = run(merge(None, flags))
    cell_file = next((result.store.root / "cells").glob("*.json"))
    record = json.loads(cell_file.read_text())
    assert record["code_version"].startswith("code:") and "git_commit" in record and "git_dirty" in record
    assert len(record["settings_hash"]) == 12 and record["settings"]["train_episodes"] == 4
    record["code_version"] = "code:000000000000"  # as if computed before an edit of the method
    record.pop("checksum")  # an unsealed record, as older versions wrote them (a sealed one would not verify)
    cell_file.write_text(json.dumps(record))
    capsys.readouterr()
    run(merge(None, flags))
    err = capsys.readouterr().err
    assert "was computed by other source code (code:000000000000" in err and "delete" in err


def test_compare_also_tests_across_seeds():
    cells = []
    for seed, shift in ((0, 0.02), (1, 0.05), (2, -0.01)):
        cells += [make_cell("protonet", 1, seed, B), make_cell("crn", 1, seed, B + shift)]
    [comparison] = compare_with_baseline(cells, "protonet")
    seeds = comparison.over_seeds
    diffs = np.array([2.0, 5.0, -1.0])
    assert seeds.n == 3 and seeds.mean_diff == pytest.approx(diffs.mean())
    assert seeds.ci95 == pytest.approx(stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3))
    assert comparison.result.p_value < 0.05 < seeds.p_value  # episodes alone would call it a win
    [single] = compare_with_baseline(cells[:2], "protonet")
    assert single.over_seeds is None

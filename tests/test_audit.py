"""``bench audit``: the inflation common reporting protocols add to a fixed model's honest accuracy."""

import json

import numpy as np

from conftest import tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.reporting.audit import audit_cells, audit_row
from inprocess import bench_here


def test_selection_inflates_with_the_number_of_evaluations_and_shrinks_with_their_size():
    rng = np.random.default_rng(0)
    accuracies = np.clip(rng.normal(0.35, 0.12, 600), 0, 1)  # a 3-way model near chance, like FER2013's
    row = audit_row("m", way=3, shot=1, query=15, accuracies=accuracies, selections=(1, 10, 100, 1000))
    assert abs(row.honest - accuracies.mean() * 100) < 1e-9
    assert abs(row.best_small[1] - row.honest) < 1.5  # one evaluation is unbiased
    assert row.one_small[0] < row.honest < row.one_small[1] and row.one_small[1] - row.one_small[0] > 15
    gains = [row.best_small[m] - row.honest for m in (10, 100, 1000)]
    assert 6 < gains[0] < gains[1] < gains[2] and gains[1] > 12  # the audit's +14.5 at M = 100 on FER2013
    large = [row.best_full[m] - row.honest for m in (10, 100, 1000)]
    assert 0 < large[0] < large[1] < large[2] < 2  # 600 episodes × 15 queries: under two points even at 1000
    # Seeded: the same audit twice is the same numbers.
    assert audit_row("m", 3, 1, 15, accuracies, selections=(10,)) == audit_row("m", 3, 1, 15, accuracies,
                                                                                 selections=(10,))


def test_a_perfect_model_has_nothing_to_inflate_and_seeds_pool(tmp_path, capsys):
    cells = [{"label": "m", "way": 3, "shot": 1, "query": 5, "seed": s, "accuracies": [1.0] * 40} for s in (0, 1)]
    (row,) = audit_cells(cells, selections=(100,))
    assert row.honest == 100 and row.best_small[100] == 100 and row.best_full[100] == 100
    result = run(merge(None, tiny_run_flags(tmp_path, shots=[1], methods=["protonet"])))
    assert bench_here("audit", result.store.root, "--format", "json", "--episodes", "5") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "audit" and document["rows"][0]["method"] == "protonet"
    assert "best of 1000 (5 ep, 1 q)" in document["columns"]
    assert abs(document["rows"][0]["honest"]["mean"] - result.summary[0]["mean"]) < 1e-3
    assert bench_here("audit", result.store.root, "--episodes", "0") != 0
    assert "--episodes must be at least 1" in capsys.readouterr().err


def test_per_class_best_of_the_seeds_and_its_empty_entries_in_csv(tmp_path, capsys):
    import csv
    import io

    from fewshot_bench.formats.csv_table import CsvFormat
    from fewshot_bench.reporting.audit import audit_report

    def cell(label, seed, classes):
        return {"label": label, "way": 2, "shot": 1, "query": 5, "seed": seed, "accuracies": [0.35] * 20,
                "mean": 35.0, "class_accuracy": classes}

    cells = [cell("m", 0, {"a": 0.5, "b": 0.2}), cell("m", 1, {"a": 0.3, "b": 0.4}), cell("one", 0, {"a": 0.5, "b": 0.2})]
    rows = audit_cells(cells, selections=(10,))
    by_label = {row.label: row for row in rows}
    # Each class from its best seed: a from seed 0 (50 %), b from seed 1 (40 %).
    assert by_label["m"].best_seed_per_class == 45.0
    assert by_label["one"].best_seed_per_class is None  # one seed: nothing to pick from
    table = list(csv.DictReader(io.StringIO(CsvFormat().render(audit_report(rows)))))
    assert float(table[0]["per class, best of the seeds value"]) == 45.0
    assert float(table[0]["per class, best of the seeds inflation"]) == 45.0 - by_label["m"].honest
    assert table[1]["per class, best of the seeds value"] == ""  # an empty entry, not an error


def test_test_time_batch_statistics_are_measured_from_the_saved_weights(tmp_path, capsys):
    from fewshot_bench.reporting.batch_statistics import batch_statistics_accuracies
    from fewshot_bench.engine.runner import cell_id

    result = run(merge(None, tiny_run_flags(tmp_path, shots=[1], methods=["protonet", "maml"], train_episodes=6,
                                            test_episodes=8)))
    cells = result.store.load_cells()
    honest = {c["label"]: c["mean"] for c in cells}
    measured = batch_statistics_accuracies(result.store.root, cells)
    by_label = {key[0]: value for key, value in measured.items()}
    # MAML normalises with batch statistics already (Finn et al.'s bn=batch): the same numbers. ProtoNet's batch
    # norm uses running statistics at test time; the episode's own statistics change its scores.
    assert abs(by_label["maml"] - honest["maml"]) < 1e-6
    assert abs(by_label["protonet"] - honest["protonet"]) > 1e-6
    # A cell without saved weights is left out, never guessed.
    protonet = next(c for c in cells if c["label"] == "protonet")
    result.store.checkpoint(cell_id("protonet", protonet["way"], 1, protonet["query"], 0)).path.unlink()
    assert {key[0] for key in batch_statistics_accuracies(result.store.root, cells)} == {"maml"}
    assert bench_here("audit", result.store.root, "--batch-stats", "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert "test-time batch statistics" in document["columns"]

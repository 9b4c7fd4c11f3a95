"""Context rows: floor, seen-class and ceiling beside the methods, on synthetic data where the answer is known.

Two tiny array datasets (16×16, 5 training and 3 test classes). Each class is a random binary 4×4 code drawn as
blocks, under a large random brightness offset per image, which pixel distances cannot ignore and a trained
network learns to (zero-sum filters). With *transfer*, the test classes are codes like the training ones: a
trained ProtoNet is far above its floor. Without, a test image's code is drawn at random whatever its label: no
features can tell the test classes apart, so ProtoNet sits at its floor — while its seen-class rows (held-out
images of its training classes) show that it learnt.
"""

import json
import re

import numpy as np
import pytest

from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.errors import ConfigError, EpisodeError, RecordError
from fewshot_bench.episodic.protocol import prepare
from fewshot_bench.report import render
from fewshot_bench.reporting.context import context_rows
from fewshot_bench.reporting.tables import accuracy_report, table_from_cells
from fewshot_bench.results.leaderboard import read_leaderboard, write_leaderboard
from fewshot_bench.results.publish import publish_run
from fewshot_bench.results.store import RunStore, read_context
from inprocess import bench_here

TRAIN = [f"train{i}" for i in range(5)]
TEST = [f"test{i}" for i in range(3)]
SPLIT = {"train": TRAIN, "test": TEST}


def coded_faces(path, transfer: bool, seed: int = 0, per_class: int = 60, size: int = 16) -> str:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2, (8, 4, 4)) * 2 - 1
    images, labels = [], []
    for c in range(8):
        for _ in range(per_class):
            code = codes[c] if (transfer or c < 5) else codes[rng.integers(0, 8)] * rng.choice([-1, 1])
            image = 128 + rng.uniform(-90, 90) + np.kron(code, np.ones((size // 4, size // 4))) * 40
            images.append(np.clip(image + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8))
            labels.append(c)
    np.savez(path, images=np.stack(images), labels=np.array(labels), class_names=np.array(TRAIN + TEST))
    return str(path)


def flags(tmp_path, data: str, run_id: str, **overrides) -> dict:
    values = dict(dataset="array", data_root=data, split=SPLIT, methods=["protonet"], shots=[1], query=5,
                  train_episodes=60, test_episodes=40, output_dir=str(tmp_path / "runs"), run_id=run_id,
                  device="cpu", log_interval=30, context=["floor", "seen", "ceiling"], ceiling_epochs=4)
    values.update(overrides)
    return values


def rows_by_label(result) -> dict[str, dict]:
    cells = result.store.load_cells()
    rows = {r["label"]: r for r in context_rows(cells, result.store.load_context())}
    rows.update({r["label"]: r for r in result.summary})
    return rows


def test_method_far_above_its_floor_where_features_transfer_and_at_it_where_they_cannot(tmp_path):
    transfer = rows_by_label(run(merge(None, flags(tmp_path, coded_faces(tmp_path / "t.npz", True), "transfer"))))
    none = rows_by_label(run(merge(None, flags(tmp_path, coded_faces(tmp_path / "n.npz", False), "none"))))
    floors = ("floor: pixels", "floor: random conv4")
    assert set(floors) | {"seen: protonet", "ceiling: conv4 trained on the test classes"} <= set(transfer)
    # Transfer: the trained method clears every floor by far; the ceiling (test-class labels) is higher still.
    assert transfer["protonet"]["mean"] > max(transfer[f]["mean"] for f in floors) + 10, transfer
    assert transfer["ceiling: conv4 trained on the test classes"]["balanced_accuracy"] > 80
    # One ceiling per backbone and seed serves every shot; a floor trains nothing, also in a setting after one.
    data = str(tmp_path / "t.npz")
    two = run(merge(None, flags(tmp_path, data, "two-shots", shots=[1, 2], train_episodes=2, test_episodes=5,
                                ceiling_epochs=1, context=["floor", "ceiling"])))
    rows = two.store.load_context()
    assert sorted(r["shot"] for r in rows if r["context"] == "floor") == [1, 1, 2, 2]
    assert all(r["train_seconds"] == 0.0 for r in rows if r["context"] == "floor")
    ceilings = [r for r in rows if r["context"] == "ceiling"]
    assert len(ceilings) == 2 and ceilings[0]["ceiling"] == ceilings[1]["ceiling"] and ceilings[0]["train_seconds"] > 0
    # No transfer possible: the method is at its floor and at chance, though it learnt its training classes.
    for row in (none["protonet"], *(none[f] for f in floors)):
        assert abs(row["mean"] - 100 / 3) < 8, none
    assert abs(none["protonet"]["mean"] - none["floor: pixels"]["mean"]) < 8
    assert none["seen: protonet"]["mean"] > 90 and transfer["seen: protonet"]["mean"] > 90
    assert none["ceiling: conv4 trained on the test classes"]["balanced_accuracy"] < 60


def test_context_rows_are_shown_apart_and_never_ranked_or_marked(tmp_path, capsys):
    data = coded_faces(tmp_path / "t.npz", True)
    result = run(merge(None, flags(tmp_path, data, "shown", train_episodes=2, test_episodes=10, ceiling_epochs=1)))
    cells = result.store.load_cells()
    context = context_rows(cells, result.store.load_context())
    report = accuracy_report(table_from_cells(cells, result.summary), context)
    labels = [row[0] for row in report.rows]
    assert labels[0] == "protonet" and labels[1] == "floor: pixels"  # the methods first, then the context block
    assert labels[1:] == ["floor: pixels", "floor: random conv4", "seen: protonet",
                          "ceiling: conv4 trained on the test classes"]
    # The floor is higher than an untrained-for-two-episodes ProtoNet here: still ProtoNet is the column's best.
    entries = [value for row in report.rows[1:] for value in report.values(row)[1:-1] if value is not None]
    assert entries and all(value.mark == "" for value in entries)
    assert report.values(report.rows[0])[1].mark == "best"
    document = json.loads(render(report, "json"))
    assert [row.get("context") for row in document["rows"]] == [None, "floor", "floor", "seen", "ceiling"]
    assert "never ranked" in document["caption"] and "uses test-class labels" in document["caption"]
    # The CLI's table of the run prints them, and a method can be tested against the floor.
    assert bench_here("table", result.store.root, "--format", "markdown") == 0
    out = capsys.readouterr().out
    assert "| floor: pixels |" in out and "| seen: protonet |" in out and "(balanced " in out
    assert bench_here("compare", result.store.root, "--baseline", "floor: pixels", "--format", "csv") == 0
    assert "protonet" in capsys.readouterr().out
    assert bench_here("compare", result.store.root, "--baseline", "floor: nothing") != 0
    assert "its floor rows: floor: pixels, floor: random conv4" in capsys.readouterr().err
    # The leaderboard keeps them, after the setting's methods and named by kind; its table does not rank them.
    board = tmp_path / "board.csv"
    rows = write_leaderboard([tmp_path / "runs"], board)
    assert [(r["label"], r.get("context")) for r in rows] == [
        ("protonet", None), ("floor: pixels", "floor"), ("floor: random conv4", "floor"),
        ("seen: protonet", "seen"), ("ceiling: conv4 trained on the test classes", "ceiling")]
    assert rows[-1]["balanced_accuracy"] == pytest.approx(
        json.loads(next((result.store.root / "context").glob("ceiling-*.json")).read_text())["ceiling"]["balanced_accuracy"])
    # A published record keeps them (`bench publish`), and reads like the run.
    record = publish_run(result.store.root, tmp_path / "record")
    assert sum(p.parent.name == "context" for p in record) == 3
    assert [r["label"] for r in RunStore(tmp_path / "record").load_context()] == [
        r["label"] for r in result.store.load_context()]
    assert not (publish_run(run(merge(None, flags(tmp_path, data, "bare", train_episodes=2, test_episodes=5,
                                                     context=[]))).store.root, tmp_path / "bare-record")
                and (tmp_path / "bare-record" / "context").exists())
    read = read_leaderboard(board)
    assert [r["context"] for r in read] == ["", "floor", "floor", "seen", "ceiling"]
    assert bench_here("table", board, "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["method"] for row in document["rows"]][0] == "protonet"
    assert document["rows"][0]["1-shot"]["mark"] == "best"
    assert all("mark" not in row["1-shot"] for row in document["rows"][1:])


def test_the_seen_holdout_is_seeded_recorded_and_never_trained_on(tmp_path):
    data = coded_faces(tmp_path / "t.npz", True)
    protocol = prepare(merge(None, flags(tmp_path, data, "h")))
    held = protocol.seen_holdout
    assert len(held) == 5 * 15  # a quarter of each training class's 60 images
    assert protocol.labels[held].tolist() == sorted(protocol.labels[held].tolist())  # per class
    again = prepare(merge(None, flags(tmp_path, data, "h2", seeds=[3])))
    assert np.array_equal(again.seen_holdout, held)  # a function of the data and split, not the run's seed
    training = set(protocol.training_images().indices.tolist())
    assert not training & set(held.tolist()) and len(training) == 5 * 45
    sampler = protocol.train_sampler(1, 0)
    drawn = {int(i) for _ in range(200) for e in [sampler.sample()] for i in (*e.support, *e.query)}
    assert not drawn & set(held.tolist())
    seen = protocol.seen_episodes(1, 0, 30)
    assert set(np.concatenate([seen.support.ravel(), seen.query.ravel()]).tolist()) <= set(held.tolist())
    # Recorded: the hold-out enters the settings (hash) of a run that has it, and only of such a run.
    result = run(merge(None, flags(tmp_path, data, "rec", train_episodes=2, test_episodes=5, ceiling_epochs=1)))
    cell = result.store.load_cells()[0]
    assert cell["settings"]["seen_holdout_images"] == {"fraction": 0.25, "sha": protocol.seen_holdout_sha}
    assert cell["seen"]["holdout_sha"] == protocol.seen_holdout_sha and len(cell["seen"]["accuracies"]) == 5
    assert "evaluate_seen" in cell["stages"]
    plain = run(merge(None, flags(tmp_path, data, "plain", train_episodes=2, test_episodes=5, context=["floor"])))
    other = plain.store.load_cells()[0]
    assert "seen_holdout_images" not in other["settings"] and "seen" not in other
    assert other["settings_hash"] != cell["settings_hash"]
    assert not prepare(merge(None, flags(tmp_path, data, "p", context=["floor"]))).holds_out_seen_images


def test_impossible_or_unknown_context_requests_are_refused_in_one_line(tmp_path):
    data = coded_faces(tmp_path / "t.npz", True, per_class=12)
    with pytest.raises(ConfigError, match="unknown context row 'flor'; choose from floor, seen, ceiling"):
        merge(None, {"context": ["flor"]})
    with pytest.raises(ConfigError, match="seen_holdout"):
        merge(None, {"seen_holdout": 1.5})
    assert merge(None, {"context": ["none"]}).context == []
    # 12 images a class: a quarter is 3, too few for 1 shot + 5 queries of seen-class or ceiling episodes.
    with pytest.raises(EpisodeError, match="seen-class"):
        run(merge(None, flags(tmp_path, data, "few", context=["seen"])))
    with pytest.raises(EpisodeError, match="ceiling"):
        run(merge(None, flags(tmp_path, data, "few2", context=["ceiling"])))
    assert not (tmp_path / "runs" / "few2" / "cells").exists() or not any((tmp_path / "runs" / "few2" / "cells").iterdir())


def test_without_context_no_rows_and_a_damaged_row_is_left_out_by_name(tmp_path, capsys):
    data = coded_faces(tmp_path / "t.npz", True)
    bare = run(merge(None, flags(tmp_path, data, "bare", train_episodes=2, test_episodes=5, context=[])))
    assert not (bare.store.root / "context").exists()
    result = run(merge(None, flags(tmp_path, data, "floor", train_episodes=2, test_episodes=5, context=["floor"])))
    paths = sorted((result.store.root / "context").glob("*.json"))
    assert [p.name for p in paths] == ["floor-conv4__3w1s5q__seed0.json", "floor-pixels__3w1s5q__seed0.json"]
    record = json.loads(paths[0].read_text())
    assert record["test_episodes_sha"] == result.store.load_cells()[0]["test_episodes_sha"]  # paired episodes
    assert record["uses_test_labels"] is False and record["settings_hash"] == result.store.load_cells()[0]["settings_hash"]
    assert record["train_seconds"] == 0.0  # a floor trains nothing
    record["mean"] += 1
    paths[0].write_text(json.dumps(record))
    with pytest.raises(RecordError, match="checksum"):
        read_context(paths[0])
    assert [r["label"] for r in RunStore(result.store.root).load_context()] == ["floor: pixels"]
    assert "floor-conv4__3w1s5q__seed0.json' does not match its checksum" in capsys.readouterr().err
    # --resume computes the missing row again, and nothing else.
    paths[0].unlink()
    assert bench_here("run", "--resume", "floor", "--output-dir", tmp_path / "runs") == 0
    assert sorted(p.name for p in (result.store.root / "context").glob("*.json")) == [p.name for p in paths]


def test_a_split_without_validation_classes_selects_on_part_of_the_seen_holdout(tmp_path):
    data = coded_faces(tmp_path / "t.npz", True)
    with pytest.raises(ConfigError, match="--context seen"):
        prepare(merge(None, flags(tmp_path, data, "refused", context=["floor"], val_episodes=10)))
    config = merge(None, flags(tmp_path, data, "selected", context=["seen"], val_episodes=10, val_interval=20,
                               train_episodes=40, test_episodes=10))
    protocol = prepare(config)
    selection, rows = set(protocol.seen_selection.tolist()), set(protocol.seen_row_images.tolist())
    assert selection and rows and not selection & rows and selection | rows == set(protocol.seen_holdout.tolist())
    validation = protocol.val_episodes(1, 0, 10)
    assert set(np.concatenate([validation.support.ravel(), validation.query.ravel()]).tolist()) <= selection
    seen = protocol.seen_episodes(1, 0, 10)
    assert set(np.concatenate([seen.support.ravel(), seen.query.ravel()]).tolist()) <= rows
    assert not set(protocol.training_images().indices.tolist()) & (selection | rows)
    cell = run(config).store.load_cells()[0]
    assert cell["val_curve"]["source"].startswith("seen-class hold-out") and cell["val_curve"]["episode"] == [20, 40]
    assert cell["val_curve"]["selected_episode"] in (20, 40) and len(cell["seen"]["accuracies"]) == 10
    # A split with validation classes keeps selecting on them, and its records are unchanged (no source).
    assert prepare(merge(None, flags(tmp_path, data, "plain", context=["seen"]))).validation_source is None


def test_each_context_row_says_when_it_starts_and_what_it_gave(tmp_path, caplog):
    """Context rows are computed after the cells, a ceiling training a classifier first (minutes on a CPU): each
    row says when it starts, the ceiling when its classifier is trained, and each row its accuracy and time."""
    data = coded_faces(tmp_path / "t.npz", True)
    with caplog.at_level("INFO", logger="fewshot_bench"):
        run(merge(None, flags(tmp_path, data, "said", train_episodes=2, test_episodes=5, ceiling_epochs=1,
                              context=["floor", "ceiling"])))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("context row ")]
    rows = sorted({m.split(":")[0].removeprefix("context row ") for m in said})
    assert len(rows) == 3 and sum(r.startswith("floor") for r in rows) == 2 and rows[0].startswith("ceiling"), rows
    for row in rows:
        mine = [m for m in said if m.startswith(f"context row {row}:")]
        assert mine[0].endswith(": computing") and re.search(r": \d+\.\d\d % \(\d+\.\d s\)$", mine[-1]), mine
    assert any("ceiling classifier trained (1 epoch(s)" in m for m in said)

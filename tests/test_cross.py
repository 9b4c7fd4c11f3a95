"""The cross-dataset suite: every ordered pair of the user's datasets in one command, a train × test matrix
named by the user's names, each pair trained on one dataset's emotions and tested on the other's."""

import json

import pytest

from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.episodic.protocol import load_dataset, resolve_split
from test_datasets import FER, write_class_folders, write_fer_csv, write_rafdb

TINY = ["--methods", "protonet", "--shots", "1", "--query", "2", "--train-episodes", "2", "--test-episodes", "3",
        "--image-size", "20", "--device", "cpu", "--threads", "1"]


@pytest.fixture
def four_datasets(tmp_path):
    (tmp_path / "fer").mkdir()
    write_fer_csv(tmp_path / "fer" / "fer2013.csv", per_class=6)
    write_rafdb(tmp_path / "raf")
    write_class_folders(tmp_path / "ck", [name.capitalize() for name in FER], per_class=5, suffix=".png", size=30)
    write_class_folders(tmp_path / "jaffe", FER, per_class=5, suffix=".png", size=30)
    return [f"fer2013=fer2013:{tmp_path / 'fer'}", f"raf=rafdb:{tmp_path / 'raf'}",
            f"ckplus=image-folder:{tmp_path / 'ck'}", f"jaffe=image-folder:{tmp_path / 'jaffe'}"]


def test_one_command_runs_every_pair_and_prints_the_matrix(tmp_path, capsys, four_datasets):
    runs = tmp_path / "runs"
    code = main(["cross", *four_datasets, *TINY, "--output-dir", str(runs), "--run-id", "suite", "--format", "json"])
    assert code == 0
    matrix = json.loads(capsys.readouterr().out)
    names = ["fer2013", "raf", "ckplus", "jaffe"]
    assert matrix["columns"] == ["method", "shot", "train on", *(f"test on {n}" for n in names)]
    rows = {row["train on"]: [row[f"test on {n}"] for n in names] for row in matrix["rows"]}
    assert list(rows) == names  # the user's names, not the plugins'
    for i, train in enumerate(names):
        for j, entry in enumerate(rows[train]):
            assert (entry is None) == (i == j)  # every pair but the diagonal
            if entry is not None:
                assert 0.0 <= entry["mean"] <= 100.0
    assert len(list(runs.glob("suite-*-to-*"))) == 12
    # each pair trains on the first dataset's training emotions and tests on the second's unseen ones
    cell = json.loads(next((runs / "suite-fer2013-to-jaffe" / "cells").glob("*.json")).read_text())
    classes = cell["settings"]["split_classes"]
    assert classes["train"] == [f"fer2013/{e}" for e in ("happy", "neutral", "sad", "surprise")]
    assert classes["test"] == [f"jaffe/{e}" for e in ("angry", "disgust", "fear")]
    cell = json.loads(next((runs / "suite-ckplus-to-raf" / "cells").glob("*.json")).read_text())
    assert cell["settings"]["split_classes"]["train"] == ["ckplus/Happy", "ckplus/Neutral", "ckplus/Sad",
                                                          "ckplus/Surprise"]
    # run again: every pair's cells are kept, nothing is recomputed
    before = {p: p.stat().st_mtime_ns for p in runs.glob("suite-*/cells/*.json")}
    assert main(["cross", *four_datasets, *TINY, "--output-dir", str(runs), "--run-id", "suite"]) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.glob("suite-*/cells/*.json")} == before


def test_two_image_folders_combine_under_their_own_names(tmp_path, four_datasets):
    config = merge(None, {"dataset": "combined", "split": "cross", "image_size": 20,
                          "dataset_options": {"parts": ";".join(four_datasets[2:])}})
    data = load_dataset(config)
    assert "ckplus/Angry" in data.class_names and "jaffe/angry" in data.class_names
    assert resolve_split(config, data).test == ("jaffe/angry", "jaffe/disgust", "jaffe/fear")


@pytest.mark.parametrize("parts, message", [
    ("a=image-folder:{ck};a=image-folder:{ck}", "two parts are named 'a'"),
    ("a=nosuch:{ck};b=image-folder:{ck}", "unknown dataset 'nosuch'"),
    ("a=image-folder:{odd};b=image-folder:{ck}", "part 'a' has no split preset and no class folder named 'happy'"),
])
def test_bad_parts_are_one_line_errors(tmp_path, capsys, four_datasets, parts, message):
    write_class_folders(tmp_path / "odd", ["x", "y", "z"], per_class=3, suffix=".png", size=30)
    parts = parts.format(ck=tmp_path / "ck", odd=tmp_path / "odd")
    code = main(["run", "--dataset", "combined", "--dataset-option", f"parts={parts}", "--split", "cross", *TINY,
                 "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 3 and len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_cross_sets_the_dataset_itself(tmp_path, capsys, four_datasets):
    assert main(["cross", *four_datasets[:2], "--dataset", "fer2013", *TINY]) == 3
    assert "bench cross sets 'dataset' for each pair itself" in capsys.readouterr().err

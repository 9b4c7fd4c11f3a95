"""The cross-dataset suite: every ordered pair of the user's datasets in one command, a train × test matrix
named by the user's names, each pair trained on one dataset's emotions and tested on the other's."""

import json
import shutil

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
            assert 0.0 <= entry["mean"] <= 100.0  # every pair, the in-domain diagonal included
    assert len(list(runs.glob("suite-*-to-*"))) == 16
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
    ("a=image-folder:{odd};b=image-folder:{ck}", "part 'a' has no class 'happy' (nor a synonym"),
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


SYNONYMS = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]


def test_synonym_folders_diagonal_and_a_failing_pair_still_give_the_full_matrix(tmp_path, capsys, four_datasets):
    write_class_folders(tmp_path / "lab", SYNONYMS, per_class=5, suffix=".png", size=30)
    write_class_folders(tmp_path / "odd", ["x", "y", "z"], per_class=5, suffix=".png", size=30)
    datasets = [f"lab=image-folder:{tmp_path / 'lab'}", four_datasets[3], f"odd=image-folder:{tmp_path / 'odd'}"]
    code = main(["cross", *datasets, *TINY, "--output-dir", str(tmp_path / "runs"), "--run-id", "s",
                 "--format", "json"])
    captured = capsys.readouterr()
    matrix = json.loads(captured.out)
    assert code == 1 and "Traceback" not in captured.err
    rows = {row["train on"]: row for row in matrix["rows"]}
    assert list(rows) == ["lab", "jaffe", "odd"]
    for train in ("lab", "jaffe"):
        for test in ("lab", "jaffe"):  # the diagonal in the same matrix, synonyms matched
            assert 0.0 <= rows[train][f"test on {test}"]["mean"] <= 100.0
    for train, test in [("lab", "odd"), ("jaffe", "odd"), ("odd", "lab"), ("odd", "jaffe"), ("odd", "odd")]:
        assert "has no class" in rows[train][f"test on {test}"]["error"]
    assert len(matrix["failed"]) == 5 and "Failed: odd → lab" in matrix["caption"]
    assert "pair odd → lab failed" in captured.err.replace("\n", " ")
    cell = json.loads(next((tmp_path / "runs" / "s-lab-to-jaffe" / "cells").glob("*.json")).read_text())
    assert cell["settings"]["split_classes"]["train"] == ["lab/happiness", "lab/neutral", "lab/sadness",
                                                          "lab/surprise"]
    diagonal = json.loads(next((tmp_path / "runs" / "s-lab-to-lab" / "cells").glob("*.json")).read_text())
    assert diagonal["settings"]["split_classes"]["test"] == ["lab/anger", "lab/disgust", "lab/fear"]


def test_per_dataset_splits_and_class_maps_from_the_command_line(tmp_path, capsys, four_datasets):
    write_class_folders(tmp_path / "num", [str(i) for i in range(7)], per_class=5, suffix=".png", size=30)
    # other faces than num's (the harness refuses one image under a training and a test class of two datasets)
    write_class_folders(tmp_path / "odd", [*(f"skip{i}" for i in range(7)), "w", "x", "y", "z"], per_class=5,
                        suffix=".png", size=30)
    for i in range(7):
        shutil.rmtree(tmp_path / "odd" / f"skip{i}")
    datasets = [f"num=image-folder:{tmp_path / 'num'}", f"odd=image-folder:{tmp_path / 'odd'}"]
    class_map = ",".join(f"num/{i}={name}" for i, name in enumerate(FER))
    code = main(["cross", *datasets, *TINY, "--way", "2", "--class-map", class_map, "--part-splits",
                 "{odd: {train: [w, x], test: [y, z]}}", "--output-dir", str(tmp_path / "runs"), "--run-id", "m"])
    assert code == 0, capsys.readouterr().err
    cell = json.loads(next((tmp_path / "runs" / "m-num-to-odd" / "cells").glob("*.json")).read_text())
    assert cell["settings"]["split_classes"]["train"] == [f"num/{e}" for e in ("happy", "neutral", "sad", "surprise")]
    assert cell["settings"]["split_classes"]["test"] == ["odd/y", "odd/z"]
    assert main(["cross", *datasets, *TINY, "--class-map", "3=happy"]) == 3
    assert "must name its dataset as NAME/CLASS" in capsys.readouterr().err
    assert main(["cross", *datasets, *TINY, "--part-splits", "{nope: {train: [a], test: [b]}}"]) == 3


def test_every_row_of_a_column_is_tested_on_the_same_episodes_and_parts_keep_their_dedup(tmp_path, four_datasets):
    from fewshot_bench.config import RunConfig
    from fewshot_bench.engine.cross import cross_runs
    from fewshot_bench.episodic.protocol import prepare

    base = merge(None, {"image_size": 20, "query": 2, "shots": [1]})
    runs = {(r.train, r.test): r.config for r in cross_runs(base, four_datasets, "x")}
    images = []
    for train in ("fer2013", "raf", "jaffe"):
        protocol = prepare(runs[(train, "jaffe")])
        episodes = protocol.test_episodes(1, 0, 4)
        images.append((protocol.dataset.images[episodes.support.ravel()], protocol.dataset.images[episodes.query.ravel()]))
    for support, query in images[1:]:
        assert (support == images[0][0]).all() and (query == images[0][1]).all()
    fer = prepare(runs[("fer2013", "jaffe")]).dataset
    assert fer.metadata["dedup"]["fer2013"] is not None and fer.metadata["dedup"]["jaffe"] is None
    assert RunConfig().dedup is None  # the per-part defaults apply unless --dedup says otherwise


def test_jobs_run_pairs_side_by_side(tmp_path, capsys, four_datasets):
    code = main(["cross", *four_datasets[2:], *TINY, "--jobs", "2", "--output-dir", str(tmp_path / "runs"),
                 "--run-id", "j", "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.count("\n") >= 3 and "started" in captured.err
    assert len(list((tmp_path / "runs").glob("j-*-to-*"))) == 4

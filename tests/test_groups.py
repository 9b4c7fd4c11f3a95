"""Subjects and sequences (``episodic.groups``): declared per image by the dataset, counted in every cell's test
episodes (``group_leak``), kept apart within episodes (``--group-separation subgroup|group``) and across the split
(``split``). The leak is real: on data where frames of one sequence are near-identical, a query whose sequence
sits in its support is answered by who it is, and accuracy is inflated until the option removes it."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.protocol import load_dataset, prepare
from fewshot_bench.errors import EpisodeError

EMOTIONS = ("happy", "neutral", "sad", "surprise", "angry", "disgust", "fear")
TINY = ["--methods", "protonet", "--shots", "1", "--query", "2", "--train-episodes", "0", "--test-episodes", "60",
        "--image-size", "16", "--device", "cpu", "--threads", "1", "--context", "none"]


def write_sequences(root: Path, sequences: int = 2, frames: int = 8, size: int = 16, folder_names=EMOTIONS,
                    subjects: int = 5, step: int = 3) -> None:
    """A lab dataset in miniature: per class, ``sequences`` recordings of distinct subjects, each ``frames`` nearly
    identical frames (±3 grey levels) of a random face-sized pattern that carries no class information.
    Files are named like CK+'s: S<subject>_<sequence>_<frame>.png."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(folder_names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for s in range(sequences):
            subject = (c + s * step) % subjects  # subjects pose several emotions, as in a lab
            base = rng.integers(40, 216, (size, size)).astype(np.int16)
            for f in range(frames):
                frame = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(frame, "L").save(root / name / f"S{subject:03d}_{c:03d}{s}_{f:08d}.png")


PATTERN = "--dataset-option=group_pattern=(?P<group>S\\d+)_(?P<subgroup>\\d+)_"


def cells(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))]


def test_same_sequence_support_inflates_accuracy_and_separation_removes_it(tmp_path):
    write_sequences(tmp_path / "lab")
    common = ["run", "--dataset", "image-folder", "--data-root", str(tmp_path / "lab"), PATTERN, *TINY,
              "--output-dir", str(tmp_path / "runs")]
    assert main([*common, "--run-id", "leaky"]) == 0
    assert main([*common, "--run-id", "apart", "--group-separation", "subgroup"]) == 0
    assert main([*common, "--run-id", "subjects", "--group-separation", "group"]) == 0
    leaky, = cells(tmp_path / "runs" / "leaky")
    apart, = cells(tmp_path / "runs" / "apart")
    subjects, = cells(tmp_path / "runs" / "subjects")
    # The split is the paper's, found by the emotion names of the folders (no split given).
    assert leaky["settings"]["split_classes"]["test"] == ["angry", "disgust", "fear"]
    # Counted without the option: many queries share their sequence with the support, and accuracy shows it.
    assert leaky["group_leak"]["subgroup"]["queries"] > 60
    assert leaky["mean"] > 50.0
    # The frames of a sequence are near-duplicates too: counted the same way.
    assert leaky["group_leak"]["near_duplicate"]["queries"] >= leaky["group_leak"]["subgroup"]["queries"] > 0
    # With it: not one shared pair, and accuracy is back near chance (a third).
    assert apart["group_leak"]["subgroup"]["pairs"] == 0 and apart["mean"] < 45.0
    assert subjects["group_leak"]["group"]["pairs"] == 0 and subjects["group_leak"]["subgroup"]["pairs"] == 0
    assert leaky["mean"] - apart["mean"] > 10.0
    # The setting is part of what a cell measures; runs without it keep their settings hash.
    assert apart["settings"]["group_separation"] == "subgroup" and "group_separation" not in leaky["settings"]
    assert apart["settings_hash"] != leaky["settings_hash"]


def test_tables_warn_when_support_and_query_share_a_group(tmp_path, capsys):
    write_sequences(tmp_path / "lab")
    common = ["run", "--dataset", "image-folder", "--data-root", str(tmp_path / "lab"), PATTERN, *TINY,
              "--test-episodes", "10", "--output-dir", str(tmp_path / "runs")]
    assert main([*common, "--run-id", "leaky"]) == 0
    assert main([*common, "--run-id", "apart", "--group-separation", "group"]) == 0
    capsys.readouterr()
    assert main(["table", str(tmp_path / "runs" / "leaky"), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "Warning:" in out and "share a sequence (sub-group)" in out and "--group-separation" in out
    assert main(["table", str(tmp_path / "runs" / "apart"), "--format", "markdown"]) == 0
    assert "Warning:" not in capsys.readouterr().out


def test_group_disjoint_split_keeps_every_test_subject_out_of_training(tmp_path):
    write_sequences(tmp_path / "lab", sequences=16, frames=2, subjects=32, step=5)
    config = merge(None, {"dataset": "image-folder", "data_root": str(tmp_path / "lab"), "image_size": 16,
                          "dataset_options": {"group_pattern": r"(?P<group>S\d+)_(?P<subgroup>\d+)_"},
                          "group_separation": "split", "context": ["seen"], "query": 1, "shots": [1]})
    protocol = prepare(config)
    groups = protocol.groups
    trained = set(groups[protocol.training_images().indices])
    tested = set(groups[protocol.test_episodes(1, 0, 20).query.ravel()]) | set(
        groups[protocol.test_episodes(1, 0, 20).support.ravel()])
    assert trained and tested and not trained & tested
    held = set(groups[protocol.seen_row_images])
    assert held and not held & trained  # the seen-class hold-out is whole subjects, none of whom trains
    assert protocol.group_excluded > 0


def test_manifest_columns_declare_groups_and_a_missing_column_is_named(tmp_path):
    write_sequences(tmp_path / "lab", sequences=2, frames=3)
    manifest = tmp_path / "lab.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "subject", "sequence"])
        for path in sorted((tmp_path / "lab").glob("*/*.png")):
            subject, sequence, _ = path.stem.split("_")
            writer.writerow([path.relative_to(tmp_path), path.parent.name, subject, sequence])
    base = {"dataset": "csv-manifest", "data_root": str(manifest), "image_size": 16}
    data = load_dataset(merge(None, {**base, "dataset_options": {"group_column": "subject",
                                                                   "subgroup_column": "sequence"}}))
    assert len(set(data.metadata["groups"])) == 5 and len(set(data.metadata["subgroups"])) == 14
    assert main(["datasets", "show", "csv-manifest", "--data-root", str(manifest),
                 "--dataset-option", "group_column=person"]) == 3


def test_a_class_of_one_group_cannot_be_separated(tmp_path):
    labels = np.array([0] * 4 + [1] * 4)
    groups = np.array([0, 0, 0, 0, 1, 2, 1, 2])
    with pytest.raises(EpisodeError, match="class 'a' holds images of one group"):
        EpisodeSampler(labels, [0, 1], 2, 1, 1, 0, ["a", "b"], groups=groups)
    # Without groups, the same request is drawn exactly as before (the option changes no other run).
    plain = EpisodeSampler(labels, [0, 1], 2, 1, 1, 0, ["a", "b"]).sample_set(5)
    again = EpisodeSampler(labels, [0, 1], 2, 1, 1, 0, ["a", "b"], groups=None).sample_set(5)
    assert np.array_equal(plain.support, again.support) and np.array_equal(plain.query, again.query)


def test_separation_without_declared_groups_is_a_one_line_error(tmp_path, capsys):
    write_sequences(tmp_path / "lab", sequences=2, frames=3)
    code = main(["run", "--dataset", "image-folder", "--data-root", str(tmp_path / "lab"), *TINY,
                 "--group-separation", "group", "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 3 and "declares none" in err and "group_pattern" in err and "Traceback" not in err


def test_synthetic_fer_declares_its_people_as_groups():
    data = load_dataset(merge(None, {"dataset": "synthetic-fer", "dataset_options": {"total": 300,
                                                                                       "identities": 10}}))
    assert len(data.metadata["groups"]) == len(data.labels) and len(set(data.metadata["groups"])) == 10


def test_near_dedup_keeps_one_frame_per_sequence_and_is_recorded(tmp_path):
    write_sequences(tmp_path / "lab", sequences=4, frames=3)
    base = {"dataset": "image-folder", "data_root": str(tmp_path / "lab"), "image_size": 16}
    plain = load_dataset(merge(None, base))
    near = load_dataset(merge(None, {**base, "near_dedup": True}))
    assert len(plain.labels) == 7 * 4 * 3 and len(near.labels) == 7 * 4
    assert near.metadata["near_dedup"]["same_class_near_copies"] == 7 * 4 * 2
    assert near.fingerprint != plain.fingerprint  # the data's fingerprint (and so every settings hash) says so
    assert main(["run", "--dataset", "image-folder", "--data-root", str(tmp_path / "lab"), *TINY,
                 "--test-episodes", "5", "--near-dedup", "true", "--output-dir", str(tmp_path / "runs"),
                 "--run-id", "near"]) == 0
    cell, = cells(tmp_path / "runs" / "near")
    assert cell["near_dedup"]["same_class_near_copies"] == 56
    assert cell["group_leak"]["near_duplicate"]["pairs"] == 0


@pytest.mark.parametrize("path, pattern, group, subgroup", [
    ("anger/S010_004_00000019.png", r"(?P<group>S\d+)_(?P<subgroup>\d+)_", "S010", "S010/004"),
    ("anger/KA.AN1.39.tiff", r"^[^/]*/(?P<group>[A-Z]{2})\.", "KA", None),
    ("anger/AF01ANS.JPG", r"(?P<subgroup>[AB](?P<group>[FM]\d\d))", "F01", "F01/AF01"),
])
def test_the_documented_patterns_read_subject_and_sequence(tmp_path, path, pattern, group, subgroup):
    from fewshot_bench.imageio import groups_from_paths

    found = groups_from_paths([tmp_path / path], pattern, root=tmp_path)
    assert found["groups"][0] == group
    assert (found["subgroups"][0] if "subgroups" in found else None) == subgroup
    with pytest.raises(Exception, match="does not match image 'happy/x.png'"):
        groups_from_paths([tmp_path / "happy" / "x.png"], pattern, root=tmp_path)


def test_datasets_check_takes_a_split_mapping_and_reports_near_duplicate_frames(tmp_path, capsys):
    write_sequences(tmp_path / "lab", sequences=2, frames=3,
                    folder_names=("happiness", "neutral", "sadness", "surprise", "anger", "disgust", "fear"))
    assert main(["datasets", "check", "image-folder", "--data-root", str(tmp_path / "lab"), "--split",
                 "{train: [happy, neutral], test: [angry, fear]}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "split 'custom'" in out and "near-duplicate" in out
    # frames of one sequence: 3 pairs per sequence, 2 sequences, 7 classes
    assert "42 pairs" in out or "42 near-duplicate pairs" in out, out[:2000]

"""Exact duplicate images: reported per class and across the split, removed by ``dedup``."""

import numpy as np
import pytest
import torch

from conftest import tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.data import ImageDataset
from fewshot_bench.engine.runner import run
from fewshot_bench.errors import DatasetError
from fewshot_bench.episodic.duplicates import check, deduplicated, duplicate_groups
from fewshot_bench.splits import ClassSplit

NAMES = ["happy", "sad", "angry", "fear"]


def planted(n_per_class=6, seed=0):
    """Distinct noise images, then: image 1 copied twice inside 'happy', and one 'angry' image that is also
    filed under 'happy' (a test image seen in meta-training under another label)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    images = rng.integers(0, 256, (len(labels), 1, 16, 16), dtype=np.uint8)
    images[2] = images[1]
    images[3] = images[1]
    angry = np.flatnonzero(labels == 2)[0]
    images[4] = images[angry]
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), NAMES, "planted")


def test_duplicates_are_found_and_reported_by_class_and_split():
    dataset = planted()
    assert [g.tolist() for g in duplicate_groups(dataset.images)] == [[1, 2, 3], [4, 12]]
    report = check(dataset, ClassSplit(("happy", "sad"), ("angry", "fear")))
    assert (report.groups, report.duplicated_images) == (2, 5)
    assert report.same_class_copies == {"happy": 2} and report.cross_class_groups == 1
    assert report.cross_split_groups == {"test/train": 1} and report.cross_split_images == {"test/train": 2}


def test_dedup_keeps_one_image_per_class_group_and_drops_ambiguous_ones():
    dataset = planted()
    clean, removed = deduplicated(dataset)
    assert removed == {"same_class_copies": 2, "cross_class_images": 2}
    assert len(clean.labels) == len(dataset.labels) - 4 and not duplicate_groups(clean.images)
    assert clean.fingerprint != dataset.fingerprint and clean.metadata["dedup"] == removed
    assert deduplicated(clean)[1] == {"same_class_copies": 0, "cross_class_images": 0}


def test_a_run_records_what_dedup_removed(tmp_path):
    path = tmp_path / "faces.npz"
    dataset = planted(n_per_class=12)
    np.savez(path, images=dataset.images.numpy()[:, 0], labels=dataset.labels.numpy(), class_names=np.array(NAMES))
    flags = tiny_run_flags(tmp_path, dataset="array", data_root=str(path), dataset_options={}, shots=[1],
                           way=2, query=2, split={"train": ["happy", "sad"], "test": ["angry", "fear"]})
    # Without de-duplication the images filed under two of the split's classes are refused before training (a
    # leak between the classes), naming the way out.
    with pytest.raises(DatasetError, match="are identical images"):
        run(merge(None, {**flags, "run_id": "raw"}))
    cleaned = run(merge(None, {**flags, "run_id": "clean", "dedup": True})).store.load_cells()[0]
    assert cleaned["dedup"] == {"same_class_copies": 2, "cross_class_images": 2}


def test_bench_datasets_check_prints_the_report(tmp_path, capsys):
    path = tmp_path / "faces.npz"
    dataset = planted()
    np.savez(path, images=dataset.images.numpy()[:, 0], labels=dataset.labels.numpy(), class_names=np.array(NAMES))
    assert main(["datasets", "check", "array", "--data-root", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "24 images; 2 groups of identical images holding 5 images (3 extra copies)" in out
    assert "│ happy │ 2 │" in out and "groups filed under two or more classes: 1" in out
    assert main(["datasets", "check", "synthetic-fer", "--dataset-option", "total=200"]) == 0
    assert "split 'paper', groups spanning two of its parts" in " ".join(capsys.readouterr().out.split())

"""Near-duplicate images (frames of one video sequence): found, grouped, reported and removed."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_bench.cli.main import build_parser, main
from fewshot_bench.data import ImageDataset
from fewshot_bench.episodic import near_duplicates
from fewshot_bench.episodic.duplicates import duplicate_groups
from fewshot_bench.episodic.near_duplicates import (DEFAULT_NEAR_THRESHOLD, check_near, near_deduplicated,
                                                    near_duplicate_groups, near_duplicate_pairs, thumbnails)
from fewshot_bench.errors import ConfigError
from fewshot_bench.splits import ClassSplit

NAMES = ["happy", "sad", "angry"]


def sequences(n_classes=3, per_class=2, frames=4, side=48, channels=1, seed=0):
    """``per_class`` video sequences per class, each a random base face plus ``frames`` frames that differ from
    each other by small noise (about 6/255 mean absolute difference), interleaved so that no sequence is
    contiguous. Returns the images, labels and each image's sequence number."""
    rng = np.random.default_rng(seed)
    images, labels, sequence = [], [], []
    for s in range(n_classes * per_class):
        base = rng.integers(30, 226, (channels, side, side))
        for _ in range(frames):
            noise = rng.integers(-8, 9, (channels, side, side))
            images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
            labels.append(s // per_class)
            sequence.append(s)
    order = rng.permutation(len(images))
    return (np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order], np.asarray(sequence)[order])


def dataset_of(images, labels, names=NAMES, **metadata):
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), list(names), "frames", metadata=metadata)


def within_sequence_pairs(sequence):
    return [[i, j] for i, j in itertools.combinations(range(len(sequence)), 2) if sequence[i] == sequence[j]]


def test_frames_of_one_sequence_are_near_duplicates_and_other_sequences_are_not():
    images, labels, sequence = sequences()
    as_float = images.astype(float)
    frames = [np.abs(as_float[i] - as_float[j]).mean() for i, j in within_sequence_pairs(sequence)]
    assert 4 < np.mean(frames) < 8  # the fixture is what the module is for: ~6/255 between frames
    data = dataset_of(images, labels)
    assert duplicate_groups(data.images) == []  # which byte-identical detection misses
    pairs = near_duplicate_pairs(data.images)
    assert pairs.dtype == np.int64 and pairs.tolist() == within_sequence_pairs(sequence)
    groups = near_duplicate_groups(pairs, len(labels))
    assert [g.tolist() for g in groups] == sorted(np.flatnonzero(sequence == s).tolist() for s in range(6))
    # Restricted to some images: only pairs among them, named by dataset index.
    chosen = np.flatnonzero(labels != 1)[::-1]  # any order
    assert near_duplicate_pairs(data.images, indices=chosen).tolist() == [
        p for p in within_sequence_pairs(sequence) if labels[p[0]] != 1]


def test_the_threshold_is_respected_exactly():
    # 32×32 images shrink to 16×16 by averaging 2×2 blocks, exactly in float32: a uniform shift of 10 grey
    # levels is an RMS difference of exactly 10. Bright images make the float32 norms large.
    rng = np.random.default_rng(1)
    base = rng.integers(200, 240, (1, 1, 32, 32))
    images = np.concatenate([base, base + 10, base - 40]).astype(np.uint8)
    data = dataset_of(images, np.zeros(3, dtype=np.int64), ["a"])
    assert near_duplicate_pairs(data.images, 10.0).tolist() == [[0, 1]]  # at the threshold: a near-duplicate
    assert near_duplicate_pairs(data.images, 9.99).tolist() == []  # just over it: not
    assert near_duplicate_pairs(data.images, 50.0).tolist() == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ConfigError, match="threshold must be a number ≥ 0"):
        near_duplicate_pairs(data.images, -1.0)
    assert check_near(data, threshold=0.0).pairs == 0


def test_blocked_float32_search_matches_a_float64_brute_force(monkeypatch):
    # Many pairs near the threshold, and small blocks so that rows meet columns across several blocks.
    monkeypatch.setattr(near_duplicates, "_TILE", 37)
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (1, 1, 16, 16))
    images = np.clip(base + rng.integers(-20, 21, (150, 1, 16, 16)), 0, 255).astype(np.uint8)
    data = dataset_of(images, np.zeros(150, dtype=np.int64), ["a"])
    thumbs = thumbnails(data.images).astype(np.float64)
    assert thumbs.shape == (150, 256) and np.array_equal(thumbs, images.reshape(150, -1))  # 16×16: itself
    distances = np.sqrt(((thumbs[:, None] - thumbs[None]) ** 2).mean(axis=2))
    threshold = float(np.median(distances[np.triu_indices(150, 1)]))
    expected = np.argwhere(np.triu(distances <= threshold, 1))
    assert np.array_equal(near_duplicate_pairs(data.images, threshold), expected) and 1000 < len(expected) < 10000


def test_groups_are_the_connected_components_of_the_pairs():
    pairs = np.array([[5, 7], [1, 2], [7, 9], [2, 3], [0, 9]])
    assert [g.tolist() for g in near_duplicate_groups(pairs, 12)] == [[0, 5, 7, 9], [1, 2, 3]]
    chain = np.stack([np.arange(99, 0, -1), np.arange(98, -1, -1)], axis=1)  # 98-99, 97-98, ... 0-1
    assert [g.tolist() for g in near_duplicate_groups(chain, 100)] == [list(range(100))]
    assert near_duplicate_groups(np.empty((0, 2), dtype=np.int64), 5) == []


def test_a_sequence_under_two_classes_is_reported_and_dropped_and_same_class_frames_keep_one():
    images, labels, sequence = sequences()
    labels = labels.copy()
    moved = np.flatnonzero(sequence == 0)[1]  # one frame of a 'happy' sequence filed under 'angry'
    labels[moved] = 2
    files = np.array([f"s{s}/{i}.png" for i, s in enumerate(sequence)], dtype=object)
    data = dataset_of(images, labels, files=files, usage=np.array(["Training"] * len(labels)))
    report = check_near(data)
    assert (report.pairs, report.exact_pairs, report.groups, report.grouped_images) == (36, 0, 6, 24)
    assert report.cross_class_groups == 1 and report.threshold == DEFAULT_NEAR_THRESHOLD
    # Within-class pairs: 'happy' has one sequence of 4 frames (6 pairs) and one of 3 (3 pairs).
    assert report.same_class_pairs == {"happy": 9, "sad": 12, "angry": 12}
    i, j, class_i, class_j, distance = report.examples[0]  # the pair across classes comes first
    assert {class_i, class_j} == {"happy", "angry"} and moved in (i, j) and 0 < distance <= 10
    assert len(report.examples) == 5

    clean, removed = near_deduplicated(data)
    assert removed == {"threshold": 10.0, "same_class_near_copies": 15, "cross_class_images": 4}
    kept = np.setdiff1d(np.arange(24), np.flatnonzero(sequence == 0))
    kept = [i for i in kept if i == np.flatnonzero(sequence == sequence[i])[0]]  # first frame of each sequence
    assert len(clean.labels) == 5 and clean.labels.tolist() == labels[kept].tolist()
    assert clean.metadata["files"].tolist() == files[kept].tolist() and len(clean.metadata["usage"]) == 5
    assert clean.metadata["near_dedup"] == removed and clean.fingerprint == f"{data.fingerprint}-near10"
    assert near_duplicate_pairs(clean.images).tolist() == []
    again, removed = near_deduplicated(clean)
    assert again is clean and removed == {"threshold": 10.0, "same_class_near_copies": 0, "cross_class_images": 0}
    # A lower threshold finds fewer frames alike: nothing at 1 grey level.
    assert near_deduplicated(data, 1.0)[1]["same_class_near_copies"] == 0


def test_rgb_frames_are_compared_in_gray():
    images, labels, sequence = sequences(channels=3, side=40)
    data = dataset_of(images, labels)
    gray = (images.astype(np.float64) * np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(axis=1)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(gray)[:, None], 16).reshape(24, -1)
    assert np.allclose(thumbnails(data.images), expected.numpy(), atol=1e-3)
    assert near_duplicate_pairs(data.images).tolist() == within_sequence_pairs(sequence)


def test_groups_across_split_parts_and_across_the_parts_of_a_combined_dataset():
    images, labels, sequence = sequences(n_classes=4, per_class=1)
    labels = labels.copy()
    labels[np.flatnonzero(sequence == 0)[0]] = 3  # a 'a/x' (train) face also under 'b/w' (test)
    labels[np.flatnonzero(sequence == 1)[0]] = 2  # a 'a/y' face also under 'b/z', both train
    names = ["a/x", "a/y", "b/z", "b/w"]
    data = dataset_of(images, labels, names, parts=["b", "a"], plugins=["image-folder", "image-folder"])
    report = check_near(data, ClassSplit(("a/x", "a/y", "b/z"), ("b/w",)))
    assert report.cross_class_groups == 2
    assert report.cross_split_groups == {"test/train": 1} and report.cross_split_images == {"test/train": 4}
    assert report.cross_part_groups == {"b/a": 2}  # in the order of the parts
    plain = dataset_of(images, labels, names)  # no parts: not a combined dataset
    assert check_near(plain).cross_part_groups == {} and check_near(plain).cross_split_groups == {}


def test_bench_datasets_check_prints_the_near_duplicate_report(tmp_path, capsys):
    images, labels, sequence = sequences()
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "faces" / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"seq{sequence[i]}_frame{i}.png")
    root = str(tmp_path / "faces")
    assert main(["datasets", "check", "image-folder", "--data-root", root]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "24 images; 0 groups of identical images" in out
    assert ("near-duplicates (RMS difference of 16×16 grayscale thumbnails ≤ 10 grey levels of 255; "
            "--near-threshold to change): 36 pairs (0 of them byte-identical) in 6 groups holding 24 images") in out
    assert "near-duplicate pairs within a class" in out and "│ happy │ 12 │" in out
    assert "near-duplicate groups filed under two or more classes: 0" in out
    assert "combined dataset" not in out  # an image folder has no parts
    examples = out.split("example: ")[1:]
    # Five examples, named by file, from five sequences (one per group while groups last).
    assert len(examples) == 5 and len({example.split("/seq")[1].split("_")[0] for example in examples}) == 5
    assert main(["datasets", "check", "image-folder", "--data-root", root, "--near-threshold", "0.5"]) == 0
    assert "≤ 0.5 grey levels of 255; --near-threshold to change): 0 pairs" in " ".join(capsys.readouterr().out.split())
    assert main(["datasets", "check", "image-folder", "--data-root", root, "--no-near"]) == 0
    out = capsys.readouterr().out
    assert "groups of identical images" in out and "near-duplicate" not in out
    check = build_parser().parse_args(["datasets", "check", "x"])
    assert check.near_threshold == DEFAULT_NEAR_THRESHOLD and check.no_near is False

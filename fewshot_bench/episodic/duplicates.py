"""Exact duplicate images: found, reported per class and per split part, and removed.

Web-scraped FER datasets hold byte-identical copies of one face, sometimes under two emotions. A copy
filed under a training and a test emotion puts a test image into meta-training, which the class-disjoint
protocol forbids; copies within one class make a test episode's query equal to its support. ``bench
datasets check`` reports both; the ``dedup`` setting (the dataset plugin's default, on for FER2013)
keeps one image of each same-class group and drops every image of a group that spans several classes,
whose label is ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fewshot_bench.data import ImageDataset
from fewshot_bench.splits import ClassSplit


def duplicate_groups(images: torch.Tensor) -> list[np.ndarray]:
    """Index arrays (ascending) of the images that are byte-identical to each other, one per group of ≥ 2,
    in the order of their first image. Rows are hashed first (cheaply, in chunks) and only rows that share a
    hash are compared byte for byte, so a large dataset is checked in a fraction of a second."""
    flat = np.ascontiguousarray(images.numpy().reshape(len(images), -1))
    if len(flat) == 0:
        return []
    hashes = _row_hashes(flat)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    if len(candidates) == 0:
        return []
    rows = np.ascontiguousarray(flat[candidates]).view(np.dtype((np.void, flat.shape[1])))[:, 0]
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return sorted((candidates[group] for group in np.split(order, bounds) if len(group) > 1),
                  key=lambda group: group[0])


def _row_hashes(flat: np.ndarray) -> np.ndarray:
    """(N,) uint64: a multiply-and-add hash of each row's bytes (equal rows hash equal; a collision of two
    different rows only costs a byte comparison in ``duplicate_groups``)."""
    n, width = flat.shape
    pad = (-width) % 8
    multipliers = np.random.default_rng(0x5EED).integers(1, 2 ** 63, (width + pad) // 8, dtype=np.uint64)
    multipliers |= np.uint64(1)
    out = np.empty(n, dtype=np.uint64)
    step = max(1, (1 << 24) // max(width, 1))  # about 16 MB of rows at a time
    for start in range(0, n, step):
        chunk = flat[start:start + step]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((len(chunk), pad), np.uint8)], axis=1)
        words = np.ascontiguousarray(chunk).view(np.uint64)
        with np.errstate(over="ignore"):
            out[start:start + step] = (words * multipliers).sum(axis=1, dtype=np.uint64)
    return out


@dataclass
class DuplicateReport:
    """What ``duplicate_groups`` found in a dataset, by class and by split part.

    Attributes:
        images: images in the dataset.
        groups: groups of identical images.
        duplicated_images: images that have at least one identical copy.
        same_class_copies: per class, images that repeat an earlier image of the same class (removable).
        cross_class_groups: groups whose images carry more than one label.
        cross_split_groups: per pair of split parts ("test/train", ...), groups that span both parts.
        cross_split_images: the images of those groups.
    """

    images: int
    groups: int
    duplicated_images: int
    same_class_copies: dict[str, int] = field(default_factory=dict)
    cross_class_groups: int = 0
    cross_split_groups: dict[str, int] = field(default_factory=dict)
    cross_split_images: dict[str, int] = field(default_factory=dict)


def check(dataset: ImageDataset, split: ClassSplit | None = None) -> DuplicateReport:
    """Duplicates of ``dataset``; with ``split``, also the images shared between its train/val/test parts."""
    labels = dataset.labels.numpy()
    groups = duplicate_groups(dataset.images)
    report = DuplicateReport(len(labels), len(groups), int(sum(len(g) for g in groups)))
    part_of = {}
    if split is not None:
        for part in ("train", "val", "test"):
            for name in getattr(split, part):
                part_of[dataset.class_id(name)] = part
    for group in groups:
        classes = labels[group]
        for class_id in np.unique(classes):
            extra = int((classes == class_id).sum()) - 1
            if extra:
                name = dataset.class_names[class_id]
                report.same_class_copies[name] = report.same_class_copies.get(name, 0) + extra
        if len(np.unique(classes)) > 1:
            report.cross_class_groups += 1
        parts = sorted({part_of[c] for c in classes if c in part_of})
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                key = f"{a}/{b}"
                report.cross_split_groups[key] = report.cross_split_groups.get(key, 0) + 1
                in_pair = sum(1 for c in classes if part_of.get(c) in (a, b))
                report.cross_split_images[key] = report.cross_split_images.get(key, 0) + in_pair
    return report


def deduplicated(dataset: ImageDataset, within: np.ndarray | None = None) -> tuple[ImageDataset, dict[str, Any]]:
    """``dataset`` without exact duplicates: one image kept per same-class group, every image of a
    cross-class group dropped; returns the counts of what was removed. ``within``: only duplicates among these
    indices (one part of a combined dataset)."""
    if within is None:
        groups = duplicate_groups(dataset.images)
    else:
        groups = [within[g] for g in duplicate_groups(dataset.images[torch.from_numpy(within)])]
    return without_groups(dataset, groups, "dedup", "dedup", ("same_class_copies", "cross_class_images"))


def without_groups(dataset: ImageDataset, groups: list[np.ndarray], key: str, suffix: str,
                   names: tuple[str, str], extra: dict[str, Any] | None = None) -> tuple[ImageDataset, dict[str, Any]]:
    """``dataset`` less its copies: of each group of one class the first image stays, every image of a group
    spanning classes goes (its label is ambiguous). ``names`` label the two counts of what was removed, which are
    returned (with ``extra``) and kept in ``metadata[key]``; the fingerprint gets ``-suffix``. Exact duplicates
    (``deduplicated``) and near-duplicates (``near_duplicates.near_deduplicated``) are removed by this one rule."""
    labels = dataset.labels.numpy()
    drop: list[int] = []
    same_class = cross_class = 0
    for group in groups:
        if len(np.unique(labels[group])) > 1:
            drop.extend(group.tolist())
            cross_class += len(group)
        else:
            drop.extend(group[1:].tolist())
            same_class += len(group) - 1
    removed = {**(extra or {}), names[0]: same_class, names[1]: cross_class}
    if not drop:
        return dataset, removed
    keep = np.setdiff1d(np.arange(len(labels)), np.asarray(drop))
    index = torch.from_numpy(keep)
    metadata = {**dataset.metadata, key: removed}
    for name, value in dataset.metadata.items():
        # Per-image metadata (file names, usage, groups) follows the kept images.
        if isinstance(value, np.ndarray) and len(value) == len(labels):
            metadata[name] = value[keep]
    return ImageDataset(dataset.images[index].contiguous(), dataset.labels[index], dataset.class_names, dataset.name,
                        fingerprint=f"{dataset.fingerprint}-{suffix}", metadata=metadata), removed


def cross_class_groups(dataset: ImageDataset, split: ClassSplit) -> list[np.ndarray]:
    """The groups of identical images filed under two or more of ``split``'s classes (images of classes the
    split does not use are left out), in the order of their first image."""
    used = [dataset.class_id(name) for name in (*split.train, *split.val, *split.test)]
    labels = dataset.labels.numpy()
    result = []
    for group in duplicate_groups(dataset.images):
        group = group[np.isin(labels[group], used)]
        if len(np.unique(labels[group])) > 1:
            result.append(group)
    return result

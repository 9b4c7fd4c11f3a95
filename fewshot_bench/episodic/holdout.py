"""The seen-class hold-out: a seeded share of every training class's images that no training ever sees.

Drawn per class (``round(fraction × images)``), from a generator seeded by the data's and the split's
fingerprints and the fraction alone — the same for every cell, seed and method of a run, and recorded (its sha
enters the result settings). Meta-training, pre-training, the fit stage and the normalisation statistics use the
training classes without these images; the ``evaluate_seen`` stage draws episodes from them only.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fewshot_bench.episodic.episodes import derive_seed


def seen_holdout(labels: np.ndarray, train_ids: list[int], fraction: float, data_fingerprint: str,
                 split_fingerprint: str) -> np.ndarray:
    """Sorted dataset indices of the held-out images of the training classes ``train_ids``."""
    return image_holdout(labels, train_ids, fraction, "seen-holdout", data_fingerprint, split_fingerprint)


def image_holdout(labels: np.ndarray, class_ids: list[int], fraction: float, purpose: str, data_fingerprint: str,
                  split_fingerprint: str, within: np.ndarray | None = None) -> np.ndarray:
    """Sorted dataset indices of ``round(fraction × images)`` images of each class of ``class_ids`` (among the
    indices ``within`` when given), drawn by a generator seeded by ``purpose``, the data's and the split's
    fingerprints and the fraction."""
    rng = np.random.default_rng(derive_seed(0, purpose, data_fingerprint, split_fingerprint, fraction))
    held = []
    for c in sorted(class_ids):
        items = np.flatnonzero(labels == c)
        if within is not None:
            items = np.intersect1d(items, within)
        held.append(rng.choice(items, int(round(fraction * len(items))), replace=False))
    return np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, dtype=np.int64)


def group_holdout(labels: np.ndarray, class_ids: list[int], codes: np.ndarray, fraction: float, purpose: str,
                  data_fingerprint: str, split_fingerprint: str, within: np.ndarray | None = None) -> np.ndarray:
    """Like ``image_holdout``, but whole groups (subjects), so no subject of the held-out images ever trains
    (``--group-separation split``): groups are taken in a seeded order until the held-out images are at least
    ``fraction`` of the candidates (images of ``class_ids``, among ``within`` when given) and every class has
    images of two groups, never leaving a class's remaining images fewer than two groups (what group-separated episodes need)."""
    rng = np.random.default_rng(derive_seed(0, purpose, "groups", data_fingerprint, split_fingerprint, fraction))
    items = np.flatnonzero(np.isin(labels, class_ids))
    if within is not None:
        items = np.intersect1d(items, within)
    item_codes, item_labels = codes[items], labels[items]
    present = np.unique(item_codes)
    held = np.zeros(len(items), dtype=bool)
    for group in rng.permutation(present):
        if held.sum() >= fraction * len(items) and all(
                len(np.unique(item_codes[held & (item_labels == c)])) >= 2 for c in np.unique(item_labels)):
            break
        mine = item_codes == group
        would_empty = any(len(np.unique(item_codes[~held & ~mine & (item_labels == c)])) < 2
                          for c in np.unique(item_labels[mine]))
        if not would_empty:
            held |= mine
    return np.sort(items[held]).astype(np.int64)


def holdout_sha(indices: np.ndarray) -> str:
    """A short sha256 of the held-out indices (recorded in the result settings)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def masked_labels(labels: np.ndarray, keep: np.ndarray | None = None, drop: np.ndarray | None = None) -> np.ndarray:
    """``labels`` with every image outside ``keep`` (or inside ``drop``) labelled -1, which the episode sampler
    and the training-image listing never draw from."""
    masked = np.array(labels, copy=True)
    if keep is not None:
        outside = np.ones(len(labels), dtype=bool)
        outside[keep] = False
        masked[outside] = -1
    if drop is not None:
        masked[drop] = -1
    return masked

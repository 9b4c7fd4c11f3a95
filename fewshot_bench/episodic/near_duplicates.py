"""Near-duplicate images: frames of one video sequence, found, reported and removed.

FER datasets built from video (and scraped ones holding re-encoded copies) contain images that differ by a few
grey levels: consecutive frames of one sequence differ by about 6/255 in mean absolute pixel difference, while
images of different sequences differ by about 55/255. Byte-identical detection (``duplicates.py``) misses them,
yet a frame in the support set and its neighbour in the query set make an episode nearly trivial, and a
sequence split between a training and a test class leaks the test face into meta-training.

The rule, stated in every report: two images are near-duplicates when the root-mean-square difference of their
16×16 grayscale thumbnails is at most ``threshold`` grey levels (0–255 scale; default 10). A thumbnail is the
image converted to gray (0.299 R + 0.587 G + 0.114 B) and shrunk to 16×16 by area averaging (antialiased:
every pixel contributes), kept in floating point (not rounded). Near-duplicates are grouped transitively (a
group is a connected component of the near-duplicate pairs), so a long sequence forms one group even when its
first and last frames differ by more than the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_bench.data import ImageDataset
from fewshot_bench.episodic.duplicates import without_groups
from fewshot_bench.errors import ConfigError
from fewshot_bench.splits import ClassSplit

THUMBNAIL_SIDE = 16
DEFAULT_NEAR_THRESHOLD = 10.0
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_CHUNK_IMAGES = 4096  # images shrunk at a time: bounds the float copy of the images (48×48: ~40 MB)
_TILE = 2048  # rows and columns of one block of the distance matrix (float32: 16 MB)


def near_rule(threshold: float = DEFAULT_NEAR_THRESHOLD) -> str:
    """The near-duplicate rule in words, for reports and help texts."""
    return (f"RMS difference of {THUMBNAIL_SIDE}×{THUMBNAIL_SIDE} grayscale thumbnails ≤ {threshold:g} "
            "grey levels of 255")


def thumbnails(images: torch.Tensor) -> np.ndarray:
    """(N, 256) float32: each image as a 16×16 grayscale thumbnail on the 0–255 scale (area downsampling),
    shrunk in chunks so that only a chunk of the images is ever held as floats."""
    n = images.shape[0]
    out = np.empty((n, THUMBNAIL_SIDE * THUMBNAIL_SIDE), dtype=np.float32)
    for start in range(0, n, _CHUNK_IMAGES):
        chunk = images[start:start + _CHUNK_IMAGES].float()
        if chunk.shape[1] == 3:
            weights = torch.tensor(_GRAY_WEIGHTS).view(1, 3, 1, 1)
            chunk = (chunk * weights).sum(1, keepdim=True)
        elif chunk.shape[1] != 1:
            raise ConfigError(f"near-duplicates need 1- or 3-channel images, got {chunk.shape[1]} channels")
        # Area averaging: each thumbnail pixel is the mean of the image pixels it covers (adaptive pooling is
        # torch's "area" interpolation), so no pixel is skipped as in nearest or plain bilinear shrinking.
        small = F.adaptive_avg_pool2d(chunk, (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out[start:start + len(chunk)] = small.reshape(len(chunk), -1).numpy()
    return out


def near_duplicate_pairs(images: torch.Tensor, threshold: float = DEFAULT_NEAR_THRESHOLD,
                         indices: np.ndarray | None = None) -> np.ndarray:
    """(P, 2) int64 dataset indices ``(i, j)``, ``i < j``, of the near-duplicate pairs (thumbnail RMS
    difference ≤ ``threshold``) among ``indices`` (default: every image), in lexicographic order."""
    chosen = _chosen(len(images), indices)
    pairs, _ = _pairs_and_distances(thumbnails(images[torch.from_numpy(chosen)]), threshold)
    return chosen[pairs]


def _chosen(n: int, indices: np.ndarray | None) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    chosen = np.unique(np.asarray(indices, dtype=np.int64))  # sorted: i < j in positions means i < j in indices
    if len(chosen) and (chosen[0] < 0 or chosen[-1] >= n):
        raise ValueError(f"near-duplicate indices must lie in 0..{n - 1}")
    return chosen


def _pairs_and_distances(thumbs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(a, b)``, ``a < b``, of the thumbnail pairs within ``threshold``, and their RMS distances.

    Squared distances come from ‖a‖² + ‖b‖² − 2a·b, one block of rows against the columns at or after them at
    a time (only the upper triangle is computed). The blocks are float32 for speed, so they only select
    candidates: a pair is kept if its float32 distance is within the threshold plus a bound on float32's
    rounding error (relative 4e-5 of ‖a‖² + ‖b‖², above the worst case for 256-term dot products), and every
    candidate's distance is then recomputed directly, as the mean of squared differences in float64 (the
    differences of float32 thumbnails are exact there). So the float32 shortcut never decides a pair: one at
    the threshold is kept and one just over it is not."""
    if not threshold >= 0:
        raise ConfigError(f"near-duplicate threshold must be a number ≥ 0, got {threshold}")
    n, width = thumbs.shape
    empty = np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float64)
    if n < 2:
        return empty
    # Centring changes no distance but shrinks the norms, and with them float32's cancellation error.
    exact64 = thumbs.astype(np.float64)  # float32 values are exact in float64: so are their differences
    centred32 = (exact64 - exact64.mean(axis=0)).astype(np.float32)
    squares = (centred32.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    minus_two = -2.0 * centred32
    limit = np.float32(width * threshold ** 2)  # the threshold on the summed (not mean) squared difference
    found_a, found_b = [], []
    for row in range(0, n, _TILE):
        rows = centred32[row:row + _TILE]
        row_squares = squares[row:row + _TILE]
        for col in range(row, n, _TILE):
            col_squares = squares[col:col + _TILE]
            margin = np.float32(4e-5) * (row_squares.max() + col_squares.max()) + np.float32(1.0)
            block = rows @ minus_two[col:col + _TILE].T  # −2a·b
            block += col_squares[None, :]
            if col == row:  # the diagonal block: only j > i (each image is at distance 0 from itself)
                block[np.arange(len(rows))[:, None] >= np.arange(block.shape[1])[None, :]] = np.inf
            # Compare −2a·b + ‖b‖² with limit − ‖a‖² (no pass adding ‖a‖²), and only in rows whose minimum
            # passes: near-duplicates are rare, and np.nonzero over a whole block costs half its matmul.
            bound = limit + margin - row_squares
            hit = np.flatnonzero(block.min(axis=1) <= bound)
            a, b = np.nonzero(block[hit] <= bound[hit, None])
            found_a.append(hit[a] + row)
            found_b.append(b + col)
    a = np.concatenate(found_a).astype(np.int64)
    b = np.concatenate(found_b).astype(np.int64)
    if len(a) == 0:
        return empty
    mean_squares = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), 1 << 16):  # candidates at a time: bounds the (pairs, 256) difference array
        part = slice(start, start + (1 << 16))
        mean_squares[part] = ((exact64[a[part]] - exact64[b[part]]) ** 2).mean(axis=1)
    keep = mean_squares <= float(threshold) ** 2
    pairs = np.stack([a[keep], b[keep]], axis=1)
    distances = np.sqrt(mean_squares[keep])
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], distances[order]


def near_duplicate_groups(pairs: np.ndarray, n: int) -> list[np.ndarray]:
    """The connected components of ``pairs`` (indices into ``n`` images) with ≥ 2 images: index arrays
    (ascending), in the order of their first image."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return []
    a, b = pairs[:, 0], pairs[:, 1]
    # Hook-and-jump union-find, vectorised: each round hooks the root of every still-split pair under the
    # smaller root, then points every image straight at its root. Roots only decrease, so a root is always
    # the smallest index of its component.
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        split = ra != rb
        if not split.any():
            break
        np.minimum.at(parent, np.maximum(ra[split], rb[split]), np.minimum(ra[split], rb[split]))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    sizes = np.bincount(parent, minlength=n)
    members = np.flatnonzero(sizes[parent] > 1)
    if len(members) == 0:
        return []
    roots = parent[members]
    order = np.argsort(roots, kind="stable")  # stable: each group stays ascending
    bounds = np.flatnonzero(np.diff(roots[order])) + 1
    return np.split(members[order], bounds)


@dataclass
class NearDuplicateReport:
    """What ``near_duplicate_pairs`` found in a dataset, by class, by split part and by part of a combined
    dataset.

    Attributes:
        threshold: the rule's threshold (RMS thumbnail difference, grey levels of 255).
        images: images in the dataset.
        pairs: near-duplicate pairs.
        exact_pairs: of them, pairs of byte-identical images (also in the exact-duplicate report).
        groups: groups of near-duplicates (connected components of the pairs).
        grouped_images: images in those groups.
        same_class_pairs: per class, pairs whose two images are of that class.
        cross_class_groups: groups whose images carry more than one label.
        cross_split_groups: per pair of split parts ("test/train", ...), groups that span both parts.
        cross_split_images: the images of those groups that lie in the two parts.
        cross_part_groups: for a combined dataset (``metadata["parts"]``, class names "part/name"), per pair
            of its parts ("fer2013/rafdb", in the order of the parts), groups that span both parts.
        examples: up to 5 pairs ``(i, j, class_i, class_j, distance)``, pairs across classes first.
    """

    threshold: float
    images: int
    pairs: int = 0
    exact_pairs: int = 0
    groups: int = 0
    grouped_images: int = 0
    same_class_pairs: dict[str, int] = field(default_factory=dict)
    cross_class_groups: int = 0
    cross_split_groups: dict[str, int] = field(default_factory=dict)
    cross_split_images: dict[str, int] = field(default_factory=dict)
    cross_part_groups: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, int, str, str, float]] = field(default_factory=list)


def check_near(dataset: ImageDataset, split: ClassSplit | None = None,
               threshold: float = DEFAULT_NEAR_THRESHOLD) -> NearDuplicateReport:
    """Near-duplicates of ``dataset``; with ``split``, also the groups shared between its train/val/test parts."""
    labels = dataset.labels.numpy()
    names = dataset.class_names
    pairs, distances = _pairs_and_distances(thumbnails(dataset.images), threshold)
    groups = near_duplicate_groups(pairs, len(labels))
    report = NearDuplicateReport(float(threshold), len(labels), len(pairs), groups=len(groups),
                                 grouped_images=int(sum(len(g) for g in groups)))
    flat = dataset.images.reshape(len(labels), -1)
    # Distance 0 only says the thumbnails match; the images themselves are compared for "identical".
    identical = np.zeros(len(pairs), dtype=bool)
    for k in np.flatnonzero(distances == 0):
        identical[k] = torch.equal(flat[pairs[k, 0]], flat[pairs[k, 1]])
    report.exact_pairs = int(identical.sum())
    if len(pairs):
        same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
        for class_id, count in zip(*np.unique(labels[pairs[same, 0]], return_counts=True)):
            report.same_class_pairs[names[class_id]] = int(count)
        # Examples: pairs across classes first (the ones that matter most), then pairs that the exact check
        # does not already show; one pair per group while there are groups left, so one long sequence does
        # not fill them all.
        order = np.lexsort((np.arange(len(pairs)), identical, same))
        group_of = np.empty(len(labels), dtype=np.int64)
        for number, group in enumerate(groups):
            group_of[group] = number
        first = np.sort(np.unique(group_of[pairs[order, 0]], return_index=True)[1])  # positions in ``order``
        others = np.ones(len(order), dtype=bool)
        others[first] = False
        chosen = np.concatenate([order[first], order[others]])[:5]
        report.examples = [(int(pairs[k, 0]), int(pairs[k, 1]), names[labels[pairs[k, 0]]],
                            names[labels[pairs[k, 1]]], float(distances[k])) for k in chosen]
    split_part = {}
    if split is not None:
        for part in ("train", "val", "test"):
            for name in getattr(split, part):
                split_part[dataset.class_id(name)] = part
    parts = list(dataset.metadata.get("parts") or [])
    dataset_part = {}
    for class_id, name in enumerate(names):
        prefix = name.split("/", 1)[0]
        if "/" in name and prefix in parts:
            dataset_part[class_id] = prefix
    for group in groups:
        classes = labels[group]
        if len(np.unique(classes)) > 1:
            report.cross_class_groups += 1
        spanned = sorted({split_part[c] for c in classes if c in split_part})
        for i, a in enumerate(spanned):
            for b in spanned[i + 1:]:
                key = f"{a}/{b}"
                report.cross_split_groups[key] = report.cross_split_groups.get(key, 0) + 1
                in_pair = sum(1 for c in classes if split_part.get(c) in (a, b))
                report.cross_split_images[key] = report.cross_split_images.get(key, 0) + in_pair
        spanned = sorted({dataset_part[c] for c in classes if c in dataset_part}, key=parts.index)
        for i, a in enumerate(spanned):
            for b in spanned[i + 1:]:
                key = f"{a}/{b}"
                report.cross_part_groups[key] = report.cross_part_groups.get(key, 0) + 1
    return report


def near_deduplicated(dataset: ImageDataset, threshold: float = DEFAULT_NEAR_THRESHOLD
                      ) -> tuple[ImageDataset, dict[str, int | float]]:
    """``dataset`` without near-duplicates: in each group whose images are of one class only its first image is
    kept; every image of a group spanning several classes is dropped (its label is ambiguous). Returns the
    counts of what was removed, with the threshold."""
    pairs, _ = _pairs_and_distances(thumbnails(dataset.images), threshold)
    return without_groups(dataset, near_duplicate_groups(pairs, len(dataset.labels)), "near_dedup",
                          f"near{threshold:g}", ("same_class_near_copies", "cross_class_images"),
                          extra={"threshold": float(threshold)})

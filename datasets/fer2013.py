"""FER2013 (Goodfellow et al., ICML 2013 workshop "Challenges in Representation Learning").

35,887 grayscale 48×48 faces labelled 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
Where to get it: the Kaggle competition "challenges-in-representation-learning-facial-expression-
recognition-challenge" (``fer2013.csv``), or the Kaggle dataset "msambare/fer2013" (image folders).
Research use only; it cannot be redistributed, so bring your own copy.

Accepted layouts for ``--data-root`` (detected automatically, or forced with ``format``):

* ``csv``: the official ``fer2013.csv`` (columns ``emotion,pixels,Usage``), the file itself or a folder
  holding it;
* ``folder``: the Kaggle image-folder layout ``train/<emotion>/*.jpg`` and ``test/<emotion>/*.jpg``
  (``train`` is the Training usage, ``test`` is PublicTest + PrivateTest);
* ``npz``: an array file with ``images`` (N,48,48) uint8, ``labels`` 0..6 and optionally ``usage``.

``usage`` restricts the images to one part of the official release (Training, PublicTest, PrivateTest,
or ``test`` = both test parts) or keeps them all (the default: the few-shot split is by class, so all
images of a class are usable).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.cache import cached_arrays, source_key
from fewshot_bench.data import DatasetPlugin, ImageDataset, as_uint8_nchw
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import class_folder_files, decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
USAGES = ("Training", "PublicTest", "PrivateTest")
FOLDER_USAGE = {"train": "Training", "test": "test"}


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        columns = {name.strip().lower(): i for i, name in enumerate(header or [])}
        if not {"emotion", "pixels"} <= set(columns):
            raise DatasetError(f"CSV '{path}' has columns {','.join(header or [])!s}; FER2013's fer2013.csv needs "
                               "emotion,pixels,Usage")
        e, p, u = columns["emotion"], columns["pixels"], columns.get("usage")
        labels, pixels, usage = [], [], []
        for row_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                label = int(row[e])
            except (ValueError, IndexError):
                raise DatasetError(f"CSV '{path}' line {row_number}: emotion '{row[e] if len(row) > e else ''}' "
                                   "is not an integer label") from None
            if not 0 <= label < len(CLASS_NAMES):
                raise DatasetError(f"CSV '{path}' line {row_number}: unknown emotion label {label}; FER2013 labels "
                                   "are 0..6 (angry, disgust, fear, happy, sad, surprise, neutral)")
            text = row[p].strip() if len(row) > p else ""
            # Counting separators is ~10x cheaper than splitting; split only to report a bad row exactly.
            if text.count(" ") != 48 * 48 - 1 and len(text.split()) != 48 * 48:
                raise DatasetError(f"CSV '{path}' line {row_number}: {len(text.split())} pixel values, expected 2304 "
                                   "(48×48); the file is truncated or not FER2013")
            labels.append(label)
            pixels.append(row[p])
            usage.append(row[u] if u is not None and u < len(row) else "Training")
    if not labels:
        raise DatasetError(f"CSV '{path}' has no rows")
    try:
        flat = np.fromstring(" ".join(pixels), dtype=np.int64, sep=" ")
    except ValueError:
        raise DatasetError(f"CSV '{path}' has non-numeric pixel values; the file is damaged or not FER2013") from None
    if flat.size != len(labels) * 48 * 48:
        raise DatasetError(f"CSV '{path}' has non-numeric pixel values; the file is damaged or not FER2013")
    if flat.min() < 0 or flat.max() > 255:
        raise DatasetError(f"CSV '{path}' has pixel values outside 0..255")
    return {"images": flat.astype(np.uint8).reshape(-1, 48, 48), "labels": np.array(labels, dtype=np.int64),
            "usage": np.array(usage)}


def _folder_items(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(file, class name) items of the Kaggle folders (train/<emotion>/, test/<emotion>/) and each one's usage."""
    items: list[tuple[Path, str]] = []
    usage: list[str] = []
    names = {name: name for name in CLASS_NAMES}
    for part in (p for p in ("train", "test") if (root / p).is_dir()):
        found = class_folder_files(root / part, names)
        items.extend(found)
        usage.extend([FOLDER_USAGE[part]] * len(found))
    return items, usage


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    from fewshot_bench.datasets.arrays import read_npz

    data = read_npz(path)
    if "images" not in data or "labels" not in data:
        raise DatasetError(f"array file '{path}' needs 'images' and 'labels' arrays; it has {', '.join(data)}")
    arrays = {"images": data["images"], "labels": data["labels"].astype(np.int64)}
    arrays["usage"] = data["usage"].astype(str) if "usage" in data else np.full(len(arrays["labels"]), "Training")
    bad = arrays["labels"][(arrays["labels"] < 0) | (arrays["labels"] >= len(CLASS_NAMES))]
    if bad.size:
        raise DatasetError(f"array file '{path}' has unknown FER2013 label {int(bad[0])}; labels are 0..6")
    return arrays


def detect_format(root: Path) -> tuple[str, Path]:
    """Which layout ``root`` holds, and the file or folder to read."""
    if root.is_file():
        if root.suffix == ".npz":
            return "npz", root
        if root.suffix == ".csv":
            return "csv", root
        raise DatasetError(f"'{root}' is neither fer2013.csv nor an .npz array file")
    for candidate in (root / "fer2013.csv", root / "fer2013" / "fer2013.csv"):
        if candidate.is_file():
            return "csv", candidate
    if (root / "train").is_dir() or (root / "test").is_dir():
        return "folder", root
    npz = sorted(root.glob("*.npz"))
    if len(npz) == 1:
        return "npz", npz[0]
    raise DatasetError(f"no FER2013 data found in '{root}'; expected fer2013.csv, train/<emotion>/ and "
                       "test/<emotion>/ image folders, or one .npz array file")


@register_dataset("fer2013")
class FER2013(DatasetPlugin):
    """FER2013: 35,887 48×48 grayscale faces, 7 expressions (official CSV, Kaggle folders or .npz)."""

    where_to_get = "download fer2013.csv (Kaggle FER challenge) or the msambare/fer2013 image folders"
    # FER2013 holds 1,853 extra copies of identical images, 57 groups of them under two or more emotions (39
    # spanning the paper split's training and test emotions): removed unless a run sets dedup: false.
    dedup_default = True
    image_size, image_channels = 48, 1
    options = (
        Option("usage", str, "all", "official usage to keep", ("all", "Training", "PublicTest", "PrivateTest", "test")),
        Option("format", str, "auto", "layout of --data-root", ("auto", "csv", "folder", "npz")),
        Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        detected, path = detect_format(root)
        fmt = detected if options["format"] == "auto" else options["format"]
        if fmt != detected:
            raise DatasetError(f"'{root}' holds FER2013 in {detected} layout, not {fmt}; drop the format option")
        if fmt == "folder":
            # The Kaggle image folders go through the generic decoder (decoded at the run's size, one line
            # saying what was resized or converted, unreadable files reported), like every image folder.
            items, usage = _folder_items(path)
            decoded = decoded_dataset("fer2013", items, options, CLASS_NAMES, item_metadata={"usage": usage})
            arrays = {"images": decoded.images.permute(0, 2, 3, 1).numpy(), "labels": decoded.labels.numpy(),
                      "usage": decoded.metadata["usage"]}
        elif fmt == "npz":
            arrays = _read_npz(path)
        else:
            arrays = cached_arrays("fer2013-csv", source_key([path], ("csv",)), lambda: _read_csv(path))
        keep = _usage_mask(arrays["usage"], options["usage"], fmt)
        images = as_uint8_nchw(arrays["images"][keep], f"fer2013 '{path}'")
        return ImageDataset(images, torch.from_numpy(arrays["labels"][keep]), list(CLASS_NAMES), "fer2013",
                            metadata={"format": fmt, "usage": options["usage"]})


def _usage_mask(usage: np.ndarray, wanted: str, fmt: str) -> np.ndarray:
    if wanted == "all":
        return np.ones(len(usage), dtype=bool)
    if wanted == "test":
        return np.isin(usage, ["PublicTest", "PrivateTest", "test"])
    if fmt == "folder" and wanted in ("PublicTest", "PrivateTest"):
        raise DatasetError("the Kaggle image folders merge PublicTest and PrivateTest into test/; use usage=test, "
                           "or the official fer2013.csv to separate them")
    mask = usage == wanted
    if not mask.any():
        raise DatasetError(f"no FER2013 images have usage '{wanted}'")
    return mask

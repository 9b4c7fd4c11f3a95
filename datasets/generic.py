"""Datasets without code: an image folder per class, or a CSV manifest of ``path,label`` rows.

For any other dataset (CK+, JAFFE, AffectNet, a lab's own). These have no split presets: give the split
in your config, by class names::

    dataset: image-folder
    data_root: /data/ckplus
    split: {train: [happy, sad, surprise, neutral], test: [angry, disgust, fear]}

* ``image-folder``: ``<data-root>/<class name>/*.{png,jpg,jpeg,bmp,...}``;
* ``csv-manifest``: ``--data-root`` is a CSV file with a header containing ``path`` and ``label`` columns;
  relative paths are resolved against the CSV's folder; labels are class names (or any strings). Every label
  must be a class of the split, or of the list given with ``--dataset-option classes=a,b,c``: a typo is
  refused, never an extra class. A file listed twice is refused. The CSV is read as UTF-8, else Latin-1
  (``--dataset-option encoding=...`` to choose).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import class_folder_files, decoded_dataset, groups_from_paths
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset
from fewshot_bench.splits import ClassSplit

# Geometry comes from --image-size / --channels (default: the images' own: the most common size, a non-square
# one's shorter side; 1 channel when all are grayscale).
DECODE_OPTIONS = (
    Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
)
# Subjects and sequences (``episodic.groups``), from each file's path relative to the data root.
GROUP_OPTIONS = (
    Option("group_pattern", str, "", "regular expression finding each image's subject (named group 'group') and "
                                     "sequence ('subgroup') in its path below the data root, e.g. "
                                     "'(?P<group>S\\d+)_(?P<subgroup>\\d+)_' for CK+ (default: no groups)"),
)


def _decode_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that decide the decoded pixels (the cache key): not the group options."""
    return {k: v for k, v in options.items() if k not in ("group_pattern", "group_column", "subgroup_column")}


def _with_groups(dataset: ImageDataset, groups: dict[str, Any]) -> ImageDataset:
    """``dataset`` with per-image groups, following the files that were kept (corrupt ones may be skipped)."""
    files = [str(f) for f in dataset.metadata["files"]]
    for key, by_file in groups.items():
        dataset.metadata[key] = np.array([by_file[f] for f in files], dtype=object)
    return dataset


def emotion_presets(dataset: ImageDataset | None) -> tuple[str | None, dict[str, ClassSplit]]:
    """The CRN paper's split as preset ``paper`` (the default) when the dataset's classes hold all seven of its
    emotions under any spelling of the emotion vocabulary (``anger``, ``Sadness``, ...); else no preset."""
    from fewshot_bench.datasets.combined import PAPER_TEST, PAPER_TRAIN
    from fewshot_bench.emotions import find

    if dataset is None:
        return None, {}
    train = [find(name, dataset.class_names) for name in PAPER_TRAIN]
    test = [find(name, dataset.class_names) for name in PAPER_TEST]
    if None in train or None in test:
        return None, {}
    return "paper", {"paper": ClassSplit(tuple(train), tuple(test), (), "paper")}  # type: ignore[arg-type]


@register_dataset("image-folder")
class ImageFolder(DatasetPlugin):
    """Any dataset laid out as <data-root>/<class name>/<images>; split from your config."""

    where_to_get = "point --data-root at a folder with one sub-folder of images per class"
    options = DECODE_OPTIONS + GROUP_OPTIONS

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        items = class_folder_files(root)
        dataset = decoded_dataset("image-folder", items, _decode_options(options))
        if options.get("group_pattern"):
            paths = [str(path) for path, _ in items]
            parsed = groups_from_paths(paths, options["group_pattern"], root=root)
            _with_groups(dataset, {key: dict(zip(paths, values)) for key, values in parsed.items()})
        return dataset

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return emotion_presets(dataset)


# A manifest's own options: its encoding, and the class list its labels must come from.
MANIFEST_OPTIONS = DECODE_OPTIONS + GROUP_OPTIONS + (
    Option("group_column", str, "", "column holding each image's subject (group), e.g. subject"),
    Option("subgroup_column", str, "", "column holding each image's sequence or recording (sub-group)"),
    Option("classes", str, "", "the manifest's classes, comma-separated: a label outside them is refused (default: "
                               "every label must be a class of the split, so a typo is never an extra class)"),
    Option("encoding", str, "auto", "text encoding of the CSV (auto: UTF-8, else Latin-1 with a notice; or e.g. "
                                    "utf-8, latin-1, cp1252)"),
)


@register_dataset("csv-manifest")
class CSVManifest(DatasetPlugin):
    """Any dataset listed in a CSV of path,label rows; split from your config."""

    where_to_get = "point --data-root at a CSV file with 'path' and 'label' columns"
    options = MANIFEST_OPTIONS

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        if not root.is_file():
            raise DatasetError(f"csv-manifest needs --data-root to be a CSV file, got folder '{root}'")
        asked = (options.get("encoding") or "auto").strip()
        text, encoding = read_manifest_text(root, asked)
        guessed = asked.lower() == "auto" and encoding != "utf-8"
        declared = [c.strip() for c in (options.get("classes") or "").split(",") if c.strip()]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "path" not in columns or "label" not in columns:
            raise DatasetError(f"CSV '{root}' has columns {','.join(columns) or '(none)'}; a manifest needs "
                               "'path' and 'label' columns")
        for option in ("group_column", "subgroup_column"):
            if options.get(option) and options[option] not in columns:
                raise DatasetError(f"CSV '{root}' has no column '{options[option]}' (--dataset-option {option}); its "
                                   f"columns: {','.join(columns)}")
        items, first_line, listed = [], {}, {}
        group_of: dict[str, dict[str, str]] = {"groups": {}, "subgroups": {}}
        for number, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row["path"] or not row["label"]:
                raise DatasetError(f"CSV '{root}' line {number}: empty path or label")
            label = row["label"]
            if declared and label not in declared:
                close = difflib.get_close_matches(label, declared, n=3, cutoff=0.5)
                hint = f"nearest: {', '.join(close)}" if close else f"declared: {', '.join(declared)}"
                raise DatasetError(f"CSV '{root}' line {number}: label '{label}' is not one of the declared classes "
                                   f"({hint}); correct the label, or add it to --dataset-option classes=...")
            path = Path(row["path"])
            path = path if path.is_absolute() else root.parent / path
            if not path.is_file():
                read_as = f" (the CSV is not UTF-8 and was read as {encoding}: give its encoding with "\
                    "--dataset-option encoding=...)" if guessed else ""
                raise DatasetError(f"CSV '{root}' line {number}: image '{path}' does not exist{read_as}")
            key = os.path.normcase(os.path.realpath(path))
            if key in listed:
                earlier, earlier_label = listed[key]
                where = (f"under class '{earlier_label}' (line {earlier}) and class '{label}' (line {number}): one "
                         "image with two labels, a leak if one is a training and the other a test class"
                         if earlier_label != label else
                         f"twice under class '{label}' (lines {earlier} and {number}): a test episode could use it "
                         "as query and support")
                raise DatasetError(f"CSV '{root}': image '{path}' is listed {where}; list each image once")
            listed[key] = (number, label)
            if options.get("group_column"):
                group_of["groups"][str(path)] = row.get(options["group_column"], "") or f"line {number}"
            if options.get("subgroup_column"):
                group = row.get(options["group_column"], "") if options.get("group_column") else ""
                group_of["subgroups"][str(path)] = f"{group}/{row.get(options['subgroup_column'], '')}"
            first_line.setdefault(label, number)
            items.append((path, label))
        if not items:
            raise DatasetError(f"CSV '{root}' lists no images")
        if guessed:
            from fewshot_bench.console import logger

            logger.info(f"CSV '{root}' is not UTF-8: read as {encoding} (--dataset-option encoding=... to choose)")
        dataset = decoded_dataset("csv-manifest", items, _decode_options(options), class_names=declared or None,
                                  extra_key_files=[root])
        if options.get("group_pattern"):
            paths = [str(path) for path, _ in items]
            parsed = groups_from_paths(paths, options["group_pattern"], root=root.parent)
            group_of.update({key: dict(zip(paths, values)) for key, values in parsed.items()})
        _with_groups(dataset, {key: values for key, values in group_of.items() if values})
        dataset.metadata["manifest"] = str(root)
        if not declared:
            # Without a declared class list, every label must be a class of the run's split
            # (``protocol.check_manifest_labels``): a typo is refused, not turned into an extra, unused class.
            dataset.metadata["manifest_labels"] = first_line
        return dataset

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return emotion_presets(dataset)


def read_manifest_text(path: Path, encoding: str) -> tuple[str, str]:
    """The text of a CSV manifest and the encoding it was read with: ``auto`` reads UTF-8 (a byte-order mark
    is dropped) and falls back to Latin-1, which every byte sequence decodes as; any other encoding is used
    as given, and a file that does not decode with it is a one-line error naming the line."""
    data = path.read_bytes()
    if encoding.strip().lower() == "auto":
        try:
            return data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            return data.decode("latin-1"), "latin-1"
    try:
        encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        raise DatasetError(f"unknown encoding '{encoding}' for CSV '{path}'; use e.g. utf-8, latin-1 or cp1252 "
                           "(--dataset-option encoding=...)") from None
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DatasetError(f"CSV '{path}' line {line} is not {encoding} text; give its encoding with "
                           "--dataset-option encoding=... (e.g. latin-1, cp1252), or save it as UTF-8") from None

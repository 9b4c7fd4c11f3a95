"""Datasets without code: an image folder per class, or a CSV manifest of ``path,label`` rows.

For any other dataset (CK+, JAFFE, AffectNet, a lab's own). These have no split presets: give the split
in your config, by class names::

    dataset: image-folder
    data_root: /data/ckplus
    split: {train: [happy, sad, surprise, neutral], test: [angry, disgust, fear]}

* ``image-folder``: ``<data-root>/<class name>/*.{png,jpg,jpeg,bmp,...}``;
* ``csv-manifest``: ``--data-root`` is a CSV file with a header containing ``path`` and ``label`` columns;
  relative paths are resolved against the CSV's folder; labels are class names (or any strings).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import class_folder_files, decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset

# Geometry comes from --image-size / --channels (default: the images' own: the most common size, a non-square
# one's shorter side; 1 channel when all are grayscale).
DECODE_OPTIONS = (
    Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
)


@register_dataset("image-folder")
class ImageFolder(DatasetPlugin):
    """Any dataset laid out as <data-root>/<class name>/<images>; split from your config."""

    where_to_get = "point --data-root at a folder with one sub-folder of images per class"
    options = DECODE_OPTIONS

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        return decoded_dataset("image-folder", class_folder_files(root), options)


@register_dataset("csv-manifest")
class CSVManifest(DatasetPlugin):
    """Any dataset listed in a CSV of path,label rows; split from your config."""

    where_to_get = "point --data-root at a CSV file with 'path' and 'label' columns"
    options = DECODE_OPTIONS

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        if not root.is_file():
            raise DatasetError(f"csv-manifest needs --data-root to be a CSV file, got folder '{root}'")
        with root.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in columns or "label" not in columns:
                raise DatasetError(f"CSV '{root}' has columns {','.join(columns) or '(none)'}; a manifest needs "
                                   "'path' and 'label' columns")
            items = []
            for number, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                if not row["path"] or not row["label"]:
                    raise DatasetError(f"CSV '{root}' line {number}: empty path or label")
                path = Path(row["path"])
                path = path if path.is_absolute() else root.parent / path
                if not path.is_file():
                    raise DatasetError(f"CSV '{root}' line {number}: image '{path}' does not exist")
                items.append((path, row["label"]))
        if not items:
            raise DatasetError(f"CSV '{root}' lists no images")
        return decoded_dataset("csv-manifest", items, options, extra_key_files=[root])

"""``array``: a dataset stored as one ``.npz`` file — the convenient form of any image dataset.

Arrays: ``images`` (N,H,W) or (N,H,W,C) uint8; ``labels`` (N,) integers in 0..n_classes-1; optionally
``class_names`` (n_classes,) strings (default: "0", "1", ...). Other arrays are kept as metadata. There are
no split presets: give the split in your config by class names.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.data import DatasetPlugin, ImageDataset, as_uint8_nchw, channel_fix
from fewshot_bench.errors import DatasetError
from fewshot_bench.registry import register_dataset


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (no pickles), with a one-line error for unreadable files."""
    if not path.is_file():
        raise DatasetError(f"array file '{path}' does not exist; --data-root must name an .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read array file '{path}' ({exc}); is it a complete .npz file?") from None


@register_dataset("array")
class ArrayFile(DatasetPlugin):
    """Images, labels and class names from one .npz file; split from your config."""

    where_to_get = "point --data-root at an .npz file with 'images' and 'labels' arrays"

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        arrays = read_npz(root)
        for required in ("images", "labels"):
            if required not in arrays:
                raise DatasetError(f"array file '{root}' has no '{required}' array (it has: {', '.join(arrays)})")
        labels = arrays["labels"]
        if not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"array file '{root}': 'labels' must be integers, got {labels.dtype}")
        n_classes = int(labels.max()) + 1 if labels.size else 0
        names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else [str(i) for i in range(n_classes)]
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            bad = labels[(labels < 0) | (labels >= len(names))][0]
            raise DatasetError(f"array file '{root}': label {int(bad)} has no class name "
                               f"({len(names)} class_names given)")
        images = as_uint8_nchw(arrays["images"], f"array file '{root}'")
        if images.shape[1] not in (1, 3):
            # Gray + alpha or RGBA: the alpha channel is dropped only when the run asks for 1 or 3 channels.
            if images.shape[1] in (2, 4) and options.get("channels") in (1, 3):
                images = images[:, :images.shape[1] - 1].contiguous()
            else:
                raise DatasetError(f"array file '{root}' has {images.shape[1]}-channel images, but images must be "
                                   f"grayscale (1 channel) or RGB (3): {channel_fix(images.shape[1])}")
        if len(images) != len(labels):
            raise DatasetError(f"array file '{root}': {len(images)} images but {len(labels)} labels")
        metadata = {k: v for k, v in arrays.items() if k not in ("images", "labels", "class_names")}
        return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), names, "array", metadata=metadata)

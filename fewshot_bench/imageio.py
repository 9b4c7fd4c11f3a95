"""Decoding image files into one uint8 array, with errors that name the offending file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fewshot_bench.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass
class Decoded:
    """Decoded images and which of the requested files they came from.

    Attributes:
        images: (n_kept, H, W) or (n_kept, H, W, 3) uint8.
        kept: (n_files,) bool, False where a corrupt file was skipped.
        skipped: paths of the skipped files.
    """

    images: np.ndarray
    kept: np.ndarray
    skipped: list[str]


def decode_images(paths: Sequence[Path], size: int, channels: int, skip_corrupt: bool = False) -> Decoded:
    """Decode, convert to ``channels`` (1 or 3) and resize to ``size``×``size`` (Lanczos) every file.

    A corrupt or truncated file raises a one-line DatasetError naming it, unless ``skip_corrupt`` is set,
    in which case it is skipped and listed in ``Decoded.skipped``.
    """
    mode = {1: "L", 3: "RGB"}[channels]
    shape = (size, size) if channels == 1 else (size, size, 3)
    images = np.empty((len(paths), *shape), dtype=np.uint8)
    kept = np.ones(len(paths), dtype=bool)
    skipped: list[str] = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image.draft(mode, (size, size))  # lets JPEG decode at reduced scale when that is enough
                image = image.convert(mode)
                if image.size != (size, size):
                    image = image.resize((size, size), Image.LANCZOS)
                images[i] = np.asarray(image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if not skip_corrupt:
                raise DatasetError(
                    f"cannot decode image '{path}' ({type(exc).__name__}: {exc}); replace or delete it, or pass "
                    "--dataset-option skip_corrupt=true to skip unreadable files"
                ) from None
            kept[i] = False
            skipped.append(str(path))
    return Decoded(images[kept], kept, skipped)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folder_files(root: Path, name_of: dict[str, str] | None = None) -> list[tuple[Path, str]]:
    """(file, class name) for every image in ``root/<class folder>/``.

    ``name_of`` maps folder names to class names (a folder missing from it is an error naming the folder and
    the expected names); without it the folder name is the class name. An empty class folder is an error.
    """
    if not root.is_dir():
        raise DatasetError(f"folder '{root}' does not exist; check --data-root and the expected layout")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"folder '{root}' has no class folders; expected {root}/<class>/<image files>")
    items: list[tuple[Path, str]] = []
    for folder in folders:
        if name_of is not None and folder.name not in name_of:
            expected = ", ".join(sorted(name_of))
            raise DatasetError(f"unknown class folder '{folder}'; expected one of: {expected}")
        files = list_images(folder)
        if not files:
            raise DatasetError(f"class folder '{folder}' contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                               "add images or remove the folder")
        name = name_of[folder.name] if name_of is not None else folder.name
        items.extend((f, name) for f in files)
    return items


def decoded_dataset(name: str, items: list[tuple[Path, str]], options: dict[str, Any],
                    class_names: list[str] | None = None, extra_key_files: Sequence[Path] = ()) -> "ImageDataset":
    """Decode ``(file, class name)`` items (through the on-disk cache) into a dataset.

    ``options`` needs ``size``, ``channels`` and ``skip_corrupt``; ``class_names`` fixes the class order
    (default: sorted names). Skipped corrupt files are reported in one warning.
    """
    from fewshot_bench.cache import cached_arrays, source_key
    from fewshot_bench.data import ImageDataset, as_uint8_nchw
    from fewshot_bench.console import warn

    class_names = list(class_names) if class_names is not None else sorted({label for _, label in items})
    paths = [path for path, _ in items]
    key = source_key([*extra_key_files, *paths], sorted(options.items()))

    def build() -> dict[str, np.ndarray]:
        decoded = decode_images(paths, options["size"], options["channels"], options["skip_corrupt"])
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.array([index[label] for _, label in items], dtype=np.int64)[decoded.kept]
        return {"images": decoded.images, "labels": labels, "skipped": np.array(decoded.skipped, dtype=str)}

    arrays = cached_arrays(name, key, build)
    if len(arrays["skipped"]):
        warn(f"{name}: skipped {len(arrays['skipped'])} unreadable image(s), e.g. {arrays['skipped'][0]}")
    return ImageDataset(as_uint8_nchw(arrays["images"], name), torch.from_numpy(arrays["labels"]),
                        class_names, name)

"""Decoding image files into one uint8 array, with errors that name the offending file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fewshot_bench.errors import DatasetError

if TYPE_CHECKING:  # data.py imports this module
    from fewshot_bench.data import ImageDataset

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


GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grayscale scaled to 8 bits; PIL's own conversion clips it to white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8), "L")
    return image


@dataclass(frozen=True)
class Geometry:
    """The side and channels images are decoded to, and what that does to them, for a one-line notice."""

    size: int
    channels: int
    resized: int
    stretched: int
    converted: int

    def notice(self, name: str, total: int) -> str | None:
        parts = []
        if self.resized:
            parts.append(f"{self.resized} resized to {self.size}×{self.size}"
                         + (f" ({self.stretched} of them not square, stretched)" if self.stretched else ""))
        if self.converted:
            parts.append(f"{self.converted} converted to {'grayscale' if self.channels == 1 else 'RGB'}")
        return f"{name}: of {total} images, " + "; ".join(parts) if parts else None


def image_geometry(paths: Sequence[Path], size: int | None, channels: int | None) -> Geometry:
    """What decoding ``paths`` to ``size``/``channels`` does; ``None`` keeps the images' own: the most common
    size (a non-square one's shorter side) and 1 channel when every image is grayscale, else 3. Reads only
    the file headers; unreadable files are left to the decoder to report."""
    sizes: dict[tuple[int, int], int] = {}
    modes: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[image.size] = sizes.get(image.size, 0) + 1
                modes.append(image.mode)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            continue
    if size is None:
        common = max(sizes, key=lambda s: (sizes[s], s)) if sizes else (84, 84)
        size = min(common)
    if channels is None:
        channels = 1 if modes and all(m in GRAYSCALE_MODES for m in modes) else 3
    resized = sum(n for s, n in sizes.items() if s != (size, size))
    stretched = sum(n for (w, h), n in sizes.items() if w != h)
    converted = sum((m in GRAYSCALE_MODES) != (channels == 1) for m in modes)
    return Geometry(size, channels, resized, stretched, converted)


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
                image = _eight_bit(image).convert(mode)
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
    if root.exists() and not root.is_dir():
        raise DatasetError(f"'{root}' is a file, but this dataset reads a folder of class folders "
                           f"(<root>/<class>/<image files>); point --data-root at that folder")
    if not root.is_dir():
        raise DatasetError(f"folder '{root}' does not exist; check --data-root and the expected layout")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"folder '{root}' has no class folders; expected {root}/<class>/<image files>")
    items: list[tuple[Path, str]] = []
    for folder in folders:
        try:
            folder.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(f"class folder {os.fsencode(folder)!r} has a name that is not UTF-8 text; rename it "
                               "(the folder name becomes the class name shown in splits and tables)") from None
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


def check_listed_once(items: Sequence[tuple[Path, str]]) -> None:
    """Refuse a file (the same file on disk, whatever the path or link that names it) listed twice: under
    two classes it is one image with two labels (a leak when one is a training and the other a test class),
    under one class a copy that can be a test episode's query and its own support."""
    seen: dict[str, str] = {}
    for path, label in items:
        key = os.path.realpath(path)
        if key not in seen:
            seen[key] = label
            continue
        if seen[key] != label:
            raise DatasetError(f"image '{path}' is listed under two classes, '{seen[key]}' and '{label}' (one image "
                               "with two labels: a leak if one is a training and the other a test class); keep it "
                               "under one class")
        raise DatasetError(f"image '{path}' is listed twice under class '{label}' (a test episode could use it as "
                           "query and support); list it once")


def decoded_dataset(name: str, items: list[tuple[Path, str]], options: dict[str, Any],
                    class_names: list[str] | None = None, extra_key_files: Sequence[Path] = (),
                    item_metadata: dict[str, Sequence[str]] | None = None) -> "ImageDataset":
    """Decode ``(file, class name)`` items (through the on-disk cache) into a dataset.

    ``options`` needs ``size``, ``channels`` (either may be None: the images' own, see ``image_geometry``)
    and ``skip_corrupt``; ``class_names`` fixes the class order (default: sorted names). ``item_metadata``
    holds per-item texts (FER2013's official usage, say), returned in ``metadata`` for the images kept.
    Skipped corrupt files are reported in one warning, resized or converted images in one line.
    """
    from fewshot_bench.cache import cached_arrays, source_key
    from fewshot_bench.data import ImageDataset, as_uint8_nchw
    from fewshot_bench.console import logger, warn

    class_names = list(class_names) if class_names is not None else sorted({label for _, label in items})
    paths = [path for path, _ in items]
    key = source_key([*extra_key_files, *paths], (sorted(options.items()), sorted(item_metadata or {})))

    def build() -> dict[str, np.ndarray]:
        check_listed_once(items)
        geometry = image_geometry(paths, options.get("size"), options.get("channels"))
        decoded = decode_images(paths, geometry.size, geometry.channels, options["skip_corrupt"])
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.array([index[label] for _, label in items], dtype=np.int64)[decoded.kept]
        notice = geometry.notice(name, len(paths)) or ""
        extra = {f"item_{key}": np.array(values, dtype=str)[decoded.kept] for key, values in (item_metadata or {}).items()}
        return {"images": decoded.images, "labels": labels, "skipped": np.array(decoded.skipped, dtype=str),
                "notice": np.array(notice), **extra}

    arrays = cached_arrays(name, key, build)
    if len(arrays["skipped"]):
        warn(f"{name}: skipped {len(arrays['skipped'])} unreadable image(s), e.g. {arrays['skipped'][0]}")
    if "notice" in arrays and str(arrays["notice"]):
        logger.info(str(arrays["notice"]))
    metadata: dict[str, Any] = {key: arrays[f"item_{key}"] for key in (item_metadata or {})}
    # Each kept image's file, for messages that name it (``protocol.check_no_shared_images``).
    skipped = set(str(p) for p in arrays["skipped"])
    metadata["files"] = np.array([str(p) for p in paths if str(p) not in skipped], dtype=object)
    return ImageDataset(as_uint8_nchw(arrays["images"], name), torch.from_numpy(arrays["labels"]),
                        class_names, name, metadata=metadata)


def groups_from_paths(paths: Sequence[str | Path], pattern: str, root: Path | None = None) -> dict[str, np.ndarray]:
    """Groups and sub-groups parsed from each image's path (relative to ``root`` when given) with the regular
    expression ``pattern`` (searched, not anchored): its named groups ``group`` and ``subgroup``, else its first
    and second capture groups. A path it does not match is a one-line error naming it."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"group_pattern '{pattern}' is not a regular expression ({exc}); e.g. "
                           r"'(?P<group>S\d+)_(?P<subgroup>\d+)_' for CK+ file names S005_001_00000011.png") from None
    names = regex.groupindex
    if not names and regex.groups == 0:
        raise DatasetError(f"group_pattern '{pattern}' captures nothing; put the subject in a group, e.g. "
                           r"'(?P<group>S\d+)_(?P<subgroup>\d+)_'")
    groups, subgroups = [], []
    for path in paths:
        text = str(Path(path).relative_to(root)) if root is not None and Path(path).is_relative_to(root) else str(path)
        text = text.replace("\\", "/")
        found = regex.search(text)
        if found is None:
            raise DatasetError(f"group_pattern '{pattern}' does not match image '{text}'; every image needs a group "
                               "(fix the pattern, or the file name)")
        group = found.group("group") if "group" in names else found.group(1)
        sub = found.group("subgroup") if "subgroup" in names else (found.group(2) if not names and regex.groups > 1
                                                                     else None)
        groups.append(group)
        subgroups.append(None if sub is None else f"{group}/{sub}")
    result = {"groups": np.array(groups, dtype=object)}
    if any(s is not None for s in subgroups):
        result["subgroups"] = np.array(subgroups, dtype=object)
    return result

"""Standard few-shot benchmarks read through learn2learn's vision datasets, with their standard splits.

Each reads the files learn2learn downloads, from ``--data-root`` (nothing is downloaded here), and has
one split preset (its default) made of learn2learn's ``train`` / ``validation`` / ``test`` modes:

* ``mini-imagenet`` (preset ``ravi``, 64/16/20 classes, 84×84): ``mini-imagenet-cache-{train,validation,test}.pkl``,
  the cache pickles learn2learn writes, read directly.
* ``tiered-imagenet`` (preset ``ren``, 351/97/160 classes, 84×84): ``tiered-imagenet/{train,val,test}_images_png.pkl``
  and ``tiered-imagenet/{train,val,test}_labels.pkl``.
* ``cifar-fs`` (preset ``bertinetto``, 64/16/20 classes, 32×32): ``cifarfs/cifar100/data/<class>/*.png`` with
  ``cifarfs/cifar100/splits/bertinetto/{train,val,test}.txt`` (learn2learn copies them into
  ``cifarfs/processed/`` on first use), or an existing ``cifarfs/processed/{train,val,test}/<class>/``.
* ``fc100`` (preset ``oreshkin``, 60/20/20 classes split by CIFAR-100 superclass, 32×32):
  ``FC100_{train,val,test}.pickle``.
* ``cub`` (preset ``l2l``, learn2learn's 140/30/30 classes, decoded at ``--image-size``, default 84):
  ``cubirds200/CUB_200_2011/images/<class>/*.jpg``; like learn2learn, the images that also occur in
  ImageNet are left out unless ``include_imagenet_duplicates=true``.

Decoded images are cached on disk (keyed by the source files), so only the first load decodes.
learn2learn is only imported when one of these datasets is used. Its own benchmark task sets are not
used: they draw test episodes from unfiltered data (training classes can leak into test episodes); here
every episode is drawn by the harness's sampler and checked against the split.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fewshot_bench.cache import cached_arrays, source_key
from fewshot_bench.data import DatasetPlugin, ImageDataset, as_uint8_nchw
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.peers import import_learn2learn
from fewshot_bench.registry import register_dataset
from fewshot_bench.splits import ClassSplit

MODES = {"train": "train", "val": "validation", "test": "test"}
SHORT = {"train": "train", "val": "val", "test": "test"}


@register_dataset("mini-imagenet")
class MiniImageNet(DatasetPlugin):
    """miniImageNet (100 classes, 84×84) from learn2learn's cache pickles; split preset 'ravi' (64/16/20)."""

    unpickles = True

    where_to_get = "put learn2learn's mini-imagenet-cache-{train,validation,test}.pkl in --data-root"
    image_size, image_channels = 84, 3  # as stored; --image-size resamples

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        # The pickles are read directly: learn2learn's MiniImagenet reader makes a float32 copy of the whole
        # split (about 3.3 GB for train) on construction, which a uint8 dataset never needs.
        assert root is not None
        images, labels, names, part_of = [], [], [], {}
        for part, mode in MODES.items():
            path = root / f"mini-imagenet-cache-{mode}.pkl"
            if not path.is_file():
                raise DatasetError(f"miniImageNet file '{path}' not found; --data-root must hold learn2learn's "
                                   "three mini-imagenet-cache pickles")
            try:
                with path.open("rb") as handle:
                    data = pickle.load(handle)
                image_data, class_dict = data["image_data"], data["class_dict"]
            except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
                raise DatasetError(f"miniImageNet file '{path}' is not a mini-imagenet cache pickle "
                                   f"({type(exc).__name__}); download it again") from None
            for name, indices in sorted(class_dict.items()):
                images.append(np.asarray(image_data[list(indices)], dtype=np.uint8))
                labels.append(np.full(len(indices), len(names), dtype=np.int64))
                part_of[name] = part
                names.append(name)
        stacked = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
        return ImageDataset(stacked, torch.from_numpy(np.concatenate(labels)), names, "mini-imagenet",
                            metadata={"part_of": part_of})

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return parts_split("ravi", dataset)


def parts_split(preset: str, dataset: ImageDataset | None) -> tuple[str, dict[str, ClassSplit]]:
    """The split made of learn2learn's modes, recorded per class in ``metadata['part_of']`` at load time."""
    if dataset is None:
        return preset, {}
    part_of = dataset.metadata["part_of"]
    lists = {part: tuple(n for n in dataset.class_names if part_of[n] == part) for part in MODES}
    return preset, {preset: ClassSplit(lists["train"], lists["test"], lists["val"], preset)}


def require_files(root: Path, names: list[str], dataset: str) -> list[Path]:
    """The files under ``root`` a dataset needs; the first missing one is a one-line error."""
    paths = [root / name for name in names]
    for path in paths:
        if not path.exists():
            raise DatasetError(f"{dataset} file '{path}' not found; --data-root must hold learn2learn's "
                               f"{dataset} files ({', '.join(names)})")
    return paths


def with_parts(dataset: ImageDataset, part_of: dict[str, str]) -> ImageDataset:
    dataset.metadata["part_of"] = part_of
    return dataset


def arrays_dataset(name: str, key_files: list[Path], options: Any,
                   read_mode: Callable[[str], tuple[np.ndarray, Any]],
                   class_name: Callable[[str, int], str]) -> ImageDataset:
    """A dataset from learn2learn readers that give (images NHW[C] uint8, integer labels) per mode, cached.

    ``read_mode(mode)`` reads one of learn2learn's modes; ``class_name(part, label)`` names a class.
    """
    def build() -> dict[str, np.ndarray]:
        images, labels, names, parts = [], [], [], []
        for part, mode in MODES.items():
            mode_images, mode_labels = read_mode(mode)
            raw = np.asarray(mode_labels, dtype=np.int64)
            classes = np.unique(raw)
            remap = {c: len(names) + i for i, c in enumerate(classes)}
            names.extend(class_name(part, int(c)) for c in classes)
            parts.extend([part] * len(classes))
            images.append(np.asarray(mode_images, dtype=np.uint8))
            labels.append(np.array([remap[c] for c in raw], dtype=np.int64))
        return {"images": np.concatenate(images), "labels": np.concatenate(labels),
                "names": np.array(names, dtype=str), "parts": np.array(parts, dtype=str)}

    data = cached_arrays(name, source_key(key_files, options), build)
    names = [str(n) for n in data["names"]]
    dataset = ImageDataset(as_uint8_nchw(data["images"], name), torch.from_numpy(data["labels"]), names, name)
    return with_parts(dataset, dict(zip(names, (str(p) for p in data["parts"]))))


@register_dataset("tiered-imagenet")
class TieredImageNet(DatasetPlugin):
    """tieredImageNet (608 classes, 84×84) through learn2learn's reader; split preset 'ren' (351/97/160)."""

    unpickles = True

    where_to_get = "put learn2learn's tiered-imagenet/ folder ({train,val,test}_{images_png,labels}.pkl) in --data-root"
    image_size, image_channels = 84, 3  # as stored; --image-size resamples

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        names = [f"tiered-imagenet/{SHORT[p]}_{kind}.pkl" for p in MODES for kind in ("images_png", "labels")]
        files = require_files(root, names, "tieredImageNet")

        def read_mode(mode: str) -> tuple[np.ndarray, Any]:
            reader = import_learn2learn().vision.datasets.TieredImagenet(str(root), mode=mode, download=False)
            return decode_png_bytes(reader.images, f"tieredImageNet {mode} images"), reader.labels

        return arrays_dataset("tiered-imagenet", files, sorted(options.items()), read_mode,
                              lambda part, label: f"{SHORT[part]}-{label:03d}")

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return parts_split("ren", dataset)


def decode_png_bytes(encoded: Any, where: str) -> np.ndarray:
    """Decode a sequence of encoded images (bytes or uint8 buffers) into one (N, H, W, 3) array."""
    import io

    from PIL import Image

    out = []
    for index, item in enumerate(encoded):
        try:
            raw = item if isinstance(item, (bytes, bytearray)) else np.asarray(item, dtype=np.uint8).tobytes()
            with Image.open(io.BytesIO(raw)) as image:
                out.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{where}: image {index} cannot be decoded ({exc}); re-download the file") from None
    return np.stack(out)


@register_dataset("cifar-fs")
class CIFARFS(DatasetPlugin):
    """CIFAR-FS (100 classes, 32×32) through learn2learn's reader; split preset 'bertinetto' (64/16/20)."""

    where_to_get = "put learn2learn's cifarfs/ folder (cifar100/data and cifar100/splits/bertinetto) in --data-root"
    image_size, image_channels = 32, 3
    options = (Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),)

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        processed = root / "cifarfs" / "processed"
        if not processed.is_dir():
            require_files(root, ["cifarfs/cifar100/data"] + [f"cifarfs/cifar100/splits/bertinetto/{SHORT[p]}.txt"
                                                             for p in MODES], "CIFAR-FS")
        l2l = import_learn2learn()
        items, part_of = [], {}
        for part, mode in MODES.items():
            reader = l2l.vision.datasets.CIFARFS(str(root), mode=mode, download=False)
            for path, index in reader.samples:
                items.append((Path(path), reader.classes[index]))
            part_of.update({name: part for name in reader.classes})
        dataset = decoded_dataset("cifar-fs", items, options)
        return with_parts(dataset, part_of)

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return parts_split("bertinetto", dataset)


@register_dataset("fc100")
class FC100(DatasetPlugin):
    """FC100 (100 CIFAR classes split by superclass, 32×32) through learn2learn; preset 'oreshkin' (60/20/20)."""

    unpickles = True

    where_to_get = "put learn2learn's FC100_{train,val,test}.pickle files in --data-root"
    image_size, image_channels = 32, 3  # as stored; --image-size resamples

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        files = require_files(root, [f"FC100_{SHORT[p]}.pickle" for p in MODES], "FC100")

        def read_mode(mode: str) -> tuple[np.ndarray, Any]:
            reader = import_learn2learn().vision.datasets.FC100(str(root), mode=mode, download=False)
            return reader.images, reader.labels

        return arrays_dataset("fc100", files, sorted(options.items()), read_mode,
                              lambda part, label: f"cifar100-{label:02d}")

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return parts_split("oreshkin", dataset)


@register_dataset("cub")
class CUB(DatasetPlugin):
    """Caltech-UCSD Birds-200-2011 through learn2learn's reader and split; preset 'l2l' (140/30/30)."""

    where_to_get = "put learn2learn's cubirds200/ folder (CUB_200_2011/images/<class>/) in --data-root"
    image_size, image_channels = 84, 3
    options = (
        Option("include_imagenet_duplicates", bool, False, "keep the CUB images that also occur in ImageNet"),
        Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        require_files(root, ["cubirds200/CUB_200_2011/images"], "CUB")
        l2l = import_learn2learn()
        splits = l2l.vision.datasets.cu_birds200.SPLITS
        for mode in MODES.values():
            for name in splits[mode]:
                if not (root / "cubirds200" / "CUB_200_2011" / "images" / name).is_dir():
                    raise DatasetError(f"CUB class folder '{root / 'cubirds200/CUB_200_2011/images' / name}' not "
                                       "found; the CUB_200_2011 archive is incomplete")
        items, part_of = [], {}
        for part, mode in MODES.items():
            reader = l2l.vision.datasets.CUBirds200(str(root), mode=mode, download=False,
                                                    include_imagenet_duplicates=options["include_imagenet_duplicates"])
            items.extend((Path(path), splits[mode][index]) for path, index in reader.data)
            part_of.update({name: part for name in splits[mode]})
        empty = sorted(set(part_of) - {name for _, name in items})
        if empty:
            raise DatasetError(f"CUB class folder '{root / 'cubirds200/CUB_200_2011/images' / empty[0]}' contains no "
                               f"images ({len(empty)} such classes); the CUB_200_2011 archive is incomplete")
        dataset = decoded_dataset("cub", sorted(items), {"size": options["size"], "channels": options["channels"],
                                                         "skip_corrupt": options["skip_corrupt"],
                                                         "duplicates": options["include_imagenet_duplicates"]})
        return with_parts(dataset, part_of)

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        return parts_split("l2l", dataset)

"""``combined``: several datasets side by side, for cross-dataset protocols.

Meta-train on one dataset's classes and test on another's, e.g. train on FER2013 and test on RAF-DB::

    dataset: combined
    dataset_options: {parts: "fer2013=~/data/fer2013;rafdb=~/data/rafdb"}
    image_size: 48
    channels: 1
    split: cross        # or {train: [fer2013/happy, ...], test: [rafdb/angry, ...]}

``parts`` lists ``name=path`` pairs (separated by ``;``), each read by that dataset's own plugin with its
default options; images are brought to the run's one geometry (``--image-size`` / ``--channels``, default
48×48 grayscale); class names are prefixed with
the part name (``fer2013/happy``). The ``cross`` preset takes the training classes of the first part's
default split and the test classes of the last part's default split, so the two never share images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import ConfigError
from fewshot_bench.options import Option, resolve_options
from fewshot_bench.registry import DATASETS, register_dataset
from fewshot_bench.splits import ClassSplit


def parse_parts(text: str) -> list[tuple[str, Path]]:
    parts = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in item:
            raise ConfigError(f"combined: part '{item}' must be name=path, e.g. fer2013=~/data/fer2013")
        name, path = item.split("=", 1)
        parts.append((name.strip(), Path(path.strip()).expanduser()))
    if len(parts) < 2:
        raise ConfigError("combined: option 'parts' needs at least two name=path entries separated by ';'")
    return parts


@register_dataset("combined")
class Combined(DatasetPlugin):
    """Several datasets side by side (class names prefixed), for cross-dataset splits."""

    needs_root = False
    image_size, image_channels = 48, 1  # every part is brought to one geometry (--image-size / --channels)
    where_to_get = "give the parts with --dataset-option parts='fer2013=DIR;rafdb=DIR'"
    options = (
        Option("parts", str, "", "name=path pairs separated by ';' (each read by that dataset's plugin)"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        images, labels, names = [], [], []
        for part, path in parse_parts(options["parts"]):
            plugin = DATASETS.get(part)()
            if not path.exists():
                raise ConfigError(f"combined: data of part '{part}' not found at '{path}'")
            data = plugin.load(path, plugin.load_options(resolve_options(plugin.options, {}, owner=f"dataset '{part}'"),
                                                         options["size"], options["channels"]))
            data = data.resized(options["size"], options["channels"])  # parts stored at a fixed size
            images.append(data.images)
            labels.append(data.labels + len(names))
            names.extend(f"{part}/{name}" for name in data.class_names)
        return ImageDataset(torch.cat(images), torch.cat(labels), names, "combined",
                            metadata={"parts": [p for p, _ in parse_parts(options["parts"])]})

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        if dataset is None:
            return "cross", {}
        parts = dataset.metadata["parts"]
        first_default, first = DATASETS.get(parts[0])().split_presets()
        last_default, last = DATASETS.get(parts[-1])().split_presets()
        if first_default is None or last_default is None:
            return None, {}
        train = tuple(f"{parts[0]}/{name}" for name in first[first_default].train)
        test = tuple(f"{parts[-1]}/{name}" for name in last[last_default].test)
        return "cross", {"cross": ClassSplit(train, test, (), "cross")}

"""``combined``: several datasets side by side, for cross-dataset protocols.

Meta-train on one dataset's classes and test on another's, e.g. train on FER2013 and test on RAF-DB::

    dataset: combined
    dataset_options: {parts: "fer2013=~/data/fer2013;rafdb=~/data/rafdb"}
    image_size: 48
    channels: 1
    split: cross        # or {train: [fer2013/happy, ...], test: [rafdb/angry, ...]}

``parts`` lists ``name=path`` pairs (separated by ``;``), each read by that dataset's own plugin with its
default options, or ``name=plugin:path`` to give a part your own name (``ckplus=image-folder:~/data/ck``;
two image folders then stay apart). Images are brought to the run's one geometry (``--image-size`` /
``--channels``, default 48×48 grayscale); class names are prefixed with the part's name
(``fer2013/happy``). The ``cross`` preset takes the training classes of the first part's default split and
the test classes of the last part's, so the two never share images; a part without presets (an image
folder) uses the CRN paper's emotions, matched by folder name whatever its case (happy, neutral, sad,
surprise for training; angry, disgust, fear for test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.emotions import find, missing_class_message
from fewshot_bench.errors import ConfigError
from fewshot_bench.options import Option, resolve_options
from fewshot_bench.registry import DATASETS, register_dataset
from fewshot_bench.splits import ClassSplit


# The CRN paper's class-disjoint split, by emotion name: what an image-folder part (CK+, JAFFE, a lab's own
# data) is split by in the ``cross`` preset.
PAPER_TRAIN = ("happy", "neutral", "sad", "surprise")
PAPER_TEST = ("angry", "disgust", "fear")


@dataclass(frozen=True)
class Part:
    """One part of a combined dataset: the user's name for it, the plugin that reads it and where it is."""

    name: str
    plugin: str
    path: Path | None


def parse_parts(text: str) -> list[Part]:
    """``name=path`` or ``name=plugin:path`` entries separated by ``;`` (at least two)."""
    parts = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in item:
            raise ConfigError(f"combined: part '{item}' must be name=path or name=plugin:path, e.g. "
                              "fer2013=~/data/fer2013 or ckplus=image-folder:~/data/ck")
        name, value = (x.strip() for x in item.split("=", 1))
        plugin, _, rest = value.partition(":")
        if rest or (value.endswith(":") and plugin in DATASETS):
            if plugin not in DATASETS:
                DATASETS.get(plugin)  # the standard unknown-name error, with the choices
            path = rest
        else:
            plugin, path = name, value
        parts.append(Part(name, plugin, Path(path).expanduser() if path else None))
    if not parts:
        raise ConfigError("combined: option 'parts' needs name=path entries separated by ';'")
    names = [p.name for p in parts]
    if len(set(names)) < len(names):
        raise ConfigError(f"combined: two parts are named '{max(names, key=names.count)}'; name each part "
                          "(name=plugin:path)")
    return parts


@register_dataset("combined")
class Combined(DatasetPlugin):
    """Several datasets side by side (class names prefixed), for cross-dataset splits."""

    needs_root = False
    dedups_parts = True  # each part by its own plugin's default (FER2013's duplicates are removed), unless --dedup
    image_size, image_channels = 48, 1  # every part is brought to one geometry (--image-size / --channels)
    where_to_get = "give the parts with --dataset-option parts='fer2013=DIR;rafdb=DIR'"
    options = (
        Option("parts", str, "", "name=path pairs separated by ';' (each read by that dataset's plugin)"),
        Option("splits", str, "", "a split per part for the cross preset, YAML: {ck: {train: [happy, sad], test: "
                                  "[angry, fear]}} (default: each part's preset, or the paper's emotions)"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        images, labels, names, dedup, part_of = [], [], [], {}, []
        groups: dict[str, list[np.ndarray]] = {"groups": [], "subgroups": []}
        declared: set[str] = set()
        parts = parse_parts(options["parts"])
        for part in parts:
            plugin = DATASETS.get(part.plugin)()
            if part.path is None and plugin.needs_root:
                raise ConfigError(f"combined: part '{part.name}' needs a path ({part.name}={part.plugin}:PATH)")
            if part.path is not None and not part.path.exists():
                raise ConfigError(f"combined: data of part '{part.name}' not found at '{part.path}'")
            owner = f"dataset '{part.plugin}' (part '{part.name}')"
            data = plugin.load(part.path, plugin.load_options(resolve_options(plugin.options, {}, owner=owner),
                                                              options["size"], options["channels"]))
            dedup[part.name] = plugin.dedup_default  # applied per part by the harness (``load_dataset``)
            data = data.resized(options["size"], options["channels"])  # parts stored at a fixed size
            part_of.append(np.full(len(data.labels), part.name, dtype=object))
            images.append(data.images)
            labels.append(data.labels + len(names))
            names.extend(f"{part.name}/{name}" for name in data.class_names)
            for key in groups:
                own = data.metadata.get(key)
                declared |= {key} if own is not None else set()
                # A part without subjects: every image its own group (nothing to keep apart, nothing counted).
                groups[key].append(np.array([f"{part.name}/{g}" for g in own], dtype=object) if own is not None
                                   else np.array([f"{part.name}/#{i}" for i in range(len(data.labels))], dtype=object))
        metadata: dict[str, Any] = {"parts": [p.name for p in parts], "plugins": [p.plugin for p in parts],
                                    "part_of": np.concatenate(part_of), "part_dedup_default": dedup,
                                    "part_splits": parse_part_splits(options.get("splits") or "",
                                                                                     [p.name for p in parts])}
        metadata.update({key: np.concatenate(groups[key]) for key in declared})
        return ImageDataset(torch.cat(images), torch.cat(labels), names, "combined", metadata=metadata)

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        if dataset is None:
            return "cross", {}
        parts, plugins = dataset.metadata["parts"], dataset.metadata.get("plugins", dataset.metadata["parts"])
        given = dataset.metadata.get("part_splits") or {}
        train = _part_classes(dataset, parts[0], plugins[0], "train", given.get(parts[0]))
        test = _part_classes(dataset, parts[-1], plugins[-1], "test", given.get(parts[-1]))
        return "cross", {"cross": ClassSplit(train, test, (), "cross")}


def parse_part_splits(text: str, parts: list[str]) -> dict[str, ClassSplit]:
    """The ``splits`` option: ``{part: {train: [...], test: [...]}}`` in YAML, each part one of ``parts``."""
    if not text.strip():
        return {}
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError:
        mapping = None
    if not isinstance(mapping, dict):
        raise ConfigError("combined: option 'splits' must be a YAML mapping such as '{ck: {train: [happy, sad], test: "
                          "[angry, fear]}}'")
    unknown = [name for name in mapping if name not in parts]
    if unknown:
        raise ConfigError(f"combined: option 'splits' names part '{unknown[0]}'; the parts are {', '.join(parts)}")
    return {str(name): ClassSplit.from_mapping(body, where=f"split of part '{name}'", name=str(name))
            for name, body in mapping.items()}


def _part_classes(dataset: ImageDataset, part: str, plugin: str, role: str,
                  given: ClassSplit | None = None) -> tuple[str, ...]:
    """The ``role`` (train or test) classes of one part, prefixed: its plugin's default split, or for a part
    without presets the paper's emotions found among its class names through the emotion vocabulary
    (``anger`` is angry). A training part may lack some of the training emotions: it trains on those it has
    (at least two); a test part must have every test emotion."""
    own = [name.split("/", 1)[1] for name in dataset.class_names if name.startswith(f"{part}/")]
    default, presets = DATASETS.get(plugin)().split_presets()
    if given is not None:
        wanted = tuple(getattr(given, role))
        missing = [name for name in wanted if find(name, own) is None]
        if missing:
            raise ConfigError(f"combined: {missing_class_message(missing[0], own, f'part {part!r}')} (its split given "
                              "with --part-splits)")
        return tuple(f"{part}/{find(name, own)}" for name in wanted)
    if default is not None and default in presets:
        wanted = tuple(getattr(presets[default], role))
    else:
        wanted = PAPER_TRAIN if role == "train" else PAPER_TEST
    found = {emotion: find(emotion, own) for emotion in wanted}
    missing = [emotion for emotion, name in found.items() if name is None]
    if missing and (role == "test" or len(wanted) - len(missing) < 2):
        raise ConfigError(f"combined: {missing_class_message(missing[0], own, f'part {part!r}')} (the cross split's "
                          f"{role} emotions: {', '.join(wanted)}; or give the part's split: bench cross --part-splits, or "
                          "--dataset-option splits=... of combined)")
    return tuple(f"{part}/{name}" for name in found.values() if name is not None)

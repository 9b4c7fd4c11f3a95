"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015): 1,623 handwritten characters × 20 drawers.

Where to get it: github.com/brendenlake/omniglot (``images_background.zip``, ``images_evaluation.zip``;
MIT licence). Accepted ``--data-root``:

* the official folders ``images_background/<Alphabet>/<characterNN>/*.png`` and ``images_evaluation/...``
  (black ink on white; inverted here so that ink is 255, as in the array form);
* an array file (``omniglot28.npz`` / ``omniglot105.npz`` as in this project's shared data): ``images``
  (N,28,28) or ``images_packbits``, ``labels`` 0..1622 (character number − 1) and per-class
  ``class_alphabet``, ``class_character``, ``class_split``.

Characters are numbered 1..1623: background alphabets then evaluation alphabets, each sorted by name.
With ``rotations=true`` (the default) every character gives four classes rotated by 0/90/180/270°
(class names ``Alphabet/characterNN/rot90``). Split presets (``omniglot.yaml``) are character ranges:
``vinyals`` trains on characters 1–1200 and tests on 1201–1623 (× 4 rotations: 4800 / 1692 classes),
``vinyals-val`` holds out 1029–1200 for validation (Snell et al.'s 1028/172/423), and ``lake`` uses the
background / evaluation alphabets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fewshot_bench.cache import cached_arrays, source_key
from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import ConfigError, DatasetError
from fewshot_bench.imageio import decode_images, list_images
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset
from fewshot_bench.splits import ClassSplit

ROTATIONS = (0, 90, 180, 270)
PARTS = ("background", "evaluation")


def _read_folders(root: Path, size: int) -> dict[str, np.ndarray]:
    images, labels, alphabets, characters, splits = [], [], [], [], []
    for part in PARTS:
        folder = root / f"images_{part}"
        if not folder.is_dir():
            raise DatasetError(f"Omniglot folder '{folder}' not found; --data-root must contain images_background/ "
                               "and images_evaluation/ (unzipped), or be an .npz array file")
        for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                files = list_images(character)
                if not files:
                    raise DatasetError(f"Omniglot character folder '{character}' contains no images")
                decoded = decode_images(files, size, 1)
                images.append(255 - decoded.images)  # official PNGs are black ink on white
                labels.extend([len(alphabets)] * len(files))
                alphabets.append(alphabet.name)
                characters.append(character.name)
                splits.append(part)
    return {"images": np.concatenate(images), "labels": np.array(labels, dtype=np.int64),
            "class_alphabet": np.array(alphabets), "class_character": np.array(characters),
            "class_split": np.array(splits)}


def _read_npz(path: Path, size: int) -> dict[str, np.ndarray]:
    from fewshot_bench.datasets.arrays import read_npz

    arrays = read_npz(path)
    if "images_packbits" in arrays:
        images = np.unpackbits(arrays["images_packbits"], axis=1, count=105 * 105).reshape(-1, 105, 105) * 255
    elif "images" in arrays:
        images = arrays["images"]
    else:
        raise DatasetError(f"Omniglot array file '{path}' has neither 'images' nor 'images_packbits'")
    for key in ("labels", "class_alphabet", "class_character", "class_split"):
        if key not in arrays:
            raise DatasetError(f"Omniglot array file '{path}' lacks '{key}'")
    if images.shape[1] != size:
        resized = torch.nn.functional.interpolate(torch.from_numpy(images[:, None]).float(), size=(size, size),
                                                  mode="bilinear", antialias=True)
        images = resized.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    return {"images": images.astype(np.uint8), "labels": arrays["labels"].astype(np.int64),
            "class_alphabet": arrays["class_alphabet"].astype(str),
            "class_character": arrays["class_character"].astype(str), "class_split": arrays["class_split"].astype(str)}


@register_dataset("omniglot")
class Omniglot(DatasetPlugin):
    """Omniglot: 1,623 characters × 20 drawers, rotations as new classes (official folders or .npz)."""

    where_to_get = "download images_background.zip and images_evaluation.zip from github.com/brendenlake/omniglot"
    image_size, image_channels = 28, 1  # 28 in the few-shot literature
    options = (
        Option("rotations", bool, True, "rotations by 90/180/270° as new classes (Vinyals/Santoro protocol)"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        size = options["size"]
        if root.is_file():
            arrays = _read_npz(root, size)
        else:
            files = sorted(p for p in root.rglob("*.png"))
            if not files:
                raise DatasetError(f"no Omniglot images under '{root}'; expected images_background/ and "
                                   "images_evaluation/ (unzipped) or an .npz file")
            arrays = cached_arrays("omniglot", source_key(files, size), lambda: _read_folders(root, size))
        n_chars = len(arrays["class_alphabet"])
        base_names = [f"{a}/{c}" for a, c in zip(arrays["class_alphabet"], arrays["class_character"])]
        images, labels = arrays["images"], arrays["labels"]
        rotations = ROTATIONS if options["rotations"] else (0,)
        stacked = [np.rot90(images, k=deg // 90, axes=(1, 2)) for deg in rotations]
        all_images = np.concatenate(stacked)[:, None]
        all_labels = np.concatenate([labels + r * n_chars for r in range(len(rotations))])
        names = [f"{name}/rot{deg}" for deg in rotations for name in base_names]
        numbers = np.tile(np.arange(1, n_chars + 1), len(rotations))
        return ImageDataset(torch.from_numpy(np.ascontiguousarray(all_images)), torch.from_numpy(all_labels), names,
                            "omniglot", metadata={"char_number": numbers,
                                                  "char_split": np.tile(arrays["class_split"], len(rotations))})

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        data = yaml.safe_load(self.presets_file().read_text())
        if dataset is None:
            return data.get("default"), {}
        numbers, parts = dataset.metadata["char_number"], dataset.metadata["char_split"]
        presets = {}
        for name, rule in data["splits"].items():
            lists = {}
            for part in ("train", "val", "test"):
                if f"{part}_characters" in rule:
                    low, high = (int(x) for x in str(rule[f"{part}_characters"]).split("-"))
                    chosen = (numbers >= low) & (numbers <= high)
                elif f"{part}_alphabets_from" in rule:
                    chosen = parts == rule[f"{part}_alphabets_from"]
                else:
                    continue
                lists[part] = tuple(n for n, keep in zip(dataset.class_names, chosen) if keep)
            if "train" not in lists or "test" not in lists:
                raise ConfigError(f"Omniglot preset '{name}' needs train and test rules")
            presets[name] = ClassSplit(lists["train"], lists["test"], lists.get("val", ()), name)
        return data.get("default"), presets

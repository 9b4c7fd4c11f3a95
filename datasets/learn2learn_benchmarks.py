"""Standard few-shot benchmarks read through learn2learn's vision datasets, with their standard splits.

``mini-imagenet``: Vinyals et al.'s miniImageNet (100 classes × 600 images, 84×84 RGB) in the pickle
form learn2learn reads (``mini-imagenet-cache-{train,validation,test}.pkl`` in ``--data-root``; the
files learn2learn downloads — here they must already be on disk, nothing is downloaded). The split
preset ``ravi`` is Ravi & Larochelle's 64 / 16 / 20 classes: learn2learn's ``train`` / ``validation`` /
``test`` modes.

learn2learn is only imported when this dataset is used. Its own benchmark task sets are not used: they
draw test episodes from unfiltered data (training classes can leak into test episodes); here every
episode is drawn by the harness's sampler and checked against the split.

(tieredImageNet, CIFAR-FS, FC100 and CUB adapters are not written yet.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import DatasetError
from fewshot_bench.peers import import_learn2learn
from fewshot_bench.registry import register_dataset
from fewshot_bench.splits import ClassSplit

MODES = {"train": "train", "val": "validation", "test": "test"}


@register_dataset("mini-imagenet")
class MiniImageNet(DatasetPlugin):
    """miniImageNet (100 classes, 84×84) through learn2learn's reader; split preset 'ravi' (64/16/20)."""

    where_to_get = "put learn2learn's mini-imagenet-cache-{train,validation,test}.pkl in --data-root"

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        l2l = import_learn2learn()
        images, labels, names, part_of = [], [], [], {}
        for part, mode in MODES.items():
            if not (root / f"mini-imagenet-cache-{mode}.pkl").is_file():
                raise DatasetError(f"miniImageNet file '{root / f'mini-imagenet-cache-{mode}.pkl'}' not found; "
                                   "--data-root must hold learn2learn's three mini-imagenet-cache pickles")
            data = l2l.vision.datasets.MiniImagenet(str(root), mode=mode, download=False).data
            for name, indices in sorted(data["class_dict"].items()):
                images.append(np.asarray(data["image_data"][list(indices)], dtype=np.uint8))
                labels.append(np.full(len(indices), len(names), dtype=np.int64))
                part_of[name] = part
                names.append(name)
        stacked = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
        return ImageDataset(stacked, torch.from_numpy(np.concatenate(labels)), names, "mini-imagenet",
                            metadata={"part_of": part_of})

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        if dataset is None:
            return "ravi", {}
        part_of = dataset.metadata["part_of"]
        lists = {part: tuple(n for n in dataset.class_names if part_of[n] == part) for part in MODES}
        return "ravi", {"ravi": ClassSplit(lists["train"], lists["test"], lists["val"], "ravi")}

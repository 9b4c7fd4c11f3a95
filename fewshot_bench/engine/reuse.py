"""Trained cells as models: load a finished cell's weights and classify new images against a support set.

Every finished cell keeps its final weights in its run folder (``checkpoints/<cell>.pt``), with what using them
needs: the variant's label, the image shape and the normalisation of its training classes. ``bench publish
--weights`` copies them into a record (``weights/<cell>.pt``), which is then usable without the data::

    from fewshot_bench.engine.reuse import load_cell

    model = load_cell("results/runs/my-run", "protonet-3w5s15q-seed0")   # a run folder or record, a cell id
    result = model.classify(support_images, ["angry", "angry", "fear", "fear"], query_images)
    result.predictions            # the support class each query image is closest to, by the method's scores
    result.scores                 # (n_query, n_classes), columns in ``result.classes`` order

Images are uint8 tensors (N, C, H, W) or (N, H, W), numpy arrays, or image files; they are brought to the cell's
size and channels exactly as ``bench run`` decodes files, and normalised with the cell's statistics. Support
classes must have the same number of images each (the methods are K-shot); any number of classes and queries.
``bench predict`` does the same from folders of images.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fewshot_bench.config import merge
from fewshot_bench.data import ImageDataset, as_uint8_nchw
from fewshot_bench.errors import ConfigError, DatasetError
from fewshot_bench.episodic.tasks import TaskBuilder

# Where a run folder keeps a finished cell's weights, and where a record does (``bench publish --weights``).
WEIGHT_FOLDERS = ("weights", "checkpoints")


@dataclass(frozen=True)
class Classification:
    """What ``TrainedCell.classify`` returns: the classes (support order of first appearance), each query's
    predicted class and the method's (n_query, n_classes) scores."""

    classes: list[Any]
    predictions: list[Any]
    scores: torch.Tensor


class TrainedCell:
    """A finished cell's method with its weights and normalisation, ready to classify new images."""

    def __init__(self, method: Any, about: dict[str, Any], record: dict[str, Any], device: torch.device) -> None:
        self.method = method.eval()
        self.about, self.record, self.device = about, record, device
        self.image_shape = tuple(about["image_shape"])
        self.label = about["label"]

    def __repr__(self) -> str:
        return (f"TrainedCell({self.label}, {self.record.get('cell')}: {self.record.get('mean', float('nan')):.2f} % "
                f"on its test episodes, images {self.image_shape})")

    def images(self, images: Any) -> torch.Tensor:
        """``images`` as the cell's uint8 (N, C, H, W) at its size and channels."""
        from fewshot_bench.imageio import decode_images

        c, h, _ = self.image_shape
        if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, Path)):
            return as_uint8_nchw(decode_images([Path(p) for p in images], h, c).images, "images")
        tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if tensor.dtype != torch.uint8:
            raise DatasetError(f"images must be uint8 (0-255), got {tensor.dtype}; or pass image files")
        if tensor.dim() == 3:
            tensor = tensor[:, None]
        if tensor.dim() != 4:
            raise DatasetError(f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(tensor.shape)}")
        return ImageDataset(tensor.contiguous(), torch.zeros(len(tensor), dtype=torch.int64), ["x"],
                            "images").resized(h, c).images

    def classify(self, support: Any, support_labels: Sequence[Any], query: Any) -> Classification:
        """Classify ``query`` against the labelled ``support`` (any label values: class names, numbers)."""
        support_images, query_images = self.images(support), self.images(query)
        labels = list(support_labels)
        if len(labels) != len(support_images):
            raise DatasetError(f"{len(support_images)} support images but {len(labels)} labels")
        classes = list(dict.fromkeys(labels))
        counts = {c: labels.count(c) for c in classes}
        if len(set(counts.values())) != 1 or len(classes) < 2:
            raise DatasetError(f"the support needs at least 2 classes with the same number of images each (the "
                               f"methods are K-shot), got {counts}")
        shot = next(iter(counts.values()))
        # Class-major, as the runner builds episodes: class 0's shots, then class 1's, ...
        order = [i for c in classes for i in range(len(labels)) if labels[i] == c]
        images = torch.cat([support_images[order], query_images])
        builder = TaskBuilder(ImageDataset(images, torch.zeros(len(images), dtype=torch.int64), ["x"], "images"),
                              self.device, self.about["mean"], self.about["std"])
        layout = self.method.memory_format
        support_x = builder.gather(np.arange(len(order)), layout)
        query_x = builder.gather(np.arange(len(order), len(images)), layout)
        support_y = torch.arange(len(classes), device=self.device).repeat_interleave(shot)
        with torch.no_grad():
            scores = self.method.predict(support_x, support_y, query_x, len(classes)).float().cpu()
        return Classification(classes, [classes[i] for i in scores.argmax(1).tolist()], scores)


def load_cell(run: str | Path, cell: str, device: str = "cpu", trust: bool = False) -> TrainedCell:
    """The trained model of ``cell`` (a cell id, or a pattern such as ``protonet-*5s*`` matching one) of the run
    folder or record ``run``. A run whose method comes from plugin files loads them only with ``trust``."""
    from fewshot_bench.engine.runner import resolve_variants
    from fewshot_bench.registry import load_plugin_file

    folder = Path(run).expanduser()
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"'{run}' is not a run folder or record (no config.yaml)")
    cells = sorted(p.stem for p in (folder / "cells").glob("*.json"))
    chosen = [c for c in cells if c == cell] or [c for c in cells if fnmatch.fnmatch(c, cell)]
    if len(chosen) != 1:
        what = "matches several cells" if chosen else "matches no finished cell"
        raise ConfigError(f"'{cell}' {what} of '{folder}'; its cells: {', '.join(chosen or cells) or 'none'}")
    cell_id = chosen[0]
    path = next((folder / sub / f"{cell_id}.pt" for sub in WEIGHT_FOLDERS if (folder / sub / f"{cell_id}.pt").is_file()),
                None)
    if path is None:
        raise ConfigError(f"cell '{cell_id}' of '{folder}' has no saved weights (a record keeps them only when "
                          "published with `bench publish --weights`)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    about = state.get("about") if isinstance(state, dict) else None
    if not isinstance(state, dict) or "model" not in state or "optimiser" in state or about is None:
        raise ConfigError(f"'{path}' holds no finished cell's weights with their normalisation (a cell still "
                          "training, or one finished by an older version: rerun it to use it)")
    record = json.loads((folder / "cells" / f"{cell_id}.json").read_text())
    config = merge(folder / "config.yaml", {})
    if config.plugins:
        if not trust:
            raise ConfigError(f"run '{folder.name}' loads plugin files ({', '.join(config.plugins)}), which run code; "
                              "pass trust=True (bench predict --trust) if you trust them")
        for plugin in config.plugins:
            load_plugin_file(plugin)
    variant = next((v for v in resolve_variants(config) if v.label == about["label"]), None)
    if variant is None:
        raise ConfigError(f"the run's config has no variant '{about['label']}' (cell '{cell_id}')")
    target = torch.device(device)
    method = variant.build(tuple(about["image_shape"]), seed=int(record.get("seed", 0)))
    method.load_state_dict(state["model"])
    return TrainedCell(method.to(target), about, record, target)


def folder_images(root: Path) -> tuple[list[Path], list[str] | None]:
    """Image files of ``root``: in class sub-folders (with their class names) or directly inside (no labels)."""
    from fewshot_bench.imageio import class_folder_files, list_images

    if not root.is_dir():
        raise DatasetError(f"'{root}' is not a folder of images (or of class folders of images)")
    direct = list_images(root)
    if direct:
        return direct, None
    items = class_folder_files(root)
    return [path for path, _ in items], [label for _, label in items]

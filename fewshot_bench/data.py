"""The in-memory dataset every plugin produces, and the base class of dataset plugins."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from fewshot_bench.errors import ConfigError, DatasetError
from fewshot_bench.options import Option
from fewshot_bench.splits import ClassSplit


@dataclass
class ImageDataset:
    """Decoded images of one dataset, kept as one uint8 tensor.

    Attributes:
        images: (n_images, channels, height, width) uint8.
        labels: (n_images,) int64 class ids in ``[0, len(class_names))``.
        class_names: the name of each class id.
        name: the dataset's registry name.
        fingerprint: a short hash identifying the source data and its preprocessing.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str
    fingerprint: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(
                f"dataset '{self.name}' must provide uint8 images of shape (N, C, H, W), "
                f"got {tuple(self.images.shape)} {self.images.dtype}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"dataset '{self.name}' has {self.images.shape[0]} images but "
                               f"{self.labels.numel()} labels")
        if self.images.shape[1] not in (1, 3):
            raise DatasetError(
                f"dataset '{self.name}' has {self.images.shape[1]}-channel images, but images must be grayscale (1 "
                f"channel) or RGB (3): {channel_fix(self.images.shape[1])}")
        self.labels = self.labels.to(torch.int64)
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(f"dataset '{self.name}' has duplicate class names")
        if self.labels.numel() and (int(self.labels.min()) < 0
                                    or int(self.labels.max()) >= len(self.class_names)):
            raise DatasetError(f"dataset '{self.name}' has labels outside 0..{len(self.class_names) - 1}")
        if not self.fingerprint:
            digest = hashlib.sha256()
            digest.update(self.images.numpy().tobytes())
            digest.update(self.labels.numpy().tobytes())
            digest.update("\n".join(self.class_names).encode())
            self.fingerprint = digest.hexdigest()[:16]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts))

    def class_id(self, name: str) -> int:
        return self.class_names.index(name)

    def resized(self, size: int | None, channels: int | None = None) -> "ImageDataset":
        """A copy resized to ``size``×``size`` (antialiased) and converted to ``channels``, still uint8."""
        images = self.images
        if channels is not None and channels != images.shape[1]:
            if channels == 3 and images.shape[1] == 1:
                images = images.expand(-1, 3, -1, -1).contiguous()
            elif channels == 1 and images.shape[1] == 3:
                weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
            else:
                raise ConfigError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")
        if size is not None and tuple(images.shape[2:]) != (size, size):
            chunks = []
            for start in range(0, images.shape[0], 4096):
                chunk = images[start:start + 4096].float()
                chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True,
                                      align_corners=False)
                chunks.append(chunk.round().clamp(0, 255).to(torch.uint8))
            images = torch.cat(chunks) if chunks else images
        if images is self.images:
            return self
        return ImageDataset(images, self.labels, self.class_names, self.name,
                            fingerprint=f"{self.fingerprint}-{size}-{channels}", metadata=self.metadata)


class DatasetPlugin:
    """Base class of dataset plugins: declared options, ``load()``, and split presets from YAML.

    A plugin module ``datasets/foo.py`` keeps its split presets in ``datasets/foo.yaml``::

        default: paper
        splits:
          paper: {train: [happy, neutral, sad, surprise], test: [angry, disgust, fear]}
    """

    options: ClassVar[tuple[Option, ...]] = ()
    # The image side and channels the plugin decodes to unless the run sets --image-size / --channels (None:
    # the images' own). ``load`` receives the run's target as ``options["size"]`` and ``options["channels"]``
    # (see ``load_options``), so images are decoded once at the size the run uses; data stored at a fixed
    # size (an .npz) is resampled once afterwards by the harness.
    image_size: ClassVar[int | None] = None
    image_channels: ClassVar[int | None] = None
    needs_root: ClassVar[bool] = True
    where_to_get: ClassVar[str] = ""
    # Whether exact duplicate images are removed unless the run says otherwise (config key ``dedup``).
    dedup_default: ClassVar[bool] = False
    # Whether the dataset is made of parts de-duplicated each by its own default (``combined``): ``load`` then sets
    # ``metadata["part_of"]`` (each image's part) and ``metadata["part_dedup_default"]`` ({part: bool}), and the
    # harness removes duplicates within each part (the run's ``dedup``, when given, applies to every part).
    dedups_parts: ClassVar[bool] = False
    # Whether ``load`` unpickles files under --data-root (which can run code): a resumed run's config that
    # names such a dataset is shown and confirmed before it loads.
    unpickles: ClassVar[bool] = False

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        raise NotImplementedError

    def load_options(self, options: dict[str, Any], image_size: int | None = None,
                     channels: int | None = None) -> dict[str, Any]:
        """The options ``load`` receives: the resolved declared ones plus the target geometry, ``size`` and
        ``channels`` (the run's --image-size / --channels, else the plugin's own)."""
        return {**options, "size": image_size or self.image_size or options.get("size"),
                "channels": channels or self.image_channels or options.get("channels")}

    def presets_file(self) -> Path:
        module = __import__(type(self).__module__, fromlist=["__file__"])
        return Path(module.__file__).with_suffix(".yaml")

    def split_presets(self, dataset: ImageDataset | None = None) -> tuple[str | None, dict[str, ClassSplit]]:
        """The default preset's name and every preset of this plugin, read from its YAML file."""
        path = self.presets_file()
        if not path.exists():
            return None, {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"split presets file {path} is not valid YAML: {exc}") from None
        presets = {name: ClassSplit.from_mapping(body, where=f"preset '{name}' in {path}", name=name)
                   for name, body in (data.get("splits") or {}).items()}
        return data.get("default"), presets


def channel_fix(channels: int) -> str:
    """How to turn ``channels``-channel images into 1 or 3 channels, for error messages."""
    if channels in (2, 4):
        alpha = "gray + alpha" if channels == 2 else "RGBA"
        return (f"if they are {alpha}, drop the alpha channel (images[..., :{channels - 1}] before saving) or pass "
                "--channels 3 or --channels 1 (the alpha channel is then dropped)")
    return "save them with 1 or 3 channels (a (N,C,H,W) array must be saved as (N,H,W,C))"


def as_uint8_nchw(array: np.ndarray, where: str) -> torch.Tensor:
    """Turn (N,H,W) or (N,H,W,C) uint8 arrays into an (N,C,H,W) tensor."""
    if array.dtype != np.uint8:
        raise DatasetError(f"{where}: images must be uint8, got {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(f"{where}: images must have shape (N,H,W) or (N,H,W,C), got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


def class_ids_for(names: Sequence[str], class_names: Sequence[str]) -> list[int]:
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in names]

"""Turning episodes (index sets) into normalised tensors on the device."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from fewshot_bench.data import ImageDataset
from fewshot_bench.device import to_device
from fewshot_bench.episodes import Episode
from fewshot_bench.method import Task


def channel_statistics(images: torch.Tensor, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0, 1] units) of the images at ``indices``.

    The runner passes the meta-training classes' indices only: test classes never inform normalisation.
    """
    count = 0
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(images.shape[1], dtype=torch.float64)
    for start in range(0, len(indices), 8192):
        chunk = images[torch.as_tensor(indices[start:start + 8192])].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.pow(2).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


# Share of the accelerator's free memory the uint8 dataset may take before it stays in host memory.
DEVICE_DATA_FRACTION = 0.25


def fits_on_device(images: torch.Tensor, device: torch.device) -> bool:
    """Whether to keep the decoded dataset on ``device`` (always on CPU; on CUDA if it takes a small share)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() <= DEVICE_DATA_FRACTION * free


class TaskBuilder:
    """Holds the dataset's uint8 images and gathers normalised episodes from them on the device.

    The images live on the device when they fit (FER2013 is 83 MB), so an episode is one index gather with
    no host work; otherwise they stay in pinned host memory, are gathered there and copied asynchronously.
    """

    def __init__(self, dataset: ImageDataset, device: torch.device, mean: torch.Tensor, std: torch.Tensor,
                 keep_on_device: bool | None = None) -> None:
        self.device = device
        on_device = fits_on_device(dataset.images, device) if keep_on_device is None else keep_on_device
        if on_device:
            self.images = dataset.images.to(device)
        else:
            self.images = dataset.images.pin_memory() if device.type == "cuda" else dataset.images
        self.on_device = on_device
        channels = self.images.shape[1]
        self.scale = (1.0 / (255.0 * std)).view(1, channels, 1, 1).to(device)
        self.shift = (mean / std).view(1, channels, 1, 1).to(device)

    def gather(self, indices: np.ndarray, memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
        index = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        if self.on_device:
            selected = self.images.index_select(0, to_device(index, self.device))
        else:
            selected = to_device(self.images.index_select(0, index), self.device)
        images = selected.float().mul_(self.scale).sub_(self.shift)
        return images.contiguous(memory_format=memory_format)

    def task(self, episode: Episode, memory_format: torch.memory_format = torch.channels_last,
             augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Task:
        """The episode's images, normalised (and augmented, for meta-training only), in the layout the method
        asked for (``method.memory_format``)."""
        n_way, n_shot, n_query = episode.n_way, episode.n_shot, episode.n_query
        images = self.gather(np.concatenate([episode.support, episode.query]), torch.contiguous_format)
        if augment is not None:
            images = augment(images)
        images = images.contiguous(memory_format=memory_format)
        labels = torch.arange(n_way, device=self.device)
        return Task(
            support=images[: n_way * n_shot],
            support_labels=labels.repeat_interleave(n_shot),
            query=images[n_way * n_shot:],
            query_labels=labels.repeat_interleave(n_query),
            n_way=n_way,
            n_shot=n_shot,
        )

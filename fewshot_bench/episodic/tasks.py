"""Turning episodes (index sets) into normalised tensors on the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from fewshot_bench.data import ImageDataset
from fewshot_bench.device import to_device
from fewshot_bench.episodic.augment import EpisodeAugmenter
from fewshot_bench.episodic.episodes import Episode
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
        # The normalisation, kept with a cell's final weights so the trained model can be used without the data.
        self.mean, self.std = mean.detach().cpu().float(), std.detach().cpu().float()
        self.scale = (1.0 / (255.0 * std)).view(1, channels, 1, 1).to(device)
        self.shift = (mean / std).view(1, channels, 1, 1).to(device)

    def stage(self, indices: np.ndarray) -> torch.Tensor:
        """What the device needs to build the images at ``indices``, moved there without waiting: the indices
        when the dataset lives on the device, else the uint8 pixels gathered in host memory."""
        index = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        return to_device(index if self.on_device else self.images.index_select(0, index), self.device)

    def unstage(self, staged: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, C, H, W) from ``stage``'s output (device work only, so capturable)."""
        selected = self.images.index_select(0, staged) if self.on_device else staged
        return selected.float().mul_(self.scale).sub_(self.shift)

    def gather(self, indices: np.ndarray, memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
        return self.unstage(self.stage(indices)).contiguous(memory_format=memory_format)

    def stage_episodes(self, episodes: Sequence[Episode], augmenter: EpisodeAugmenter | None = None) -> StagedEpisodes:
        """Every image of ``episodes`` (each episode's support, then its query) staged in one transfer, with
        the augmentation draws of each image when training is augmented."""
        indices = np.concatenate([np.concatenate([e.support, e.query]) for e in episodes])
        draws = None
        if augmenter is not None:
            # One draw per episode, in episode order, exactly as augmenting episode by episode would.
            draws = to_device(torch.cat([augmenter.draw(len(e.support) + len(e.query)) for e in episodes]),
                              self.device)
        shapes = tuple((e.n_way, e.n_shot, e.n_query) for e in episodes)
        return StagedEpisodes(self.stage(indices), draws, shapes)

    def tasks(self, staged: torch.Tensor, shapes: Sequence[tuple[int, int, int]],
              memory_format: torch.memory_format = torch.channels_last, draws: torch.Tensor | None = None,
              augmenter: EpisodeAugmenter | None = None) -> list[Task]:
        """The episodes of ``stage_episodes`` as Tasks: normalised (and augmented, for meta-training only),
        in the layout the method asked for (``method.memory_format``). Device work only: a CUDA graph can
        capture it with ``staged`` and ``draws`` as its input buffers."""
        images = self.unstage(staged)
        if draws is not None and augmenter is not None:
            images = augmenter.apply(images, draws)
        images = images.contiguous(memory_format=memory_format)
        tasks, start = [], 0
        for n_way, n_shot, n_query in shapes:
            n_support = n_way * n_shot
            end = start + n_support + n_way * n_query
            labels = torch.arange(n_way, device=self.device)
            tasks.append(Task(
                support=images[start:start + n_support],
                support_labels=labels.repeat_interleave(n_shot),
                query=images[start + n_support:end],
                query_labels=labels.repeat_interleave(n_query),
                n_way=n_way,
                n_shot=n_shot,
            ))
            start = end
        return tasks

    def task(self, episode: Episode, memory_format: torch.memory_format = torch.channels_last,
             augmenter: EpisodeAugmenter | None = None) -> Task:
        """One episode's images as a Task (``stage_episodes`` then ``tasks``)."""
        staged = self.stage_episodes([episode], augmenter)
        return self.tasks(staged.images, staged.shapes, memory_format, staged.draws, augmenter)[0]


@dataclass(frozen=True)
class StagedEpisodes:
    """A meta-batch (or one test episode) on its way to the device, as ``TaskBuilder.tasks`` takes it.

    Attributes:
        images: (n_images,) int64 dataset indices (data on the device) or (n_images, C, H, W) uint8 pixels.
        draws: (n_images, 5) augmentation draws, or None.
        shapes: (n_way, n_shot, n_query) of each episode.
    """

    images: torch.Tensor
    draws: torch.Tensor | None
    shapes: tuple[tuple[int, int, int], ...]

    @property
    def buffers(self) -> list[torch.Tensor]:
        """The tensors a captured step reads (its static inputs)."""
        return [self.images] + ([self.draws] if self.draws is not None else [])

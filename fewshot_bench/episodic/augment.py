"""Training-time augmentation of meta-training episodes, done on the device in one batched call.

Random horizontal flip, random crop (a random translation of up to ``max_shift`` of the image side, with
border replication, as pad-and-crop does) and brightness/contrast jitter. Test and validation episodes
are never augmented. Draws come from a ``torch.Generator`` owned by the training loop, so augmented runs
are reproducible and resume exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_bench.device import to_device


class EpisodeAugmenter:
    """Augments a batch of normalised images (B, C, H, W) with flips, crops and photometric jitter."""

    def __init__(self, device: torch.device, seed: int, flip: bool = True, max_shift: float = 0.1,
                 jitter: float = 0.2) -> None:
        self.flip, self.max_shift, self.jitter = flip, max_shift, jitter
        # CPU generator: draws are tiny, and the same generator then works for any device.
        self.generator = torch.Generator().manual_seed(int(seed))
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, to_device(self.draw(images.shape[0]), images.device))

    def draw(self, n_images: int) -> torch.Tensor:
        """(n_images, 5) uniform draws on the host: flip, two shifts, contrast, brightness of each image.

        Drawn apart from ``apply`` so that a captured (CUDA-graph) step can take them as an input buffer.
        """
        return torch.rand(n_images, 5, generator=self.generator)

    def apply(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) transformed by ``draws`` (B, 5) from ``draw``, already on their device."""
        b = images.shape[0]
        sign = torch.where(draws[:, 0] < 0.5, -1.0, 1.0) if self.flip else torch.ones(b, device=images.device)
        shift = (draws[:, 1:3] * 2 - 1) * self.max_shift * 2  # affine_grid works in [-1, 1] units
        theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = sign
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        contrast = 1 + (draws[:, 3] * 2 - 1) * self.jitter
        brightness = (draws[:, 4] * 2 - 1) * self.jitter
        return out * contrast.view(b, 1, 1, 1) + brightness.view(b, 1, 1, 1)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

"""Contact sheets: a PNG with one row of sample images per class, so a person can look at a dataset.

Each row is laid out by ``torchvision.utils.make_grid`` (padding, grayscale to RGB); PIL writes the class
names beside the rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from fewshot_bench.data import ImageDataset

PAD = 2


def contact_sheet(dataset: ImageDataset, per_class: int = 12, seed: int = 0, scale: int = 2,
                  classes: list[str] | None = None) -> Image.Image:
    """One row per class (name and image count on the left, ``per_class`` random images), upscaled by
    ``scale`` (nearest neighbour, so pixels stay pixels)."""
    rng = np.random.default_rng(seed)
    names = classes or dataset.class_names
    labels = dataset.labels.numpy()
    channels, h, w = dataset.image_shape
    cell_h, cell_w = h * scale, w * scale
    font = ImageFont.load_default()
    label_w = 12 + max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(f"{n} (000000)", font=font))
                       for n in names)
    row_w = per_class * (cell_w + PAD)
    sheet = Image.new("RGB", (label_w + row_w, len(names) * (cell_h + PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(names):
        members = np.flatnonzero(labels == dataset.class_id(name))
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        y = row * (cell_h + PAD)
        draw.text((4, y + cell_h // 2 - 6), f"{name} ({len(members)})", fill="black", font=font)
        if not len(chosen):
            continue
        images = dataset.images[torch.as_tensor(np.sort(chosen))]
        images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        grid = make_grid(images, nrow=per_class, padding=PAD, pad_value=255)  # (3, H', W') uint8
        strip = Image.fromarray(grid[:, PAD:, PAD:].permute(1, 2, 0).numpy())
        sheet.paste(strip, (label_w, y))
    return sheet


def save_contact_sheet(dataset: ImageDataset, out: Path, per_class: int = 12, seed: int = 0) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(dataset, per_class=per_class, seed=seed).save(out)
    return out

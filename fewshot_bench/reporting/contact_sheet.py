"""Contact sheets: a PNG with one row of sample images per class, so a person can look at a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fewshot_bench.data import ImageDataset


def contact_sheet(dataset: ImageDataset, per_class: int = 12, seed: int = 0, scale: int = 2,
                  classes: list[str] | None = None) -> Image.Image:
    """One row per class (name on the left, ``per_class`` random images), images upscaled by ``scale``."""
    rng = np.random.default_rng(seed)
    names = classes or dataset.class_names
    labels = dataset.labels.numpy()
    _, h, w = dataset.image_shape
    cell_w, cell_h = w * scale, h * scale
    font = ImageFont.load_default()
    label_w = 12 + max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(f"{n} (000000)", font=font))
                       for n in names)
    sheet = Image.new("RGB", (label_w + per_class * (cell_w + 2), len(names) * (cell_h + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(names):
        members = np.flatnonzero(labels == dataset.class_id(name))
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        y = row * (cell_h + 2)
        draw.text((4, y + cell_h // 2 - 6), f"{name} ({len(members)})", fill="black", font=font)
        for col, index in enumerate(chosen):
            array = dataset.images[int(index)].numpy()
            image = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
            sheet.paste(image.convert("RGB").resize((cell_w, cell_h), Image.NEAREST),
                        (label_w + col * (cell_w + 2), y))
    return sheet


def save_contact_sheet(dataset: ImageDataset, out: Path, per_class: int = 12, seed: int = 0) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(dataset, per_class=per_class, seed=seed).save(out)
    return out

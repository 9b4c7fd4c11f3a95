"""``synthetic-fer``: a procedurally drawn facial-expression dataset, the harness's built-in default.

Real FER datasets cannot ship with the project (their licences forbid redistribution), so this dataset
exercises the same protocol with the same 7 class names and RAF-DB-like class imbalance.

How an image is made (all vectorised over a batch, drawn with analytic anti-aliasing):

* **identity** (shared by many images): face width/height, skin tone, eye spacing and size, brow
  thickness, nose length, mouth position, hair amount/line/shade, glasses;
* **expression**, as action-unit-like parameters (brow raise, inner-brow raise/lower, eye opening, lip
  corner curve, mouth opening, mouth width, nose wrinkle, upper-lip raise). Each class has a prototype;
  a sample scales it by a random intensity and adds noise, so classes overlap as in the wild: fear and
  surprise share raised brows and wide eyes, anger and disgust share lowered brows, and weak expressions
  drift towards neutral;
* **nuisances**: rotation, scale, shift, lighting gradient, contrast, sensor noise, blur and an
  occluding patch.

Identity traits move many pixels but carry no class information; expression parameters are what the
classes differ in, with a spread large enough that few-shot accuracy on the unseen classes stays far
from 100 %. The same seed and options give byte-identical images; results are cached on disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.cache import cached_arrays
from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import ConfigError
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
RAF_DB_COUNTS = {"surprise": 1619, "fear": 355, "disgust": 877, "happy": 5957, "sad": 2460,
                 "angry": 867, "neutral": 3204}
MIN_PER_CLASS = 40

# Expression prototypes: brow_raise, brow_inner, eye_open, mouth_curve, mouth_open, mouth_width,
# nose_wrinkle, upper_lip. Neutral is all zeros; units are roughly "full expression = 1".
EXPRESSION_AXES = ["brow_raise", "brow_inner", "eye_open", "mouth_curve", "mouth_open",
                   "mouth_width", "nose_wrinkle", "upper_lip"]
PROTOTYPES = {
    "angry":    [-0.8, -0.9, 0.1, -0.35, 0.05, -0.35, 0.2, 0.0],
    "disgust":  [-0.5, -0.4, -0.35, -0.45, 0.15, 0.0, 0.9, 0.8],
    "fear":     [0.65, 0.6, 0.75, -0.25, 0.45, 0.45, 0.0, 0.1],
    "happy":    [0.05, 0.0, -0.3, 1.0, 0.35, 0.6, 0.0, 0.1],
    "sad":      [-0.1, 0.8, -0.35, -0.7, 0.0, -0.1, 0.0, 0.0],
    "surprise": [0.95, 0.2, 0.95, 0.0, 0.95, -0.3, 0.0, 0.0],
    "neutral":  [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
}


def class_sizes(total: int) -> dict[str, int]:
    """RAF-DB's class proportions scaled to ``total`` images, at least 40 per class."""
    raf_total = sum(RAF_DB_COUNTS.values())
    return {name: max(MIN_PER_CLASS, int(round(total * RAF_DB_COUNTS[name] / raf_total)))
            for name in CLASS_NAMES}


def _coverage(distance: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside) in face units."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: Any, cy: Any, rx: Any, ry: Any) -> np.ndarray:
    """Approximate signed distance to an ellipse (exact for circles, good near the boundary)."""
    nx, ny = (x - cx) / rx, (y - cy) / ry
    r = np.sqrt(nx * nx + ny * ny) + 1e-9
    grad = np.sqrt((nx / rx) ** 2 + (ny / ry) ** 2) / r + 1e-9
    return (r - 1.0) / grad


def _capsule(x: np.ndarray, y: np.ndarray, ax: Any, ay: Any, bx: Any, by: Any, radius: Any) -> np.ndarray:
    """Signed distance to a thick line segment from a to b."""
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    t = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.hypot(px - t * dx, py - t * dy) - radius


def _paint(canvas: np.ndarray, alpha: np.ndarray, shade: Any) -> np.ndarray:
    return canvas * (1.0 - alpha) + shade * alpha


def _col(values: np.ndarray) -> np.ndarray:
    return values[:, None, None]


def _draw_batch(identity: dict[str, np.ndarray], expr: np.ndarray, nuisance: dict[str, np.ndarray],
                size: int, rng: np.random.Generator) -> np.ndarray:
    """Render a batch of faces; every argument holds one value per image. Returns (B, size, size) uint8."""
    b = expr.shape[0]
    grid = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    gx, gy = np.meshgrid(grid, grid)
    scale, angle = _col(nuisance["scale"]), _col(nuisance["angle"])
    sx, sy = gx[None] - _col(nuisance["shift_x"]), gy[None] - _col(nuisance["shift_y"])
    cos, sin = np.cos(angle), np.sin(angle)
    x = (cos * sx + sin * sy) / scale
    y = (-sin * sx + cos * sy) / scale
    pixel = 2.0 / size / scale
    e = {axis: _col(expr[:, i]) for i, axis in enumerate(EXPRESSION_AXES)}
    ident = {k: _col(v) for k, v in identity.items()}

    canvas = np.broadcast_to(_col(nuisance["background"]), (b, size, size)).copy()
    # Hair behind the head, then the face, then the hair cap above the hairline.
    hair_shade = ident["hair_shade"]
    hair_back = _ellipse(x, y, 0.0, -0.05 + 0.1 * ident["hair_amount"], ident["face_rx"] * 1.12,
                         ident["face_ry"] * (0.95 + 0.2 * ident["hair_amount"]))
    canvas = _paint(canvas, _coverage(hair_back, pixel) * _col(identity["hair_amount"] > 0.3), hair_shade)
    face = _ellipse(x, y, 0.0, 0.05, ident["face_rx"], ident["face_ry"])
    canvas = _paint(canvas, _coverage(face, pixel), ident["skin"])
    cap = np.maximum(_ellipse(x, y, 0.0, 0.02, ident["face_rx"] * 1.04, ident["face_ry"] * 1.02),
                     y - ident["hairline"])
    canvas = _paint(canvas, _coverage(cap, pixel), hair_shade)

    dark = ident["skin"] * 0.25
    eye_y = ident["eye_y"]
    eye_open = np.clip(1.0 + 0.65 * e["eye_open"], 0.25, 2.2)
    for side in (-1.0, 1.0):
        ex = side * ident["eye_dx"]
        ew, eh = ident["eye_w"], ident["eye_w"] * 0.55 * eye_open
        sclera = _ellipse(x, y, ex, eye_y, ew, eh)
        canvas = _paint(canvas, _coverage(sclera, pixel), 0.92)
        pupil = np.maximum(_ellipse(x, y, ex, eye_y, ew * 0.45, ew * 0.45), sclera)
        canvas = _paint(canvas, _coverage(pupil, pixel), 0.08)
        # Brows: overall height from brow_raise, inner end from brow_inner (sad/fear up, anger down).
        base = eye_y - eh - 0.07 - 0.16 * e["brow_raise"]
        inner_y = base - 0.10 * e["brow_inner"]
        outer_y = base + 0.02 * e["brow_inner"]
        brow = _capsule(x, y, side * (ident["eye_dx"] - ew * 0.9), inner_y,
                        side * (ident["eye_dx"] + ew * 1.15), outer_y, ident["brow_thick"])
        canvas = _paint(canvas, _coverage(brow, pixel), hair_shade * 0.8)
        # Nose-bridge wrinkles (disgust, some anger).
        wrinkle = _capsule(x, y, side * 0.04, eye_y + 0.05, side * 0.13, eye_y + 0.15, 0.022)
        canvas = _paint(canvas, _coverage(wrinkle, pixel) * np.clip(e["nose_wrinkle"], 0, 1), dark)
        # Glasses: ring around each eye.
        ring = np.abs(_ellipse(x, y, ex, eye_y, ew * 1.6, ew * 1.25)) - 0.014
        canvas = _paint(canvas, _coverage(ring, pixel) * ident["glasses"], 0.12)

    nose = _capsule(x, y, 0.0, eye_y + 0.08, 0.0, eye_y + ident["nose_len"], 0.018)
    canvas = _paint(canvas, _coverage(nose, pixel), ident["skin"] * 0.7)
    nostrils = _capsule(x, y, -0.05, eye_y + ident["nose_len"], 0.05, eye_y + ident["nose_len"], 0.02)
    canvas = _paint(canvas, _coverage(nostrils, pixel), ident["skin"] * 0.55)

    # Mouth: a curved band whose centre line bends with mouth_curve; its opening with mouth_open.
    mw = ident["mouth_w"] * np.clip(1.0 + 0.3 * e["mouth_width"], 0.5, 1.6)
    my = ident["mouth_y"]
    t = np.clip(x / mw, -1.0, 1.0)
    centre = my + 0.06 * e["mouth_curve"] * (1.0 - 2.0 * t * t) - 0.05 * e["mouth_curve"] * t * t
    bulge = 1.0 - t * t
    upper = centre - (0.012 + 0.05 * np.clip(e["mouth_open"], 0, None) * 0.6
                      + 0.06 * np.clip(e["upper_lip"], 0, None)) * bulge
    lower = centre + (0.012 + 0.09 * np.clip(e["mouth_open"], 0, None)) * bulge
    inside = np.maximum(np.maximum(upper - y, y - lower), np.abs(x) - mw)
    canvas = _paint(canvas, _coverage(inside - 0.012, pixel), ident["skin"] * 0.45)
    canvas = _paint(canvas, _coverage(inside, pixel) * _col(expr[:, 4] > 0.15), 0.1)

    # Nuisances: lighting gradient, contrast, occluder, blur, noise.
    light = _col(nuisance["light"]) * (np.cos(_col(nuisance["light_dir"])) * gx[None]
                                       + np.sin(_col(nuisance["light_dir"])) * gy[None])
    canvas = (canvas + light - 0.5) * _col(nuisance["contrast"]) + 0.5
    occ = np.maximum(np.abs(gx[None] - _col(nuisance["occ_x"])) - _col(nuisance["occ_w"]),
                     np.abs(gy[None] - _col(nuisance["occ_y"])) - _col(nuisance["occ_h"]))
    canvas = _paint(canvas, _coverage(occ, 2.0 / size) * _col(nuisance["occluded"]), _col(nuisance["occ_shade"]))
    blurred = canvas.copy()
    blurred[:, 1:-1, 1:-1] = (canvas[:, :-2, 1:-1] + canvas[:, 2:, 1:-1] + canvas[:, 1:-1, :-2]
                              + canvas[:, 1:-1, 2:] + 2 * canvas[:, 1:-1, 1:-1]) / 6.0
    canvas = _paint(canvas, _col(nuisance["blur"]), blurred)
    canvas = canvas + rng.normal(0.0, 1.0, canvas.shape) * _col(nuisance["noise"])
    return np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)


def generate(total: int = 4000, size: int = 48, identities: int = 120, seed: int = 0,
             expression_noise: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the dataset: (N, size, size) uint8 images, (N,) int64 labels in CLASS_NAMES order and (N,) the
    synthetic person each image shows (its identity traits)."""
    rng = np.random.default_rng(seed)
    sizes = class_sizes(total)
    labels = np.concatenate([np.full(sizes[name], i, dtype=np.int64) for i, name in enumerate(CLASS_NAMES)])
    n = len(labels)
    u = rng.uniform
    identity_table = {
        "face_rx": u(0.56, 0.66, identities), "face_ry": u(0.74, 0.84, identities),
        "skin": u(0.55, 0.85, identities), "eye_dx": u(0.21, 0.30, identities),
        "eye_w": u(0.085, 0.125, identities), "eye_y": u(-0.18, -0.08, identities),
        "brow_thick": u(0.03, 0.05, identities), "nose_len": u(0.2, 0.3, identities),
        "mouth_y": u(0.38, 0.5, identities), "mouth_w": u(0.16, 0.24, identities),
        "hair_amount": u(0.0, 1.0, identities), "hairline": u(-0.62, -0.4, identities),
        "hair_shade": u(0.05, 0.45, identities), "glasses": (u(0, 1, identities) < 0.2).astype(np.float64),
    }
    who = rng.integers(0, identities, n)
    prototypes = np.array([PROTOTYPES[name] for name in CLASS_NAMES])
    intensity = u(0.7, 1.2, (n, 1))
    expr = prototypes[labels] * intensity + rng.normal(0.0, expression_noise, (n, len(EXPRESSION_AXES)))
    nuisance = {
        "scale": u(0.88, 1.1, n), "angle": rng.normal(0, 0.12, n),
        "shift_x": rng.normal(0, 0.05, n), "shift_y": rng.normal(0, 0.05, n),
        "background": u(0.25, 0.75, n), "light": u(0.0, 0.15, n), "light_dir": u(0, 2 * np.pi, n),
        "contrast": u(0.8, 1.15, n), "noise": u(0.01, 0.04, n), "blur": u(0.0, 1.0, n),
        "occluded": (u(0, 1, n) < 0.1).astype(np.float64), "occ_x": u(-0.8, 0.8, n),
        "occ_y": u(-0.2, 0.9, n), "occ_w": u(0.1, 0.3, n), "occ_h": u(0.1, 0.35, n),
        "occ_shade": u(0.0, 1.0, n),
    }
    images = np.empty((n, size, size), dtype=np.uint8)
    batch = 512
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        ident = {k: v[who[start:stop]] for k, v in identity_table.items()}
        nuis = {k: v[start:stop] for k, v in nuisance.items()}
        images[start:stop] = _draw_batch(ident, expr[start:stop], nuis, size, rng)
    return images, labels, who


@register_dataset("synthetic-fer")
class SyntheticFER(DatasetPlugin):
    """Procedurally drawn grayscale faces with the 7 FER expressions and RAF-DB's class imbalance (built in)."""

    needs_root = False
    image_size, image_channels = 48, 1
    where_to_get = "built in: generated on first use and cached"
    options = (
        Option("total", int, 4000, "approximate number of images (RAF-DB proportions, >= 40 per class)"),
        Option("identities", int, 120, "number of distinct synthetic people"),
        Option("seed", int, 0, "generator seed (same seed, same bytes)"),
        Option("expression_noise", float, 0.25, "per-image spread of expression parameters"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        if options["size"] < 16:
            raise ConfigError(f"synthetic-fer draws faces of at least 16 pixels, got --image-size {options['size']}")
        if options["channels"] not in (None, 1):
            # drawn in grayscale; the harness converts after loading
            options = {**options, "channels": 1}
        # The generator's own source is part of the key: editing the drawing code never reuses stale images.
        key = hashlib.sha256(Path(__file__).read_bytes() + repr(sorted(options.items())).encode()).hexdigest()[:16]

        def build() -> dict[str, np.ndarray]:
            images, labels, who = generate(options["total"], options["size"], options["identities"],
                                           options["seed"], options["expression_noise"])
            return {"images": images, "labels": labels, "identity": who}

        arrays = cached_arrays("synthetic-fer", key, build)
        # The fingerprint (which seeds the episodes) is the content hash ImageDataset computes, so episodes
        # change only when the images do, not when the generator's source is merely edited.
        # Each image's synthetic person is its group (subject): --group-separation keeps them apart.
        groups = np.array([f"person-{i:03d}" for i in arrays["identity"]], dtype=object)
        return ImageDataset(torch.from_numpy(arrays["images"][:, None].copy()),
                            torch.from_numpy(arrays["labels"].astype(np.int64)), list(CLASS_NAMES), "synthetic-fer",
                            metadata={"groups": groups})

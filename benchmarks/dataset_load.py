"""Time FER2013's first (decoding) load and its cached load, for the official CSV and the Kaggle folders.

Builds official-layout copies from an array file (e.g. ../shared/data/fer2013.npz) in a temporary folder,
then loads each through the harness twice with an empty cache. Prints seconds per load.

    .venv/bin/python benchmarks/dataset_load.py ../shared/data/fer2013.npz
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def write_csv(images: np.ndarray, labels: np.ndarray, usage: np.ndarray, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for image, label, use in zip(images, labels, usage):
            writer.writerow([int(label), " ".join(map(str, image.reshape(-1))), use])


def write_folders(images: np.ndarray, labels: np.ndarray, usage: np.ndarray, root: Path) -> None:
    for i, (image, label, use) in enumerate(zip(images, labels, usage)):
        folder = root / ("train" if use == "Training" else "test") / CLASS_NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=95)


def timed_load(root: Path) -> tuple[float, int]:
    from fewshot_bench.config import merge
    from fewshot_bench.episodic.protocol import load_dataset

    start = time.perf_counter()
    # Decoding and caching only: duplicate removal (FER2013's default, ~0.5 s on the whole set) is left out.
    dataset = load_dataset(merge(None, {"dataset": "fer2013", "data_root": str(root), "dedup": False}))
    return time.perf_counter() - start, len(dataset.labels)


def main(npz: str) -> None:
    with np.load(npz) as data:
        images, labels, usage = data["images"], data["labels"], data["usage"].astype(str)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["FEWSHOT_BENCH_CACHE"] = str(tmp_path / "cache")
        write_csv(images, labels, usage, tmp_path / "fer2013.csv")
        folders = tmp_path / "kaggle"
        write_folders(images, labels, usage, folders)
        for name, root in (("fer2013.csv", tmp_path / "fer2013.csv"), ("Kaggle folders", folders)):
            first, n = timed_load(root)
            cached, _ = timed_load(root)
            print(f"{name:<15} {n} images: first load {first:6.1f} s, cached load {cached:5.2f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fer2013.npz")

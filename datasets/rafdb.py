"""RAF-DB basic (Li, Deng & Du, CVPR 2017): 15,339 in-the-wild faces, 7 basic expressions.

Where to get it: request access from the authors (whdeng.cn/RAF/model1.html); it cannot be redistributed.
Expected layout under ``--data-root``::

    EmoLabel/list_patition_label.txt     lines like "train_00001.jpg 5"
    Image/aligned/train_00001_aligned.jpg  (``images=aligned``, the default, 100×100)
    Image/original/train_00001.jpg         (``images=original``)

Labels: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral (named here with the
FER names happy, sad, angry so that split presets are shared across FER datasets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset

CLASS_NAMES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def read_label_file(path: Path) -> list[tuple[str, int]]:
    """(image name, class id 0..6) per line of list_patition_label.txt."""
    if not path.is_file():
        raise DatasetError(f"RAF-DB label file '{path}' not found; --data-root must contain {LABEL_FILE}")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DatasetError(f"'{path}' line {number}: expected '<image name> <label>', got '{line.strip()}'")
        label = int(parts[1])
        if not 1 <= label <= 7:
            raise DatasetError(f"'{path}' line {number}: unknown label {label}; RAF-DB basic labels are 1..7")
        entries.append((parts[0], label - 1))
    if not entries:
        raise DatasetError(f"RAF-DB label file '{path}' is empty")
    return entries


def image_path(root: Path, name: str, images: str) -> Path:
    if images == "aligned":
        return root / "Image" / "aligned" / f"{Path(name).stem}_aligned{Path(name).suffix}"
    return root / "Image" / "original" / name


@register_dataset("rafdb")
class RAFDB(DatasetPlugin):
    """RAF-DB basic: 15,339 in-the-wild faces, 7 expressions (EmoLabel list + Image/aligned)."""

    where_to_get = "request RAF-DB from its authors (whdeng.cn/RAF/model1.html)"
    image_size, image_channels = 64, 3  # CSRN's input size
    options = (
        Option("images", str, "aligned", "which image folder to read", ("aligned", "original")),
        Option("subset", str, "all", "official partition to keep", ("all", "train", "test")),
        Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        entries = read_label_file(root / LABEL_FILE)
        if options["subset"] != "all":
            entries = [(n, c) for n, c in entries if n.startswith(options["subset"] + "_")]
        paths = [image_path(root, name, options["images"]) for name, _ in entries]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DatasetError(f"RAF-DB image '{missing[0]}' listed in {LABEL_FILE} is missing "
                               f"({len(missing)} missing in all); check images={options['images']}")
        items = [(path, CLASS_NAMES[c]) for path, (_, c) in zip(paths, entries)]
        return decoded_dataset("rafdb", items, options, CLASS_NAMES, extra_key_files=[root / LABEL_FILE])

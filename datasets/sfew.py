"""SFEW 2.0 (Dhall et al., ICCV workshops 2011 / EmotiW): faces from movie stills, 7 expressions.

Where to get it: from the EmotiW organisers (users.cecs.anu.edu.au/~few_group/emotiw); it cannot be
redistributed. Expected layout under ``--data-root``::

    Train/<Emotion>/*.png    Val/<Emotion>/*.png    [Test/<Emotion>/*.png]

with Emotion one of Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise. ``parts`` chooses which of the
top-level folders are read (default: every one present).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.errors import DatasetError
from fewshot_bench.imageio import class_folder_files, decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FOLDERS = {name.capitalize(): name for name in CLASS_NAMES}
PARTS = ("Train", "Val", "Test")


@register_dataset("sfew")
class SFEW(DatasetPlugin):
    """SFEW 2.0: faces from movie stills, 7 expressions (Train|Val|Test/<Emotion>/*.png)."""

    where_to_get = "request SFEW 2.0 from the EmotiW organisers"
    image_size, image_channels = 64, 3  # CSRN's input size
    options = (
        Option("parts", str, "all", "comma-separated top-level folders to read (Train,Val,Test) or all"),
        Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        assert root is not None
        wanted = PARTS if options["parts"] == "all" else tuple(p.strip() for p in options["parts"].split(","))
        unknown = [p for p in wanted if p not in PARTS]
        if unknown:
            raise DatasetError(f"unknown SFEW part '{unknown[0]}'; use Train, Val and/or Test")
        present = [p for p in wanted if (root / p).is_dir()]
        if not present:
            raise DatasetError(f"no SFEW folders ({', '.join(wanted)}) in '{root}'; expected Train/<Emotion>/*.png")
        items = [item for part in present for item in class_folder_files(root / part, FOLDERS)]
        return decoded_dataset("sfew", items, options, CLASS_NAMES)

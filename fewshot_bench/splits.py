"""Class splits: which class names are for meta-training, validation and testing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fewshot_bench.errors import SplitError


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint lists of class names for meta-training, optional validation, and testing."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    val: tuple[str, ...] = ()
    name: str = "custom"

    @classmethod
    def from_mapping(cls, body: Any, where: str, name: str = "custom") -> "ClassSplit":
        if not isinstance(body, Mapping):
            raise SplitError(f"{where}: a split must be a mapping with 'train' and 'test' class lists")
        unknown = sorted(set(body) - {"train", "val", "test", "name"})
        if unknown:
            raise SplitError(f"{where}: unknown split key '{unknown[0]}'; use train, val and test")
        lists = {}
        for part in ("train", "val", "test"):
            value = body.get(part, [])
            if value is None:
                value = []
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise SplitError(f"{where}: '{part}' must be a list of class names")
            lists[part] = tuple(str(v) for v in value)
        if not lists["train"] or not lists["test"]:
            raise SplitError(f"{where}: a split needs non-empty 'train' and 'test' class lists")
        return cls(lists["train"], lists["test"], lists["val"], str(body.get("name", name)))

    def validate(self, class_names: Sequence[str], dataset: str) -> None:
        """Refuse overlapping parts, duplicates and classes the dataset does not have."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        for part, names in parts.items():
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise SplitError(f"split '{self.name}' lists class '{dup}' twice in '{part}'")
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            overlap = sorted(set(parts[a]) & set(parts[b]))
            if overlap:
                raise SplitError(
                    f"split '{self.name}' puts class '{overlap[0]}' in both '{a}' and '{b}'; "
                    "meta-train, validation and test classes must be disjoint"
                )
        known = set(class_names)
        for part, names in parts.items():
            missing = [n for n in names if n not in known]
            if missing:
                preview = ", ".join(sorted(class_names)[:12])
                more = "" if len(class_names) <= 12 else f", ... ({len(class_names)} classes)"
                raise SplitError(
                    f"split '{self.name}' names {part} class '{missing[0]}' that dataset '{dataset}' "
                    f"does not have; its classes are: {preview}{more}"
                )

    def fingerprint(self) -> str:
        import hashlib

        text = "|".join(",".join(p) for p in (self.train, self.val, self.test))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

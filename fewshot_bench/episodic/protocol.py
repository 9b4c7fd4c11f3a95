"""The episodic protocol of a run: dataset, class split, episode settings, and their checks.

Everything impossible is refused here, before any training: unknown datasets or presets, a split naming
classes the dataset lacks or overlapping parts, more ways than classes, classes with too few items, one
image filed under two of the split's classes (a test image seen in meta-training), manifest labels outside
the declared classes, and validation asked of a split without (enough) validation classes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.config import DEFAULT_SEEN_HOLDOUT, RunConfig
from fewshot_bench.data import DatasetPlugin, ImageDataset, class_ids_for
from fewshot_bench.episodic.duplicates import cross_class_groups, deduplicated
from fewshot_bench.episodic.episodes import EpisodeSampler, EpisodeSet, check_episodes, derive_seed
from fewshot_bench.episodic.groups import episode_group_leak, episode_pair_leak, group_codes, group_partition
from fewshot_bench.episodic.holdout import group_holdout, holdout_sha, image_holdout, masked_labels, seen_holdout
from fewshot_bench.errors import ConfigError, DatasetError
from fewshot_bench.options import resolve_options
from fewshot_bench.registry import DATASETS
from fewshot_bench.splits import ClassSplit

MAX_ALL_CLASS_TRAIN_WAY = 20


@dataclass(frozen=True)
class TrainingImages:
    """Every image of a split's training classes: what pre-training, the fit stage and the normalisation
    statistics see (never an image of a validation or test class).

    Attributes:
        class_ids: the training classes' dataset ids, sorted.
        indices: (N,) dataset indices of their images, in dataset order.
        targets: (N,) each image's class as 0..C-1 in ``class_ids`` order.
    """

    class_ids: tuple[int, ...]
    indices: np.ndarray
    targets: np.ndarray


@dataclass
class Protocol:
    """A loaded dataset with its validated split and the episode sizes of a run."""

    dataset: ImageDataset
    split: ClassSplit
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int]
    way: int
    train_way: int
    query: int
    train_query: int
    labels: np.ndarray
    # Dataset indices of the training classes' images no training sees (``--context seen``; empty: none).
    seen_holdout: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The part of the hold-out that model selection validates on, when a split without validation classes asks
    # for selection (``--val-episodes``); the seen-class rows are drawn from the rest. Empty: no such selection.
    seen_selection: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # ``--group-separation``: none, subgroup, group or split (``episodic.groups``).
    group_separation: str = "none"
    # With ``split``: which groups (subjects) are the test side, and the images the split's side rule removed.
    test_groups: np.ndarray | None = None
    group_excluded: int = 0
    # The near-duplicate rule the leak counter uses (``--near-threshold``).
    near_threshold: float = 10.0

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def holds_out_seen_images(self) -> bool:
        return len(self.seen_holdout) > 0

    @property
    def seen_holdout_sha(self) -> str | None:
        return holdout_sha(self.seen_holdout) if self.holds_out_seen_images else None

    @cached_property
    def training_labels(self) -> np.ndarray:
        """``labels`` with the seen-class hold-out labelled -1: what every training stage draws from."""
        return masked_labels(self.labels, drop=self.seen_holdout) if self.holds_out_seen_images else self.labels

    @cached_property
    def groups(self) -> np.ndarray | None:
        """Each image's group code (subject), or None when the dataset declares none."""
        return group_codes(self.dataset.metadata, "group", len(self.labels))

    @cached_property
    def subgroups(self) -> np.ndarray | None:
        """Each image's sub-group code (sequence), or None when the dataset declares none."""
        return group_codes(self.dataset.metadata, "subgroup", len(self.labels))

    @property
    def separating_groups(self) -> np.ndarray | None:
        """The codes the samplers keep apart within an episode (``--group-separation``), or None."""
        if self.group_separation == "none":
            return None
        codes = self.subgroups if self.group_separation == "subgroup" else self.groups
        if codes is None:
            raise DatasetError(f"--group-separation {self.group_separation} needs the dataset to declare "
                               f"{'sub-groups (sequences)' if self.group_separation == 'subgroup' else 'groups (subjects)'}"
                               f" per image; dataset '{self.dataset.name}' declares none (image-folder and "
                               "csv-manifest take them with --dataset-option group_pattern=REGEX or group_column=NAME)")
        return codes

    def group_leak(self, episodes: EpisodeSet) -> dict[str, Any]:
        """How many support/query pairs of ``episodes`` share a group, a sub-group (None where the dataset declares
        none), or are near-duplicate images (``episodic.near_duplicates``, at ``near_threshold``)."""
        return {"group": episode_group_leak(episodes.support, episodes.query, self.groups),
                "subgroup": episode_group_leak(episodes.support, episodes.query, self.subgroups),
                "near_duplicate": {**episode_pair_leak(episodes.support, episodes.query, self.test_near_pairs,
                                                       len(self.labels)), "threshold": self.near_threshold},
                "separation": self.group_separation}

    @cached_property
    def test_near_pairs(self) -> np.ndarray:
        """(P, 2) near-duplicate pairs among the test and validation classes' images (what test episodes hold)."""
        from fewshot_bench.episodic.near_duplicates import near_duplicate_pairs

        indices = np.flatnonzero(np.isin(self.labels, [*self.test_ids, *self.val_ids]))
        return near_duplicate_pairs(self.dataset.images, self.near_threshold, indices=indices)

    @cached_property
    def test_seed_parts(self) -> tuple[str, ...]:
        """What the test episodes' seed is derived from besides the episode sizes. A dataset's fingerprint and the
        split's; for a ``combined`` dataset (``bench cross``), the test classes' own images and names, so every
        row of a cross-dataset column (each trained on another dataset) is tested on the same episodes."""
        if "parts" not in self.dataset.metadata:
            return (self.dataset.fingerprint, self.split.fingerprint())
        import hashlib

        digest = hashlib.sha256()
        for class_id in sorted(self.test_ids, key=lambda c: self.class_names[c]):
            digest.update(self.class_names[class_id].encode())
            digest.update(self.dataset.images[torch.from_numpy(np.flatnonzero(self.labels == class_id))].numpy().tobytes())
        return ("combined-test-classes", digest.hexdigest()[:16])

    def training_images(self) -> TrainingImages:
        """The training classes' images, without the seen-class hold-out (the one place that computes them)."""
        class_ids = sorted(self.train_ids)
        indices = np.flatnonzero(np.isin(self.training_labels, class_ids))
        return TrainingImages(tuple(class_ids), indices, np.searchsorted(class_ids, self.labels[indices]))

    def train_sampler(self, shot: int, seed: int) -> EpisodeSampler:
        return EpisodeSampler(self.training_labels, self.train_ids, self.train_way, shot, self.train_query,
                              derive_seed(seed, "train", self.dataset.fingerprint, self.split.fingerprint(),
                                          self.train_way, shot, self.train_query),
                              self.class_names, purpose="meta-training", groups=self.separating_groups)

    def test_episodes(self, shot: int, seed: int, n_episodes: int) -> EpisodeSet:
        """The fixed test episodes of a setting: a function of the data, split, N, K, Q and seed only,
        so every method is evaluated on exactly the same episodes."""
        sampler = EpisodeSampler(self.labels, self.test_ids, self.way, shot, self.query,
                                 derive_seed(seed, "test", *self.test_seed_parts, self.way, shot, self.query),
                                 self.class_names, purpose="test", groups=self.separating_groups)
        episodes = sampler.sample_set(n_episodes)
        check_episodes(episodes, self.labels, self.test_ids, self.class_names, "test")
        return episodes

    @property
    def validation_source(self) -> str | None:
        """What model selection validates on: the split's validation classes, the seen-class hold-out's selection
        part (a split without validation classes), or nothing."""
        if self.val_ids:
            return "validation classes"
        return "seen-class hold-out (training classes' held-out images)" if len(self.seen_selection) else None

    def val_episodes(self, shot: int, seed: int, n_episodes: int) -> EpisodeSet | None:
        if n_episodes == 0:
            return None
        if not self.val_ids:
            return self._seen_selection_episodes(shot, seed, n_episodes) if len(self.seen_selection) else None
        way = min(self.way, len(self.val_ids))
        sampler = EpisodeSampler(self.labels, self.val_ids, way, shot, self.query,
                                 derive_seed(seed, "val", self.dataset.fingerprint, self.split.fingerprint(),
                                             way, shot, self.query),
                                 self.class_names, purpose="validation", groups=self.separating_groups)
        episodes = sampler.sample_set(n_episodes)
        check_episodes(episodes, self.labels, self.val_ids, self.class_names, "validation")
        return episodes

    @property
    def seen_row_images(self) -> np.ndarray:
        """The held-out images the seen-class rows are drawn from: the hold-out less its selection part."""
        return np.setdiff1d(self.seen_holdout, self.seen_selection) if len(self.seen_selection) else self.seen_holdout

    def _seen_sampler(self, shot: int, seed: int | np.random.SeedSequence, images: np.ndarray | None = None,
                      purpose: str = "seen-class (held-out training images)") -> EpisodeSampler:
        way = min(self.way, len(self.train_ids))
        images = self.seen_row_images if images is None else images
        return EpisodeSampler(masked_labels(self.labels, keep=images), self.train_ids, way, shot, self.query, seed,
                              self.class_names, purpose=purpose, groups=self.separating_groups)

    def _seen_selection_episodes(self, shot: int, seed: int, n_episodes: int) -> EpisodeSet:
        sampler = self._seen_sampler(shot, derive_seed(seed, "seen-selection", self.dataset.fingerprint,
                                                       self.split.fingerprint(), self.way, shot, self.query,
                                                       self.seen_holdout_sha),
                                     self.seen_selection, "validation (seen-class hold-out, selection part)")
        episodes = sampler.sample_set(n_episodes)
        check_episodes(episodes, masked_labels(self.labels, keep=self.seen_selection), self.train_ids,
                       self.class_names, "validation")
        return episodes

    def seen_episodes(self, shot: int, seed: int, n_episodes: int) -> EpisodeSet:
        """Episodes of the training classes drawn from the seen-class hold-out only (as many ways as the test
        episodes, or every training class when there are fewer): the same for every method of a setting."""
        sampler = self._seen_sampler(shot, derive_seed(seed, "seen", self.dataset.fingerprint, self.split.fingerprint(),
                                                       self.way, shot, self.query, self.seen_holdout_sha))
        episodes = sampler.sample_set(n_episodes)
        check_episodes(episodes, masked_labels(self.labels, keep=self.seen_row_images), self.train_ids,
                       self.class_names, "seen-class")
        return episodes

    def check_requests(self, shots: list[int], val_episodes: int) -> None:
        """Build every sampler the run will need once, so impossible requests fail before training."""
        for shot in shots:
            self.train_sampler(shot, 0)
            if self.holds_out_seen_images:
                self._seen_sampler(shot, 0)
            if len(self.seen_selection) and val_episodes:
                self._seen_sampler(shot, 0, self.seen_selection, "validation (seen-class hold-out, selection part)")
            tester = EpisodeSampler(self.labels, self.test_ids, self.way, shot, self.query, 0, self.class_names,
                                    purpose="test", groups=self.separating_groups)
            if tester.groups is not None:
                tester.sample()  # group-separated requests can be impossible only in the drawing: try one now
            if self.val_ids and val_episodes:
                EpisodeSampler(self.labels, self.val_ids, min(self.way, len(self.val_ids)), shot, self.query, 0,
                               self.class_names, purpose="validation", groups=self.separating_groups)


def dataset_plugin(name: str) -> DatasetPlugin:
    cls = DATASETS.get(name)
    plugin = cls() if isinstance(cls, type) else cls
    if not isinstance(plugin, DatasetPlugin):
        raise ConfigError(f"dataset '{name}' is not a DatasetPlugin; see the plugin guide")
    return plugin


def load_dataset(config: RunConfig) -> ImageDataset:
    """Load the configured dataset at the run's image size — decoded at that size by plugins that decode
    files, resampled once here (after ``dedup`` removed exact duplicates) for data stored at a fixed size."""
    plugin = dataset_plugin(config.dataset)
    geometry_keys = sorted({"size", "channels"} & set(config.dataset_options))
    if geometry_keys and not any(o.name in geometry_keys for o in plugin.options):
        raise ConfigError(f"'{geometry_keys[0]}' is a run setting, not a dataset option: use --image-size / "
                          "--channels (config keys image_size, channels) instead of --dataset-option "
                          f"{geometry_keys[0]}=...")
    options = resolve_options(plugin.options, config.dataset_options, owner=f"dataset '{config.dataset}'")
    options = plugin.load_options(options, config.image_size, config.channels)
    root = Path(config.data_root).expanduser() if config.data_root else None
    if plugin.needs_root and root is None:
        raise DatasetError(f"dataset '{config.dataset}' needs --data-root (where your copy lives); "
                           f"{plugin.where_to_get}".rstrip("; "))
    if root is not None and not root.exists():
        raise DatasetError(f"data root '{root}' does not exist; pass the folder of your copy of "
                           f"'{config.dataset}' with --data-root")
    dataset = renamed_classes(plugin.load(root, options), config.class_map)
    if plugin.dedups_parts:
        dataset = deduplicated_parts(dataset, config.dedup)
    elif plugin.dedup_default if config.dedup is None else config.dedup:
        dataset = deduplicated(dataset)[0]
    if config.near_dedup:
        from fewshot_bench.episodic.near_duplicates import near_deduplicated

        dataset = near_deduplicated(dataset, config.near_threshold)[0]
    return dataset.resized(config.image_size, config.channels)


def deduplicated_parts(dataset: ImageDataset, wanted: bool | None) -> ImageDataset:
    """A dataset of parts (``combined``) with exact duplicates removed within each part whose own default (or
    ``wanted``, when the run sets ``dedup``) says so; ``metadata["dedup"]`` records what each part lost (None: not
    de-duplicated). Duplicates across parts stay, for the split check to refuse."""
    record: dict[str, Any] = {}
    for part, default in dataset.metadata["part_dedup_default"].items():
        if not (default if wanted is None else wanted):
            record[part] = None
            continue
        within = np.flatnonzero(dataset.metadata["part_of"] == part)
        dataset, record[part] = deduplicated(dataset, within=within)
    dataset.metadata["dedup"] = record
    return dataset


def renamed_classes(dataset: ImageDataset, mapping: dict[str, str]) -> ImageDataset:
    """``dataset`` with its classes renamed by ``--class-map`` (two classes mapped to one name merge). In a
    ``combined`` dataset a key ``part/name`` renames that part's class and keeps the part's prefix."""
    if not mapping:
        return dataset
    names = dataset.class_names
    unknown = [key for key in mapping if key not in names]
    if unknown:
        from fewshot_bench.emotions import nearest

        close = nearest(unknown[0], names)
        hint = f"nearest: {', '.join(close)}; " if close else ""
        raise ConfigError(f"--class-map renames class '{unknown[0]}', which dataset '{dataset.name}' does not have ("
                          f"{hint}its classes: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
    renamed = []
    for name in names:
        target = mapping.get(name, name)
        if name in mapping and "/" in name and "/" not in target:
            target = f"{name.split('/', 1)[0]}/{target}"
        renamed.append(target)
    unique = list(dict.fromkeys(renamed))
    relabel = torch.tensor([unique.index(name) for name in renamed], dtype=torch.int64)
    return ImageDataset(dataset.images, relabel[dataset.labels], unique, dataset.name,
                        metadata={**dataset.metadata, "class_map": dict(mapping)})


def resolve_split(config: RunConfig, dataset: ImageDataset) -> ClassSplit:
    """The configured split: a preset name, the plugin's default preset, or a user mapping."""
    plugin = dataset_plugin(config.dataset)
    if isinstance(config.split, dict):
        split = ClassSplit.from_mapping(config.split, where="config key 'split'")
    else:
        default, presets = plugin.split_presets(dataset)
        name = config.split or default
        if name is None:
            raise ConfigError(f"dataset '{config.dataset}' has no default split; give one with split: "
                              "{train: [...], test: [...]} in your config")
        if name not in presets:
            raise ConfigError(f"unknown split '{name}' for dataset '{config.dataset}'; presets: "
                              f"{', '.join(sorted(presets)) or 'none'}")
        preset = presets[name]
        split = ClassSplit(preset.train, preset.test, preset.val, name)
    split = in_dataset_names(split, dataset.class_names, config.dataset)
    split.validate(dataset.class_names, config.dataset)
    return split


def in_dataset_names(split: ClassSplit, class_names: list[str], dataset: str) -> ClassSplit:
    """``split`` with each class name the dataset lacks replaced by the dataset's name for the same emotion
    (``fewshot_bench.emotions``: ``angry`` finds a folder ``anger``, ``happy`` finds ``Happiness``); a name without
    such a match stays, and ``ClassSplit.validate`` reports it with the dataset's classes and the nearest names."""
    from fewshot_bench.emotions import find

    def matched(names: tuple[str, ...]) -> tuple[str, ...]:
        result = []
        for name in names:
            prefix, _, own = name.rpartition("/")
            options = [c.rpartition("/")[2] for c in class_names if c.rpartition("/")[0] == prefix]
            found = find(own, options) if name not in class_names else own
            result.append(f"{prefix}/{found}" if prefix and found else found or name)
        return tuple(result)

    return ClassSplit(matched(split.train), matched(split.test), matched(split.val), split.name)


def prepare(config: RunConfig) -> Protocol:
    """Load the data, validate the split and every episode request of ``config``."""
    if config.part_splits:
        raise ConfigError("part_splits gives each dataset of `bench cross` its split; for one run of the combined "
                          "dataset give them as --dataset-option 'splits={part: {train: [...], test: [...]}}'")
    dataset = load_dataset(config)
    split = resolve_split(config, dataset)
    check_validation(config, split)
    check_manifest_labels(dataset, split)
    check_no_shared_images(dataset, split)
    train_ids = class_ids_for(split.train, dataset.class_names)
    train_way = config.train_way or (len(train_ids) if len(train_ids) <= MAX_ALL_CLASS_TRAIN_WAY else config.way)
    protocol = Protocol(
        dataset=dataset,
        split=split,
        train_ids=train_ids,
        val_ids=class_ids_for(split.val, dataset.class_names),
        test_ids=class_ids_for(split.test, dataset.class_names),
        way=config.way,
        train_way=train_way,
        query=config.query,
        train_query=config.train_query or config.query,
        labels=dataset.labels.numpy(),
    )
    protocol.group_separation = config.group_separation
    protocol.near_threshold = config.near_threshold
    if config.group_separation != "none":
        protocol.separating_groups  # refuses a dataset without groups, before anything runs
    if config.group_separation == "split":
        separate_group_sides(protocol, config.group_holdout)
    fraction = seen_fraction(config)
    by_groups = config.group_separation == "split"
    if fraction:
        if by_groups:  # whole training-side subjects: none of the held-out people ever trains
            protocol.seen_holdout = group_holdout(protocol.labels, protocol.train_ids, protocol.groups, fraction,
                                                  "seen-holdout", dataset.fingerprint, split.fingerprint())
        else:
            protocol.seen_holdout = seen_holdout(protocol.labels, protocol.train_ids, fraction, dataset.fingerprint,
                                                 split.fingerprint())
        if config.val_episodes > 0 and not split.val:
            # Selection on the training classes' held-out images: half of each class's hold-out (seeded), so the
            # seen-class rows stay an evaluation the selection never looked at.
            if by_groups:
                protocol.seen_selection = group_holdout(protocol.labels, protocol.train_ids, protocol.groups, 0.5,
                                                        "seen-selection", dataset.fingerprint, split.fingerprint(),
                                                        within=protocol.seen_holdout)
            else:
                protocol.seen_selection = image_holdout(protocol.labels, protocol.train_ids, 0.5, "seen-selection",
                                                        dataset.fingerprint, split.fingerprint(),
                                                        within=protocol.seen_holdout)
    protocol.check_requests(list(config.shots), config.val_episodes)
    return protocol


def separate_group_sides(protocol: Protocol, share: float) -> None:
    """``--group-separation split``: a seeded ``share`` of the groups (subjects) is the test side; images of
    training classes from test-side groups and images of validation and test classes from training-side groups
    are labelled -1, which no sampler, training stage or context row draws from. No subject is then in a training
    and a test (or validation) episode, and the seen-class hold-out is drawn from training-side subjects only."""
    codes = protocol.groups
    assert codes is not None
    rng = np.random.default_rng(derive_seed(0, "group-sides", protocol.dataset.fingerprint,
                                            protocol.split.fingerprint(), share))
    test_side = group_partition(codes, share, rng)
    protocol.test_groups = np.flatnonzero(test_side)
    on_test_side = test_side[codes]
    labels = protocol.labels.copy()
    training_class = np.isin(labels, protocol.train_ids)
    evaluated_class = np.isin(labels, [*protocol.test_ids, *protocol.val_ids])
    excluded = (training_class & on_test_side) | (evaluated_class & ~on_test_side)
    labels[excluded] = -1
    protocol.labels = labels
    protocol.group_excluded = int(excluded.sum())
    protocol.__dict__.pop("training_labels", None)


def seen_fraction(config: RunConfig) -> float:
    """The share of each training class's images held out for the seen-class reference: ``seen_holdout``, or its
    default when ``--context`` asks for ``seen`` (0: none)."""
    if "seen" not in config.context:
        return 0.0
    return DEFAULT_SEEN_HOLDOUT if config.seen_holdout is None else float(config.seen_holdout)


def check_validation(config: RunConfig, split: ClassSplit) -> None:
    """``--val-episodes N`` needs a split with at least two validation classes: without any, validation
    would silently not happen; with one, every validation episode is 1-way, always answered right, and
    model selection would keep the first checkpoint."""
    if config.val_episodes <= 0:
        return
    if not split.val and "seen" not in config.context:
        raise ConfigError(f"--val-episodes {config.val_episodes} asks for model selection on validation classes, "
                          f"but split '{split.name}' has none; add a val part to the split (split: {{train: [...], "
                          "val: [...], test: [...]}), select on held-out images of the training classes with "
                          "--context seen (plus the other context rows you want), or drop --val-episodes")
    if not split.val:
        return
    if len(split.val) < 2:
        raise ConfigError(f"split '{split.name}' has one validation class ('{split.val[0]}'), so every validation "
                          "episode would be 1-way and score 100 % (model selection would keep the first checkpoint); "
                          "give its val part at least 2 classes, or drop --val-episodes")


def check_manifest_labels(dataset: ImageDataset, split: ClassSplit) -> None:
    """A dataset read from a manifest without a declared class list (``csv-manifest`` without
    ``--dataset-option classes=...``) records the first line of each label in ``metadata['manifest_labels']``:
    every label must then be a class of the split, so a typo ('hapy') is refused instead of becoming an
    extra class that is silently never used."""
    lines = dataset.metadata.get("manifest_labels")
    if not lines:
        return
    named = [*split.train, *split.val, *split.test]
    stray = sorted((name for name in dataset.class_names if name not in set(named)), key=lambda n: lines.get(n, 0))
    if not stray:
        return
    label = stray[0]
    close = difflib.get_close_matches(label, named, n=3, cutoff=0.5)
    hint = f"nearest: {', '.join(close)}" if close else f"the split's classes: {', '.join(named)}"
    more = f"; {len(stray) - 1} more label(s) outside the split: {', '.join(stray[1:4])}" if len(stray) > 1 else ""
    where = dataset.metadata.get("manifest", "the manifest")
    raise DatasetError(f"'{where}' line {lines.get(label, '?')}: label '{label}' is not a class of split "
                       f"'{split.name}' ({hint}){more}; correct the label, or declare the manifest's classes with "
                       "--dataset-option classes=NAME,NAME,... (declared classes the split leaves out are allowed)")


def check_no_shared_images(dataset: ImageDataset, split: ClassSplit) -> None:
    """One image (byte-identical pixels) filed under two of the split's classes is refused: under a
    training and a test class it is a test image seen in meta-training, under two classes of one part its
    label is ambiguous. ``dedup`` (on for FER2013) drops such images before this check."""
    groups = cross_class_groups(dataset, split)
    if not groups:
        return
    labels = dataset.labels.numpy()
    part_of = {name: part for part, names in (("training", split.train), ("validation", split.val),
                                               ("test", split.test)) for name in names}
    group = groups[0]
    first = group[0]
    other = next(i for i in group if labels[i] != labels[first])
    files = dataset.metadata.get("files")

    def described(index: int) -> str:
        name = dataset.class_names[labels[index]]
        where = f"'{files[index]}'" if files is not None and len(files) == len(labels) else f"image {index}"
        return f"{where} ({part_of[name]} class '{name}')"

    same = files is not None and len(files) == len(labels) and str(files[first]) == str(files[other])
    what = (f"file '{files[first]}' is listed under {part_of[dataset.class_names[labels[first]]]} class "
            f"'{dataset.class_names[labels[first]]}' and {part_of[dataset.class_names[labels[other]]]} class "
            f"'{dataset.class_names[labels[other]]}'") if same else \
        f"{described(first)} and {described(other)} are identical images"
    parts = {part_of[dataset.class_names[labels[i]]] for i in group}
    why = "a test image seen in meta-training" if {"training", "test"} <= parts else \
        "a leak across the split" if len(parts) > 1 else "its label is ambiguous"
    more = f"; {len(groups) - 1} more such group(s)" if len(groups) > 1 else ""
    raise DatasetError(f"{dataset.name}: {what} ({why}){more}; keep each image under one class, or pass --dedup "
                       "true to drop images filed under several classes (`bench datasets check` lists them)")

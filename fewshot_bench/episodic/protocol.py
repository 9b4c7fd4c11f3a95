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

import numpy as np

from fewshot_bench.config import DEFAULT_SEEN_HOLDOUT, RunConfig
from fewshot_bench.data import DatasetPlugin, ImageDataset, class_ids_for
from fewshot_bench.episodic.duplicates import cross_class_groups, deduplicated
from fewshot_bench.episodic.episodes import EpisodeSampler, EpisodeSet, check_episodes, derive_seed
from fewshot_bench.episodic.holdout import holdout_sha, image_holdout, masked_labels, seen_holdout
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

    def training_images(self) -> TrainingImages:
        """The training classes' images, without the seen-class hold-out (the one place that computes them)."""
        class_ids = sorted(self.train_ids)
        indices = np.flatnonzero(np.isin(self.training_labels, class_ids))
        return TrainingImages(tuple(class_ids), indices, np.searchsorted(class_ids, self.labels[indices]))

    def train_sampler(self, shot: int, seed: int) -> EpisodeSampler:
        return EpisodeSampler(self.training_labels, self.train_ids, self.train_way, shot, self.train_query,
                              derive_seed(seed, "train", self.dataset.fingerprint, self.split.fingerprint(),
                                          self.train_way, shot, self.train_query),
                              self.class_names, purpose="meta-training")

    def test_episodes(self, shot: int, seed: int, n_episodes: int) -> EpisodeSet:
        """The fixed test episodes of a setting: a function of the data, split, N, K, Q and seed only,
        so every method is evaluated on exactly the same episodes."""
        sampler = EpisodeSampler(self.labels, self.test_ids, self.way, shot, self.query,
                                 derive_seed(seed, "test", self.dataset.fingerprint, self.split.fingerprint(),
                                             self.way, shot, self.query),
                                 self.class_names, purpose="test")
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
                                 self.class_names, purpose="validation")
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
                              self.class_names, purpose=purpose)

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
            EpisodeSampler(self.labels, self.test_ids, self.way, shot, self.query, 0, self.class_names,
                           purpose="test")
            if self.val_ids and val_episodes:
                EpisodeSampler(self.labels, self.val_ids, min(self.way, len(self.val_ids)), shot, self.query, 0,
                               self.class_names, purpose="validation")


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
    dataset = plugin.load(root, options)
    if plugin.dedup_default if config.dedup is None else config.dedup:
        dataset = deduplicated(dataset)[0]
    return dataset.resized(config.image_size, config.channels)


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
    split.validate(dataset.class_names, config.dataset)
    return split


def prepare(config: RunConfig) -> Protocol:
    """Load the data, validate the split and every episode request of ``config``."""
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
    fraction = seen_fraction(config)
    if fraction:
        protocol.seen_holdout = seen_holdout(protocol.labels, protocol.train_ids, fraction, dataset.fingerprint,
                                             split.fingerprint())
        if config.val_episodes > 0 and not split.val:
            # Selection on the training classes' held-out images: half of each class's hold-out (seeded), so the
            # seen-class rows stay an evaluation the selection never looked at.
            protocol.seen_selection = image_holdout(protocol.labels, protocol.train_ids, 0.5, "seen-selection",
                                                    dataset.fingerprint, split.fingerprint(),
                                                    within=protocol.seen_holdout)
    protocol.check_requests(list(config.shots), config.val_episodes)
    return protocol


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

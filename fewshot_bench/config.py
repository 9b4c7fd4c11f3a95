"""Run configuration: typed defaults < YAML file (``--config``) < command-line flags.

Every key is declared once, as a field of :class:`RunConfig`: its type (the annotation), default, help text,
bounds and role. From these declarations come the validation and its one-line errors, YAML loading, the
``bench run`` flags, ``docs/config.md`` (``python -m fewshot_bench.config``), and the sets of keys that decide
what a cell measures (hashed with every cell, fixed for a run folder) or which cells a run has (joined over the
invocations writing one run folder). The merged configuration is saved in each run folder and reruns it.
"""

from __future__ import annotations

import copy
import hashlib
import re
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Union, get_args, get_origin, get_type_hints

import yaml

from fewshot_bench.errors import ConfigError, did_you_mean

# What a key is for; the role decides how runs treat it.
RESULT = "result"
GRID = "grid"
NUMERICS = "numerics"
LOGISTICS = "logistics"
ROLES = {
    RESULT: "decides what a cell measures: recorded in every cell's settings hash, fixed for a run folder",
    GRID: "which cells a run has: joined over the invocations that write one run folder",
    NUMERICS: "how cells are computed: may differ between invocations of one run; the device kind and the "
              "effective precision they lead to (bf16 autocast on CUDA, float32 elsewhere) are recorded with every "
              "cell, and cells that differ in them are never pooled",
    LOGISTICS: "where a run is written and how it is launched and logged: never changes a number",
}


def _check_run_id(value: str) -> None:
    if (value in ("", ".", "..") or "/" in value or "\\" in value or value != value.strip()
            or any(ord(ch) < 32 for ch in value)):
        raise ConfigError(f"config key 'run_id' must be a folder name, not a path, got {value!r}; choose where runs "
                          "go with --output-dir")


def _check_dataset_name(value: str) -> None:
    if not value.strip() or value != value.strip() or len(value) > 60 or any(c in value for c in "\n\r\t/\\"):
        raise ConfigError(f"config key 'dataset_name' must be a short name without slashes or line breaks (at "
                          f"most 60 characters), got {value!r}; e.g. --dataset-name ckplus")


def setting(default: Any, help: str, *, role: str = RESULT, minimum: int | None = None, why: str = "",
            choices: tuple[str, ...] | None = None, check: Callable[[Any], Any] | None = None, flag: bool = True,
            hashed: bool = True) -> Any:
    """Declare one config key (a dataclass field of RunConfig).

    ``minimum`` bounds a number (or every item of a list of numbers; ``why`` is added to the error);
    ``choices`` lists the allowed texts; ``check`` validates (and may return a normalised value); ``flag=False``
    for keys with their own command-line flags; ``hashed=False`` for result keys that enter the settings hash
    through what they resolve to (the data fingerprint, the split's class lists, the variants' labels).
    """
    metadata = {"help": help, "role": role, "minimum": minimum, "why": why, "choices": choices, "check": check,
                "flag": flag, "hashed": hashed}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


SLURM_SETTINGS: dict[str, tuple[type, str]] = {
    "partition": (str, "Slurm partition"), "time_min": (int, "time limit per job in minutes (default: 60)"),
    "gpus": (int, "GPUs per job"), "cpus": (int, "CPUs per job"), "mem_gb": (int, "memory per job in GB"),
    "array_parallelism": (int, "at most this many array jobs at once"), "account": (str, "Slurm account"),
    "qos": (str, "Slurm QOS"), "constraint": (str, "Slurm constraint"),
}


def _slurm_settings(value: dict) -> dict:
    result = {}
    for key, raw in value.items():
        if key not in SLURM_SETTINGS:
            raise ConfigError(f"unknown slurm setting '{key}'; known: {', '.join(sorted(SLURM_SETTINGS))}")
        kind = SLURM_SETTINGS[key][0]
        try:
            result[key] = kind(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            result[key] = None
        if result[key] is None or (kind is int and result[key] < 0):
            raise ConfigError(f"slurm setting '{key}' must be {'a non-negative integer' if kind is int else 'text'}, "
                              f"got {raw!r}")
    return result


def split_method_list(items: list) -> list:
    """Split 'crn,crn[js_weight=0,dap=false]' at commas outside brackets; keep mappings as they are."""
    result: list = []
    for item in items:
        if not isinstance(item, str):
            result.append(item)
            continue
        depth, current = 0, ""
        for char in item:
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            if char == "," and depth == 0:
                if current.strip():
                    result.append(current.strip())
                current = ""
            else:
                current += char
        if current.strip():
            result.append(current.strip())
    if not result:
        raise ConfigError("config key 'methods' must name at least one method")
    return result


_ONE_WAY = "a 1-way episode is always answered right: its accuracy says nothing"

# The image sides a run may ask for: below 8 pixels no backbone sees a face or a character, above 1024 one
# decoded image takes megabytes and a dataset does not fit in memory (FER2013 at 1024 px: 37 GB).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
_IMAGE_SIZE = f"image sides go from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels; e.g. --image-size 84"


def _check_image_size(value: int | None) -> None:
    if value is not None and value > MAX_IMAGE_SIZE:
        raise ConfigError(f"config key 'image_size' must be at most {MAX_IMAGE_SIZE}, got {value} ({_IMAGE_SIZE}: "
                          "a dataset decoded that large does not fit in memory)")


def _check_channels(value: int | None) -> None:
    if value is not None and value not in (1, 3):
        raise ConfigError(f"config key 'channels' must be 1 (grayscale) or 3 (RGB), got {value}; images with an "
                          "alpha channel are read with --channels 3 (or 1), which drops it")


def _split_value(value: str | dict) -> str | dict:
    """A preset name, or a mapping; on the command line the mapping is written in YAML, e.g.
    ``--split '{train: [happy, sad], test: [angry, fear]}'``."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError("config key 'split' must be a preset name or a mapping such as "
                              "'{train: [happy, sad], test: [angry, fear]}'")
    return value


def _mapping_value(key: str, example: str) -> Callable[[Any], dict]:
    """A check turning a flag's text into a mapping: ``A=B,C=D`` pairs, or a YAML mapping ``'{...}'``."""

    def check(value: Any) -> dict:
        if isinstance(value, dict):
            return value
        text = str(value).strip()
        if text.startswith("{"):
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        elif text and all("=" in pair for pair in text.split(",")):
            return {k.strip(): v.strip() for k, v in (pair.split("=", 1) for pair in text.split(","))}
        elif not text:
            return {}
        raise ConfigError(f"config key '{key}' must be a mapping, on the command line FROM=TO pairs or YAML, e.g. "
                          f"{example}")

    return check


def _class_map_value(value: Any) -> dict:
    """``{from: to}`` as text pairs; ``{part: {from: to}}`` (a part of ``combined``/``bench cross``) becomes
    ``{"part/from": to}``."""
    mapping = _mapping_value("class_map", "--class-map anger=angry,1=fear")(value)
    flat: dict[str, str] = {}
    for source, target in mapping.items():
        if isinstance(target, dict):
            flat.update({f"{source}/{k}": str(v) for k, v in target.items()})
        elif isinstance(target, (list, tuple)) or target is None:
            raise ConfigError(f"config key 'class_map' maps class names to class names, got {source!r}: {target!r}")
        else:
            flat[str(source)] = str(target)
    return flat


def _part_splits_value(value: Any) -> dict:
    mapping = _mapping_value("part_splits", "--part-splits '{ckplus: {train: [happy, sad], test: [angry, fear]}}'")(value)
    for part, split in mapping.items():
        if not isinstance(split, dict):
            raise ConfigError(f"config key 'part_splits' gives each dataset's split as a mapping with train/test "
                              f"class lists, got {part!r}: {split!r}")
    return mapping


def _check_group_holdout(value: float) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"config key 'group_holdout' must be a share between 0 and 1 (exclusive), got {value}; e.g. "
                          "--group-holdout 0.5")


# The context rows a run can compute (``fewshot_bench.context``); ``floor`` is on by default: it trains nothing.
CONTEXT_KINDS = ("floor", "seen", "ceiling")
# The share of each training class's images the ``seen`` rows hold out of all training (``--seen-holdout``).
DEFAULT_SEEN_HOLDOUT = 0.25


def _context_value(value: list) -> list[str]:
    """The context kinds, each once, in the canonical order; ``none`` (alone) for none."""
    items = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    if items == ["none"]:
        return []
    unknown = [item for item in items if item not in CONTEXT_KINDS]
    if unknown:
        raise ConfigError(f"unknown context row '{unknown[0]}'; choose from {', '.join(CONTEXT_KINDS)} (comma-"
                          "separated), or none")
    return [kind for kind in CONTEXT_KINDS if kind in items]


def _check_seen_holdout(value: float | None) -> None:
    if value is not None and not 0 < value < 1:
        raise ConfigError(f"config key 'seen_holdout' must be a share between 0 and 1 (exclusive), got {value}; e.g. "
                          "--seen-holdout 0.25")


@dataclass
class RunConfig:
    """Everything a ``bench run`` needs; each field is one key (``bench run --help``, docs/config.md)."""

    methods: list = setting(["protonet"], "method variants, e.g. crn,crn[js_weight=0],protonet", role=GRID,
                            check=split_method_list)
    backbone: str | None = setting(None, "put every method on this backbone (`bench list backbones`) with its own "
                                         "head, for a comparison of methods rather than of backbones; a variant "
                                         "that names its backbone keeps it; default: each method's own (its "
                                         "paper's)", hashed=False)
    plugins: list[str] = setting([], "plugin files to load (methods, datasets, backbones); also loaded by job "
                                     "workers; in a YAML file, relative to that file", role=GRID, flag=False)
    dataset: str = setting("synthetic-fer", "dataset name (see `bench list datasets`)")
    dataset_name: str | None = setting(None, "your name for the data, shown in tables, plots, the leaderboard and the "
                                             "default run id instead of the plugin's (e.g. ckplus for an image-folder "
                                             "dataset); changes nothing that is computed", hashed=False,
                                       check=_check_dataset_name)
    data_root: str | None = setting(None, "folder (or file) holding the dataset, for datasets that are not built in",
                                    hashed=False)
    dataset_options: dict = setting({}, "options of the dataset plugin (mapping; flag --dataset-option KEY=VALUE)",
                                    flag=False)
    dedup: bool | None = setting(None, "remove exact duplicate images (one kept per class; images filed under several "
                                       "classes dropped); default: the dataset's own choice (on for FER2013); see "
                                       "`bench datasets check`", hashed=False)
    near_dedup: bool = setting(False, "also remove near-duplicate images (frames of one sequence: thumbnails within "
                                      "--near-threshold; one kept per class, groups spanning classes dropped); see "
                                      "`bench datasets check`", hashed=False)
    near_threshold: float = setting(10.0, "near-duplicate rule: RMS difference of 16×16 grayscale thumbnails (0-255 "
                                          "scale) at most this", minimum=0.0, hashed=False)
    class_map: dict | str = setting({}, "rename classes before the split, FROM=TO pairs (e.g. CK+'s numeric folders: "
                                        "1=angry,5=happy); a part of bench cross as PART/FROM=TO; emotion synonyms "
                                        "(anger, sadness, ...) are matched without it", hashed=False,
                                    check=_class_map_value)
    group_separation: str = setting("none", "keep groups (subjects, sequences) declared by the dataset apart: "
                                            "subgroup or group (no query shares one with its episode's support), "
                                            "split (group, and subjects that train never test); `none` still counts "
                                            "the shared pairs", hashed=False, choices=("none", "subgroup", "group",
                                                                                        "split"))
    group_holdout: float = setting(0.5, "with --group-separation split: share of the groups (subjects) kept for test "
                                        "and validation episodes", minimum=0.0, hashed=False,
                                   check=_check_group_holdout)
    part_splits: dict | str = setting({}, "bench cross: a split per dataset, by its name (YAML: {ckplus: {train: "
                                          "[...], test: [...]}}); default: its preset, or the CRN paper's emotions",
                                      hashed=False, check=_part_splits_value)
    split: str | dict | None = setting(None, "class split: a preset name of the dataset, or a mapping with "
                                             "train/val/test class names (on the command line in YAML: "
                                             "'{train: [a, b], test: [c, d]}')", hashed=False, check=_split_value)
    image_size: int | None = setting(None, "image side in pixels, 8 to 1024: decoded at this size, or resampled "
                                           "once (default: the dataset's own; `bench list datasets`)",
                                     minimum=MIN_IMAGE_SIZE,
                                     why=_IMAGE_SIZE, check=_check_image_size)
    channels: int | None = setting(None, "image channels, 1 or 3 (default: the dataset's own)",
                                   check=_check_channels)
    way: int = setting(3, "classes per test episode (N)", minimum=2, why=_ONE_WAY)
    train_way: int | None = setting(None, "classes per meta-training episode (default: all training classes if at "
                                          "most 20, else `way`)", minimum=2, why=_ONE_WAY)
    shots: list[int] = setting([1, 5], "support images per class (K), one cell per value", role=GRID, minimum=1)
    query: int = setting(15, "query images per class in test episodes", minimum=1)
    train_query: int | None = setting(None, "query images per class in meta-training episodes (default: `query`)",
                                      minimum=1)
    train_episodes: int = setting(400, "meta-training episodes per cell (0: none, e.g. to evaluate given weights)",
                                  minimum=0)
    test_episodes: int = setting(600, "test episodes per cell (identical for every method)", minimum=1)
    meta_batch: int = setting(1, "episodes per optimiser step", minimum=1)
    batch_episodes: bool = setting(False, "embed a meta-batch's images in one backbone call (ProtoNet, MatchingNet, "
                                          "RN, CRN; batch norm then normalises over the meta-batch; faster on GPUs, "
                                          "slower on CPUs)")
    lr: float | None = setting(None, "Adam learning rate of every method that does not name its own (default: each "
                                     "method's paper value; `bench list methods --options`)", minimum=0.0,
                               hashed=False)
    lr_step: int | None = setting(None, "multiply the learning rate by lr_gamma every this many training episodes, "
                                        "0 = constant (default: each method's paper schedule)", minimum=0,
                                  hashed=False)
    lr_gamma: float | None = setting(None, "learning-rate decay factor (default: each method's)", minimum=0.0,
                                     hashed=False)
    grad_clip: float | None = setting(None, "largest gradient norm per training step, 0 = off (default: each "
                                            "method's; CSRN's code clips CRN at 0.5)", minimum=0.0, hashed=False)
    pretrain_epochs: int | None = setting(None, "epochs of supervised pre-training on the training classes for every "
                                                "variant that does not name its own, 0 = none (default: each "
                                                "method's; Baseline, Baseline++, SimpleShot and FEAT pre-train, the "
                                                "others do not)", minimum=0, hashed=False)
    context: list[str] = setting(["floor"], "context rows computed beside the methods on the same test episodes, "
                                 "never ranked with them: floor (nearest class mean on pixels and on untrained "
                                 "backbones), seen (every method also on held-out images of its training classes), "
                                 "ceiling (a backbone trained on the test classes outside the test episodes; uses "
                                 "their labels); none for no rows", hashed=False, check=_context_value)
    seen_holdout: float | None = setting(None, "share of each training class's images held out of all training for "
                                               "the seen-class rows (default 0.25 with --context seen, else none)",
                                         minimum=0.0, hashed=False, check=_check_seen_holdout)
    ceiling_epochs: int = setting(10, "epochs of the ceiling row's supervised training on the test classes",
                                  minimum=1, hashed=False)
    val_episodes: int = setting(0, "validation episodes for model selection on the split's val classes, or, for a "
                                "split without them, on half of the seen-class hold-out (--context seen) (0 = off)",
                                minimum=0)
    val_interval: int = setting(500, "validate every this many training episodes", minimum=1)
    budget_curve: list[int] = setting([], "also evaluate every meta-trained cell on its test episodes after each of "
                                      "these numbers of training episodes: an accuracy-versus-budget curve (what "
                                      "the cell scores with that budget; reported, never selected on; the cell's "
                                      "result stays the full budget's)", minimum=1, hashed=False)
    seeds: list[int] = setting([0], "seeds, one cell per value (training and test episodes both depend on it)",
                               role=GRID)
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps", role=NUMERICS)
    output_dir: str = setting("results/runs", "where run folders are written", role=LOGISTICS)
    run_id: str | None = setting(None, "name of the run folder (default: timestamp + methods)", role=LOGISTICS,
                                 check=_check_run_id)
    log_interval: int = setting(50, "training episodes between progress updates of the loss", role=LOGISTICS,
                                minimum=1)
    checkpoint_interval: int = setting(100, "training episodes between checkpoints of a cell (resume point after a "
                                            "crash)", role=LOGISTICS, minimum=1)
    amp: bool = setting(True, "bf16 mixed precision on CUDA (ignored on CPU/MPS); set false for full float32")
    compile: bool = setting(False, "torch.compile each method's backbone (first episodes are slower while it "
                                   "compiles; methods that swap weights inside a step, like MAML, run uncompiled)",
                            role=NUMERICS)
    compile_backend: str = setting("inductor", "torch.compile backend used with --compile", role=NUMERICS)
    cuda_graphs: bool = setting(True, "on CUDA, replay each cell's training step and test episode from a captured "
                                      "CUDA graph (several times faster for small models; a step that cannot be "
                                      "captured runs eagerly and the cell record says why); ignored on CPU and with "
                                      "--compile", role=NUMERICS)
    augment: bool = setting(False, "augment meta-training episodes (flip, crop, brightness/contrast jitter) on the "
                                   "device")
    launcher: str = setting("local", "where cells run: local (this machine) or slurm (one array job per cell, "
                                     "through submitit)", role=LOGISTICS, choices=("local", "slurm"))
    threads: int | None = setting(None, "CPU threads per process (default: all cores, divided among --jobs "
                                        "workers); CPU results depend on it in the last bits, so compare runs made "
                                        "with the same value", role=NUMERICS, minimum=1)
    tensorboard: str | None = setting(None, "also write each cell's loss, validation and test accuracy as TensorBoard "
                                            "events under this folder (<folder>/<run id>/<cell>; needs the "
                                            "tensorboard extra)", role=LOGISTICS)
    jobs: int = setting(1, "local worker processes running cells concurrently (1 = in this process)",
                        role=LOGISTICS, minimum=1)
    slurm: dict = setting({}, "Slurm job settings: " + ", ".join(SLURM_SETTINGS) + " (mapping; flags --slurm-*)",
                          role=LOGISTICS, check=_slurm_settings, flag=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Setting:
    """One declared config key, as the CLI, the validator, the docs and the run store see it."""

    name: str
    types: tuple[type, ...]
    item: type | None
    nullable: bool
    default: Any
    help: str
    role: str
    minimum: int | None
    why: str
    choices: tuple[str, ...] | None
    check: Callable[[Any], Any] | None
    flag: bool
    hashed: bool

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flag_type(self) -> type:
        """What argparse converts a flag's text to (lists and booleans are parsed by the validator)."""
        return self.types[0] if self.types in ((int,), (float,)) else str

    @property
    def type_name(self) -> str:
        names = [("list of " + self.item.__name__ if self.item is not int else "list of integers") if t is list and
                 self.item else "list" if t is list else "mapping" if t is dict else t.__name__ for t in self.types]
        return " or ".join(names) + (" or empty" if self.nullable else "")


def _declared() -> dict[str, Setting]:
    hints = get_type_hints(RunConfig)
    result = {}
    for spec in fields(RunConfig):
        hint, nullable = hints[spec.name], False
        parts = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
        if type(None) in parts:
            nullable, parts = True, tuple(p for p in parts if p is not type(None))
        kinds = tuple(get_origin(p) or p for p in parts)
        item = next((get_args(p)[0] for p in parts if get_origin(p) is list and get_args(p)), None)
        default = spec.default_factory() if callable(spec.default_factory) else spec.default
        meta = spec.metadata
        result[spec.name] = Setting(spec.name, kinds, item, nullable, default, meta["help"], meta["role"],
                                    meta["minimum"], meta["why"], meta["choices"], meta["check"], meta["flag"],
                                    meta["hashed"])
    return result


SETTINGS: dict[str, Setting] = _declared()


def keys(*roles: str, hashed: bool | None = None) -> list[str]:
    """The declared keys with one of ``roles`` (and, if given, the ``hashed`` flag), in declaration order."""
    return [s.name for s in SETTINGS.values() if s.role in roles and (hashed is None or s.hashed == hashed)]


def _coerce(key: str, value: Any) -> Any:
    spec = SETTINGS[key]
    expected = spec.types
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"config key '{key}' cannot be empty")
    if expected == (bool,):
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value if isinstance(value, bool) else text in ("true", "1", "yes", "on")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if list in expected and isinstance(value, (str, int)) and not isinstance(value, bool):
        # A flag's "1,5" is a list; a method list is split by its check (commas inside brackets stay).
        if spec.check is not None or not isinstance(value, str):
            value = [value]
        else:
            value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join("list" if t is list else "mapping" if t is dict else t.__name__ for t in expected)
        raise ConfigError(f"config key '{key}' must be {names}, got {value!r}")
    if spec.item is int:
        try:
            value = [int(v) for v in value if not isinstance(v, bool)] if all(
                not isinstance(v, bool) and float(v).is_integer() for v in value) else None
        except (TypeError, ValueError):
            value = None
        if value is None or (not value and spec.default != []):  # only a key that is empty by default may be
            raise ConfigError(f"config key '{key}' must be a non-empty list of integers")
        if value and spec.minimum is not None and min(value) < spec.minimum:
            raise ConfigError(f"config key '{key}' must contain integers of at least {spec.minimum}, got {value}")
    elif spec.item is str and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{key}' must be a list of text, got {value!r}")
    elif spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"config key '{key}' must be at least {spec.minimum}, got {value}"
                          + (f" ({spec.why})" if spec.why else ""))
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"config key '{key}' must be {' or '.join(spec.choices)}, got {value!r}")
    if spec.check is not None:
        checked = spec.check(value)
        value = value if checked is None else checked
    return value


def apply(config: RunConfig, overrides: Mapping[str, Any], source: str) -> RunConfig:
    """Return ``config`` with ``overrides`` applied; unknown keys and wrong types raise ConfigError."""
    values = config.to_dict()
    for key, value in overrides.items():
        if key not in SETTINGS:
            hint = did_you_mean(str(key), SETTINGS).rstrip() or f"known keys: {', '.join(sorted(SETTINGS))}"
            raise ConfigError(f"unknown config key '{key}' in {source}; {hint}")
        values[key] = _coerce(key, value)
    return RunConfig(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with one-line errors for every way that can fail. A run
    folder's saved ``config.yaml`` is verified too (``check_saved_config``): a damaged one is an error, never
    read as defaults."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    if is_saved_config(file):
        return check_saved_config(file)
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must contain a mapping of keys to values")
    return data


# A run folder's config.yaml starts with this line and the sha256 of the text below it (``seal_config``): a
# file cut short, or edited by hand, no longer matches (the line is first so that a cut keeps it). Files
# written before it existed have none (see ``check_saved_config``).
CHECKSUM_LINE = "# checksum: sha256:"
# Keys every version of bench saved: a saved config without one of them is cut short or not a run's config.
CORE_KEYS = ("methods", "dataset", "way", "shots", "query", "seeds", "train_episodes", "test_episodes")


def is_saved_config(path: Path) -> bool:
    """Whether ``path`` is the config.yaml of a run folder (beside its plan.json or cells/)."""
    return path.name == "config.yaml" and ((path.parent / "plan.json").is_file() or (path.parent / "cells").is_dir())


def seal_config(text: str) -> str:
    """``text`` (a run's config as YAML) with its checksum line in front (an old one replaced)."""
    body = _unsealed(text)[0]
    return f"{CHECKSUM_LINE}{hashlib.sha256(body.encode()).hexdigest()}\n{body}"


def _unsealed(text: str) -> tuple[str, str | None]:
    """(the text below the checksum line, the recorded checksum), or (text, None) without one."""
    if text.startswith(CHECKSUM_LINE):
        first, _, body = text.partition("\n")
        return body, first[len(CHECKSUM_LINE):].strip()
    return text, None


def check_saved_config(path: Path) -> dict[str, Any]:
    """The mapping of a run folder's saved config.yaml, verified: its checksum line (when it has one) matches
    the text, it is a mapping holding the keys every run saves with values of the declared types, and it
    agrees with the run's plan.json (every planned cell's way, shot, query and seed). Anything else is a
    one-line ConfigError naming the file: a damaged config never becomes defaults, and is never overwritten."""
    import json

    fix = ("restore it (from a copy or the published record), or delete it and continue the run with its "
           "original settings (`bench run --config FILE --run-id ID`): finished cells are kept and checked")
    # The plan is read first: a run's grid only grows, and each update writes the config before the plan, so
    # a plan read before the config never names a cell the config lacks, even while another process grows it.
    try:
        plan = json.loads((path.parent / "plan.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        plan = None  # missing, or damaged: RunStore.load_plan reports that
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"run config '{path}' is damaged (not UTF-8 text); {fix}") from None
    body, recorded = _unsealed(text)
    if recorded is not None and recorded != hashlib.sha256(body.encode()).hexdigest():
        raise ConfigError(f"run config '{path}' does not match its checksum (cut short or edited by hand); {fix}")
    if recorded is None and text and not text.endswith("\n"):
        raise ConfigError(f"run config '{path}' is cut short (its last line is incomplete); {fix}")
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"run config '{path}' is damaged (invalid YAML{where}); {fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"run config '{path}' is damaged (empty, or not a mapping of keys to values); {fix}")
    missing = [key for key in CORE_KEYS if key not in data]
    if missing:
        raise ConfigError(f"run config '{path}' is damaged (it lacks {', '.join(missing)}); {fix}")
    try:
        values = apply(RunConfig(), {k: v for k, v in data.items() if k in SETTINGS}, source=f"'{path}'")
    except ConfigError as exc:
        raise ConfigError(f"run config '{path}' is damaged ({exc}); {fix}") from None
    _check_against_plan(path, values, plan)
    return data


def _check_against_plan(path: Path, config: RunConfig, plan: Any) -> None:
    """Every cell planned in the run (``plan``, read from plan.json beside ``path``) must be one of the
    config's grid: its shot and seed in the config's lists, and its id naming the config's way and query.
    Entries whose id is not a cell id are skipped (the store reports damaged plans)."""
    for entry in plan if isinstance(plan, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("cell"), str):
            continue
        match = CELL_ID_SHAPE.match(entry["cell"])
        if match is None:
            continue
        way, shot, query, seed = (int(match[k]) for k in ("way", "shot", "query", "seed"))
        if (way, query) != (config.way, config.query) or shot not in config.shots or seed not in config.seeds:
            raise ConfigError(
                f"run config '{path}' does not match the run's plan.json: cell {entry['cell']} is not in its grid "
                f"(way {config.way}, shots {config.shots}, query {config.query}, seeds {config.seeds}); restore the "
                "config the run was made with (or delete plan.json if the config is the right one)")


# The shape of a cell id (``engine.runner.cell_id``): <label slug>-<6 hex of sha256(label)>__<W>w<S>s<Q>q__seed<N>.
CELL_ID_SHAPE = re.compile(r"^(?P<slug>.*)-(?P<digest>[0-9a-f]{6})__(?P<way>\d+)w(?P<shot>\d+)s(?P<query>\d+)q"
                           r"__seed(?P<seed>\d+)$")


def _plugins_beside(values: dict[str, Any], file: Path) -> dict[str, Any]:
    """Plugin files named in a YAML file are found relative to that file, as imports are, and stored
    absolute (a run folder's config then loads them from wherever ``bench`` is started)."""
    plugins = values.get("plugins")
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, list):
        return values
    resolved = [str((file.parent / Path(p).expanduser()).resolve()) if isinstance(p, str) else p for p in plugins]
    return {**values, "plugins": resolved}


def merge(file: str | Path | None, flags: Mapping[str, Any]) -> RunConfig:
    """Defaults < YAML file < flags (flags whose value is None were not given)."""
    config = RunConfig()
    if file is not None:
        values = _plugins_beside(load_yaml(file), Path(file))
        config = apply(config, values, source=f"config file '{file}'")
    return apply(config, {k: v for k, v in flags.items() if v is not None}, source="command-line flags")


def dump(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def reference_markdown() -> str:
    """docs/config.md: every key with its type, default, role and help (``python -m fewshot_bench.config``)."""
    lines = ["# Configuration keys", "",
             "Generated from the declarations in `fewshot_bench/config.py` by `python -m fewshot_bench.config > "
             "docs/config.md`; do not edit by hand.", "",
             "Each key can be set in a YAML file (`bench run --config FILE`) or as a flag (`--key-name`, lists as "
             "`1,5`); flags override the file, the file overrides the defaults.", "", "Roles:", ""]
    lines += [f"- **{role}**: {text}." for role, text in ROLES.items()]
    lines += ["", "| key | flag | type | default | role | what it does |", "|---|---|---|---|---|---|"]
    for spec in SETTINGS.values():
        flag = f"`{spec.flag_name}`" if spec.flag else "`--plugin FILE`" if spec.name == "plugins" else \
            "`--dataset-option K=V`" if spec.name == "dataset_options" else "`--slurm-*`"
        bound = f"; at least {spec.minimum}" if spec.minimum is not None else ""
        help_text = spec.help.replace("|", "\\|")
        lines.append(f"| `{spec.name}` | {flag} | {spec.type_name}{bound} | `{spec.default!r}` | {spec.role} | "
                     f"{help_text} |")
    lines += ["", "Slurm settings (`slurm:` mapping, or `--slurm-KEY`):", "",
              "| key | type | what it does |", "|---|---|---|"]
    lines += [f"| `{key}` | {kind.__name__} | {text} |" for key, (kind, text) in SLURM_SETTINGS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")

"""Run configuration: typed defaults < YAML file (``--config``) < command-line flags.

Every key is declared once here with its type and help text; unknown keys and wrong types are errors
naming the key. The merged configuration is saved in each run folder and is enough to rerun it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from fewshot_bench.errors import ConfigError


@dataclass
class RunConfig:
    """Everything a ``bench run`` needs; see ``bench run --help`` for each key."""

    methods: list = field(default_factory=lambda: ["protonet"])
    plugins: list = field(default_factory=list)
    dataset: str = "synthetic-fer"
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    dedup: bool | None = None
    split: Any = None
    image_size: int | None = None
    channels: int | None = None
    way: int = 3
    train_way: int | None = None
    shots: list = field(default_factory=lambda: [1, 5])
    query: int = 15
    train_query: int | None = None
    train_episodes: int = 400
    test_episodes: int = 600
    meta_batch: int = 1
    batch_episodes: bool = False
    lr: float = 1e-3
    lr_step: int = 2000
    lr_gamma: float = 0.5
    val_episodes: int = 0
    val_interval: int = 500
    seeds: list = field(default_factory=lambda: [0])
    device: str = "auto"
    output_dir: str = "results/runs"
    run_id: str | None = None
    log_interval: int = 50
    checkpoint_interval: int = 100
    amp: bool = True
    compile: bool = False
    compile_backend: str = "inductor"
    cuda_graphs: bool = True
    augment: bool = False
    launcher: str = "local"
    threads: int | None = None
    jobs: int = 1
    slurm: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HELP = {
    "methods": "method variants, e.g. crn,crn[js_weight=0],protonet",
    "plugins": "plugin files to load (methods, datasets, backbones); also loaded by job workers",
    "dataset": "dataset name (see `bench list datasets`)",
    "data_root": "folder (or file) holding the dataset, for datasets that are not built in",
    "dataset_options": "options of the dataset plugin (mapping)",
    "dedup": "remove exact duplicate images (one kept per class; images filed under several classes dropped); "
             "default: the dataset's own choice (on for FER2013); see `bench datasets check`",
    "split": "class split: a preset name of the dataset, or a mapping with train/val/test class names",
    "image_size": "resize images to this side (default: the dataset's own size)",
    "channels": "convert images to this many channels (1 or 3; default: the dataset's own)",
    "way": "classes per test episode (N)",
    "train_way": "classes per meta-training episode (default: all training classes if at most 20, else `way`)",
    "shots": "support images per class (K), one cell per value",
    "query": "query images per class in test episodes",
    "train_query": "query images per class in meta-training episodes (default: `query`)",
    "train_episodes": "meta-training episodes per cell",
    "test_episodes": "test episodes per cell (identical for every method)",
    "meta_batch": "episodes per optimiser step",
    "batch_episodes": "embed a meta-batch's images in one backbone call (ProtoNet, MatchingNet, RN, CRN; batch norm "
                      "then normalises over the meta-batch; faster on GPUs, slower on CPUs)",
    "lr": "Adam learning rate",
    "lr_step": "multiply the learning rate by lr_gamma every this many episodes",
    "lr_gamma": "learning-rate decay factor",
    "val_episodes": "validation episodes for model selection on the split's val classes (0 = off)",
    "val_interval": "validate every this many training episodes",
    "seeds": "seeds, one cell per value (training and test episodes both depend on it)",
    "device": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps",
    "output_dir": "where run folders are written",
    "run_id": "name of the run folder (default: timestamp + methods)",
    "log_interval": "training episodes between progress updates of the loss",
    "checkpoint_interval": "training episodes between checkpoints of a cell (resume point after a crash)",
    "augment": "augment meta-training episodes (flip, crop, brightness/contrast jitter) on the device",
    "amp": "bf16 mixed precision on CUDA (ignored on CPU/MPS); set false for full float32",
    "compile": "torch.compile each method's backbone (first episodes are slower while it compiles; methods that "
               "swap weights inside a step, like MAML, run uncompiled)",
    "compile_backend": "torch.compile backend used with --compile",
    "cuda_graphs": "on CUDA, replay each cell's training step and test episode from a captured CUDA graph (several "
                   "times faster for small models; a step that cannot be captured runs eagerly and the cell record "
                   "says why); ignored on CPU and with --compile",
    "launcher": "where cells run: local (this machine) or slurm (one array job per cell, through submitit)",
    "jobs": "local worker processes running cells concurrently (1 = in this process)",
    "threads": "CPU threads per process (default: all cores, divided among --jobs workers); CPU results depend "
               "on it in the last bits, so compare runs made with the same value",
    "slurm": "Slurm job settings: partition, time_min, gpus, cpus, mem_gb, array_parallelism, account, qos, "
             "constraint (mapping; flags --slurm-*)",
}

_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "methods": (list,), "plugins": (list,), "dataset": (str,), "data_root": (str,), "dataset_options": (dict,), "dedup": (bool,),
    "split": (str, dict), "image_size": (int,), "channels": (int,), "way": (int,), "train_way": (int,),
    "shots": (list,), "query": (int,), "train_query": (int,), "train_episodes": (int,),
    "test_episodes": (int,), "meta_batch": (int,), "batch_episodes": (bool,), "lr": (float,), "lr_step": (int,),
    "lr_gamma": (float,), "val_episodes": (int,), "val_interval": (int,), "seeds": (list,),
    "device": (str,), "output_dir": (str,), "run_id": (str,), "log_interval": (int,),
    "checkpoint_interval": (int,), "launcher": (str,), "amp": (bool,), "augment": (bool,), "threads": (int,),
    "compile": (bool,), "compile_backend": (str,), "cuda_graphs": (bool,), "jobs": (int,), "slurm": (dict,),
}
_LIST_ITEM = {"shots": int, "seeds": int}
_NULLABLE = {"data_root", "dedup", "split", "image_size", "channels", "train_way", "train_query", "run_id", "threads"}
_POSITIVE = {"way", "query", "train_episodes", "test_episodes", "meta_batch", "lr_step", "val_interval",
             "log_interval", "checkpoint_interval", "jobs", "threads", "image_size", "train_way", "train_query"}


def _coerce(key: str, value: Any) -> Any:
    expected = _FIELD_TYPES[key]
    if value is None:
        if key in _NULLABLE:
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
        if key == "methods" or not isinstance(value, str):
            value = [value]
        else:
            value = [v for v in value.split(",") if v.strip()]
    if key == "methods" and isinstance(value, list):
        value = _split_method_list(value)
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join("list" if t is list else "mapping" if t is dict else t.__name__ for t in expected)
        raise ConfigError(f"config key '{key}' must be {names}, got {value!r}")
    if key in _LIST_ITEM:
        try:
            value = [int(v) for v in value if not isinstance(v, bool)] if all(
                not isinstance(v, bool) and float(v).is_integer() for v in value) else None
        except (TypeError, ValueError):
            value = None
        if not value:
            raise ConfigError(f"config key '{key}' must be a non-empty list of integers")
    if key in _POSITIVE and isinstance(value, (int, float)) and value < 1:
        raise ConfigError(f"config key '{key}' must be at least 1, got {value}")
    if key in ("way", "train_way") and value is not None and value < 2:
        raise ConfigError(f"config key '{key}' must be at least 2, got {value} (a 1-way episode is always answered "
                          "right: its accuracy says nothing)")
    if key == "run_id" and value is not None and (value in ("", ".", "..") or "/" in value or "\\" in value
                                                   or value != value.strip()):
        raise ConfigError(f"config key 'run_id' must be a folder name, not a path, got {value!r}; choose where runs "
                          "go with --output-dir")
    if key == "shots" and min(value) < 1:
        raise ConfigError("config key 'shots' must contain positive integers")
    if key == "methods" and not value:
        raise ConfigError("config key 'methods' must name at least one method")
    if key == "launcher" and value not in ("local", "slurm"):
        raise ConfigError(f"config key 'launcher' must be local or slurm, got {value!r}")
    if key == "slurm":
        value = _slurm_settings(value)
    return value


SLURM_KEYS = {"partition": str, "time_min": int, "gpus": int, "cpus": int, "mem_gb": int,
              "array_parallelism": int, "account": str, "qos": str, "constraint": str}


def _slurm_settings(value: dict) -> dict:
    result = {}
    for key, raw in value.items():
        if key not in SLURM_KEYS:
            raise ConfigError(f"unknown slurm setting '{key}'; known: {', '.join(sorted(SLURM_KEYS))}")
        kind = SLURM_KEYS[key]
        try:
            result[key] = kind(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            result[key] = None
        if result[key] is None or (kind is int and result[key] < 0):
            raise ConfigError(f"slurm setting '{key}' must be {'a non-negative integer' if kind is int else 'text'}, "
                              f"got {raw!r}")
    return result


def _split_method_list(items: list) -> list:
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
    return result


def apply(config: RunConfig, overrides: Mapping[str, Any], source: str) -> RunConfig:
    """Return ``config`` with ``overrides`` applied; unknown keys and wrong types raise ConfigError."""
    known = {f.name for f in fields(RunConfig)}
    values = config.to_dict()
    for key, value in overrides.items():
        if key not in known:
            close = [k for k in known if k.replace("_", "") == str(key).replace("_", "").replace("-", "")]
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"unknown config key '{key}' in {source}{hint}")
        values[key] = _coerce(key, value)
    return RunConfig(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with one-line errors for every way that can fail."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must contain a mapping of keys to values")
    return data


def merge(file: str | Path | None, flags: Mapping[str, Any]) -> RunConfig:
    """Defaults < YAML file < flags (flags whose value is None were not given)."""
    config = RunConfig()
    if file is not None:
        config = apply(config, load_yaml(file), source=f"config file '{file}'")
    return apply(config, {k: v for k, v in flags.items() if v is not None}, source="command-line flags")


def dump(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)

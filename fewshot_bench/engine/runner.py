"""Runs a grid of cells (method variant × shot × seed) under one protocol and stores each cell as it ends."""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Protocol as TypingProtocol

import torch

from fewshot_bench.backbones import backbone_weights_settings
from fewshot_bench.config import GRID, RESULT, SETTINGS, RunConfig, dump, load_yaml
from fewshot_bench.config import keys as config_keys
from fewshot_bench.console import logger, warn
from fewshot_bench.device import choose_device, prepare_device
from fewshot_bench.engine.cell import run_cell
from fewshot_bench.engine.training import TrainSettings
from fewshot_bench.context.rows import check_ceiling, compute_context
from fewshot_bench.engine.weights import check_weights, file_sha256
from fewshot_bench.episodic.protocol import Protocol, prepare, seen_fraction
from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
from fewshot_bench.errors import CellsFailed, ConfigError, RecordError
from fewshot_bench.fileio import locked
from fewshot_bench.method import COMMON_OPTIONS, MethodVariant
from fewshot_bench.options import Spec
from fewshot_bench.pretraining import resolve
from fewshot_bench.results.provenance import cell_code_version
from fewshot_bench.results.store import CellCheckpoint, CellRecord, RunStore, SummaryRow, environment_info


class RunObserver(TypingProtocol):
    """Receives progress events; the CLI draws progress bars with them, tests may ignore them."""

    def cell_started(self, label: str, shot: int, seed: int, train_episodes: int, test_episodes: int) -> None: ...
    def trained(self, episodes: int, loss: float | None) -> None: ...
    def evaluated(self, episodes: int) -> None: ...
    def cell_finished(self, record: CellRecord, skipped: bool) -> None: ...


class SilentObserver:
    """An observer that ignores every event."""

    def cell_started(self, *args: Any) -> None: ...
    def trained(self, *args: Any) -> None: ...
    def evaluated(self, *args: Any) -> None: ...
    def cell_finished(self, *args: Any, **kwargs: Any) -> None: ...


@dataclass
class RunResult:
    """What a finished run leaves: its store, its summary rows and one line per cell that failed."""

    store: RunStore
    summary: list[SummaryRow]
    config: RunConfig
    failures: list[str] = field(default_factory=list)

    def raise_for_failures(self) -> None:
        """Raise CellsFailed naming every cell that failed (a script's way to stop on the first bad run)."""
        if self.failures:
            raise CellsFailed(f"{len(self.failures)} cell(s) of run '{self.config.run_id}' failed: "
                              + "; ".join(self.failures))


def resolve_variants(config: RunConfig) -> list[MethodVariant]:
    """The run's method variants; with ``backbone`` (or ``lr``, ``lr_step``, ``lr_gamma``, ``grad_clip``,
    ``pretrain_epochs``) set, every variant that does not name its own takes the run's value (and its label says
    so where it differs from the method's default)."""
    specs = [Spec.from_config(item) for item in config.methods]
    shared = {key: getattr(config, key) for key in (*COMMON_OPTIONS, *RUN_PRETRAIN_KEYS)
              if getattr(config, key) not in (None, "")}
    specs = [replace(spec, options=(*spec.options, *((k, v) for k, v in shared.items() if k not in spec.option_dict)))
             for spec in specs]
    variants = [resolve(spec) for spec in specs]
    labels = [v.label for v in variants]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"method variant '{duplicates[0]}' is listed twice; remove the repeat")
    return variants


# Pre-training keys a run may set for all its variants (the budget; the rest of a recipe is per variant).
RUN_PRETRAIN_KEYS = ("pretrain_epochs",)


def slug(text: str) -> str:
    """``text`` as a file-name part: every run of other characters than letters, digits, ``_``, ``.`` and ``-``
    becomes one ``-`` (cell ids, default run ids, the cross-dataset suite's pair runs)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def cell_id(label: str, way: int, shot: int, query: int, seed: int) -> str:
    digest = hashlib.sha256(label.encode()).hexdigest()[:6]
    return f"{slug(label)}-{digest}__{way}w{shot}s{query}q__seed{seed}"


def default_run_id(config: RunConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    names = "-".join(dict.fromkeys(Spec.from_config(m).name for m in config.methods))
    return f"{stamp}-{slug(config.dataset_name or config.dataset)}-{names}"[:80]


@dataclass(frozen=True)
class Cell:
    """One cell of a run's grid: a method variant at one shot and seed."""

    variant: MethodVariant
    shot: int
    seed: int
    cell_id: str


def plan_cells(config: RunConfig) -> list[Cell]:
    """Every cell of the grid, seed-major then shot then variant (the order sequential runs use)."""
    variants = resolve_variants(config)
    return [Cell(v, shot, seed, cell_id(v.label, config.way, shot, config.query, seed))
            for seed in config.seeds for shot in config.shots for v in variants]


@dataclass
class StartedRun:
    """A validated run whose folder is initialised: its config, store, cells, protocol and device (resolved
    here once; a cell runner in this process uses it as it is)."""

    config: RunConfig
    store: RunStore
    cells: list[Cell]
    protocol: Protocol
    device: torch.device


def start_run(config: RunConfig) -> StartedRun:
    """Validate everything before any training and initialise the run folder (config, environment, plan)."""
    cells = plan_cells(config)
    if config.tensorboard:
        from fewshot_bench.results.tensorboard import check_available

        check_available()
    device = choose_device(config.device)
    protocol = prepare(config)
    for variant in {cell.variant.label: cell.variant for cell in cells}.values():
        variant.check_image_shape(protocol.dataset.image_shape)
        check_weights(variant, protocol.dataset.image_shape)
    if "ceiling" in config.context:
        check_ceiling(protocol, list(config.shots))
    beyond = [point for point in config.budget_curve if point > config.train_episodes]
    if beyond:
        raise ConfigError(f"budget_curve point(s) {', '.join(map(str, beyond))} lie beyond train_episodes "
                          f"({config.train_episodes}); drop them or raise --train-episodes")
    config = RunConfig(**{**config.to_dict(), "run_id": config.run_id or default_run_id(config)})
    store = RunStore(Path(config.output_dir) / config.run_id)
    check_kept_weights(store, cells)
    # Several processes may grow one run at once (other methods, seeds): each reads the saved config and
    # plan, joins its own grid in and writes them back, one process at a time.
    with locked(store.root / "config.yaml"):
        store.save_config(dump(merge_with_folder(store, config)))
        store.save_plan([{"cell": c.cell_id, "label": c.variant.label, "shot": c.shot, "seed": c.seed} for c in cells])
    store.save_environment(environment_info(str(device)))
    return StartedRun(config, store, cells, protocol, device)


def check_kept_weights(store: RunStore, cells: Iterable[Cell]) -> None:
    """Refuse, before anything runs, to keep a finished cell whose weights file now holds other weights: its label
    names the file, not the content, so keeping it would mix two models under one row."""
    hashes: dict[str, str] = {}  # one hash per file, however many cells (shots, seeds) start from it
    for cell in cells:
        given = cell.variant.option_dict.get("weights")
        if not given or not store.has_cell(cell.cell_id):
            continue
        try:
            kept = (store.load_cell(cell.cell_id).get("initial_weights") or {}).get("sha256")
        except RecordError:
            continue  # a damaged record is recomputed anyway
        if kept and given not in hashes:
            hashes[given] = file_sha256(Path(given).expanduser())
        if kept and kept != hashes[given]:
            raise ConfigError(f"cell {cell.cell_id} was computed from weights with sha256 {kept[:12]}…, but "
                              f"'{given}' now holds other weights; start a new --run-id, or delete "
                              f"{store.cell_path(cell.cell_id)} to evaluate the new file")


class CellRunner:
    """Runs cells of one run in this process; the dataset, device tensors and test episodes are shared."""

    def __init__(self, config: RunConfig, store: RunStore, protocol: Protocol | None = None,
                 device: torch.device | None = None) -> None:
        """``protocol`` and ``device`` as ``start_run`` resolved them in this process; a job worker (another
        process) passes neither and resolves both from the run's config."""
        self.config, self.store = config, store
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = device or choose_device(config.device)
        prepare_device(self.device)
        self.protocol = protocol or prepare(config)
        mean, std = channel_statistics(self.protocol.dataset.images, self.protocol.training_images().indices)
        self.builder = TaskBuilder(self.protocol.dataset, self.device, mean, std)
        self.settings = TrainSettings.from_config(config)
        logger.debug(f"run {store.run_id}: {self.protocol.dataset.name} {tuple(self.protocol.dataset.images.shape)} "
                     f"images, split '{self.protocol.split.name}', device {self.device}, "
                     f"{torch.get_num_threads()} CPU thread(s)")
        self._episodes: dict[tuple[int, int], tuple[str, Any, Any]] = {}
        # Fixed for the runner's config and protocol: recorded with every cell, compared with kept ones.
        self.result_settings = result_settings(config, self.protocol)
        self.settings_hash = settings_hash(self.result_settings)

    def episodes(self, shot: int, seed: int):
        """(setting name, test episodes, validation episodes) of a setting, saved with the run once."""
        if (shot, seed) not in self._episodes:
            setting = f"{self.protocol.way}w{shot}s{self.protocol.query}q_seed{seed}"
            test = self.protocol.test_episodes(shot, seed, self.config.test_episodes)
            path = self.store.episodes_path(setting)
            if path.is_file():
                # Cells already in the run were scored on the saved episodes: a new cell must get the same
                # ones, or pairing it with them would compare different tests.
                saved = self.store.load_episodes(setting)
                if saved.fingerprint() != test.fingerprint():
                    raise ConfigError(
                        f"the test episodes of {setting} differ from those saved in '{path}' (the data or split "
                        "changed since this run began); start a new --run-id rather than mixing the two")
            else:
                self.store.save_episodes(setting, test)
            val = self.protocol.val_episodes(shot, seed, self.config.val_episodes)
            self._episodes[(shot, seed)] = (setting, test, val)
        return self._episodes[(shot, seed)]

    def _report_stale(self, cell: Cell, record: CellRecord) -> None:
        """Warn when a finished cell kept by this run was computed by other code or under other settings."""
        now = cell_code_version(cell.variant)
        then = record.get("code_version")
        if then is not None and then != now:
            warn(f"cell {cell.cell_id} was computed by other source code ({then}; now {now}); it is kept as it is "
                 f"(`bench fingerprint` tells whether its variant still behaves the same) — delete "
                 f"{self.store.cell_path(cell.cell_id)} to recompute it with this code")
        if record.get("settings_hash") not in (None, self.settings_hash):
            warn(f"cell {cell.cell_id} was computed under other settings ({record['settings_hash']}; now "
                 f"{self.settings_hash}); delete {self.store.cell_path(cell.cell_id)} to recompute it")

    def _finished(self, cell: Cell, observer: RunObserver) -> CellRecord | None:
        """The cell's usable record (reported to ``observer`` as skipped), or None; a damaged one is moved aside."""
        if not self.store.has_cell(cell.cell_id):
            return None
        try:
            record = self.store.load_cell(cell.cell_id)
        except RecordError as exc:
            warn(f"{exc}; moved to {self.store.quarantine(cell.cell_id)} and computed again")
            return None
        self._report_stale(cell, record)
        observer.cell_finished(record, skipped=True)
        return record

    def run(self, cell: Cell, observer: RunObserver) -> CellRecord | None:
        """Train and evaluate ``cell`` (or return its record if it is already done) and store it; None when
        another live process holds the cell (two ``bench run`` or ``--jobs`` workers share one run's cells)."""
        record = self._finished(cell, observer)
        if record is not None:
            return record
        if not self.store.claim(cell.cell_id):
            warn(f"cell {cell.cell_id} is being computed by {self.store.claim_holder(cell.cell_id)}; this process "
                 "skips it")
            return None
        try:
            # Another process may have stored it between the check above and the claim.
            return self._finished(cell, observer) or self._compute(cell, observer)
        finally:
            self.store.release(cell.cell_id)

    def _compute(self, cell: Cell, observer: RunObserver) -> CellRecord:
        self.store.mark_running(cell.cell_id)
        try:
            setting, test_episodes, val_episodes = self.episodes(cell.shot, cell.seed)
            # Methods without episodic training (Baseline, SimpleShot) train 0 episodes: the bar says so.
            observer.cell_started(cell.variant.label, cell.shot, cell.seed,
                                  self.config.train_episodes if cell.variant.method_class.meta_trained else 0,
                                  self.config.test_episodes)
            record = run_cell(cell.variant, self.protocol, self.builder, self.settings, cell.shot, cell.seed,
                              test_episodes, val_episodes, self.device, observer, self.store.checkpoint(cell.cell_id),
                              self.store.pretrained_dir)
        except Exception as exc:
            self.store.mark_failed(cell.cell_id, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            raise
        except BaseException:
            self.store.clear_state(cell.cell_id)
            raise
        logger.debug(f"cell {cell.cell_id}: {record['code_version']}, settings {self.settings_hash}, training steps "
                     f"{record['train_steps']}, test steps {record['eval_steps']}, {record['params']} parameters")
        record.update(cell=cell.cell_id, dataset=self.config.dataset_name or self.config.dataset,
                      split=self.protocol.split.name,
                      test_episodes_file=f"episodes/{setting}.npz", test_episodes_sha=test_episodes.fingerprint(),
                      settings=self.result_settings, settings_hash=self.settings_hash,
                      dedup=self.protocol.dataset.metadata.get("dedup"),
                      near_dedup=self.protocol.dataset.metadata.get("near_dedup"),
                      group_leak=self.protocol.group_leak(test_episodes))
        self.store.save_cell(cell.cell_id, record)
        if self.config.tensorboard:
            from fewshot_bench.results.tensorboard import write_cell

            write_cell(Path(self.config.tensorboard).expanduser(), self.store.run_id, record)
        self.store.clear_state(cell.cell_id)
        observer.cell_finished(record, skipped=False)
        return record


def run_cells(runner: CellRunner, cells: Iterable[Cell], observer: RunObserver, *,
              skip_failed: bool = False, log_tracebacks: bool = False) -> list[str]:
    """Run ``cells`` in order; a failing cell is marked failed (its traceback kept in its state file, and
    printed to stderr with ``log_tracebacks``, for job logs) and the others still run. Returns one line per
    failed cell. ``skip_failed`` leaves cells another worker of the same launch failed meanwhile. Ctrl-C and
    other non-Exception interruptions still stop the loop."""
    failures = []
    for cell in cells:
        if skip_failed and runner.store.failed(cell.cell_id):
            continue
        try:
            runner.run(cell, observer)
        except Exception as exc:
            if log_tracebacks:
                traceback.print_exc()
            failures.append(f"cell {cell.cell_id}: {type(exc).__name__}: {exc}")
    return failures


def run(config: RunConfig, observer: RunObserver | None = None) -> RunResult:
    """Validate everything, then train and evaluate every cell in this process, storing each as it ends.

    A cell that fails does not stop the others: it is listed in ``RunResult.failures`` (check it, or call
    ``raise_for_failures``) and marked failed in the run folder, and ``--resume`` computes it again.
    """
    observer = observer or SilentObserver()
    started = start_run(config)
    runner = CellRunner(started.config, started.store, started.protocol, started.device)
    failures = run_cells(runner, started.cells, observer)
    failures += compute_context(runner, started.cells)
    summary = started.store.write_tables()
    return RunResult(started.store, summary, started.config, failures)


def result_settings(config: RunConfig, protocol: Protocol) -> dict[str, Any]:
    """Everything besides the variant, shot and seed that decides what a cell measures: the config keys of
    role ``result``, with the split as its actual class lists and the data as its fingerprint (a path or a
    preset name says neither). Cells are pooled or compared only when these agree."""
    values = config.to_dict()
    # data_root, split and dedup (declared hashed=False) enter through what they resolve to: the data's
    # fingerprint (which de-duplication changes) and the class lists.
    settings = {key: values[key] for key in sorted(config_keys(RESULT, hashed=True))}
    split = protocol.split
    settings["split_classes"] = {"train": list(split.train), "val": list(split.val), "test": list(split.test)}
    settings["data_fingerprint"] = protocol.dataset.fingerprint
    if config.group_separation != "none":  # absent otherwise: the hashes of runs without it are unchanged
        settings["group_separation"] = config.group_separation
        if config.group_separation == "split":
            settings["group_holdout"] = config.group_holdout
    if protocol.holds_out_seen_images:  # absent otherwise: the hashes of runs without a hold-out are unchanged
        settings["seen_holdout_images"] = {"fraction": seen_fraction(config), "sha": protocol.seen_holdout_sha}
    # The content of weights files a backbone plugin loads (absent when none declares any: hashes unchanged).
    settings.update(backbone_weights_settings(v.option_dict["backbone"] for v in resolve_variants(config)))
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    """A short hash of ``result_settings``, the key under which the leaderboard pools seeds."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _same_setting(key: str, before: Any, now: Any) -> bool:
    """Whether a saved setting and today's are the same; a data root is the same file or folder however it is
    written (relative to this directory, absolute, through a link)."""
    if key == "data_root" and before is not None and now is not None:
        return Path(before).expanduser().resolve() == Path(now).expanduser().resolve()
    return before == now


def merge_with_folder(store: RunStore, config: RunConfig) -> RunConfig:
    """The config to save in a (possibly existing) run folder, after checking it may write there.

    An existing folder whose protocol settings differ from ``config`` is refused (keys added to RunConfig
    after the run was made count as their defaults). Otherwise the grid lists of earlier invocations are
    joined with this one's, so a run grown by several invocations (``--seeds 2`` later, or another process
    taking some shots) still saves one config that reruns all of it.
    """
    path = store.root / "config.yaml"
    if not path.exists():
        return config
    previous = {**RunConfig().to_dict(), **load_yaml(path)}
    current = config.to_dict()
    for key in config_keys(RESULT):
        if not _same_setting(key, previous.get(key), current.get(key)):
            raise ConfigError(
                f"run '{store.run_id}' already exists with {key}={previous.get(key)!r} (now {current.get(key)!r}); "
                "use another --run-id, or the same settings to continue that run"
            )
    # Grid keys are joined: earlier cells (and the plugin files defining their methods) stay in the config.
    joined = {key: [v for v in previous[key] if v not in current[key]] + current[key] for key in config_keys(GRID)}
    return replace(config, **{key: sorted(v) if SETTINGS[key].item is int else v for key, v in joined.items()})

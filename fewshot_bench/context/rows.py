"""Computing and storing a run's floor and ceiling rows, per (shot, seed) setting of its grid (the seen-class rows
are a stage of each method cell: ``fewshot_bench.stages.evaluate_seen``)."""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from fewshot_bench.console import logger
from fewshot_bench.context.ceiling import (TrainedCeiling, ceiling_holdout, ceiling_row, ceiling_sampler,
                                          train_ceiling)
from fewshot_bench.context.floor import PIXELS, NearestCentroid, floor_row
from fewshot_bench.registry import BACKBONES
from fewshot_bench.results.numerics import effective_numerics
from fewshot_bench.results.provenance import code_version, git_state

if TYPE_CHECKING:
    from fewshot_bench.engine.runner import Cell, CellRunner
    from fewshot_bench.episodic.protocol import Protocol


def context_id(kind: str, backbone: str, way: int, shot: int, query: int, seed: int) -> str:
    """The file name (without ``.json``) of a context row in the run folder's ``context/``."""
    from fewshot_bench.engine.runner import slug

    return f"{kind}-{slug(backbone)}__{way}w{shot}s{query}q__seed{seed}"


def settings_of(cells: Iterable["Cell"]) -> tuple[list[tuple[int, int]], list[str]]:
    """The (shot, seed) settings of ``cells`` in grid order, and the backbones their variants use."""
    settings = list(dict.fromkeys((cell.shot, cell.seed) for cell in cells))
    backbones = list(dict.fromkeys(cell.variant.option_dict["backbone"] for cell in cells))
    return settings, backbones


def check_ceiling(protocol: "Protocol", shots: list[int]) -> None:
    """Refuse, before any training, a ceiling whose held-out images cannot fill an episode of every shot."""
    held_out = ceiling_holdout(protocol)
    for shot in shots:
        ceiling_sampler(protocol, held_out, shot, 0)


def compute_context(runner: "CellRunner", cells: list["Cell"]) -> list[str]:
    """Compute and store every floor and ceiling row of ``cells``' settings that the run folder lacks; returns one
    line per row that failed (the others are still computed)."""
    config, store, protocol = runner.config, runner.store, runner.protocol
    kinds = [kind for kind in config.context if kind in ("floor", "ceiling")]
    settings, backbones = settings_of(cells)
    failures = []
    trained: dict[tuple[str, int], TrainedCeiling] = {}  # one ceiling per backbone and seed, for every shot
    for shot, seed in settings:
        todo = [(kind, backbone) for kind in kinds
                for backbone in ([PIXELS, *backbones] if kind == "floor" else backbones)
                if not store.context_path(context_id(kind, backbone, protocol.way, shot, protocol.query, seed)).exists()]
        if not todo:
            continue
        try:
            setting, episodes, _ = runner.episodes(shot, seed)
        except Exception as exc:  # e.g. saved episodes that no longer match the data: the cells failed alike
            failures.append(f"context rows of {shot}-shot seed {seed}: {type(exc).__name__}: {exc}")
            continue
        for kind, backbone in todo:
            rid = context_id(kind, backbone, protocol.way, shot, protocol.query, seed)
            # Said as each row starts and ends: a ceiling trains a classifier first, minutes on a CPU.
            started = time.perf_counter()
            logger.info(f"context row {rid}: computing")
            try:
                if kind == "ceiling" and (backbone, seed) not in trained:
                    trained[(backbone, seed)] = train_ceiling(backbone, protocol, runner.builder, seed,
                                                              config.ceiling_epochs, amp=runner.settings.amp)
                    logger.info(f"context row {rid}: ceiling classifier trained ({config.ceiling_epochs} epoch(s), "
                                f"{time.perf_counter() - started:.0f} s)")
                record = _context_record(runner, kind, backbone, shot, seed, episodes,
                                         trained[(backbone, seed)] if kind == "ceiling" else None)
            except Exception as exc:
                logger.debug(traceback.format_exc())
                failures.append(f"context row {rid}: {type(exc).__name__}: {exc}")
                continue
            if kind == "floor":
                record.update(test_episodes_file=f"episodes/{setting}.npz")
            store.save_context(rid, record)
            logger.info(f"context row {rid}: {record['mean']:.2f} % "
                        f"({time.perf_counter() - started:.1f} s)")
    return failures


def _context_record(runner: "CellRunner", kind: str, backbone: str, shot: int, seed: int, episodes: Any,
                    trained: TrainedCeiling | None) -> dict[str, Any]:
    config, protocol = runner.config, runner.protocol
    shape = protocol.dataset.image_shape
    settings = runner.settings
    if kind == "floor":
        row = floor_row(backbone, shape, runner.builder, episodes, seed, amp=settings.amp,
                        cuda_graphs=settings.cuda_graphs)
    else:
        row = ceiling_row(trained, backbone, protocol, runner.builder, shot, seed, len(episodes), amp=settings.amp,
                          cuda_graphs=settings.cuda_graphs)
        episodes = row.pop("episodes")
    result = row.pop("result")
    seconds = result.seconds
    factory = BACKBONES.get(backbone) if backbone != PIXELS else None
    commit, dirty = git_state()
    return {
        "kind": "context", "context": kind, "label": row.pop("label"), "method": f"context:{kind}",
        "description": row.pop("description"), "backbone": backbone, "params": row.pop("params"),
        "uses_test_labels": kind == "ceiling",
        "dataset": config.dataset_name or config.dataset, "split": protocol.split.name,
        "way": protocol.way, "shot": shot, "query": protocol.query, "seed": seed, "train_episodes": 0,
        "mean": float(np.mean(result.accuracies) * 100),
        "accuracies": [round(float(a), 6) for a in result.accuracies],
        # A floor row scores the run's own test episodes (pairs with its methods); a ceiling row its own episodes.
        ("test_episodes_sha" if kind == "floor" else "episodes_sha"): episodes.fingerprint(),
        "settings": runner.result_settings,
        "settings_hash": runner.settings_hash, "numerics": effective_numerics(str(runner.device), settings.amp),
        "device": str(runner.device), "code_version": code_version(NearestCentroid, factory),
        "git_commit": commit, "git_dirty": dirty, "eval_seconds": round(seconds, 3),
        # The ceiling's training (shared by the shots of its seed) is in its ``ceiling`` block.
        "train_seconds": round(trained.info["training_seconds"], 3) if trained is not None else 0.0,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **row,
    }

"""The one function that runs a cell: build the variant's method under the cell's seed, run the stages its
declarations call for (``fewshot_bench.stages``), and return the cell's record.

The runner, the throughput benchmark, the conformance kit and the behavioural fingerprint all run cells through
``run_cell``; nothing else assembles a pipeline.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fewshot_bench.engine.training import Checkpointer, TrainSettings
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.episodic.protocol import Protocol
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.method import MethodVariant, parameter_count
from fewshot_bench.registry import METHODS, STAGES
from fewshot_bench.results.numerics import effective_numerics
from fewshot_bench.results.provenance import cell_code_version, git_state, gpu_paths_version
from fewshot_bench.stages import CellContext, Stage


class _SilentObserver:
    def trained(self, *args: Any) -> None: ...
    def evaluated(self, *args: Any) -> None: ...


def pipeline() -> list[tuple[str, Stage]]:
    """Every registered stage as (name, stage), in pipeline order (``order``, then name)."""
    stages = [(entry.name, entry.obj()) for entry in STAGES.entries()]
    return sorted(stages, key=lambda item: (item[1].order, item[0]))


def run_cell(variant: MethodVariant, protocol: Protocol, builder: TaskBuilder, settings: TrainSettings,
             shot: int, seed: int, test_episodes: EpisodeSet, val_episodes: EpisodeSet | None,
             device: torch.device, observer: Any = None, checkpoint: Checkpointer | None = None,
             pretrained_dir: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one variant for one (shot, seed) on the setting's fixed test episodes; returns the
    cell's record (without the run-level fields the runner adds: cell id, dataset, settings, episode file).

    The method's weights are drawn right after ``torch.manual_seed(seed)``; every stage after that draws from
    torch's generator in pipeline order (or from generators of its own), so a cell's numbers are a function of
    its variant, setting, seed and data alone."""
    version = cell_code_version(variant)  # before training: an edit made meanwhile does not relabel this cell
    if checkpoint is not None:
        checkpoint.code_version = version
    settings = replace(settings, seed=seed, **variant.training)
    method = variant.build(protocol.dataset.image_shape, seed=seed).to(device)
    cell = CellContext(variant, method, protocol, builder, settings, shot, seed, test_episodes, val_episodes, device,
                       observer or _SilentObserver(), checkpoint, pretrained_dir, version)
    blocks: dict[str, Any] = {}
    ran = []
    for name, stage in pipeline():
        if stage.applies(cell):
            blocks.update(stage.run(cell))
            ran.append(name)
        else:
            blocks.update(stage.skipped(cell))
    if checkpoint is not None:
        # What ``engine.reuse.load_cell`` needs to classify new images without the run's data.
        checkpoint.save_final({k: v.detach().cpu() for k, v in method.state_dict().items()},
                              {"label": variant.label, "image_shape": list(protocol.dataset.image_shape),
                               "mean": builder.mean, "std": builder.std, "shot": shot, "way": protocol.way})
    registered = variant.unregistered_class is None
    entry = METHODS.entry(variant.name) if registered else None
    return {
        "label": variant.label,
        "method": variant.name,
        "method_source": entry.source if entry else "unregistered",
        "method_version": entry.version if entry else "",
        "code_version": version,
        "gpu_paths": gpu_paths_version(),
        **dict(zip(("git_commit", "git_dirty"), git_state())),
        "options": {k: v for k, v in variant.options},
        "backbone": variant.option_dict["backbone"],
        "way": protocol.way,
        "shot": shot,
        "query": protocol.query,
        "train_way": protocol.train_way,
        "train_query": protocol.train_query,
        "seed": seed,
        "params": parameter_count(method),
        "stages": ran,
        "transductive": method.transductive,
        "numerics": effective_numerics(str(device), settings.amp),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batched_episodes": settings.batch_episodes and settings.meta_batch > 1 and method.supports_batched_episodes(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **blocks,
    }

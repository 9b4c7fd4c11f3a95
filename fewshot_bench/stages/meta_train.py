"""The ``meta_train`` stage: episodic meta-training with the one training loop
(``fewshot_bench.engine.training.train``), for methods that declare ``meta_trained``."""

from __future__ import annotations

from typing import Any

from fewshot_bench.engine.training import TrainHistory, train
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


def _history_block(history: TrainHistory, episodes: int, source: str | None = None) -> dict[str, Any]:
    # ``budget_curve`` only for cells that asked for one (records without it are unchanged).
    # ``source``: what the selection validated on, recorded only when it is not the split's validation classes
    # (records without it are unchanged).
    curve = {"episode": history.val_episodes, "accuracy": history.val_accuracies,
             "selected_episode": history.selected_episode}
    if source is not None and source != "validation classes":
        curve["source"] = source
    block = {"train_episodes": episodes, "train_seconds": round(history.seconds, 3), "train_steps": history.step_mode,
             "loss_curve": {"episode": history.loss_episodes, "loss": history.losses}, "val_curve": curve}
    if history.curve_episodes:
        block["budget_curve"] = {"episode": history.curve_episodes,
                                 "mean": [round(100 * a, 4) for a in history.curve_accuracies],
                                 "ci95": [round(100 * c, 4) for c in history.curve_ci95],
                                 "seconds": round(history.curve_seconds, 3),
                                 "episodes": "the cell's test episodes"}
    return block


@register_stage("meta_train")
class MetaTrain(Stage):
    """Meta-training on episodes of the training classes, checkpointed and resumable."""

    order = 30

    def applies(self, cell: CellContext) -> bool:
        return cell.method.meta_trained and cell.settings.episodes > 0

    def run(self, cell: CellContext) -> dict[str, Any]:
        protocol = cell.protocol
        history = train(cell.method, protocol.train_sampler(cell.shot, cell.seed), cell.builder, cell.settings,
                        allowed_class_ids=protocol.train_ids, labels=protocol.training_labels,
                        class_names=protocol.class_names, val_episodes=cell.val_episodes,
                        progress=cell.observer.trained, checkpointer=cell.checkpoint,
                        curve_episodes=cell.test_episodes if cell.settings.budget_curve else None)
        return _history_block(history, cell.settings.episodes,
                              protocol.validation_source if cell.val_episodes is not None else None)

    def skipped(self, cell: CellContext) -> dict[str, Any]:
        # Baseline, Baseline++, SimpleShot: their papers do no episodic training after pre-training; any method
        # with --train-episodes 0 (given weights evaluated as they are).
        return _history_block(TrainHistory(step_mode="none"), 0)

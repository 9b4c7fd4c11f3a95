"""Evaluation of a trained method on a fixed set of episodes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from fewshot_bench.device import autocast
from fewshot_bench.engine.graphs import CapturedStep
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.method import FewShotMethod, check_scores


@dataclass
class EvaluationResult:
    """Per-episode accuracies and per-class correct counts on a fixed episode set.

    Attributes:
        accuracies: (n_episodes,) fraction of queries classified correctly.
        class_correct: (n_episodes, n_way) correct queries of each episode class (see the episodes'
            ``class_ids`` for which dataset class each column is).
        seconds: wall time of the evaluation.
        step_mode: how episodes ran: ``graph`` (replayed CUDA graph) or ``eager`` (see ``CapturedStep``).
    """

    accuracies: np.ndarray
    class_correct: np.ndarray
    seconds: float
    step_mode: str = "eager"


def evaluate(
    method: FewShotMethod,
    builder: TaskBuilder,
    episodes: EpisodeSet,
    progress: Callable[[int], None] | None = None,
    amp: bool = True,
    cuda_graphs: bool = True,
) -> EvaluationResult:
    """Accuracy of ``method`` on every episode, with gradients off (methods that adapt at test time, like
    MAML, re-enable them inside ``predict``). Counts stay on the device until the end. On CUDA each
    episode's device work is replayed from a CUDA graph (``cuda_graphs``; see ``fewshot_bench.engine.graphs``)."""
    start = time.perf_counter()
    method.eval()
    n_way = episodes.class_ids.shape[1]
    correct = torch.zeros(len(episodes), n_way, device=builder.device, dtype=torch.int32)

    def episode_correct(buffers: list[torch.Tensor], shapes: tuple[tuple[int, int, int], ...]) -> torch.Tensor:
        task = builder.tasks(buffers[0], shapes, method.memory_format)[0]
        scores = method.predict(task.support, task.support_labels, task.query, task.n_way)
        check_scores(method, scores, len(task.query), task.n_way)
        hits = (scores.argmax(dim=1) == task.query_labels).to(torch.int32)
        return torch.zeros(task.n_way, device=hits.device, dtype=torch.int32).index_add_(0, task.query_labels, hits)

    step = CapturedStep(episode_correct, enabled=cuda_graphs and builder.device.type == "cuda")
    with torch.no_grad(), autocast(builder.device, amp):
        for i, episode in enumerate(episodes):
            staged = builder.stage_episodes([episode])
            correct[i].copy_(step(staged.buffers, staged.shapes))
            if progress is not None:
                progress(1)
    class_correct = correct.cpu().numpy()
    n_query = episodes.query.shape[1]
    return EvaluationResult(class_correct.sum(1) / n_query, class_correct, time.perf_counter() - start,
                            step.describe())

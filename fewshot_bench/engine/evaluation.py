"""Evaluation of a trained method on a fixed set of episodes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from fewshot_bench.device import autocast, to_device
from fewshot_bench.engine.graphs import CapturedStep
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.errors import MethodContractError
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


def query_orders(episodes: EpisodeSet) -> np.ndarray:
    """(n_episodes, n_way * n_query) the order in which each episode's queries reach ``predict``: a permutation
    seeded by the episodes' sha and the episode's index, the same for every method (so comparisons stay paired).
    Queries never arrive grouped by class, so a method cannot read their labels off their positions."""
    n_episodes, n_queries = episodes.query.shape
    rng = np.random.default_rng(int(episodes.fingerprint()[:16], 16))
    orders = [rng.permutation(n_queries) for _ in range(n_episodes)]
    return np.stack(orders) if orders else np.zeros((0, n_queries), dtype=np.int64)


QUERY_ORDER = "shuffled per episode, seeded by the episodes' sha (the same for every method)"


def evaluate(
    method: FewShotMethod,
    builder: TaskBuilder,
    episodes: EpisodeSet,
    progress: Callable[[int], None] | None = None,
    amp: bool = True,
    cuda_graphs: bool = True,
    purpose: str = "test",
) -> EvaluationResult:
    """Accuracy of ``method`` on every episode, with gradients off (methods that adapt at test time, like
    MAML, re-enable them inside ``predict``). Counts stay on the device until the end. On CUDA each
    episode's device work is replayed from a CUDA graph (``cuda_graphs``; see ``fewshot_bench.engine.graphs``).

    The runner enforces the contract on every episode, at the cost of one copy of its images: queries arrive
    in a seeded random order (``query_orders``), and scores that are not finite, or an episode's images edited
    in place by ``predict``, fail the evaluation with a one-line ``MethodContractError`` naming the episode
    (``purpose``: which episodes, for the message) — never a number."""
    start = time.perf_counter()
    method.eval()
    n_way = episodes.class_ids.shape[1]
    correct = torch.zeros(len(episodes), n_way, device=builder.device, dtype=torch.int32)
    # Per episode: [non-finite scores, images edited in place], read once at the end.
    broken = torch.zeros(len(episodes), 2, device=builder.device, dtype=torch.bool)
    orders = query_orders(episodes)

    def chunk_correct(buffers: list[torch.Tensor], shapes: tuple[tuple[int, int, int], ...]):
        tasks = builder.tasks(buffers[0], shapes, method.memory_format)
        queries = [task.query.index_select(0, order).contiguous(memory_format=method.memory_format)
                   for task, order in zip(tasks, buffers[1])]
        before = [(task.support.clone(), query.clone()) for task, query in zip(tasks, queries)]
        all_scores = method.predict_episodes([task.support for task in tasks], [task.support_labels for task in tasks],
                                             queries, n_way)
        if not isinstance(all_scores, (list, tuple)) or len(all_scores) != len(tasks):
            raise MethodContractError(
                f"{type(method).__name__}.predict_episodes must return one score matrix per episode ({len(tasks)}), "
                f"got {type(all_scores).__name__}")
        counts, flags = [], []
        for task, order, query, scores, (support_before, query_before) in zip(tasks, buffers[1], queries, all_scores,
                                                                              before):
            check_scores(method, scores, len(query), task.n_way)
            labels = task.query_labels.index_select(0, order)
            flags.append(torch.stack([~torch.isfinite(scores).all(),
                                      (task.support != support_before).any() | (query != query_before).any()]))
            hits = (scores.argmax(dim=1) == labels).to(torch.int32)
            counts.append(torch.zeros(task.n_way, device=hits.device, dtype=torch.int32).index_add_(0, labels, hits))
        return torch.stack(counts), torch.stack(flags)

    # Episodes go to the method ``episodes_per_prediction`` at a time (one transfer, one captured step each).
    chunk = max(1, int(method.episodes_per_prediction))
    step = CapturedStep(chunk_correct, enabled=cuda_graphs and builder.device.type == "cuda")
    with torch.no_grad(), autocast(builder.device, amp):
        for first in range(0, len(episodes), chunk):
            last = min(first + chunk, len(episodes))
            staged = builder.stage_episodes([episodes[i] for i in range(first, last)])
            order = to_device(torch.from_numpy(orders[first:last]), builder.device)
            counts, flags = step([*staged.buffers, order], staged.shapes)
            correct[first:last].copy_(counts)
            broken[first:last].copy_(flags)
            if progress is not None:
                progress(last - first)
    flags = broken.cpu().numpy()
    name = type(method).__name__
    if flags[:, 0].any():
        first = int(np.flatnonzero(flags[:, 0])[0])
        raise MethodContractError(
            f"{name} returned non-finite scores (NaN or inf) on {purpose} episode {first + 1} of {len(episodes)} "
            f"({int(flags[:, 0].sum())} episode(s) in all); no accuracy is recorded — check the method for "
            "divisions by zero, logs of zero or a diverged training (e.g. a learning rate too large)")
    if flags[:, 1].any():
        first = int(np.flatnonzero(flags[:, 1])[0])
        raise MethodContractError(
            f"{name}.predict modified the episode's images in place ({purpose} episode {first + 1}); work on a "
            "copy (x = x - mean, not x -= mean)")
    class_correct = correct.cpu().numpy()
    n_query = episodes.query.shape[1]
    return EvaluationResult(class_correct.sum(1) / n_query, class_correct, time.perf_counter() - start,
                            step.describe())

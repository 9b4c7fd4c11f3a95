"""The floor: nearest class mean on a setting's test episodes with nothing trained.

On raw (normalised) pixels, and on a randomly initialised copy of each backbone the run uses, in eval mode. It
scores through the one evaluator (``engine.evaluation.evaluate``: same episodes, same query order, same checks),
so a method row and its floor rows pair episode by episode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fewshot_bench.engine.evaluation import EvaluationResult, evaluate
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.method import FewShotMethod
from fewshot_bench.registry import BACKBONES

PIXELS = "pixels"


class NearestCentroid(FewShotMethod):
    """Scores queries by the negative squared distance of their embedding to each support class's mean embedding
    (ProtoNet's rule without its training). Not registered as a method: it is the context's instrument."""

    meta_trained = False
    code_modules = ("fewshot_bench.context",)  # the floor's and the ceiling's code: a context row's version

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        support = support_features.flatten(1).float()
        one_hot = torch.nn.functional.one_hot(support_labels, n_way).to(support.dtype)
        means = (one_hot.T @ support) / one_hot.sum(0).unsqueeze(1)
        return -torch.cdist(query_features.flatten(1).float(), means).pow(2)


def floor_embedding(backbone: str, channels: int, seed: int) -> nn.Module:
    """The untrained embedding of a floor row: the identity for ``pixels``, else backbone ``backbone`` with
    weights drawn from ``seed`` (without touching torch's global generator)."""
    if backbone == PIXELS:
        return nn.Identity()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BACKBONES.get(backbone)(channels)


def nearest_centroid(embedding: nn.Module, image_shape: tuple[int, int, int], builder: TaskBuilder,
                     episodes: EpisodeSet, *, amp: bool, cuda_graphs: bool, purpose: str) -> EvaluationResult:
    """Nearest-class-mean accuracy of ``embedding`` (in eval mode) on ``episodes``."""
    method = NearestCentroid(embedding, image_shape).to(builder.device)
    method = method.to(memory_format=method.memory_format)
    return evaluate(method, builder, episodes, amp=amp, cuda_graphs=cuda_graphs, purpose=purpose)


def floor_row(backbone: str, image_shape: tuple[int, int, int], builder: TaskBuilder, episodes: EpisodeSet,
              seed: int, *, amp: bool, cuda_graphs: bool) -> dict[str, Any]:
    """The floor row of one embedding (``pixels`` or a backbone's name) on a setting's test episodes: its label,
    what it is, its evaluation and parameter count."""
    embedding = floor_embedding(backbone, image_shape[0], seed)
    result = nearest_centroid(embedding, image_shape, builder, episodes, amp=amp, cuda_graphs=cuda_graphs,
                              purpose=f"floor ({backbone})")
    if backbone == PIXELS:
        label, what = "floor: pixels", "nearest class mean on the normalised pixels"
    else:
        label = f"floor: random {backbone}"
        what = f"nearest class mean in the features of an untrained {backbone} (weights drawn from the cell seed)"
    return {"label": label, "backbone": backbone, "description": what, "result": result,
            "params": sum(p.numel() for p in embedding.parameters())}

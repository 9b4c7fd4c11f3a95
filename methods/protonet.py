"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

Each class is represented by the mean of its support embeddings (its prototype); a query is scored by
the negative squared Euclidean distance to each prototype, and training minimises cross-entropy over
those scores. ``distance=euclidean`` scores by the plain Euclidean distance instead, as easyfsl does
(``torch.cdist``); on synthetic-fer it trained faster at short budgets (see docs/performance.md).

@inproceedings{snell2017prototypical,
  title     = {Prototypical Networks for Few-shot Learning},
  author    = {Snell, Jake and Swersky, Kevin and Zemel, Richard},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2017}
}
"""

from __future__ import annotations

import torch

from fewshot_bench.method import FewShotMethod, Optimisation
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


def class_means(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """(n_way, D) mean feature of each class; ``features`` is (n, D), ``labels`` (n,) in [0, n_way)."""
    sums = torch.zeros(n_way, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    # Counted with index_add_ rather than bincount, which reads the largest label back to the host (a
    # device synchronisation per episode on CUDA).
    counts = torch.zeros(n_way, 1, dtype=features.dtype, device=features.device)
    counts.index_add_(0, labels, torch.ones(len(labels), 1, dtype=features.dtype, device=features.device))
    return sums / counts


def squared_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) squared Euclidean distances."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


@register_method("protonet")
class ProtoNet(FewShotMethod):
    """Prototypical Networks: squared Euclidean distance to class-mean embeddings (Snell et al. 2017)."""

    paper = "Snell, Swersky & Zemel. Prototypical Networks for Few-shot Learning. NeurIPS 2017."
    default_backbone = "conv4"
    optimisation = Optimisation(lr=1e-3, lr_step=2000, lr_gamma=0.5,
                                source="Snell et al. 2017: Adam 1e-3, halved every 2000 episodes")
    options = (
        Option("distance", str, "squared", "squared Euclidean (the paper) or Euclidean (easyfsl's torch.cdist)",
               ("squared", "euclidean")),
    )

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        prototypes = class_means(support_features.flatten(1), support_labels, n_way)
        distances = squared_euclidean(query_features.flatten(1), prototypes)
        if self.config["distance"] == "euclidean":
            distances = distances.clamp_min(1e-12).sqrt()
        return -distances

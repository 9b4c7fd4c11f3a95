"""FEAT (Ye, Hu, Zhan & Sha, CVPR 2020: "Few-Shot Learning via Embedding Adaptation with Set-to-Set Functions").

A pre-trained backbone embeds the images (global pooling of its feature maps); the class prototypes (support
means) are adapted to the episode by a set-to-set function — one-head self-attention with a residual
connection and layer normalisation (a Transformer layer) — and a query is scored by its negative squared
Euclidean distance to each adapted prototype divided by ``temperature``. Meta-training adds the paper's
contrastive regulariser, weighted by ``balance``: each class's support and query embeddings go through the
same attention as one set, and every embedding is classified by its distance to the adapted sets' centres
(``temperature2``).

Defaults are Ye et al.'s Conv-4 1-shot recipe (their README): pre-training with Adam 1e-3, weight decay 5e-4,
batch 128, 200 epochs, ×0.1 after epochs 30, 50, 80 (their pretrain.py); meta-training with Adam 1e-4 halved
every 2000 episodes (20 epochs of 100), the attention at 10× the rate (``lr_mul``), ``balance`` 1,
``temperature`` 64, ``temperature2`` 16. Their 5-shot run uses ``balance`` 0.1; their ResNet-12 1-shot runs
use ``balance`` 0.01 and ``temperature2`` 64. Dropout as in their code: 0.1 on the attention weights, 0.5 on
the attention output.

``lr_mul`` is the attention's own learning rate as a multiple of the variant's: the attention's parameters are
their own optimiser group (``parameter_groups``), as in Ye et al.'s code; the schedule decays both groups alike.

@inproceedings{ye2020fewshot,
  title     = {Few-Shot Learning via Embedding Adaptation with Set-to-Set Functions},
  author    = {Ye, Han-Jia and Hu, Hexiang and Zhan, De-Chuan and Sha, Fei},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition},
  year      = {2020}
}
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_bench.method import Optimisation, ParameterGroup, Task
from fewshot_bench.methods.protonet import class_means, squared_euclidean
from fewshot_bench.options import Option
from fewshot_bench.pretraining import PretrainedMethod, PretrainRecipe
from fewshot_bench.registry import register_method


class SetToSet(nn.Module):
    """FEAT's set-to-set function: one-head scaled dot-product self-attention over a set of d-dimensional
    embeddings, then a linear map, dropout, the residual and layer normalisation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        # Ye et al.'s initialisation: normal with std sqrt(2 / (d_model + d_k)) for the projections, Xavier normal
        # for the output map (same std here since d_k = d_model), nn.Linear's uniform bias, layer norm 1 / 0.
        std = math.sqrt(2.0 / (dim + dim))
        initial = {
            "query": torch.randn(dim, dim) * std, "key": torch.randn(dim, dim) * std,
            "value": torch.randn(dim, dim) * std, "out": torch.randn(dim, dim) * std,
            "out_bias": (torch.rand(dim) * 2 - 1) / math.sqrt(dim),
            "norm_weight": torch.ones(dim), "norm_bias": torch.zeros(dim),
        }
        self.weights = nn.ParameterDict({name: nn.Parameter(value) for name, value in initial.items()})

    def forward(self, sets: torch.Tensor) -> torch.Tensor:
        """(B, L, d) sets of L embeddings -> (B, L, d) adapted embeddings."""
        p = self.weights
        q, k, v = sets @ p["query"].t(), sets @ p["key"].t(), sets @ p["value"].t()
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.dim), dim=2)
        attention = F.dropout(attention, 0.1, self.training)
        out = F.dropout((attention @ v) @ p["out"].t() + p["out_bias"], 0.5, self.training)
        return F.layer_norm(out + sets, (self.dim,), p["norm_weight"], p["norm_bias"])


@register_method("feat")
class FEAT(PretrainedMethod):
    """FEAT (Ye et al. 2020): prototypes adapted to the episode by a Transformer layer, with a contrastive
    regulariser in meta-training."""

    paper = ("Ye, Hu, Zhan & Sha. Few-Shot Learning via Embedding Adaptation with Set-to-Set Functions. "
             "CVPR 2020.")
    pretraining = PretrainRecipe(epochs=200, batch=128, optimiser="adam", lr=1e-3, weight_decay=5e-4,
                                 milestones="30,50,80", gamma=0.1, head="linear",
                                 source="Ye et al.'s pretrain.py for Conv-4: Adam 1e-3, weight decay 5e-4, batch 128, "
                                        "200 epochs, ×0.1 after 30, 50, 80")
    optimisation = Optimisation(lr=1e-4, lr_step=2000, lr_gamma=0.5,
                                source="Ye et al.'s Conv-4 recipe: Adam 1e-4, halved every 2000 episodes")
    conv4_pool = "max"  # Ye et al.'s ConvNet max-pools its last maps to a 64-d embedding
    code_modules = ("fewshot_bench.heads", "fewshot_bench.methods.protonet")
    options = (
        Option("temperature", float, 64.0, "divides the query-prototype distances", minimum=1e-6),
        Option("temperature2", float, 16.0, "divides the distances of the contrastive regulariser", minimum=1e-6),
        Option("balance", float, 1.0, "weight of the contrastive regulariser (0: off; Ye et al.'s 5-shot: 0.1)",
               minimum=0.0),
        Option("lr_mul", float, 10.0, "learning-rate multiplier of the attention", minimum=1e-6),
        PretrainedMethod.pool_option("max"),
    )

    def __init__(self, backbone, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        self.adapt = SetToSet(self.embedding_dim())

    def parameter_groups(self) -> list[ParameterGroup]:
        """The backbone at the variant's learning rate, the attention at ``lr_mul`` times it (Ye et al.)."""
        attention = {id(p) for p in self.adapt.parameters()}
        rest = [p for p in self.parameters() if id(p) not in attention]
        return [ParameterGroup(rest), ParameterGroup(list(self.adapt.parameters()), self.config["lr_mul"])]

    def _adapted_prototypes(self, support: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
        return self.adapt(class_means(support, labels, n_way).unsqueeze(0)).squeeze(0)

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        support, query = self.embedding(support_features), self.embedding(query_features)
        prototypes = self._adapted_prototypes(support, support_labels, n_way)
        return -squared_euclidean(query, prototypes) / self.config["temperature"]

    def loss_features(self, task: Task, support_features: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        logits = self.predict_features(support_features, task.support_labels, query_features, task.n_way)
        loss = F.cross_entropy(logits, task.query_labels)
        if self.config["balance"] > 0:
            # Each class's support and query embeddings as one set (the Task is class-major).
            support, query = self.embedding(support_features), self.embedding(query_features)
            sets = torch.cat([support.view(task.n_way, task.n_shot, -1),
                              query.view(task.n_way, len(query) // task.n_way, -1)], dim=1)
            centres = self.adapt(sets).mean(dim=1)
            members = sets.reshape(-1, sets.shape[-1])
            labels = torch.arange(task.n_way, device=members.device).repeat_interleave(sets.shape[1])
            regulariser = -squared_euclidean(members, centres) / self.config["temperature2"]
            loss = loss + self.config["balance"] * F.cross_entropy(regulariser, labels)
        return loss

"""Convolutional Relation Network, CRN (Zhu et al., Expert Systems with Applications 2022).

CRN is a Relation Network for few-shot facial expression recognition with two additions in its
"salient discriminative feature learning" stage:

* **Depth Average Pooling (DAP)**: the K support feature maps of a class are averaged element-wise into
  one class map (the per-class mean map, support images only). ``dap=false`` falls back to RN's sum over
  shots, which is the paper's "without DAP" ablation.
* **Jensen–Shannon distance loss** between the class maps of an episode: each class map is turned into a
  distribution P by a softmax over its flattened entries, and with y = 1 on the diagonal,

      L_dist = 1 − (1/N²) Σ_i Σ_j [ y_ij − D_JS(P_i, P_j) ]²,   D_JS with base-2 logarithms, in [0, 1].

  Minimising it pushes the class distributions of different emotions apart. The total loss per episode is
  L_r + λ·L_dist, averaged over the episodes of a meta-batch (``js_weight`` = λ; 0 is the "without JS"
  ablation).

Interpretation choices (the paper's full text is paywalled; see ``docs/methods.md``):

* P(·) = softmax over the flattened (C·h·w) class map — the natural reading of the review's equations.
* λ is not reported; we use 0.5 by default (CSRN's code weights its own auxiliary terms 0.5–0.7).
* Embedding: the review says every block pools (that is ``backbone=conv4``); the Relation Network the
  paper builds on pools only in the first two blocks, which CSRN used when retraining CRN — our default
  (``backbone=rn-encoder``). Both layouts are one option away.
* The review mentions multiplying the relation output by features that did not go through DAP; the exact
  form is not recoverable. ``multiply_raw=true`` multiplies each relation score r_ij by s_ij, the mean over
  the class's K shots of the cosine similarity (mapped to [0, 1]) between the query map and each raw
  support map. Off by default.

@article{zhu2022convolutional,
  title   = {Convolutional relation network for facial expression recognition in the wild with few-shot
             learning},
  author  = {Zhu, Qing and Mao, Qirong and Jia, Hongjie and Noi, Ocquaye Elias Nii and Tu, Juanjuan},
  journal = {Expert Systems with Applications},
  volume  = {189},
  pages   = {116046},
  year    = {2022},
  doi     = {10.1016/j.eswa.2021.116046}
}
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewshot_bench.method import Task
from fewshot_bench.methods.relationnet import RelationStyleMethod, one_hot_mse
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


def depth_average_pool(grouped: torch.Tensor) -> torch.Tensor:
    """DAP: (n_way, K, C, h, w) support maps → (n_way, C, h, w) element-wise mean over the K shots."""
    return grouped.mean(dim=1)


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Jensen–Shannon divergence with base-2 logarithms (in [0, 1]) between distributions on the last axis."""
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (torch.log(a.clamp_min(eps)) - torch.log(b.clamp_min(eps)))).sum(-1)

    return ((0.5 * kl(p, m) + 0.5 * kl(q, m)) / math.log(2.0)).clamp(0.0, 1.0)


def class_distributions(class_maps: torch.Tensor) -> torch.Tensor:
    """P(·): softmax over each flattened class map, computed in float32 for stability."""
    return torch.softmax(class_maps.flatten(1).float(), dim=1)


def js_distance_loss(class_maps: torch.Tensor) -> torch.Tensor:
    """L_dist = 1 − mean_ij [y_ij − D_JS(P_i, P_j)]² with y the identity matrix."""
    p = class_distributions(class_maps)
    n = p.shape[0]
    divergence = js_divergence(p.unsqueeze(1).expand(n, n, -1), p.unsqueeze(0).expand(n, n, -1))
    target = torch.eye(n, device=p.device, dtype=p.dtype)
    return 1.0 - (target - divergence).pow(2).mean()


@register_method("crn")
class CRN(RelationStyleMethod):
    """Convolutional Relation Network: DAP class maps + Jensen–Shannon distance loss (Zhu et al. 2022)."""

    paper = ("Zhu, Mao, Jia, Noi & Tu. Convolutional relation network for facial expression recognition in "
             "the wild with few-shot learning. Expert Systems with Applications 189, 2022.")
    options = (
        Option("dap", bool, True, "Depth Average Pooling of support maps per class (false: RN's sum over shots)"),
        Option("js_weight", float, 0.5, "λ, weight of the Jensen–Shannon distance loss (0 disables it)", minimum=0.0),
        Option("multiply_raw", bool, False, "multiply relation scores by similarity to raw (non-DAP) support maps"),
        Option("hidden", int, 8, "hidden units of the relation module's first FC layer", minimum=1),
    )

    def class_maps(self, grouped: torch.Tensor) -> torch.Tensor:
        return depth_average_pool(grouped) if self.config["dap"] else grouped.sum(1)

    def scores_and_classes(self, support_maps, support_labels, query_maps, n_way):
        scores, classes, grouped, query_maps = super().scores_and_classes(support_maps, support_labels, query_maps,
                                                                          n_way)
        if self.config["multiply_raw"]:
            q = F.normalize(query_maps.flatten(1), dim=1)
            s = F.normalize(grouped.flatten(2), dim=2)
            similarity = torch.einsum("qd,nkd->qnk", q, s).mean(-1)
            scores = scores * (similarity + 1.0) / 2.0
        return scores, classes, grouped, query_maps

    def loss_features(self, task: Task, support_features: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        scores, classes, _, _ = self.scores_and_classes(support_features, task.support_labels, query_features,
                                                        task.n_way)
        loss = one_hot_mse(scores, task.query_labels)
        if self.config["js_weight"] > 0:
            loss = loss + self.config["js_weight"] * js_distance_loss(classes)
        return loss

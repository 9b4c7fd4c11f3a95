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

from fewshot_bench.method import Optimisation, Task
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


def map_distributions(maps: torch.Tensor, scale: str = "none", temperature: float = 1.0) -> torch.Tensor:
    """P(·): softmax over each flattened map, in float32 for stability.

    ``scale="none"`` is the paper's reading: the raw map entries are the logits, so multiplying every map by
    c > 1 (which batch norm's affine weights can do for free) sharpens every distribution and drives the
    divergences between different classes to 1 and the loss to 0 without separating anything.
    ``scale="standardise"`` makes the logits scale-free: each flattened map is standardised (zero mean, unit
    standard deviation) and divided by ``temperature``.
    """
    logits = maps.flatten(1).float()
    if scale == "standardise":
        logits = (logits - logits.mean(1, keepdim=True)) / logits.std(1, keepdim=True).clamp_min(1e-6)
    return torch.softmax(logits / temperature, dim=1)


def js_distance_loss(p: torch.Tensor, q: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """L_dist = 1 − mean_ij [y_ij − D_JS(p_i, q_j)]² for distributions ``p`` (n, D) and ``q`` (m, D), with
    ``same`` (n, m) the targets y (1 where i and j are of one class)."""
    n, m = p.shape[0], q.shape[0]
    divergence = js_divergence(p.unsqueeze(1).expand(n, m, -1), q.unsqueeze(0).expand(n, m, -1))
    return 1.0 - (same.to(divergence.dtype) - divergence).pow(2).mean()


@register_method("crn")
class CRN(RelationStyleMethod):
    """Convolutional Relation Network: DAP class maps + Jensen–Shannon distance loss (Zhu et al. 2022)."""

    paper = ("Zhu, Mao, Jia, Noi & Tu. Convolutional relation network for facial expression recognition in "
             "the wild with few-shot learning. Expert Systems with Applications 189, 2022.")
    # CSRN's training script (the only public code that trains CRN, retrained there as a baseline): Adam 1e-3
    # for encoder and relation module, halved every 100 steps of 25 episodes, each module's gradient norm
    # clipped at 0.5. The CRN paper's own settings are not known (paywalled).
    optimisation = Optimisation(lr=1e-3, lr_step=2500, lr_gamma=0.5, grad_clip=0.5,
                                source="CSRN's code (smu-ivpl/CSRN, the public CRN retraining): Adam 1e-3 halved "
                                       "every 2500 episodes, each module's gradient norm clipped at 0.5")
    options = (
        Option("dap", bool, True, "Depth Average Pooling of support maps per class (false: RN's sum over shots)"),
        Option("js_weight", float, 0.5, "λ, weight of the Jensen–Shannon distance loss (0 disables it)", minimum=0.0),
        Option("js_pairs", str, "class-class", "what the JS term compares: every pair of class maps (the paper's "
               "equation) or every class map with every query map (the pairs of CSRN's code)",
               ("class-class", "class-query")),
        Option("js_map", str, "class", "the class map of the JS term: the one the relation module sees (DAP's mean; "
               "RN's sum with dap=false) or always the mean over shots (a clean dap=false ablation)",
               ("class", "mean")),
        Option("js_scale", str, "none", "logits of the JS distributions: the raw map (the paper's reading; scale "
               "degenerate) or each map standardised and divided by js_temperature", ("none", "standardise")),
        Option("js_temperature", float, 1.0, "temperature of the JS softmax", minimum=1e-6),
        Option("raw_scores", bool, False, "also score the query against each raw support map, as CSRN's code: "
               "loss MSE(raw) + dap_weight·MSE(DAP), scores mean(raw) + dap_weight·DAP"),
        Option("dap_weight", float, 0.7, "weight of the DAP score and loss with raw_scores (CSRN's code: 0.7)",
               minimum=0.0),
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

    def raw_support_scores(self, grouped: torch.Tensor, query_maps: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way, K) relation scores of each query with each raw support map (CSRN's code)."""
        n_way, shots = grouped.shape[:2]
        raw = self.relation.score_grid(grouped.flatten(0, 1), query_maps)
        return raw.view(len(query_maps), n_way, shots)

    def predict_features(self, support_features, support_labels, query_features, n_way):
        scores, _, grouped, query_maps = self.scores_and_classes(support_features, support_labels, query_features,
                                                                 n_way)
        if self.config["raw_scores"]:
            scores = self.raw_support_scores(grouped, query_maps).mean(-1) + self.config["dap_weight"] * scores
        return scores

    def js_term(self, classes: torch.Tensor, grouped: torch.Tensor, query_maps: torch.Tensor,
                query_labels: torch.Tensor) -> torch.Tensor:
        """L_dist of the episode under the ``js_pairs`` / ``js_map`` / ``js_scale`` options."""
        maps = grouped.mean(1) if self.config["js_map"] == "mean" else classes
        scale, temperature = self.config["js_scale"], self.config["js_temperature"]
        p = map_distributions(maps, scale, temperature)
        n_way = len(maps)
        if self.config["js_pairs"] == "class-query":
            q = map_distributions(query_maps, scale, temperature)
            same = torch.arange(n_way, device=p.device).unsqueeze(1) == query_labels.unsqueeze(0)
            return js_distance_loss(p, q, same)
        return js_distance_loss(p, p, torch.eye(n_way, dtype=torch.bool, device=p.device))

    def loss_features(self, task: Task, support_features: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        scores, classes, grouped, query_maps = self.scores_and_classes(support_features, task.support_labels,
                                                                       query_features, task.n_way)
        if self.config["raw_scores"]:
            raw = self.raw_support_scores(grouped, query_maps)
            targets = F.one_hot(task.query_labels, task.n_way).to(raw.dtype).unsqueeze(-1).expand_as(raw)
            loss = F.mse_loss(raw, targets) + self.config["dap_weight"] * one_hot_mse(scores, task.query_labels)
        else:
            loss = one_hot_mse(scores, task.query_labels)
        if self.config["js_weight"] > 0:
            loss = loss + self.config["js_weight"] * self.js_term(classes, grouped, query_maps, task.query_labels)
        return loss

"""An external fewshot-bench method: class prototypes compared by scaled cosine similarity.

In the spirit of Chen et al.'s Baseline++ / Gidaris & Komodakis' cosine classifiers: each class is the
mean of its support embeddings and a query is scored by temperature × cosine similarity to each class.

@inproceedings{chen2019closer,
  title     = {A Closer Look at Few-shot Classification},
  author    = {Chen, Wei-Yu and Liu, Yen-Cheng and Kira, Zsolt and Wang, Yu-Chiang Frank and Huang, Jia-Bin},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2019}
}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_bench.method import FewShotMethod
from fewshot_bench.options import Option


class CosineClassifier(FewShotMethod):
    """Cosine prototype classifier (example external plugin, registered by entry point)."""

    paper = "Chen et al. A Closer Look at Few-shot Classification. ICLR 2019 (cosine classifier)."
    default_backbone = "conv4"
    options = (Option("temperature", float, 10.0, "multiplier of the cosine similarities"),)

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                n_way: int) -> torch.Tensor:
        features = self.backbone(torch.cat([support, query])).flatten(1)
        support_features, query_features = features[: len(support)], features[len(support):]
        prototypes = torch.stack([support_features[support_labels == c].mean(0) for c in range(n_way)])
        return self.config["temperature"] * F.normalize(query_features, dim=1) @ F.normalize(prototypes, dim=1).t()

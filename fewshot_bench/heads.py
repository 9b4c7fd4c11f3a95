"""Classifier heads on embeddings: the linear softmax classifier and Baseline++'s cosine classifier.

Both the supervised pre-training stage (a head over the training classes) and Baseline/Baseline++'s test-time
fine-tuning (a new head over the episode's classes) use them, so the two stages score embeddings the same way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

HEADS = ("linear", "cosine")


def cosine_scale(n_classes: int) -> float:
    """Baseline++'s temperature: 2 for at most 200 classes, 10 above (Chen et al.'s code, ``distLinear``; the
    paper notes a larger scale is needed when there are many classes)."""
    return 2.0 if n_classes <= 200 else 10.0


class CosineClassifier(nn.Module):
    """Baseline++'s classifier: scaled cosine similarity between the L2-normalised embedding and each class's
    weight vector, the weights split by weight normalisation into a direction and a learnable norm per class."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.linear = weight_norm(nn.Linear(dim, n_classes, bias=False), dim=0)
        self.scale = cosine_scale(n_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        # The 1e-5 keeps an all-zero embedding (a dead ReLU map) finite, as in Chen et al.'s code.
        normalised = embeddings / (embeddings.norm(dim=1, keepdim=True) + 1e-5)
        return self.scale * self.linear(normalised)


def make_head(kind: str, dim: int, n_classes: int) -> nn.Module:
    """A freshly initialised ``linear`` (softmax classifier with bias) or ``cosine`` (Baseline++) head."""
    if kind == "linear":
        return nn.Linear(dim, n_classes)
    if kind == "cosine":
        return CosineClassifier(dim, n_classes)
    raise ValueError(f"unknown head '{kind}'; heads: {', '.join(HEADS)}")

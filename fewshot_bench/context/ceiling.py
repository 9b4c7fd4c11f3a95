"""The ceiling: what the test classes' images allow when their labels are used.

The test classes' images are split once, per class and seeded (``CEILING_HOLDOUT`` of each class held out, by the
data's and split's fingerprints alone, like the seen-class hold-out). A backbone (the run's, freshly initialised
from the cell seed) is trained as an ordinary classifier over the test classes on the rest, by the pre-training
stage's loop (``engine.pretraining.train_classifier``). It is then measured on the held-out images it never saw: as
balanced accuracy of its classifier (the mean of the per-class recalls, so a rare class such as FER2013's disgust
counts as much as a common one), and as few-shot accuracy of the nearest class mean in its features on episodes of
the setting's shape drawn from those images only. The run's own test episodes cannot serve: a few hundred of them
use nearly every test-class image. Both numbers use test-class labels: a reference, never a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fewshot_bench.context.floor import NearestCentroid, floor_embedding, nearest_centroid
from fewshot_bench.engine.pretraining import train_classifier
from fewshot_bench.episodic.episodes import EpisodeSampler, EpisodeSet, derive_seed
from fewshot_bench.episodic.holdout import holdout_sha, image_holdout, masked_labels
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.recipes import PretrainRecipe

if TYPE_CHECKING:
    from fewshot_bench.episodic.protocol import Protocol

# The share of each test class's images the ceiling evaluates on (never trains on).
CEILING_HOLDOUT = 0.25
# The classifier's recipe: the pre-training stage's defaults (Adam 1e-3, weight decay 5e-4), constant rate, batch 64
# (FER2013's test classes hold ~10,000 images: enough batches per epoch at the small budgets a CPU allows).
CEILING_RECIPE = PretrainRecipe(batch=64, milestones="", source="the ceiling reference: Adam 1e-3, weight decay "
                                "5e-4, batch 64, constant learning rate")


def ceiling_holdout(protocol: "Protocol") -> np.ndarray:
    """Sorted dataset indices of the test-class images the ceiling evaluates on."""
    return image_holdout(protocol.labels, protocol.test_ids, CEILING_HOLDOUT, "ceiling-holdout",
                         protocol.dataset.fingerprint, protocol.split.fingerprint())


def ceiling_sampler(protocol: "Protocol", held_out: np.ndarray, shot: int, seed: int) -> EpisodeSampler:
    """Episodes of the setting's shape drawn from the ceiling's held-out images only (refuses, in one line, a
    class with too few of them)."""
    return EpisodeSampler(masked_labels(protocol.labels, keep=held_out), protocol.test_ids, protocol.way, shot,
                          protocol.query, derive_seed(seed, "ceiling", protocol.dataset.fingerprint,
                                                      protocol.split.fingerprint(), protocol.way, shot, protocol.query),
                          protocol.class_names, purpose="ceiling (held-out test-class images)")


def balanced_accuracy(predictions: np.ndarray, targets: np.ndarray, n_classes: int) -> tuple[float, dict[int, float]]:
    """Mean per-class recall, and each class's recall (classes without an image are left out of both)."""
    recalls = {c: float(np.mean(predictions[targets == c] == c)) for c in range(n_classes) if np.any(targets == c)}
    return float(np.mean(list(recalls.values()))), recalls


@dataclass
class TrainedCeiling:
    """A ceiling backbone trained on the test classes, with what it scored on the held-out images (the same for
    every shot of a seed: ``compute_context`` trains it once per backbone and seed)."""

    method: NearestCentroid
    held_out: np.ndarray
    info: dict[str, Any]


def train_ceiling(backbone: str, protocol: "Protocol", builder: TaskBuilder, seed: int, epochs: int, *,
                  amp: bool) -> TrainedCeiling:
    """Train ``backbone`` (drawn from ``seed``) on the test classes' images outside the ceiling hold-out and measure
    its classifier's balanced accuracy on the hold-out (see the module's docstring)."""
    labels, image_shape = protocol.labels, protocol.dataset.image_shape
    held_out = ceiling_holdout(protocol)
    pool = np.setdiff1d(np.flatnonzero(np.isin(labels, protocol.test_ids)), held_out)
    class_ids = sorted(protocol.test_ids)
    method = NearestCentroid(floor_embedding(backbone, image_shape[0], seed), image_shape).to(builder.device)
    method = method.to(memory_format=method.memory_format)
    recipe = PretrainRecipe(**{**CEILING_RECIPE.__dict__, "epochs": epochs})
    training, head = train_classifier(method, builder, recipe, indices=pool,
                                      targets=np.searchsorted(class_ids, labels[pool]), seed=seed, amp=amp,
                                      name=f"the ceiling ({backbone} on the test classes)")
    method.eval()
    head.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(held_out), 256):
            images = builder.gather(held_out[start:start + 256], method.memory_format)
            predictions.append(head(method.embedding(method.backbone(images))).float().argmax(1).cpu().numpy())
    balanced, recalls = balanced_accuracy(np.concatenate(predictions), np.searchsorted(class_ids, labels[held_out]),
                                          len(class_ids))
    info = {"epochs": epochs, "training_images": int(len(pool)), "evaluation_images": int(len(held_out)),
            "holdout_sha": holdout_sha(held_out), "balanced_accuracy": round(100 * balanced, 4),
            "class_recall": {protocol.class_names[class_ids[c]]: round(100 * r, 4) for c, r in recalls.items()},
            "training_accuracy": training.accuracies, "training_loss": training.losses,
            "training_seconds": training.seconds}
    return TrainedCeiling(method, held_out, info)


def ceiling_row(trained: TrainedCeiling, backbone: str, protocol: "Protocol", builder: TaskBuilder, shot: int,
                seed: int, n_episodes: int, *, amp: bool, cuda_graphs: bool) -> dict[str, Any]:
    """The ceiling row of one setting: nearest class mean in ``trained``'s features on episodes of the setting's
    shape drawn from the held-out images."""
    episodes: EpisodeSet = ceiling_sampler(protocol, trained.held_out, shot, seed).sample_set(n_episodes)
    result = nearest_centroid(trained.method.backbone, protocol.dataset.image_shape, builder, episodes, amp=amp,
                              cuda_graphs=cuda_graphs, purpose="ceiling")
    info = trained.info
    return {"label": f"ceiling: {backbone} trained on the test classes", "backbone": backbone,
            "description": (f"{backbone} trained {info['epochs']} epoch(s) as a classifier of the test classes on "
                            f"{info['training_images']} of their images; nearest class mean in its features on "
                            f"episodes of the other {info['evaluation_images']} (not the run's test episodes)"),
            "result": result, "episodes": episodes,
            "params": sum(p.numel() for p in trained.method.backbone.parameters()), "ceiling": dict(info)}

"""Baseline and Baseline++ (Chen, Liu, Kira, Wang & Huang, ICLR 2019: "A Closer Look at Few-shot Classification").

Registered as ``baseline`` and ``baselinepp`` (Baseline++). Both pre-train the backbone as an ordinary classifier over the training classes and do no episodic training.
At test time the backbone is frozen and a new classifier over the episode's classes is fitted on the support
embeddings, then scores the queries. Baseline's classifier is linear (softmax); Baseline++'s is the cosine
classifier (scaled cosine similarity with weight-normalised class vectors), in pre-training and at test time.

The fitting follows Chen et al.'s code (``set_forward_adaptation``): 100 passes over the support set in
random order, mini-batches of 4, SGD with learning rate 0.01, momentum 0.9, dampening 0.9 and weight decay
0.001. The classifier's initial weights and the batch orders are drawn from generators seeded by the episode
size, so a prediction depends only on the episode (the conformance kit's determinism; an identical schedule
for every episode of a setting), never on how many episodes came before.

@inproceedings{chen2019closer,
  title     = {A Closer Look at Few-shot Classification},
  author    = {Chen, Wei-Yu and Liu, Yen-Cheng and Kira, Zsolt and Wang, Yu-Chiang Frank and Huang, Jia-Bin},
  booktitle = {International Conference on Learning Representations},
  year      = {2019}
}
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F

from fewshot_bench.heads import cosine_scale
from fewshot_bench.options import Option
from fewshot_bench.pretraining import PretrainedMethod, PretrainRecipe
from fewshot_bench.registry import register_method

_CLOSER_LOOK = ("Chen et al. 2019: Adam 1e-3, batch 16, 400 epochs (their mini-ImageNet and CUB budget), "
                "constant rate")


class FineTunedClassifier(PretrainedMethod):
    """Shared by Baseline and Baseline++: a frozen pre-trained backbone and a classifier fitted per episode."""

    meta_trained = False
    # The fitting is 100 passes of tiny SGD steps per episode: run for 100 episodes at once it costs little more
    # than one episode did (see ``_fit``), and on a CPU the episodes' distinct images are embedded once.
    episodes_per_prediction = 100
    conv4_pool = "flatten"  # Chen et al.'s Conv-4 flattens its 64×5×5 maps (1600-d)
    head = "linear"
    options = (
        Option("finetune_epochs", int, 100, "passes over the support set when fitting the episode's classifier",
               minimum=1),
        Option("finetune_batch", int, 4, "support images per fitting step", minimum=1),
        Option("finetune_lr", float, 0.01, "SGD learning rate of the fitting (momentum 0.9, dampening 0.9, "
               "weight decay 0.001)", minimum=0.0),
        PretrainedMethod.pool_option("flatten"),
    )

    def __init__(self, backbone, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        self._draws: dict[tuple, torch.Tensor] = {}

    def _draw(self, key: tuple, make) -> torch.Tensor:
        """A tensor drawn once from a generator seeded by ``key`` and kept on the device: the first (eager) call
        makes it, so a captured CUDA graph only reads it."""
        if key not in self._draws:
            seed = zlib.crc32(repr(key[:-1]).encode())  # not hash(): str hashes change from process to process
            self._draws[key] = make(torch.Generator().manual_seed(seed)).to(key[-1])
        return self._draws[key]

    def _initial(self, n_way: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # nn.Linear's default initialisation: uniform within ±1/sqrt(fan_in), for weights and bias alike.
        bound = 1.0 / math.sqrt(dim)
        both = self._draw(("init", n_way, dim, device),
                          lambda g: torch.rand(n_way, dim + 1, generator=g) * 2 * bound - bound)
        return both[:, :dim], both[:, dim]

    def _orders(self, n: int, device: torch.device) -> torch.Tensor:
        epochs = self.config["finetune_epochs"]
        return self._draw(("order", n, epochs, device),
                          lambda g: torch.stack([torch.randperm(n, generator=g) for _ in range(epochs)]))

    def _scores(self, parameters: list[torch.Tensor], embeddings: torch.Tensor, n_way: int) -> torch.Tensor:
        """(E, N, n_way) scores of each episode's classifier on its (E, N, D) embeddings."""
        if self.head == "cosine":
            direction, gain = parameters
            weight = gain.unsqueeze(-1) * direction / direction.norm(dim=-1, keepdim=True)
            normalised = embeddings / (embeddings.norm(dim=-1, keepdim=True) + 1e-5)
            return cosine_scale(n_way) * normalised @ weight.transpose(1, 2)
        weight, bias = parameters
        return torch.baddbmm(bias.unsqueeze(1), embeddings, weight.transpose(1, 2))

    def _fit(self, support: torch.Tensor, labels: torch.Tensor, n_way: int) -> list[torch.Tensor]:
        """Each episode's classifier fitted on its (detached) support embeddings with Chen et al.'s SGD, for E
        episodes at once: ``support`` (E, S, D), ``labels`` (E, S). Every episode of one size starts from the same
        weights and visits its support in the same order, so the E fits are E independent copies of one schedule;
        summing the episodes' mean losses gives each classifier exactly its own episode's gradient."""
        n_episodes = len(support)
        weight, bias = self._initial(n_way, support.shape[-1], support.device)
        if self.head == "cosine":
            # Weight normalisation starts with each class's gain at its vector's norm (torch's weight_norm).
            first = [weight, weight.norm(dim=1)]
        else:
            first = [weight, bias]
        parameters = [p.expand(n_episodes, *p.shape).clone() for p in first]
        lr, momentum, dampening, decay = self.config["finetune_lr"], 0.9, 0.9, 0.001
        buffers: list[torch.Tensor | None] = [None] * len(parameters)
        batch = self.config["finetune_batch"]
        with torch.enable_grad():
            for order in self._orders(support.shape[1], support.device):
                for start in range(0, support.shape[1], batch):
                    chosen = order[start:start + batch]
                    parameters = [p.detach().requires_grad_() for p in parameters]
                    scores = self._scores(parameters, support[:, chosen], n_way)
                    losses = F.cross_entropy(scores.flatten(0, 1), labels[:, chosen].flatten(), reduction="none")
                    grads = torch.autograd.grad(losses.view(n_episodes, -1).mean(1).sum(), parameters)
                    stepped = []
                    for i, (p, g) in enumerate(zip(parameters, grads)):
                        g = g + decay * p.detach()
                        # torch.optim.SGD's momentum: the first step takes the gradient as it is.
                        buffers[i] = g if buffers[i] is None else momentum * buffers[i] + (1 - dampening) * g
                        stepped.append(p.detach() - lr * buffers[i])
                    parameters = stepped
        return parameters

    def _predict_embedded(self, supports: list[torch.Tensor], support_labels: list[torch.Tensor],
                          queries: list[torch.Tensor], n_way: int) -> list[torch.Tensor]:
        support = torch.stack([self.embedding(features).float().detach() for features in supports])
        query = torch.stack([self.embedding(features).float() for features in queries])
        classifier = self._fit(support, torch.stack(support_labels), n_way)
        return list(self._scores(classifier, query, n_way).unbind(0))

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        return self._predict_embedded([support_features], [support_labels], [query_features], n_way)[0]

    def predict_episodes(self, supports: list[torch.Tensor], support_labels: list[torch.Tensor],
                         queries: list[torch.Tensor], n_way: int) -> list[torch.Tensor]:
        # The backbone is frozen at test time, so an image's features do not depend on its episode: on a CPU, each
        # distinct image of the chunk goes through the backbone once (test episodes of one split draw the same
        # images over and over), then one fit serves every episode. On a GPU each episode is embedded on its own
        # (as ``predict`` does): fixed shapes, which a captured CUDA graph needs, and the fit dominates there.
        features = self._embedded_once([*supports, *queries])
        if features is None:
            embedded = [self.embed(support, query) for support, query in zip(supports, queries)]
            return self._predict_embedded([s for s, _ in embedded], support_labels, [q for _, q in embedded], n_way)
        return self._predict_embedded(features[:len(supports)], support_labels, features[len(supports):], n_way)

    # Distinct images embedded per backbone call (bounds the activations' memory).
    EMBED_BATCH = 512

    def _embedded_once(self, parts: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """The backbone features of every image of ``parts``, each distinct image computed once; None where that
        does not apply (a CUDA or MPS device, or a backbone in training mode, whose batch norm would then
        depend on the batch). Images are told apart by a random projection of their pixels (float64), and the
        grouping is verified pixel for pixel: a collision falls back to embedding them all."""
        images = torch.cat(parts)
        if images.device.type != "cpu" or self.backbone.training or len(images) < 2:
            return None
        flat = images.flatten(1).double()
        probe = self._draw(("probe", flat.shape[1], images.device),
                           lambda g: torch.randn(flat.shape[1], generator=g, dtype=torch.float64))
        keys, inverse = torch.unique(flat @ probe, return_inverse=True)
        first = torch.full((len(keys),), len(flat), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(len(flat)), "amin")
        distinct = images[first]
        if not torch.equal(distinct[inverse], images):
            return None
        features = torch.cat([self.backbone(distinct[i:i + self.EMBED_BATCH])
                              for i in range(0, len(distinct), self.EMBED_BATCH)])
        return list(features[inverse].split([len(part) for part in parts]))


_CLOSER_LOOK_PAPER = "Chen, Liu, Kira, Wang & Huang. A Closer Look at Few-shot Classification. ICLR 2019."


def closer_look_recipe(head: str) -> PretrainRecipe:
    """Chen et al.'s pre-training with the ``head`` their variant uses (softmax ``linear`` or ``cosine``)."""
    classifier = "softmax classifier" if head == "linear" else "cosine classifier"
    return PretrainRecipe(epochs=400, batch=16, optimiser="adam", lr=1e-3, weight_decay=0.0, milestones="", head=head,
                          source=f"{_CLOSER_LOOK}, {classifier}")


@register_method("baseline")
class Baseline(FineTunedClassifier):
    """Baseline (Chen et al. 2019): softmax pre-training, a linear classifier fitted on each episode's support."""

    paper = _CLOSER_LOOK_PAPER
    pretraining = closer_look_recipe("linear")
    head = "linear"


@register_method("baselinepp")
class BaselinePlusPlus(FineTunedClassifier):
    """Baseline++ (Chen et al. 2019): cosine-classifier pre-training and a cosine classifier fitted per episode."""

    paper = _CLOSER_LOOK_PAPER
    pretraining = closer_look_recipe("cosine")
    head = "cosine"

"""SimpleShot (Wang, Chao, Weinberger & van der Maaten, 2019: "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning").

The backbone is pre-trained as a softmax classifier over the training classes; there is no episodic
training. A query goes to the nearest class centroid (Euclidean) of the support embeddings after a feature
transformation: ``CL2N`` (the paper's best) subtracts the mean embedding of the training classes' images and
L2-normalises; ``L2N`` only normalises; ``UN`` leaves the embeddings as they are. The mean is taken by the fit
stage after training (``fit_training_classes``), over every image of the training classes, and saved with the
weights.

@article{wang2019simpleshot,
  title   = {SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot Learning},
  author  = {Wang, Yan and Chao, Wei-Lun and Weinberger, Kilian Q. and van der Maaten, Laurens},
  journal = {arXiv preprint arXiv:1911.04623},
  year    = {2019}
}
"""

from __future__ import annotations

import torch

from fewshot_bench.method import TrainingClasses
from fewshot_bench.methods.protonet import class_means, squared_euclidean
from fewshot_bench.options import Option
from fewshot_bench.pretraining import PretrainedMethod, PretrainRecipe
from fewshot_bench.registry import register_method


@register_method("simpleshot")
class SimpleShot(PretrainedMethod):
    """SimpleShot (Wang et al. 2019): nearest centroid on centred, L2-normalised pre-trained embeddings."""

    paper = ("Wang, Chao, Weinberger & van der Maaten. SimpleShot: Revisiting Nearest-Neighbor Classification for "
             "Few-Shot Learning. arXiv:1911.04623, 2019.")
    pretraining = PretrainRecipe(epochs=90, batch=256, optimiser="sgd", lr=0.1, weight_decay=1e-4, milestones="45,66",
                                 gamma=0.1, head="linear",
                                 source="Wang et al. 2019: SGD 0.1 (momentum 0.9), weight decay 1e-4, batch 256, "
                                        "90 epochs, ×0.1 after 45 and 66 (mini-ImageNet)")
    meta_trained = False
    fits_training_classes = True
    conv4_pool = "flatten"  # the Conv-4 of ProtoNet/MatchingNet that SimpleShot reuses: flattened maps
    code_modules = ("fewshot_bench.heads", "fewshot_bench.methods.protonet")
    options = (
        Option("transform", str, "CL2N", "feature transformation: CL2N (centre on the training classes' mean, then "
               "L2-normalise; the paper's), L2N or UN (none)", ("CL2N", "L2N", "UN")),
        PretrainedMethod.pool_option("flatten"),
    )

    def __init__(self, backbone, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        self.register_buffer("base_mean", torch.zeros(self.embedding_dim()))

    def fit_training_classes(self, training: TrainingClasses) -> None:
        """Store the mean embedding of the training classes' images (CL2N's centre)."""
        self.set_base_mean(training.mean_embedding(self))

    def set_base_mean(self, mean: torch.Tensor) -> None:
        """Store ``mean`` as the centre of the CL2N transformation."""
        self.base_mean.copy_(mean)

    def transform(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The configured feature transformation of (N, D) embeddings."""
        embeddings = embeddings.float()
        if self.config["transform"] == "CL2N":
            embeddings = embeddings - self.base_mean
        if self.config["transform"] in ("CL2N", "L2N"):
            embeddings = embeddings / embeddings.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return embeddings

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        centroids = class_means(self.transform(self.embedding(support_features)), support_labels, n_way)
        return -squared_euclidean(self.transform(self.embedding(query_features)), centroids)

"""Relation Network (Sung et al., CVPR 2018).

The encoder keeps feature maps; a class is represented by the sum of its K support maps (as in the
paper), concatenated along channels with each query map, and a learned relation module (2 conv blocks +
FC 8 + FC 1 with a sigmoid) scores every (class, query) pair in [0, 1]. Training regresses the scores on
one-hot targets with mean squared error.

The relation module adapts to the size of the encoder's maps: its convolutions are unpadded when the
maps are at least 10×10 (the paper's miniImageNet module, 19×19 → 3×3) and padded otherwise (the paper's
Omniglot module, 5×5 → 1×1); a pooling step is skipped where the map is already 1×1.

@inproceedings{sung2018learning,
  title     = {Learning to Compare: Relation Network for Few-Shot Learning},
  author    = {Sung, Flood and Yang, Yongxin and Zhang, Li and Xiang, Tao and Torr, Philip H. S. and
               Hospedales, Timothy M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2018}
}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_bench.backbones import feature_shape
from fewshot_bench.method import FewShotMethod, Optimisation, Task
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


class RelationModule(nn.Module):
    """g_φ: two conv blocks on a [class map ‖ query map] pair, then FC → hidden → 1 with a sigmoid."""

    def __init__(self, in_channels: int, map_size: tuple[int, int], hidden: int = 8, width: int = 64) -> None:
        super().__init__()
        padding = 0 if min(map_size) >= 10 else 1
        layers: list[nn.Module] = []
        h, w = map_size
        channels = in_channels
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=padding), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            h, w = h + 2 * padding - 2, w + 2 * padding - 2
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            channels = width
        self.convs = nn.Sequential(*layers)
        self.fc1 = nn.Linear(width * h * w, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """(P, 2C, h, w) pairs → (P,) relation scores in [0, 1]."""
        return self.head(self.convs(pairs))

    def head(self, maps: torch.Tensor) -> torch.Tensor:
        x = maps.flatten(1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x)))).squeeze(1)

    def score_grid(self, class_maps: torch.Tensor, query_maps: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way) scores of every [class ‖ query] pair, equal to ``forward`` on the explicit pairs.

        The first convolution is linear in its input, so on a concatenated pair it is the class half of the
        kernel applied to the class map plus the query half applied to the query map. Convolving the n_way
        class maps and the n_query query maps once each and broadcasting the sum does the work of n_way ·
        n_query pair convolutions in n_way + n_query half-size ones — the module's most expensive layer
        (about 7× fewer operations for a 4-way episode with 60 queries); batch norm and everything after
        it still see every pair.
        """
        first = self.convs[0]
        channels = class_maps.shape[1]
        left = F.conv2d(class_maps, first.weight[:, :channels], first.bias, first.stride, first.padding)
        right = F.conv2d(query_maps, first.weight[:, channels:], None, first.stride, first.padding)
        n_query, n_way = right.shape[0], left.shape[0]
        pairs = (right.unsqueeze(1) + left.unsqueeze(0)).flatten(0, 1)
        out = self.convs[1:](pairs.contiguous(memory_format=torch.channels_last))
        return self.head(out).view(n_query, n_way)


def group_by_class(maps: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """(n_way, K, C, h, w) support maps grouped by label (support sets are class-balanced)."""
    order = torch.argsort(labels, stable=True)
    return maps[order].view(n_way, -1, *maps.shape[1:])


def concatenated_pairs(class_maps: torch.Tensor, query_maps: torch.Tensor) -> torch.Tensor:
    """(n_query · n_way, 2C, h, w) [class map ‖ query map] pairs, query-major — the paper's formulation,
    which ``RelationModule.score_grid`` computes without building it."""
    n_way, n_query = class_maps.shape[0], query_maps.shape[0]
    left = class_maps.unsqueeze(0).expand(n_query, -1, -1, -1, -1)
    right = query_maps.unsqueeze(1).expand(-1, n_way, -1, -1, -1)
    return torch.cat([left, right], dim=2).flatten(0, 1)


def one_hot_mse(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error between relation scores and one-hot targets (the RN/CRN relation loss)."""
    target = F.one_hot(labels, scores.shape[1]).to(scores.dtype)
    return F.mse_loss(scores, target)


# CSRN's relation module (smu-ivpl/CSRN, ``RelationNetWork``): its blocks and layers → ours (``RelationModule``).
_CSRN_RELATION = {"layer1.0": "convs.0", "layer1.1": "convs.1", "layer2.0": "convs.4", "layer2.1": "convs.5",
                  "fc1": "fc1", "fc2": "fc2"}


def from_csrn(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict of an RN/CRN from one of CSRN's released checkpoints (Zhu et al.'s code, smu-ivpl/CSRN,
    ``weights/<dataset>/*_model_best.pth``): one file holding the encoder (``feature_embed_state_dict``: blocks
    ``layer1``-``layer4``, each [conv, batch norm]) and the relation module (``Relation_score_state_dict``:
    ``layer1``-``layer2`` [conv, batch norm], ``fc1``, ``fc2``). Their FER2013 files were trained on 3×64×64
    images (14×14 encoder maps), so they fit ``--image-size 64 --channels 3``."""
    state = {}
    for key, value in checkpoint["feature_embed_state_dict"].items():
        block, rest = key.split(".", 1)
        state[f"backbone.{int(block.removeprefix('layer')) - 1}.{rest}"] = value
    for key, value in checkpoint["Relation_score_state_dict"].items():
        module, name = key.rsplit(".", 1)
        state[f"relation.{_CSRN_RELATION[module]}.{name}"] = value
    return state


class RelationStyleMethod(FewShotMethod):
    """Shared machinery of RN and CRN: encoder maps, a relation module, and MSE on relation scores."""

    default_backbone = "rn-encoder"
    class_map_figure = True
    weight_layouts = {"csrn": from_csrn}
    # Sung et al.'s code: Adam 1e-3 for encoder and relation module, each halved every 100,000 episodes, and
    # the gradient norm of each clipped at 0.5 (the runner clips the backbone and the head separately).
    optimisation = Optimisation(lr=1e-3, lr_step=100_000, lr_gamma=0.5, grad_clip=0.5,
                                source="Sung et al. 2018's code: Adam 1e-3 halved every 100,000 episodes, gradient "
                                       "norm of encoder and relation module each clipped at 0.5")

    def __init__(self, backbone: nn.Module, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        channels, h, w = feature_shape(backbone, image_shape)
        self.relation = RelationModule(2 * channels, (h, w), hidden=options.get("hidden", 8))

    def class_maps(self, grouped: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def episode_class_maps(self, task: Task) -> tuple[torch.Tensor, float]:
        """The class maps the relation module compares queries with (the feature-map figure), and their mean
        pairwise Jensen–Shannon divergence computed as CRN's distance loss does (the quantity it pushes up)."""
        from fewshot_bench.methods.crn import js_divergence, map_distributions

        with torch.no_grad():
            grouped = group_by_class(self.backbone(task.support), task.support_labels, task.n_way)
            maps = self.class_maps(grouped).float()
        p = map_distributions(maps)
        n = len(p)
        divergence = js_divergence(p.unsqueeze(1).expand(n, n, -1), p.unsqueeze(0).expand(n, n, -1))
        return maps, float(divergence.sum() / (n * (n - 1)))

    def scores_and_classes(self, support_maps, support_labels, query_maps, n_way):
        grouped = group_by_class(support_maps, support_labels, n_way)
        classes = self.class_maps(grouped)
        return self.relation.score_grid(classes, query_maps), classes, grouped, query_maps

    def predict_features(self, support_features, support_labels, query_features, n_way):
        return self.scores_and_classes(support_features, support_labels, query_features, n_way)[0]

    def loss_features(self, task: Task, support_features: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        return one_hot_mse(self.predict_features(support_features, task.support_labels, query_features, task.n_way),
                           task.query_labels)


@register_method("relationnet")
class RelationNet(RelationStyleMethod):
    """Relation Network: learned relation module on summed support maps, MSE loss (Sung et al. 2018)."""

    paper = "Sung et al. Learning to Compare: Relation Network for Few-Shot Learning. CVPR 2018."
    options = (
        Option("class_pool", str, "sum", "how K support maps form the class map (the paper sums)", ("sum", "mean")),
        Option("hidden", int, 8, "hidden units of the relation module's first FC layer", minimum=1),
    )

    def class_maps(self, grouped: torch.Tensor) -> torch.Tensor:
        return grouped.sum(1) if self.config["class_pool"] == "sum" else grouped.mean(1)

"""Built-in feature extractors. Every backbone maps (B, C, H, W) images to (B, D, h, w) feature maps.

Methods that need vectors (ProtoNet, MatchingNet, MAML) flatten the maps; relation-style methods (RN, CRN)
keep them. A backbone factory takes the number of input channels and returns an ``nn.Module``.
"""

from __future__ import annotations

import torch
from torch import nn

from fewshot_bench.registry import register_backbone


def conv_block(in_channels: int, out_channels: int, *, padding: int = 1, pool: bool = True) -> nn.Sequential:
    """3×3 conv, batch norm, ReLU, and optionally 2×2 max pooling."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        # Floor pooling, as every paper's code (and PyTorch's default): an odd side loses its last row and
        # column. This is what gives the papers' feature sizes (64-d Conv-4 features at 28 px, 1600-d at 84).
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Sequential):
    """Conv-4: 4 × [3×3 conv, BN, ReLU, 2×2 max-pool] (Vinyals 2016, Snell 2017, Finn 2017).

    Output maps: 64×1×1 at 28×28 input (Omniglot's 64-d features), 64×3×3 at 48×48, 64×5×5 at 84×84 (1600-d).
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__(
            conv_block(in_channels, width),
            conv_block(width, width),
            conv_block(width, width),
            conv_block(width, width),
        )


class RelationEncoder(nn.Sequential):
    """Relation Network encoder (Sung 2018): 4 conv blocks of 64, unpadded and pooled in the first two.

    Keeps larger feature maps than Conv-4 (5×5 at 28×28 input, 10×10 at 48×48, 14×14 at 64×64 as in the
    CRN authors' code, 19×19 at 84×84), which the relation module compares.
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__(
            conv_block(in_channels, width, padding=0),
            conv_block(width, width, padding=0),
            conv_block(width, width, pool=False),
            conv_block(width, width, pool=False),
        )


class ResidualBlock(nn.Module):
    """ResNet-12's block: 3 × [3×3 conv, BN] with leaky ReLUs (slope 0.1), a 1×1-conv shortcut, then 2×2
    max pooling (Lee et al. 2019's MetaOptNet code; Oreshkin et al. 2018's TADAM)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(x) + self.shortcut(x))


class ResNet12(nn.Sequential):
    """ResNet-12, the few-shot literature's standard deeper backbone: 4 residual blocks of 64, 160, 320 and
    640 channels (12.4 M parameters), without DropBlock. Output maps: 640×5×5 at 84×84, 640×1×1 at 28×28."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (64, 160, 320, 640)) -> None:
        blocks, channels = [], in_channels
        for width in widths:
            blocks.append(ResidualBlock(channels, width))
            channels = width
        super().__init__(*blocks)


@register_backbone("conv4", description="Conv-4 with 64 filters: 4 × [3×3 conv, BN, ReLU, 2×2 max-pool]")
def conv4(in_channels: int) -> nn.Module:
    return Conv4(in_channels, 64)


@register_backbone("conv4-32", description="Conv-4 with 32 filters (MAML's miniImageNet backbone)")
def conv4_32(in_channels: int) -> nn.Module:
    return Conv4(in_channels, 32)


@register_backbone("rn-encoder", description="Relation Network encoder: 4 conv blocks, pooling in the first two")
def rn_encoder(in_channels: int) -> nn.Module:
    return RelationEncoder(in_channels, 64)


@register_backbone("resnet12", description="ResNet-12: 4 residual blocks of 64-160-320-640 channels (MetaOptNet, "
                                           "TADAM, FEAT)")
def resnet12(in_channels: int) -> nn.Module:
    return ResNet12(in_channels)


@register_backbone("resnet18", description="ResNet-18 (torchvision's, untrained, without pooling and classifier; "
                                           "Closer Look's deeper backbone)")
def resnet18(in_channels: int) -> nn.Module:
    from torchvision.models import resnet18 as torchvision_resnet18

    net = torchvision_resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # The convolutional trunk: feature maps (512×3×3 at 84×84), like every backbone here.
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


def feature_shape(backbone: nn.Module, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(channels, height, width) of the backbone's output for one image of ``image_shape``."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, *image_shape))
    backbone.train(was_training)
    if out.dim() == 2:
        return (out.shape[1], 1, 1)
    return tuple(out.shape[1:])  # type: ignore[return-value]

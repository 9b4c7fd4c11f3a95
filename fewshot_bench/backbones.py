"""Built-in feature extractors. Every backbone maps (B, C, H, W) images to (B, D, h, w) feature maps.

Methods that need vectors (ProtoNet, MatchingNet, MAML) flatten the maps; relation-style methods (RN, CRN)
keep them. A backbone factory takes the number of input channels and returns an ``nn.Module``.

A backbone that loads a weights file (pre-trained features) declares it, so that the file's content is part
of every cell's settings hash (two runs with different weights are never pooled, nor replace each other on
the leaderboard)::

    @register_backbone("my-resnet")
    @loads_weights(Path(__file__).parent / "my_resnet.pt")   # or a callable returning the paths
    def my_resnet(in_channels): ...

``weights_files`` may also be set on the factory (or class) directly; relative paths are relative to the
file that defines the backbone.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import nn

from fewshot_bench.errors import ConfigError
from fewshot_bench.registry import BACKBONES, register_backbone

F = TypeVar("F")


def loads_weights(*paths: str | os.PathLike | Callable[[], Any]) -> Callable[[F], F]:
    """Declare the weights files a backbone factory (or class) loads: paths, or one callable returning them
    (for a path known only at run time, e.g. from an environment variable). Their content enters the
    settings hash (``backbone_weights_digest``)."""

    def decorator(factory: F) -> F:
        declared = paths[0] if len(paths) == 1 and callable(paths[0]) else tuple(paths)
        factory.weights_files = declared  # type: ignore[attr-defined]
        return factory

    return decorator


def declared_weights_files(name: str) -> list[Path]:
    """The weights files backbone ``name`` declares (``weights_files``), resolved: relative paths against
    the folder of the file that defines it. Empty for backbones that load none."""
    factory = BACKBONES.get(name)
    declared = getattr(factory, "weights_files", None)
    if declared is None:
        return []
    if callable(declared):
        declared = declared()
    if declared is None:
        return []
    if isinstance(declared, (str, os.PathLike)):
        declared = [declared]
    try:
        base = Path(inspect.getfile(factory)).resolve().parent
    except (TypeError, OSError):
        base = Path.cwd()
    files = []
    for item in declared:
        if not isinstance(item, (str, os.PathLike)):
            raise ConfigError(f"backbone '{name}' declares weights file {item!r}, which is not a path; set "
                              "weights_files to paths (or a callable returning them)")
        path = Path(item).expanduser()
        files.append(path if path.is_absolute() else base / path)
    return files


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def backbone_weights_digest(name: str) -> str | None:
    """A hash of the content of the weights files backbone ``name`` declares (in declared order; where they
    lie does not count), or None when it declares none. A declared file that is missing or unreadable is a
    one-line ConfigError, raised before any training."""
    files = declared_weights_files(name)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            raise ConfigError(f"backbone '{name}' loads weights file '{path}', which does not exist; put the file "
                              "there or correct the backbone's weights_files")
        try:
            digest.update(_file_digest(path).encode() + b"\n")
        except OSError as exc:
            raise ConfigError(f"backbone '{name}' cannot read its weights file '{path}' ({exc.strerror})") from None
    return "sha256:" + digest.hexdigest()[:16]


def backbone_weights_settings(names: Iterable[str]) -> dict[str, Any]:
    """``{"backbone_weights": {backbone: digest}}`` for the backbones among ``names`` that declare weights
    files, or ``{}`` when none does (so the settings hash of runs without weights files is unchanged)."""
    digests = {name: backbone_weights_digest(name) for name in sorted(set(names))}
    digests = {name: digest for name, digest in digests.items() if digest is not None}
    return {"backbone_weights": digests} if digests else {}


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

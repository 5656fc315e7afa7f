"""Backbones that expose the outputs of their four residual stages.

The intermediate-layer loss of Kaku et al. (NeurIPS 2021) compares the outputs of the four ResNet
stages (``layer1`` ... ``layer4``, post-ReLU outputs of the last block of each stage) between the
query and the key encoder. The encoders here reuse the torchvision and MONAI ResNets unchanged and
only run their modules stage by stage, so every weight name stays that of the library network.
"""

from __future__ import annotations

import torch
from monai.networks.nets import ResNetFeatures
from torch import nn
from torchvision import models

from monai_ilm.checks import check_bool, checks_arguments

__all__ = [
    "BACKBONES",
    "MONAI_BACKBONES",
    "STAGE_NAMES",
    "StageEncoder",
    "TorchvisionResNetEncoder",
    "MonaiResNetEncoder",
    "resnet_encoder",
]

STAGE_NAMES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
BACKBONES: tuple[str, ...] = _TORCHVISION_RESNETS
"""The 2D backbones of the bundles (``backbone`` setting): torchvision ResNets."""
MONAI_BACKBONES: tuple[str, ...] = (
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet200",
)
"""MONAI ``ResNetFeatures`` depths: the ``backbone`` setting of a volume data set."""


def global_pool(feature: torch.Tensor) -> torch.Tensor:
    """Average over every spatial axis: (N, C, *spatial) -> (N, C)."""
    return feature.flatten(2).mean(dim=2)


class StageEncoder(nn.Module):
    """Base class of encoders that return the outputs of their stages.

    Subclasses implement :meth:`forward_stages`. ``forward(x)`` returns the globally pooled output of
    the last stage, the representation used by linear probes and fine-tuning (2048-d for ResNet-50).

    Attributes:
        stage_names: names of the stages, in order (``layer1`` ... ``layer4``).
        stage_channels: number of channels of each stage output.
    """

    # no class annotations: TorchScript reads them and cannot parse ``tuple[int, ...]``; it infers the types
    # from the values of the instance instead
    stage_names = STAGE_NAMES
    stage_channels = ()

    @property
    def feature_dim(self) -> int:
        """Size of the pooled representation returned by ``forward``."""
        return self.stage_channels[-1]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.forward_stages(x)[-1])


class TorchvisionResNetEncoder(StageEncoder):
    """torchvision ResNet (v1.5), randomly initialised, returning its four stage outputs.

    The paper's encoder is a randomly initialised ResNet-50 (no ImageNet weights). The reference
    code built the MoCo+MSE and MoCo+BT encoders with ``zero_init_residual=True`` but the plain MoCo
    baseline without it (docs/method.md D4); here the flag is one argument, the same for every method.

    Args:
        name: one of ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``.
        in_channels: channels of the input image; the stem convolution is rebuilt when it is not 3.
        zero_init_residual: start each residual branch's last BatchNorm at zero (Goyal et al. 2017).

    Raises:
        ValueError: for an unknown ``name`` or a non-positive ``in_channels``.
    """

    def __init__(self, name: str = "resnet50", in_channels: int = 3, zero_init_residual: bool = False) -> None:
        super().__init__()
        if name not in _TORCHVISION_RESNETS:
            raise ValueError(f"name: expected a torchvision ResNet, one of {list(_TORCHVISION_RESNETS)}, got {name!r}.")
        if in_channels < 1:
            raise ValueError(f"in_channels: expected a positive number of channels, got {in_channels}.")
        net = getattr(models, name)(weights=None, zero_init_residual=zero_init_residual)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        # the classifier is never used; removing it keeps DDP from seeing unused parameters
        net.fc = nn.Identity()
        self.net = net
        self.stage_channels = tuple(_block_out(getattr(net, stage)) for stage in STAGE_NAMES)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        # the stages are written out, not looked up by name, so that TorchScript can compile this method
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x1 = net.layer1(x)
        x2 = net.layer2(x1)
        x3 = net.layer3(x2)
        return [x1, x2, x3, net.layer4(x3)]


def _block_out(stage: nn.Sequential) -> int:
    """Output channels of a torchvision ResNet stage (BasicBlock or Bottleneck)."""
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class MonaiResNetEncoder(StageEncoder):
    """MONAI ``ResNetFeatures`` (2D or 3D), randomly initialised, returning its four stage outputs.

    ``ResNetFeatures`` returns the stem output followed by the four stage outputs; the stem output
    is dropped. This is the backbone for 3D volumes (NIfTI) and single-channel 2D images.

    Args:
        name: one of ``resnet10`` ... ``resnet200``.
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.

    Raises:
        ValueError: for an unknown ``name`` or ``spatial_dims`` other than 2 or 3.
    """

    def __init__(self, name: str = "resnet18", spatial_dims: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        if name not in MONAI_BACKBONES:
            raise ValueError(f"name: expected a MONAI ResNet, one of {list(MONAI_BACKBONES)}, got {name!r}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}.")
        # pretrained MedicalNet weights would need a download and exist for 3D single-channel input only
        self.net = ResNetFeatures(name, pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels)
        small = name in ("resnet10", "resnet18", "resnet34")
        self.stage_channels = (64, 128, 256, 512) if small else (256, 512, 1024, 2048)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(x)[1:])


@checks_arguments(zero_init_residual=check_bool)
def resnet_encoder(
    name: str = "resnet50",
    spatial_dims: int = 2,
    in_channels: int = 3,
    backend: str | None = None,
    zero_init_residual: bool = False,
) -> StageEncoder:
    """Build a stage-feature ResNet encoder.

    Args:
        name: ResNet depth, e.g. ``resnet18`` or ``resnet50``.
        spatial_dims: 2 for images, 3 for volumes (MONAI's backend only).
        in_channels: channels of the input.
        backend: ``"torchvision"`` (2D, the paper's ResNet v1.5) or ``"monai"`` (``ResNetFeatures``); None:
            torchvision for 2D, MONAI for 3D, so a recipe only names ``spatial_dims``.
        zero_init_residual: torchvision backend only, see :class:`TorchvisionResNetEncoder`.

    Raises:
        ValueError: for an unknown ``backend`` or a 3D torchvision request.
    """
    if backend is None:
        backend = "torchvision" if spatial_dims == 2 else "monai"
    if backend == "torchvision":
        if spatial_dims != 2:
            raise ValueError(
                f"spatial_dims: expected 2 with backend='torchvision' (use backend='monai' for 3D), got {spatial_dims}."
            )
        return TorchvisionResNetEncoder(name, in_channels=in_channels, zero_init_residual=zero_init_residual)
    if backend == "monai":
        return MonaiResNetEncoder(name, spatial_dims=spatial_dims, in_channels=in_channels)
    raise ValueError(f"backend: expected 'torchvision' or 'monai', got {backend!r}.")

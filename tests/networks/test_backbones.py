from __future__ import annotations

import pytest
import torch

from monai_ilm.networks import MonaiResNetEncoder, TorchvisionResNetEncoder, resnet_encoder


@pytest.mark.parametrize(
    "kwargs, channels, spatial",
    [
        ({"name": "resnet18"}, (64, 128, 256, 512), 2),
        ({"name": "resnet50"}, (256, 512, 1024, 2048), 2),
        ({"name": "resnet18", "in_channels": 1}, (64, 128, 256, 512), 2),
        ({"name": "resnet18", "backend": "monai", "spatial_dims": 2, "in_channels": 1}, (64, 128, 256, 512), 2),
        ({"name": "resnet10", "backend": "monai", "spatial_dims": 3, "in_channels": 1}, (64, 128, 256, 512), 3),
    ],
)
def test_stage_shapes(kwargs, channels, spatial):
    encoder = resnet_encoder(**kwargs).eval()
    x = torch.rand(2, kwargs.get("in_channels", 3), *([64] * spatial))
    stages = encoder.forward_stages(x)
    assert encoder.stage_channels == channels
    assert [s.shape[1] for s in stages] == list(channels)
    # strides 4, 8, 16, 32 from the input
    assert [s.shape[2] for s in stages] == [16, 8, 4, 2]
    assert encoder(x).shape == (2, channels[-1])


def test_stages_are_torchvision_outputs_post_relu():
    encoder = TorchvisionResNetEncoder("resnet18").eval()
    net = encoder.net
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        stages = encoder.forward_stages(x)
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        expected = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            h = layer(h)
            expected.append(h)
        full = torch.flatten(net.avgpool(h), 1)
    for got, want in zip(stages, expected):
        torch.testing.assert_close(got, want)
        assert got.min() >= 0  # post-ReLU
    torch.testing.assert_close(encoder(x), full)


def test_state_dict_names_are_torchvision_names():
    import torchvision

    keys = {k.removeprefix("net.") for k in TorchvisionResNetEncoder("resnet50").state_dict()}
    reference = {k for k in torchvision.models.resnet50().state_dict() if not k.startswith("fc.")}
    assert keys == reference


def test_zero_init_residual():
    encoder = TorchvisionResNetEncoder("resnet50", zero_init_residual=True)
    assert torch.count_nonzero(encoder.net.layer1[0].bn3.weight) == 0
    assert torch.count_nonzero(TorchvisionResNetEncoder("resnet50").net.layer1[0].bn3.weight) > 0


def test_errors():
    with pytest.raises(ValueError, match="name"):
        TorchvisionResNetEncoder("resnet99")
    with pytest.raises(ValueError, match="spatial_dims"):
        resnet_encoder("resnet18", spatial_dims=3, backend="torchvision")
    with pytest.raises(ValueError, match="backend"):
        resnet_encoder("resnet18", backend="timm")
    with pytest.raises(ValueError, match="spatial_dims"):
        MonaiResNetEncoder("resnet18", spatial_dims=4)


def test_the_backend_follows_the_spatial_dims_unless_named():
    """No backend named: torchvision's ResNet in 2D (the paper's), MONAI's ``ResNetFeatures`` in 3D."""
    assert isinstance(resnet_encoder("resnet18", spatial_dims=2), TorchvisionResNetEncoder)
    assert isinstance(resnet_encoder("resnet10", spatial_dims=3, in_channels=1), MonaiResNetEncoder)

from __future__ import annotations

import pytest

from monai_ilm.losses import IntermediateBarlowTwinsLoss, IntermediateMSELoss
from monai_ilm.methods import intermediate_loss, trainable_parameters
from tests.helpers import tiny_moco


def test_paper_defaults():
    mse = intermediate_loss("mse")
    assert isinstance(mse, IntermediateMSELoss)
    assert mse.weights == (0.25,) * 4 and mse.pool_sizes == (16, 16, 4, 4)
    barlow = intermediate_loss("barlow", stage_channels=(64, 128, 256, 512), barlow_projector_dims=(32,))
    assert isinstance(barlow, IntermediateBarlowTwinsLoss)
    assert barlow.in_channels == (64, 128, 256, 512) and barlow.weights == (5e-5,) * 4 and barlow.scale == 1 / 32
    assert intermediate_loss("moco") is None


def test_layer_subset_selects_channels_and_pool_sizes():
    mse = intermediate_loss("mse", layers=["layer2", "layer4"])
    assert mse.pool_sizes == (16, 4)
    barlow = intermediate_loss("barlow", layers=["layer3"], barlow_projector_dims=(8,))
    assert barlow.in_channels == (1024,)


def test_trainable_parameters_exclude_key_encoder():
    net = tiny_moco()
    loss = intermediate_loss("barlow", stage_channels=net.stage_channels, barlow_projector_dims=(8,))
    params = trainable_parameters(net, loss)
    ids = {id(p) for p in params}
    assert not ids & {id(p) for p in net.key_parameters()}
    assert ids >= {id(p) for p in net.query_parameters()} | {id(p) for p in loss.parameters()}


@pytest.mark.parametrize(
    "kwargs, match", [({"method": "mse2"}, "method"), ({"method": "mse", "layers": ["layer9"]}, "layers")]
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        intermediate_loss(**kwargs)

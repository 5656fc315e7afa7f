"""The downstream classifier: frozen encoder and BatchNorm, fine-tuning, intermediate blocks."""

from __future__ import annotations

import copy

import pytest
import torch

from monai_ilm.evaluation import (
    DownstreamClassifier,
    fit_downstream,
)
from tests.evaluation._downstream import brightness_items, loader, states_equal, tiny_encoder


def test_linear_probe_leaves_encoder_and_batchnorm_statistics_unchanged():
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=True)
    encoder_before = copy.deepcopy(net.encoder.state_dict())
    head_before = copy.deepcopy(net.head.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items, shuffle=True), loader(items), "binary_auc", max_epochs=2, device="cpu", seed=0)
    assert states_equal(net.encoder.state_dict(), encoder_before)  # weights, running mean/var, batch counters
    assert not states_equal(net.head.state_dict(), head_before)
    assert all(not p.requires_grad for p in net.encoder.parameters())
    net.train()
    assert net.training and net.head.training and not net.encoder.training
    assert not any(m.training for m in net.encoder.modules())


def test_finetuning_changes_encoder_weights_and_batchnorm_statistics():
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=False)
    before = copy.deepcopy(net.encoder.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items, shuffle=True), loader(items), "binary_auc", max_epochs=1, device="cpu")
    after = net.encoder.state_dict()
    assert not torch.equal(after["net.conv1.weight"], before["net.conv1.weight"])
    assert not torch.equal(after["net.bn1.running_mean"], before["net.bn1.running_mean"])
    assert not torch.equal(after["net.layer4.1.bn2.running_var"], before["net.layer4.1.bn2.running_var"])


def test_paper_mode_frozen_encoder_updates_only_batchnorm_statistics():
    """freeze_bn=False reproduces docs/method.md D11: weights frozen, BN running statistics drift."""
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=True, freeze_bn=False)
    before = copy.deepcopy(net.encoder.state_dict())
    items = brightness_items(16, seed=1)
    fit_downstream(net, loader(items), loader(items), "binary_auc", max_epochs=1, device="cpu")
    after = net.encoder.state_dict()
    assert torch.equal(after["net.conv1.weight"], before["net.conv1.weight"])
    assert not torch.equal(after["net.bn1.running_mean"], before["net.bn1.running_mean"])


def test_classifier_on_an_intermediate_block():
    net = DownstreamClassifier(tiny_encoder(), num_classes=3, freeze_encoder=True, block=2)
    assert net.head.in_features == 128
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="block"):
        DownstreamClassifier(tiny_encoder(), num_classes=2, block=5)

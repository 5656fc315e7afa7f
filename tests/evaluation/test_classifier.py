"""The downstream classifier: frozen encoder and BatchNorm, fine-tuning, intermediate blocks, the linear head."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from monai_ilm.evaluation import (
    DownstreamClassifier,
    fit_downstream,
)
from monai_ilm.evaluation.classifier import LinearHead
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


def test_linear_head_standardises_with_frozen_training_statistics_and_starts_at_the_prevalence(tmp_path):
    x = np.array([[0.0, 2.0, 7.0], [1.0, 4.0, 7.0], [2.0, 6.0, 7.0], [3.0, 8.0, 7.0], [4.0, 10.0, 7.0]])
    y = np.array([[1, 0], [0, 1], [0, 1], [0, 1], [0, 0]], dtype=float)  # prevalence 1/5 and 3/5
    head = LinearHead(3, 2).fit_data(x, y, multilabel=True)
    # population mean and std by hand; the constant third feature is centred, not scaled
    np.testing.assert_allclose(head.mean.numpy(), [2.0, 6.0, 7.0], rtol=1e-7)
    np.testing.assert_allclose(head.std.numpy(), [np.sqrt(2.0), 2 * np.sqrt(2.0), 1.0], rtol=1e-7)
    # zero weights, bias = log-odds of (positives + 1/2) / (n + 1): (1.5 / 6) -> log(1/3), (3.5 / 6) -> log(7/5)
    out = head(torch.rand(4, 3)).detach().numpy()
    np.testing.assert_allclose(out, np.tile([np.log(1 / 3), np.log(7 / 5)], (4, 1)), rtol=1e-6)
    # a saved head reproduces its outputs, statistics included
    with torch.no_grad():
        head.linear.weight.normal_()
    torch.save(head.state_dict(), tmp_path / "head.pt")
    again = LinearHead(3, 2)
    again.load_state_dict(torch.load(tmp_path / "head.pt", weights_only=True))
    probe = torch.rand(6, 3) * 10
    torch.testing.assert_close(again(probe), head(probe), rtol=0, atol=0)
    assert not again.needs_data
    # single-label: log class frequencies (count + 1/2) / (n + 1): 3.5 / 5 and 1.5 / 5
    softmax_head = LinearHead(3, 2).fit_data(x[:4], np.array([0, 0, 1, 0]), multilabel=False)
    np.testing.assert_allclose(softmax_head.linear.bias.detach().numpy(), np.log([0.7, 0.3]), rtol=1e-6)
    with pytest.raises(ValueError, match="head_init"):
        LinearHead(3, 2, init="xavier")
    with pytest.raises(ValueError, match=r"features: expected shape \(n > 0, 3\)"):
        LinearHead(3, 2).fit_data(x[:, :2], y, multilabel=True)


def test_reference_head_is_a_raw_linear_layer():
    torch.manual_seed(0)
    head = LinearHead(4, 2, standardize=False, init="default")
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 2)
    assert not head.needs_data
    x = torch.rand(3, 4) * 30
    torch.testing.assert_close(head(x), reference(x), rtol=0, atol=0)


def test_fit_downstream_prepares_the_head_once_from_the_frozen_training_features():
    net = DownstreamClassifier(tiny_encoder(), num_classes=2, freeze_encoder=True)
    items = brightness_items(16, seed=1)
    with torch.no_grad():
        features = net.encoder.eval()(torch.stack([it["image"] for it in items])).double().numpy()
    fit_downstream(net, loader(items, shuffle=True), loader(items), "binary_auc", max_epochs=1, device="cpu")
    # float32 features summed in another order: agreement to float32 precision
    np.testing.assert_allclose(net.head.mean.numpy(), features.mean(axis=0), rtol=1e-4, atol=1e-6)
    std = features.std(axis=0)
    live = std > 0  # a channel that is zero on every image (a dead ReLU) is centred, not scaled
    np.testing.assert_allclose(net.head.std.numpy()[live], std[live], rtol=1e-4, atol=1e-6)
    assert 0 < live.sum() < live.size and np.all(net.head.std.numpy()[~live] == 1.0)
    assert int(net.head.n_fitted) == 16
    mean = net.head.mean.clone()
    fit_downstream(net, loader(brightness_items(8, seed=5)), loader(items), "binary_auc", max_epochs=1, device="cpu")
    assert torch.equal(net.head.mean, mean)  # continued training keeps the statistics the head was trained with

"""Pretrained encoder weights: loading MoCo checkpoints and classifiers, errors that name the file."""

from __future__ import annotations

import copy

import pytest
import torch

from monai_ilm.evaluation import (
    load_pretrained_encoder,
)
from monai_ilm.networks import MoCo, resnet_encoder
from tests.evaluation._downstream import states_equal, tiny_encoder
from tests.helpers import tiny_moco


@pytest.mark.parametrize("form", ["model", "network", "resumable"])
def test_load_pretrained_encoder_round_trip(tmp_path, form):
    moco = tiny_moco(seed=5)
    state = moco.state_dict()
    obj = {
        "model": state,
        "network": {"network": state},
        "resumable": {"network": state, "optimizer": torch.optim.SGD(moco.parameters(), lr=0.1).state_dict()},
    }[form]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    encoder = load_pretrained_encoder(path, tiny_encoder(seed=9))
    assert states_equal(encoder.state_dict(), moco.encoder_q.state_dict())


def test_load_pretrained_encoder_none_keeps_random_init():
    encoder = tiny_encoder(seed=9)
    before = copy.deepcopy(encoder.state_dict())
    assert states_equal(load_pretrained_encoder(None, encoder).state_dict(), before)


def test_load_pretrained_encoder_errors_name_the_file(tmp_path):
    torch.manual_seed(0)
    grey = MoCo(resnet_encoder("resnet18", in_channels=1), embedding_dim=16, queue_size=32)
    path = tmp_path / "grey_moco.pt"
    torch.save(grey.state_dict(), path)
    with pytest.raises(ValueError, match=r"grey_moco\.pt.*conv1\.weight"):
        load_pretrained_encoder(path, tiny_encoder())
    deeper = MoCo(resnet_encoder("resnet34"), embedding_dim=16, queue_size=32)
    torch.save(deeper.state_dict(), path)
    with pytest.raises(ValueError, match=r"unexpected keys: net\.layer1\.2"):
        load_pretrained_encoder(path, tiny_encoder())
    other = tmp_path / "not_moco.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"not_moco\.pt.*encoder_q"):
        load_pretrained_encoder(other, tiny_encoder())
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained_encoder(tmp_path / "missing.pt", tiny_encoder())

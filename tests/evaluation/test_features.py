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


def test_ids_digest_needs_ids_from_the_data():
    import hashlib

    from monai_ilm.evaluation.features import batch_ids, ids_digest

    # two different test sets of one size without ids: the loader positions prove nothing, so no digest
    no_ids = [{"image": torch.zeros(2, 1, 4, 4)}, {"image": torch.ones(2, 1, 4, 4)}]
    positions = [i for k, b in enumerate(no_ids) for i in batch_ids(b, 2, 2 * k)]
    assert ids_digest(positions) is None and ids_digest([]) is None
    # ids from the data: the SHA-256 of the ordered ids, one per line
    named = [{"image": torch.zeros(2, 1, 4, 4), "image_id": ["p1_a.png", "p1_b.png"]}]
    ids = batch_ids(named[0], 2, 0)
    assert ids_digest(ids) == hashlib.sha256(b"p1_a.png\np1_b.png").hexdigest()

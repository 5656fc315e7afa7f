"""The inference side of MoCo and TorchScript export of the encoders (the MONAI model zoo's script-mode check)."""

from __future__ import annotations

import pytest
import torch

from monai_ilm.networks import MoCo, MoCoQueryNetwork, query_state_dict, resnet_encoder


@pytest.fixture(scope="module")
def moco() -> MoCo:
    torch.manual_seed(0)
    return MoCo(resnet_encoder("resnet18"), queue_size=16).eval()


def test_encoder_scripts_and_traces_equal_to_eager():
    # failed before issue 15: "Unknown type annotation: 'tuple[int, ...]'" from StageEncoder's class annotations
    encoder = resnet_encoder("resnet18").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for exported in (torch.jit.script(encoder), torch.jit.trace(encoder, x)):
            torch.testing.assert_close(exported(x), encoder(x), rtol=0, atol=0)
        stages = torch.jit.script(encoder).forward_stages(x)
    assert [s.shape[1] for s in stages] == [64, 128, 256, 512]


def test_query_network_loads_the_query_side_of_moco_and_scripts(moco):
    network = MoCoQueryNetwork(resnet_encoder("resnet18")).eval()
    state = query_state_dict(moco.state_dict())
    assert not any(key.startswith(("encoder_k.", "projector_k.", "queue")) for key in state)
    network.load_state_dict(state)  # strict: exactly the query encoder and its head
    scripted = torch.jit.script(network)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), moco(x), rtol=0, atol=0)
        torch.testing.assert_close(scripted.embed(x), moco.projector_q(moco(x)), rtol=0, atol=0)
    assert scripted(x).shape == (2, 512)


def test_query_state_dict_rejects_other_weights():
    with pytest.raises(ValueError, match="encoder_q"):
        query_state_dict({"conv.weight": torch.zeros(1)})

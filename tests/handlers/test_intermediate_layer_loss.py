from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import IntermediateLayerLossHandler
from monai_ilm.losses import IntermediateMSELoss
from tests.helpers import pattern_batches, tiny_moco


def test_adds_selected_layers_to_the_loss():
    net = tiny_moco()
    loss = IntermediateMSELoss(weights=(0.5, 2.0), pool_sizes=(2, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the network stays as built
    trainer = MoCoTrainer(
        "cpu",
        1,
        pattern_batches(1, 4),
        net,
        optimizer,
        train_handlers=[IntermediateLayerLossHandler(loss, layers=("layer3", "layer4"))],
    )
    captured = {}
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda e: captured.update(e.state.output))
    trainer.run()
    out = captured["pred"]
    q3, k3 = out["query_stages"][2], out["key_stages"][2]
    q4, k4 = out["query_stages"][3], out["key_stages"][3]
    expected3 = (
        0.5
        * (
            (torch.nn.functional.adaptive_avg_pool2d(q3, 2) - torch.nn.functional.adaptive_avg_pool2d(k3, 2)) ** 2
        ).mean()
    )
    expected4 = 2.0 * ((q4.mean((2, 3)) - k4.mean((2, 3))) ** 2).mean()
    assert captured["loss_layer3"].item() == pytest.approx(expected3.item(), rel=1e-5)
    assert captured["loss_layer4"].item() == pytest.approx(expected4.item(), rel=1e-5)
    assert "loss_layer1" not in captured
    total = captured["loss_infonce"] + expected3 + expected4
    assert captured["loss"].item() == pytest.approx(total.item(), rel=1e-5)


@pytest.mark.parametrize(
    "layers, match",
    [
        (("layer5",), "layers"),
        (("layer1", "layer1"), "layers"),
        ((), "layers"),
        (("layer1", "layer2"), "layers: expected 4 names .*, got 2"),
    ],
)
def test_errors(layers, match):
    with pytest.raises(ValueError, match=match):
        IntermediateLayerLossHandler(IntermediateMSELoss(), layers=layers)


def test_output_transform_finds_the_stages_anywhere():
    """A plain engine whose output keeps the stages under its own keys; the term is the closed-form pooled MSE."""
    g = torch.Generator().manual_seed(0)
    q4, k4 = torch.randn(3, 8, 2, 2, generator=g), torch.randn(3, 8, 2, 2, generator=g)

    def step(engine: Engine, batch) -> dict:
        engine.state.output = {"loss": torch.tensor(1.0), "q": [None, None, None, q4], "k": [None, None, None, k4]}
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        return engine.state.output

    engine = Engine(step)
    engine.register_events(*IterationEvents)
    engine.network, engine.state.device = torch.nn.Identity(), "cpu"
    handler = IntermediateLayerLossHandler(
        IntermediateMSELoss(weights=(2.0,), pool_sizes=(1,)),
        layers=("layer4",),
        output_transform=lambda o: (o["q"], o["k"]),
    )
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    expected = 2.0 * ((q4.double().mean((2, 3)) - k4.double().mean((2, 3))) ** 2).mean().item()  # global pool, MSE
    assert engine.state.output["loss_layer4"].item() == pytest.approx(expected, rel=1e-6)
    assert engine.state.output["loss"].item() == pytest.approx(1.0 + expected, rel=1e-6)

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_ilm.handlers import LossPartsHandler


def test_epoch_means_of_loss_parts():
    outputs = [
        {"loss": torch.tensor(1.0), "loss_layer1": torch.tensor(0.5), "pred": torch.ones(3)},
        {"loss": torch.tensor(3.0), "loss_layer1": torch.tensor(1.5), "pred": torch.ones(3)},
    ]
    engine = Engine(lambda e, batch: outputs[batch])
    LossPartsHandler(prefix="val_").attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.metrics == pytest.approx({"val_loss": 2.0, "val_loss_layer1": 1.0})


def test_output_transform_selects_the_parts_of_any_output():
    outputs = [(torch.tensor(1.0), torch.tensor(0.25)), (torch.tensor(2.0), torch.tensor(0.75))]  # no dict, no "loss*"
    engine = Engine(lambda e, batch: outputs[batch])
    LossPartsHandler(output_transform=lambda output: {"total": output[0], "aux": output[1]}).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.metrics == pytest.approx({"total": 1.5, "aux": 0.5})

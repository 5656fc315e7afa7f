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

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from monai_ilm.handlers import AtomicCheckpointSaver


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_interval=1, n_saved=5).attach(engine)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")  # some bytes reach the disk, then the write fails
        raise OSError(28, "No space left on device")

    @engine.on(Events.EPOCH_STARTED(once=2))
    def fill_the_disk(_):
        monkeypatch.setattr(torch, "save", disk_full)

    with pytest.raises(OSError, match="No space left"):
        engine.run([0], max_epochs=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=1.pt"]  # no partial or temporary file
    torch.testing.assert_close(
        torch.load(tmp_path / "model_epoch=1.pt", weights_only=True)["weight"], model.weight.detach()
    )


def test_fixed_final_filename(tmp_path):
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(
        str(tmp_path), {"model": torch.nn.Linear(2, 2)}, save_final=True, final_filename="final.pt"
    ).attach(engine)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "final.pt").exists()

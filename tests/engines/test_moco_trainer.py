from __future__ import annotations

import copy
import logging

import pytest
import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointLoader, CheckpointSaver, StatsHandler

from monai_ilm.engines import MoCoEvaluator, MoCoTrainer
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler
from monai_ilm.losses import IntermediateBarlowTwinsLoss, IntermediateMSELoss
from tests.helpers import CollectLogs, pattern_batches, tiny_moco


def intermediate_loss(method: str, net):
    if method == "mse":
        return IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))
    if method == "barlow":
        return IntermediateBarlowTwinsLoss(in_channels=net.stage_channels, projector_dims=(64, 64), weights=5e-3)
    return None


def build(method: str = "mse", max_epochs: int = 1, data=None, momentum: float = 0.99, queue_size: int = 16, **kwargs):
    net = tiny_moco(queue_size=queue_size)
    loss = intermediate_loss(method, net)
    handlers = [MomentumUpdateHandler(momentum), LossPartsHandler()]
    params = list(net.parameters())
    if loss is not None:
        handlers.insert(0, IntermediateLayerLossHandler(loss))
        params += list(loss.parameters())
    optimizer = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4)
    trainer = MoCoTrainer(
        "cpu", max_epochs, data or pattern_batches(2, 8), net, optimizer, train_handlers=handlers, **kwargs
    )
    return trainer, net, loss, optimizer


@pytest.mark.parametrize("method", ["moco", "mse", "barlow"])
def test_loss_decreases(method):
    trainer, _, _, _ = build(method, max_epochs=12)
    history = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: history.append(dict(e.state.metrics)))
    trainer.run()
    # the queue holds only real keys from epoch 2 on (16 keys per epoch, K = 16)
    assert history[-1]["loss"] < history[1]["loss"]
    if method != "moco":
        for layer in ("layer1", "layer2", "layer3", "layer4"):
            assert history[-1][f"loss_{layer}"] < history[1][f"loss_{layer}"]


@pytest.mark.parametrize("method", ["mse", "barlow"])
def test_gradient_reaches_only_query_encoder_and_projectors(method):
    trainer, net, loss, _ = build(method)
    seen = {}

    def inspect(engine):
        seen["key"] = [p.grad for p in net.key_parameters()]
        seen["query"] = [p.grad for p in net.encoder_q.parameters()]
        seen["projectors"] = [p.grad for p in loss.parameters()]

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, inspect)
    trainer.run()
    assert all(g is None for g in seen["key"])
    assert all(g is not None and torch.isfinite(g).all() for g in seen["query"])
    if method == "barlow":
        assert seen["projectors"] and all(g is not None and g.abs().sum() > 0 for g in seen["projectors"])


def test_intermediate_gradient_flows_through_query_stages_only():
    # with the InfoNCE weight removed, only the intermediate term drives the query encoder
    net = tiny_moco()
    batch = pattern_batches(1, 4)[0]
    out = net(batch["view1"], batch["view2"])
    IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))(out["query_stages"], out["key_stages"]).backward()
    assert all(p.grad is None for p in net.key_parameters())
    assert net.encoder_q.net.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.projector_q.parameters())  # layer stages do not use the head


def test_key_encoder_is_exact_ema_after_a_step():
    trainer, net, _, _ = build("mse", data=pattern_batches(1, 8), momentum=0.9)
    key_before = [p.detach().clone() for p in net.key_parameters()]
    trainer.run()
    for k_old, k_new, q in zip(key_before, net.key_parameters(), net.query_parameters()):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q.detach(), rtol=1e-6, atol=1e-7)
    assert trainer.state.moco_momentum == 0.9


def test_queue_receives_the_keys_of_each_step():
    data = pattern_batches(3, 8)
    trainer, net, _, _ = build("moco", data=data, queue_size=20)
    snapshots = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: snapshots.append(copy.deepcopy(net)))
    trainer.run()
    expected_keys = []
    for snapshot, batch in zip(snapshots, data):
        snapshot.train()
        with torch.no_grad():
            expected_keys.append(torch.nn.functional.normalize(snapshot(batch["view1"], batch["view2"])["key"], dim=1))
    assert net.queue_ptr.item() == 24 % 20
    # columns 0..3 were overwritten by the third batch's wrap-around; 4..7 still hold batch 1
    torch.testing.assert_close(net.queue[:, 4:8], expected_keys[0][4:].t(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net.queue[:, 8:16], expected_keys[1].t(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net.queue[:, 16:20], expected_keys[2][:4].t(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net.queue[:, 0:4], expected_keys[2][4:].t(), atol=1e-5, rtol=1e-4)


def test_validation_leaves_moco_state_alone():
    import ignite.metrics

    trainer, net, loss, _ = build("mse")
    trainer.run()
    state = copy.deepcopy(net.state_dict())
    evaluator = MoCoEvaluator(
        "cpu",
        pattern_batches(2, 8, seed=1),
        net,
        val_handlers=[IntermediateLayerLossHandler(loss), LossPartsHandler(prefix="val_")],
        key_val_metric={"val_loss": ignite.metrics.Average(output_transform=lambda out: out["loss"])},
    )
    evaluator.run()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    metrics = evaluator.state.metrics
    assert metrics["val_loss"] == pytest.approx(
        metrics["val_loss_infonce"] + sum(metrics[f"val_loss_layer{i}"] for i in range(1, 5)), rel=1e-5
    )


def test_stats_handler_logs_every_loss_part():
    trainer, _, _, _ = build("barlow")
    StatsHandler(name="moco_test", output_transform=lambda out: out).attach(trainer)
    collect = CollectLogs()
    logger = logging.getLogger("moco_test")
    logger.setLevel(logging.INFO)
    logger.addHandler(collect)
    trainer.run()
    logger.removeHandler(collect)
    logged = "\n".join(collect.messages)
    for part in ("loss_infonce", "loss_layer1", "loss_layer2", "loss_layer3", "loss_layer4"):
        assert part in logged


def test_save_load_continue_equals_uninterrupted_run(tmp_path):
    data = pattern_batches(2, 8)
    reference, ref_net, _, _ = build("barlow", max_epochs=3, data=data)
    reference.run()

    first, net1, loss1, opt1 = build("barlow", max_epochs=2, data=data)
    saver = CheckpointSaver(
        str(tmp_path),
        {"network": net1, "intermediate_loss": loss1, "optimizer": opt1, "trainer": first},
        save_final=True,
    )
    saver.attach(first)
    first.run()
    checkpoint = tmp_path / "checkpoint_final_iteration=4.pt"
    assert checkpoint.exists()

    second, net2, loss2, opt2 = build("barlow", max_epochs=3, data=data)
    loader = CheckpointLoader(
        str(checkpoint), {"network": net2, "intermediate_loss": loss2, "optimizer": opt2, "trainer": second}
    )
    loader.attach(second)
    second.run()
    assert second.state.epoch == 3 and second.state.iteration == 6
    for key, value in ref_net.state_dict().items():
        torch.testing.assert_close(net2.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)


def test_bfloat16_autocast_runs_on_cpu():
    trainer, _, _, _ = build("mse", amp=True, amp_kwargs={"dtype": torch.bfloat16})
    trainer.run()
    assert trainer.scaler is None
    assert torch.isfinite(torch.tensor(trainer.state.metrics["loss"]))


def test_channels_last_trains_like_the_default_layout():
    """channels_last changes the memory layout only: same losses up to rounding, same Parameter objects."""
    data = pattern_batches(2, 8)
    runs = {}
    for channels_last in (False, True):
        trainer, net, _, optimizer = build("mse", max_epochs=1, data=data, channels_last=channels_last)
        record = {"losses": [], "layouts": []}
        trainer.add_event_handler(
            IterationEvents.FORWARD_COMPLETED,
            lambda e, r=record: r["layouts"].append(
                e.state.output["pred"]["query_stages"][0].is_contiguous(memory_format=torch.channels_last)
            ),
        )
        trainer.add_event_handler(
            IterationEvents.MODEL_COMPLETED, lambda e, r=record: r["losses"].append(e.state.output["loss"].item())
        )
        trainer.run()
        runs[channels_last] = (net, optimizer, record)
    net, optimizer, record = runs[True]
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert any(p is conv.weight for p in optimizer.param_groups[0]["params"])
    assert record["layouts"] == [True, True] and runs[False][2]["layouts"] == [False, False]
    assert record["losses"] == pytest.approx(runs[False][2]["losses"], rel=1e-5)


def test_channels_last_gradients_match_a_float64_reference():
    from monai_ilm.engines.utils import prepare_views, to_channels_last
    from monai_ilm.losses import InfoNCELoss

    batch, start = pattern_batches(1, 8)[0], tiny_moco(queue_size=16)

    def gradients(dtype: torch.dtype, channels_last: bool) -> dict[str, torch.Tensor]:
        net = copy.deepcopy(start).to(dtype)
        if channels_last:
            to_channels_last(net)
        x1, x2 = (
            x.to(dtype) for x in prepare_views(batch, ("view1", "view2"), torch.device("cpu"), False, channels_last)
        )
        out = net(x1, x2)
        InfoNCELoss()(out["query"], out["key"], net.queue).backward()
        return {name: p.grad.double() for name, p in net.named_parameters() if p.grad is not None}

    reference, fast = gradients(torch.float64, False), gradients(torch.float32, True)
    assert fast.keys() == reference.keys() and len(fast) > 20
    for name, grad in reference.items():
        assert (fast[name] - grad).abs().max() <= 1e-4 * grad.abs().max() + 1e-7, name


def test_to_channels_last_handles_2d_and_3d_weights():
    from monai_ilm.engines.utils import to_channels_last

    module = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Conv3d(2, 4, 3), torch.nn.BatchNorm1d(4))
    weights = [p for p in module.parameters()]
    to_channels_last(module)
    assert [p for p in module.parameters()] == weights
    assert module[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert module[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert module[2].weight.is_contiguous()


def test_errors():
    net = tiny_moco()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="network"):
        MoCoTrainer("cpu", 1, [], torch.nn.Linear(2, 2), optimizer)
    with pytest.raises(ValueError, match="view_keys"):
        MoCoTrainer("cpu", 1, [], net, optimizer, view_keys=("a",))
    trainer = MoCoTrainer("cpu", 1, [{"image": torch.rand(2, 3, 32, 32)}], net, optimizer)
    with pytest.raises(ValueError, match="view_keys"):
        trainer.run()


def uint8_batches(num_batches: int = 2, batch_size: int = 8, size: int = 32) -> list[dict]:
    """What the loader yields with ``augment_on="device"``: one uint8 image per sample."""
    return [
        {"image": (batch["view1"].clamp(0, 1) * 255).round().to(torch.uint8)}
        for batch in pattern_batches(num_batches, batch_size, size)
    ]


def test_device_augmentation_makes_the_views_from_the_loaders_image():
    from monai_ilm.transforms import DeviceAugment

    augment = DeviceAugment.from_preset("dr", 32, seed=0)
    seen = []
    original = augment.views
    augment.views = lambda *args, **kwargs: seen.append(original(*args, **kwargs)) or seen[-1]
    trainer, _, _, _ = build("mse", data=uint8_batches(), augment=augment)
    trainer.run()
    assert len(seen) == 2 and all(set(views) == {"view1", "view2"} for views in seen)
    assert seen[0]["view1"].shape == (8, 3, 32, 32) and seen[0]["view1"].dtype == torch.float32
    assert torch.isfinite(torch.stack([trainer.state.output["loss"]])).all()


def test_device_augmentation_state_is_saved_and_restored_with_the_trainer():
    from monai_ilm.transforms import DeviceAugment

    trainer, _, _, _ = build("moco", data=uint8_batches(), augment=DeviceAugment.from_preset("dr", 32, seed=0))
    trainer.run()
    state = copy.deepcopy(trainer.state_dict())
    image = uint8_batches(1)[0]["image"]
    expected = trainer.augment(image)
    other, _, _, _ = build("moco", data=uint8_batches(), augment=DeviceAugment.from_preset("dr", 32, seed=0))
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.augment(image), expected))
    without = {k: v for k, v in state.items() if k != "augment"}
    with pytest.warns(UserWarning, match="augment: the checkpoint holds no device augmentation state"):
        other.load_state_dict(without)
    plain, _, _, _ = build("moco")
    plain.load_state_dict(state)  # a loader-augmented run ignores the stage's state
    assert "augment" not in plain.state_dict()
    with pytest.raises(ValueError, match="augment: expected a monai_ilm.transforms.DeviceAugment or None, got dict."):
        build("moco", augment={})

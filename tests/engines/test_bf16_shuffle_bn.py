"""The MoCo step under bf16 autocast with shuffle-BN (2 gloo ranks) equals the float32 step within bf16 rounding."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler
from monai_ilm.losses import IntermediateMSELoss
from monai_ilm.methods import trainable_parameters
from tests.helpers import pattern_batches, tiny_moco

WORLD, PER_RANK = 2, 4
# bf16 keeps 8 significant bits (unit roundoff u = 2**-8 = 3.9e-3); autocast rounds the inputs of every convolution
# and linear layer (fp32 accumulation). The intermediate-layer terms are means of squared stage differences: they
# move by a few u (measured on one process, same net and batch: <= 0.5 %), hence rel 5e-2. InfoNCE divides
# cosine similarities by T = 0.07, so an embedding error of ~u becomes ~0.06 per logit: on one process the first
# step's InfoNCE moved by 0.28 (2.59 -> 2.31) at batch 4, hence abs 0.5 there. Only the first step is compared:
# from the second on, the two runs have taken different SGD steps. A key sent back to the wrong rank or row by
# shuffle-BN would pair its query with another image's key: InfoNCE moves by O(1), not 0.5.
LAYER_REL, INFONCE_ABS = 5e-2, 0.5


def _run(batch_norm: str, amp: bool) -> dict:
    torch.manual_seed(0)  # same weights, same shuffle permutation (drawn on rank 0) in every run
    net = tiny_moco(queue_size=16, batch_norm=batch_norm)
    loss = IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9)
    data = [
        {k: v[dist.get_rank() * PER_RANK : (dist.get_rank() + 1) * PER_RANK] for k, v in b.items()}
        for b in pattern_batches(2, WORLD * PER_RANK, size=32, seed=1)
    ]
    trainer = MoCoTrainer(
        "cpu",
        1,
        data,
        DistributedDataParallel(net),
        optimizer,
        train_handlers=[IntermediateLayerLossHandler(loss), MomentumUpdateHandler(0.99), LossPartsHandler()],
        amp=amp,
        amp_kwargs={"dtype": torch.bfloat16} if amp else None,
    )
    record: dict = {"losses": [], "keys": []}

    def keep(engine) -> None:
        record["losses"].append({k: float(v) for k, v in engine.state.output.items()})

    from ignite.engine import Events
    from monai.engines.utils import IterationEvents

    def keep_key(engine) -> None:
        key = engine.state.output["pred"]["key"]
        record["key_dtype"] = str(key.dtype)
        record["keys"].append(key.detach().float())

    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, keep_key)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, keep)
    trainer.run()
    return record


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        runs = {name: _run(bn, amp) for name, bn, amp in (("fp32", "shuffle", False), ("bf16", "shuffle", True))}
        runs["local"] = _run("local", False)
        torch.save(runs, Path(out_dir) / f"rank{rank}.pt")
    except Exception:
        (Path(out_dir) / f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    from tests.test_distributed import launch

    out_dir = tmp_path_factory.mktemp("bf16_shuffle")
    launch(_worker, out_dir, timeout=600)  # three short runs; spawning is slow on a loaded 2-core machine
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
def test_bf16_shuffle_bn_first_step_losses_equal_float32_within_bf16_rounding(ranks):
    for runs in ranks:
        exact, rounded = runs["fp32"]["losses"][0], runs["bf16"]["losses"][0]
        assert exact.keys() == rounded.keys() and {"loss_infonce", "loss_layer4"} <= exact.keys()
        for name, value in exact.items():
            if name.startswith("loss_layer"):
                assert rounded[name] == pytest.approx(value, rel=LAYER_REL), name
        assert abs(rounded["loss_infonce"] - exact["loss_infonce"]) < INFONCE_ABS

from __future__ import annotations

import pytest
import torch

from monai_ilm.evaluation import DownstreamClassifier, evaluate_downstream
from monai_ilm.networks import resnet_encoder
from tests.evaluation._downstream import brightness_items, loader


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: faster and steadier than two contended ones for these tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_classifier_outputs():
    """A random (untrained) classifier's test outputs for each task, on 24 images."""
    out = {}
    for task, n_findings, n_out in (("binary_auc", 0, 2), ("f1", 0, 2), ("multilabel", 3, 3)):
        torch.manual_seed(0)
        net = DownstreamClassifier(resnet_encoder("resnet18"), n_out)
        items = brightness_items(24, seed=3, n_findings=n_findings)
        out[task] = evaluate_downstream(net, loader(items), task, device="cpu", n_resamples=200, id_key="id")
    return out

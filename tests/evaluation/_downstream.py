"""Tiny labelled images and loaders shared by the downstream-evaluation tests."""

from __future__ import annotations

import torch
from monai.data import DataLoader

from monai_ilm.networks import resnet_encoder


def brightness_items(n: int, seed: int, n_findings: int = 0, offset: float = 0.3) -> list[dict]:
    """32 px images whose mean brightness (single-label) or channel brightness (multi-label) encodes the label."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        image = 0.5 * torch.rand(3, 32, 32, generator=g)
        if n_findings:
            label = torch.tensor([(i >> c) & 1 for c in range(n_findings)], dtype=torch.float32)
            image = image + offset * label[:, None, None]
        else:
            label = i % 2
            image = image + offset * label
        items.append({"image": image, "label": label, "id": f"s{seed}-{i}"})
    return items


def loader(items: list[dict], shuffle: bool = False, batch_size: int = 8) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle)


def tiny_encoder(seed: int = 0):
    torch.manual_seed(seed)
    return resnet_encoder("resnet18")


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sample_nih_cell(tmp_path, patients: int, side: int, **fields):
    """An ``EvaluationRun`` on a sample NIH folder (``patients`` patients, ``side`` px images) written once under
    ``tmp_path`` (a cell's fingerprint reads the data's identity, so the folder must exist); ``fields`` override
    the defaults (finetune of ``mse``)."""
    from monai_ilm.data.synthetic import make_nih_sample
    from monai_ilm.evaluation import EvaluationRun

    data = tmp_path / "nih"
    if not data.exists():
        make_nih_sample(data, n_patients=patients, image_size=side, seed=0)
    defaults = dict(
        protocol="finetune",
        dataset_name="nih",
        dataset_dir=str(data),
        output_dir=str(tmp_path / "out"),
        method="mse",
    )
    return EvaluationRun(**{**defaults, **fields})

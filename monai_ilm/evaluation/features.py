"""Pretrained encoders and their per-block features, for every downstream evaluation of the paper.

Kaku et al. (NeurIPS 2021) evaluate a self-supervised encoder in three ways that all start from the MoCo
*query* encoder of a pretraining checkpoint: a linear probe or full fine-tuning of its last block (Tables 1-2),
a linear probe of each of the four ResNet blocks (Table 4), and the CKA similarity of each block's features
before and after fine-tuning (Table 3). This module holds the two pieces they share:

* :func:`load_pretrained_encoder` copies the ``encoder_q.*`` weights of a MoCo checkpoint into a fresh
  :class:`~monai_ilm.networks.StageEncoder` (strictly: every key must match).
* :func:`extract_stage_features` / :func:`iter_stage_features` run frozen encoders (eval mode, no gradients)
  over a loader and return the globally average-pooled output of every block (the reference's ``l1``..``l4``,
  256/512/1024/2048-d for ResNet-50), together with the labels and an identifier of every sample. Images and
  volumes alike: pooling averages over every spatial axis, so a 3D encoder gives the same ``(n, C)`` rows; for
  volumes, which have no picture file, ``keep_pictures`` also keeps each one's middle slice
  (:func:`middle_slices`) for the dashboard's embedding explorer.

Row alignment is guaranteed by construction rather than hoped for (docs/method.md D8, where the chest X-ray test
set was re-shuffled in every process): loaders that shuffle are refused, and every sample carries an id
(a user-given key, the ``filename_or_obj`` of a MONAI ``MetaTensor``, or its position) so that features saved by
two separate runs can be checked to describe the same images in the same order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.networks.utils import eval_mode
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from monai_ilm.data.dispatch import IMAGE_ID_KEY
from monai_ilm.networks.backbones import StageEncoder, global_pool

__all__ = [
    "MOCO_QUERY_PREFIX",
    "FeatureBatch",
    "StageFeatures",
    "batch_ids",
    "check_ordered_loader",
    "extract_stage_features",
    "ids_digest",
    "iter_stage_features",
    "load_pretrained_encoder",
    "middle_slices",
]

MOCO_QUERY_PREFIX = "encoder_q."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel / torch.compile wrappers


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _network_state(obj: Any, path: str) -> Mapping[str, Any]:
    """The network state dict inside a checkpoint: ``obj["network"]`` (resumable file) or ``obj`` itself."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"checkpoint_path: expected a state dict (a mapping) in {path}, got a {type(obj).__name__}.")
    nested = obj.get("network")
    if isinstance(nested, Mapping):
        return nested
    return obj


def _short(keys: Sequence[str], limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_pretrained_encoder(
    checkpoint_path: str | os.PathLike | None,
    encoder: StageEncoder,
    prefix: str = MOCO_QUERY_PREFIX,
    map_location: str | torch.device = "cpu",
) -> StageEncoder:
    """Copy the weights of a pretrained (MoCo query) encoder from a checkpoint into ``encoder``.

    As in the reference's fine-tuning script (docs/method.md §7.1), only the query encoder is kept: the
    projection head, the momentum (key) encoder and the queue are discarded. Both checkpoint forms written by
    MONAI's ``CheckpointSaver`` are accepted: the resumable ``checkpoint_*.pt`` (``{"network": state, ...}``)
    and the best-metric ``model.pt`` (the state dict itself). ``module.`` / ``_orig_mod.`` prefixes left by
    DDP or ``torch.compile`` are ignored. Loading is strict: every parameter and buffer of ``encoder`` must be
    in the checkpoint with the same shape, and the checkpoint may hold no other ``prefix`` key.

    ``prefix`` selects other sub-networks: ``"encoder."`` loads the encoder of a saved
    :class:`~monai_ilm.evaluation.classifier.DownstreamClassifier` (the "after fine-tuning" encoder of the
    feature-reuse analysis), ``""`` a bare encoder state dict.

    Args:
        checkpoint_path: the checkpoint file, or None to keep ``encoder``'s random initialisation (the
            supervised / from-scratch baseline).
        encoder: a freshly built encoder of the same architecture as the pretrained one.
        prefix: key prefix of the encoder inside the checkpoint's state dict.
        map_location: passed to ``torch.load``.

    Returns:
        ``encoder``, with the pretrained weights loaded in place.

    Raises:
        FileNotFoundError: if ``checkpoint_path`` does not exist.
        TypeError: naming the file, if it does not hold a state dict.
        ValueError: naming the file, if it holds no ``prefix`` key or keys/shapes that do
            not match ``encoder`` (the missing and unexpected keys are listed).
    """
    if checkpoint_path is None:
        return encoder
    path = os.fspath(checkpoint_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint_path: expected an existing file, got {path!r}.")
    state = _network_state(torch.load(path, map_location=map_location, weights_only=True), path)
    state = {_strip_wrappers(str(k)): v for k, v in state.items()}
    selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not selected:
        raise ValueError(
            f"checkpoint_path: expected a MoCo state dict (keys '{MOCO_QUERY_PREFIX}...') or {{'network': state_dict}} "
            f"in {path}, got no weights under the prefix {prefix!r} (keys: {_short(list(state))})."
        )
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in selected]
    unexpected = [k for k in selected if k not in expected]
    wrong_shape = [
        f"{k} {tuple(selected[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in selected and tuple(selected[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing keys: {_short(missing)}")
        if unexpected:
            details.append(f"unexpected keys: {_short(unexpected)}")
        if wrong_shape:
            details.append(f"shape mismatches (checkpoint vs encoder): {_short(wrong_shape, 3)}")
        raise ValueError(
            f"checkpoint_path: expected '{prefix}*' weights in {path} that match the given {type(encoder).__name__}, "
            "got " + "; ".join(details) + " (a different architecture or input channels?)."
        )
    encoder.load_state_dict(selected, strict=True)
    return encoder


@dataclass
class StageFeatures:
    """Globally pooled per-block features of one data set, rows in loader order.

    Attributes:
        blocks: one float32 array per extracted block, shape ``(n, C_k)``.
        block_ids: the 1-based block number of each entry of ``blocks``.
        labels: the labels of the ``n`` samples (``(n,)`` or ``(n, n_classes)``), or None if the loader had none.
        ids: one string identifier per sample (see :func:`batch_ids`).
        pictures: ``(n, H, W)`` uint8 middle slices of volumes (:func:`middle_slices`), when kept; else None.
    """

    blocks: list[np.ndarray]
    block_ids: tuple[int, ...]
    labels: np.ndarray | None
    ids: list[str]
    pictures: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.ids)

    def block(self, block: int) -> np.ndarray:
        """The features of block ``block`` (1-based, as in the paper's tables).

        Raises:
            ValueError: if that block was not extracted.
        """
        if block not in self.block_ids:
            raise ValueError(f"block: expected one of the extracted blocks {list(self.block_ids)}, got {block}.")
        return self.blocks[self.block_ids.index(block)]


@dataclass
class FeatureBatch:
    """One batch of :func:`iter_stage_features`.

    Attributes:
        features: ``features[e][b]`` is the pooled output of block ``blocks[b]`` of encoder ``e``, ``(B, C)``.
        labels: the batch labels (on the CPU), or None.
        ids: the sample identifiers of the batch.
        pictures: ``(B, H, W)`` uint8 middle slices of a batch of volumes when asked for, else None.
    """

    features: list[list[torch.Tensor]]
    labels: torch.Tensor | None
    ids: list[str]
    pictures: np.ndarray | None = None


def middle_slices(images: torch.Tensor) -> np.ndarray | None:
    """The middle slice of each volume of a batch, as uint8 pictures: what the embedding explorer shows for a volume.

    The slice is the middle one along the last spatial axis (the axial plane of a volume oriented ``RAS``, as
    the ``volume`` preset orients NIfTI files), of the first channel, min-max scaled to 0-255 each (it is only
    for display). 2D images have a file to show, so they give None.

    Args:
        images: ``(B, C, X, Y, Z)`` volumes (``(B, C, H, W)`` images give None).

    Returns:
        ``(B, X, Y)`` uint8, or None for 2D images.
    """
    if images.ndim != 5:
        return None
    planes = images[:, 0, :, :, images.shape[-1] // 2].detach().float().cpu()
    low = planes.flatten(1).min(dim=1).values.reshape(-1, 1, 1)
    high = planes.flatten(1).max(dim=1).values.reshape(-1, 1, 1)
    scaled = (planes - low) / torch.where(high > low, high - low, torch.ones_like(high))
    return (scaled * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def check_ordered_loader(loader: Iterable, name: str = "loader") -> None:
    """Refuse a ``DataLoader`` that shuffles, so that feature rows of different runs stay aligned.

    Args:
        loader: a ``DataLoader`` or any iterable of batches (only ``DataLoader`` samplers can be checked).
        name: argument name used in the error message.

    Raises:
        ValueError: if ``loader`` uses a ``RandomSampler`` or a shuffling ``DistributedSampler``.
    """
    if not isinstance(loader, DataLoader):
        return
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) or (isinstance(sampler, DistributedSampler) and sampler.shuffle):
        raise ValueError(
            f"{name}: expected a loader that keeps the data set order (shuffle=False), got a "
            f"{type(sampler).__name__}; shuffled rows cannot be paired across encoders (docs/method.md D8)."
        )


def _as_strings(values: Any) -> list[str]:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.reshape(-1).tolist()
    elif isinstance(values, (str, bytes)):
        values = [values]
    return [str(v) for v in values]


def batch_ids(
    batch: Mapping[str, Any], n: int, offset: int, id_key: str | None = None, image_key: str = "image"
) -> list[str]:
    """Identifiers of the samples of a batch.

    In order of preference: ``batch[id_key]`` when ``id_key`` is given; the image ids that
    :func:`monai_ilm.data.load_datalist` gives every row and the evaluation presets keep
    (``batch["image_id"]``); the ``filename_or_obj`` meta data that MONAI's ``LoadImaged`` attaches to the
    image ``MetaTensor`` (the image path, unique per image); otherwise the running positions
    ``offset .. offset + n - 1`` in the loader. Positions keep rows of one pass aligned but say nothing about
    which images they are, so :func:`ids_digest` gives them no digest.

    Args:
        batch: a collated batch dict.
        n: number of samples in the batch.
        offset: number of samples in the earlier batches.
        id_key: key of a per-sample identifier in ``batch``.
        image_key: key of the image, used for the ``MetaTensor`` meta data.

    Returns:
        ``n`` strings.

    Raises:
        ValueError: if ``id_key`` is missing from the batch or does not hold ``n`` values.
    """
    if id_key is None and IMAGE_ID_KEY in batch:
        id_key = IMAGE_ID_KEY
    if id_key is not None:
        if id_key not in batch:
            raise ValueError(f"id_key: expected a key of the batch ({sorted(batch)}), got {id_key!r}.")
        ids = _as_strings(batch[id_key])
        if len(ids) != n:
            raise ValueError(f"id_key: expected {n} identifiers in batch[{id_key!r}], got {len(ids)}.")
        return ids
    meta = getattr(batch.get(image_key), "meta", None)
    names = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if names is not None:
        ids = _as_strings(names)
        if len(ids) == n:
            return ids
    return [str(offset + i) for i in range(n)]


def ids_digest(ids: Sequence[Any]) -> str | None:
    """The SHA-256 of the ordered test ids, one per line: what proves two runs scored the same test rows.

    Two runs whose replicates share the resample indices pair up row for row only if their test sets are the same
    images in the same order, and only ids from the data can show that. Ids that are just the loader positions
    ``0 .. n - 1`` (what :func:`batch_ids` falls back to without ids) are equal for any two test sets of one size,
    so they get no digest, and a difference of such runs is not reported as paired.

    Args:
        ids: one identifier per test sample, in loader order.

    Returns:
        The hex digest, or None when there are no ids or they are the positions.
    """
    texts = [str(i) for i in ids]
    if not texts or texts == [str(i) for i in range(len(texts))]:
        return None
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _check_blocks(encoder: StageEncoder, blocks: Sequence[int]) -> tuple[int, ...]:
    n_stages = len(encoder.stage_names)
    blocks = tuple(int(b) for b in blocks)
    if not blocks or any(not 1 <= b <= n_stages for b in blocks):
        raise ValueError(f"blocks: expected block numbers in 1..{n_stages}, got {list(blocks)}.")
    return blocks


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def iter_stage_features(
    encoders: Sequence[StageEncoder],
    loader: Iterable[Mapping[str, Any]],
    blocks: Sequence[int] = (1, 2, 3, 4),
    device: str | torch.device | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    id_key: str | None = None,
    require_order: bool = True,
    keep_pictures: bool = False,
) -> Iterator[FeatureBatch]:
    """Run every encoder on the **same** batches and yield their pooled block outputs, batch by batch.

    Feeding one batch to all encoders is what makes the rows of "before" and "after" features pair up
    exactly (docs/method.md D8). The encoders run in eval mode (BatchNorm running statistics, no dropout) under
    ``torch.no_grad`` and are returned to their previous mode afterwards. Features are pooled with
    :func:`~monai_ilm.networks.global_pool` and moved to the CPU as float32.

    Args:
        encoders: one or more stage encoders.
        loader: yields batch dicts with ``image_key`` (and optionally ``label_key`` / ``id_key``); a
            ``DataLoader`` must not shuffle.
        blocks: 1-based block numbers to return.
        device: where to run (default: CUDA if available).
        image_key: key of the image tensor in a batch.
        label_key: key of the labels, or None to ignore labels.
        id_key: key of a per-sample identifier (see :func:`batch_ids`).
        require_order: refuse a shuffling ``DataLoader`` (set False only where the row order does not matter,
            e.g. the training split of a probe).
        keep_pictures: give each batch of volumes its middle slices (:func:`middle_slices`).

    Yields:
        One :class:`FeatureBatch` per batch.

    Raises:
        ValueError: for a shuffling loader, a batch without ``image_key``, or blocks outside 1..4.
    """
    if len(encoders) == 0:
        raise ValueError("encoders: expected at least one encoder, got none.")
    if require_order:
        check_ordered_loader(loader)
    block_ids = _check_blocks(encoders[0], blocks)
    for e in encoders[1:]:
        _check_blocks(e, blocks)
    dev = _default_device(device)
    previous_devices = [next(e.parameters()).device for e in encoders]
    for e in encoders:
        e.to(dev)
    offset = 0
    try:
        with eval_mode(*encoders):
            for batch in loader:
                if image_key not in batch:
                    raise ValueError(f"image_key: expected a key of the batch ({sorted(batch)}), got {image_key!r}.")
                images = torch.as_tensor(batch[image_key]).to(dev)
                n = images.shape[0]
                features = []
                for e in encoders:
                    stages = e.forward_stages(images)
                    features.append([global_pool(stages[b - 1]).float().cpu() for b in block_ids])
                labels = None
                if label_key is not None and label_key in batch:
                    labels = torch.as_tensor(batch[label_key]).detach().cpu()
                pictures = middle_slices(images) if keep_pictures else None
                yield FeatureBatch(features, labels, batch_ids(batch, n, offset, id_key, image_key), pictures)
                offset += n
    finally:
        for e, d in zip(encoders, previous_devices):
            e.to(d)


def _stack_labels(labels: list[torch.Tensor | None]) -> np.ndarray | None:
    if not labels or any(lab is None for lab in labels):
        return None
    out = torch.cat([lab.reshape(lab.shape[0], -1) if lab.ndim > 1 else lab.reshape(-1) for lab in labels]).numpy()
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def extract_stage_features(
    encoder: StageEncoder,
    loader: Iterable[Mapping[str, Any]],
    blocks: Sequence[int] = (1, 2, 3, 4),
    device: str | torch.device | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    id_key: str | None = None,
    require_order: bool = True,
    keep_pictures: bool = False,
) -> StageFeatures:
    """Pooled per-block features of a whole data set from one frozen encoder (see :func:`iter_stage_features`).

    These are the reference's ``l1``..``l4`` test-set vectors (docs/method.md §7.1), and the cached inputs
    of the layer-wise probes (:mod:`monai_ilm.evaluation.probing`).

    Args:
        encoder: a stage encoder.
        loader: a non-shuffling loader of batch dicts.
        blocks: 1-based block numbers to extract.
        device: where to run (default: CUDA if available).
        image_key: key of the image tensor.
        label_key: key of the labels, or None.
        id_key: key of a per-sample identifier.
        require_order: refuse a shuffling ``DataLoader`` (see :func:`iter_stage_features`).
        keep_pictures: keep the middle slice of every volume (:func:`middle_slices`; None for 2D images).

    Returns:
        A :class:`StageFeatures`; labels of shape ``(n, 1)`` are flattened to ``(n,)``.

    Raises:
        ValueError: as :func:`iter_stage_features`, or if the loader is empty.
    """
    chunks: list[list[torch.Tensor]] = []
    labels: list[torch.Tensor | None] = []
    ids: list[str] = []
    pictures: list[np.ndarray | None] = []
    batches = iter_stage_features(
        [encoder], loader, blocks, device, image_key, label_key, id_key, require_order, keep_pictures
    )
    for batch in batches:
        chunks.append(batch.features[0])
        labels.append(batch.labels)
        ids.extend(batch.ids)
        pictures.append(batch.pictures)
    if not chunks:
        raise ValueError("loader: expected at least one batch, got none.")
    stacked = [torch.cat([c[i] for c in chunks]).numpy() for i in range(len(chunks[0]))]
    kept = np.concatenate(pictures) if pictures and all(p is not None for p in pictures) else None
    block_ids = tuple(int(b) for b in blocks)
    return StageFeatures(blocks=stacked, block_ids=block_ids, labels=_stack_labels(labels), ids=ids, pictures=kept)

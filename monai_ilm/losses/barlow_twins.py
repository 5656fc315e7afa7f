"""Barlow Twins between projected stage outputs of the query and key encoders."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from monai_ilm.distributed import all_reduce_with_grad, convert_to_global_batch_norm, world_size
from monai_ilm.losses.layerwise import LayerwiseLoss, check_pairs
from monai_ilm.networks.backbones import global_pool
from monai_ilm.utils import as_tuple

__all__ = ["barlow_twins_loss", "barlow_twins_projector", "IntermediateBarlowTwinsLoss"]

# the reference: λ = 5e-5 on both sums, times a scale s = 1/32 (docs/method.md §5.2)
REFERENCE_WEIGHT = 5e-5
REFERENCE_SCALE = 1.0 / 32


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambda_diag: float = 1.0,
    lambda_offdiag: float = 5e-3,
    eps: float = 1e-5,
    global_batch: bool = False,
) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss (Zbontar et al., ICML 2021).

    Each embedding is standardised over the batch as BatchNorm does in training, ẑ = (z − mean) /
    sqrt(var_biased + eps); the cross-correlation is C = ẑ₁ᵀẑ₂ / N and the loss is
    lambda_diag · Σ_i (1 − C_ii)² + lambda_offdiag · Σ_{i≠j} C_ij².
    Zbontar et al. use (1, 5e-3); Kaku et al. use 5e-5/32 on both terms (docs/method.md §10.3).

    MONAI's ``BarlowTwinsLoss`` standardises with the unbiased standard deviation and no eps and
    has a single off-diagonal weight, so it cannot reproduce the reference numbers; hence this function.

    With ``global_batch=True`` in a distributed run, the mean and variance of the standardisation
    and C are those of the batches of all ranks together: per-rank sums of z, of (z − mean)² and of
    ẑ₁ᵀẑ₂ are summed over ranks with :func:`~monai_ilm.distributed.all_reduce_with_grad` and divided
    by the global N. Every rank then returns the same (global) loss, and its gradient is exact once
    DDP averages the gradients over ranks; the loss must not be multiplied or divided by the
    world size (see :mod:`monai_ilm.distributed`). Every rank must call it for the same layers.

    Args:
        z1: (N, D) embeddings of the first branch.
        z2: (N, D) embeddings of the second branch.
        lambda_diag: weight of the on-diagonal sum.
        lambda_offdiag: weight of the off-diagonal sum.
        eps: added to the variance.
        global_batch: use the batch of all ranks in a distributed run (no effect with one process).

    Raises:
        ValueError: for shapes that differ or a batch of fewer than 2 samples (its variance is 0).
    """
    return _barlow_twins(z1, z2, lambda_diag, lambda_offdiag, eps, global_batch)[0]


# the batch moments of one training step: ((mean z1, biased var z1), (mean z2, biased var z2), N), detached
_Moments = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], torch.Tensor]


def _barlow_twins(
    z1: torch.Tensor, z2: torch.Tensor, lambda_diag: float, lambda_offdiag: float, eps: float, global_batch: bool
) -> tuple[torch.Tensor, _Moments]:
    """:func:`barlow_twins_loss` and the batch moments it standardised with (to track running statistics)."""
    _check_pair(z1, z2)
    across_ranks = global_batch and world_size() > 1
    if not across_ranks and z1.shape[0] < 2:
        raise ValueError(
            "z1 and z2: expected batches of at least 2 samples (Barlow Twins standardises over the batch), "
            f"got {z1.shape[0]}."
        )
    with torch.autocast(z1.device.type, enabled=False):  # the cross-correlation in float32, also under autocast
        z1, z2 = z1.float(), z2.float()
        if across_ranks:
            c, moments = _global_cross_correlation(z1, z2, eps)
        else:
            (z1n, m1), (z2n, m2) = _standardise(z1, eps), _standardise(z2, eps)
            c = z1n.t() @ z2n / z1.shape[0]
            moments = (m1, m2, z1.new_tensor(float(z1.shape[0])))
        return _weighted_sums(c, lambda_diag, lambda_offdiag), moments


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2: expected two (N, D) tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )


def _weighted_sums(c: torch.Tensor, lambda_diag: float, lambda_offdiag: float) -> torch.Tensor:
    diagonal = torch.diagonal(c)
    on = (1.0 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return lambda_diag * on + lambda_offdiag * off


def _standardise(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    var, mean = torch.var_mean(z, dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(var + eps), (mean.detach(), var.detach())


def _global_cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float) -> tuple[torch.Tensor, _Moments]:
    """C = ẑ₁ᵀẑ₂ / N over the batches of all ranks, differentiable through the all-reduces."""
    d = z1.shape[1]
    count = z1.new_full((1,), z1.shape[0])
    totals = all_reduce_with_grad(torch.cat([z1.sum(0), z2.sum(0), count]))
    n = totals[-1].detach()
    mean1, mean2 = totals[:d] / n, totals[d : 2 * d] / n
    c1, c2 = z1 - mean1, z2 - mean2
    var = all_reduce_with_grad(torch.cat([c1.pow(2).sum(0), c2.pow(2).sum(0)])) / n
    z1n, z2n = c1 / torch.sqrt(var[:d] + eps), c2 / torch.sqrt(var[d:] + eps)
    moments = ((mean1.detach(), var[:d].detach()), (mean2.detach(), var[d:].detach()), n)
    return all_reduce_with_grad(z1n.t() @ z2n) / n, moments


def barlow_twins_projector(in_dim: int, dims: Sequence[int] = (2048, 2048, 2048)) -> nn.Sequential:
    """Bias-free Linear layers, each but the last followed by BatchNorm1d and ReLU (docs/method.md §5.2)."""
    if not dims:
        raise ValueError(f"projector_dims: expected at least one layer width, got {list(dims)}.")
    layers: list[nn.Module] = []
    widths = [in_dim, *dims]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, bias=False))
        if i < len(dims) - 1:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class IntermediateBarlowTwinsLoss(LayerwiseLoss):
    """The Barlow Twins intermediate-layer loss of Kaku et al. (NeurIPS 2021, docs/method.md §5.2).

    Each stage output is globally average-pooled, passed through its own projector (shared by the
    query and key branches, run separately on each so BatchNorm statistics are per view) and
    compared with :func:`barlow_twins_loss`. Stage l gets
    lambda_diag = weights[l] · scale and lambda_offdiag = weights[l] · scale · offdiag_weight.
    The defaults are the reference's (5e-5 · 1/32 on both sums); ``weights=1, scale=1,
    offdiag_weight=5e-3`` is the original Barlow Twins weighting. The projectors are trained with
    the encoder and dropped after pretraining; put :meth:`parameters` in the optimiser.

    The projector outputs are standardised as the reference's ``BatchNorm1d(affine=False)`` does
    (one per stage, in ``norms``): in training mode with the batch mean and biased variance, while
    the running mean and unbiased running variance are updated (momentum 0.1, first with the query
    view, then with the key view); in eval mode, i.e. for the validation loss that selects
    ``model.pt``, with those running statistics, so the validation loss does not depend on how the
    validation set is batched. A loss whose running statistics were never updated (fresh, or loaded
    from a checkpoint written before they were tracked, which warns) uses batch statistics in eval
    mode too, as earlier versions did.

    In a distributed run with ``global_batch=True`` (default) the loss is that of the global batch,
    as in the original Barlow Twins: the projectors' BatchNorm layers are
    :class:`~monai_ilm.distributed.GlobalBatchNorm` and the standardisation and cross-correlation
    are all-reduced (:func:`barlow_twins_loss`), so W ranks with B samples each give the loss and
    gradients of one process with W·B, and every rank tracks the same running statistics. This
    applies in training mode only; in eval mode (the validation loss) each rank uses its own batch,
    so ranks whose numbers of validation batches differ never wait on each other. With one process
    ``global_batch`` changes nothing.

    Args:
        in_channels: channels of each compared stage (256, 512, 1024, 2048 for ResNet-50).
        weights: λ per stage, or one value for all.
        scale: common factor s.
        offdiag_weight: off-diagonal weight relative to the diagonal.
        projector_dims: widths of the projector's Linear layers.
        global_batch: compute the training loss over the batches of all ranks (see above);
            False gives per-rank statistics and cross-correlations.

    Raises:
        ValueError: for mismatched lengths, a batch of 1, or feature shapes that disagree.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (256, 512, 1024, 2048),
        weights: Sequence[float] | float = REFERENCE_WEIGHT,
        scale: float = REFERENCE_SCALE,
        offdiag_weight: float = 1.0,
        projector_dims: Sequence[int] = (2048, 2048, 2048),
        global_batch: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.weights = as_tuple(weights, len(self.in_channels), "weights")
        self.scale = scale
        self.offdiag_weight = offdiag_weight
        self.global_batch = global_batch
        self.projectors = nn.ModuleList(barlow_twins_projector(c, projector_dims) for c in self.in_channels)
        if global_batch:
            self.projectors = convert_to_global_batch_norm(self.projectors)
        # holders of the running statistics of the output standardisation; updated in layer_losses, never called
        self.norms = nn.ModuleList(nn.BatchNorm1d(projector_dims[-1], affine=False) for _ in self.in_channels)
        self._register_load_state_dict_pre_hook(self._reset_missing_statistics)

    @property
    def num_layers(self) -> int:
        return len(self.in_channels)

    def layer_losses(self, q_feats: Sequence[torch.Tensor], k_feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The weighted term of every stage, in order."""
        check_pairs(q_feats, k_feats, self.num_layers)
        losses = []
        for i, (q, k, projector, weight) in enumerate(zip(q_feats, k_feats, self.projectors, self.weights)):
            q, k = _pooled(q), _pooled(k)
            if q.shape[1] != self.in_channels[i]:
                raise ValueError(
                    f"in_channels[{i}]: expected {q.shape[1]} (the channels of stage {i}'s features), "
                    f"got {self.in_channels[i]}."
                )
            lam = weight * self.scale
            z1, z2, norm = projector(q), projector(k), self.norms[i]
            if self.training:
                loss, moments = _barlow_twins(z1, z2, lam, lam * self.offdiag_weight, norm.eps, self.global_batch)
                _track(norm, moments)
            else:
                loss = _running_barlow_twins(z1, z2, norm, lam, lam * self.offdiag_weight)
            losses.append(loss)
        return losses

    def _reset_missing_statistics(self, state_dict: dict, prefix: str, *args: object) -> None:
        """Let a checkpoint written before the running statistics were tracked load: they start afresh."""
        keys = [f"{prefix}norms.{i}.{name}" for i in range(len(self.norms)) for name in _NORM_BUFFERS]
        if any(key in state_dict for key in keys):
            return  # present (a partial set is left to load_state_dict to report)
        warnings.warn(
            f"{prefix or 'state_dict'}: the checkpoint has no running statistics of the Barlow Twins output "
            "standardisation (written before they were tracked); they start afresh, and the validation loss uses "
            "batch statistics until a training step has updated them.",
            stacklevel=2,
        )
        for i, norm in enumerate(self.norms):
            fresh = nn.BatchNorm1d(norm.num_features, affine=False).to(norm.running_mean.device)
            for name in _NORM_BUFFERS:
                state_dict[f"{prefix}norms.{i}.{name}"] = getattr(fresh, name)


_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@torch.no_grad()
def _track(norm: nn.BatchNorm1d, moments: _Moments) -> None:
    """Update ``norm``'s running statistics as ``BatchNorm1d`` would after standardising z1, then z2."""
    (mean1, var1), (mean2, var2), n = moments
    bessel = n / (n - 1).clamp_min(1)
    for mean, var in ((mean1, var1), (mean2, var2)):
        norm.num_batches_tracked.add_(1)
        norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), norm.momentum)
        norm.running_var.lerp_((var * bessel).to(norm.running_var.dtype), norm.momentum)


def _running_barlow_twins(
    z1: torch.Tensor, z2: torch.Tensor, norm: nn.BatchNorm1d, lambda_diag: float, lambda_offdiag: float
) -> torch.Tensor:
    """The loss with z1 and z2 standardised by ``norm``'s running statistics (batch ones if none were tracked)."""
    _check_pair(z1, z2)
    with torch.autocast(z1.device.type, enabled=False):
        z1, z2 = z1.float(), z2.float()
        tracked = norm.num_batches_tracked > 0  # on the device: no host synchronisation

        def standardise(z: torch.Tensor) -> torch.Tensor:
            var, mean = torch.var_mean(z, dim=0, unbiased=False)
            mean = torch.where(tracked, norm.running_mean.float(), mean)
            var = torch.where(tracked, norm.running_var.float(), var)
            return (z - mean) / torch.sqrt(var + norm.eps)

        c = standardise(z1).t() @ standardise(z2) / z1.shape[0]
        return _weighted_sums(c, lambda_diag, lambda_offdiag)


def _pooled(feature: torch.Tensor) -> torch.Tensor:
    return feature if feature.dim() == 2 else global_pool(feature)

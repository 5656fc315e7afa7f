"""Helpers for runs launched with torchrun (DistributedDataParallel).

Three kinds of helpers live here:

* queries and plain collectives: :func:`world_size`, :func:`rank`, :func:`gather_from_all_ranks`,
  :func:`average_gradients`, :func:`average_over_ranks`, :func:`rank_zero_only`;
* the global batch under DDP: :func:`all_reduce_with_grad` (a sum over ranks that back-propagates)
  and :class:`GlobalBatchNorm` / :func:`convert_to_global_batch_norm` (BatchNorm over the batches
  of all ranks, on CPU/gloo as on GPU/NCCL);
* MoCo's shuffle-BN (He et al., "Momentum Contrast for Unsupervised Visual Representation
  Learning", CVPR 2020, §3.3): :func:`shuffle_across_ranks` and :func:`unshuffle_across_ranks`.

Gradient convention. Under DDP every rank back-propagates its own loss L_r and DDP averages the
parameter gradients, so the update follows J = (1/W) Σ_r L_r. For a per-sample mean (InfoNCE,
the intermediate MSE) with equal per-rank batches, J is the mean over the global batch. When a
rank's loss uses a global quantity S = Σ_r s_r (BatchNorm statistics, the Barlow Twins
cross-correlation), ∂J/∂s_r needs the contributions of every rank's loss; the backward pass of
:func:`all_reduce_with_grad` therefore sums the incoming gradients over ranks, each rank ends with
W·∂J/∂(its inputs), and DDP's division by W gives exactly the gradient of one process that sees
the whole batch. The per-rank losses must not be rescaled (a non-differentiable all-reduce would
instead lose the other ranks' contributions and leave the gradient W times too small).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "GlobalBatchNorm",
    "all_reduce_with_grad",
    "average_gradients",
    "average_over_ranks",
    "convert_to_global_batch_norm",
    "exchange_rows",
    "gather_from_all_ranks",
    "is_rank_zero_only",
    "random_permutation",
    "rank",
    "rank_zero_only",
    "shuffle_across_ranks",
    "unshuffle_across_ranks",
    "world_size",
]


def world_size() -> int:
    """Number of processes in the default group (1 outside a distributed run)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 outside a distributed run)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_from_all_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order (no gradient).

    Every rank must call it with a tensor of the same shape.
    """
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """All-reduce and average the gradients of ``parameters`` over ranks (no-op with one process).

    For trainable modules outside the DDP-wrapped network, such as the Barlow Twins projectors:
    this is what DDP does for the network's own parameters. Every rank must hold a gradient for
    the same parameters.
    """
    size = world_size()
    if size == 1:
        return
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(size)


@torch.no_grad()
def average_over_ranks(sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
    """Means over all ranks of per-rank ``sums`` of ``count`` values each: Σ_r sums_r / Σ_r count_r.

    The keys may differ between ranks (a rank that ran no iteration has none); the union is used,
    missing sums counting as zero. With one process this is ``sums / count``. Every rank must call it.
    """
    if world_size() == 1:
        return {key: (value / max(count, 1)).item() for key, value in sums.items()}
    names: list = [None] * world_size()
    dist.all_gather_object(names, sorted(sums))
    keys = sorted(set().union(*names))
    device = _collective_device()
    zero = torch.zeros((), device=device)
    totals = torch.stack(
        [torch.tensor(float(count), device=device)] + [sums.get(k, zero).float().to(device).reshape(()) for k in keys]
    )
    dist.all_reduce(totals)
    total_count = max(totals[0].item(), 1.0)
    return {key: (value / total_count).item() for key, value in zip(keys, totals[1:])}


def _collective_device() -> torch.device:
    """A device the default group's backend can communicate from (CUDA for NCCL, else CPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _AllReduceSum(torch.autograd.Function):
    """Σ over ranks in the forward pass; Σ over ranks of the incoming gradients in the backward pass."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks that back-propagates to every rank's input (identity with one process).

    The backward pass sums the gradients over ranks (see the module docstring for why this,
    together with DDP's gradient averaging, gives the single-process gradient of the global batch).
    Every rank must call it, in the same order, with a tensor of the same shape.
    """
    if world_size() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the batches of all ranks together.

    This is the semantics of ``torch.nn.SyncBatchNorm`` (a batch of B on each of W ranks is
    normalised as one batch of W·B) written with :func:`all_reduce_with_grad`, so it runs on every
    device and backend, gloo on CPU included; ``torch.nn.SyncBatchNorm`` accepts only accelerator
    inputs and DDP refuses it in CPU modules. In training mode, per channel:
    mean = Σx / n and var = Σ(x − mean)² / n over the global batch (two passes, biased), then
    y = (x − mean)/sqrt(var + eps)·γ + β; the running mean and the unbiased running variance are
    updated with the global statistics, identically on every rank. Outside a distributed run and
    in eval mode it is plain BatchNorm (``F.batch_norm``), so results and ``state_dict`` keys are
    those of ``nn.BatchNorm{1,2,3}d``.

    Statistics are computed in float32 and the output has the input's dtype. Each training forward
    costs two all-reduces of about C numbers, and the backward pass two more; it is built from
    ordinary tensor operations, so on GPUs it is slower than the fused kernels of
    ``torch.nn.SyncBatchNorm`` (which a CUDA-only recipe may use instead:
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)``). Every rank must run the same
    layers in the same order.

    Args:
        num_features, eps, momentum, affine, track_running_stats: as in ``nn.BatchNorm2d``.

    Raises:
        ValueError: for an input of fewer than 2 dimensions.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"input: expected a shape (N, C, ...), got {tuple(input.shape)}.")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        mean, var, count, centred = _global_moments(input)
        shape = (1, -1) + (1,) * (input.dim() - 2)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out.to(input.dtype)


def _global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``x`` (N, C, ...) over all ranks, the global count
    and ``x − mean``; differentiable through :func:`all_reduce_with_grad`."""
    dims = [0, *range(2, x.dim())]
    xf = x.float()
    local_count = xf.new_full((1,), x.numel() // max(x.shape[1], 1))
    totals = all_reduce_with_grad(torch.cat([xf.sum(dims), local_count]))
    count = totals[-1].detach()
    mean = totals[:-1] / count
    centred = xf - mean.view((1, -1) + (1,) * (x.dim() - 2))
    var = all_reduce_with_grad(centred.pow(2).sum(dims)) / count
    return mean, var, count, centred


def convert_to_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by a :class:`GlobalBatchNorm` with the same state.

    Parameters and buffers are moved over (not copied), so an optimiser built afterwards sees the
    new layers; build the optimiser after converting. Returns the converted module (a new object
    when ``module`` itself is a BatchNorm layer).
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        new_child = convert_to_global_batch_norm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def random_permutation(n: int, device: torch.device | str) -> torch.Tensor:
    """A random permutation of ``range(n)`` drawn on rank 0 and broadcast, so every rank holds the same one."""
    if rank() == 0:
        order = torch.randperm(n, device=device)
    else:
        order = torch.empty(n, dtype=torch.long, device=device)
    if world_size() > 1:
        dist.broadcast(order, src=0)
    return order


@torch.no_grad()
def exchange_rows(x: torch.Tensor, destination: torch.Tensor) -> torch.Tensor:
    """Move rows of the global batch between ranks: global row g goes to global position ``destination[g]``.

    The global batch is the concatenation of the ranks' batches in rank order (rank r holds rows
    r·n … r·n + n − 1); ``destination`` is a permutation of ``range(W·n)`` known to every rank.
    Each rank receives the n rows of its own positions, in order, through one ``all_to_all`` (each
    row travels once: no rank holds the global batch). No gradient flows through the exchange.

    Args:
        x: this rank's (n, ...) rows; n must be equal on all ranks.
        destination: (W·n,) integer permutation, identical on all ranks.
    """
    size, me, n = world_size(), rank(), x.shape[0]
    if size == 1:
        return x[torch.argsort(destination.to(x.device))]
    dest = destination.cpu()
    source_rank = torch.arange(size * n) // n
    mine = dest[me * n : (me + 1) * n]
    send_order = torch.argsort(mine)  # grouped by receiving rank, ascending position within each
    send_counts = torch.bincount(mine // n, minlength=size)
    incoming = torch.nonzero(dest // n == me).squeeze(1)
    recv_counts = torch.bincount(source_rank[incoming], minlength=size)
    # rows arrive grouped by sending rank and, within one sender, by ascending destination
    arrival_key = source_rank[incoming] * (size * n) + dest[incoming]
    arrival_position = dest[incoming][torch.argsort(arrival_key)] - me * n
    send = x[send_order.to(x.device)].contiguous()
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, recv_counts.tolist(), send_counts.tolist())
    out = torch.empty_like(received)
    out[arrival_position.to(x.device)] = received
    return out


def _check_equal_batches(x: torch.Tensor) -> int:
    """The per-rank batch size, after checking that every rank has the same one.

    Raises:
        ValueError: on every rank, when the per-rank batch sizes differ.
    """
    sizes = gather_from_all_ranks(torch.tensor([x.shape[0]], device=x.device)).tolist()
    if len(set(sizes)) != 1:
        raise ValueError(
            f"batch size: expected the same batch size on every rank (shuffle-BN), got {sizes} "
            "(use DistributedSampler(even_divisible=True) and drop_last=True)."
        )
    return sizes[0]


@torch.no_grad()
def shuffle_across_ranks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's shard of the global batch after a random permutation shared by all ranks.

    The first half of MoCo's shuffle-BN (He et al., CVPR 2020): the key encoder then normalises
    each shard with statistics of samples drawn from all ranks, so its BatchNorm cannot reveal which
    query and key come from the same rank. Undo it with :func:`unshuffle_across_ranks`.

    Returns:
        the (n, ...) shard and ``order``, the (W·n,) permutation (shuffled position i holds global
        sample ``order[i]``).

    Raises:
        ValueError: when the per-rank batch sizes differ.
    """
    n = _check_equal_batches(x)
    order = random_permutation(n * world_size(), x.device)
    return exchange_rows(x, torch.argsort(order)), order


@torch.no_grad()
def unshuffle_across_ranks(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Send the rows of a shuffled shard back: rank r receives the outputs of its own samples, in order.

    ``x`` is any per-sample output of the shard returned by :func:`shuffle_across_ranks` (an
    embedding or a stage feature map); ``order`` is the permutation it returned.
    """
    return exchange_rows(x, order)


RANK_ZERO_HANDLERS = ("StatsHandler", "TensorBoardStatsHandler", "ProgressBar", "CheckpointSaver")
"""MONAI's and ignite's handlers that only log or save, by class name; monai-ilm's own handlers say so
themselves with a class attribute ``rank_zero_only = True`` (``AtomicCheckpointSaver``, ``EmbeddingSaver``,
``OnlineKNNHandler``, ``RepresentationHealthHandler``)."""


def is_rank_zero_only(handler: object, names: tuple[str, ...] = RANK_ZERO_HANDLERS) -> bool:
    """Whether ``handler`` only logs, saves or monitors, and so runs on rank 0 only.

    Args:
        handler: an ignite handler.
        names: class names of third-party handlers that run on rank 0 only.
    """
    return bool(getattr(type(handler), "rank_zero_only", False)) or type(handler).__name__ in names


def rank_zero_only(handlers: Sequence, names: tuple[str, ...] = RANK_ZERO_HANDLERS) -> list:
    """Drop logging and saving handlers on every rank but 0, so logs and checkpoints are written once.

    A handler is dropped when its class says ``rank_zero_only = True`` or its class name is in ``names``.
    Handlers that take part in collectives (``LossPartsHandler``, ``ValidationHandler``,
    ``IntermediateLayerLossHandler``) must stay on every rank and never say so.
    """
    if rank() == 0:
        return list(handlers)
    return [h for h in handlers if not is_rank_zero_only(h, names)]

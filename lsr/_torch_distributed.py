"""Smoothed cross-entropy across a ``torch.distributed`` process group.

Two layouts, both exact: every rank gets the loss, and the gradient of its own logits,
that a single process computing ``lsr.smooth_ce`` on the whole batch and vocabulary gets.

* **Vocabulary (class) parallel** (``vocab_parallel_smooth_ce``): each rank of ``group``
  holds a contiguous slice of the class axis, ``logits[..., start_r:end_r]`` (slices may
  differ in size), and the same global labels. The loss of a position depends on its
  logits only through a few per-position sums over the classes (see ``lsr._core``):
  ``lse = logsumexp(z)``, the target logit ``z_y`` and ``t = sum_k w_k u_k z_k``. Each is
  a sum over class slices, so two all-reduces of per-position values give them exactly:
  a MAX of the local maxima (for a stable logsumexp), then one SUM of
  ``[sum_k exp(z_k - max), masked local z_y, local part of sum_k v_k z_k]`` (t follows from
  it, ``lsr._core.combine_loss``). Everything else (``w_y``,
  ``sum_k w_k u_k``, the KL constant, the mean's denominator) depends only on labels and
  (K,) vectors, which every rank holds whole, and is computed locally with the global K.
  The backward pass needs no collective: ``(sum_k w_k q'_k) softmax(z) - w q'`` restricted
  to the local classes, from the saved global ``lse``.

  The bug this avoids (Megatron-LM issues #737 and #7464): smoothing each shard with its
  local vocabulary size ``K / P`` instead of the global ``K``.

* **Data parallel** (``data_parallel_smooth_ce``): each rank holds whole logits for its
  part of the batch. "mean" divides the sum over all ranks by the number (or ``w_y`` sum)
  of kept positions over all ranks, one all-reduce of two scalars; averaging per-rank
  means instead would weight ranks with few kept positions (many ``ignore_index``
  labels) too heavily.

Per step, the vocabulary-parallel loss all-reduces ``4 N`` values per rank (N the
number of positions) in the compute dtype, against ``N (K - K_r)`` values that gathering
the full logits would receive; see the README section "Scaling out". Without
``shard_sizes`` each call also all-gathers every rank's class count (one integer per
rank): a small, latency-bound collective that passing ``shard_sizes`` avoids.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from lsr import _core
from lsr._checks import (
    check_ignore_index,
    check_label_range,
    check_logits,
    check_prior,
    check_smoothing,
    check_weight,
    check_z_loss,
    is_integer_dtype,
    prepare_smooth_ce,
)
from lsr._compat import array_namespace
from lsr._validation import REDUCTIONS, check_choice, fail_type, fail_value, normalize_axis

__all__ = ["data_parallel_smooth_ce", "vocab_parallel_smooth_ce"]


def _resolve_group(group: Any, name: str = "group") -> Any:
    if group is None:
        return dist.group.WORLD
    if not isinstance(group, dist.ProcessGroup):
        fail_type(f"`{name}` must be a torch.distributed ProcessGroup or None.", name, group)
    return group


def _shard_sizes(num_local: int, group: Any, device: torch.device) -> tuple[int, ...]:
    """Every rank's class count, all-gathered on every call (one integer per rank).

    Nothing is cached: the same group may serve logits of different vocabularies (two
    output heads), and a cache keyed on this rank's count alone would silently reuse
    another head's sizes, or leave one rank in this collective while the others skip it.
    ``shard_sizes`` avoids the collective.
    """
    size = torch.tensor([num_local], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return tuple(int(s.item()) for s in sizes)


def _check_shard_sizes(shard_sizes: Any, num_local: int, group: Any) -> tuple[int, ...]:
    world = dist.get_world_size(group)
    if isinstance(shard_sizes, (str, bytes)) or not isinstance(shard_sizes, Iterable):
        fail_type(
            f"`shard_sizes` must be a sequence of one class count per rank ({world}).",
            "shard_sizes",
            shard_sizes,
        )
    sizes = tuple(shard_sizes)
    if len(sizes) != world or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes
    ):
        fail_value(
            f"`shard_sizes` must hold one positive class count per rank of the group ({world}).",
            "shard_sizes",
            shard_sizes,
        )
    rank = dist.get_rank(group)
    if sizes[rank] != num_local:
        fail_value(
            f"`shard_sizes[{rank}]` must equal this rank's class count {num_local}.",
            "shard_sizes",
            shard_sizes,
        )
    return tuple(int(s) for s in sizes)


class _VocabParallelPlan:
    """Validated options, global K and this rank's class slice: what both passes need."""

    def __init__(self, *, xp, axis, start, num_local, num_classes, options, group, batch_group):
        self.xp = xp
        self.axis = axis
        self.start = start
        self.num_local = num_local
        self.num_classes = num_classes
        self.smoothing = options["smoothing"]
        self.prior = options["prior"]
        self.weight = options["weight"]
        self.ignore_index = options["ignore_index"]
        self.where = options["where"]
        self.reduction = options["reduction"]
        self.kl = options["kl"]
        self.z_loss = options["z_loss"]
        self.group = group
        self.batch_group = batch_group
        self.smoothing_vector = self._smoothing_vector()
        vector = self.prior if not isinstance(self.prior, str) else None
        if self.weight is not None:
            vector = self.weight if vector is None else vector * self.weight
        # This rank's part of v in lsr._core._smoothing_vector_sum (None: all ones).
        self.sum_vector = None if vector is None else vector[start : start + num_local]

    def _smoothing_vector(self):
        """``c`` with ``t = sum_k c_k z_k`` (minus ``w_y z_y / (K-1)`` for "others"), local part.

        ``c_k = w_k u_k`` for the class-independent part of ``u``: ``1/K`` with the GLOBAL
        K for "uniform", ``1/(K-1)`` for "others" (whose ``u`` is 0 on the target class,
        handled through ``z_y``), ``pi_k`` for a prior vector.
        """
        prior, weight = self.prior, self.weight
        if isinstance(prior, str):
            spread = 1.0 / (self.num_classes if prior == "uniform" else self.num_classes - 1)
            vector = None if weight is None else weight * spread
        else:
            vector = prior if weight is None else prior * weight
        if vector is None:
            return spread
        return vector[self.start : self.start + self.num_local]

    def positions(self, labels, like):
        # Global labels against the global K: which positions count, and NaN for ids out
        # of range that cannot be rejected (traced values), exactly as in the core.
        return _core._Positions(
            self.xp,
            labels,
            dense=False,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            where=self.where,
            like=like,
        )

    def target_weight(self, positions):
        """``w_y`` per position (1.0 without class weights): the full weight is on every rank."""
        if self.weight is None:
            return 1.0
        return _core._take(self.xp, self.weight, positions.safe_labels)

    def smooth_mass(self, target_weight):
        """``s = sum_k w_k u_k`` per position, with the global K."""
        return _core._smoothing_mass(
            self.xp, self.prior, self.weight, self.num_classes, target_weight
        )


def _local_ids(plan: _VocabParallelPlan, labels: torch.Tensor) -> torch.Tensor:
    """Labels as indices into this rank's slice; ids of other ranks fall outside [0, K_r)."""
    return labels.to(torch.int64) - plan.start


def _all_reduce(tensor: torch.Tensor, op: Any, group: Any) -> torch.Tensor:
    dist.all_reduce(tensor, op=op, group=group)
    return tensor


class _VocabParallelSmoothCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_shard, labels, plan):
        xp, axis = plan.xp, plan.axis
        dtype = _core.compute_dtype(xp, logits_shard.dtype)
        z = logits_shard.detach().to(dtype)

        # 1. The global max per position: only for stability (lse does not depend on it).
        row_max = _all_reduce(torch.amax(z, dim=axis, keepdim=True), dist.ReduceOp.MAX, plan.group)
        # A row of all -inf keeps lse = -inf, as in lsr._core.logsumexp.
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))

        # 2. One SUM of three per-position partial sums over this rank's classes.
        local_ids = _local_ids(plan, labels)
        in_shard = (local_ids >= 0) & (local_ids < plan.num_local)
        gathered = torch.gather(
            z, axis, torch.where(in_shard, local_ids, 0).unsqueeze(axis)
        ).squeeze(axis)
        if plan.sum_vector is None:
            vector_part = torch.sum(z, dim=axis)
        else:
            vector_part = _core._dot_classes(xp, z, plan.sum_vector, axis)
        partial = torch.stack(
            [
                torch.sum(torch.exp(z - row_max), dim=axis),
                torch.where(in_shard, gathered, torch.zeros_like(gathered)),
                vector_part,
            ]
        )
        sum_exp, target_logit, vector_sum = _all_reduce(partial, dist.ReduceOp.SUM, plan.group)

        # 3. The loss from global quantities, by the core's one formula.
        lse = torch.log(sum_exp) + row_max.squeeze(axis)
        positions = plan.positions(labels, z)
        target_mass = plan.target_weight(positions)
        loss = _core.combine_loss(
            xp,
            lse,
            labels,
            positions,
            target_mass,
            target_mass * target_logit,
            vector_sum,
            smoothing=plan.smoothing,
            prior=plan.prior,
            weight=plan.weight,
            axis=axis,
            num_classes=plan.num_classes,
            kl=plan.kl,
            z_loss=plan.z_loss,
        )
        if not isinstance(target_mass, float):
            target_mass = torch.broadcast_to(target_mass, loss.shape)
        denominator = _core._mean_denominator(
            xp, loss.shape, loss.dtype, positions, target_mass, plan.weight
        )
        result, denominator = _reduce(xp, loss, denominator, plan.reduction, plan.batch_group)

        ctx.plan = plan
        ctx.input_dtype = logits_shard.dtype
        ctx.denominator = denominator
        ctx.save_for_backward(logits_shard.detach(), labels, lse)
        return result

    @staticmethod
    def backward(ctx, cotangent):
        plan = ctx.plan
        xp, axis = plan.xp, plan.axis
        logits_shard, labels, lse = ctx.saved_tensors
        z = logits_shard.to(_core.compute_dtype(xp, logits_shard.dtype))
        positions = plan.positions(labels, z)
        scale = _position_scale(xp, cotangent, ctx.denominator, plan.reduction, positions, lse)

        # (sum_k w_k q'_k + 2 z_loss lse) softmax(z) - w q', on this rank's classes only
        # (lsr._core.smooth_ce_grad with the global lse, K and w_y).
        eps = plan.smoothing
        target_mass = plan.target_weight(positions)
        coefficient = (1.0 - eps) * target_mass + eps * plan.smooth_mass(target_mass)
        if plan.z_loss:
            coefficient = coefficient + 2.0 * plan.z_loss * lse
        on_target = (1.0 - eps) * target_mass
        if isinstance(plan.prior, str) and plan.prior == "others":
            on_target = on_target - eps * target_mass / (plan.num_classes - 1)
        vector = plan.smoothing_vector
        background = (
            eps * vector
            if isinstance(vector, float)
            else _core._along_axis(xp, eps * vector, z.ndim, axis)
        )
        is_target = _core.one_hot(
            _local_ids(plan, labels), plan.num_local, xp=xp, axis=axis, dtype=z.dtype
        )
        grad = (
            _expand(coefficient, axis) * torch.exp(z - lse.unsqueeze(axis))
            - _expand(on_target, axis) * is_target
            - background
        )
        grad = grad * scale.unsqueeze(axis)
        return grad.to(ctx.input_dtype), None, None


def _expand(value: Any, axis: int) -> Any:
    """A per-position value broadcast along the class axis (scalars stay as they are)."""
    return torch.unsqueeze(value, axis) if getattr(value, "ndim", 0) else value


def _reduce(xp, loss, denominator, reduction, batch_group):
    """``reduction`` of the per-position loss; with ``batch_group``, over all its ranks."""
    if reduction == "none":
        return loss, denominator
    total = torch.sum(loss)
    if batch_group is not None:
        if isinstance(denominator, int):
            denominator = torch.tensor(float(denominator), dtype=loss.dtype, device=loss.device)
        # Numerator and denominator in one call: the mean over the global batch.
        total, denominator = _all_reduce(
            torch.stack([total, denominator.to(loss.dtype)]), dist.ReduceOp.SUM, batch_group
        )
    if reduction == "sum":
        return total, denominator
    return _core._per_unit(xp, total, denominator), denominator


def _position_scale(xp, cotangent, denominator, reduction, positions, lse):
    """The cotangent of each position's loss (as in lsr._core.smooth_ce_grad)."""
    if reduction == "none":
        scale = cotangent
    else:
        if reduction == "mean":
            cotangent = _core._per_unit(xp, cotangent, denominator)
        scale = torch.broadcast_to(cotangent, lse.shape)
    return positions.mask(xp, scale).to(lse.dtype)


def vocab_parallel_smooth_ce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    batch_group: Any = None,
    shard_sizes: Sequence[int] | None = None,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    ignore_index: int | None = -100,
    weight: torch.Tensor | None = None,
    where: torch.Tensor | None = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
) -> torch.Tensor:
    r"""Smoothed cross-entropy of logits whose class axis is split across ``group``.

    Rank ``r`` of ``group`` holds ``logits[..., start_r:end_r]``: contiguous class
    slices in rank order (they may differ in size), and the same ``target`` (global class
    ids) on every rank. Every rank gets the loss that ``lsr.smooth_ce`` gives on the
    concatenated logits, and backpropagating it gives each rank exactly its slice of the
    single-process gradient: smoothing uses the global K (not the slice's size), and the
    global max, sum of exponentials, target logit and prior-weighted logit sum are
    combined with two all-reduces of per-position values (none in the backward pass).

    Argument names follow ``lsr.torch.smooth_ce``, but the class axis is the last one by
    default (not 1), where vocabulary-parallel output layers put it.

    Args:
        input: this rank's slice of the logits, shape ``(..., K_r, ...)`` with the
            classes on ``axis``; float16/bfloat16 are computed in float32 (the loss is
            float32, the gradient has the input's dtype).
        target: integer global class ids in [0, K), the input's shape without ``axis``;
            identical on every rank of ``group``.
        group: the process group that splits the classes (default: the whole world).
        batch_group: optional process group that splits the batch (data parallelism, as
            in ``data_parallel_smooth_ce``): "sum" and "mean" are then over the whole
            batch of that group, every rank getting the same value.
        shard_sizes: every rank's class count, in rank order. Default: all-gathered on
            every call (one all-gather of one integer per rank, a latency-bound collective
            before the two all-reduces); pass the sizes to skip it. Nothing is cached, so
            heads of different vocabularies may share a group.
        smoothing: epsilon in [0, 1].
        prior: ``"uniform"`` (``1/K`` with the global K), ``"others"``, or a class
            distribution: the whole (K,) vector, or this rank's (K_r,) slice of it (then
            gathered with one all-gather of K values per call; every rank must pass the
            same form).
        axis: the class axis. -1 (the vocabulary of ``(tokens, vocab)`` or
            ``(batch, time, vocab)`` logits, as vocabulary-parallel layers produce them).
        ignore_index: label that marks positions to leave out (PyTorch's -100 by
            default), or None.
        weight: per-class weights (PyTorch's semantics): the whole (K,) vector, or this
            rank's (K_r,) slice (gathered like ``prior``).
        where: optional boolean mask of positions to keep.
        reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept positions, or their
            ``w_y`` sum with ``weight``, as ``lsr.smooth_ce``).
        kl: return ``KL(q' || p)`` instead (the loss minus the target entropy).
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position.

    Returns:
        The loss, the same on every rank of ``group``: 0-d for "sum" and "mean", else
        the shape of ``target``.

    Raises:
        TypeError, ValueError: as ``lsr.smooth_ce``, against the global K (labels are
            checked on every rank before any per-position collective). Also ValueError for
            ``shard_sizes`` that do not match.

    Example:
        A one-rank group (with more ranks, each passes its own slice):

        >>> import torch, torch.distributed as dist
        >>> import lsr
        >>> from lsr._torch_distributed import vocab_parallel_smooth_ce
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]], requires_grad=True)
        >>> loss = vocab_parallel_smooth_ce(logits, torch.tensor([0, 1]), smoothing=0.1)
        >>> single = lsr.smooth_ce(logits, torch.tensor([0, 1]), smoothing=0.1)
        >>> print(round(loss.item(), 4), round(single.item(), 4))
        0.5047 0.5047
        >>> dist.destroy_process_group()

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
        Shoeybi et al. 2019, "Megatron-LM" (the vocabulary-parallel cross-entropy).
    """
    _check_tensors(input, target, weight=weight, prior=prior, where=where, smoothing=smoothing)
    _check_kl(kl)
    # Internally: this rank's logits and the global labels.
    logits_shard, labels = input, target
    xp = array_namespace(
        logits_shard, labels, weight, where, None if isinstance(prior, str) else prior
    )
    check_logits(xp, logits_shard, "input")
    axis = normalize_axis(axis, logits_shard.ndim)
    check_choice("reduction", reduction, REDUCTIONS)
    check_ignore_index(ignore_index)
    check_z_loss(z_loss)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type(
            "`target` must hold integer global class ids (dense targets are not split by class).",
            "target",
            target,
        )
    positions_shape = logits_shard.shape[:axis] + logits_shard.shape[axis + 1 :]
    if tuple(labels.shape) != tuple(positions_shape):
        fail_value(
            f"`target` must have the input's shape without the class axis {axis}, "
            f"{tuple(positions_shape)}.",
            "target",
            target,
        )
    if where is not None and (where.dtype != torch.bool or where.shape != positions_shape):
        fail_value(
            f"`where` must be a boolean mask of shape {tuple(positions_shape)}.", "where", where
        )
    group = _resolve_group(group)
    if batch_group is not None:
        _resolve_group(batch_group, "batch_group")
    num_local = logits_shard.shape[axis]
    if shard_sizes is None:
        sizes = _shard_sizes(num_local, group, logits_shard.device)
    else:
        sizes = _check_shard_sizes(shard_sizes, num_local, group)
    if min(sizes) < 1:
        # Every rank sees the same sizes, so every rank raises: no rank waits in a collective.
        fail_value("Every rank must hold at least one class.", "shard_sizes", sizes)
    rank = dist.get_rank(group)
    num_classes = sum(sizes)
    dtype = _core.compute_dtype(xp, logits_shard.dtype)
    prior = _whole_vector(prior, sizes, group)
    weight = _whole_vector(weight, sizes, group)
    check_label_range(xp, labels, num_classes, ignore_index, name="target")
    options = {
        "smoothing": check_smoothing(xp, smoothing, dtype),
        "prior": check_prior(xp, prior, num_classes, dtype),
        "weight": check_weight(xp, weight, num_classes, dtype),
        "ignore_index": ignore_index,
        "where": where,
        "reduction": reduction,
        "kl": kl,
        "z_loss": float(z_loss),
    }
    plan = _VocabParallelPlan(
        xp=xp,
        axis=axis,
        start=sum(sizes[:rank]),
        num_local=num_local,
        num_classes=num_classes,
        options=options,
        group=group,
        batch_group=batch_group,
    )
    return _VocabParallelSmoothCE.apply(logits_shard, labels, plan)


def _whole_vector(vector: Any, sizes: tuple[int, ...], group: Any) -> Any:
    """A (K,) class vector from this rank's (K_r,) slice (one all-gather), else as given.

    Only a tensor of exactly this rank's class count is taken for a slice; with more than
    one rank that count is below K, so a whole vector is never mistaken for a slice.
    """
    rank = dist.get_rank(group)
    if (
        len(sizes) == 1
        or not isinstance(vector, torch.Tensor)
        or tuple(vector.shape) != (sizes[rank],)
    ):
        return vector
    # all_gather wants equal sizes: pad every slice to the largest, then cut.
    padded = torch.zeros(max(sizes), dtype=vector.dtype, device=vector.device)
    padded[: sizes[rank]] = vector.detach()
    pieces = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(pieces, padded, group=group)
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)])


class _DataParallelSmoothCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, options, group):
        loss, lse, _, denominator = _core.per_position_loss(
            logits.detach(), labels, **{k: v for k, v in options.items() if k != "reduction"}
        )
        result, denominator = _reduce(options["xp"], loss, denominator, options["reduction"], group)
        ctx.options = options
        ctx.denominator = denominator
        ctx.save_for_backward(logits.detach(), labels, lse)
        return result

    @staticmethod
    def backward(ctx, cotangent):
        logits, labels, lse = ctx.saved_tensors
        options = dict(ctx.options)
        options.pop("kl")
        # The core's gradient of this rank's sum, divided by the GLOBAL denominator.
        grad = _core.smooth_ce_grad(logits, labels, lse, ctx.denominator, cotangent, **options)
        return grad, None, None, None


def data_parallel_smooth_ce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = 1,
    ignore_index: int | None = -100,
    weight: torch.Tensor | None = None,
    where: torch.Tensor | None = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
) -> torch.Tensor:
    r"""Smoothed cross-entropy of a batch split across the ranks of ``group``.

    Each rank passes whole logits for its own positions. "mean" is the mean over the
    global batch: the sum over all ranks divided by the number of kept positions (or
    their ``w_y`` sum with ``weight``) over all ranks, so a rank whose positions are
    mostly ``ignore_index`` counts for what it holds, not for a whole rank. One
    all-reduce of two scalars per call.

    Every rank returns the same global value, and the gradient of its own logits is
    exactly that rank's part of the single-process gradient of the global-batch loss.
    ``DistributedDataParallel`` AVERAGES parameter gradients over its ranks, so to get
    the global-batch gradient from it, backpropagate ``loss * world_size``.

    The arguments and defaults are those of ``lsr.torch.smooth_ce`` (``F.cross_entropy``'s
    conventions: class axis 1, ``ignore_index=-100``), plus ``group`` and ``where``.

    Args:
        input: this rank's logits, shape (C,), (N, C) or (N, C, d1, ...), classes on
            ``axis``; float16/bfloat16 are computed in float32.
        target: class ids (the input's shape without ``axis``) or dense targets.
        group: the process group that splits the batch (default: the whole world).
        smoothing, prior, axis, ignore_index, weight, where, kl, z_loss: as
            ``lsr.torch.smooth_ce`` and ``lsr.smooth_ce``.
        reduction: ``"mean"`` or ``"sum"`` over the global batch; ``"none"`` returns this
            rank's per-position losses (no collective).

    Returns:
        0-d for "sum" and "mean" (the same on every rank), else this rank's positions.

    Example:
        >>> import torch, torch.distributed as dist
        >>> from lsr._torch_distributed import data_parallel_smooth_ce
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> print(round(data_parallel_smooth_ce(logits, torch.tensor([0, -100])).item(), 4))
        0.3913
        >>> dist.destroy_process_group()
    """
    _check_tensors(input, target, weight=weight, prior=prior, where=where, smoothing=smoothing)
    group = _resolve_group(group)
    if input.ndim == 1 and axis == 1:
        axis = 0  # One unbatched position of C classes, as F.cross_entropy reads it.
    _, logits, labels, options = prepare_smooth_ce(
        input,
        target,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=None if target.is_floating_point() else ignore_index,
        weight=weight,
        where=where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    # Half precision comes back cast to float32 (a differentiable cast): the core computes
    # in float32 and autograd casts the gradient back to the input's dtype.
    return _DataParallelSmoothCE.apply(logits, labels, options, group)


def _check_tensors(input: Any, target: Any, *, weight: Any, prior: Any, where: Any, smoothing: Any):
    """Non-tensor arguments (a NumPy array, a list) get lsr's TypeError, not a library's."""
    for name, value in (("input", input), ("target", target)):
        if not isinstance(value, torch.Tensor):
            fail_type(f"`{name}` must be a torch.Tensor.", name, value)
    for name, value in (("weight", weight), ("where", where)):
        if value is not None and not isinstance(value, torch.Tensor):
            fail_type(f"`{name}` must be a torch.Tensor or None.", name, value)
    if not isinstance(prior, (str, torch.Tensor)):
        fail_type(
            "`prior` must be 'uniform', 'others' or a torch.Tensor of class probabilities.",
            "prior",
            prior,
        )
    if not isinstance(smoothing, (numbers.Real, torch.Tensor)):
        fail_type(
            "`smoothing` must be a real number in [0, 1] or a 0-d torch.Tensor.",
            "smoothing",
            smoothing,
        )


def _check_kl(kl: Any) -> bool:
    if not isinstance(kl, bool):
        fail_type("`kl` must be a bool.", "kl", kl)
    return kl

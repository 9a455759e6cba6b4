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
  labels) too heavily. ``data_parallel_smooth_bce`` is the same for the sigmoid loss:
  the core's ``binary_loss`` adds the sum and the count of kept elements up over the
  group.

Per step, the vocabulary-parallel loss all-reduces ``4 N`` values per rank (N the
number of positions) in the compute dtype, against ``N (K - K_r)`` values that gathering
the full logits would receive; see docs/scaling_out.md. Without
``shard_sizes`` each call also all-gathers every rank's class count (one integer per
rank): a small, latency-bound collective that passing ``shard_sizes`` avoids.

Over 500 lines because its three public functions share the group handling, the
argument checks and the all-reduce helpers; the arithmetic itself is the core's.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from lsr import _core
from lsr._aux import Aux
from lsr._checks import (
    check_logits,
    prepare_sharded_options,
    prepare_smooth_ce,
    sharded_vector_is_slice,
)
from lsr._compat import array_namespace
from lsr._validation import fail_type, fail_value, normalize_axis
from lsr.torch._arguments import (
    check_prior_type,
    check_tensor,
    checked_smoothing,
    traced_constants,
)
from lsr.torch._binary import forward_smooth_bce

__all__ = ["data_parallel_smooth_bce", "data_parallel_smooth_ce", "vocab_parallel_smooth_ce"]


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


def _all_reduce(tensor: torch.Tensor, op: Any, group: Any) -> torch.Tensor:
    dist.all_reduce(tensor, op=op, group=group)
    return tensor


def _all_reduce_sum(group: Any) -> Any:
    """The core's ``all_reduce_sum`` over ``group``: every array packed into one buffer,
    one SUM, unpacked (one collective however many sums the pass needs)."""

    def all_reduce_sum(arrays: list[torch.Tensor]) -> list[torch.Tensor]:
        dtype = arrays[0].dtype
        flat = torch.cat([torch.reshape(a.to(dtype), (-1,)) for a in arrays])
        if flat.requires_grad:
            # Under autograd (a loss whose options need gradients): the sum's gradient
            # with respect to this rank's part is 1, the other ranks' parts are constants.
            total = _all_reduce(flat.detach().clone(), dist.ReduceOp.SUM, group)
            flat = flat + (total - flat.detach())
        else:
            _all_reduce(flat, dist.ReduceOp.SUM, group)
        pieces = torch.split(flat, [a.numel() for a in arrays])
        return [p.reshape(a.shape) for p, a in zip(pieces, arrays, strict=True)]

    return all_reduce_sum


class _VocabParallelSmoothCE(torch.autograd.Function):
    """The core's class-sharded pass (``lsr._core.sharded_loss``) with gloo/NCCL
    collectives; the backward pass is the core's gradient on this rank's classes, from
    the saved global lse and class values (no collective). Outputs: the loss, then with
    ``spec.aux`` the four auxiliary outputs (no gradient)."""

    @staticmethod
    def forward(ctx, logits_shard, labels, spec, start, group, batch_group):
        xp = array_namespace(logits_shard)
        z = logits_shard.detach().to(_core.compute_dtype(xp, logits_shard.dtype))
        loss, lse, targets, values, extras = _core.sharded_loss(
            z,
            labels,
            spec,
            xp=xp,
            start=start,
            all_reduce_max=lambda x: _all_reduce(x, dist.ReduceOp.MAX, group),
            all_reduce_sum=_all_reduce_sum(group),
            # Every rank holds the whole (K,) vectors: w_y and the class totals are read
            # locally, and only the logits' three sums per position are all-reduced.
        )
        if batch_group is None:
            result, denominator = _core.reduce_with_denominator(
                xp, loss, targets.mean_denominator(), spec.reduction
            )
        else:  # The parts of the global denominator, added up over the batch group.
            result, denominator = _core.reduce_with_denominator(
                xp,
                loss,
                targets.denominator_parts(),
                spec.reduction,
                _all_reduce_sum(batch_group),
            )
        ctx.spec, ctx.start, ctx.values = targets.spec, start, values
        ctx.input_dtype = logits_shard.dtype
        ctx.denominator = denominator
        # (The global sum_k p_k log p_k per position, with a confidence penalty.)
        ctx.p_log_p = extras.get("p_log_p")
        ctx.save_for_backward(logits_shard.detach(), labels, lse)
        if not spec.aux:
            return result
        batch_sum = None if batch_group is None else _all_reduce_sum(batch_group)
        aux = _core.reduce_aux(
            xp, {name: extras[name] for name in _core.AUX_NAMES}, targets, spec.reduction, batch_sum
        )
        aux_values = tuple(aux[name] for name in _core.AUX_NAMES)
        ctx.mark_non_differentiable(*aux_values)
        return (result, *aux_values)

    @staticmethod
    def backward(ctx, cotangent, *aux_cotangents):
        logits_shard, labels, lse = ctx.saved_tensors
        xp = array_namespace(logits_shard)
        z = logits_shard.to(_core.compute_dtype(xp, logits_shard.dtype))
        grad = _core.smooth_ce_grad(
            z,
            labels,
            lse,
            ctx.denominator,
            cotangent.to(lse.dtype),
            ctx.spec,
            xp=xp,
            shard_start=ctx.start,
            values=ctx.values,
            exp_dot=ctx.p_log_p,
        )
        return grad.to(ctx.input_dtype), None, None, None, None, None


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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
) -> Any:
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
        smoothing: epsilon in [0, 1], or one per position of the target (not split).
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
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per
            position (Pereyra et al. 2017), H over all K classes (its sum is all-reduced
            with the others), with its exact gradient.
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` over all K
            classes, without gradient (see ``lsr.Aux``; with ``batch_group``, a "sum" or
            "mean" is over the whole batch, with one more all-reduce of five values).
            The correctness is counted in the loss's all-reduce (the label's logit at
            the global maximum, and no class before it there).

    Returns:
        The loss, the same on every rank of ``group``: 0-d for "sum" and "mean", else
        the shape of ``target``. With ``return_aux=True``, ``(loss, aux)``.

    Raises:
        TypeError, ValueError: as ``lsr.smooth_ce``, against the global K (labels are
            checked on every rank before any per-position collective). Also ValueError for
            ``shard_sizes`` that do not match.

    Example:
        A one-rank group (with more ranks, each passes its own slice):

        >>> import torch, torch.distributed as dist
        >>> import lsr
        >>> from lsr.torch import vocab_parallel_smooth_ce
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
    smoothing = _check_tensors(
        input, target, weight=weight, prior=prior, where=where, smoothing=smoothing
    )
    smoothing, z_loss, softcap, confidence_penalty = traced_constants(
        smoothing, z_loss, softcap, confidence_penalty
    )
    # Internally: this rank's logits and the global labels.
    logits_shard, labels = input, target
    xp = array_namespace(
        logits_shard, labels, weight, where, None if isinstance(prior, str) else prior
    )
    check_logits(xp, logits_shard, "input")
    axis = normalize_axis(axis, logits_shard.ndim)
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
    num_classes = sum(sizes)
    # (K_r,) slices are gathered whole, then checked like whole vectors (their sum, say).
    if sharded_vector_is_slice(prior, "prior", num_local, num_classes):
        prior = _whole_vector(prior, sizes, group)
    if sharded_vector_is_slice(weight, "weight", num_local, num_classes):
        weight = _whole_vector(weight, sizes, group)
    labels, spec = prepare_sharded_options(
        xp,
        logits_shard,
        labels,
        num_classes=num_classes,
        logits_name="input",
        labels_name="target",
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
    )
    start = sum(sizes[: dist.get_rank(group)])
    outputs = _VocabParallelSmoothCE.apply(logits_shard, labels, spec, start, group, batch_group)
    if not spec.aux:
        return outputs
    loss, *aux = outputs
    return loss, Aux(*aux)


def _whole_vector(vector: Any, sizes: tuple[int, ...], group: Any) -> torch.Tensor:
    """The (K,) class vector from every rank's slice: one all-gather."""
    rank = dist.get_rank(group)
    # all_gather wants equal sizes: pad every slice to the largest, then cut.
    padded = torch.zeros(max(sizes), dtype=vector.dtype, device=vector.device)
    padded[: sizes[rank]] = vector.detach()
    pieces = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(pieces, padded, group=group)
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)])


class _DataParallelSmoothCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, spec, group):
        xp = array_namespace(logits)
        logits = logits.detach()
        aux: dict[str, Any] = {}
        loss, lse, _ = _core.smooth_ce(
            logits, labels, spec.replace(reduction="none"), xp=xp, aux=aux
        )
        # The parts of the global denominator, added up over the group before PyTorch's
        # rule (a rank whose own kept weights sum to 0 must not make the mean NaN).
        parts = _core.denominator_parts(labels, spec, xp=xp, like=logits[:0])
        result, denominator = _core.reduce_with_denominator(
            xp, loss, parts, spec.reduction, _all_reduce_sum(group)
        )
        ctx.spec = spec
        ctx.denominator = denominator
        ctx.save_for_backward(logits, labels, lse)
        if not spec.aux:
            return result
        aux = _core.reduce_aux_values(xp, aux, parts[0], spec.reduction, _all_reduce_sum(group))
        aux_values = tuple(aux[name] for name in _core.AUX_NAMES)
        ctx.mark_non_differentiable(*aux_values)
        return (result, *aux_values)

    @staticmethod
    def backward(ctx, cotangent, *aux_cotangents):
        logits, labels, lse = ctx.saved_tensors
        # The core's gradient of this rank's sum, divided by the GLOBAL denominator.
        grad = _core.smooth_ce_grad(
            logits, labels, lse, ctx.denominator, cotangent, ctx.spec, xp=array_namespace(logits)
        )
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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
) -> Any:
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
        softcap, confidence_penalty: as ``lsr.torch.smooth_ce``.
        reduction: ``"mean"`` or ``"sum"`` over the global batch; ``"none"`` returns this
            rank's per-position losses (no collective).
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` without
            gradient, reduced like the loss over the global batch (a mean over the kept
            positions of every rank, added up in one more all-reduce).

    Returns:
        0-d for "sum" and "mean" (the same on every rank), else this rank's positions.
        With ``return_aux=True``, ``(loss, aux)``.

    Example:
        >>> import torch, torch.distributed as dist
        >>> from lsr.torch import data_parallel_smooth_ce
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> print(round(data_parallel_smooth_ce(logits, torch.tensor([0, -100])).item(), 4))
        0.3913
        >>> dist.destroy_process_group()
    """
    smoothing = _check_tensors(
        input, target, weight=weight, prior=prior, where=where, smoothing=smoothing
    )
    smoothing, z_loss, softcap, confidence_penalty = traced_constants(
        smoothing, z_loss, softcap, confidence_penalty
    )
    group = _resolve_group(group)
    if input.ndim == 1 and axis == 1:
        axis = 0  # One unbatched position of C classes, as F.cross_entropy reads it.
    _, logits, labels, spec = prepare_smooth_ce(
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
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
    )
    # Half precision comes back cast to float32 (a differentiable cast): the core computes
    # in float32 and autograd casts the gradient back to the input's dtype.
    outputs = _DataParallelSmoothCE.apply(logits, labels, spec, group)
    if not spec.aux:
        return outputs
    loss, *aux = outputs
    return loss, Aux(*aux)


def data_parallel_smooth_bce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    smoothing: float | torch.Tensor = 0.1,
    prior: float | str | torch.Tensor = 0.5,
    axis: int = -1,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    where: torch.Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Smoothed sigmoid (binary, multi-label) cross-entropy of a batch split across the
    ranks of ``group``.

    ``lsr.torch.smooth_bce`` (the same arguments and defaults, plus ``group``) where
    "mean" is the mean over the global batch: the sum over every rank's elements divided
    by the number of kept elements over all ranks (one all-reduce of two scalars per
    call), not the mean of the ranks' means, which would weigh a rank whose elements are
    mostly ``ignore_index`` or masked by ``where`` as much as a full one.

    Every rank returns the same global value, and the gradient of its own logits is
    exactly that rank's part of the single-process gradient. ``DistributedDataParallel``
    AVERAGES parameter gradients over its ranks: backpropagate ``loss * world_size`` to
    get the global-batch gradient from it.

    Each rank checks its own inputs before the all-reduce: a rank whose targets are
    invalid raises there while the others wait in the collective (as with any
    collective), so give every rank data prepared the same way.

    Args:
        input, target, smoothing, prior, axis, weight, pos_weight, where, ignore_index:
            as ``lsr.torch.smooth_bce``, for this rank's elements.
        group: the process group that splits the batch (default: the whole world).
        reduction: ``"mean"`` or ``"sum"`` over the global batch; ``"none"`` returns this
            rank's per-element losses (no collective).

    Returns:
        0-d for "sum" and "mean" (the same on every rank), else the input's shape.

    Example:
        >>> import torch, torch.distributed as dist
        >>> from lsr.torch import data_parallel_smooth_bce
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> target = torch.tensor([[1, 0, 1], [0, 1, 0]])
        >>> print(f"{data_parallel_smooth_bce(logits, target, smoothing=0.1).item():.4f}")
        0.3680
        >>> dist.destroy_process_group()
    """
    group = _resolve_group(group)
    return forward_smooth_bce(
        input,
        target,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        weight=weight,
        pos_weight=pos_weight,
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
        all_reduce_sum=None if reduction == "none" else _all_reduce_sum(group),
    )


def _check_tensors(
    input: Any, target: Any, *, weight: Any, prior: Any, where: Any, smoothing: Any
) -> Any:
    """Non-tensor arguments (a NumPy array, a list) get lsr's TypeError, not a library's.
    Returns the smoothing as ``checked_smoothing`` gives it (a NumPy scalar's number)."""
    check_tensor("input", input)
    check_tensor("target", target)
    for name, value in (("weight", weight), ("where", where)):
        if value is not None and not isinstance(value, torch.Tensor):
            fail_type(f"`{name}` must be a torch.Tensor or None.", name, value)
    check_prior_type(prior)
    return checked_smoothing("smoothing", smoothing, input)

"""Vocabulary-parallel smoothed cross-entropy for code written per device with ``shard_map``.

Inside ``jax.shard_map`` each device of the mesh axis ``axis_name`` holds
``logits[..., its classes]`` (equal contiguous slices, in axis-index order) and the same
global labels. The loss of a position depends on its logits only through a few sums over
the classes (``lsr._core``): ``lse = logsumexp(z)``, the target logit ``z_y`` and
``t = sum_k w_k u_k z_k``. Each is a sum of per-device parts, so one ``pmax`` of the
per-position maxima (for a stable logsumexp) and one ``psum`` of per-position partial
sums give them exactly; the (K,) vectors (``weight``, a prior) may be sharded the same way
and their sums join that ``psum``. Smoothing uses the global K, never the slice's size
(the Megatron-LM bug, its issues #737 and #7464).

The backward pass is JAX's own autodiff of this forward: the max is a stop-gradient
constant (``lse`` does not depend on it), and the transpose of a ``psum`` is a local
copy, so each device's gradient is its slice of the single-device gradient and the
backward pass needs no collective.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp

from lsr import _core
from lsr._checks import (
    check_ignore_index,
    check_label_range,
    check_logits,
    check_prior,
    check_smoothing,
    check_z_loss,
    index_labels,
    is_floating_dtype,
    is_integer_dtype,
    matchable_ignore_index,
)
from lsr._validation import REDUCTIONS, check_choice, fail_type, fail_value, normalize_axis

__all__ = ["vocab_parallel_smooth_ce"]


def _as_jax(x: Any) -> Any:
    if x is None or isinstance(x, jax.Array):
        return x
    return jnp.asarray(x)


def _axis_size(axis_name: Any, name: str) -> int:
    try:
        return jax.lax.axis_size(axis_name)
    except NameError as error:
        raise ValueError(
            f"`{name}` must name a mesh axis of the enclosing `jax.shard_map` "
            f"(call this function inside the mapped function). Received: {name}={axis_name!r}"
        ) from error


def _local_slice(xp, vector, name, num_local, num_classes, start, dtype):
    """This device's part of a (K,) vector given whole or already sliced (``(K_r,)``)."""
    shape = getattr(vector, "shape", None)
    if shape is None or tuple(shape) not in ((num_local,), (num_classes,)):
        fail_value(
            f"`{name}` must have shape ({num_classes},) (the whole vector) or "
            f"({num_local},) (this device's classes, sharded like the logits).",
            name,
            vector,
        )
    if not is_floating_dtype(xp, vector.dtype):
        fail_type(f"`{name}` must have a real floating dtype.", name, vector)
    vector = vector.astype(dtype)
    if tuple(shape) == (num_local,):
        return vector
    return jax.lax.dynamic_slice_in_dim(vector, start, num_local)


def vocab_parallel_smooth_ce(
    logits_shard: Any,
    labels: Any,
    *,
    axis_name: Any,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    ignore_index: int | None = None,
    weight: Any = None,
    where: Any = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
    batch_axis_name: Any = None,
) -> jax.Array:
    r"""Smoothed cross-entropy of logits whose class axis is split over a mesh axis.

    Call it inside ``jax.shard_map``: device ``r`` of ``axis_name`` holds
    ``logits[..., r * K_r:(r + 1) * K_r]`` (``in_specs=P(..., axis_name)``) and the global
    labels. Every device gets the loss that ``lsr.jax.smooth_ce`` gives on the whole
    logits, and differentiating it gives each device exactly its slice of the
    single-device gradient. Communication: one ``pmax`` and one ``psum`` of a few values
    per position (none in the backward pass); the logits never move.

    Args:
        logits_shard: this device's classes, shape ``(..., K_r, ...)`` with the classes
            on ``axis``; float16/bfloat16 are computed in float32. K = K_r times the size
            of ``axis_name``.
        labels: integer GLOBAL class ids in [0, K), the logits' shape without ``axis``
            (the same on every device of ``axis_name``).
        axis_name: the mesh axis that splits the classes.
        smoothing: epsilon in [0, 1] (a Python float or a jax scalar).
        prior: ``"uniform"`` (``1/K`` with the global K), ``"others"``, or a class
            distribution: the whole (K,) vector, or this device's (K_r,) slice of it.
        axis: the class axis.
        ignore_index: label that marks positions to leave out, or None.
        weight: per-class weights (PyTorch's semantics): the whole (K,) vector or this
            device's (K_r,) slice.
        where: optional boolean mask of the positions to keep.
        reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept positions, or their
            ``w_y`` sum with ``weight``, as ``lsr.jax.smooth_ce``).
        kl: return ``KL(q' || p)`` instead (the loss minus the target entropy).
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position.
        batch_axis_name: optional mesh axis (or axes) that splits the batch: "sum" and
            "mean" are then over the whole batch (the mean divides by the global number
            of kept positions, not the average of per-device means).

    Returns:
        The loss, the same on every device of ``axis_name``: 0-d for "sum" and "mean",
        else the shape of ``labels``.

    Raises:
        TypeError, ValueError: as ``lsr.jax.smooth_ce`` (at trace time; labels are checked
            against the global K when concrete), and ValueError when ``axis_name`` is not
            a mesh axis of the enclosing ``shard_map``.

    Example:
        >>> import numpy as np, jax, jax.numpy as jnp
        >>> from jax.sharding import Mesh, PartitionSpec as P
        >>> import lsr.jax
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("vocab",))
        >>> loss_fn = jax.shard_map(
        ...     lambda z, y: lsr.jax.vocab_parallel_smooth_ce(z, y, axis_name="vocab"),
        ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> print(f"{loss_fn(logits, jnp.array([0, 1])):.4f}")
        0.5047

    References:
        Shoeybi et al. 2019, "Megatron-LM" (vocabulary-parallel cross-entropy);
        Szegedy et al. 2016 (label smoothing).
    """
    xp = jnp
    logits_shard, labels = _as_jax(logits_shard), _as_jax(labels)
    weight, where = _as_jax(weight), _as_jax(where)
    if not isinstance(prior, str):
        prior = _as_jax(prior)
    if not isinstance(smoothing, numbers.Real):
        smoothing = _as_jax(smoothing)

    # Checks, all before any collective.
    check_logits(xp, logits_shard, "logits_shard")
    axis = normalize_axis(axis, logits_shard.ndim)
    check_choice("reduction", reduction, REDUCTIONS)
    check_ignore_index(ignore_index)
    check_z_loss(z_loss)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type(
            "`labels` must be integer global class ids (dense targets are not split by class).",
            "labels",
            labels,
        )
    position_shape = tuple(logits_shard.shape[:axis]) + tuple(logits_shard.shape[axis + 1 :])
    if tuple(labels.shape) != position_shape:
        fail_value(
            f"`labels` must have the logits' shape without the class axis {axis}, "
            f"{position_shape}.",
            "labels",
            labels,
        )
    if where is not None and (where.dtype != jnp.bool_ or tuple(where.shape) != position_shape):
        fail_value(f"`where` must be a boolean mask of shape {position_shape}.", "where", where)
    num_devices = _axis_size(axis_name, "axis_name")
    if batch_axis_name is not None:
        _axis_size(batch_axis_name, "batch_axis_name")
    num_local = logits_shard.shape[axis]
    num_classes = num_local * num_devices
    dtype = _core.compute_dtype(xp, logits_shard.dtype)
    # Values of concrete arrays (closed over, say) are checked even while being traced.
    with jax.ensure_compile_time_eval():
        # Compared by value in the index dtype (uint8 ids and ignore_index=-100, say).
        labels = index_labels(xp, labels)
        ignore_index = matchable_ignore_index(xp, ignore_index, labels.dtype)
        check_label_range(xp, labels, num_classes, ignore_index)
        eps = check_smoothing(xp, smoothing, dtype)
        if isinstance(prior, str) or tuple(prior.shape) == (num_classes,):
            # (Traced: a prior that is not a distribution comes back as NaN.)
            prior = check_prior(xp, prior, num_classes, dtype)
    start = jax.lax.axis_index(axis_name) * num_local
    prior_local = (
        None
        if isinstance(prior, str)
        else _local_slice(xp, prior, "prior", num_local, num_classes, start, dtype)
    )
    weight_local = (
        None
        if weight is None
        else _local_slice(xp, weight, "weight", num_local, num_classes, start, dtype)
    )

    z = logits_shard.astype(dtype)
    positions = _core._Positions(
        xp,
        labels,
        dense=False,
        num_classes=num_classes,
        ignore_index=ignore_index,
        where=where,
        like=z,
    )

    # 1. The global max per position, only for stability: lse does not depend on it, so
    #    it is a constant for autodiff (and pmax needs no derivative).
    row_max = jax.lax.pmax(jax.lax.stop_gradient(jnp.max(z, axis=axis, keepdims=True)), axis_name)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)

    # 2. Per-position partial sums over this device's classes, combined in one psum.
    local_ids = positions.safe_labels - start
    in_shard = (local_ids >= 0) & (local_ids < num_local)
    local_index = jnp.where(in_shard, local_ids, 0)

    def local_target(values):
        """``values[y]`` where this device holds class y, else 0 (summed over devices)."""
        if values.ndim == 1:
            picked = jnp.take(values, local_index)
        else:
            index = jnp.expand_dims(local_index, axis)
            picked = jnp.squeeze(jnp.take_along_axis(values, index, axis=axis), axis)
        return jnp.where(in_shard, picked, 0.0)

    # c_k with t = sum_k c_k z_k: w_k u_k without the target part of "others" (handled
    # through z_y below); 1/K and 1/(K-1) use the GLOBAL K.
    if prior_local is None:
        spread = 1.0 / (num_classes if prior == "uniform" else num_classes - 1)
        smoothing_vector = None if weight_local is None else spread * weight_local
    else:
        smoothing_vector = prior_local if weight_local is None else prior_local * weight_local
    if smoothing_vector is None:
        smooth_part = spread * jnp.sum(z, axis=axis)
    else:
        smooth_part = _core._dot_classes(xp, z, smoothing_vector, axis)
    per_position = {
        "sum_exp": jnp.sum(jnp.exp(z - row_max), axis=axis),
        "target_logit": local_target(z),
        "smooth_sum": smooth_part,
    }
    totals = {}
    if weight_local is not None:
        per_position["target_weight"] = local_target(weight_local)
        totals["weight_sum"] = jnp.sum(weight_local)
    if prior_local is not None:
        totals["prior_mass"] = jnp.sum(smoothing_vector)
        if kl:
            per_position["target_prior"] = local_target(prior_local)
            per_class = _xlogx(eps * prior_local)
            if weight_local is not None:
                per_class = per_class * weight_local
            totals["prior_entropy"] = jnp.sum(per_class)
    per_position, totals = jax.lax.psum((per_position, totals), axis_name)

    # 3. The loss from global quantities, combined as lsr._core.per_position_loss does:
    #    (1 - eps)(A lse - B) + eps (s lse - t), with A = w_y and B = w_y z_y.
    lse = jnp.log(per_position["sum_exp"]) + jnp.squeeze(row_max, axis)
    target_weight = per_position.get("target_weight", 1.0)
    target_sum = target_weight * per_position["target_logit"]
    smooth_sum = per_position["smooth_sum"]
    total_weight = totals.get("weight_sum", float(num_classes))
    if prior_local is not None:
        smooth_mass = totals["prior_mass"]
    elif prior == "uniform":
        smooth_mass = total_weight / num_classes
    else:  # "others": u = (1 - q) / (K - 1)
        smooth_mass = (total_weight - target_weight) / (num_classes - 1)
        smooth_sum = smooth_sum - target_sum / (num_classes - 1)
    loss = (1.0 - eps) * (target_weight * lse - target_sum) + eps * (smooth_mass * lse - smooth_sum)
    if kl:
        loss = loss + _negative_target_entropy(
            eps, prior, num_classes, target_weight, total_weight, per_position, totals
        )
    if z_loss:
        loss = loss + float(z_loss) * lse * lse
    if positions.out_of_range is not None:
        # A factor, not a select: NaN must reach the gradient too (a select would give the
        # bad position a zero gradient and a plausible-looking update).
        loss = loss * jnp.where(positions.out_of_range, jnp.nan, 1.0)
    if positions.valid is not None:
        loss = jnp.where(positions.valid, loss, 0.0)

    if reduction == "none":
        return loss
    total = jnp.sum(loss)
    if weight_local is not None:
        kept = jnp.broadcast_to(target_weight, loss.shape)
        if positions.valid is not None:
            kept = jnp.where(positions.valid, kept, 0.0)
        denominator = jnp.sum(kept)
    elif positions.valid is not None:
        denominator = jnp.sum(positions.valid.astype(loss.dtype))
    else:
        denominator = jnp.asarray(float(loss.size), loss.dtype)
    if batch_axis_name is not None:
        total, denominator = jax.lax.psum((total, denominator), batch_axis_name)
    if reduction == "sum":
        return total
    return _core._per_unit(xp, total, denominator)


def _negative_target_entropy(
    eps, prior, num_classes, target_weight, total_weight, per_position, totals
):
    """``sum_k w_k q'_k log q'_k`` per position (the KL form), from global quantities."""
    if isinstance(prior, str):
        if prior == "uniform":
            off, on = eps / num_classes, 1.0 - eps + eps / num_classes
        else:
            off, on = eps / (num_classes - 1), 1.0 - eps
        return target_weight * _xlogx(on) + (total_weight - target_weight) * _xlogx(off)
    target_prior = per_position["target_prior"]
    return (
        totals["prior_entropy"]
        - target_weight * _xlogx(eps * target_prior)
        + target_weight * _xlogx(1.0 - eps + eps * target_prior)
    )


def _xlogx(x: Any) -> Any:
    """x log x with 0 log 0 = 0 (the core's helper, on jax.numpy)."""
    return _core._xlogx(jnp, x)

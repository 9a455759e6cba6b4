"""Vocabulary-parallel smoothed cross-entropy for code written per device with ``shard_map``.

Inside ``jax.shard_map`` each device of the mesh axis ``axis_name`` holds
``logits[..., its classes]`` (equal contiguous slices, in axis-index order) and the same
global labels. The loss of a position depends on its logits only through a few sums over
the classes (``lsr._core``): ``sum_k exp(z_k - max)``, the target logit ``z_y`` and
``sum_k v_k z_k``. Each is a sum of per-device parts, so one ``pmax`` of the
per-position maxima (for a stable logsumexp) and one ``psum`` of per-position partial
sums give them exactly. The (K,) vectors (``weight``, a prior) are given whole, or as
this device's slice, gathered whole with one ``all_gather`` so that they are checked like
whole ones. Smoothing uses the global K, never the slice's size (the Megatron-LM bug, its
issues #737 and #7464).

All of it is the core's one pass (``lsr._core.sharded_loss``) with JAX's collectives
plugged in; this module only converts the arguments and gathers sliced vectors. The
backward pass is JAX's own autodiff of that pass: the max is a stop-gradient constant
(``lse`` does not depend on it), and the transpose of a ``psum`` is a local copy, so each
device's gradient is its slice of the single-device gradient and the backward pass needs
no collective.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp

from lsr import _core
from lsr._aux import as_aux
from lsr._checks import check_logits, prepare_sharded_options, sharded_vector_is_slice
from lsr._validation import normalize_axis
from lsr.jax._namespace import as_jax

__all__ = ["vocab_parallel_smooth_ce"]


def _axis_size(axis_name: Any, name: str) -> int:
    try:
        return jax.lax.axis_size(axis_name)
    except NameError as error:
        raise ValueError(
            f"`{name}` must name a mesh axis of the enclosing `jax.shard_map` "
            f"(call this function inside the mapped function). Received: {name}={axis_name!r}"
        ) from error


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
    reduction: str = "none",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    batch_axis_name: Any = None,
) -> Any:
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
        smoothing: epsilon in [0, 1] (a Python float, a jax scalar, or one per position
            of the labels, which are not split).
        prior: ``"uniform"`` (``1/K`` with the global K), ``"others"``, or a class
            distribution: the whole (K,) vector, or this device's (K_r,) slice of it
            (gathered with one ``all_gather`` of K values per call).
        axis: the class axis.
        ignore_index: label that marks positions to leave out, or None.
        weight: per-class weights (PyTorch's semantics): the whole (K,) vector or this
            device's (K_r,) slice.
        where: optional boolean mask of the positions to keep.
        reduction: ``"none"`` (the default, as ``lsr.jax.smooth_ce`` and optax), ``"sum"``
            or ``"mean"`` (over kept positions, or their ``w_y`` sum with ``weight``).
        kl: return ``KL(q' || p)`` instead (the loss minus the target entropy).
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position.
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per
            position (Pereyra et al. 2017), H over all K classes (its sum goes in the
            same ``psum``).
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` over all K
            classes, with zero gradient (see ``lsr.Aux``; with ``batch_axis_name``, a
            "sum" or "mean" is over the whole batch). The correctness is counted in the
            same ``psum`` (the label's logit at the global maximum, and no class before
            it there).
        batch_axis_name: optional mesh axis (or axes) that splits the batch: "sum" and
            "mean" are then over the whole batch (the mean divides by the global number
            of kept positions, not the average of per-device means).

    Returns:
        The loss, the same on every device of ``axis_name``: 0-d for "sum" and "mean",
        else the shape of ``labels``. With ``return_aux=True``, ``(loss, aux)``.

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
        >>> losses = loss_fn(logits, jnp.array([0, 1]))  # one per example, as smooth_ce
        >>> print(f"{losses.mean():.4f}", losses.shape)
        0.5047 (2,)

    References:
        Shoeybi et al. 2019, "Megatron-LM" (vocabulary-parallel cross-entropy);
        Szegedy et al. 2016 (label smoothing).
    """
    xp = jnp
    logits_shard, labels = as_jax(logits_shard, "logits_shard"), as_jax(labels)
    weight, where = as_jax(weight, "weight"), as_jax(where, "where")
    if not isinstance(prior, str):
        prior = as_jax(prior, "prior")
    if not isinstance(smoothing, numbers.Real):
        smoothing = as_jax(smoothing, "smoothing")
    check_logits(xp, logits_shard, "logits_shard")
    axis = normalize_axis(axis, logits_shard.ndim)
    num_local = logits_shard.shape[axis]
    num_classes = num_local * _axis_size(axis_name, "axis_name")
    if batch_axis_name is not None:
        _axis_size(batch_axis_name, "batch_axis_name")
    # A (K_r,) slice of a class vector is gathered whole (one all_gather of K values), so
    # that it is checked like a whole one: a prior whose slices do not add up to a
    # distribution is refused, or NaN when traced, never a plausible number.
    if sharded_vector_is_slice(prior, "prior", num_local, num_classes):
        prior = jax.lax.all_gather(prior, axis_name, tiled=True, to="invarying")
    if sharded_vector_is_slice(weight, "weight", num_local, num_classes):
        weight = jax.lax.all_gather(weight, axis_name, tiled=True, to="invarying")
    # Values of concrete arrays (closed over, say) are checked even while being traced.
    with jax.ensure_compile_time_eval():
        labels, spec = prepare_sharded_options(
            xp,
            logits_shard,
            labels,
            num_classes=num_classes,
            logits_name="logits_shard",
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
    start = jax.lax.axis_index(axis_name) * num_local

    def all_reduce_max(values):
        # Only for stability: lse does not depend on the max, so it is a constant for
        # autodiff (and pmax has no derivative rule).
        return jax.lax.pmax(jax.lax.stop_gradient(values), axis_name)

    def all_reduce_sum(values):
        return jax.lax.psum(values, axis_name)

    # The backward pass is JAX's autodiff of the core's pass: the transpose of a psum is
    # a local copy, so each device's gradient is its slice of the whole one.
    loss, _, targets, _, extras = _core.sharded_loss(
        logits_shard.astype(_core.compute_dtype(xp, logits_shard.dtype)),
        labels,
        spec,
        xp=xp,
        start=start,
        all_reduce_max=all_reduce_max,
        all_reduce_sum=all_reduce_sum,
    )
    batch_sum = None
    if batch_axis_name is None:
        result = _core.reduce(xp, loss, targets.mean_denominator(), reduction)
    else:

        def batch_sum(values):
            return jax.lax.psum(values, batch_axis_name)

        # The parts of the global denominator, added up over the batch axis before
        # PyTorch's rule (a device whose own kept weights sum to 0 must not make the mean
        # NaN).
        result, _ = _core.reduce_with_denominator(
            xp, loss, targets.denominator_parts(), reduction, batch_sum
        )
    if not spec.aux:
        return result
    aux = {name: extras[name] for name in _core.AUX_NAMES}
    aux = _core.reduce_aux(xp, aux, targets, reduction, batch_sum)
    return result, as_aux(aux, jax.lax.stop_gradient)

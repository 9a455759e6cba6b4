"""Validation shared by the generic functions and every adapter.

``prepare_smooth_ce`` checks everything that can be checked before computing (shapes,
dtypes and options always; values only when the arrays are concrete), resolves ``xp``,
casts to the compute dtype, and returns the keyword arguments of ``lsr._core.smooth_ce``.
Adapters call it first, then the core, so every backend raises the same errors.
"""

from __future__ import annotations

import numbers
from typing import Any

from lsr import _core
from lsr._compat import array_namespace, values_are_cheap
from lsr._validation import (
    PRIOR_NAMES,
    REDUCTIONS,
    check_choice,
    check_fraction,
    fail_type,
    fail_value,
    normalize_axis,
)


def cast(xp: Any, x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype``, without the copy that ``astype`` makes when it already is."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def is_integer_dtype(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, "integral")


def is_floating_dtype(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, "real floating")


def check_logits(xp: Any, logits: Any, name: str = "logits") -> None:
    if not is_floating_dtype(xp, logits.dtype):
        fail_type(f"`{name}` must have a real floating dtype.", name, logits)
    if logits.ndim < 1:
        fail_value(f"`{name}` must have at least one dimension (the class axis).", name, logits)


def _without(shape: tuple, axis: int) -> tuple:
    return tuple(shape[:axis]) + tuple(shape[axis + 1 :])


def check_label_range(
    xp: Any, labels: Any, num_classes: int, ignore_index: int | None, name: str = "labels"
) -> None:
    """Integer labels in [0, K) (or equal to ``ignore_index``); checked when concrete."""
    if not values_are_cheap(labels) or 0 in tuple(labels.shape):
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    any_bad = xp.any(bad)
    # Concrete labels closed over by a jitted function still compare to a tracer.
    if not values_are_cheap(any_bad):
        return
    if bool(any_bad):
        bad_values = labels[bad]
        allowed = f"integers in [0, {num_classes})"
        if ignore_index is not None:
            allowed += f" or ignore_index={ignore_index}"
        raise ValueError(
            f"`{name}` must hold class ids that are {allowed}; "
            f"{int(xp.sum(xp.astype(bad, labels.dtype)))} do not. "
            f"Received: {name} with min={int(xp.min(bad_values))}, max={int(xp.max(bad_values))}"
        )


def check_prior(xp: Any, prior: Any, num_classes: int, dtype: Any) -> Any:
    """A prior name, or a (K,) distribution cast to ``dtype`` (values checked when concrete)."""
    if isinstance(prior, str):
        check_choice("prior", prior, PRIOR_NAMES)
        if prior == "others" and num_classes < 2:
            fail_value(
                'prior="others" spreads smoothing over the other classes, so it needs at '
                "least 2 classes.",
                "num_classes",
                num_classes,
            )
        return prior
    shape = getattr(prior, "shape", None)
    if shape is None:
        fail_type(
            f"`prior` must be one of {PRIOR_NAMES} or an array of shape ({num_classes},).",
            "prior",
            prior,
        )
    if tuple(shape) != (num_classes,):
        fail_value(
            f"`prior` must have shape ({num_classes},), one entry per class.", "prior", prior
        )
    if not is_floating_dtype(xp, prior.dtype):
        fail_type("`prior` must have a real floating dtype.", "prior", prior)
    prior = cast(xp, prior, dtype)
    if values_are_cheap(prior):
        invalid = xp.any(prior < 0) | ~xp.all(xp.isfinite(prior))
        total = xp.sum(prior)
        # Concrete priors closed over by a jitted function still compute to tracers.
        if not values_are_cheap(total):
            return prior
        if bool(invalid):
            fail_value("`prior` must be finite and non-negative.", "prior", prior)
        total = float(total)
        tolerance = 1e-3 if dtype == xp.float32 else 1e-9
        if abs(total - 1.0) > tolerance * max(1.0, num_classes**0.5):
            raise ValueError(
                f"`prior` must sum to 1 (a distribution over the classes). "
                f"Received: prior summing to {total!r}"
            )
    return prior


def check_weight(xp: Any, weight: Any, num_classes: int, dtype: Any) -> Any:
    if weight is None:
        return None
    shape = getattr(weight, "shape", None)
    if shape is None or tuple(shape) != (num_classes,):
        fail_value(
            f"`weight` must be an array of shape ({num_classes},), one per class.", "weight", weight
        )
    if not is_floating_dtype(xp, weight.dtype):
        fail_type("`weight` must have a real floating dtype.", "weight", weight)
    return cast(xp, weight, dtype)


def check_smoothing(xp: Any, smoothing: Any, dtype: Any) -> Any:
    check_fraction("smoothing", smoothing)
    if isinstance(smoothing, numbers.Real):
        return float(smoothing)
    if not is_floating_dtype(xp, smoothing.dtype):
        fail_type("`smoothing` must be a float or a floating 0-d array.", "smoothing", smoothing)
    smoothing = cast(xp, smoothing, dtype)
    if values_are_cheap(smoothing) and not 0.0 <= float(smoothing) <= 1.0:
        fail_value("`smoothing` must be in [0, 1].", "smoothing", float(smoothing))
    return smoothing


def check_ignore_index(ignore_index: Any) -> None:
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        fail_type("`ignore_index` must be an integer or None.", "ignore_index", ignore_index)


def prepare_smooth_ce(
    logits: Any, labels: Any, **options: Any
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Validate, then return ``(xp, logits, labels, core keyword arguments)``.

    ``options``: those of ``check_smooth_ce``. ``logits`` (and dense ``labels``) come back
    in the compute dtype.
    """
    xp, labels, core_options = check_smooth_ce(logits, labels, **options)
    return xp, cast(xp, logits, _core.compute_dtype(xp, logits.dtype)), labels, core_options


def check_smooth_ce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Any,
    where: Any = None,
    reduction: str,
    kl: bool = False,
    z_loss: float = 0.0,
) -> tuple[Any, Any, dict[str, Any]]:
    """Validate, then return ``(xp, labels, core keyword arguments)``: what
    ``prepare_smooth_ce`` does without casting the logits to the compute dtype (for
    callers that convert them block by block). Dense ``labels`` come back in the compute
    dtype."""
    xp = array_namespace(
        logits,
        labels,
        weight,
        where,
        None if isinstance(prior, str) else prior,
        smoothing if hasattr(smoothing, "shape") else None,
    )
    check_logits(xp, logits)
    labels, options = prepare_options(
        xp,
        tuple(logits.shape),
        logits.dtype,
        labels,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    return xp, labels, options


def prepare_options(
    xp: Any,
    shape: tuple[int, ...],
    logits_dtype: Any,
    labels: Any,
    *,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Any,
    where: Any,
    reduction: str,
    kl: bool,
    z_loss: float,
) -> tuple[Any, dict[str, Any]]:
    """The checks of ``prepare_smooth_ce`` for logits of ``shape`` and ``logits_dtype``
    that need not exist (the fused linear loss never makes them)."""
    axis = normalize_axis(axis, len(shape))
    num_classes = shape[axis]
    check_choice("reduction", reduction, REDUCTIONS)
    check_ignore_index(ignore_index)
    if isinstance(z_loss, bool) or not isinstance(z_loss, numbers.Real) or z_loss < 0:
        fail_value("`z_loss` must be a non-negative number.", "z_loss", z_loss)
    dtype = _core.compute_dtype(xp, logits_dtype)

    if is_integer_dtype(xp, labels.dtype):
        dense = False
        expected = _without(shape, axis)
        if tuple(labels.shape) != expected:
            fail_value(
                f"Integer `labels` must have the logits' shape without the class axis "
                f"{axis}, {expected}.",
                "labels",
                labels,
            )
        check_label_range(xp, labels, num_classes, ignore_index)
        position_shape = expected
    elif is_floating_dtype(xp, labels.dtype):
        dense = True
        if tuple(labels.shape) != shape:
            fail_value(
                f"Dense (floating) `labels` must have the logits' shape {shape}.",
                "labels",
                labels,
            )
        if ignore_index is not None:
            fail_value(
                "`ignore_index` applies to integer class labels only; these labels are "
                "dense (floating). Use `where` to leave positions out.",
                "ignore_index",
                ignore_index,
            )
        labels = cast(xp, labels, dtype)
        position_shape = _without(shape, axis)
    else:
        fail_type(
            "`labels` must be integer class ids or floating (dense) targets.", "labels", labels
        )

    if where is not None:
        if where.dtype != xp.bool or tuple(where.shape) != position_shape:
            fail_value(
                f"`where` must be a boolean mask of shape {position_shape} "
                "(the logits' shape without the class axis).",
                "where",
                where,
            )
    return labels, {
        "xp": xp,
        "dense": dense,
        "smoothing": check_smoothing(xp, smoothing, dtype),
        "prior": check_prior(xp, prior, num_classes, dtype),
        "axis": axis,
        "ignore_index": ignore_index,
        "weight": check_weight(xp, weight, num_classes, dtype),
        "where": where,
        "reduction": reduction,
        "kl": bool(kl),
        "z_loss": float(z_loss),
    }


def prepare_linear_smooth_ce(
    hidden: Any,
    projection: Any,
    labels: Any,
    *,
    bias: Any,
    smoothing: Any,
    prior: Any,
    ignore_index: int | None,
    weight: Any,
    where: Any,
    reduction: str,
    kl: bool,
    z_loss: float,
    chunk_size: Any,
    projection_name: str = "projection",
    transposed: bool = False,
) -> tuple[Any, Any, dict[str, Any]]:
    """Validate the fused linear loss's arguments: ``(xp, labels, core keyword arguments)``.

    ``hidden`` (N, d); ``projection`` (d, K), or (K, d) with ``transposed`` (PyTorch's
    ``F.linear`` layout); ``bias`` (K,) or None; labels as for logits of shape (N, K).
    """
    xp = array_namespace(
        hidden,
        projection,
        bias,
        labels,
        weight,
        where,
        None if isinstance(prior, str) else prior,
        smoothing if hasattr(smoothing, "shape") else None,
    )
    check_logits(xp, hidden, "hidden")
    if hidden.ndim != 2 or hidden.shape[0] == 0:
        fail_value("`hidden` must have shape (N, d) with N >= 1.", "hidden", hidden)
    width = hidden.shape[1]
    expected = "(K, d)" if transposed else "(d, K)"
    if getattr(projection, "ndim", None) != 2 or projection.shape[1 if transposed else 0] != width:
        fail_value(
            f"`{projection_name}` must have shape {expected} with d = hidden.shape[-1] = {width}.",
            projection_name,
            projection,
        )
    for name, value in ((projection_name, projection), ("bias", bias)):
        if value is not None and value.dtype != hidden.dtype:
            fail_type(f"`{name}` must have the hidden states' dtype ({hidden.dtype}).", name, value)
    num_classes = projection.shape[0 if transposed else 1]
    if bias is not None and tuple(bias.shape) != (num_classes,):
        fail_value(f"`bias` must have shape ({num_classes},), one per class.", "bias", bias)
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, numbers.Integral)
        or chunk_size < 1
    ):
        fail_value("`chunk_size` must be a positive integer or None.", "chunk_size", chunk_size)
    labels, options = prepare_options(
        xp,
        (hidden.shape[0], num_classes),
        hidden.dtype,
        labels,
        smoothing=smoothing,
        prior=prior,
        axis=1,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    return xp, labels, options

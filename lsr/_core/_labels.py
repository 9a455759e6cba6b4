"""Targets as arrays, for the public ``smooth_labels`` and ``estimate_prior``."""

from __future__ import annotations

from typing import Any

from lsr._compat import device
from lsr._core import _ops
from lsr._typing import Array, Namespace


def one_hot(labels: Array, num_classes: int, *, xp: Namespace, axis: int, dtype: Any) -> Array:
    """One-hot targets with the class axis inserted at ``axis`` (of the result)."""
    ndim = labels.ndim + 1
    ids = _ops.class_ids(xp, labels, ndim, axis, num_classes, labels.dtype)
    return xp.astype(xp.expand_dims(labels, axis=axis) == ids, dtype)


def nan_where_out_of_range(
    targets: Array, labels: Array, num_classes: int, *, xp: Namespace, axis: int
) -> Array:
    """``targets`` (one-hot rows of ``labels``, class axis ``axis``) with NaN rows where a
    label is outside [0, K): what tracing leaves of the range check."""
    bad = xp.expand_dims((labels < 0) | (labels >= num_classes), axis=axis)
    return xp.where(bad, xp.nan, targets)


def estimate_prior(
    labels: Array,
    num_classes: int,
    *,
    xp: Namespace,
    ignore_index: int | None,
    pseudocount: float,
    dtype: Any,
) -> Array:
    """Class frequencies ``(count_k + pseudocount) / sum_j (count_j + pseudocount)``.

    Counted from the sorted labels (two binary searches per class): O(N + K) memory, no
    N x K one-hot. A label outside [0, K) that is not ``ignore_index`` (possible only
    under tracing, where values are not checked) makes the result NaN.
    """
    flat = xp.reshape(labels, (-1,))
    kept = None if ignore_index is None else flat != ignore_index
    in_range = (flat >= 0) & (flat < num_classes)
    bad = ~in_range if kept is None else kept & ~in_range
    if kept is not None:
        flat = xp.where(kept, flat, -1)
    ordered = xp.sort(flat)
    ids = xp.arange(num_classes, dtype=flat.dtype, device=device(labels))
    counts = xp.searchsorted(ordered, ids, side="right") - xp.searchsorted(
        ordered, ids, side="left"
    )
    counts = xp.astype(counts, dtype) + pseudocount
    prior = counts / xp.sum(counts)
    return xp.where(xp.any(bad), xp.nan, prior)

"""Array-API core of the calibration and representation metrics (``lsr.metrics``).

Pure code against a namespace ``xp``: no framework import, no value-dependent Python
branch (so it traces under ``jax.jit``), constants on the input's dtype and device. Inputs
are validated by ``lsr.metrics`` before they get here.

Binning is done with comparisons against the bin edges, one (N, n_bins) boolean
membership matrix summed over the examples, instead of a scatter-add: every namespace
has the comparisons and sums, and with n_bins around 15 the matrix is small.
"""

from __future__ import annotations

from typing import Any

from lsr import _core
from lsr._compat import device
from lsr._typing import Array, DType, Namespace


def top_label(
    xp: Namespace, scores: Array, labels: Array, *, axis: int, from_logits: bool
) -> tuple[Array, Array]:
    """Top-label confidence and correctness, both flattened to shape (N,).

    ``scores`` are logits (``from_logits``) or probabilities in a compute dtype; ``labels``
    are integer ids with ``axis`` removed. A label outside [0, K) makes its correctness
    NaN, so that under tracing (where it cannot raise) it never yields a plausible number.
    """
    num_classes = scores.shape[axis]
    row_max = xp.max(scores, axis=axis, keepdims=True)
    if from_logits:
        # max softmax = exp(max z - lse z), without forming the softmax.
        confidence = xp.exp(row_max - _core.logsumexp(xp, scores, axis))
    else:
        confidence = row_max
    confidence = xp.reshape(confidence, (-1,))
    predicted = xp.reshape(xp.argmax(scores, axis=axis), (-1,))
    labels = xp.reshape(labels, (-1,))
    in_range = (labels >= 0) & (labels < num_classes)
    safe_labels = xp.astype(xp.where(in_range, labels, 0), predicted.dtype)
    correct = xp.astype(predicted == safe_labels, confidence.dtype)
    correct = xp.where(in_range, correct, xp.nan)
    return confidence, correct


def bin_edges(xp: Namespace, n_bins: int, *, dtype: DType, like: Array) -> Array:
    """The n_bins + 1 equal-width edges ``j / n_bins`` in ``dtype`` on ``like``'s device."""
    steps = xp.arange(n_bins + 1, device=device(like))
    return xp.astype(steps, dtype) / n_bins


def bin_membership(xp: Namespace, confidence: Array, n_bins: int, *, right: bool) -> Array:
    """A (N, n_bins) one-hot matrix of each example's bin, in the confidences' dtype.

    ``right=True``: bins ``(lo, hi]`` (the first one also takes 0). ``right=False``: bins
    ``[lo, hi)`` (the last one also takes 1). The bin index is the number of interior
    edges the confidence has passed, so bins are defined by comparisons with the edges
    themselves and not by a rounded ``confidence * n_bins``.
    """
    edges = bin_edges(xp, n_bins, dtype=confidence.dtype, like=confidence)
    interior = xp.expand_dims(edges[1:n_bins], axis=0)
    column = xp.expand_dims(confidence, axis=1)
    passed = column > interior if right else column >= interior
    index = xp.sum(xp.astype(passed, _core.index_dtype(xp, confidence)), axis=1)
    bins = xp.arange(n_bins, device=device(confidence), dtype=index.dtype)
    return xp.astype(
        xp.expand_dims(index, axis=1) == xp.expand_dims(bins, axis=0), confidence.dtype
    )


def bin_statistics(
    xp: Namespace, confidence: Array, correct: Array, n_bins: int, *, right: bool
) -> tuple[Array, Array, Array]:
    """Per-bin mean confidence, accuracy (both 0 in empty bins) and count, each (n_bins,)."""
    membership = bin_membership(xp, confidence, n_bins, right=right)
    count = xp.sum(membership, axis=0)
    confidence_sum = xp.sum(membership * xp.expand_dims(confidence, axis=1), axis=0)
    correct_sum = xp.sum(membership * xp.expand_dims(correct, axis=1), axis=0)
    occupied = count > 0
    safe_count = xp.where(occupied, count, 1.0)
    mean_confidence = xp.where(occupied, confidence_sum / safe_count, 0.0)
    accuracy = xp.where(occupied, correct_sum / safe_count, 0.0)
    return mean_confidence, accuracy, count


def calibration_error(
    xp: Namespace, mean_confidence: Array, accuracy: Array, count: Array, norm: str
) -> Array:
    """Guo et al.'s binned calibration error from the per-bin statistics (a 0-d array).

    "l1": ``sum_b (n_b / N) |acc_b - conf_b|`` (ECE); "l2": the root of the same sum of
    squared gaps; "max": ``max_b |acc_b - conf_b|`` over bins (MCE; an empty bin has gap 0).
    """
    gap = xp.abs(accuracy - mean_confidence)
    if norm == "max":
        return xp.max(gap)
    proportion = count / xp.sum(count)
    if norm == "l1":
        return xp.sum(proportion * gap)
    return xp.sqrt(xp.sum(proportion * gap * gap))


def target_logits(xp: Namespace, logits: Array, labels: Array, axis: int) -> Array:
    """``z_y`` at every position (the class axis removed); labels must be in range."""
    index = xp.expand_dims(xp.astype(labels, _core.index_dtype(xp, logits)), axis=axis)
    return xp.squeeze(xp.take_along_axis(logits, index, axis=axis), axis=axis)


def nll_derivatives(
    xp: Namespace, logits: Array, target_logit: Array, inverse_temperature: float, axis: int
) -> tuple[float, float]:
    """First and second derivative of the mean NLL of softmax(b z) in b (Python floats).

    With ``p = softmax(b z)``: ``d/db NLL = mean_i (E_p[z_i] - z_{i,y_i})`` and
    ``d2/db2 NLL = mean_i Var_p[z_i] >= 0``, so the NLL is convex in the inverse
    temperature ``b`` and its derivative is non-decreasing: the minimizer is the unique
    root of the first derivative (or an end of the interval).
    """
    scaled = logits * inverse_temperature
    probabilities = xp.exp(scaled - _core.logsumexp(xp, scaled, axis))
    expected_logit = xp.sum(probabilities * logits, axis=axis, keepdims=True)
    deviation = logits - expected_logit
    variance = xp.sum(probabilities * deviation * deviation, axis=axis)
    first = xp.mean(xp.squeeze(expected_logit, axis=axis) - target_logit)
    return float(first), float(xp.mean(variance))


def mean_nll(
    xp: Namespace, logits: Array, target_logit: Array, temperature: Any, axis: int
) -> Array:
    """Mean NLL of softmax(z / T) at the labels (a 0-d array)."""
    scaled = logits / temperature
    lse = xp.squeeze(_core.logsumexp(xp, scaled, axis), axis=axis)
    return xp.mean(lse - target_logit / temperature)


def plane_projection(xp: Namespace, features: Array, templates: Array) -> tuple[Array, Array]:
    """Coordinates of ``features`` (N, D) in the plane through three ``templates`` (3, D).

    The basis (2, D) is Gram-Schmidt on ``t1 - t0`` and ``t2 - t0``; the coordinates are
    those of ``feature - t0`` on it (Müller et al. 2019, Figure 1).
    """
    origin = templates[0:1, :]
    first = templates[1, :] - templates[0, :]
    second = templates[2, :] - templates[0, :]
    first = first / xp.sqrt(xp.sum(first * first))
    second = second - xp.sum(second * first) * first
    second = second / xp.sqrt(xp.sum(second * second))
    basis = xp.stack([first, second], axis=0)
    coordinates = xp.matmul(features - origin, xp.matrix_transpose(basis))
    return coordinates, basis

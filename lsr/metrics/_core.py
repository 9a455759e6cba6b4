"""Array-API core of the calibration and representation metrics (``lsr.metrics``).

Pure code against a namespace ``xp``: no framework import, no value-dependent Python
branch (so it traces under ``jax.jit``), constants on the input's dtype and device. Inputs
are validated by ``lsr.metrics`` before they get here.

Binning is done with comparisons against the bin edges, one edge and then one bin at a
time over an (N, C) array (C = 1 column for the top label, K for classwise calibration),
instead of a scatter-add: every namespace has the comparisons and sums, the loops are
over n_bins (around 15, a static number), and memory stays at the inputs' size.
"""

from __future__ import annotations

import math
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


def classwise(
    xp: Namespace, scores: Array, labels: Array, *, axis: int, from_logits: bool
) -> tuple[Array, Array]:
    """Every class's probability and the indicator ``[label == k]``, both (N, K).

    The columns are the K one-dimensional problems of marginal (classwise) calibration.
    A label outside [0, K) makes its row of indicators NaN, as in ``top_label``.
    """
    num_classes = scores.shape[axis]
    probabilities = xp.exp(scores - _core.logsumexp(xp, scores, axis)) if from_logits else scores
    probabilities = _examples_by_classes(xp, probabilities, axis)
    labels = xp.reshape(labels, (-1, 1))
    in_range = (labels >= 0) & (labels < num_classes)
    index_type = _core.index_dtype(xp, probabilities)
    safe_labels = xp.astype(xp.where(in_range, labels, 0), index_type)
    classes = xp.arange(num_classes, dtype=index_type, device=device(probabilities))
    indicator = xp.astype(safe_labels == xp.expand_dims(classes, axis=0), probabilities.dtype)
    return probabilities, xp.where(in_range, indicator, xp.nan)


def _examples_by_classes(xp: Namespace, scores: Array, axis: int) -> Array:
    """``scores`` with the class axis last and every other axis flattened: (N, K).

    Only reshapes and ``matrix_transpose``, which every namespace lsr supports.
    """
    shape = tuple(scores.shape)
    num_classes = shape[axis]
    after = math.prod(shape[axis + 1 :])
    if after == 1:
        # -1, not the product of the leading sizes: a traced batch may have no static size.
        return xp.reshape(scores, (-1, num_classes))
    before = math.prod(shape[:axis])
    blocks = xp.matrix_transpose(xp.reshape(scores, (before, num_classes, after)))
    return xp.reshape(blocks, (before * after, num_classes))


def bin_edges(xp: Namespace, n_bins: int, *, dtype: DType, like: Array) -> Array:
    """The n_bins + 1 equal-width edges ``j / n_bins`` in ``dtype`` on ``like``'s device.

    Divided in Python (correctly rounded, then cast), not by the array library: XLA
    turns a division by a constant into a product with its reciprocal, which put 6/10
    at 0.6 + 1.1e-16 in JAX, so a confidence of exactly 0.6 fell on another side of the
    edge than in NumPy."""
    edges = [j / n_bins for j in range(n_bins + 1)]
    return xp.asarray(edges, dtype=dtype, device=device(like))


def equal_mass_edges(
    xp: Namespace, values: Array, n_bins: int, weights: Array | None = None
) -> Array:
    """(..., n_bins + 1, C) edges of bins holding equal numbers of each column's values.

    ``values`` are (..., N, C): C columns of N values, possibly for a batch of problems
    (the bootstrap's resamples) on leading axes. The rule of ``get_equal_bins`` in Kumar
    et al.'s ``uncertainty-calibration``: the n sorted values are split into
    ``min(n_bins, n)`` parts as ``numpy.array_split`` splits them (the first
    ``n % parts`` parts one longer), and each interior edge is the midpoint
    ``(last + next first) / 2`` of two neighbouring parts. The last edge is 1 and the
    first 0 (their first bin is open below). Where ``n_bins > n`` the edges left over
    are 1, bins (1, 1] that stay empty; tied values give repeated edges and empty bins,
    which the package removes (``set``) instead: the occupied bins are the same.

    ``weights`` (None, or whole numbers broadcastable to ``values``): a weight ``m``
    is the value repeated ``m`` times, so 0 leaves it out (the thresholded scope's
    predictions at or below the threshold) and ``n`` is each column's total weight.
    Without it, ``n = N``. The split points are computed from ``n`` as arrays, so this
    traces (``jax.jit``) like a sort even when ``n`` is a value.
    """
    *batch, size, columns = tuple(values.shape)
    rows = len(batch)  # the examples' axis, as a non-negative index
    place = device(values)
    index_type = _core.index_dtype(xp, values)
    first = xp.zeros((*batch, 1, columns), dtype=values.dtype, device=place)
    if n_bins == 1:  # no interior edge
        return xp.concat([first, xp.ones_like(first)], axis=rows)
    if weights is None:
        ordered = xp.sort(values, axis=rows)
        count = xp.full((*batch, 1, columns), size, dtype=index_type, device=place)
    else:
        order = xp.argsort(values, axis=rows)
        ordered = xp.take_along_axis(values, order, axis=rows)
        # Whole numbers (checked by the callers), totalled as integers: a running total
        # in float32 would stop counting at 2**24.
        weights = xp.astype(xp.broadcast_to(weights, values.shape), index_type)
        # Position p of the repeated sequence is the first sorted value whose running
        # total of weights exceeds p.
        running = xp.cumulative_sum(xp.take_along_axis(weights, order, axis=rows), axis=rows)
        count = running[..., size - 1 : size, :]
    start, exists = split_starts(xp, count, n_bins)

    def value_at(position: Array) -> Array:
        if weights is not None:
            position = entry_at(xp, running, position, axis=rows)
        # (An edge that does not exist reads any value: it is 1 whatever it reads.)
        position = xp.where(position < 0, 0, xp.where(position > size - 1, size - 1, position))
        return xp.take_along_axis(ordered, position, axis=rows)

    below, above = value_at(start - 1), value_at(start)
    middle = (below + above) / 2
    # Two neighbouring floats' midpoint can round up to the upper one, which would then
    # fall in the lower (lo, hi] bin; the lower value itself splits them the same way.
    interior = xp.where(exists, xp.where(middle < above, middle, below), 1.0)
    return xp.concat([first, interior, xp.ones_like(first)], axis=rows)


def split_starts(xp: Namespace, count: Array, n_bins: int) -> tuple[Array, Array]:
    """Where ``numpy.array_split`` starts parts 1 to n_bins - 1 of ``count`` sorted
    values split into ``parts = min(n_bins, count)`` parts, and whether each exists.

    ``count`` (..., 1, C) integers, one per column; returns two (..., n_bins - 1, C)
    arrays: part j starts at ``j * (n // parts) + min(j, n % parts)`` (the first
    ``n % parts`` parts one longer) and exists while ``j < parts``. Arrays of the count,
    not Python numbers, so that a count that is a value (a stream's, a thresholded
    class's) traces.
    """
    index_type = count.dtype
    part = xp.reshape(xp.arange(1, n_bins, dtype=index_type, device=device(count)), (n_bins - 1, 1))
    parts = xp.where(count < n_bins, count, n_bins)
    part_size = count // xp.where(parts > 0, parts, 1)
    longer = count - part_size * parts
    return part * part_size + xp.where(part < longer, part, longer), part < parts


def entry_at(xp: Namespace, running: Array, position: Array, *, axis: int) -> Array:
    """For each row of ``position`` (..., B, C), the entry along ``axis`` of ``running``
    (running totals of whole counts, (..., M, C)) that holds that 0-based position of
    the sequence the counts repeat: the number of running totals ``<= position``. An
    entry of count 0 is never chosen (its total equals the one before it)."""
    at = xp.astype(position, running.dtype)
    found = [
        xp.sum(
            xp.astype(running <= at[..., j : j + 1, :], position.dtype), axis=axis, keepdims=True
        )
        for j in range(position.shape[axis])
    ]
    return xp.concat(found, axis=axis)


def equal_mass_groups(
    xp: Namespace, count: Array, confidence_sum: Array, correct_sum: Array, n_bins: int
) -> tuple[Array, Array, Array]:
    """Per-bin sums (n_bins, C) of equal-mass bins made of groups of fine bins.

    ``count``, ``confidence_sum``, ``correct_sum`` (M, C): the sums of M fine bins (a
    stream's equal-width state, whole counts). The split rule of ``equal_mass_edges``
    on the examples the counts stand for, with each edge moved to the top of the fine
    bin that holds the last example before it: a fine bin is never cut. Where the two
    examples either side of an exact edge lie in different fine bins, every example
    falls in the same bin as with the exact edge; where they share one, that fine bin's
    examples all go below it. With the thresholded scope's counts (kept predictions
    only), each class is split on its own.
    """
    fine, columns = count.shape
    if n_bins == 1:  # no edge: one bin of everything
        return (
            xp.sum(count, axis=0, keepdims=True),
            xp.sum(confidence_sum, axis=0, keepdims=True),
            xp.sum(correct_sum, axis=0, keepdims=True),
        )
    index_type = _core.index_dtype(xp, count)
    # Whole counts (checked by the callers), totalled as integers (exact past 2**24).
    running = xp.cumulative_sum(xp.astype(count, index_type), axis=0)
    total = running[fine - 1 : fine, :]
    start, exists = split_starts(xp, total, n_bins)
    # The fine bin of each part's last example; a part that does not exist moves no edge.
    last = xp.where(exists, entry_at(xp, running, start - 1, axis=0), fine)
    place = device(count)
    index = xp.reshape(xp.arange(fine, dtype=index_type, device=place), (fine, 1))
    group = xp.zeros((fine, columns), dtype=index_type, device=place)
    for j in range(n_bins - 1):
        group = group + xp.astype(index > last[j : j + 1, :], index_type)
    sums = []
    for array in (count, confidence_sum, correct_sum):
        sums.append(
            xp.concat(
                [
                    xp.sum(xp.where(group == g, array, 0.0), axis=0, keepdims=True)
                    for g in range(n_bins)
                ],
                axis=0,
            )
        )
    return sums[0], sums[1], sums[2]


def bin_index(xp: Namespace, values: Array, interior: Array, *, right: bool) -> Array:
    """Each value's bin: the number of ``interior`` edges (rows of (..., B - 1, C)) it passed.

    ``right=True``: bins ``(lo, hi]`` (the first one also takes 0). ``right=False``: bins
    ``[lo, hi)`` (the last one also takes 1). Bins are defined by comparisons with the
    edges themselves, not by a rounded ``value * n_bins``. One edge at a time, so memory
    stays at the size of ``values`` (N, C) for any number of bins and classes.
    """
    # zeros_like, not zeros(values.shape): a traced TensorFlow batch may have no static size.
    index = xp.zeros_like(values, dtype=_core.index_dtype(xp, values))
    for row in range(interior.shape[-2]):
        edge = interior[..., row : row + 1, :]
        passed = values > edge if right else values >= edge
        index = index + xp.astype(passed, index.dtype)
    return index


def bin_sums(
    xp: Namespace,
    values: Array,
    targets: Array,
    edges: Array,
    *,
    right: bool,
    dtype: DType | None = None,
    weights: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Per-bin count, sum of values and sum of targets, each (..., B, C), in ``dtype``.

    ``values`` and ``targets`` are (..., N, C): C one-dimensional problems (one for the
    top label, K for classwise calibration), on leading axes possibly a batch of such
    problems (the bootstrap's resamples); ``edges`` (..., B + 1, C) or (B + 1, 1) are each
    column's bin edges. Values are binned in their own dtype (the edges' rounding is the
    batch function's) and summed in ``dtype`` (default: the values' dtype), so a stream
    of batches may accumulate in a wider type. Each bin's sums add its own members only
    (no differences of cumulative sums, which would cancel). Sums are additive over
    examples: the sums of two batches are the sums of their concatenation.

    ``weights`` (broadcastable to the values, e.g. (N, 1)): each example counts with its
    weight, in the count and in both sums; an integer weight ``m`` is the example
    repeated ``m`` times. A NaN target stays NaN whatever its weight.
    """
    dtype = values.dtype if dtype is None else dtype
    n_bins = edges.shape[-2] - 1
    index = bin_index(xp, values, edges[..., 1:n_bins, :], right=right)
    if values.dtype != dtype:
        values, targets = xp.astype(values, dtype), xp.astype(targets, dtype)
    if weights is not None:
        weights = xp.astype(weights, dtype) if weights.dtype != dtype else weights
        values, targets = values * weights, targets * weights
    rows = len(values.shape) - 2  # the examples' axis, as a non-negative index
    counts, value_sums, target_sums = [], [], []
    for b in range(n_bins):
        inside = index == b
        member = xp.astype(inside, dtype) if weights is None else xp.where(inside, weights, 0.0)
        counts.append(xp.sum(member, axis=rows))
        value_sums.append(xp.sum(xp.where(inside, values, 0.0), axis=rows))
        target_sums.append(xp.sum(xp.where(inside, targets, 0.0), axis=rows))
    return (
        xp.stack(counts, axis=rows),
        xp.stack(value_sums, axis=rows),
        xp.stack(target_sums, axis=rows),
    )


def bin_means(
    xp: Namespace, count: Array, value_sum: Array, target_sum: Array
) -> tuple[Array, Array]:
    """Per-bin mean value and mean target from the sums of ``bin_sums`` (0 in empty bins)."""
    occupied = count > 0
    safe_count = xp.where(occupied, count, 1.0)
    mean_value = xp.where(occupied, value_sum / safe_count, 0.0)
    mean_target = xp.where(occupied, target_sum / safe_count, 0.0)
    return mean_value, mean_target


def bin_statistics(
    xp: Namespace,
    values: Array,
    targets: Array,
    edges: Array,
    *,
    right: bool,
    weights: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Per-bin mean value, mean target (both 0 in empty bins) and count, each (..., B, C).

    ``bin_sums`` divided by the counts (weighted means and total weights with
    ``weights``); see there for the shapes.
    """
    count, value_sum, target_sum = bin_sums(
        xp, values, targets, edges, right=right, weights=weights
    )
    mean_value, mean_target = bin_means(xp, count, value_sum, target_sum)
    return mean_value, mean_target, count


#: The normal draws per bin of the l1 debiasing (Kumar et al.'s ``normal_debiased_ce``).
DEBIAS_RESAMPLES = 1000
# Draws made into arrays at a time: (draws, ..., bins, columns) up to this many values.
DRAW_BLOCK_VALUES = 1 << 22


def calibration_error(
    xp: Namespace,
    mean_confidence: Array,
    accuracy: Array,
    count: Array,
    norm: str,
    *,
    debias: bool = False,
    normals: Any = None,
) -> Array:
    """The binned calibration error from per-bin statistics (..., B, C) of C columns.

    Per column (Guo et al. 2017; Kumar et al. 2019): "l1": ``sum_b (n_b / N) |acc_b -
    conf_b|`` (ECE); "l2": the same sum of squared gaps; "max": ``max_b |acc_b - conf_b|``
    (MCE; an empty bin has gap 0). The columns are combined as ``uncertainty-calibration``
    combines classes: the mean of the l1 errors, the root of the mean of the squared l2
    errors, and (the limit of that rule) the largest of the max errors; one column is
    just its error. A column of zero total count (no example kept) is left out of the
    mean. Leading axes are a batch of problems (the bootstrap's resamples): the
    result has their shape, 0-d for none.

    ``debias``, l2: Kumar et al.'s unbiased estimate of each squared error, each bin's
    ``(acc_b - conf_b)**2 - acc_b (1 - acc_b) / (n_b - 1)`` (0 for bins of fewer than 2
    examples), weighted by ``n_b / N``, the column's sum clipped at 0. l1: their
    correction by resampling (``normal_debiased_ce``): ``2 e - mean_r e_r``, where ``e_r``
    is the error with each bin's accuracy drawn from ``N(acc_b, acc_b (1 - acc_b) / n_b)``,
    from ``normals`` (host standard normal draws (R, B, C), ``_inputs.debias_normals``).
    """
    error = _error(xp, mean_confidence, accuracy, count, norm, debias=debias, normals=normals)
    if not debias:
        return error
    # The debiasings count examples: a fractional (weighted) count has no such variance,
    # so the error is NaN (the public functions raise first when the values are concrete).
    whole = xp.all(count == xp.astype(xp.astype(count, xp.int64), count.dtype))
    return xp.where(whole, error, xp.nan)


def _error(
    xp: Namespace,
    mean_confidence: Array,
    accuracy: Array,
    count: Array,
    norm: str,
    *,
    debias: bool,
    normals: Any,
) -> Array:
    """``calibration_error``'s arithmetic."""
    bins, columns = len(count.shape) - 2, len(count.shape) - 1
    gap = xp.abs(accuracy - mean_confidence)
    # A column without any (weighted) example, possible in the thresholded scope, has no
    # error: it is left out of the mean over columns (all left out: NaN).
    total = xp.sum(count, axis=bins, keepdims=True)
    present = total > 0
    if norm == "max":
        any_present = xp.any(present, axis=(bins, columns))
        return xp.where(any_present, xp.max(gap, axis=(bins, columns)), xp.nan)
    proportion = xp.where(present, count / xp.where(present, total, 1.0), 0.0)
    present_columns = xp.astype(xp.squeeze(present, axis=bins), count.dtype)
    columns_seen = xp.sum(present_columns, axis=bins)

    def column_mean(per_column: Array) -> Array:
        seen = columns_seen > 0
        total = xp.sum(per_column * present_columns, axis=bins)
        return xp.where(seen, total / xp.where(seen, columns_seen, 1.0), xp.nan)

    if norm == "l1":
        per_column = xp.sum(proportion * gap, axis=bins)
        if debias:
            resampled = _mean_resampled_l1(
                xp, mean_confidence, accuracy, count, proportion, normals
            )
            per_column = 2.0 * per_column - resampled
        return column_mean(per_column)
    squared = gap * gap
    if debias:
        enough = count >= 2
        variance = accuracy * (1.0 - accuracy) / xp.where(enough, count - 1.0, 1.0)
        squared = xp.where(enough, squared - variance, 0.0)
    per_column = xp.sum(proportion * squared, axis=bins)
    if debias:
        # Clipped as the package clips; a NaN (a bad label under tracing) stays NaN.
        per_column = xp.where(per_column < 0.0, 0.0, per_column)
    return xp.sqrt(column_mean(per_column))


def _mean_resampled_l1(
    xp: Namespace,
    mean_confidence: Array,
    accuracy: Array,
    count: Array,
    proportion: Array,
    normals: Any,
) -> Array:
    """Per column (leading axes kept), the mean over the draws ``z`` of ``sum_b (n_b / N)
    |acc_b + sd_b z_b - conf_b|``, ``sd_b = sqrt(acc_b (1 - acc_b) / n_b)``: the l1 error
    with each bin's accuracy resampled from its normal approximation (an empty bin has
    weight 0; a bin of one 0/1 example has sd 0). The draws are made into device arrays
    a block at a time, so the device's memory stays bounded for many columns
    (classwise) or problems (the bootstrap's resamples); the host holds all of them
    (``DEBIAS_RESAMPLES x bins x columns`` float64), and under tracing they are
    constants of the program."""
    seen = count > 0
    variance = accuracy * (1.0 - accuracy) / xp.where(seen, count, 1.0)
    deviation = xp.sqrt(xp.where(seen, variance, 0.0))
    lead = len(count.shape) - 2
    draws = normals.shape[0]
    per_draw = math.prod(int(size) for size in count.shape if size is not None)
    block = max(1, DRAW_BLOCK_VALUES // max(1, per_draw))
    total = None
    for start in range(0, draws, block):
        part = normals[start : start + block]
        z = xp.asarray(part, dtype=count.dtype, device=device(count))
        z = xp.reshape(z, (part.shape[0], *(1,) * lead, *part.shape[1:]))
        gaps = xp.abs(accuracy + deviation * z - mean_confidence)
        errors = xp.sum(xp.sum(proportion * gaps, axis=-2), axis=0)
        total = errors if total is None else total + errors
    return total / draws


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

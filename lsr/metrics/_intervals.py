"""Bootstrap confidence intervals for the binned calibration error.

Kumar, Liang & Ma (2019), "Verified Uncertainty Calibration", report calibration errors
with bootstrap intervals (``get_calibration_error_uncertainties`` in their
``uncertainty-calibration`` package). Here: the resample indices are drawn on the host
by NumPy (``numpy.random.default_rng(seed).integers(0, N, size=(n_resamples, N))``,
documented so that anyone can redraw them); everything else (gathering the resampled
examples, binning, the error, the quantiles) is the scores' own namespace, with the
arithmetic of ``expected_calibration_error``, run on blocks of resamples at once.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from lsr import _core
from lsr._compat import device, is_concrete
from lsr._typing import Array, Namespace
from lsr._validation import check_choice, check_positive_int, fail_type, fail_value
from lsr.metrics import _core as metrics_core
from lsr.metrics._calibration import (
    binned_columns,
    calibration_columns,
    check_error_options,
    threshold_weights,
)
from lsr.metrics._inputs import (
    check_seed,
    check_whole_weights,
    debias_normals,
    generator,
    prepare_scores,
    prepare_weights,
)

__all__ = ["CalibrationInterval", "calibration_error_interval"]

METHODS = ("basic", "percentile")
# Resamples are gathered in blocks of at most this many values (resamples x N x C), so
# that memory stays near the inputs' size however many resamples are asked for.
BLOCK_VALUES = 1 << 22


class CalibrationInterval(NamedTuple):
    """A calibration error and its bootstrap confidence interval (0-d arrays).

    Attributes:
        estimate: the error of the data as given (``expected_calibration_error``).
        low: the interval's lower end.
        high: its upper end.
    """

    estimate: Array
    low: Array
    high: Array


def _check_interval_options(confidence: Any, n_resamples: Any, method: Any, seed: Any) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        fail_type("`confidence` must be a real number in (0, 1).", "confidence", confidence)
    if not 0.0 < float(confidence) < 1.0:
        fail_value(
            "`confidence` must be in (0, 1), e.g. 0.9 for a 90% interval.",
            "confidence",
            confidence,
        )
    check_positive_int("n_resamples", n_resamples)
    check_choice("method", method, METHODS)
    check_seed(seed)


def _quantile(xp: Namespace, ordered: Array, q: float) -> Array:
    """The ``q`` quantile of sorted values (R,), interpolated linearly between order
    statistics as ``numpy.percentile``'s default (``method="linear"``) does."""
    position = (ordered.shape[0] - 1) * q
    below = math.floor(position)
    above = min(below + 1, ordered.shape[0] - 1)
    fraction = position - below
    return ordered[below] + fraction * (ordered[above] - ordered[below])


def calibration_error_interval(
    logits_or_probs: Any,
    labels: Any,
    *,
    confidence: float = 0.9,
    n_resamples: int = 1000,
    seed: Any = 0,
    method: str = "basic",
    n_bins: int = 15,
    norm: str = "l1",
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
    binning: str = "equal_width",
    scope: str = "top_label",
    debias: bool = False,
    sample_weight: Any = None,
    threshold: float | None = None,
) -> CalibrationInterval:
    """The calibration error with a bootstrap confidence interval.

    The error is ``expected_calibration_error`` with the same keywords (with
    ``debias=True`` and ``norm="l1"``, its normal draws come from the generator after
    the resample indices: see Randomness below). The N examples
    (with ``sample_weight``: the N examples of positive weight; one of weight 0 is not
    in the data and is left out before resampling) are resampled with replacement
    ``n_resamples`` times; each resample's error is computed exactly as the error of
    those examples would be (equal-mass edges are recomputed on each resample; each
    example keeps its weight). With ``q_a`` the ``a``
    quantile of the resampled errors (linear interpolation, as ``numpy.percentile``)
    and ``a = (1 - confidence) / 2``:

    * ``method="basic"`` (default): ``[2 e - q_{1-a}, 2 e - q_a]`` around the estimate
      ``e``, the interval of Kumar et al.'s ``bootstrap_uncertainty`` (the
      ``uncertainty-calibration`` package; Efron & Tibshirani's basic bootstrap). The
      resampled errors are typically larger than ``e`` (binning noise only adds to the
      error), and this interval moves down by that bias. Near zero its ends can be
      negative; the error cannot be, so read a negative end as 0.
    * ``method="percentile"``: ``[q_a, q_{1-a}]``.

    Neither interval always contains the estimate: when the resampled errors all lie
    above ``e`` (a well-calibrated model, where the estimate is mostly noise), both miss
    it, each in its own direction.

    Randomness: the resample indices are drawn on the host, by NumPy:
    ``numpy.random.default_rng(seed).integers(0, N, size=(n_resamples, N))`` (row r is
    resample r), then, for ``debias=True`` with ``norm="l1"``, the normal draws of that
    correction from the same generator (one set for the estimate and every resample);
    the gathering and all arithmetic are the input's namespace, on its device. The
    same seed gives the same interval on every backend (up to the backends' rounding).
    The package's own function draws from NumPy's global state
    and treats its ``alpha=0.1`` as a percentage (a 99.9% interval); give it these
    indices and ``alpha = 100 (1 - confidence)`` percent to reproduce the numbers here
    (``tests/test_metrics_intervals.py`` does).

    Traceable (``jax.jit``, ``tf.function``): the resample indices (and normal draws)
    are host constants of the program and the loop over blocks of resamples is
    unrolled, so the traced interval is the eager one. Two things need values: the
    number of examples (a known shape), and with ``sample_weight`` which examples
    weigh 0, so weights are refused while tracing (a ``ValueError``). Traced, a bad
    value or a resample of the thresholded scope with nothing to measure makes the
    interval NaN; eagerly the latter raises. A NaN anywhere makes both ends NaN.

    Args:
        logits_or_probs, labels: as in ``expected_calibration_error``.
        confidence: the interval's nominal coverage, in (0, 1).
        n_resamples: the number of bootstrap resamples (>= 1; 1000 by default; Kumar
            et al.'s function uses 100).
        seed: a non-negative integer, a ``numpy.random.Generator`` (drawn from, so it
            advances), or None for fresh entropy. The default 0 makes the interval
            reproducible.
        method: ``"basic"`` or ``"percentile"``.
        n_bins, norm, from_logits, bin_edges: as in ``expected_calibration_error``.
        axis, binning, scope, debias: as in ``expected_calibration_error``.
        sample_weight, threshold: as in ``expected_calibration_error``.

    Returns:
        A ``CalibrationInterval`` (``estimate``, ``low``, ``high``) of 0-d arrays of the
        input's library, in the compute dtype.

    Raises:
        TypeError, ValueError: as ``expected_calibration_error``; a ``confidence``
            outside (0, 1), ``n_resamples`` < 1, an unknown ``method``, a ``seed`` that
            is not a non-negative integer, a Generator or None; for the thresholded
            scope, a resample with no prediction above the threshold (its error is
            undefined).

    Example:
        Guo et al.'s setting, 200 predictions at confidence 0.9 of which 70% are right:

        >>> import numpy as np
        >>> from lsr.metrics import calibration_error_interval
        >>> probs = np.array([[0.9, 0.1]] * 200)
        >>> labels = np.array([0] * 140 + [1] * 60)
        >>> ece, low, high = calibration_error_interval(probs, labels, from_logits=False)
        >>> print(round(float(ece), 2), float(low) < 0.2 < float(high))
        0.2 True
    """
    right, threshold = check_error_options(
        n_bins=n_bins,
        norm=norm,
        bin_edges=bin_edges,
        binning=binning,
        scope=scope,
        debias=debias,
        threshold=threshold,
    )
    _check_interval_options(confidence, n_resamples, method, seed)
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    weights = prepare_weights(xp, sample_weight, labels, scores.dtype)
    weights = check_whole_weights(xp, weights, sample_weight, debias=debias, binning=binning)
    values, targets = calibration_columns(
        xp, scores, labels, axis=axis, from_logits=from_logits, scope=scope
    )
    if None in tuple(values.shape):
        fail_value(
            "calibration_error_interval needs the number of examples (and of classes) "
            "to draw the resamples: give inputs of known shape (a tf.function traced "
            "with a batch of unknown size has none).",
            "logits_or_probs.shape",
            tuple(scores.shape),
        )
    if weights is not None:
        if not is_concrete(weights):
            fail_value(
                "calibration_error_interval with sample_weight reads the weights (an "
                "example of weight 0 is not resampled, and which ones those are is a "
                "value): call it outside jax.jit / tf.function / torch.compile, or "
                "without sample_weight there.",
                "sample_weight",
                sample_weight,
            )
        # An example of weight 0 is not in the data (a weight m counts it m times): it
        # is left out before resampling, so that no resample is only such examples.
        present = xp.nonzero(xp.reshape(weights, (-1,)) > 0)[0]
        values, targets, weights = (xp.take(a, present, axis=0) for a in (values, targets, weights))
    if scope == "thresholded":
        weights = threshold_weights(xp, values, weights, threshold)

    size, columns = values.shape
    rng = generator(seed)
    indices = rng.integers(0, size, size=(n_resamples, size))
    # The l1 debiasing's normal draws, after the indices: the same for every resample.
    normals = debias_normals(rng, n_bins, columns) if debias and norm == "l1" else None

    def errors(values: Array, targets: Array, weights: Array | None) -> Array:
        mean_value, mean_target, count, _ = binned_columns(
            xp, values, targets, n_bins=n_bins, right=right, binning=binning, weights=weights
        )
        return metrics_core.calibration_error(
            xp, mean_value, mean_target, count, norm, debias=debias, normals=normals
        )

    estimate = errors(values, targets, weights)

    block = max(1, BLOCK_VALUES // (size * columns))
    index_type, place = _core.index_dtype(xp, values), device(values)
    resampled = []
    for start in range(0, n_resamples, block):
        rows = indices[start : start + block]
        flat = xp.asarray(rows.reshape(-1), dtype=index_type, device=place)
        shape = (rows.shape[0], size, -1)

        def take(array: Array, flat: Array = flat, shape: tuple = shape) -> Array:
            return xp.reshape(xp.take(array, flat, axis=0), shape)

        resampled.append(
            errors(take(values), take(targets), None if weights is None else take(weights))
        )
    every = xp.concat(resampled, axis=0)
    # (A NaN input gives NaN errors, as ``expected_calibration_error`` does: only the
    # thresholded scope's empty resamples are refused here.)
    undefined = 0
    if scope == "thresholded" and is_concrete(every):
        undefined = int(xp.sum(xp.astype(xp.isnan(every), xp.int32)))
    if undefined and bool(xp.isfinite(estimate)):
        # (Every resample has a positive total weight; only the thresholded scope can
        # leave one with no prediction to measure.)
        fail_value(
            f"The calibration error of {undefined} of the {n_resamples} resamples is "
            "undefined: none of their predictions is above `threshold`, so the interval "
            "would be of the others only. Give a lower threshold (or more examples).",
            "threshold",
            threshold,
        )
    ordered = xp.sort(every)
    tail = (1.0 - float(confidence)) / 2.0
    lower, upper = _quantile(xp, ordered, tail), _quantile(xp, ordered, 1.0 - tail)
    if method == "basic":
        lower, upper = 2.0 * estimate - upper, 2.0 * estimate - lower
    # A NaN error anywhere (a NaN input; traced, a bad value or an empty thresholded
    # resample) makes both ends NaN: sorted last, it would leave a plausible lower end.
    poisoned = xp.any(xp.isnan(every)) | xp.isnan(estimate)
    lower, upper = (xp.where(poisoned, xp.nan, end) for end in (lower, upper))
    return CalibrationInterval(estimate, lower, upper)

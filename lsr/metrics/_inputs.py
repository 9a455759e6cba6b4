"""Validation of the (scores, labels) pairs that the calibration and temperature metrics take.

Each check raises with the grammar of ``lsr._validation``; value checks run only on
concrete arrays. What passes comes back in the compute dtype, ready for ``_core``.
"""

from __future__ import annotations

import numbers
from typing import Any

from lsr import _core
from lsr._checks import cast, check_label_range, check_logits, is_integer_dtype
from lsr._compat import array_namespace, is_concrete
from lsr._typing import Array, DType, Namespace
from lsr._validation import fail_type, fail_value, normalize_axis
from lsr.metrics import _core as metrics_core

__all__ = ["check_bool", "prepare_scores", "prepare_weights"]


def check_seed(seed: Any) -> None:
    """``seed``: a non-negative integer, a ``numpy.random.Generator`` or None."""
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            fail_value("`seed` must be a non-negative integer.", "seed", seed)
        return
    import numpy as np

    if not isinstance(seed, np.random.Generator):
        fail_type(
            "`seed` must be a non-negative integer, a numpy.random.Generator or None.",
            "seed",
            seed,
        )


def generator(seed: Any) -> Any:
    """The NumPy generator of a checked ``seed`` (a Generator is drawn from as it is)."""
    import numpy as np

    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def debias_normals(seed: Any, n_bins: int, columns: int) -> Any:
    """The host's standard normal draws of the l1 debiasing (``_core.DEBIAS_RESAMPLES``
    of them per bin and column): ``default_rng(seed).standard_normal((1000, n_bins,
    columns))``, documented so that anyone can redraw them."""
    return generator(seed).standard_normal((metrics_core.DEBIAS_RESAMPLES, n_bins, columns))


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail_type(f"`{name}` must be True or False.", name, value)


def _probability_tolerance(xp: Namespace, dtype: DType) -> float:
    if dtype == xp.float64:
        return 1e-6
    return 1e-3 if dtype == xp.float32 else 1e-2


def _check_probabilities(xp: Namespace, probs: Array, axis: int, name: str) -> None:
    """Probabilities in [0, 1] that sum to 1 over ``axis`` (checked when concrete)."""
    valid = xp.all(xp.isfinite(probs) & (probs >= 0) & (probs <= 1))
    # (Concrete probabilities closed over by a jitted function still give a tracer.)
    if not is_concrete(valid):
        return
    if not bool(valid):
        fail_value(
            f"With from_logits=False, `{name}` must hold probabilities in [0, 1]; pass "
            "logits with from_logits=True otherwise.",
            name,
            probs,
        )
    totals = xp.sum(cast(xp, probs, _core.compute_dtype(xp, probs.dtype)), axis=axis)
    worst = float(xp.max(xp.abs(totals - 1.0)))
    if worst > _probability_tolerance(xp, probs.dtype):
        raise ValueError(
            f"With from_logits=False, `{name}` must sum to 1 over the class axis {axis}; "
            "pass logits with from_logits=True otherwise. "
            f"Received: {name} whose sums differ from 1 by up to {worst:.3g}"
        )


def prepare_scores(
    scores: Any, labels: Any, *, axis: Any, from_logits: Any, name: str = "logits_or_probs"
) -> tuple[Any, Array, Array, int]:
    """Validate a (scores, integer labels) pair; return ``(xp, scores, labels, axis)``.

    ``scores`` come back in the compute dtype (float32 for half precision).
    """
    xp = array_namespace(scores, labels)
    check_bool("from_logits", from_logits)
    check_logits(xp, scores, name)
    axis = normalize_axis(axis, scores.ndim)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type("`labels` must be integer class ids.", "labels", labels)
    expected = tuple(scores.shape[:axis]) + tuple(scores.shape[axis + 1 :])
    if tuple(labels.shape) != expected:
        fail_value(
            f"`labels` must have the shape of `{name}` without the class axis {axis}, {expected}.",
            "labels",
            labels,
        )
    num_classes = scores.shape[axis]
    # (0 in expected, not a product: under tf.function a batch may have no static size.)
    if num_classes == 0 or 0 in expected:
        fail_value(f"`{name}` must hold at least one example and one class.", name, scores)
    check_label_range(xp, labels, num_classes, None)
    if not from_logits:
        _check_probabilities(xp, scores, axis, name)
    return xp, cast(xp, scores, _core.compute_dtype(xp, scores.dtype)), labels, axis


def whole_counts(xp: Namespace, counts: Array) -> Array:
    """Whether every value is a whole number (what the debiased estimators count)."""
    return xp.all(counts == xp.astype(xp.astype(counts, xp.int64), counts.dtype))


def check_counts_for_debias(
    xp: Namespace, counts: Array, name: str, value: Any, *, equal_mass: bool = False
) -> Array:
    """``debias=True`` counts examples (their variance is of a number of 0/1 outcomes),
    and so do equal-mass bins made from a stream's counts (``equal_mass``): weights
    must be whole numbers, a weight ``m`` being the example repeated ``m`` times.
    Checked when concrete; traced, the error is made NaN instead. Returns the
    predicate (a 0-d bool array, concrete or traced)."""
    whole = whole_counts(xp, counts)
    if is_concrete(whole) and not bool(whole):
        why = (
            "binning='equal_mass' splits the counted examples by their number"
            if equal_mass
            else "debias=True counts examples"
        )
        fail_value(
            f"{why}: the weights must be whole numbers (a weight m is the example "
            "repeated m times); fractional weights have no such count, and the error "
            "would change with their scale.",
            name,
            value,
        )
    return whole


def check_whole_weights(
    xp: Namespace, weights: Array | None, sample_weight: Any, *, debias: bool, binning: str
) -> Array | None:
    """The weights (from ``prepare_weights``), checked where the estimator counts
    examples: the debiased estimators and equal-mass bins (which split the examples by
    their number) need whole numbers, a weight ``m`` being the example repeated ``m``
    times. Checked when concrete; traced, not whole makes every weight NaN for
    equal-mass bins (the debiased error is made NaN by ``calibration_error``)."""
    if weights is None or not (debias or binning == "equal_mass"):
        return weights
    whole = check_counts_for_debias(
        xp, weights, "sample_weight", sample_weight, equal_mass=binning == "equal_mass"
    )
    if binning == "equal_mass" and not is_concrete(whole):
        return xp.where(whole, weights, xp.nan)
    return weights


def prepare_weights(
    xp: Namespace, sample_weight: Any, labels: Array, dtype: DType, *, whole: bool = True
) -> Array | None:
    """``sample_weight`` (None, or one weight per example: the labels' shape) as a
    (N, 1) column in ``dtype``, the layout of ``_core.top_label``/``classwise``'s rows.

    Floating or integer, and (checked when concrete) finite, non-negative, with a
    positive sum: a weight ``m`` counts the example ``m`` times, and a zero total leaves
    no example to measure. ``whole=False`` (a streaming update, one batch of a larger
    stream) allows a zero total. Under tracing, where the values cannot be checked, a
    bad weight anywhere makes every weight NaN, so the result is NaN rather than a
    plausible number.
    """
    if sample_weight is None:
        return None
    array_namespace(sample_weight, labels)  # one library (raises for a mix)
    dtype_of = sample_weight.dtype
    if not (xp.isdtype(dtype_of, "real floating") or is_integer_dtype(xp, dtype_of)):
        fail_type(
            "`sample_weight` must be a real floating or integer array (one weight per example).",
            "sample_weight",
            sample_weight,
        )
    if tuple(sample_weight.shape) != tuple(labels.shape):
        fail_value(
            f"`sample_weight` must have the shape of `labels`, {tuple(labels.shape)}: one "
            "weight per example.",
            "sample_weight",
            sample_weight,
        )
    weights = cast(xp, sample_weight, dtype)
    valid = xp.all(xp.isfinite(weights) & (weights >= 0))
    positive = xp.sum(weights) > 0
    # (Tested on the results, not the weights: concrete weights closed over by a jitted
    # function still compute to tracers.)
    if not (is_concrete(valid) and is_concrete(positive)):
        weights = xp.where(valid & positive if whole else valid, weights, xp.nan)
    else:
        if not bool(valid):
            fail_value(
                "`sample_weight` must hold finite, non-negative weights.",
                "sample_weight",
                sample_weight,
            )
        if whole and not bool(positive):
            fail_value(
                "`sample_weight` must have a positive sum (all-zero weights leave no "
                "example to measure).",
                "sample_weight",
                sample_weight,
            )
    return xp.reshape(weights, (-1, 1))

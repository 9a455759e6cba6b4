"""Calibration: reliability diagrams, expected calibration error, NLL.

Guo et al. (2017), "On Calibration of Modern Neural Networks" (top-label, equal-width
bins); Kumar, Liang & Ma (2019), "Verified Uncertainty Calibration" (equal-mass bins,
classwise calibration, the debiased l2 estimator). The arithmetic (binning, the error's
norms) is in ``_core``; this module validates and documents (over 500 lines because
the public docstrings, each with its estimator's definition, are most of it).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from lsr._compat import is_concrete
from lsr._typing import Array
from lsr._validation import check_choice, check_positive_int, fail_type, fail_value
from lsr.metrics import _core as metrics_core
from lsr.metrics._inputs import (
    check_bool,
    check_seed,
    check_whole_weights,
    debias_normals,
    prepare_scores,
    prepare_weights,
)

__all__ = [
    "ReliabilityDiagram",
    "binned_columns",
    "calibration_columns",
    "check_error_options",
    "check_threshold",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_diagram",
    "threshold_weights",
]

NORMS = ("l1", "l2", "max")
BIN_EDGE_RULES = ("right", "left")
BINNINGS = ("equal_width", "equal_mass")
SCOPES = ("top_label", "classwise", "thresholded")
DEFAULT_THRESHOLD = 0.01


class ErrorOptions(NamedTuple):
    """The calibration error's options that ``check_error_options`` resolves."""

    right: bool  # bins are (lo, hi]
    threshold: float  # the thresholded scope's threshold (its default when not given)


class ReliabilityDiagram(NamedTuple):
    """Per-bin statistics of top-label confidence (arrays of the input's library).

    Attributes:
        confidence: (n_bins,) mean confidence of the examples in each bin (0 if empty).
        accuracy: (n_bins,) fraction of them predicted correctly (0 if empty).
        count: (n_bins,) number of examples in each bin (floating; the total weight of
            its examples with ``sample_weight``).
        edges: (n_bins + 1,) the bin edges: ``0, 1/n_bins, ..., 1`` for equal-width
            bins, the data's own edges for equal-mass bins.
        fraction: (n_bins,) the share of the examples in each bin, ``count /
            sum(count)``: the confidence histogram drawn under a reliability diagram
            (as netcal and Guo et al.'s Figure 1 draw it), which says how many examples
            each bar rests on. It sums to 1.
    """

    confidence: Array
    accuracy: Array
    count: Array
    edges: Array
    fraction: Array


def _check_binning(n_bins: Any, bin_edges: Any, binning: Any) -> bool:
    """Check the binning options; return whether bins are (lo, hi] (``right``)."""
    check_positive_int("n_bins", n_bins)
    check_choice("bin_edges", bin_edges, BIN_EDGE_RULES)
    check_choice("binning", binning, BINNINGS)
    if binning == "equal_mass" and bin_edges != "right":
        fail_value(
            "binning='equal_mass' places its edges between examples and always uses "
            "(lo, hi] bins, as uncertainty-calibration does; bin_edges='left' applies only "
            "to binning='equal_width'.",
            "bin_edges",
            bin_edges,
        )
    return bin_edges == "right"


def check_error_options(
    *,
    n_bins: Any,
    norm: Any,
    bin_edges: Any,
    binning: Any,
    scope: Any,
    debias: Any,
    threshold: Any = None,
) -> ErrorOptions:
    """Check the options of the calibration error; return them resolved (whether bins
    are (lo, hi], and the thresholded scope's threshold with its default filled in)."""
    check_choice("norm", norm, NORMS)
    check_choice("scope", scope, SCOPES)
    limit = check_threshold(threshold, scope)
    check_bool("debias", debias)
    if debias and norm == "max":
        fail_value(
            "debias=True is defined for norm='l2' (Kumar et al.'s unbiased estimator) and "
            "norm='l1' (their correction by resampling), not for the maximum.",
            "norm",
            norm,
        )
    right = _check_binning(n_bins, bin_edges, binning)
    return ErrorOptions(right, limit)


def check_threshold(threshold: Any, scope: str) -> float:
    """Check ``threshold`` (given only with ``scope="thresholded"``, a real number in
    [0, 1)) and resolve it: its default for that scope."""
    if threshold is not None:
        if scope != "thresholded":
            fail_value("`threshold` applies to scope='thresholded' only.", "threshold", threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            fail_type("`threshold` must be a real number in [0, 1).", "threshold", threshold)
        if not 0.0 <= float(threshold) < 1.0:
            fail_value("`threshold` must be in [0, 1).", "threshold", threshold)
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def threshold_weights(xp: Any, values: Array, weights: Array | None, threshold: float) -> Array:
    """(N, K) weights of the thresholded scope: each example's weight (1 without
    ``weights``) where the class's probability exceeds ``threshold`` (resolved by
    ``check_error_options``), else 0."""
    kept = xp.astype(values > threshold, values.dtype)
    result = kept if weights is None else kept * weights
    anything = xp.any(result > 0)
    if is_concrete(anything) and not bool(anything):
        # (Traced, the error is 0 / 0 = NaN.)
        fail_value(
            "The thresholded calibration error needs a prediction above `threshold` (of "
            "positive weight); here none is, which leaves no example to measure. Give a "
            "lower threshold.",
            "threshold",
            threshold,
        )
    return result


def calibration_columns(
    xp: Any,
    scores: Array,
    labels: Array,
    *,
    axis: int,
    from_logits: bool,
    scope: str,
) -> tuple[Array, Array]:
    """(values, targets), each (N, C): C = 1 column (the top label's confidence and
    correctness) or K columns (each class's probability and ``[label == k]``; for the
    thresholded scope too, whose threshold is in the weights, ``threshold_weights``)."""
    if scope == "top_label":
        values, targets = metrics_core.top_label(
            xp, scores, labels, axis=axis, from_logits=from_logits
        )
        return xp.expand_dims(values, axis=1), xp.expand_dims(targets, axis=1)
    return metrics_core.classwise(xp, scores, labels, axis=axis, from_logits=from_logits)


def binned_columns(
    xp: Any,
    values: Array,
    targets: Array,
    *,
    n_bins: int,
    right: bool,
    binning: str,
    weights: Array | None = None,
) -> tuple[Array, Array, Array, Array]:
    """Per-bin (mean value, mean target, count), each (..., n_bins, C), and the edges,
    (..., n_bins + 1, C) for equal-mass bins, (n_bins + 1, 1) for equal-width ones.

    ``values``, ``targets`` (..., N, C) from ``calibration_columns``, leading axes a
    batch of problems (the bootstrap's resamples); ``weights`` broadcastable to them."""
    if binning == "equal_mass":
        if values.shape[-2] is None:
            fail_value(
                "binning='equal_mass' splits the examples by their number, which must be "
                "known when tracing (here tf.function has a batch of unknown size); give "
                "the input a static shape or use binning='equal_width'.",
                "logits_or_probs.shape",
                tuple(values.shape),
            )
        # The examples as the weights repeat them: whole sample weights (checked by
        # the callers), times the thresholded scope's 0/1 for the kept predictions.
        edges = metrics_core.equal_mass_edges(xp, values, n_bins, weights=weights)
    else:
        edges = metrics_core.bin_edges(xp, n_bins, dtype=values.dtype, like=values)
        edges = xp.expand_dims(edges, axis=1)
    statistics = metrics_core.bin_statistics(
        xp, values, targets, edges, right=right, weights=weights
    )
    return (*statistics, edges)


def reliability_diagram(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
    binning: str = "equal_width",
    sample_weight: Any = None,
) -> ReliabilityDiagram:
    """Per-bin mean confidence, accuracy, count and share of the top-label predictions.

    Each example's confidence is its largest class probability and it is correct when
    that class is the label (Guo et al. 2017). Examples go into ``n_bins`` bins of [0, 1]
    by confidence, equal-width or equal-mass; see ``expected_calibration_error`` for the
    bin rules.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of bins (>= 1).
        from_logits: whether the scores are logits (softmax is applied) or probabilities.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins
            (equal-width bins only).
        axis: the class axis.
        binning: ``"equal_width"`` or ``"equal_mass"``.
        sample_weight: None, or one non-negative weight per example (the labels'
            shape): means, counts and shares are weighted (whole numbers with
            ``"equal_mass"``: a weight ``m`` is the example repeated ``m`` times).

    Returns:
        A ``ReliabilityDiagram`` of (n_bins,) arrays ``confidence``, ``accuracy``,
        ``count``, the (n_bins + 1,) ``edges`` and the (n_bins,) ``fraction`` of the
        examples in each bin (the confidence histogram), in the compute dtype (float32
        for half-precision input).

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import reliability_diagram
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
        >>> diagram = reliability_diagram(probs, np.array([0, 1, 1, 1]), n_bins=2,
        ...                               from_logits=False)
        >>> print(diagram.confidence, diagram.accuracy, diagram.count, diagram.fraction)
        [0.   0.75] [0.   0.75] [0. 4.] [0. 1.]
    """
    right, _ = check_error_options(
        n_bins=n_bins,
        norm="l1",
        bin_edges=bin_edges,
        binning=binning,
        scope="top_label",
        debias=False,
    )
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    weights = prepare_weights(xp, sample_weight, labels, scores.dtype)
    weights = check_whole_weights(xp, weights, sample_weight, debias=False, binning=binning)
    values, targets = calibration_columns(
        xp, scores, labels, axis=axis, from_logits=from_logits, scope="top_label"
    )
    binned = binned_columns(
        xp, values, targets, n_bins=n_bins, right=right, binning=binning, weights=weights
    )
    confidence, accuracy, count, edges = (xp.reshape(array, (-1,)) for array in binned)
    return ReliabilityDiagram(confidence, accuracy, count, edges, count / xp.sum(count))


def expected_calibration_error(
    logits_or_probs: Any,
    labels: Any,
    *,
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
    seed: Any = 0,
) -> Array:
    r"""Binned calibration error: ECE, its root-mean-square form or MCE; top-label or classwise.

    Guo et al. (2017), "On Calibration of Modern Neural Networks", eq. (3): examples
    are grouped by top-label confidence into ``n_bins`` bins ``B_b``, and

    * ``norm="l1"`` (ECE): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``,
    * ``norm="l2"``: ``sqrt(sum_b |B_b|/N * (acc(B_b) - conf(B_b))**2)``,
    * ``norm="max"`` (MCE): ``max_b |acc(B_b) - conf(B_b)|`` over non-empty bins.

    Binning (``binning``):

    * ``"equal_width"`` (default): the bins of [0, 1] with edges ``j / n_bins`` (floats
      in the compute dtype). With the default ``bin_edges="right"`` they are
      ``(lo, hi]``, as in Guo et al.'s code and the ``uncertainty-calibration`` package
      (a top-label confidence is at least 1/K > 0, so the open end at 0 loses nothing;
      a probability of exactly 0, possible with ``scope="classwise"``, goes into the
      first bin). With ``bin_edges="left"`` they are ``[lo, hi)``, as in torchmetrics
      >= 1.0, except that here the last bin is closed, ``[lo, 1]``: torchmetrics puts a
      confidence of exactly 1.0 into an extra bin of its own, so the two differ when
      some confidence rounds to 1.0.
    * ``"equal_mass"``: bins holding (nearly) equal numbers of examples, built exactly as
      ``get_equal_bins`` of Kumar et al.'s ``uncertainty-calibration`` (0.1.4) builds
      them: the sorted values are split into ``min(n_bins, N)`` parts as
      ``numpy.array_split`` splits them (the first ``N % parts`` parts one longer); each
      interior edge is the midpoint of the last value of one part and the first of the
      next; the last edge is 1. Examples are then binned as that package bins them
      (``numpy.searchsorted`` on the edges, ``side="left"``): bins are ``(lo, hi]``, so
      ``bin_edges="left"`` is an error here. Tied values can make repeated edges, whose
      bins stay empty (the package drops them instead; the occupied bins and so the
      error are the same). Traceable: the split points are computed from N as arrays.
      scikit-learn's ``calibration_curve(strategy="quantile")`` places its edges
      elsewhere (``numpy.percentile``'s interpolated quantiles) but also bins
      ``(lo, hi]`` (``searchsorted``, ``side="left"``): its edge j lies between the
      same two sorted values as this rule's when N is a multiple of ``n_bins``, so for
      distinct values the bins hold the same examples (tested); otherwise the two rules
      place the parts differently, and the bins can differ by several examples.

    Scope (``scope``):

    * ``"top_label"`` (default): the largest class probability against whether that class
      is the label (Guo et al. 2017).
    * ``"classwise"``: marginal calibration (Kumar et al. 2019, ``mode="marginal"``;
      Nixon et al. 2019's classwise ECE): for each class k, the probabilities
      ``p_k`` of all N examples are binned against the indicator ``[label == k]``
      (with ``"equal_mass"``, each class has its own bins) and the per-class errors
      ``e_k`` are combined as ``uncertainty-calibration`` combines them:
      ``mean_k e_k`` for "l1", ``sqrt(mean_k e_k**2)`` for "l2", and, the limit of that
      rule, ``max_k e_k`` for "max" (a norm the package does not offer).
    * ``"thresholded"``: classwise calibration over the confident predictions only
      (Nixon et al. 2019, "Measuring Calibration in Deep Learning", the thresholding of
      their TACE): for each class k, only the examples with ``p_k > threshold`` are
      binned (``threshold`` 0.01 by default), so the many near-zero probabilities of the
      K - 1 wrong classes do not swamp the error with well-calibrated zeros. Each class's
      error is that of its kept predictions (bins weighted by their share of them), and
      the classes are combined as for ``"classwise"``; a class with no kept prediction
      has no error and is left out of the combination (all classes left out: NaN).
      With ``binning="equal_mass"`` this is Nixon et al.'s TACE (thresholded adaptive
      calibration error): each class's kept predictions, and only those, are split by
      the equal-mass rule above (n is then the number of the class's kept
      predictions, a value, so this traces too).

    ``debias=True`` with ``norm="l2"``: the debiased estimator of Kumar et al. (2019),
    the package's ``unbiased_l2_ce``: each bin's squared gap minus the variance of its
    accuracy, ``(acc_b - conf_b)**2 - acc_b (1 - acc_b) / (|B_b| - 1)``, bins of fewer
    than two examples counting 0, weighted by ``|B_b|/N``; the sum is clipped at 0 (per
    class with ``scope="classwise"``) before the square root.

    ``debias=True`` with ``norm="l1"``: their correction by resampling (the package's
    ``normal_debiased_ce``), ``2 e - mean_r e_r``: ``e`` the l1 error, ``e_r`` the l1
    error with each bin's accuracy replaced by a draw from ``N(acc_b, acc_b (1 - acc_b)
    / |B_b|)``, for 1000 draws; per class with ``scope="classwise"`` (each class its own
    draws), then averaged. The standard normal draws are made on the host by NumPy,
    ``numpy.random.default_rng(seed).standard_normal((1000, n_bins, C))`` (C = 1, or K
    classes; draw ``r`` of bin ``b`` and column ``c`` is ``[r, b, c]``), so the result is
    reproducible, the same on every backend, and traceable. Unlike the package, a bin
    of fewer than two examples is not an error: an empty bin weighs 0, and one example
    has a 0/1 accuracy of variance 0. The estimate may be slightly negative (it is not
    clipped, as in the package). ``"max"`` has no debiasing (a ``ValueError``).

    Traceable (``jax.jit``): under tracing, value checks cannot run and a label out of
    range makes the result NaN.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of bins (>= 1); 15 as in Guo et al. With ``"equal_mass"`` and
            ``n_bins > N``, N bins are used (the rest stay empty), as in the package.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        from_logits: whether the scores are logits (softmax is applied) or probabilities
            (they must lie in [0, 1] and sum to 1 over ``axis``).
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins (the
            latter with ``binning="equal_width"`` only).
        axis: the class axis.
        binning: ``"equal_width"`` or ``"equal_mass"``.
        scope: ``"top_label"``, ``"classwise"`` or ``"thresholded"``.
        debias: the debiased l2 estimator, or the l1 correction by resampling (not
            with ``norm="max"``).
        sample_weight: None, or one finite non-negative weight per example (the
            labels' shape, floating or integer, with a positive sum). Each example
            counts with its weight in its bin's count and means, so ``|B_b| / N``
            becomes the bin's share of the total weight and an integer weight ``m`` is
            the example repeated ``m`` times (the debiased estimator's ``|B_b|`` is the
            bin's total weight). With ``"equal_mass"`` the weights must be whole
            numbers: the edges split the examples so repeated (a ``ValueError`` for
            fractional weights; NaN under tracing).
        threshold: the probability a prediction must exceed to count, with
            ``scope="thresholded"`` only (default None: 0.01); in [0, 1).
        seed: the normal draws of ``debias=True`` with ``norm="l1"`` (read only then):
            a non-negative integer, a ``numpy.random.Generator`` (drawn from, so it
            advances), or None for fresh entropy. The default 0 makes it reproducible.
            The draws (``1000 x n_bins x C`` float64 on the host: 120 MB for 1000
            classes and 15 bins, classwise) are made when the function runs; under
            ``jax.jit`` or ``tf.function``, when it is traced: constants of the
            compiled program, the same on every later call.

    Returns:
        A 0-d array of the input's library, in the compute dtype.

    Raises:
        TypeError: non-floating scores, non-integer labels, arrays of mixed libraries,
            a ``debias`` that is not a bool.
        ValueError: bad options or combinations of them, shapes or empty input; for
            concrete arrays, labels out of [0, K) and (with ``from_logits=False``) rows
            that are not distributions.

    Example:
        The torchmetrics documentation's example (its [lo, hi) bins; the same here):

        >>> import numpy as np
        >>> from lsr.metrics import expected_calibration_error
        >>> probs = np.array([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40],
        ...                   [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
        >>> labels = np.array([0, 1, 2, 0])
        >>> for norm in ("l1", "l2", "max"):
        ...     ece = expected_calibration_error(probs, labels, n_bins=3, norm=norm,
        ...                                      from_logits=False, bin_edges="left")
        ...     print(norm, round(float(ece), 4))
        l1 0.2
        l2 0.2082
        max 0.2333

        Equal-mass bins: the top-label confidences 0.55, 0.55 (both wrong) and 0.6, 0.9
        (both right) make two bins split at 0.575, with gaps 0.55 and 0.25:

        >>> ece = expected_calibration_error(probs, labels, n_bins=2, from_logits=False,
        ...                                  binning="equal_mass")
        >>> print(round(float(ece), 4))
        0.4

        Classwise: the per-class errors 0.325, 0.1 and 0.15, averaged:

        >>> ece = expected_calibration_error(probs, labels, n_bins=3, from_logits=False,
        ...                                  scope="classwise")
        >>> print(round(float(ece), 4))
        0.1917

        Debiased l2: six predictions at 0.9, four right. The plain estimate is
        ``|0.9 - 2/3| = 0.2333``; the debiased one removes the accuracy's sampling
        variance ``(2/3)(1/3)/5`` from its square, ``sqrt(0.0544 - 0.0444) = 0.1``:

        >>> probs = np.array([[0.9, 0.1]] * 6)
        >>> labels = np.array([0, 0, 0, 0, 1, 1])
        >>> for debias in (False, True):
        ...     ece = expected_calibration_error(probs, labels, n_bins=1, norm="l2",
        ...                                      from_logits=False, debias=debias)
        ...     print(debias, round(float(ece), 4))
        False 0.2333
        True 0.1
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
    check_seed(seed)
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    weights = prepare_weights(xp, sample_weight, labels, scores.dtype)
    weights = check_whole_weights(xp, weights, sample_weight, debias=debias, binning=binning)
    values, targets = calibration_columns(
        xp, scores, labels, axis=axis, from_logits=from_logits, scope=scope
    )
    if scope == "thresholded":
        weights = threshold_weights(xp, values, weights, threshold)
    mean_value, mean_target, count, _ = binned_columns(
        xp, values, targets, n_bins=n_bins, right=right, binning=binning, weights=weights
    )
    normals = None
    if debias and norm == "l1":
        normals = debias_normals(seed, count.shape[-2], count.shape[-1])
    return metrics_core.calibration_error(
        xp, mean_value, mean_target, count, norm, debias=debias, normals=normals
    )


def negative_log_likelihood(
    logits_or_probs: Any, labels: Any, *, from_logits: bool = True, axis: int = -1
) -> Array:
    """Mean negative log-likelihood of the labels (a 0-d array).

    ``mean(logsumexp(z) - z_y)`` for logits, ``mean(-log p_y)`` for probabilities. For
    logits this is ``lsr.smooth_ce(logits, labels, smoothing=0.0)``.

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import negative_log_likelihood
        >>> probs = np.array([[0.5, 0.5], [0.25, 0.75]])
        >>> print(round(float(negative_log_likelihood(probs, np.array([0, 1]),
        ...                                           from_logits=False)), 6))
        0.490415
    """
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    target = metrics_core.target_logits(xp, scores, labels, axis)
    if from_logits:
        return metrics_core.mean_nll(xp, scores, target, 1.0, axis)
    return -xp.mean(xp.log(target))

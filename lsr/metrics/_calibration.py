"""Top-label calibration: reliability diagrams, expected calibration error, NLL.

Guo et al. (2017), "On Calibration of Modern Neural Networks". The arithmetic (binning,
the error's norms) is in ``_core``; this module validates and documents.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lsr._compat import array_namespace
from lsr._typing import Array
from lsr._validation import check_choice, check_positive_int
from lsr.metrics import _core as metrics_core
from lsr.metrics._inputs import prepare_scores

__all__ = [
    "ReliabilityDiagram",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_diagram",
]

NORMS = ("l1", "l2", "max")
BIN_EDGE_RULES = ("right", "left")


class ReliabilityDiagram(NamedTuple):
    """Per-bin statistics of top-label confidence (arrays of the input's library).

    Attributes:
        confidence: (n_bins,) mean confidence of the examples in each bin (0 if empty).
        accuracy: (n_bins,) fraction of them predicted correctly (0 if empty).
        count: (n_bins,) number of examples in each bin (floating).
        edges: (n_bins + 1,) the bin edges ``0, 1/n_bins, ..., 1``.
    """

    confidence: Array
    accuracy: Array
    count: Array
    edges: Array


def _check_binning(n_bins: Any, bin_edges: Any) -> bool:
    check_positive_int("n_bins", n_bins)
    check_choice("bin_edges", bin_edges, BIN_EDGE_RULES)
    return bin_edges == "right"


def reliability_diagram(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
) -> ReliabilityDiagram:
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Each example's confidence is its largest class probability and it is correct when
    that class is the label (Guo et al. 2017). Examples go into ``n_bins`` equal-width
    bins of [0, 1] by confidence; see ``expected_calibration_error`` for the bin rule.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of equal-width bins (>= 1).
        from_logits: whether the scores are logits (softmax is applied) or probabilities.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        axis: the class axis.

    Returns:
        A ``ReliabilityDiagram`` of (n_bins,) arrays ``confidence``, ``accuracy``,
        ``count`` and the (n_bins + 1,) ``edges``, in the compute dtype (float32 for
        half-precision input).

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import reliability_diagram
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
        >>> diagram = reliability_diagram(probs, np.array([0, 1, 1, 1]), n_bins=2,
        ...                               from_logits=False)
        >>> print(diagram.confidence, diagram.accuracy, diagram.count)
        [0.   0.75] [0.   0.75] [0. 4.]
    """
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    right = _check_binning(n_bins, bin_edges)
    confidence, correct = metrics_core.top_label(
        xp, scores, labels, axis=axis, from_logits=from_logits
    )
    mean_confidence, accuracy, count = metrics_core.bin_statistics(
        xp, confidence, correct, n_bins, right=right
    )
    edges = metrics_core.bin_edges(xp, n_bins, dtype=confidence.dtype, like=confidence)
    return ReliabilityDiagram(mean_confidence, accuracy, count, edges)


def expected_calibration_error(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
) -> Array:
    r"""Binned top-label calibration error (ECE, its root-mean-square form, or MCE).

    Guo et al. (2017), "On Calibration of Modern Neural Networks", eq. (3): examples
    are grouped by top-label confidence into ``n_bins`` equal-width bins ``B_b``, and

    * ``norm="l1"`` (ECE): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``,
    * ``norm="l2"``: ``sqrt(sum_b |B_b|/N * (acc(B_b) - conf(B_b))**2)``,
    * ``norm="max"`` (MCE): ``max_b |acc(B_b) - conf(B_b)|`` over non-empty bins.

    Bin rule: with the default ``bin_edges="right"`` the bins are ``(lo, hi]``, as in
    Guo et al.'s code and the ``uncertainty-calibration`` package (a top-label
    confidence is at least 1/K > 0, so the open end at 0 loses nothing). With
    ``bin_edges="left"`` they are ``[lo, hi)``, as in torchmetrics >= 1.0, except that
    here the last bin is closed, ``[lo, 1]``: torchmetrics puts a confidence of exactly
    1.0 into an extra bin of its own, so the two differ when some confidence rounds to
    1.0. The edges are the floats ``j / n_bins`` in the compute dtype.

    Traceable (``jax.jit``): under tracing, value checks cannot run and a label out of
    range makes the result NaN.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of equal-width bins (>= 1); 15 as in Guo et al.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        from_logits: whether the scores are logits (softmax is applied) or probabilities
            (they must lie in [0, 1] and sum to 1 over ``axis``).
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        axis: the class axis.

    Returns:
        A 0-d array of the input's library, in the compute dtype.

    Raises:
        TypeError: non-floating scores, non-integer labels, arrays of mixed libraries.
        ValueError: bad options, shapes or empty input; for concrete arrays, labels out of
            [0, K) and (with ``from_logits=False``) rows that are not distributions.

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
    """
    check_choice("norm", norm, NORMS)
    diagram = reliability_diagram(
        logits_or_probs,
        labels,
        n_bins=n_bins,
        from_logits=from_logits,
        bin_edges=bin_edges,
        axis=axis,
    )
    xp = array_namespace(diagram.count)
    return metrics_core.calibration_error(
        xp, diagram.confidence, diagram.accuracy, diagram.count, norm
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

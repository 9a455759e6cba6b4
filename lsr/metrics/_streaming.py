"""Streaming calibration error: per-bin sums updated batch by batch, merged by adding.

``expected_calibration_error`` needs every example at once. Its equal-width form needs
only three sums per bin (the number of examples, the sum of their confidences and the
sum of their correctness), and sums are additive: the state of a concatenation is the sum
of the states of its parts. So a stream keeps a ``CalibrationState`` of three arrays of
shape (n_bins,) (top label) or (K, n_bins) (classwise), O(n_bins x K) memory whatever the
number of examples, merges the states of several devices with one all-reduce (``psum``,
``torch.distributed.all_reduce``, ``dist_reduce_fx="sum"``) and computes the error once.

The arithmetic is ``_core``'s (``top_label``/``classwise``, ``bin_edges``, ``bin_sums``,
``bin_means``, ``calibration_error``), the same functions the batch function runs, so the
numbers are the batch function's up to the order of the floating-point additions.

The state is a NamedTuple of arrays: a JAX pytree (``jax.jit``, ``lax.scan`` carries,
``lax.psum``) with no static field; ``n_bins`` is its last size and the scope its rank.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lsr import _core
from lsr._compat import array_namespace, device
from lsr._typing import Array, DType, Namespace
from lsr._validation import check_choice, check_positive_int, fail_type, fail_value, normalize_axis
from lsr.metrics import _core as metrics_core
from lsr.metrics._calibration import BIN_EDGE_RULES, BINNINGS, NORMS, SCOPES, check_threshold
from lsr.metrics._inputs import (
    check_bool,
    check_counts_for_debias,
    check_seed,
    debias_normals,
    prepare_scores,
    prepare_weights,
    whole_counts,
)

__all__ = [
    "CalibrationState",
    "accumulate",
    "calibration_error_from_state",
    "calibration_state",
    "check_streaming_options",
    "error_from_state",
    "merge_calibration_states",
    "update_calibration_state",
]


class CalibrationState(NamedTuple):
    """Per-bin sums of a stream, for the binned calibration error (arrays of one library).

    Shapes are (n_bins,) for ``scope="top_label"`` and (K, n_bins) for
    ``scope="classwise"`` and ``"thresholded"`` (one row per class), in one floating
    dtype.

    Attributes:
        count: the number of examples in each bin (floating: exact up to 2**24 per bin in
            float32, 2**53 in float64); with ``sample_weight``, the sum of their weights.
        confidence_sum: the sum of their confidences (top label: the largest class
            probability; classwise: the class's probability), each times its weight.
        correct_sum: the sum of their correctness (top label: whether the predicted class
            is the label; classwise: whether the label is the class), 0 or 1 each, times
            its weight.
    """

    count: Array
    confidence_sum: Array
    correct_sum: Array


def check_streaming_options(n_bins: Any, scope: Any, binning: Any) -> None:
    """Check the options that fix a state's shape: a state is of equal-width bins."""
    check_positive_int("n_bins", n_bins)
    check_choice("scope", scope, SCOPES)
    check_choice("binning", binning, BINNINGS)
    if binning != "equal_width":
        fail_value(
            "A calibration state is made of equal-width bins: equal-mass edges are "
            "quantiles of every confidence of the whole stream. Make a state of many "
            "fine bins (calibration_state(like, n_bins=1000)) and ask for equal-mass bins "
            "when computing: calibration_error_from_state(state, binning='equal_mass', "
            "n_bins=15), which approximates them (see its docstring).",
            "binning",
            binning,
        )


def metric_state_shape(
    *,
    n_bins: Any,
    norm: Any,
    num_classes: Any,
    scope: Any,
    from_logits: Any,
    bin_edges: Any,
    debias: Any,
    binning: Any,
    threshold: Any = None,
    resolution: Any = 1000,
) -> tuple[tuple[int, ...], float | None]:
    """Check a framework metric's options (``lsr.torch.CalibrationError``,
    ``lsr.keras.CalibrationError``): ``(its state's shape, threshold)``, the shape
    ``(bins,)`` or ``(num_classes, bins)`` for the classwise and thresholded scopes
    (``bins``: ``n_bins``, or ``resolution`` fine bins with ``binning="equal_mass"``),
    the threshold resolved for the thresholded scope (None for the others)."""
    check_choice("binning", binning, BINNINGS)
    check_streaming_options(n_bins, scope, "equal_width")
    if binning == "equal_mass":
        check_positive_int("resolution", resolution)
        if resolution < n_bins:
            fail_value(
                "binning='equal_mass' groups `resolution` fine bins into n_bins bins: "
                f"it needs at least n_bins={n_bins} of them (1000 by default).",
                "resolution",
                resolution,
            )
        if bin_edges != "right":
            fail_value(
                "binning='equal_mass' uses (lo, hi] bins, as expected_calibration_error "
                "does; bin_edges='left' applies only to binning='equal_width'.",
                "bin_edges",
                bin_edges,
            )
        n_bins = resolution
    limit = check_threshold(threshold, scope)
    check_choice("norm", norm, NORMS)
    check_choice("bin_edges", bin_edges, BIN_EDGE_RULES)
    check_bool("from_logits", from_logits)
    check_bool("debias", debias)
    if debias and norm == "max":
        fail_value("debias=True is defined for norm='l2' and 'l1' only.", "norm", norm)
    if scope == "top_label":
        return (n_bins,), None
    if num_classes is None:
        fail_value(
            f"scope={scope!r} keeps one row of bins per class: pass num_classes.",
            "num_classes",
            num_classes,
        )
    check_positive_int("num_classes", num_classes)
    return (num_classes, n_bins), limit if scope == "thresholded" else None


def calibration_state(
    like: Any,
    *,
    n_bins: int = 15,
    scope: str = "top_label",
    binning: str = "equal_width",
    axis: int = -1,
    dtype: DType | None = None,
) -> CalibrationState:
    """An empty ``CalibrationState`` (all zeros) on ``like``'s library and device.

    A state is of equal-width bins: equal-mass edges are quantiles of all the
    confidences, which no fixed-size state knows before the stream ends. For equal-mass
    bins make a state of many fine bins (``n_bins=1000``) and pass
    ``binning="equal_mass", n_bins=...`` to ``calibration_error_from_state``, which
    groups them (an approximation, described there); ``binning="equal_mass"`` here is a
    ``ValueError`` that says so.

    Args:
        like: scores of the stream (its first batch, say) with the K classes on
            ``axis``: the state takes their library and device, their compute dtype
            (float32 for half precision) unless ``dtype`` is given and, for
            ``scope="classwise"``, K.
        n_bins: number of equal-width bins of [0, 1] (>= 1).
        scope: ``"top_label"`` ((n_bins,) arrays) or ``"classwise"`` ((K, n_bins)). A
            thresholded stream is a classwise state whose every update passes
            ``threshold=``; the state does not record it, so ``"thresholded"`` is a
            ``ValueError`` here (``lsr.torch.CalibrationError`` and
            ``lsr.keras.CalibrationError`` take it, and keep the threshold).
        binning: ``"equal_width"``; ``"equal_mass"`` raises (see above).
        axis: the class axis of ``like`` (read for the classwise and thresholded
            scopes only).
        dtype: the floating dtype of the sums, e.g. float64 to accumulate float32 scores
            over more than 2**24 examples per bin.

    Returns:
        A ``CalibrationState`` of zeros.

    Raises:
        TypeError: ``like`` is not a floating array, or ``dtype`` is not floating.
        ValueError: bad options.
    """
    check_streaming_options(n_bins, scope, binning)
    if scope == "thresholded":
        # The state would not record it: an update without threshold= would silently
        # add every probability (the classwise error).
        fail_value(
            "A thresholded stream is a classwise state whose every update passes "
            "threshold=: make it with calibration_state(..., scope='classwise') and call "
            "update_calibration_state(..., threshold=...) (the framework metrics take "
            "scope='thresholded' and keep the threshold).",
            "scope",
            scope,
        )
    xp = array_namespace(like)
    if not xp.isdtype(like.dtype, "real floating"):
        fail_type("`like` must be a floating array of scores.", "like", like)
    if dtype is None:
        dtype = _core.compute_dtype(xp, like.dtype)
    elif not xp.isdtype(dtype, "real floating"):
        fail_type("`dtype` must be a real floating dtype.", "dtype", dtype)
    shape: tuple[int, ...] = (n_bins,)
    if scope != "top_label":
        axis = normalize_axis(axis, like.ndim)
        shape = (like.shape[axis], n_bins)
    zeros = [xp.zeros(shape, dtype=dtype, device=device(like)) for _ in range(3)]
    return CalibrationState(*zeros)


def _check_state(state: Any, name: str = "state") -> tuple[Namespace, CalibrationState]:
    """A ``CalibrationState`` (or 3-tuple) of equal-shaped floating arrays of one library."""
    if not isinstance(state, tuple) or len(state) != 3:
        fail_type(
            f"`{name}` must be a CalibrationState (count, confidence_sum, correct_sum); "
            "make one with calibration_state().",
            name,
            state,
        )
    state = CalibrationState(*state)
    xp = array_namespace(*state)
    shapes = {tuple(array.shape) for array in state}
    if len(shapes) != 1 or len(shapes.pop()) not in (1, 2):
        fail_value(
            f"The arrays of `{name}` must share one shape, (n_bins,) or (K, n_bins).",
            name,
            [tuple(array.shape) for array in state],
        )
    if not all(xp.isdtype(array.dtype, "real floating") for array in state):
        fail_type(f"The arrays of `{name}` must be floating.", name, state)
    return xp, state


def accumulate(
    xp: Namespace,
    state: CalibrationState,
    scores: Array,
    labels: Array,
    *,
    axis: int,
    from_logits: bool,
    right: bool,
    weights: Array | None = None,
    threshold: float | None = None,
) -> CalibrationState:
    """``state`` plus the per-bin sums of one batch (no validation: the adapters' entry).

    ``scores`` in a floating compute dtype with the classes on ``axis`` (a non-negative
    index), integer ``labels`` of their shape without it; the batch size may be unknown
    while tracing. A label outside [0, K) makes its correctness NaN, which stays in the
    state (so the error is NaN) rather than giving a plausible number. ``weights``: None
    or one weight per example as an (N, 1) column (``prepare_weights``' layout).
    ``threshold`` (a classwise state): only the predictions above it are added (the
    thresholded scope's weights, ``threshold_weights``; a batch may have none).
    """
    n_bins = state.count.shape[-1]
    classwise = len(state.count.shape) == 2
    if classwise:
        values, targets = metrics_core.classwise(
            xp, scores, labels, axis=axis, from_logits=from_logits
        )
        if threshold is not None:
            kept = xp.astype(values > threshold, values.dtype)
            weights = kept if weights is None else kept * weights
    else:
        values, targets = metrics_core.top_label(
            xp, scores, labels, axis=axis, from_logits=from_logits
        )
        values, targets = xp.expand_dims(values, axis=1), xp.expand_dims(targets, axis=1)
    # The batch function's edges, in the values' dtype, so every example lands in the
    # bin it lands in there; only the sums use the state's dtype.
    edges = xp.expand_dims(
        metrics_core.bin_edges(xp, n_bins, dtype=values.dtype, like=values), axis=1
    )
    sums = metrics_core.bin_sums(
        xp, values, targets, edges, right=right, dtype=state.count.dtype, weights=weights
    )
    # bin_sums gives (n_bins, C); the state is (n_bins,) or (K, n_bins).
    laid_out = [xp.matrix_transpose(s) if classwise else xp.reshape(s, (-1,)) for s in sums]
    return CalibrationState(*(old + new for old, new in zip(state, laid_out, strict=True)))


def update_calibration_state(
    state: CalibrationState,
    logits_or_probs: Any,
    labels: Any,
    *,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
    sample_weight: Any = None,
    threshold: float | None = None,
) -> CalibrationState:
    """``state`` with one more batch added (a new state; the arguments are not changed).

    The batch is binned exactly as ``expected_calibration_error`` bins it (same
    confidences, same edges ``j / n_bins`` in the scores' compute dtype, same
    comparisons). Pass the same ``from_logits``, ``bin_edges`` and ``axis`` to every
    update of one stream: the state does not record them.

    Args:
        state: a ``CalibrationState`` from ``calibration_state`` or an earlier update.
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        from_logits: whether the scores are logits or probabilities.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins (the
            last one closed, [lo, 1]).
        axis: the class axis.
        sample_weight: None, or one finite non-negative weight per example of the
            batch (the labels' shape): each example adds its weight to its bin's count
            and its weighted confidence and correctness to the sums, so an integer
            weight ``m`` is the example streamed ``m`` times (as
            ``expected_calibration_error(..., sample_weight=)``). A batch's weights may
            all be 0 (it adds nothing); under tracing, a weight that is negative or not
            finite makes the state NaN.
        threshold: for the thresholded scope (a classwise state): only the class
            probabilities above it are added (Nixon et al.'s thresholding; a batch may have none).
            Pass the same value to every update (0.01 is the batch function's default);
            None adds every class probability (the classwise scope). A class with
            nothing above it in the whole stream is left out of the mean, as in
            ``expected_calibration_error(..., scope="thresholded")``; the error of a
            stream with nothing above it is NaN, where the batch function raises.

    Returns:
        The updated ``CalibrationState``, in the state's dtype.

    Raises:
        TypeError: bad dtypes, arrays of mixed libraries, a ``state`` that is not one.
        ValueError: bad options or shapes (a classwise state of another K); for concrete
            arrays, labels out of [0, K) and (``from_logits=False``) rows that are not
            distributions.

    Example:
        Two batches, then the error of all three predictions (one bin: confidence 0.8,
        accuracy 2/3), as ``expected_calibration_error`` gives it at once:

        >>> import numpy as np
        >>> from lsr import metrics
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
        >>> labels = np.array([0, 1, 1])
        >>> state = metrics.calibration_state(probs, n_bins=2)
        >>> state = metrics.update_calibration_state(state, probs[:2], labels[:2],
        ...                                          from_logits=False)
        >>> state = metrics.update_calibration_state(state, probs[2:], labels[2:],
        ...                                          from_logits=False)
        >>> print(state.count, round(float(metrics.calibration_error_from_state(state)), 4))
        [0. 3.] 0.1333
    """
    check_choice("bin_edges", bin_edges, BIN_EDGE_RULES)
    _, state = _check_state(state)
    if threshold is not None:
        threshold = check_threshold(threshold, "thresholded")
        if len(state.count.shape) != 2:
            fail_value(
                "`threshold` needs a state of one row of bins per class: make it with "
                "calibration_state(..., scope='classwise').",
                "state.count.shape",
                tuple(state.count.shape),
            )
    xp, scores, labels, axis = prepare_scores(
        logits_or_probs, labels, axis=axis, from_logits=from_logits
    )
    array_namespace(state.count, scores)  # one library for the state and the batch
    if len(state.count.shape) == 2 and state.count.shape[0] != scores.shape[axis]:
        fail_value(
            f"A classwise state has one row per class: {scores.shape[axis]} rows for these "
            f"scores of {scores.shape[axis]} classes; this state has "
            f"{state.count.shape[0]}.",
            "state.count.shape",
            tuple(state.count.shape),
        )
    weights = prepare_weights(xp, sample_weight, labels, scores.dtype, whole=False)
    return accumulate(
        xp,
        state,
        scores,
        labels,
        axis=axis,
        from_logits=from_logits,
        right=bin_edges == "right",
        weights=weights,
        threshold=threshold,
    )


def merge_calibration_states(first: CalibrationState, second: CalibrationState) -> CalibrationState:
    """The state of two streams together: the elementwise sum of their states.

    The same as ``jax.lax.psum(state, axis_name)`` or ``torch.distributed.all_reduce`` of
    each array with ``SUM`` across devices.
    """
    _, first = _check_state(first, "first")
    _, second = _check_state(second, "second")
    array_namespace(first.count, second.count)
    if tuple(first.count.shape) != tuple(second.count.shape):
        fail_value(
            "Only states of the same shape (n_bins, scope and K) can be merged; "
            f"`first` has shape {tuple(first.count.shape)}.",
            "second.count.shape",
            tuple(second.count.shape),
        )
    return CalibrationState(*(a + b for a, b in zip(first, second, strict=True)))


def error_from_state(
    xp: Namespace,
    state: CalibrationState,
    norm: str,
    *,
    debias: bool,
    seed: Any = 0,
    equal_mass_bins: int | None = None,
) -> Array:
    """The calibration error of a state (no validation: the adapters' entry); NaN if empty.
    ``seed``: the l1 debiasing's normal draws (``expected_calibration_error``'s).
    ``equal_mass_bins``: that many equal-mass bins made of the state's fine bins
    (``metrics_core.equal_mass_groups``; counts not whole make it NaN), else the state's
    own bins."""
    if len(state.count.shape) == 2:
        columns = [xp.matrix_transpose(array) for array in state]
    else:
        columns = [xp.expand_dims(array, axis=1) for array in state]
    count, confidence_sum, correct_sum = columns
    seen = xp.sum(count) > 0
    if equal_mass_bins is not None:
        seen = seen & whole_counts(xp, count)  # (not whole: NaN, as when empty)
        count, confidence_sum, correct_sum = metrics_core.equal_mass_groups(
            xp, count, confidence_sum, correct_sum, equal_mass_bins
        )
    confidence, accuracy = metrics_core.bin_means(xp, count, confidence_sum, correct_sum)
    # An empty state computes on counts of 1 (no 0/0 warnings) and then reads NaN.
    count = xp.where(seen, count, 1.0)
    normals = None
    if debias and norm == "l1":
        normals = debias_normals(seed, count.shape[-2], count.shape[-1])
    error = metrics_core.calibration_error(
        xp, confidence, accuracy, count, norm, debias=debias, normals=normals
    )
    return xp.where(seen, error, xp.nan)


def calibration_error_from_state(
    state: CalibrationState,
    *,
    norm: str = "l1",
    debias: bool = False,
    seed: Any = 0,
    binning: str = "equal_width",
    n_bins: int | None = None,
) -> Array:
    """The binned calibration error of everything a state has seen (a 0-d array).

    The formula of ``expected_calibration_error`` (``norm`` "l1" ECE, "l2", "max" MCE;
    classes combined as there for a classwise state; ``debias`` the debiased l2
    estimator of Kumar et al. 2019, or their l1 correction by resampling with the
    normal draws of ``seed``) on the per-bin means ``confidence_sum / count`` and
    ``correct_sum / count``. Both debiasings stream exactly: they need only each bin's
    count and accuracy (the variance ``acc (1 - acc)`` of 0/1 correctness). A state
    with no examples gives NaN (no error is defined).

    Equal-mass bins stream approximately: a state of many fine equal-width bins (say
    ``calibration_state(like, n_bins=1000)``, updated with the default
    ``bin_edges="right"``) gives ``n_bins`` equal-mass bins with
    ``binning="equal_mass"``. They follow ``expected_calibration_error``'s rule
    (``uncertainty-calibration``'s) on the examples the state counted, except that an
    edge never cuts a fine bin: it moves to the top of the fine bin that holds the last
    example below it. Where the examples either side of an exact edge fall in
    different fine bins, which is most of the time with fine bins narrower than the
    gaps between neighbouring confidences, the bins hold exactly the batch function's
    examples and the error is the batch error; otherwise that one fine bin's examples
    go to the lower bin. The difference is measured in docs/metrics.md. Needs whole
    counts (unweighted, or whole ``sample_weight``); the thresholded scope's classwise
    state splits each class's kept predictions, as the batch TACE does.

    Args:
        state: a ``CalibrationState``.
        norm, debias, seed: as in ``expected_calibration_error``.
        binning: ``"equal_width"`` (the state's own bins) or ``"equal_mass"``.
        n_bins: with ``"equal_mass"``, the number of equal-mass bins (at most the
            state's number of fine bins); with ``"equal_width"``, None (the state's).

    Raises:
        TypeError: a ``state`` that is not one, a ``debias`` that is not a bool.
        ValueError: bad ``norm``, ``debias=True`` with ``norm="max"``, a bad ``seed``,
            bad ``binning``/``n_bins``, counts that are not whole with ``debias`` or
            ``"equal_mass"``.
    """
    check_choice("norm", norm, NORMS)
    check_bool("debias", debias)
    if debias and norm == "max":
        fail_value(
            "debias=True is defined for norm='l2' (Kumar et al.'s unbiased estimator) and "
            "norm='l1' (their correction by resampling), not for the maximum.",
            "norm",
            norm,
        )
    check_seed(seed)
    check_choice("binning", binning, BINNINGS)
    xp, state = _check_state(state)
    fine = state.count.shape[-1]
    if binning == "equal_width":
        if n_bins is not None:
            fail_value(
                "n_bins is the state's own with binning='equal_width' (its last size); "
                "pass it only with binning='equal_mass'.",
                "n_bins",
                n_bins,
            )
    else:
        check_positive_int("n_bins", n_bins)
        if n_bins > fine:
            fail_value(
                f"binning='equal_mass' groups the state's {fine} fine bins into n_bins "
                "bins: make the state with many more bins than n_bins (say 1000).",
                "n_bins",
                n_bins,
            )
    if debias or binning == "equal_mass":
        check_counts_for_debias(
            xp, state.count, "state.count", state.count, equal_mass=binning == "equal_mass"
        )
    return error_from_state(
        xp,
        state,
        norm,
        debias=debias,
        seed=seed,
        equal_mass_bins=n_bins if binning == "equal_mass" else None,
    )

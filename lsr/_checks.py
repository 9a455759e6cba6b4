"""Validation shared by the generic functions and every adapter.

``prepare_smooth_ce`` checks everything that can be checked before computing (shapes,
dtypes and options always; values only when the arrays are concrete), resolves ``xp``,
casts to the compute dtype, and returns the options as one ``lsr._core.Spec``.
Adapters call it first, then the core, so every backend raises the same errors.

(Over 500 lines on purpose: this is the one validation layer, every check of every
option in one place, so a new option's check has exactly one home.)
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

from lsr import _core
from lsr._compat import array_namespace, check_integers_kept, values_are_cheap
from lsr._core import Spec
from lsr._typing import DType, Namespace
from lsr._validation import (
    PRIOR_NAMES,
    REDUCTIONS,
    check_choice,
    check_fraction,
    fail_type,
    fail_value,
    normalize_axis,
)


def cast(xp: Namespace, x: Any, dtype: DType) -> Any:
    """``x`` in ``dtype``, without the copy that ``astype`` makes when it already is."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def is_integer_dtype(xp: Namespace, dtype: DType) -> bool:
    return xp.isdtype(dtype, "integral")


def is_floating_dtype(xp: Namespace, dtype: DType) -> bool:
    return xp.isdtype(dtype, "real floating")


def _integer_bounds(xp: Namespace, dtype: DType) -> tuple[int, int]:
    iinfo = getattr(xp, "iinfo", None)
    info = iinfo(dtype) if iinfo is not None else dtype  # a tf.DType has .min and .max
    return int(info.min), int(info.max)


def index_labels(
    xp: Namespace, labels: Any, ignore_index: int | None = None, name: str = "labels"
) -> Any:
    """Integer labels in the namespace's index dtype (int64; int32 for JAX without x64).

    A narrow dtype cannot be compared with every class id or ``ignore_index`` as they
    are: as uint8, ``ignore_index=-100`` wraps to 156 (a real class) and K = 300 has ids
    the dtype cannot hold. Widened, a label equals ``ignore_index`` only when their
    values are equal.

    An unsigned dtype wider than the index dtype's range (uint64 as int64, uint32 as
    JAX's int32) would wrap its largest ids to negative ones, one of which could be
    ``ignore_index`` (2**64 - 1 becomes -1): such ids become the index dtype's largest
    value instead (one below it where that is ``ignore_index``), which is out of range
    for every K, so they are refused, or NaN under tracing, never ignored.

    A 64-bit JAX array used without x64 is cast to 32 bits by every operation, which
    wraps ids beyond that range into others: such ids are refused
    (``check_integers_kept``; ``shift_to_next_token``, whose concatenation would cast
    them first, refuses them too).
    """
    dtype = _core.index_dtype(xp, labels)
    if labels.dtype == dtype:  # (the usual case: nothing to widen, nothing can wrap)
        return labels
    check_integers_kept(labels, name)
    low, high = _integer_bounds(xp, labels.dtype)
    labels = cast(xp, labels, dtype)
    index_high = _integer_bounds(xp, dtype)[1]
    if low == 0 and high > index_high:
        ceiling = index_high - 1 if ignore_index == index_high else index_high
        labels = xp.where(labels < 0, ceiling, labels)
    return labels


def matchable_ignore_index(xp: Namespace, ignore_index: int | None, dtype: DType) -> int | None:
    """``ignore_index`` for labels of the index ``dtype``: None when no label can equal it
    (outside the dtype's range, e.g. 2**40 with JAX's int32 ids), so it matches nothing."""
    if ignore_index is None:
        return None
    low, high = _integer_bounds(xp, dtype)
    return int(ignore_index) if low <= ignore_index <= high else None


def sum_tolerance(xp: Namespace, dtype: DType, count: int) -> float:
    """How far from 1 a sum of ``count`` probabilities of ``dtype`` may be from rounding.

    ``8 sqrt(count)`` units of roundoff (never finer than float32's: a float64 array is
    often made from float32 values), at most 1 %: a float32 prior of 10,000 classes may be
    off by 1e-4, not by 5 %.
    """
    eps = max(float(xp.finfo(dtype).eps), 2.0**-23)
    return min(1e-2, 8.0 * eps * max(count, 16) ** 0.5)


def check_dense_targets(xp: Namespace, targets: Any, axis: int, where: Any, dtype: DType) -> Any:
    """Dense targets are distributions over the classes: finite, non-negative entries
    whose sum is 1 at every kept position. Checked when their values are cheap to read
    (swapped arguments, e.g. Keras' ``(y_true, y_pred)`` order, land here); elsewhere
    (under tracing, on an accelerator) a kept position whose targets are not a
    distribution gets NaN targets, so its loss is NaN, never a plausible number.
    Returns the targets."""
    if 0 in tuple(targets.shape):
        return targets
    num_classes = targets.shape[axis]
    tolerance = sum_tolerance(xp, dtype, num_classes)
    wide = cast(xp, targets, xp.float64 if dtype == xp.float64 else xp.float32)
    row_sums = xp.sum(wide, axis=axis)
    bad_entries = ~xp.all(xp.isfinite(wide), axis=axis) | xp.any(wide < -tolerance, axis=axis)
    bad = bad_entries | (xp.abs(row_sums - 1.0) > tolerance)
    if where is not None:
        bad = bad & where
    if not (values_are_cheap(targets) and values_are_cheap(bad)):
        return xp.where(xp.expand_dims(bad, axis=axis), xp.nan, targets)
    if not bool(xp.any(bad)):
        return targets
    count = int(xp.sum(xp.astype(bad, wide.dtype)))
    kind = (
        "negative or non-finite entries"
        if bool(xp.any(bad_entries if where is None else bad_entries & where))
        else "sums that are not 1"
    )
    sums = row_sums[bad]
    raise ValueError(
        "Dense (floating) `labels` must be distributions over the classes: non-negative "
        f"entries summing to 1 along axis {axis} (within {tolerance:.1e}) at every kept "
        f"position; {count} positions have {kind}. If these are logits or "
        "probabilities of a model, the arguments may be swapped: the order is "
        f"(logits, labels). Received: labels with row sums in "
        f"[{float(xp.min(sums)):.6g}, {float(xp.max(sums)):.6g}]"
    )


def check_dtype_argument(xp: Namespace, dtype: DType) -> None:
    """A ``dtype=`` argument: None or one of the namespace's real floating dtypes (a NumPy
    type such as ``np.int32`` or an arbitrary object must not reach ``xp.isdtype``)."""
    if dtype is None:
        return
    try:
        floating = bool(xp.isdtype(dtype, "real floating"))
    except (TypeError, ValueError, AttributeError, KeyError):
        floating = False
    if not floating:
        fail_type("`dtype` must be a real floating dtype.", "dtype", dtype)


def check_logits(xp: Namespace, logits: Any, name: str = "logits") -> None:
    if not is_floating_dtype(xp, logits.dtype):
        fail_type(f"`{name}` must have a real floating dtype.", name, logits)
    if logits.ndim < 1:
        fail_value(f"`{name}` must have at least one dimension (the class axis).", name, logits)


def _without(shape: tuple, axis: int) -> tuple:
    return tuple(shape[:axis]) + tuple(shape[axis + 1 :])


def value_range(xp: Namespace, values: Any) -> tuple[Any, Any]:
    """``(min, max)`` of every element as 0-d arrays: in one pass where the namespace has
    ``min_and_max`` (NaN in both for a NaN element), else ``min`` and ``max``."""
    min_and_max = getattr(xp, "min_and_max", None)
    if min_and_max is None:
        return xp.min(values), xp.max(values)
    return min_and_max(values)


def check_label_range(
    xp: Namespace,
    labels: Any,
    num_classes: int,
    ignore_index: int | None,
    name: str = "labels",
    *,
    cheap: bool = False,
) -> bool | None:
    """Integer labels in [0, K) (or equal to ``ignore_index``); checked when concrete.

    Returns None where the values could not be read (nothing was checked), else whether
    some label equals ``ignore_index``. The labels' minimum and maximum settle the usual
    cases: every id in range (one reduction), or ``ignore_index`` outside [0, K) at one
    end and the other ids in range (two clipped sums more, ``_others_in_range``); the
    elementwise test runs only when neither does (and to name the bad ids in the
    error). ``cheap``: the caller knows that the labels' values are cheap to read
    (``values_are_cheap``), which is then not asked again."""
    if not (cheap or values_are_cheap(labels)):
        return None
    if 0 in tuple(labels.shape):
        return False
    low, high = value_range(xp, labels)
    # Concrete labels closed over by a jitted function still reduce to a tracer.
    if not values_are_cheap(low):
        return None
    low, high = int(low), int(high)
    if 0 <= low and high < num_classes:
        if ignore_index is None or not low <= ignore_index <= high:
            return False
        return ignore_index in (low, high) or bool(xp.any(labels == ignore_index))
    if ignore_index is not None and ignore_index in (low, high):
        # The usual padding or void label (-100, 255) outside [0, K) is the minimum or
        # the maximum: whether the other ids are in range is settled without a pass
        # over each id (the elementwise test below runs only if they are not).
        if _others_in_range(xp, labels, num_classes, ignore_index, low, high):
            return True
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    if bool(xp.any(bad)):
        bad_values = labels[bad]
        allowed = f"integers in [0, {num_classes})"
        if ignore_index is not None:
            allowed += f" or ignore_index={ignore_index}"
        raise ValueError(
            f"`{name}` must hold class ids that are {allowed}; "
            f"{int(xp.sum(xp.astype(bad, labels.dtype)))} do not. "
            f"Received: {name} with min={int(xp.min(bad_values))}, max={int(xp.max(bad_values))}"
        )
    # (An id outside [0, K) that is not bad is ignore_index.)
    return True


def _others_in_range(
    xp: Namespace, labels: Any, num_classes: int, ignore_index: int, low: int, high: int
) -> bool:
    """Whether the labels other than ``ignore_index`` are all in [0, K), where
    ``ignore_index`` is their minimum ``low`` or their maximum ``high``.

    For an ``ignore_index`` below 0 at the minimum: the number of labels below 0, the
    sum of ``clip(labels, -1, 0)``, equals the number equal to ``ignore_index``, from the
    sum of ``clip(labels, ignore_index, ignore_index + 1)`` (no label is below it); then
    no other label is negative. Likewise above K - 1 at the maximum. Two clips and two
    sums, where the ids without ``ignore_index`` (a comparison and a select, over
    booleans: several times slower in PyTorch's CPU kernels) would need three passes and
    a range. Other cases, and sums that could overflow the dtype, take that range."""
    size = math.prod(labels.shape)
    clip = getattr(xp, "clip", None)
    bound = (abs(ignore_index) + num_classes + 1) * size
    if clip is not None and bound < int(xp.iinfo(labels.dtype).max):
        if ignore_index == low < 0:
            below = -int(xp.sum(clip(labels, -1, 0)))
            ignored = (ignore_index + 1) * size - int(
                xp.sum(clip(labels, ignore_index, ignore_index + 1))
            )
            return high < num_classes and below == ignored
        if ignore_index == high >= num_classes:
            edge = num_classes - 1
            above = int(xp.sum(clip(labels, edge, num_classes))) - edge * size
            ignored = (
                int(xp.sum(clip(labels, ignore_index - 1, ignore_index)))
                - (ignore_index - 1) * size
            )
            return low >= 0 and above == ignored
    others_low, others_high = value_range(xp, xp.where(labels == ignore_index, 0, labels))
    return 0 <= int(others_low) and int(others_high) < num_classes


def checked_class_ids(
    xp: Namespace, labels: Any, num_classes: int, ignore_index: int | None
) -> tuple[Any, int | None, bool]:
    """Integer labels' values, checked where they can be read: ``(labels in the index
    dtype, the spec's ignore_index, the spec's checked)``. The ignore_index is None when
    no label can equal it, or when the labels were read and none does (the pass need not
    look for it); ``checked`` says whether they were read."""
    labels = index_labels(xp, labels, ignore_index)
    ignore_index = matchable_ignore_index(xp, ignore_index, labels.dtype)
    return read_class_ids(xp, labels, num_classes, ignore_index)


def read_class_ids(
    xp: Namespace, labels: Any, num_classes: int, ignore_index: int | None, *, cheap: bool = False
) -> tuple[Any, int | None, bool]:
    """``checked_class_ids`` for labels already in the index dtype and an
    ``ignore_index`` that it can hold (``matchable_ignore_index``). ``cheap``: as in
    ``check_label_range``."""
    ignored = check_label_range(xp, labels, num_classes, ignore_index, cheap=cheap)
    return labels, None if ignored is False else ignore_index, ignored is not None


def check_prior(xp: Namespace, prior: Any, num_classes: int, dtype: DType) -> Any:
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
    tolerance = sum_tolerance(xp, prior.dtype, num_classes)
    prior = cast(xp, prior, dtype)
    invalid = (
        xp.any(prior < 0) | ~xp.all(xp.isfinite(prior)) | (xp.abs(xp.sum(prior) - 1.0) > tolerance)
    )
    # (Concrete priors closed over by a jitted function still compute to tracers.)
    if not (values_are_cheap(prior) and values_are_cheap(invalid)):
        # Under tracing the values cannot be read: a prior that is not a distribution
        # makes the loss (and its gradient) NaN instead of a plausible number.
        return xp.where(invalid, xp.nan, prior)
    if bool(invalid):
        if bool(xp.any(prior < 0) | ~xp.all(xp.isfinite(prior))):
            fail_value("`prior` must be finite and non-negative.", "prior", prior)
        raise ValueError(
            f"`prior` must sum to 1 (a distribution over the classes; within {tolerance:.1e} "
            f"for {num_classes} classes): divide it by its sum. "
            f"Received: prior summing to {float(xp.sum(prior))!r}"
        )
    return prior


def check_weight(xp: Namespace, weight: Any, num_classes: int, dtype: DType) -> Any:
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


def check_smoothing(
    xp: Namespace,
    smoothing: Any,
    dtype: DType,
    positions: tuple | None = None,
    *,
    like: Any = None,
    where: str = "the logits' shape without the class axis, that of class-id labels",
) -> Any:
    """Epsilon in [0, 1]: a Python number (kept a float), a floating 0-d array, or, where
    ``positions`` (the positions' shape) is given, a floating array broadcastable to it
    (one epsilon per position; given back broadcast to ``positions``). Arrays come back
    in ``dtype``. Values are checked when they can be read; under tracing an epsilon
    outside [0, 1] anywhere makes every epsilon NaN, as the eager call raises (so an
    ignored position's bad epsilon is not dropped with its loss).

    ``like``: an array of the positions' shape, for broadcasting to dimensions unknown
    under ``tf.function`` (None in ``positions``); ``where``: how the messages describe
    ``positions``.
    """
    shape = getattr(smoothing, "shape", None)
    if positions is None or isinstance(smoothing, (bool, numbers.Real)) or shape is None:
        check_fraction("smoothing", smoothing)
    elif tuple(shape) != ():
        check_smoothing_shape(tuple(shape), positions, where)
    if isinstance(smoothing, numbers.Real):
        return float(smoothing)
    if not is_floating_dtype(xp, smoothing.dtype):
        expected = "a float or a floating 0-d array"
        if positions is not None:
            expected = "a float or a floating array (0-d, or one epsilon per position)"
        fail_type(f"`smoothing` must be {expected}.", "smoothing", smoothing)
    smoothing = cast(xp, smoothing, dtype)
    in_range = (smoothing >= 0.0) & (smoothing <= 1.0)
    if not (values_are_cheap(smoothing) and values_are_cheap(in_range)):
        # Under tracing: NaN (which reaches the loss and its gradient), never a plausible
        # number from an epsilon outside [0, 1], even one at a position that is ignored.
        smoothing = xp.where(xp.all(in_range), smoothing, xp.nan)
    elif smoothing.ndim == 0 and not bool(in_range):
        fail_value("`smoothing` must be in [0, 1].", "smoothing", float(smoothing))
    elif smoothing.ndim > 0 and not bool(xp.all(in_range)):
        bad = smoothing[~in_range]
        count = int(xp.sum(xp.astype(~in_range, xp.int32)))
        raise ValueError(
            "`smoothing` must be in [0, 1] at every position; "
            f"{count} of {math.prod(tuple(smoothing.shape))} values "
            f"are not. Received: smoothing with min={float(xp.min(bad))!r}, "
            f"max={float(xp.max(bad))!r}"
        )
    if smoothing.ndim == 0 or tuple(smoothing.shape) == tuple(positions or ()):
        return smoothing
    if None not in positions or like is None:  # type: ignore[operator]
        return xp.broadcast_to(smoothing, positions)
    # (Dimensions unknown under tf.function: broadcast against an array of that shape.)
    return smoothing + xp.zeros_like(like, dtype=smoothing.dtype)


def check_smoothing_shape(shape: tuple, positions: tuple, where: str) -> None:
    """One epsilon per position: a shape that broadcasts to the positions' ``positions``
    (NumPy's rule, aligned on the last axis; ``None``, a dimension unknown under
    ``tf.function``, matches any size)."""
    fits = len(shape) <= len(positions) and all(
        given in (1, None) or wanted is None or given == wanted
        for given, wanted in zip(reversed(shape), reversed(positions), strict=False)
    )
    if fits:
        return
    hint = ""
    if len(positions) > 1 and shape == positions[:1]:
        per_example = positions[:1] + (1,) * (len(positions) - 1)
        hint = f" For one epsilon per example, give shape {per_example}."
    fail_value(
        "`smoothing` must be a number, a 0-d array, or an array of one epsilon per "
        f"position: of shape {positions} ({where}) or broadcastable to it (NumPy's rule, "
        f"aligned on the last axis).{hint}",
        "smoothing.shape",
        shape,
    )


def check_ignore_index(ignore_index: Any) -> None:
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        fail_type("`ignore_index` must be an integer or None.", "ignore_index", ignore_index)


def check_flag(name: str, value: Any) -> bool:
    """A bool (Python's or NumPy's); a string such as "no" is refused, not read as True."""
    if not (isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")):
        fail_type(f"`{name}` must be a bool.", name, value)
    return bool(value)


def check_z_loss(z_loss: Any, name: str = "z_loss") -> float:
    """The z-loss coefficient (or another coefficient ``name`` of a per-position term,
    such as ``confidence_penalty``): a finite non-negative real number (not a bool or
    string)."""
    if isinstance(z_loss, bool) or not isinstance(z_loss, numbers.Real):
        fail_type(f"`{name}` must be a finite non-negative number.", name, z_loss)
    # numbers.Real's stub has no comparison with int (python/mypy#3186).
    if not 0 <= z_loss < float("inf"):  # type: ignore[operator]
        fail_value(f"`{name}` must be a finite non-negative number.", name, z_loss)
    return float(z_loss)


def check_softcap(softcap: Any) -> float | None:
    """Soft-capping of the logits: None, or a finite positive real number."""
    if softcap is None:
        return None
    if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
        fail_type("`softcap` must be None or a finite positive number.", "softcap", softcap)
    # numbers.Real's stub has no comparison with int (python/mypy#3186).
    if not 0 < softcap < float("inf"):  # type: ignore[operator]
        fail_value("`softcap` must be None or a finite positive number.", "softcap", softcap)
    return float(softcap)


def check_num_classes(num_classes: int, name: str = "logits", value: Any = None) -> None:
    if num_classes < 1:
        fail_value(
            "The class axis must have at least one class.",
            name,
            value if value is not None else num_classes,
        )


def check_several_classes(num_classes: int, name: str, value: Any) -> None:
    """A softmax loss needs two classes at least: over one class the softmax is 1 and the
    loss 0 whatever the logits, which would train nothing without a word."""
    if num_classes == 1:
        fail_value(
            "The class axis has a single class: a softmax over one class is always 1, so "
            "this loss would be 0 whatever the logits. For a single-output (binary) model, "
            "use a sigmoid (binary) cross-entropy, or give the model two outputs.",
            name,
            value,
        )


def _label_shape_hint(shape: tuple, axis: int, labels_shape: tuple, dense: bool) -> str:
    """A sentence that says the likely fix for labels of the wrong shape, or ''."""
    positions = _without(shape, axis)
    if labels_shape == positions:
        # Only dense labels can get here with the position shape.
        return (
            " These look like class ids stored as floats (floating labels are read as "
            "dense targets): cast them to an integer dtype."
        )
    if labels_shape[-1:] == (1,) and labels_shape[:-1] in (positions, shape):
        return " Squeeze the trailing axis of size 1 (labels[..., 0])."
    if not dense:
        ndim = len(shape)
        for other in range(ndim):
            if other != axis and labels_shape == _without(shape, other):
                return (
                    f" If the classes are on axis {other - ndim}, pass axis={other - ndim} "
                    f"(or move that axis to position {axis})."
                )
    return ""


def prepare_smooth_ce(logits: Any, labels: Any, **options: Any) -> tuple[Any, Any, Any, Spec]:
    """Validate, then return ``(xp, logits, labels, spec)``.

    ``options``: those of ``check_smooth_ce``. ``logits`` (and dense ``labels``) come back
    in the compute dtype.
    """
    xp, labels, spec = check_smooth_ce(logits, labels, **options)
    return xp, cast(xp, logits, _core.compute_dtype(xp, logits.dtype)), labels, spec


def shift_to_next_token(
    xp: Namespace, labels: Any, where: Any, ignore_index: int | None
) -> tuple[Any, Any]:
    """``causal_shift=True``: ``(labels, where)`` for next-token prediction. Position t
    gets the label of t + 1 along the labels' last axis (the sequence), and the last
    position of each sequence is left out: its label is ``ignore_index`` where there is
    one that the labels (or the index dtype) can hold, else ``where`` is False there.
    ``where`` itself is not shifted: it masks the positions of the logits (and so is a
    per-position ``smoothing``: position t's epsilon smooths the label of t + 1). Only the
    labels (and the mask), the size of the positions, are made anew: the logits (or
    hidden states) are neither sliced nor copied."""
    check_ignore_index(ignore_index)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type(
            "`causal_shift=True` needs integer labels (class ids) with the sequence on "
            "their last axis.",
            "labels.dtype",
            labels.dtype,
        )
    check_integers_kept(labels, "labels")  # (before the concatenation below casts them)
    if labels.ndim < 1:
        fail_value(
            "`causal_shift=True` needs labels with a sequence axis (their last).",
            "labels.shape",
            tuple(labels.shape),
        )
    if where is not None and (where.dtype != xp.bool or tuple(where.shape) != tuple(labels.shape)):
        fail_value(
            f"`where` must be a boolean mask of the labels' shape {tuple(labels.shape)}.",
            "where",
            where,
        )
    if ignore_index is not None and where is None:
        dtype = labels.dtype
        if not _holds(xp, dtype, ignore_index):
            dtype = _core.index_dtype(xp, labels)
        if _holds(xp, dtype, ignore_index):
            labels = labels if dtype == labels.dtype else xp.astype(labels, dtype)
            last = xp.zeros_like(labels[..., :1]) + ignore_index
            return xp.concat([labels[..., 1:], last], axis=-1), None
    # The last position's label is class 0 (a value every check accepts, whatever the
    # labels hold); the mask leaves it out. (ones_like/zeros_like: unknown lengths under
    # tf.function too.)
    shifted = xp.concat([labels[..., 1:], xp.zeros_like(labels[..., :1])], axis=-1)
    keep = xp.concat(
        [
            xp.ones_like(labels[..., 1:], dtype=xp.bool),
            xp.zeros_like(labels[..., :1], dtype=xp.bool),
        ],
        axis=-1,
    )
    return shifted, keep if where is None else where & keep


def _holds(xp: Namespace, dtype: Any, value: int) -> bool:
    info = xp.iinfo(dtype)
    return bool(info.min <= value <= info.max)


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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
    namespace: Any = None,
) -> tuple[Any, Any, Spec]:
    """Validate, then return ``(xp, labels, spec)``: what ``prepare_smooth_ce`` does
    without casting the logits to the compute dtype (for callers that convert them block
    by block). Dense ``labels`` come back in the compute dtype. ``causal_shift``: see
    ``shift_to_next_token``. ``namespace``: the namespace to check with once the arrays
    are known to be of one library (an adapter's, with its extensions), and to return."""
    # Every argument, in the signature's order (``locals()`` holds just the arguments
    # here): a parameter added to this signature is part of the known options' key
    # without anything else to remember.
    arguments = tuple(locals().values())
    if not isinstance(prior, str) and not hasattr(prior, "shape"):
        # (Before the namespace: a number or bool here is no array of another library.)
        fail_type(
            f"`prior` must be one of {PRIOR_NAMES} or an array of shape (K,).", "prior", prior
        )
    key = None
    if weight is None and where is None and causal_shift is False:
        # (Looked up before the namespace: the key holds the arrays' types, which an
        # earlier call with that key found to be of one library.)
        key = known_options_key(namespace, logits, labels, _keyed(arguments))
        known = _KNOWN_OPTIONS.get(key) if key is not None else None
        if known is not None:
            return known.xp, *known.labels_and_spec(labels)
    xp = array_namespace(
        logits,
        labels,
        weight,
        where,
        None if isinstance(prior, str) else prior,
        smoothing if hasattr(smoothing, "shape") else None,
    )
    if namespace is not None:
        xp = namespace
    check_logits(xp, logits)
    if check_flag("causal_shift", causal_shift):
        labels, where = shift_to_next_token(xp, labels, where, ignore_index)
    labels, spec = prepare_options(
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
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
    )
    if key is not None and not spec.dense:
        remember(_KNOWN_OPTIONS, key, _KnownOptions(xp, spec, ignore_index, labels.dtype))
    return xp, labels, spec


def remember(known: dict[tuple, Any], key: tuple, entry: Any) -> None:
    """``known[key] = entry`` in a cache of at most ``KNOWN_OPTIONS_SIZE`` entries (of
    known options: ``_KNOWN_OPTIONS``, and the binary checks' own)."""
    # The oldest entries go (a dict keeps its insertion order): many shapes, as
    # sequences of varying length, still find their recent ones. (Threads that race
    # between this test and the insert below can each add one entry: the size stays
    # within the bound plus the number of threads.)
    while len(known) >= KNOWN_OPTIONS_SIZE:
        try:
            known.pop(next(iter(known)), None)
        except (RuntimeError, StopIteration):
            # (The dict changed size under another thread: look again.)
            continue
    known[key] = entry


_NOT_MADE = object()


class KnownSpecs:
    """The specs of known options (``_KnownOptions``, the binary checks'
    ``_KnownBinaryOptions``): the spec an earlier call made, and its variants for the
    labels' values, which change only ``ignore_index`` and ``checked``, each made once."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.variants: dict[tuple[Any, bool], Any] = {}
        # What an adapter decided or made once for these options, by the function that
        # decides or makes it (of the key's values alone: the shapes, dtypes and options;
        # ``decided``).
        self.decisions: dict[Any, Any] = {}

    def decided(self, decide: Any, *arguments: Any) -> Any:
        """``decide(*arguments)``, made once for these options: for a decision (or an
        object, such as ``_core.FixedTargets``, that holds no array) that depends only
        on what the key holds, never on a module's tunable constant (an array among
        ``arguments`` is read for its shape and dtype alone)."""
        made = self.decisions.get(decide, _NOT_MADE)
        if made is _NOT_MADE:
            made = self.decisions[decide] = decide(*arguments)
        return made

    def variant(self, ignore_index: Any, checked: bool) -> Any:
        made = self.variants.get((ignore_index, checked))
        if made is None:
            made = self.spec.replace(ignore_index=ignore_index, checked=checked)
            self.variants[(ignore_index, checked)] = made
        return made


class _KnownOptions(KnownSpecs):
    """The checked options of an earlier call, for a later one with the same static
    arguments (``known_options_key``): only the labels' values are left to check.

    Every check of ``prepare_options`` that does not read the labels' values passed for
    that key (the key holds everything they read: the shapes, the dtypes, the options
    and their types), so a call with the same key checks only those values
    (``check_label_range``), as ``prepare_options`` would. The specs it then returns
    differ only in ``ignore_index`` and ``checked``, which depend on them.
    """

    def __init__(self, xp: Namespace, spec: Spec, ignore_index: int | None, index_dtype: Any):
        # (The key holds the id of the namespace a call passed: keeping it alive keeps
        # that id from being reused by another object.) ``ignore_index`` as passed (the
        # key holds it), and the dtype of the labels that ``index_labels`` made, with the
        # ignore_index that dtype can hold.
        super().__init__(spec)
        self.xp, self.ignore_index, self.index_dtype = xp, ignore_index, index_dtype
        self.matchable = matchable_ignore_index(xp, ignore_index, index_dtype)
        self.outside_seen = False

    def labels_and_spec(self, labels: Any) -> tuple[Any, Spec]:
        """``checked_class_ids`` with the ignore_index that the index dtype can hold
        made once (again where the index dtype changed: JAX's follows its x64 flag,
        which the key does not hold)."""
        xp = self.xp
        labels = index_labels(xp, labels, self.ignore_index)
        matchable = self.matchable
        if labels.dtype != self.index_dtype:
            matchable = matchable_ignore_index(xp, self.ignore_index, labels.dtype)
        # (A key is made only for labels whose values are cheap to read, and so are those
        # of their copy in the index dtype.)
        labels, ignore_index, checked = read_class_ids(
            xp, labels, self.spec.num_classes, matchable, cheap=True
        )
        return labels, self.variant(ignore_index, checked)

    def labels_assumed_in_range(self, labels: Any) -> tuple[Any, Spec] | None:
        """``labels_and_spec``'s result for ids that are all in [0, K), without reading
        them; None where an id in [0, K) could equal ``ignore_index`` (0, say).

        For a caller whose computation indexes with every id and raises on one outside
        [0, K) (PyTorch's ``gather`` on the CPU) before it returns anything: where it
        raises, it takes ``labels_and_spec`` instead, which finds the ignored ids (an
        ``ignore_index`` left here is outside [0, K), so it raises too) or refuses the
        bad ones. ``outside_seen`` is that caller's note that the last such call did,
        so that calls with padding read the ids first rather than compute twice."""
        if self.matchable is not None and 0 <= self.matchable < self.spec.num_classes:
            return None
        labels = index_labels(self.xp, labels, self.ignore_index)
        if labels.dtype != self.index_dtype:
            return None  # (JAX's index dtype follows its x64 flag: see labels_and_spec.)
        return labels, self.in_range_spec()

    def in_range_spec(self) -> Spec:
        """The spec of ``labels_assumed_in_range``: ids checked (in range), none
        ignored."""
        return self.variant(None, True)


#: The options of recent calls with class ids, none of them an array (a few dozen
#: entries, each a spec without arrays: nothing that a caller can reach or change).
_KNOWN_OPTIONS: dict[tuple, _KnownOptions] = {}
KNOWN_OPTIONS_SIZE = 64


_KEY_TYPES = frozenset({bool, int, float, str, type(None)})


def keyed_arguments(
    check: Any, not_keyed: frozenset[str]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Where a check's keyed arguments (all but ``not_keyed``: the arrays, and what is
    never looked up) are among all of its arguments, in order, and their names."""
    positions, names = zip(
        *(
            (position, name)
            for position, name in enumerate(inspect.signature(check).parameters)
            if name not in not_keyed
        ),
        strict=True,
    )
    return positions, names


# check_smooth_ce's arguments that are not options of the key: the arrays (and
# causal_shift, which changes the labels: such a call is never looked up).
_NOT_KEYED = frozenset({"logits", "labels", "weight", "where", "causal_shift", "namespace"})
_KEYED_POSITIONS, KEYED_NAMES = keyed_arguments(check_smooth_ce, _NOT_KEYED)


def _keyed(arguments: tuple) -> tuple:
    """The keyed options' values from all of check_smooth_ce's arguments, in order."""
    return tuple([arguments[position] for position in _KEYED_POSITIONS])


def known_options(
    logits: Any, labels: Any, options: tuple, *, namespace: Any = None, cheap: bool = False
) -> _KnownOptions | None:
    """The checked options of an earlier call with the same arguments but the labels'
    values, or None: for an adapter's route for repeated calls, which then takes
    ``check_smooth_ce``'s ``(labels, spec)`` from ``labels_and_spec(labels)`` (the
    labels' values are checked there, as in ``check_smooth_ce``).

    ``options``: every keyed argument of ``check_smooth_ce`` (all but the arrays,
    ``causal_shift`` and ``namespace``), as ``check_smooth_ce`` would get them, in the
    order of ``KEYED_NAMES`` (its signature's; a tuple, as the key holds them: on every
    small call, naming them costs more than the lookup), for a call without ``weight``,
    ``where`` or ``causal_shift`` (which a key never holds). Fewer or more is a
    TypeError: a key made of fewer options could match another call's. ``cheap``: the
    caller has found the labels' values cheap to read (``values_are_cheap``), which is
    then not asked again."""
    if len(options) != len(KEYED_NAMES):
        raise TypeError(f"Expected the values of {KEYED_NAMES}. Received: options={options!r}")
    key = known_options_key(namespace, logits, labels, options, cheap=cheap)
    return _KNOWN_OPTIONS.get(key) if key is not None else None


def known_options_key(
    namespace: Any, logits: Any, labels: Any, options: tuple, *, cheap: bool = False
) -> tuple | None:
    """What the checks of a call whose options hold no array read, as a key of
    ``_KNOWN_OPTIONS``; None where an option is an array or cannot be a key, and where
    the labels' values cannot be read (under tracing the checks run as they are).
    ``namespace``: the one the caller passed (or None); ``options``: the keyed
    arguments' values, in the signature's order; ``cheap``: as in ``known_options``."""
    # (First: under tracing, where there is no key, nothing else is read. Under
    # torch.compile each value read would be one more guard to test on every call.)
    if not (cheap or values_are_cheap(labels)):
        return None
    # Only options of Python's immutable scalar types: an object that compares equal to
    # itself after it changed (a mutable number hashed by identity, say) would get the
    # spec made of its earlier value.
    types = tuple(map(type, options))
    if not _KEY_TYPES.issuperset(types):
        return None
    try:
        # The arrays' types name their library (and the dtypes JAX's zero-gradient
        # NumPy arrays): a key found was made by a call whose arrays were of one library.
        # (With each option's type: 1, 1.0 and True are equal keys, not equal options.)
        arrays = (id(namespace), type(logits), tuple(logits.shape), logits.dtype)
        key = (*arrays, type(labels), tuple(labels.shape), labels.dtype, *options, *types)
        hash(key)
    except (AttributeError, TypeError):
        return None  # (Not arrays: array_namespace names them.)
    return key


def prepare_options(
    xp: Namespace,
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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
) -> tuple[Any, Spec]:
    """The checks of ``prepare_smooth_ce`` for logits of ``shape`` and ``logits_dtype``
    that need not exist (the fused linear loss never makes them): ``(labels, spec)``.

    Every option of the loss is checked here, once, and lands in the ``Spec``."""
    axis = normalize_axis(axis, len(shape))
    num_classes = shape[axis]
    if num_classes is not None:
        check_num_classes(num_classes, "logits.shape", tuple(shape))
        check_several_classes(num_classes, "logits.shape", tuple(shape))
    check_choice("reduction", reduction, REDUCTIONS)
    check_ignore_index(ignore_index)
    kl = check_flag("kl", kl)
    check_z_loss(z_loss)
    softcap = check_softcap(softcap)
    confidence_penalty = check_z_loss(confidence_penalty, "confidence_penalty")
    return_aux = check_flag("return_aux", return_aux)
    dtype = _core.compute_dtype(xp, logits_dtype)

    if is_integer_dtype(xp, labels.dtype):
        dense = False
        expected = _without(shape, axis)
        if tuple(labels.shape) != expected:
            fail_value(
                f"Integer `labels` must have the logits' shape without the class axis "
                f"{axis}, {expected}."
                + _label_shape_hint(tuple(shape), axis, tuple(labels.shape), dense=False),
                "labels",
                labels,
            )
        labels, ignore_index, checked = checked_class_ids(xp, labels, num_classes, ignore_index)
        position_shape = expected
    elif is_floating_dtype(xp, labels.dtype):
        dense = True
        if tuple(labels.shape) != shape:
            fail_value(
                f"Dense (floating) `labels` must have the logits' shape {shape}."
                + _label_shape_hint(tuple(shape), axis, tuple(labels.shape), dense=True),
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
        if return_aux:
            fail_value(
                "`return_aux` needs integer class labels (the unsmoothed NLL and top-1 "
                "correctness are of a class id); these labels are dense (floating).",
                "return_aux",
                return_aux,
            )
        position_shape = _without(shape, axis)
        given_dtype = labels.dtype
        labels = cast(xp, labels, dtype)
        checked = False
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
    if dense:
        labels = check_dense_targets(xp, labels, axis, where, given_dtype)
        like = (
            None
            if not hasattr(smoothing, "ndim") or smoothing.ndim == 0
            else labels[tuple(0 if d == axis else slice(None) for d in range(len(shape)))]
        )
    else:
        like = labels
    return labels, Spec(
        num_classes=num_classes,
        axis=axis,
        dense=dense,
        smoothing=check_smoothing(xp, smoothing, dtype, position_shape, like=like),
        prior=check_prior(xp, prior, num_classes, dtype),
        weight=check_weight(xp, weight, num_classes, dtype),
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
        kl=kl,
        z_loss=float(z_loss),
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        aux=return_aux,
        checked=checked,
    )


def sharded_vector_is_slice(vector: Any, name: str, num_local: int, num_classes: int) -> bool:
    """Whether a (K,) vector of a class-sharded loss came as this shard's ``(K_r,)``
    slice (to be gathered by the adapter's collective) rather than whole.

    Anything else that has a shape is refused, naming both forms. Only a vector of
    exactly this shard's class count is a slice; with more than one shard that count is
    below K, so a whole vector is never mistaken for one.
    """
    shape = getattr(vector, "shape", None)
    if shape is None:
        return False  # (None, or a named prior: checked with the other options)
    if tuple(shape) not in ((num_local,), (num_classes,)):
        fail_value(
            f"`{name}` must have shape ({num_classes},) (the whole vector) or "
            f"({num_local},) (this shard's classes, split like the logits).",
            name,
            vector,
        )
    return num_local != num_classes and tuple(shape) == (num_local,)


def prepare_sharded_options(
    xp: Namespace,
    logits_shard: Any,
    labels: Any,
    *,
    num_classes: int,
    logits_name: str = "logits",
    labels_name: str = "labels",
    **options: Any,
) -> tuple[Any, Spec]:
    """``prepare_options`` for one shard of the class axis (the vocabulary-parallel
    forms): ``(labels, spec)`` for the whole logits of which ``logits_shard`` holds part
    of the ``num_classes`` classes, with ``spec.num_classes`` the global K.

    ``options`` are ``prepare_options``'s, with any (K,) vector whole (an adapter gathers
    slices first: ``sharded_vector_is_slice``). Labels must be integer global class ids:
    dense targets are not split by class.
    """
    check_logits(xp, logits_shard, logits_name)
    axis = normalize_axis(options.pop("axis"), logits_shard.ndim)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type(
            f"`{labels_name}` must hold integer global class ids (dense targets are not "
            "split by class).",
            labels_name,
            labels,
        )
    shape = tuple(logits_shard.shape)
    return prepare_options(
        xp,
        (*shape[:axis], num_classes, *shape[axis + 1 :]),
        logits_shard.dtype,
        labels,
        axis=axis,
        **options,
    )


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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    chunk_size: Any,
    projection_name: str = "projection",
    transposed: bool = False,
    causal_shift: bool = False,
) -> tuple[Any, Any, Any, Spec, tuple[int, ...]]:
    """Validate the fused linear loss's arguments and flatten its rows:
    ``(xp, hidden, labels, spec, leading)``.

    ``hidden`` (..., d), given back as (N, d); ``projection`` (d, K), or (K, d) with
    ``transposed`` (PyTorch's ``F.linear`` layout); ``bias`` (K,) or None; ``labels``
    class ids of hidden's leading shape or dense targets (..., K), and ``where`` a mask of
    the leading shape, given back flattened (in ``spec.where``) as for logits of shape
    (N, K). ``leading``: the shape that a loss per row takes back (``reduction="none"``).
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
    leading = tuple(hidden.shape[:-1])
    num_rows = math.prod(leading)
    if hidden.ndim < 1 or num_rows == 0:
        fail_value("`hidden` must have shape (..., d) with at least one row.", "hidden", hidden)
    width = hidden.shape[-1]
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
    # The shapes as given, before flattening, so that a message shows what was passed.
    dense = is_floating_dtype(xp, labels.dtype)
    if dense or is_integer_dtype(xp, labels.dtype):
        wanted = (*leading, num_classes) if dense else leading
        if tuple(labels.shape) != wanted:
            fail_value(
                f"Dense (floating) `labels` must have hidden's leading shape and K classes, "
                f"{wanted}."
                if dense
                else f"Integer `labels` must have hidden's leading shape, {wanted}.",
                "labels",
                labels,
            )
        if check_flag("causal_shift", causal_shift):
            labels, where = shift_to_next_token(xp, labels, where, ignore_index)
        labels = xp.reshape(labels, (num_rows, num_classes) if dense else (num_rows,))
    if where is not None:
        if tuple(where.shape) != leading:
            fail_value(
                f"`where` must be a boolean mask of hidden's leading shape {leading}.",
                "where",
                where,
            )
        where = xp.reshape(where, (num_rows,))
    if getattr(smoothing, "ndim", 0) > 0 and not isinstance(smoothing, bool):
        # One epsilon per position of hidden's leading shape, flattened with the rows
        # (values and dtype are checked with the other options, on the rows).
        check_smoothing_shape(tuple(smoothing.shape), leading, "hidden's leading shape")
        if tuple(smoothing.shape) != leading:
            smoothing = xp.broadcast_to(smoothing, leading)
        smoothing = xp.reshape(smoothing, (num_rows,))
    hidden = xp.reshape(hidden, (num_rows, width))
    labels, spec = prepare_options(
        xp,
        (num_rows, num_classes),
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
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
    )
    return xp, hidden, labels, spec, leading

"""The public generic functions of the binary (sigmoid, multi-label) loss: any array-API
array in, the same array type out (``lsr.smooth_bce``, ``lsr.smooth_binary_labels``,
``lsr.binary_smoothing``)."""

from __future__ import annotations

import numbers
from typing import Any

from lsr import _core
from lsr._checks import cast, check_dtype_argument
from lsr._checks_binary import prepare_smooth_bce
from lsr._compat import array_namespace
from lsr._validation import check_choice, check_positive_int, fail_type, fail_value

#: The published conventions that ``binary_smoothing`` translates, by name.
CONVENTIONS = ("keras", "tf1", "yolo", "mmpretrain", "timm", "one-sided", "on-off")


def smooth_bce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any = 0.1,
    prior: Any = 0.5,
    axis: int = -1,
    weight: Any = None,
    pos_weight: Any = None,
    where: Any = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Any:
    r"""Label-smoothed sigmoid (binary) cross-entropy, one independent target per logit.

    Each element's target ``y`` (0/1, or soft in [0, 1]) becomes
    ``y' = (1 - smoothing) y + smoothing u``, ``u`` the smoothing value ``prior``, and the
    loss is ``-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))]``, computed stably
    for any logit (``softplus`` form). Every published convention is a choice of ``u``
    (``binary_smoothing`` translates them): ``u = 1/2`` is Keras'
    ``BinaryCrossentropy(label_smoothing=eps)`` and YOLOv5's ``smooth_BCE``, ``"uniform"``
    (``u = 1/K``) timm's ``BinaryCrossEntropy``, ``u = 0`` one-sided smoothing.

    Args:
        logits: unnormalized scores of any shape, one per (element, label).
        labels: targets of the logits' shape: bool or integer 0/1 (multi-hot), or
            floating values in [0, 1] (soft targets).
        smoothing: epsilon in [0, 1]; a Python float or a 0-d array.
        prior: the smoothing value ``u`` in [0, 1]: a number (0.5 by default: towards
            1/2, as Keras), ``"uniform"`` (``1/K`` for the K labels on ``axis``, as timm),
            or an array that broadcasts to the logits (one value per label, such as each
            label's base rate).
        axis: the label axis (for ``prior="uniform"`` only).
        weight: element weights that broadcast to the logits (PyTorch's ``weight``).
        pos_weight: weights ``r`` of the positive term that broadcast to the logits, one
            per label (PyTorch's ``pos_weight``: ``r > 1`` favours recall).
        where: optional boolean mask (broadcasting to the logits) of the elements to keep.
        ignore_index: integer labels equal to it are left out (loss and gradient 0, not
            counted by the mean). Integer labels only.
        reduction: ``"none"`` (the logits' shape), ``"sum"`` or ``"mean"`` over the kept
            elements (weights are not in the denominator, as PyTorch). A mean over no
            kept element is 0 (with a zero gradient).

    Returns:
        The loss, computed and returned in float32 for half-precision logits, else in
        the logits' dtype: 0-d for "sum" and "mean", else the logits' shape.

    Raises:
        TypeError, ValueError: before anything is computed, for labels of another shape,
            labels outside [0, 1] (read when they are concrete; under tracing the loss is
            NaN there instead), smoothing or prior outside [0, 1], arrays that do not
            broadcast, or arrays of different libraries.

    Example:
        >>> import numpy as np
        >>> import lsr
        >>> logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> labels = np.array([[1, 0, 1], [0, 1, 0]])
        >>> print(f"{float(lsr.smooth_bce(logits, labels, smoothing=0.1)):.4f}")
        0.3680
    """
    xp, logits, labels, spec = prepare_smooth_bce(
        logits,
        labels,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        weight=weight,
        pos_weight=pos_weight,
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    loss, _ = _core.binary_loss(logits, labels, spec, xp=xp)
    return loss


def smooth_binary_labels(
    labels: Any, *, smoothing: Any = 0.1, prior: Any = 0.5, axis: int = -1, dtype: Any = None
) -> Any:
    """The smoothed binary targets ``(1 - smoothing) y + smoothing u`` as an array.

    Args:
        labels: bool, integer 0/1 or floating targets in [0, 1].
        smoothing, prior, axis: as ``smooth_bce``.
        dtype: a floating dtype of the labels' namespace; by default the labels' dtype
            when it is floating, else the namespace's default float.

    Example:
        >>> import numpy as np, lsr
        >>> lsr.smooth_binary_labels(np.array([1, 0, 1]), smoothing=0.1)
        array([0.95, 0.05, 0.95])
    """
    xp = array_namespace(labels)
    if dtype is None:
        floating = xp.isdtype(labels.dtype, "real floating")
        dtype = labels.dtype if floating else xp.asarray(0.0).dtype
    check_dtype_argument(xp, dtype)
    like = xp.zeros(tuple(labels.shape), dtype=dtype)
    _, like, labels, spec = prepare_smooth_bce(
        like,
        labels,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        weight=None,
        pos_weight=None,
        where=None,
        ignore_index=None,
        reduction="none",
    )
    smoothed = cast(xp, _core.smooth_binary_targets(labels, spec, xp=xp, like=like), dtype)
    # A new array, never the caller's own labels (eps = 0 of labels already in dtype).
    return xp.astype(smoothed, dtype, copy=True) if smoothed is labels else smoothed


def binary_smoothing(
    convention: str,
    smoothing: float | None = None,
    *,
    num_labels: int | None = None,
    positive: float | None = None,
    negative: float | None = None,
) -> dict[str, float]:
    """``smooth_bce``'s ``smoothing`` and ``prior`` for a published convention's epsilon.

    Returns a dict to pass on: ``smooth_bce(z, y, **binary_smoothing("timm", 0.1,
    num_labels=K))``. Every convention is ``y' = (1 - eps) y + eps u``:

    ============  ==========================================  =====================
    convention    positive / negative target                  lsr
    ============  ==========================================  =====================
    keras, tf1,   ``1 - e/2`` / ``e/2``                       ``eps = e, u = 1/2``
    yolo
    mmpretrain    ``1 - e`` / ``e`` (its multi-label mode)    ``eps = 2e, u = 1/2``
    timm          ``1 - e + e/K`` / ``e/K``                   ``eps = e, u = 1/K``
    one-sided     ``1 - e`` / ``0``                           ``eps = e, u = 0``
    on-off        ``positive`` / ``negative``                 ``eps = 1 - positive
                                                              + negative,
                                                              u = negative / eps``
    ============  ==========================================  =====================

    Args:
        convention: one of ``CONVENTIONS``.
        smoothing: the convention's own epsilon ``e`` (not for "on-off").
        num_labels: K, for "timm".
        positive, negative: the targets of a positive and a negative label, for
            "on-off" (``negative <= positive``; the segmentation snippets' ``lb_pos``
            and ``lb_neg``).

    Example:
        >>> import lsr
        >>> lsr.binary_smoothing("mmpretrain", 0.1)
        {'smoothing': 0.2, 'prior': 0.5}
        >>> options = lsr.binary_smoothing("on-off", positive=0.9, negative=0.05)
        >>> {name: round(value, 4) for name, value in options.items()}
        {'smoothing': 0.15, 'prior': 0.3333}
    """
    check_choice("convention", convention, CONVENTIONS)
    # An argument the convention does not use is an error, not silently ignored.
    used = {"on-off": ("positive", "negative"), "timm": ("smoothing", "num_labels")}.get(
        convention, ("smoothing",)
    )
    given = {"smoothing": smoothing, "num_labels": num_labels, "positive": positive}
    given["negative"] = negative
    for name, value in given.items():
        if value is not None and name not in used:
            fail_value(
                f"The {convention!r} convention takes {' and '.join(map(repr, used))}, "
                f"not `{name}`.",
                name,
                value,
            )
    if convention == "on-off":
        pos, neg = _fraction("positive", positive), _fraction("negative", negative)
        if neg > pos:
            fail_value(
                "`negative` must not exceed `positive` (the targets of a negative and a "
                f"positive label). Received: positive={pos!r}",
                "negative",
                neg,
            )
        eps = 1.0 - (pos - neg)
        return {"smoothing": eps, "prior": neg / eps if eps > 0 else 0.0}
    e = _fraction("smoothing", smoothing)
    if convention == "mmpretrain":
        if e > 0.5:
            fail_value(
                "mmpretrain's epsilon must be in [0, 0.5] (its targets are 1 - e and e).",
                "smoothing",
                e,
            )
        return {"smoothing": 2.0 * e, "prior": 0.5}
    if convention == "timm":
        check_positive_int("num_labels", num_labels)
        return {"smoothing": e, "prior": 1.0 / num_labels}  # type: ignore[operator]
    if convention == "one-sided":
        return {"smoothing": e, "prior": 0.0}
    return {"smoothing": e, "prior": 0.5}


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail_type(f"`{name}` must be a number in [0, 1].", name, value)
    if not 0.0 <= float(value) <= 1.0:
        fail_value(f"`{name}` must be in [0, 1].", name, value)
    return float(value)

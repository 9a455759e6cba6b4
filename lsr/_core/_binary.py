"""The smoothed sigmoid (binary) cross-entropy: one definition for every convention.

Each element is its own two-class problem: a logit ``z``, a label ``y`` in [0, 1] (0/1
multi-hot or soft), ``p = sigmoid(z)``. Label smoothing moves the target towards a
smoothing value ``u`` in [0, 1] (a scalar, or one per label):

    y' = (1 - eps) y + eps u

Every published convention is this with a different ``u`` (or ``eps``): ``u = 1/2`` is
Keras' ``BinaryCrossentropy(label_smoothing=eps)``, TF v1's ``sigmoid_cross_entropy`` and
YOLOv5's ``smooth_BCE``; ``u = 1/K`` over K labels is timm's ``BinaryCrossEntropy``;
``u = 0`` is one-sided smoothing; on/off values ``(c_pos, c_neg)`` are
``eps = 1 - (c_pos - c_neg)``, ``u = c_neg / eps``. ``docs/binary.md`` has
the table.

The loss of an element, with PyTorch's ``pos_weight`` ``r`` and an element weight ``w``:

    w [ (1 - y') softplus(z) + r y' softplus(-z) ]
    = -w [ r y' log p + (1 - y') log(1 - p) ]

computed as ``m log1p(exp(-|z|)) + c z`` (``_elementwise``): two non-negative terms, so
no cancellation at any magnitude, with ``0 * inf = 0`` (a logit of -inf whose target is 0
costs nothing). Its derivative is ``w [ (1 + (r - 1) y') p - r y' ]`` with
``p = sigmoid(z)``, as PyTorch computes it (for a confident right answer, ``p - y'``
rounds to 0 once ``1 - p`` is below the dtype's resolution near 1, as in PyTorch).
"mean" divides by the number of kept elements
(PyTorch's ``BCEWithLogitsLoss``: weights are not in the denominator); a mean over no
kept element is 0 with a zero gradient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

from lsr._compat import values_are_cheap
from lsr._core import _ops
from lsr._core._loss import reduce_with_denominator
from lsr._core._spec import Options
from lsr._typing import Array, Namespace

__all__ = [
    "BINARY_ARRAY_FIELDS",
    "KERNEL_FORM_MIN_TARGET",
    "BinarySpec",
    "binary_grad",
    "binary_loss",
    "binary_loss_and_grad",
    "blocked_binary_grad",
    "blocked_binary_loss",
    "kernel_form_applies",
    "smooth_binary_targets",
]

#: The fields of ``BinarySpec`` that may hold arrays.
BINARY_ARRAY_FIELDS = ("smoothing", "prior", "weight", "pos_weight", "where")


@dataclasses.dataclass(frozen=True, eq=False)
class BinarySpec(Options):
    """The options of one smoothed binary cross-entropy, checked (``static()``,
    ``arrays()`` and ``with_arrays()`` as ``Spec``'s: ``Options``).

    Attributes:
        shape: the logits' shape (every array field broadcasts to it; a dimension may be
            None, unknown inside ``tf.function``).
        smoothing: eps in [0, 1], a Python float or a 0-d array of the compute dtype.
        prior: the smoothing value ``u`` in [0, 1]: a Python float, or an array that
            broadcasts to ``shape`` (one per label).
        weight: element weights that broadcast to ``shape`` (PyTorch's ``weight``), or
            None.
        pos_weight: weights of the positive term that broadcast to ``shape`` (PyTorch's
            ``pos_weight``, one per label), or None.
        where: boolean mask of the elements to keep (broadcasts to ``shape``), or None.
        ignore_index: integer labels equal to it are left out, or None.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        checked: the labels' values were read and found valid (the NaN guard needed
            under tracing can be skipped).
    """

    shape: tuple[int, ...]
    smoothing: Any = 0.0
    prior: Any = 0.5
    weight: Any = None
    pos_weight: Any = None
    where: Any = None
    ignore_index: int | None = None
    reduction: str = "mean"
    checked: bool = False

    ARRAY_FIELDS: ClassVar[tuple[str, ...]] = BINARY_ARRAY_FIELDS


def smooth_binary_targets(labels: Array, spec: BinarySpec, *, xp: Namespace, like: Array) -> Array:
    """``y' = (1 - eps) y + eps u`` in the dtype of ``like`` (labels of any real or bool
    dtype; integer labels equal to ``ignore_index`` give a value that is masked later)."""
    y = labels if labels.dtype == like.dtype else xp.astype(labels, like.dtype)
    eps, u = spec.smoothing, spec.prior
    if _ops.is_number(eps) and eps == 0.0:
        return y
    return (1.0 - eps) * y + eps * u


def _kept(xp: Namespace, labels: Array, spec: BinarySpec, like: Array) -> tuple[Any, Any]:
    """``(kept, invalid)``: the elements that count (None: all), and those kept whose
    label is not in [0, 1] (None when the labels were checked): NaN there."""
    kept = None
    if spec.ignore_index is not None:
        kept = labels != spec.ignore_index
    if spec.where is not None:  # (it may broadcast: kept then has a smaller shape)
        kept = spec.where if kept is None else kept & spec.where
    invalid = None
    if not spec.checked and labels.dtype != xp.bool:
        # Out of [0, 1], NaN included (it compares as false): two comparisons, which
        # compilers vectorize (Inductor's CPU code tests isnan element by element).
        bad = ~((labels >= 0) & (labels <= 1))
        invalid = bad if kept is None else bad & kept
    return kept, invalid


def _mask(xp: Namespace, values: Array, kept: Any, invalid: Any) -> Array:
    if invalid is not None:
        values = _nan_where(xp, invalid, values)
    if kept is not None:
        values = xp.where(kept, values, 0.0)
    return values


def _nan_where(xp: Namespace, invalid: Any, values: Array) -> Array:
    """``values`` with NaN where ``invalid``: a factor of NaN, not a select, so that
    autodiff through it gives NaN there too."""
    return values * xp.where(invalid, xp.nan, xp.ones_like(values))


def _checked_targets(
    xp: Namespace, labels: Array, spec: BinarySpec, like: Array, invalid: Any
) -> Array:
    """``smooth_binary_targets``, NaN where a kept label is out of [0, 1] (``invalid``:
    labels that could not be read, as when traced), so that the loss and every gradient
    are NaN there. The NaN goes on the targets rather than on the loss: XLA then fuses it
    into the pass (on the loss it cost TensorFlow's XLA about 20% at 65536 x 80)."""
    target = smooth_binary_targets(labels, spec, xp=xp, like=like)
    return target if invalid is None else _nan_where(xp, invalid, target)


def _count(xp: Namespace, kept: Any, like: Array) -> Any:
    """The number of kept elements: an int when every dimension is known, else an array
    (a dimension may be unknown inside ``tf.function``)."""
    if kept is not None:
        return xp.sum(xp.where(kept, xp.ones_like(like), 0.0))
    if None in like.shape:
        return xp.sum(xp.ones_like(like))
    return math.prod(like.shape)


def _elementwise(
    xp: Namespace, logits: Array, labels: Array, spec: BinarySpec, kept: Any, invalid: Any
) -> Array:
    """Each element's loss (``_elementwise_and_exp``'s)."""
    return _elementwise_and_exp(xp, logits, labels, spec, kept, invalid)[0]


def _elementwise_and_exp(
    xp: Namespace, logits: Array, labels: Array, spec: BinarySpec, kept: Any, invalid: Any
) -> tuple[Array, Array]:
    """``(each element's loss, exp(-|z|))``: the loss
    ``w [(1 - y') softplus(z) + r y' softplus(-z)]``, as a sum of
    two non-negative terms (no cancellation, exact for infinite logits too):

        m log1p(exp(-|z|)) + c z,   m = 1 + (r - 1) y',
        c = 1 - y' where z >= 0, -r y' where z < 0,

    from ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` on either side of 0; ``c z`` is
    0 where ``c`` is (a term without target share costs nothing, even at an infinite
    logit). ``exp(-|z|)`` (of the logits with left-out elements at 0) also gives the
    sigmoid (``_sigmoid_from_exp``)."""
    if kept is not None:
        # Left-out elements' logits are replaced before anything multiplies them: an
        # infinite one there (padding) must not reach the gradients of the options (0 * inf).
        logits = xp.where(kept, logits, 0.0)
    target = _checked_targets(xp, labels, spec, logits, invalid)
    nonnegative = logits >= 0
    # exp(-|z|) as a select on the same side test as the slope below, not through abs:
    # its derivative at z = 0 is then that of the branch taken, whatever a framework
    # makes of abs'(0) (the second derivative at 0 depends on it).
    exp_minus_abs = xp.exp(xp.where(nonnegative, -logits, logits))
    log_term = xp.log1p(exp_minus_abs)
    if spec.pos_weight is None:
        loss = log_term + _ops.times(xp, xp.where(nonnegative, 1.0 - target, -target), logits)
    else:
        positive = spec.pos_weight * target
        slope = xp.where(nonnegative, 1.0 - target, -positive)
        loss = (1.0 - target + positive) * log_term + _ops.times(xp, slope, logits)
    if spec.weight is not None:
        # A weight of 0 makes an infinite loss 0 and keeps a NaN (a NaN logit, or a NaN
        # target of unchecked labels), as the gradient's plain product does and as
        # PyTorch's weight does: the cheaper form, 0 wherever the weight is, hid a NaN
        # logit from the loss wherever nothing differentiated the weight (NumPy,
        # array-api-strict, eager JAX and PyTorch), its gradient there still NaN.
        loss = _ops.times(xp, spec.weight, loss, keep_nan=True)
    return _mask(xp, loss, kept, None), exp_minus_abs


def _sigmoid_from_exp(xp: Namespace, logits: Array, exp_minus_abs: Array) -> Array:
    """``sigmoid(z)`` from ``e = exp(-|z|)``: ``1 / (1 + e)`` for ``z >= 0``, ``e / (1 + e)``
    below (neither overflows; 1 at +inf, 0 at -inf). ``e`` is of the logits with
    left-out elements at 0: the value there is finite and then masked out (a select)."""
    return xp.where(logits >= 0, 1.0, exp_minus_abs) / (1.0 + exp_minus_abs)


def _fused_total(xp: Namespace, logits: Array, labels: Array, spec: BinarySpec) -> Any:
    """The sum of every element's loss from the namespace's ``sigmoid_cross_entropy_sum``
    (an ``EXTENSIONS`` entry), or None where it is absent or cannot be trusted. The
    caller has checked that every element counts and every label is valid. The smoothed
    targets are passed as the labels with ``t = (1 - eps) y + eps u``, so that no
    target array need be made.

    Such a sum is NaN or inf at an infinite logit, where ``_elementwise`` gives the exact
    value (``0 * inf = 0``). So its total is used only when it is finite, which it is
    exactly when every logit is: reading it is one 0-d value, done only where values are
    cheap (not under tracing, not on an accelerator). Otherwise the elementwise form
    computes it. (The protocol asks for a sum without cancellation: PyTorch's own
    ``(1 - t) z + softplus(-z)`` or ``softplus(z) - t z`` would round away the loss of a
    target of exactly 0 or 1 at a large logit of the matching sign.)"""
    fused = getattr(xp, "sigmoid_cross_entropy_sum", None)
    if fused is None or not values_are_cheap(logits):
        return None
    eps = spec.smoothing
    scale, shift = (
        (1.0, 0.0) if _ops.is_number(eps) and eps == 0.0 else (1.0 - eps, eps * spec.prior)
    )
    total = fused(
        logits, labels, scale=scale, shift=shift, weight=spec.weight, pos_weight=spec.pos_weight
    )
    if total is None or not math.isfinite(float(total)):
        return None
    return total


#: The smallest smoothed target at which a framework's own kernel form keeps each
#: element's relative error within ``48 * 2**-23`` in float32 (``kernel_form_applies``).
KERNEL_FORM_MIN_TARGET = 2.0**-5


def kernel_form_applies(spec: BinarySpec) -> bool:
    """Whether a framework's own sigmoid cross-entropy, ``(1 - t) z + softplus(-z)`` per
    element (PyTorch's ``binary_cross_entropy_with_logits``, times its ``weight``), on
    ``smooth_binary_targets`` computes this loss and, through the framework's autodiff,
    its gradient ``sigmoid(z) - t``: every element counts (no ``where``, no
    ``ignore_index``), the labels were read and found valid, no ``pos_weight``, and a
    scalar smoothing and smoothing value whose smallest target ``eps u`` is at least
    ``KERNEL_FORM_MIN_TARGET``.

    That bound is the form's accuracy: at a large negative logit its two terms cancel to
    ``-t z``, a relative error of about ``1.5 ulp(z) / (t |z|)``, at most ``48`` units of
    the dtype's epsilon for ``t >= 2**-5`` (the namespace's fused sum has a bound of the
    same kind from the other side). A target nearer 0 (no smoothing, one-sided smoothing,
    ``u = 1/K`` over many labels) would lose the loss's digits: about 250 units at
    ``t = 2**-8``, all of them at ``t = 0``. The form gives NaN or inf at an infinite
    logit, where ``_elementwise`` is exact: the caller uses its loss only where that is
    finite (reading it: where values are cheap), else this module's pass."""
    eps, u = spec.smoothing, spec.prior
    return (
        spec.checked
        and spec.where is None
        and spec.ignore_index is None
        and spec.pos_weight is None
        and _ops.is_number(eps)
        and _ops.is_number(u)
        and eps * u >= KERNEL_FORM_MIN_TARGET
    )


def binary_loss(
    logits: Array,
    labels: Array,
    spec: BinarySpec,
    *,
    xp: Namespace,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None = None,
) -> tuple[Array, Any]:
    """``(reduced loss, mean denominator)`` for logits in the compute dtype and labels of
    the logits' shape. The denominator (the number of kept elements) is what
    ``binary_grad`` divides by for "mean".

    ``all_reduce_sum``: adds values up over the processes that split the batch (as
    ``reduce_with_denominator``'s): "sum" and "mean" are then over the global batch, the
    denominator the global number of kept elements.
    """
    kept, invalid = _kept(xp, labels, spec, logits)
    count = _count(xp, kept, logits)
    loss = None
    if spec.reduction != "none" and kept is None and invalid is None:
        loss = _fused_total(xp, logits, labels, spec)
    if loss is None:
        loss = _elementwise(xp, logits, labels, spec, kept, invalid)
    return _reduce(xp, loss, count, spec.reduction, all_reduce_sum)


def binary_loss_and_grad(
    logits: Array,
    labels: Array,
    spec: BinarySpec,
    *,
    xp: Namespace,
) -> tuple[Array, Any, Array]:
    """``(reduced loss, mean denominator, gradient for a unit cotangent)``: ``binary_loss``
    and ``binary_grad(cotangent=1)`` from one exponential, the loss's ``exp(-|z|)``
    giving the sigmoid too. For a framework whose compiler fuses the two into one pass
    (XLA: the sigmoid's own exponential measured a third of the time at 4096 x 1000)."""
    kept, invalid = _kept(xp, labels, spec, logits)
    loss, exp_minus_abs = _elementwise_and_exp(xp, logits, labels, spec, kept, invalid)
    total, denominator = _reduce(xp, loss, _count(xp, kept, logits), spec.reduction, None)
    p = _sigmoid_from_exp(xp, logits, exp_minus_abs)
    grad = binary_grad(
        logits, labels, denominator, 1.0, spec, xp=xp, sigmoid=p, masks=(kept, invalid)
    )
    return total, denominator, grad


def _reduce(
    xp: Namespace,
    loss: Array,
    count: Any,
    reduction: str,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None,
) -> tuple[Array, Any]:
    """``(reduced loss, denominator)``: the mean over ``count`` kept elements (over every
    process's, with ``all_reduce_sum``)."""
    if all_reduce_sum is None:
        return reduce_with_denominator(xp, loss, count, reduction)
    # Weights are not in the binary mean's denominator: no weight total to add up.
    return reduce_with_denominator(xp, loss, (count, None), reduction, all_reduce_sum)


def binary_grad(
    logits: Array,
    labels: Array,
    denominator: Any,
    cotangent: Any,
    spec: BinarySpec,
    *,
    xp: Namespace,
    in_place: bool = False,
    overwrite: bool = False,
    sigmoid: Array | None = None,
    masks: tuple[Any, Any] | None = None,
) -> Array:
    """The gradient of ``binary_loss`` with respect to the logits, times ``cotangent``
    (0-d for "sum" and "mean", the logits' shape for "none"), in the compute dtype:
    ``w [(1 - y') p - r y' (1 - p)] = w [(1 + (r - 1) y') p - r y']``, ``p = sigmoid(z)``
    (finite for infinite logits too). ``in_place``: the steps after the sigmoid update
    its result in place (not under autodiff of these ops), one logits-sized buffer
    instead of four. ``overwrite``: the logits are the caller's temporary, and the
    sigmoid is taken in place in them too (with ``in_place``). ``sigmoid``: the logits'
    sigmoid, when the caller has it (``binary_loss_and_grad``; with ``in_place`` it is
    updated in place: a temporary of the caller's). ``masks``: ``_kept``'s result, when
    the caller has it."""
    scale = cotangent
    if spec.reduction == "mean":
        scale = _ops.per_unit(xp, cotangent, denominator)
    kept, invalid = _kept(xp, labels, spec, logits) if masks is None else masks
    inplace_sigmoid = getattr(xp, "inplace_sigmoid", None)
    if sigmoid is not None:
        p = sigmoid
    elif in_place and overwrite and inplace_sigmoid is not None:
        p = inplace_sigmoid(logits)
    else:
        p = _ops.sigmoid(xp, logits)
    add_scaled = getattr(xp, "add_scaled", None)
    if in_place and spec.pos_weight is None:
        # p - y' = p - eps u - (1 - eps) y, updating p.
        grad, eps, factor = p, spec.smoothing, 1.0
        if not _ops.is_number(eps):  # an array: (1 - eps) y is a temporary
            grad -= eps * spec.prior
            grad -= (1.0 - eps) * xp.astype(labels, logits.dtype, copy=False)
        elif eps == 1.0:
            grad -= spec.prior
        elif add_scaled is not None and eps != 0.0:  # (no temporary of the labels)
            grad -= eps * spec.prior
            grad = add_scaled(grad, labels, -(1.0 - eps))
        else:  # (1 - eps) ((p - eps u) / (1 - eps) - y): no product of the labels
            if eps != 0.0:
                grad -= eps * spec.prior
                grad *= 1.0 / (1.0 - eps)
                factor = 1.0 - eps
            # Floating labels as they are: an in-place update converts them on the fly
            # (half-precision labels of half-precision logits need no float32 copy).
            floating = xp.isdtype(labels.dtype, "real floating")
            grad -= labels if floating else xp.astype(labels, logits.dtype)
        if spec.weight is not None:
            grad *= spec.weight
        grad *= scale if factor == 1.0 else factor * scale
        return _mask(xp, grad, kept, invalid)
    target = _checked_targets(xp, labels, spec, logits, invalid)
    if spec.pos_weight is None:
        grad = p - target
    else:
        positive = spec.pos_weight * target
        grad = (1.0 - target + positive) * p - positive
    if spec.weight is not None:
        grad = grad * spec.weight  # (a plain product: NaN stays NaN)
    return _mask(xp, grad * scale, kept, None)


# --- Block by block, for half-precision logits --------------------------------------------


def _block_spec(spec: BinarySpec, index: Any, ndim: int, shape: tuple[int, ...]) -> BinarySpec:
    """``spec`` for the rows ``index`` of logits of ``ndim`` dimensions: each array option
    that has the leading axis of its own (it broadcasts to the logits' shape) is cut to
    those rows; one that broadcasts along it is kept whole."""
    changes: dict[str, Any] = {"shape": shape}
    for name in BINARY_ARRAY_FIELDS:
        value = getattr(spec, name)
        if index is not ... and getattr(value, "ndim", 0) == ndim and value.shape[0] != 1:
            changes[name] = _ops.rows(value, index)
    return spec.replace(**changes)


def blocked_binary_loss(
    logits: Array,
    labels: Array,
    spec: BinarySpec,
    *,
    xp: Namespace,
    blocks: list[Any],
    scratch: Array,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None = None,
) -> tuple[Array, Any]:
    """``binary_loss`` ("sum" or "mean") of logits in any floating dtype, block after
    block of rows (``blocks``: indices of the leading axis, or ``[...]``) through
    ``scratch``, an array of the compute dtype and the largest block's shape, for
    namespaces whose arrays can be assigned in place: half-precision logits are never
    converted whole. Each block's total is ``binary_loss``'s "sum"; they are reduced
    together as one loss (``reduce_with_denominator``, with ``all_reduce_sum`` as
    ``binary_loss``'s)."""
    totals, count = [], 0
    ndim = logits.ndim
    for index, work, _ in _ops.blocks_of_rows(
        logits, blocks, scratch, dtype=scratch.dtype, copy=True
    ):
        block_spec = _block_spec(spec, index, ndim, tuple(work.shape)).replace(reduction="sum")
        total, block_count = binary_loss(work, _ops.rows(labels, index), block_spec, xp=xp)
        totals.append(total)
        count = count + block_count
    return _reduce(xp, xp.stack(totals), count, spec.reduction, all_reduce_sum)


def blocked_binary_grad(
    logits: Array,
    labels: Array,
    denominator: Any,
    cotangent: Any,
    spec: BinarySpec,
    *,
    xp: Namespace,
    blocks: list[Any],
    scratch: Array,
    out: Array,
) -> Array:
    """``binary_grad`` ("sum" or "mean": a 0-d ``cotangent``) written block by block into
    ``out`` (the logits' shape, any floating dtype: a half-precision gradient is rounded
    once, from the compute dtype), through ``scratch`` as ``blocked_binary_loss``'s."""
    ndim = logits.ndim
    for index, work, _ in _ops.blocks_of_rows(
        logits, blocks, scratch, dtype=scratch.dtype, copy=True
    ):
        block_spec = _block_spec(spec, index, ndim, tuple(work.shape))
        grad = binary_grad(
            work,
            _ops.rows(labels, index),
            denominator,
            cotangent,
            block_spec,
            xp=xp,
            in_place=True,
            overwrite=True,
        )
        _ops.set_rows(out, index, grad)
    return out

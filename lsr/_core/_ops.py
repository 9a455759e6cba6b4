"""Small array-API helpers of the core: no option, no formula, only safe arithmetic.

The namespace extensions the core uses when a namespace offers them (each optional; the
plain array-API form is used otherwise, with the same numbers) are listed in
``EXTENSIONS`` and documented in ``docs/architecture.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from lsr._compat import device, may_carry_gradient
from lsr._typing import Array, Namespace

#: Optional namespace functions the core looks up with ``getattr(xp, name, None)``.
EXTENSIONS = {
    "logsumexp": "logsumexp(x, axis=, keepdims=): fused, no logits-sized temporaries",
    "log_softmax": (
        "log_softmax(x, axis=, dtype=, out=None) -> x - logsumexp(x) in ``dtype`` (x "
        "converted in the same op), one fused op; written into ``out`` (x's shape, "
        "``dtype``) where given"
    ),
    "sum_and_sum_exp": "sum_and_sum_exp(x, axis=) -> (sum(x), sum(exp(x), keepdims)) in one pass",
    "sum_shifted": (
        "sum_shifted(x, top, axis=) -> sum(x - top) over axis (kept), the same numbers, "
        "from x itself (a compiler then need not store x - top for a second reduction)"
    ),
    "inplace_exp": "inplace_exp(x) -> x, with x[...] = exp(x)",
    "subtract_into": "subtract_into(out, x1, x2) -> out, with out[...] = x1 - x2",
    "add_along_axis": (
        "add_along_axis(x, indices, values, axis=) -> x, an in-place scatter-add (values: "
        "an array of indices' shape, or one Python float for every index)"
    ),
    "add_matmul": "add_matmul(out, x1, x2) -> out, with out += x1 @ x2 (fused linear loss)",
    "matmul_into": (
        "matmul_into(out, x1, x2) -> out, with out[...] = x1 @ x2 (fused linear loss: one "
        "block of logits per call, reused by every block)"
    ),
    "matmul_out": (
        "matmul_out(shape, dtype=, device=) -> a new zeroed 2-D array of at most shape's "
        "rows (and its columns), in the layout ``matmul_into`` writes fastest, that it also "
        "writes row-slices of; or None (the fused linear loss's block, default size)"
    ),
    "set_rows": "set_rows(out, indices, values) -> out, with out[indices, ...] = values",
    "finite_or_zero": (
        "finite_or_zero(x) -> x where finite, else 0 (NaN and +-inf), one op "
        "(values only: not used where x is differentiated)"
    ),
    "sigmoid": "sigmoid(x) -> 1 / (1 + exp(-x)), one fused op",
    "inplace_sigmoid": "inplace_sigmoid(x) -> x, with x[...] = sigmoid(x)",
    "add_scaled": (
        "add_scaled(x, y, alpha) -> x, with x += alpha * y in place and no y-sized "
        "temporary (y of any real or bool dtype; alpha a Python float)"
    ),
    "min_and_max": (
        "min_and_max(x) -> (min, max) over every element in one pass, both NaN where an "
        "element is NaN (the binary labels' range check)"
    ),
    "index_dtype": (
        "index_dtype(device) -> the default indexing dtype on ``device`` (what "
        "``__array_namespace_info__().default_dtypes(device=device)['indexing']`` gives, "
        "without building that object on every call)"
    ),
    "sigmoid_cross_entropy_sum": (
        "sigmoid_cross_entropy_sum(z, y, scale=, shift=, weight=, pos_weight=) -> "
        "sum w [(1 - t) softplus(z) + r t softplus(-z)] with t = scale y + shift (binary "
        "loss; labels y of any real or bool dtype; without cancellation: exact where t is 0 "
        "or 1 at any logit), or None to decline"
    ),
}


def sigmoid(xp: Namespace, x: Array) -> Array:
    """``1 / (1 + exp(-x))``: 0 at ``-inf`` (``exp`` overflows to inf), 1 at ``+inf``."""
    fused = getattr(xp, "sigmoid", None)
    if fused is not None:
        return fused(x)
    return 1.0 / (1.0 + xp.exp(-x))


def compute_dtype(xp: Namespace, dtype: Any) -> Any:
    """float32 for half-precision inputs (float32 accumulation), else the dtype itself."""
    if dtype == xp.float64 or dtype == xp.float32:
        return dtype
    return xp.float32


def class_shape(ndim: int, axis: int, num_classes: int) -> tuple[int, ...]:
    """The shape that broadcasts a (K,) vector along ``axis`` of an ``ndim`` array."""
    return tuple(num_classes if d == axis else 1 for d in range(ndim))


def along_axis(xp: Namespace, vector: Array, ndim: int, axis: int) -> Array:
    return xp.reshape(vector, class_shape(ndim, axis, vector.shape[0]))


def class_ids(
    xp: Namespace, like: Array, ndim: int, axis: int, num_classes: int, dtype: Any
) -> Array:
    """0..K-1 along ``axis``, in the labels' integer ``dtype`` (TensorFlow compares no others)."""
    ids = xp.arange(num_classes, dtype=dtype, device=device(like))
    return along_axis(xp, ids, ndim, axis)


def dot_classes(xp: Namespace, z: Array, vector: Array, axis: int) -> Array:
    """``sum_k z_k vector_k`` over ``axis``, as one contraction (no N x K product kept).

    Classes with ``vector_k = 0`` contribute 0 even where ``z_k = -inf`` (a masked class
    that the prior or the weights give no mass).
    """
    along = along_axis(xp, vector, z.ndim, axis)
    # The standard asks vecdot for a negative axis.
    return xp.vecdot(xp.where(along == 0, 0.0, z), along, axis=axis - z.ndim)


def take(xp: Namespace, vector: Array, ids: Array) -> Array:
    """``vector[ids]`` for ids of any shape (the standard's ``take`` wants 1-D indices)."""
    return xp.reshape(xp.take(vector, xp.reshape(ids, (-1,))), ids.shape)


def class_range(xp: Namespace, vector: Array, start: Any, size: int) -> Array:
    """``vector[start:start + size]``, also for a ``start`` that is an array (a traced
    device index: a gather of ``size`` elements instead of a view)."""
    if isinstance(start, int):
        return vector[start : start + size]
    return xp.take(vector, start + xp.arange(size, dtype=start.dtype))


def xlogx(xp: Namespace, x: Any) -> Any:
    """x log x with 0 log 0 = 0, for Python floats and arrays alike; NaN stays NaN (an
    array's ``0 * x`` where x is not positive), so that a softmax NaN at a +inf logit
    keeps the entropy, and every gradient through it, NaN in each form of the pass."""
    if is_number(x):
        return x * math.log(x) if x > 0.0 else 0.0
    positive = x > 0
    return xp.where(positive, x * xp.log(xp.where(positive, x, 1.0)), 0.0 * x)


def times(xp: Namespace, factor: Any, x: Any, *, keep_nan: bool = False) -> Any:
    """``factor * x`` with ``0 * x = 0`` even where ``x`` is infinite (a class or a term
    that carries no mass contributes nothing, as in the sum it stands for: a masked class
    has logit -inf, and ``0 * -inf`` would be NaN).

    Where autodiff may differentiate an array ``factor`` (``may_carry_gradient``), only
    an infinite ``x`` is replaced, so that the derivative with respect to the factor
    stays ``x`` where the factor is 0 (a smoothing of exactly 0 or 1, or a soft target
    of exactly 0, has the gradient of the formula, not 0). Elsewhere (NumPy, the fused
    passes PyTorch runs without recording) the cheaper form skips the test of ``x``,
    unless ``keep_nan``: a NaN ``x`` (a marked invalid input) then stays NaN where the
    factor is 0."""
    if is_number(factor):
        if factor == 0.0:
            return 0.0
        return x if factor == 1.0 else factor * x
    if keep_nan or may_carry_gradient(factor):
        return factor * xp.where((factor == 0) & is_infinite(xp, x), 0.0, x)
    return factor * xp.where(factor == 0, 0.0, x)


def is_infinite(xp: Namespace, x: Array) -> Array:
    """``isinf(x)`` as ``|x| == inf``: a comparison, which compilers vectorize
    (Inductor's CPU code tests ``isinf`` element by element, in a scalar loop)."""
    return xp.abs(x) == math.inf


def row_max(xp: Namespace, z: Array, axis: int) -> Array:
    """The maximum over ``axis`` (kept, size 1), 0 for rows without a finite maximum.

    Every sum over the logits is taken on ``z - row_max``: the loss is invariant to that
    shift, and the shifted values are small, so the float rounding of large logits does
    not reach the result (with ``lse`` itself, of magnitude ``|z|``, it would). A row of
    all -inf is shifted by 0 instead of giving ``(-inf) - (-inf) = nan``.
    """
    top = xp.max(z, axis=axis, keepdims=True)
    return finite_or_zero(xp, top)


def finite_or_zero(xp: Namespace, x: Array) -> Array:
    """``x`` where it is finite, 0 where it is NaN or infinite (a namespace's one-op
    ``finite_or_zero`` where it has one and nothing differentiates ``x``: on small inputs
    the test and select cost more than the reduction they guard). Under autodiff the
    select is kept: its derivative is exactly 0 at a non-finite ``x``, where a fused op's
    may pass on a NaN cotangent."""
    fused = getattr(xp, "finite_or_zero", None)
    if fused is not None and not may_carry_gradient(x):
        return fused(x)
    return xp.where(xp.isfinite(x), x, 0.0)


def index_dtype(xp: Namespace, like: Array) -> Any:
    """The default indexing dtype on ``like``'s device (int64 without an info object)."""
    direct = getattr(xp, "index_dtype", None)
    if direct is not None:
        return direct(device(like))
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.int64
    return info().default_dtypes(device=device(like))["indexing"]


def logsumexp(xp: Namespace, z: Array, axis: int) -> Array:
    """logsumexp over ``axis`` with the class axis kept (size 1); rows of -inf give -inf."""
    fused = getattr(xp, "logsumexp", None)
    if fused is not None:
        return fused(z, axis=axis, keepdims=True)
    top = row_max(xp, z, axis)
    return xp.log(xp.sum(xp.exp(z - top), axis=axis, keepdims=True)) + top


def log_softmax(
    xp: Namespace, z: Array, axis: int, dtype: Any, *, out: Array | None = None
) -> Array:
    """``z - logsumexp(z)`` over ``axis``, in ``dtype``: the namespace's one fused op
    where it has one. A row of all -inf (or with +inf or NaN) gives NaN. ``out``: an
    array of ``z``'s shape and ``dtype`` that receives it (namespaces that write in
    place), else a new array."""
    fused = getattr(xp, "log_softmax", None)
    if fused is not None:
        if out is None:
            return fused(z, axis=axis, dtype=dtype)
        return fused(z, axis=axis, dtype=dtype, out=out)
    z = xp.astype(z, dtype, copy=False)
    shifted = z - xp.max(z, axis=axis, keepdims=True)
    result = shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    if out is None:
        return result
    out[...] = result
    return out


def is_number(x: Any) -> bool:
    """Whether ``x`` is a number rather than an array (or None): a Python int or float,
    or a symbolic one, which is no subclass of either: torch's ``SymInt`` and
    ``SymFloat`` (a count of positions, a number of classes and the terms made of it)
    where ``torch.compile`` runs the core on dynamic shapes."""
    if isinstance(x, (int, float)):
        return True
    # (Duck-typed, as the core imports no framework: a SymInt converts like an int, a
    # SymFloat like a float, and neither has a shape.)
    return not hasattr(x, "shape") and (hasattr(x, "__index__") or hasattr(x, "__float__"))


def per_unit(xp: Namespace, value: Any, denominator: Any) -> Any:
    """``value / denominator``, and 0 where the denominator is 0 (nothing kept; see
    ``lsr._core._targets.Targets.mean_denominator``). A negative or NaN denominator
    divides as it is. (A number: one division, no select.)"""
    if is_number(denominator):
        return value / denominator if denominator else value * 0.0
    nothing = denominator == 0
    return xp.where(nothing, 0.0, value / xp.where(nothing, 1.0, denominator))


def rows(x: Array, index: Any) -> Array:
    """``x[index]`` along the leading axis (``...``: all of ``x``)."""
    return x if index is ... else x[index, ...]


def set_rows(x: Array, index: Any, value: Any) -> None:
    """``x[index] = value`` along the leading axis (``...``: all of ``x``), in place."""
    if index is ...:
        x[...] = value
    else:
        x[index, ...] = value


def blocks_of_rows(
    x: Array, blocks: list[Any], scratch: Array | None, *, dtype: Any, copy: bool
) -> Iterator[tuple[Any, Array, Array | None]]:
    """``(index, block, work)`` for each block of rows of ``x`` (``blocks``: indices of
    the leading axis, or ``[...]``), for namespaces whose arrays can be assigned in
    place: ``work`` is ``scratch``'s first rows of the block's size (None without
    ``scratch``), and ``block`` is ``x``'s rows, or ``work`` holding them in ``dtype``
    when they are of another dtype (half precision) or ``copy`` is asked (the block
    will be overwritten, and ``x`` is the caller's). Either needs ``scratch``."""
    for index in blocks:
        block = rows(x, index)
        work = scratch
        if scratch is not None and index is not ...:  # (``...`` takes 0-d arrays too)
            work = rows(scratch, slice(0, block.shape[0]))
        if copy or block.dtype != dtype:
            work[...] = block  # type: ignore[index]
            block = work
        yield index, block, work


def squeeze(xp: Namespace, x: Any, axis: int) -> Any:
    """``x`` without its (size-1) ``axis``; floats and 0-d arrays as they are."""
    if is_number(x) or x.ndim == 0:
        return x
    return xp.squeeze(x, axis=axis)


def expand(xp: Namespace, x: Any, axis: int) -> Any:
    """``x`` with a size-1 ``axis`` inserted; floats and 0-d arrays as they are."""
    if is_number(x) or x.ndim == 0:
        return x
    return xp.expand_dims(x, axis=axis)


def soft_cap(xp: Namespace, z: Array, cap: float) -> tuple[Array, Array]:
    """``(cap * tanh(z / cap), its derivative 1 - tanh(z / cap)**2)``: logits bounded to
    (-cap, cap), as Gemma 2 caps its final logits. A logit of -inf (a masked class) stays
    -inf, with derivative 0: soft-capping must not unmask it."""
    squashed = xp.tanh(z / cap)
    masked = z == -math.inf
    capped = xp.where(masked, z, cap * squashed)
    return capped, xp.where(masked, 0.0, 1.0 - squashed * squashed)

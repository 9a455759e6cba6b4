"""A small array-API namespace for TensorFlow: exactly what lsr's core calls, nothing more.

array-api-compat has no TensorFlow namespace, so ``lsr._compat.array_namespace`` routes
tf.Tensors (and tf.Variables) here. The namespace implements only the functions, dtypes
and constants listed in ``FUNCTIONS``, ``DTYPES`` and ``CONSTANTS``: a change to the core
that needs another one fails loudly (``AttributeError``, and a test that compares these
lists with every ``xp.<name>`` the core modules use) instead of silently reaching into
``tf.experimental.numpy``.

Everything here traces under ``tf.function`` and compiles under ``jit_compile=True``: no
value-dependent Python branch, and Python scalars mixed into an operation take the dtype
of the tensor they meet (so float64 inputs stay float64, as the standard's promotion rules
for Python scalars ask). This module imports TensorFlow; ``lsr._compat`` imports it only
when TensorFlow is already loaded (it is part of ``lsr.tensorflow``, so that import loads
the adapter too).
"""

from __future__ import annotations

import numbers
from typing import Any

import tensorflow as tf

__all__ = ["CONSTANTS", "DTYPES", "FUNCTIONS", "namespace"]

FUNCTIONS = (
    "__array_namespace_info__",
    "abs",
    "all",
    "any",
    "arange",
    "argmax",
    "argsort",
    "asarray",
    "astype",
    "broadcast_to",
    "concat",
    "count_nonzero",
    "cumulative_sum",
    "exp",
    "expand_dims",
    "finfo",
    "full",
    "iinfo",
    "isdtype",
    "isfinite",
    "isinf",
    "isnan",
    "log",
    "log1p",
    "logsumexp",
    "matmul",
    "matrix_transpose",
    "max",
    "maximum",
    "mean",
    "min",
    "nonzero",
    "ones_like",
    "reshape",
    "result_type",
    "searchsorted",
    "sigmoid",
    "sort",
    "sqrt",
    "squeeze",
    "stack",
    "sum",
    "take",
    "take_along_axis",
    "tanh",
    "vecdot",
    "where",
    "zeros",
    "zeros_like",
)
DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
)
CONSTANTS = ("nan",)

_KINDS = {
    "bool": lambda dtype: dtype.is_bool,
    "signed integer": lambda dtype: dtype.is_integer and not dtype.is_unsigned,
    "unsigned integer": lambda dtype: dtype.is_integer and dtype.is_unsigned,
    "integral": lambda dtype: dtype.is_integer,
    "real floating": lambda dtype: dtype.is_floating,
    "complex floating": lambda dtype: dtype.is_complex,
    "numeric": lambda dtype: dtype.is_integer or dtype.is_floating or dtype.is_complex,
}


def _axes(axis: Any) -> Any:
    return list(axis) if isinstance(axis, tuple) else axis


def _static_shape(shape: Any) -> list[int]:
    """``shape`` as a list for tf.reshape; one unknown (None) dimension becomes -1."""
    dims = [None if d is None else int(d) for d in shape]
    unknown = [i for i, d in enumerate(dims) if d is None]
    if len(unknown) > 1:
        raise ValueError(
            "lsr's TensorFlow namespace can reshape to a shape with at most one unknown "
            "dimension (inside tf.function, give the function an input_signature with at most "
            f"one None dimension). Received: shape={tuple(dims)}"
        )
    return [-1 if d is None else d for d in dims]


def _promote(a: Any, b: Any) -> Any:
    if a == b:
        return a
    if a.is_floating and b.is_floating:
        if a.size == b.size:
            # float16 with bfloat16: no common 16-bit type, so float32 (as in JAX).
            return tf.float32
        return a if a.size > b.size else b
    if a.is_integer and b.is_integer and a.is_unsigned == b.is_unsigned:
        return a if a.size > b.size else b
    raise TypeError(
        "lsr's TensorFlow namespace promotes floating dtypes, or integer dtypes of the same "
        f"signedness, only. Received: dtypes=({a.name}, {b.name})"
    )


class _NamespaceInfo:
    """``__array_namespace_info__()``: TensorFlow's defaults (float32, int64 indices)."""

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, Any]:
        found = {name: getattr(tf, name) for name in DTYPES}
        if kind is None:
            return found
        return {name: dtype for name, dtype in found.items() if namespace.isdtype(dtype, kind)}

    def default_dtypes(self, *, device: Any = None) -> dict[str, Any]:
        return {
            "real floating": tf.float32,
            "complex floating": tf.complex64,
            "integral": tf.int64,
            "indexing": tf.int64,
        }


class TensorFlowNamespace:
    """The array-API functions lsr's core calls, on tf.Tensors (see the module docstring)."""

    nan = float("nan")

    def __init__(self) -> None:
        for name in DTYPES:
            setattr(self, name, getattr(tf, name))

    def __repr__(self) -> str:
        return "<lsr TensorFlow array namespace>"

    def __array_namespace_info__(self) -> _NamespaceInfo:
        return _NamespaceInfo()

    # Elementwise.

    def exp(self, x: Any) -> Any:
        return tf.exp(x)

    def log(self, x: Any) -> Any:
        return tf.math.log(x)

    def log1p(self, x: Any) -> Any:
        return tf.math.log1p(x)

    def maximum(self, x1: Any, x2: Any, /) -> Any:
        return tf.maximum(x1, x2)

    def logsumexp(self, x: Any, /, *, axis: int, keepdims: bool = False) -> Any:
        # Not in the standard: the core uses a fused logsumexp where a namespace has one.
        return tf.reduce_logsumexp(x, axis=axis, keepdims=keepdims)

    def sigmoid(self, x: Any) -> Any:
        # Not in the standard: the core's optional one-op sigmoid.
        return tf.math.sigmoid(x)

    def isfinite(self, x: Any) -> Any:
        return tf.math.is_finite(x)

    def isinf(self, x: Any) -> Any:
        return tf.math.is_inf(x)

    def isnan(self, x: Any) -> Any:
        return tf.math.is_nan(x)

    def tanh(self, x: Any) -> Any:
        return tf.tanh(x)

    def abs(self, x: Any) -> Any:
        return tf.abs(x)

    def sqrt(self, x: Any) -> Any:
        return tf.sqrt(x)

    def where(self, condition: Any, x1: Any, x2: Any) -> Any:
        # A Python scalar takes the other operand's dtype (the standard's rule), so
        # ``where(mask, x, 0.0)`` keeps float64 and ``where(mask, nan, x)`` keeps float32.
        # (types-tensorflow's TensorCompatible lists no numbers.Number: ignored below.)
        if isinstance(x1, numbers.Number) and not isinstance(x2, numbers.Number):
            x1 = tf.constant(x1, dtype=x2.dtype)  # type: ignore[arg-type]
        elif isinstance(x2, numbers.Number) and not isinstance(x1, numbers.Number):
            x2 = tf.constant(x2, dtype=x1.dtype)  # type: ignore[arg-type]
        return tf.where(condition, x1, x2)

    # Reductions.

    def sum(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_sum(x, axis=_axes(axis), keepdims=keepdims)

    def max(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_max(x, axis=_axes(axis), keepdims=keepdims)

    def count_nonzero(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        # (int64, the standard's default index dtype.)
        return tf.math.count_nonzero(x, axis=_axes(axis), keepdims=keepdims, dtype=tf.int64)

    def min(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_min(x, axis=_axes(axis), keepdims=keepdims)

    def mean(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_mean(x, axis=_axes(axis), keepdims=keepdims)

    def argmax(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if axis is None:
            x, axis = tf.reshape(x, [-1]), 0
        result = tf.argmax(x, axis=axis, output_type=tf.int64)
        return tf.expand_dims(result, axis) if keepdims else result

    def any(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_any(tf.cast(x, tf.bool), axis=_axes(axis), keepdims=keepdims)

    def all(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        return tf.reduce_all(tf.cast(x, tf.bool), axis=_axes(axis), keepdims=keepdims)

    def vecdot(self, x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
        """``sum(x1 * x2, axis)``; a class vector ``x2`` is contracted without the product."""
        ndim = max(x1.shape.rank, x2.shape.rank)
        axis %= ndim
        if x2.shape.rank == x1.shape.rank and all(
            d == 1 for i, d in enumerate(x2.shape) if i != axis
        ):
            # One matrix-vector contraction: no x1-sized temporary.
            return tf.tensordot(x1, tf.reshape(x2, [-1]), axes=[[axis], [0]])
        return tf.reduce_sum(x1 * x2, axis=axis)

    def matmul(self, x1: Any, x2: Any, /) -> Any:
        return tf.linalg.matmul(x1, x2)

    def matrix_transpose(self, x: Any, /) -> Any:
        return tf.linalg.matrix_transpose(x)

    # Shapes and indexing.

    def concat(self, arrays: Any, /, *, axis: int = 0) -> Any:
        return tf.concat(list(arrays), axis=axis)

    def stack(self, arrays: Any, /, *, axis: int = 0) -> Any:
        return tf.stack(list(arrays), axis=axis)

    def reshape(self, x: Any, /, shape: Any, *, copy: Any = None) -> Any:
        return tf.reshape(x, _static_shape(shape))

    def squeeze(self, x: Any, /, axis: Any) -> Any:
        return tf.squeeze(x, axis=[axis] if isinstance(axis, int) else list(axis))

    def expand_dims(self, x: Any, /, *, axis: int = 0) -> Any:
        return tf.expand_dims(x, axis=axis)

    def broadcast_to(self, x: Any, /, shape: Any) -> Any:
        return tf.broadcast_to(x, _static_shape(shape))

    def take(self, x: Any, indices: Any, /, *, axis: Any = None) -> Any:
        if axis is None:
            x, axis = tf.reshape(x, [-1]), 0
        return tf.gather(x, indices, axis=axis)

    def take_along_axis(self, x: Any, indices: Any, /, *, axis: int = -1) -> Any:
        """``x`` gathered along ``axis`` at ``indices`` (same shape as ``x`` but on ``axis``)."""
        ndim = x.shape.rank
        axis %= ndim
        if axis == ndim - 1:
            return tf.gather(x, indices, batch_dims=ndim - 1)
        # Move the axis last, gather there, move it back.
        order = [d for d in range(ndim) if d != axis] + [axis]
        inverse = [order.index(d) for d in range(ndim)]
        gathered = tf.gather(
            tf.transpose(x, order), tf.transpose(indices, order), batch_dims=ndim - 1
        )
        return tf.transpose(gathered, inverse)

    def nonzero(self, x: Any, /) -> tuple[Any, ...]:
        found = tf.where(x)  # (count, rank) int64
        return tuple(found[:, i] for i in range(x.shape.rank))

    def cumulative_sum(self, x: Any, /, *, axis: int | None = None) -> Any:
        if axis is None:
            if x.shape.rank != 1:
                raise ValueError("cumulative_sum needs `axis` for arrays of rank other than 1.")
            axis = 0
        return tf.cumsum(x, axis=axis)

    def sort(self, x: Any, /, *, axis: int = -1) -> Any:
        return tf.sort(x, axis=axis)

    def argsort(
        self, x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True
    ) -> Any:
        """Indices that sort ``x`` (int64); always stable (``tf.argsort``'s stable sort)."""
        direction = "DESCENDING" if descending else "ASCENDING"
        result = tf.argsort(x, axis=axis, direction=direction, stable=True)
        return tf.cast(result, tf.int64)

    def searchsorted(self, x1: Any, x2: Any, /, *, side: str = "left") -> Any:
        """Indices of ``x2`` in the sorted 1-D ``x1``, in the index dtype (int64)."""
        return tf.searchsorted(x1, x2, side=side, out_type=tf.int64)

    # Creation, dtypes.

    def finfo(self, dtype: Any) -> Any:
        """The floating dtype's limits, as NumPy reports them (``eps``, ``max``, ...)."""
        import numpy as np

        # (types-tensorflow types as_numpy_dtype as any np.number, np.finfo wants floating.)
        return np.finfo(tf.as_dtype(dtype).as_numpy_dtype)  # type: ignore[type-var]

    def iinfo(self, dtype: Any) -> Any:
        import numpy as np

        return np.iinfo(tf.as_dtype(dtype).as_numpy_dtype)

    def arange(
        self,
        start: Any,
        /,
        stop: Any = None,
        step: Any = 1,
        *,
        dtype: Any = None,
        device: Any = None,
    ) -> Any:
        if stop is None:
            start, stop = 0, start
        if dtype is None:
            integral = all(isinstance(v, numbers.Integral) for v in (start, stop, step))
            dtype = tf.int64 if integral else tf.float32
        if device:
            with tf.device(device):
                return tf.range(start, stop, step, dtype=dtype)
        return tf.range(start, stop, step, dtype=dtype)

    def asarray(
        self, obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None
    ) -> Any:
        if device:
            with tf.device(device):
                return tf.convert_to_tensor(obj, dtype=dtype)
        return tf.convert_to_tensor(obj, dtype=dtype)

    def ones_like(self, x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
        return tf.ones_like(x, dtype=dtype)

    def full(self, shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        dtype = tf.float32 if dtype is None else dtype
        if device:
            with tf.device(device):
                return tf.fill(_static_shape(shape), tf.constant(fill_value, dtype=dtype))
        return tf.fill(_static_shape(shape), tf.constant(fill_value, dtype=dtype))

    def zeros(self, shape: Any, *, dtype: Any = None, device: Any = None) -> Any:
        dtype = tf.float32 if dtype is None else dtype
        if device:
            with tf.device(device):
                return tf.zeros(_static_shape(shape), dtype=dtype)
        return tf.zeros(_static_shape(shape), dtype=dtype)

    def zeros_like(self, x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
        return tf.zeros_like(x, dtype=dtype)

    def astype(self, x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
        return tf.cast(x, dtype)

    def result_type(self, *dtypes: Any) -> Any:
        """The promoted dtype of floating dtypes (or of integer dtypes of one signedness)."""
        result = tf.as_dtype(dtypes[0])
        for other in dtypes[1:]:
            result = _promote(result, tf.as_dtype(other))
        return result

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        dtype = tf.as_dtype(dtype)
        if isinstance(kind, tuple):
            return any(self.isdtype(dtype, k) for k in kind)
        if isinstance(kind, str):
            if kind not in _KINDS:
                raise ValueError(
                    f"`kind` must be a dtype or one of {sorted(_KINDS)}. Received: kind={kind!r}"
                )
            return bool(_KINDS[kind](dtype))
        return dtype == tf.as_dtype(kind)


namespace = TensorFlowNamespace()

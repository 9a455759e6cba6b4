"""The one place lsr resolves array namespaces.

Every other module asks this one for ``xp``. array-api-compat covers NumPy, PyTorch,
JAX, CuPy and array-api-strict; TensorFlow has no namespace there, so a tf.Tensor is
routed to lsr's own small namespace (``lsr._tf_namespace``), which is imported only when
TensorFlow is already loaded: resolving a namespace never imports a framework.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
from array_api_compat import is_jax_array, is_lazy_array

__all__ = ["array_namespace", "device", "is_concrete", "is_tf_array", "values_are_cheap"]


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_tf_array(x: Any) -> bool:
    """Whether ``x`` is a TensorFlow tensor or variable (without importing TensorFlow)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    return isinstance(x, (tf.Tensor, tf.Variable))


def _library_name(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries are skipped).

    Raises:
        TypeError: when the arrays come from different libraries, or one is not an array.
    """
    present = [a for a in arrays if a is not None]
    if present and all(_is_torch_tensor(a) for a in present):
        # The direct route: array-api-compat's generic dispatch is lru_cache-wrapped,
        # which torch.compile's tracer warns about on every call.
        from array_api_compat import torch as torch_namespace

        return torch_namespace
    tf_arrays = [a for a in present if is_tf_array(a)]
    if tf_arrays:
        if len(tf_arrays) != len(present):
            others = sorted({_library_name(a) for a in present if not is_tf_array(a)})
            raise TypeError(
                "All array arguments must come from one array library, but TensorFlow "
                f"tensors were mixed with arrays from {others}. Convert them first. "
                f"Received: types={[type(a).__name__ for a in present]}"
            )
        from lsr import _tf_namespace

        return _tf_namespace.namespace
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as error:
        libraries = sorted({_library_name(a) for a in present})
        raise TypeError(
            "All array arguments must be arrays of one array-API library "
            "(NumPy, PyTorch, JAX, CuPy, array-api-strict, or TensorFlow through lsr). "
            f"Received: types={[type(a).__name__ for a in present]} from {libraries}"
        ) from error


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values Python may read now (so they can be validated).

    False under ``jax.jit``/``vmap`` tracing, inside a ``tf.function`` graph, while
    ``torch.compile`` traces, and under ``torch.func`` transforms: there, validation
    that needs values is skipped and bad values show up as NaN in the result instead.
    """
    if _is_torch_tensor(x):
        torch = sys.modules["torch"]
        if torch.compiler.is_compiling():
            return False
        if torch._C._functorch.is_functorch_wrapped_tensor(x):
            return False
        return x.device.type != "meta"
    jax = sys.modules.get("jax")
    if jax is not None and is_jax_array(x):
        # array-api-compat calls every JAX array lazy; only tracers really are.
        return not isinstance(x, jax.core.Tracer)
    if is_lazy_array(x):
        return False
    if is_tf_array(x):
        tf = sys.modules["tensorflow"]
        return tf.executing_eagerly()
    return True


def values_are_cheap(x: Any) -> bool:
    """Whether reading ``x``'s values now is cheap: concrete and in host memory.

    Value checks (label ranges) run only then: on an accelerator they would force a
    device synchronization on every call, so there, as under tracing, an out-of-range
    label shows up as NaN instead.
    """
    if not is_concrete(x):
        return False
    if _is_torch_tensor(x):
        return x.device.type == "cpu"
    jax = sys.modules.get("jax")
    if jax is not None and is_jax_array(x):
        return all(d.platform == "cpu" for d in x.devices())
    return True


def device(x: Any) -> Any:
    """The device of ``x``, for creating constants beside it."""
    if _is_torch_tensor(x):
        return x.device
    return array_api_compat.device(x)

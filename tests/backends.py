"""The array namespaces the tests run on, and how to move arrays in and out of them.

A test session names its backends in the ``LSR_BACKENDS`` environment variable
(comma-separated; nox sets it). A named backend that cannot be imported is an error,
never a skip. Without the variable, every importable backend is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsr import _compat

# The registry's names, in its order (lsr._compat.BACKENDS).
ALL_BACKENDS = tuple(_compat.BACKENDS)


def selected_backends() -> tuple[str, ...]:
    requested = os.environ.get("LSR_BACKENDS", "").strip()
    if requested:
        names = tuple(name.strip() for name in requested.split(",") if name.strip())
        unknown = sorted(set(names) - set(ALL_BACKENDS))
        if unknown:
            raise ValueError(
                f"LSR_BACKENDS names unknown backends {unknown}; known: {ALL_BACKENDS}"
            )
        return names
    return tuple(
        name
        for name in ALL_BACKENDS
        if importlib.util.find_spec(_compat.BACKENDS[name].module) is not None
    )


@dataclass(frozen=True)
class Backend:
    """A namespace plus conversions, so a test can be written once for every backend.

    ``registry`` is lsr's own record of the library (``lsr._compat.Backend``): its
    half-precision dtypes, whether its arrays are writable, its overlay namespace.
    """

    name: str
    xp: Any
    _from_numpy: Callable[[np.ndarray], Any]
    _to_numpy: Callable[[Any], np.ndarray]
    registry: _compat.Backend

    def asarray(self, value: Any, dtype: Any = None) -> Any:
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        return self._from_numpy(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(self._to_numpy(array))

    def __repr__(self) -> str:
        return self.name


def _conversions(name: str) -> tuple[Callable[[np.ndarray], Any], Callable[[Any], np.ndarray]]:
    """NumPy in and out: a test-only fact, kept here rather than in lsr's registry."""
    if name == "numpy":
        return (lambda a: a), (lambda a: a)
    if name == "array_api_strict":
        import array_api_strict

        return array_api_strict.asarray, np.from_dlpack
    if name == "torch":
        import torch

        return torch.from_numpy, (lambda a: a.detach().cpu().numpy())
    if name == "jax":
        import jax

        # The float64 reference comparisons need 64-bit JAX arrays.
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return jnp.asarray, np.asarray
    if name == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor, (lambda a: a.numpy())
    raise AssertionError(f"no conversions for backend {name!r}: add them to _conversions")


def load_backend(name: str) -> Backend:
    """Import a backend; raises ImportError when it is not installed."""
    registry = _compat.get_backend(name)
    importlib.import_module(registry.module)
    from_numpy, to_numpy = _conversions(name)
    return Backend(name, registry.namespace(), from_numpy, to_numpy, registry)


# float64 is compared tightly; float32 at a few ulps of accumulated error; half precision
# (computed in float32 by lsr, but whose inputs are rounded) loosely.
_TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "float32": (2e-5, 2e-6),
    "float16": (2e-3, 2e-3),
    "bfloat16": (1e-2, 1e-2),
}


def dtype_name(dtype: Any) -> str:
    """ "float32" for numpy, torch, jax, array-api-strict and TensorFlow dtypes alike."""
    return getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]


def tolerance(dtype: Any) -> tuple[float, float]:
    return _TOLERANCES[dtype_name(dtype)]


def assert_close(actual: Any, expected: Any, dtype: Any, *, scale: float = 1.0) -> None:
    """Compare with rtol/atol chosen by ``dtype`` (times ``scale``); NaNs must match."""
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol * scale,
        atol=atol * scale,
    )

"""The array namespaces the tests run on, and how to move arrays in and out of them.

A test session names its backends in the ``LSR_BACKENDS`` environment variable
(comma-separated; nox sets it). A named backend that cannot be imported is an error,
never a skip. Without the variable, every importable backend is used.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

ALL_BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "tensorflow")
_MODULE_OF = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "tensorflow": "tensorflow",
}


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
    return tuple(name for name in ALL_BACKENDS if importlib.util.find_spec(_MODULE_OF[name]))


@dataclass(frozen=True)
class Backend:
    """A namespace plus conversions, so a test can be written once for every backend."""

    name: str
    xp: Any
    _from_numpy: Callable[[np.ndarray], Any]
    _to_numpy: Callable[[Any], np.ndarray]

    def asarray(self, value: Any, dtype: Any = None) -> Any:
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        return self._from_numpy(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(self._to_numpy(array))

    def __repr__(self) -> str:
        return self.name


def load_backend(name: str) -> Backend:
    """Import a backend; raises ImportError when it is not installed."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend(name, xp, lambda a: a, lambda a: a)
    if name == "array_api_strict":
        import array_api_strict as xp

        return Backend(name, xp, xp.asarray, lambda a: np.from_dlpack(a))
    if name == "torch":
        import array_api_compat.torch as xp
        import torch

        return Backend(name, xp, torch.from_numpy, lambda a: a.detach().cpu().numpy())
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return Backend(name, jnp, jnp.asarray, np.asarray)
    if name == "tensorflow":
        import tensorflow as tf

        from lsr import _tf_namespace

        return Backend(name, _tf_namespace.namespace, tf.convert_to_tensor, lambda a: a.numpy())
    raise ValueError(f"unknown backend {name!r}")


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

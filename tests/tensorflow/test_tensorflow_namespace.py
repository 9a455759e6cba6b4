"""lsr's TensorFlow array namespace: exactly what the generic code calls, with TF semantics.

The core suite (tests/test_core.py and friends) runs through this namespace via the
``backend`` fixture; these tests pin what it exposes and the conventions TensorFlow does
not give for free (Python scalars taking the tensor's dtype, negative axes, unknown
dimensions inside tf.function).
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

import lsr
from lsr import _compat
from lsr.tensorflow import _namespace as _tf_namespace
from lsr.tensorflow._namespace import namespace as xp

LSR_DIR = pathlib.Path(lsr.__file__).parent
_USE = re.compile(r"(?<![\w.])xp\.([A-Za-z_]\w*)")
_INFO_USE = re.compile(r"info\(\)\.([A-Za-z_]\w*)")


def names_used(source: str) -> set[str]:
    """Every ``xp.<name>`` (and ``__array_namespace_info__().<name>``) in ``source``."""
    return set(_USE.findall(source)) | {f"info.{name}" for name in _INFO_USE.findall(source)}


def exposed() -> set[str]:
    info = xp.__array_namespace_info__()
    return (
        {name for name in dir(xp) if not name.startswith("_")}
        | {"__array_namespace_info__"}
        | {f"info.{name}" for name in dir(info) if not name.startswith("_")}
    )


def test_the_lists_are_what_the_namespace_exposes():
    listed = set(_tf_namespace.FUNCTIONS + _tf_namespace.DTYPES + _tf_namespace.CONSTANTS)
    public = {name for name in dir(xp) if not name.startswith("_")}
    assert public | {"__array_namespace_info__"} == listed
    assert len(listed) == len(
        _tf_namespace.FUNCTIONS + _tf_namespace.DTYPES + _tf_namespace.CONSTANTS
    )


def test_every_name_the_generic_modules_use_is_implemented():
    """A core change that needs another function fails here, before any numbers."""
    own = pathlib.Path(_tf_namespace.__file__)
    modules = [path for path in sorted(LSR_DIR.rglob("*.py")) if path != own]
    used = {}
    for path in modules:
        for name in names_used(path.read_text()):
            used.setdefault(name, []).append(path.name)
    assert {"sum", "take_along_axis", "vecdot", "info.default_dtypes"} <= set(used)
    missing = {name: files for name, files in used.items() if name not in exposed()}
    assert missing == {}


def test_the_coverage_check_can_fail():
    source = "loss = xp.cumulative_prod(xp.exp(z))\nkinds = info().capabilities()"
    assert names_used(source) == {"cumulative_prod", "exp", "info.capabilities"}
    assert names_used(source) - exposed() == {"cumulative_prod", "info.capabilities"}
    with pytest.raises(AttributeError):
        xp.cumulative_prod  # noqa: B018


def test_tf_tensors_resolve_to_the_namespace():
    x = tf.constant([1.0, 2.0])
    assert _compat.array_namespace(x, tf.Variable([0.5, 0.5])) is xp
    assert "CPU" in _compat.device(x)
    assert _compat.is_concrete(x)
    with pytest.raises(TypeError, match="TensorFlow tensors were mixed with arrays from"):
        _compat.array_namespace(x, np.ones(2))

    seen = []

    @tf.function
    def concrete_inside(y):
        seen.append(_compat.is_concrete(y))
        return y

    concrete_inside(x)
    assert seen == [False]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_python_scalars_take_the_tensor_dtype(dtype):
    x = tf.constant([1.0, -2.0, 3.0], dtype=dtype)
    mask = x > 0
    assert xp.where(mask, x, 0.0).dtype == dtype
    assert xp.where(mask, 1.0, x).dtype == dtype
    with_nan = xp.where(mask, xp.nan, x)
    assert with_nan.dtype == dtype
    np.testing.assert_array_equal(np.isnan(with_nan.numpy()), [True, False, True])
    assert (1.0 - 0.1 * x).dtype == dtype
    # 1/3 rounded once in float64 (not via float32).
    np.testing.assert_equal(xp.where(mask, x / 3.0, 0.0).numpy()[0], np.array(1 / 3, dtype.name))


def test_isdtype_kinds():
    assert xp.isdtype(tf.int32, "integral") and xp.isdtype(tf.uint8, "unsigned integer")
    assert not xp.isdtype(tf.uint8, "signed integer")
    assert xp.isdtype(tf.bfloat16, "real floating") and xp.isdtype(tf.float16, "real floating")
    assert not xp.isdtype(tf.int64, "real floating") and not xp.isdtype(tf.bool, "integral")
    assert xp.isdtype(tf.bool, "bool") and xp.isdtype(tf.float64, ("bool", "real floating"))
    assert xp.isdtype(tf.float32, tf.float32) and not xp.isdtype(tf.float32, tf.float64)
    with pytest.raises(ValueError, match="Received: kind='floating'"):
        xp.isdtype(tf.float32, "floating")


def test_result_type_and_info():
    assert xp.result_type(tf.float32, tf.float64) == tf.float64
    assert xp.result_type(tf.float16, tf.bfloat16) == tf.float32
    assert xp.result_type(tf.int8, tf.int32) == tf.int32
    with pytest.raises(TypeError, match="Received: dtypes=\\(int32, float32\\)"):
        xp.result_type(tf.int32, tf.float32)
    info = xp.__array_namespace_info__()
    assert info.default_dtypes(device=None)["real floating"] == tf.float32
    assert info.default_dtypes(device=None)["indexing"] == tf.int64
    assert set(info.dtypes(kind="real floating")) == {"float16", "bfloat16", "float32", "float64"}


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_take_along_axis_matches_numpy(axis):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5))
    shape = list(x.shape)
    shape[axis] = 1
    index = rng.integers(0, x.shape[axis], size=shape)
    actual = xp.take_along_axis(tf.constant(x), tf.constant(index), axis=axis)
    np.testing.assert_array_equal(actual.numpy(), np.take_along_axis(x, index, axis=axis))


@pytest.mark.parametrize("axis", [-1, -2, -3])
def test_vecdot_matches_numpy(axis):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4))
    # A class vector along the axis (the contraction path) and a full array.
    vector_shape = [1, 1, 1]
    vector_shape[axis] = x.shape[axis]
    vector = rng.normal(size=vector_shape)
    full = rng.normal(size=x.shape)
    for other in (vector, full):
        actual = xp.vecdot(tf.constant(x), tf.constant(other), axis=axis)
        np.testing.assert_allclose(actual.numpy(), np.sum(x * other, axis=axis), rtol=1e-12)


def test_small_functions_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4))
    t = tf.constant(x)
    np.testing.assert_allclose(xp.max(t, axis=1, keepdims=True).numpy(), x.max(1, keepdims=True))
    np.testing.assert_allclose(xp.sum(t, axis=(0, 1)).numpy(), x.sum())
    np.testing.assert_allclose(xp.mean(t, axis=0).numpy(), x.mean(0))
    np.testing.assert_array_equal(xp.argmax(t, axis=1).numpy(), x.argmax(1))
    assert xp.argmax(t, axis=1).dtype == tf.int64
    np.testing.assert_allclose(xp.take(t[0], tf.constant([3, 0])).numpy(), x[0, [3, 0]])
    np.testing.assert_allclose(xp.squeeze(t[:, :1], axis=1).numpy(), x[:, 0])
    np.testing.assert_allclose(xp.stack([t[0], t[1]], axis=0).numpy(), x[:2])
    np.testing.assert_allclose(xp.matmul(t, xp.matrix_transpose(t)).numpy(), x @ x.T, rtol=1e-12)
    ids = xp.arange(4, device=_compat.device(t))
    assert ids.dtype == tf.int64 and ids.numpy().tolist() == [0, 1, 2, 3]
    assert xp.asarray([1.0, 2.0], dtype=tf.float64).dtype == tf.float64
    assert bool(xp.any(t > 1.0)) == bool((x > 1.0).any())
    assert bool(xp.all(xp.isfinite(t)))
    filled = xp.full((2, 3), -0.25, dtype=tf.float64)
    assert filled.dtype == tf.float64
    np.testing.assert_array_equal(filled.numpy(), np.full((2, 3), -0.25))


def test_reshape_with_one_unknown_dimension_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def roundtrip(x):
        flat = xp.reshape(x, (-1,))
        return xp.reshape(flat, x.shape)  # (None, 3): the None becomes -1.

    x = tf.reshape(tf.range(6, dtype=tf.float32), (2, 3))
    np.testing.assert_array_equal(roundtrip(x).numpy(), x.numpy())

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def two_unknown(x):
        return xp.reshape(xp.reshape(x, (-1,)), x.shape)

    with pytest.raises(ValueError, match=r"at most one unknown dimension.*shape=\(None, None\)"):
        two_unknown(x)

"""The backend registry (``lsr._compat``) and the namespace-extension protocol.

* Each selected backend's facts in the registry are checked against the library itself:
  which arrays it claims, the namespace it resolves (against array-api-compat's own
  answer), its half-precision dtypes, whether its arrays are writable, and when its
  values stop being concrete.
* Every namespace the core may run on (each backend's plain namespace and the overlay
  lsr's adapter uses, ``Backend.overlay()``) honours the protocol written in
  ``lsr._compat``'s docstring for every extension of ``lsr._core.EXTENSIONS`` it offers:
  the plain array-API result (computed here with NumPy in float64, from the
  definitions), in place where the protocol says so; and a namespace lsr ships offers no
  name beyond the standard, ``EXTENSIONS`` and its half-precision dtypes.
* The checker is run on a deliberately broken namespace, to show that it can fail.
"""

from __future__ import annotations

import importlib
import itertools
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import array_api_strict
import numpy as np
import pytest

from lsr import _compat
from lsr._core import EXTENSIONS
from tests.backends import tolerance
from tests.test_imports import FRAMEWORKS, loaded_frameworks

# The standard's names, as its reference implementation exports them (less its own
# configuration API).
STANDARD = frozenset(
    name
    for name in array_api_strict.__all__
    if "strict" not in name.lower() and name not in ("Device", "__version__")
)

Convert = Callable[[np.ndarray], Any]


# --- The protocol checker ------------------------------------------------------------


def _differs(what: str, actual: Any, expected: np.ndarray, dtype: str) -> list[str]:
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        return [f"{what}: shape {actual.shape}, expected {expected.shape}"]
    rtol, atol = tolerance(dtype)
    if not np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        worst = np.nanmax(np.abs(actual - expected)) if actual.size else 0.0
        return [f"{what}: values differ from the plain result (max abs diff {worst})"]
    return []


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random logits with a masked class (-inf) and one fully masked row along axis 1."""
    z = rng.normal(size=shape) * 3.0
    z[(0,) * len(shape)] = -np.inf
    z[(2, slice(None)) + (0,) * (len(shape) - 2)] = -np.inf
    return z


def _check_logsumexp(f, asarray, to_numpy, rng, dtype):
    z = _logits(rng, (3, 5, 4))
    problems = []
    for axis in range(z.ndim):
        for keepdims in (True, False):
            with np.errstate(divide="ignore"):
                expected = np.log(np.sum(np.exp(z), axis=axis, keepdims=keepdims))
            actual = to_numpy(f(asarray(z.astype(dtype)), axis=axis, keepdims=keepdims))
            problems += _differs(f"axis={axis}, keepdims={keepdims}", actual, expected, dtype)
    return problems


def _check_log_softmax(f, asarray, to_numpy, rng, dtype):
    """A new array in the requested dtype, the input left as it was; rows of large
    logits (+1000) are shifted, a row of all -inf gives NaN."""
    z = _logits(rng, (3, 5, 4))
    z[1] += 1000.0
    problems = []
    for axis in range(z.ndim):
        given = asarray(z.astype(dtype))
        with np.errstate(divide="ignore", invalid="ignore"):
            top = np.max(z, axis=axis, keepdims=True)
            expected = (z - top) - np.log(np.sum(np.exp(z - top), axis=axis, keepdims=True))
        result = f(given, axis=axis, dtype=given.dtype)
        if result is given:
            problems.append(f"axis={axis}: the input itself, not a new array")
        problems += _differs(f"axis={axis}", to_numpy(result), expected, dtype)
        problems += _differs(f"axis={axis}, input", to_numpy(given), z.astype(dtype), dtype)
        # ``out=``: written there (the namespaces whose arrays are written in place).
        out = asarray(np.zeros(z.shape, dtype))
        result = f(given, axis=axis, dtype=given.dtype, out=out)
        problems += _differs(f"axis={axis}, out=", to_numpy(out), expected, dtype)
        problems += _differs(f"axis={axis}, out=, returned", to_numpy(result), expected, dtype)
    return problems


def _check_sum_and_sum_exp(f, asarray, to_numpy, rng, dtype):
    x = _logits(rng, (3, 5, 4))
    problems = []
    for axis in range(x.ndim):
        total, total_exp = f(asarray(x.astype(dtype)), axis=axis)
        problems += _differs(f"sum, axis={axis}", to_numpy(total), x.sum(axis=axis), dtype)
        expected = np.exp(x).sum(axis=axis, keepdims=True)
        problems += _differs(f"sum of exp, axis={axis}", to_numpy(total_exp), expected, dtype)
    return problems


def _check_sum_shifted(f, asarray, to_numpy, rng, dtype):
    # The core passes the logits and their row maxima (0 for a fully masked row); a large
    # offset checks that the sum is of the shifted values, not sum(x) - K * top.
    z = _logits(rng, (3, 5, 4)) + 1e8
    problems = []
    for axis in range(z.ndim):
        top = np.max(z, axis=axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        given, shift = z.astype(dtype), top.astype(dtype)
        expected = np.sum(given.astype(np.float64) - shift, axis=axis, keepdims=True)
        actual = to_numpy(f(asarray(given), asarray(shift), axis=axis))
        problems += _differs(f"axis={axis}", actual, expected, dtype)
    return problems


def _check_inplace_exp(f, asarray, to_numpy, rng, dtype):
    # The core passes max-shifted logits: at most 0, -inf for a masked class. (Two
    # sizes: an extension may take another kernel for many values, as torch's does.)
    problems = []
    for shape in [(3, 5, 4), (3, 2, 6000)]:
        z = _logits(rng, shape)
        shifted = z - np.max(np.where(np.isfinite(z), z, 0.0), axis=1, keepdims=True)
        x = asarray(shifted.astype(dtype))
        result = f(x)
        if result is not x:
            problems.append(f"{shape}: returned a new array instead of x")
        problems += _differs(f"{shape}: x afterwards", to_numpy(x), np.exp(shifted), dtype)
    return problems


def _check_subtract_into(f, asarray, to_numpy, rng, dtype):
    x1 = _logits(rng, (3, 5, 4))
    x2 = np.max(np.where(np.isfinite(x1), x1, 0.0), axis=1, keepdims=True)
    problems = []
    for aliased in (False, True):
        a = asarray(x1.astype(dtype))
        out = a if aliased else asarray(np.zeros(x1.shape, dtype=dtype))
        result = f(out, a, asarray(x2.astype(dtype)))
        what = "out is x1" if aliased else "fresh out"
        if result is not out:
            problems.append(f"{what}: returned a new array instead of out")
        problems += _differs(f"{what}: out afterwards", to_numpy(out), x1 - x2, dtype)
    return problems


def _check_add_along_axis(f, asarray, to_numpy, rng, dtype):
    x = rng.normal(size=(3, 5, 4))
    problems = []
    for axis in range(x.ndim):
        shape = (*x.shape[:axis], 1, *x.shape[axis + 1 :])
        indices = rng.integers(0, x.shape[axis], size=shape)
        values = rng.normal(size=shape)
        expected = x.copy()
        gathered = np.take_along_axis(expected, indices, axis=axis)
        np.put_along_axis(expected, indices, gathered + values, axis=axis)
        array = asarray(x.astype(dtype))
        result = f(array, asarray(indices), asarray(values.astype(dtype)), axis=axis)
        if result is not array:
            problems.append(f"axis={axis}: returned a new array instead of x")
        problems += _differs(f"axis={axis}: x afterwards", to_numpy(array), expected, dtype)
        # One Python float for every index.
        expected = x.copy()
        np.put_along_axis(expected, indices, gathered - 0.375, axis=axis)
        array = asarray(x.astype(dtype))
        result = f(array, asarray(indices), -0.375, axis=axis)
        if result is not array:
            problems.append(f"axis={axis}, a float: returned a new array instead of x")
        label = f"axis={axis}, a float: x afterwards"
        problems += _differs(label, to_numpy(array), expected, dtype)
    return problems


def _check_add_matmul(f, asarray, to_numpy, rng, dtype):
    out0, x1, x2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    out = asarray(out0.astype(dtype))
    result = f(out, asarray(x1.astype(dtype)), asarray(x2.astype(dtype)))
    problems = [] if result is out else ["returned a new array instead of out"]
    return problems + _differs("out afterwards", to_numpy(out), out0 + x1 @ x2, dtype)


def _check_matmul_into(f, asarray, to_numpy, rng, dtype):
    x1, x2 = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    out = asarray(rng.normal(size=(4, 3)).astype(dtype))
    result = f(out, asarray(x1.astype(dtype)), asarray(x2.astype(dtype)))
    problems = [] if result is out else ["returned a new array instead of out"]
    return problems + _differs("out afterwards", to_numpy(out), x1 @ x2, dtype)


def _check_matmul_out(f, asarray, to_numpy, rng, dtype):
    """None, or a new zeroed array of the dtype and device asked for, with the columns
    asked for and between 1 and the rows asked for (its layout, and that ``matmul_into``
    writes it and its row-slices, are the namespace's own tests')."""
    import array_api_compat

    probe = asarray(np.zeros(3, dtype=dtype))
    place = array_api_compat.device(probe)
    result = f((300, 3), dtype=probe.dtype, device=place)
    if result is None:
        return []
    problems = []
    rows = result.shape[0]
    if not (0 < rows <= 300 and result.shape[1] == 3) or result.dtype != probe.dtype:
        problems.append(f"shape {tuple(result.shape)} and dtype {result.dtype}")
    if array_api_compat.device(result) != place:
        problems.append(f"on {array_api_compat.device(result)}, not {place}")
    return problems + _differs("the new array", to_numpy(result), np.zeros((rows, 3)), dtype)


def _check_set_rows(f, asarray, to_numpy, rng, dtype):
    out0, values = rng.normal(size=(6, 3)), rng.normal(size=(3, 3))
    indices = np.array([4, 0, 2])
    expected = out0.copy()
    expected[indices] = values
    out = asarray(out0.astype(dtype))
    result = f(out, asarray(indices), asarray(values.astype(dtype)))
    problems = [] if result is out else ["returned a new array instead of out"]
    return problems + _differs("out afterwards", to_numpy(out), expected, dtype)


def _check_finite_or_zero(f, asarray, to_numpy, rng, dtype):
    x = np.concatenate([rng.normal(size=10) * 1e3, [0.0, -0.0, np.nan, np.inf, -np.inf]])
    expected = np.where(np.isfinite(x), x, 0.0)
    return _differs("values", to_numpy(f(asarray(x.astype(dtype)))), expected, dtype)


def _check_sigmoid(f, asarray, to_numpy, rng, dtype):
    x = np.concatenate([rng.normal(size=20) * 3.0, [-800.0, -40.0, 40.0, 800.0, -np.inf, np.inf]])
    with np.errstate(over="ignore"):
        expected = 1.0 / (1.0 + np.exp(-x))
    return _differs("values", to_numpy(f(asarray(x.astype(dtype)))), expected, dtype)


def _check_inplace_sigmoid(f, asarray, to_numpy, rng, dtype):
    x = np.concatenate([rng.normal(size=20) * 3.0, [-800.0, -40.0, 40.0, 800.0, -np.inf, np.inf]])
    with np.errstate(over="ignore"):
        expected = 1.0 / (1.0 + np.exp(-x))
    array = asarray(x.astype(dtype))
    result = f(array)
    problems = [] if result is array else ["returned a new array instead of x"]
    return problems + _differs("x afterwards", to_numpy(array), expected, dtype)


def _unchanged(what: str, before: np.ndarray, after: Any) -> list[str]:
    """A problem where an input was written to (the core passes the caller's arrays):
    ``before`` is a copy the function did not see (``asarray`` may share memory)."""
    if np.array_equal(before, np.asarray(after), equal_nan=before.dtype.kind == "f"):
        return []
    return [f"{what}: an input was modified"]


def _check_add_scaled(f, asarray, to_numpy, rng, dtype):
    """``x += alpha * y`` in place, for floating (also float16, as a half-precision
    block's labels), integer and bool ``y``, which is left as it was."""
    problems = []
    x = rng.normal(size=(4, 6))
    for y in (
        rng.normal(size=(4, 6)).astype(dtype),
        rng.normal(size=(4, 6)).astype(np.float16),
        rng.integers(0, 2, size=(4, 6)),
        rng.uniform(size=(4, 6)) < 0.5,
    ):
        array, labels = asarray(x.astype(dtype)), asarray(y.copy())
        result = f(array, labels, -0.7)
        if result is not array:
            problems.append(f"{y.dtype} y: returned a new array instead of x")
        expected = x - 0.7 * y.astype(np.float64)
        problems += _differs(f"{y.dtype} y", to_numpy(array), expected, dtype)
        problems += _unchanged(f"{y.dtype} y", y, to_numpy(labels))
    return problems


def _check_min_and_max(f, asarray, to_numpy, rng, dtype):
    """(min, max) of floating and integer arrays, which are left as they were; both NaN
    where an element is NaN."""
    problems = []
    x = rng.normal(size=(4, 7))
    for what, values in (("floating", x.astype(dtype)), ("integer", (x * 10).astype(np.int64))):
        array = asarray(values.copy())
        low, high = f(array)
        expected = np.array([values.min(), values.max()], dtype=np.float64)
        problems += _differs(what, np.array([to_numpy(low), to_numpy(high)]), expected, dtype)
        problems += _unchanged(what, values, to_numpy(array))
    with_nan = x.astype(dtype)
    with_nan[2, 3] = np.nan
    low, high = f(asarray(with_nan))
    if not (np.isnan(to_numpy(low)) and np.isnan(to_numpy(high))):
        problems.append(f"a NaN element: ({to_numpy(low)}, {to_numpy(high)}), not both NaN")
    return problems


def _check_index_dtype(f, asarray, to_numpy, rng, dtype):
    """The default indexing dtype that the library's own info object names for the
    device of an array."""
    import array_api_compat

    probe = asarray(np.zeros(3, dtype=dtype))
    place = array_api_compat.device(probe)
    info = array_api_compat.array_namespace(probe).__array_namespace_info__()
    expected = info.default_dtypes(device=place)["indexing"]
    given = f(place)
    return [] if given == expected else [f"{given} instead of {expected}"]


def _softplus(x):
    return np.logaddexp(0.0, x)


def _check_sigmoid_cross_entropy_sum(f, asarray, to_numpy, rng, dtype):
    """The sum of ``w [(1 - t) softplus(z) + r t softplus(-z)]``, ``t = scale y + shift``,
    for finite logits: soft, bool and integer labels, float and array ``scale``/``shift``
    (one shift per label), with and without weights, inputs left as they were. It may
    decline (None) anything but float ``scale``/``shift`` without ``pos_weight``.
    Without cancellation: targets of exactly 0 or 1 at large logits of the matching sign
    (where ``softplus(z) - z`` and ``(1 - t) z + softplus(-z)`` round the loss away). At
    infinite logits, where such a sum may compute ``0 * inf``, the one thing the core
    relies on: it never returns a finite value other than the exact one (None, NaN or
    inf make the core compute it itself)."""
    shape = (6, 5)
    z, soft = rng.normal(size=shape) * 4.0, rng.uniform(size=shape)
    soft[0, :2] = (0.0, 1.0)
    multi_hot = rng.uniform(size=shape) < 0.3
    weight, pos_weight = rng.uniform(0.5, 2.0, size=shape), rng.uniform(0.5, 3.0, size=(5,))
    per_label = rng.uniform(0.0, 0.2, size=(5,))
    smoothings = (
        (1.0, 0.0, "scale=1.0, shift=0.0"),
        (0.8, 0.1, "scale=0.8, shift=0.1"),
        # (Targets up to 0.975 and down to 0.025: past 1 - 2**-5, with a shift.)
        (0.95, 0.025, "scale=0.95, shift=0.025"),
        (np.asarray(0.8), per_label, "0-d scale, shift per label"),
    )
    problems = []
    for (scale, shift, how), y in itertools.product(
        smoothings, (soft, multi_hot, multi_hot.astype(np.int64))
    ):
        t = scale * y + shift
        for w, r in ((None, None), (weight, None), (None, pos_weight), (weight, pos_weight)):
            expected = np.sum(
                (1.0 if w is None else w)
                * ((1.0 - t) * _softplus(z) + (1.0 if r is None else r) * t * _softplus(-z))
            )
            given = {
                "scale": scale if isinstance(scale, float) else asarray(scale.astype(dtype)),
                "shift": shift if isinstance(shift, float) else asarray(shift.astype(dtype)),
                "weight": None if w is None else asarray(w.astype(dtype)),
                "pos_weight": None if r is None else asarray(r.astype(dtype)),
            }
            labels = y if y.dtype.kind in "bi" else y.astype(dtype)
            logits = z.astype(dtype)
            given_logits, given_labels = asarray(logits.copy()), asarray(labels.copy())
            what = f"{how}, {y.dtype} labels, weight={w is not None}, pos_weight={r is not None}"
            result = f(given_logits, given_labels, **given)
            problems += _unchanged(f"{what}: logits", logits, to_numpy(given_logits))
            problems += _unchanged(f"{what}: labels", labels, to_numpy(given_labels))
            if result is not None:
                problems += _differs(what, to_numpy(result), expected, dtype)
            elif isinstance(scale, float) and r is None:
                problems.append(f"{what}: declined plain finite inputs")
    # Hard targets at large logits, each within 256 units in the last place: t = 1 (also
    # as 0.9 * 1 + 0.1, smoothing towards 1) and t = 0 cost exactly softplus(-|z|);
    # t = 0.95 and 0.998 are near that cancellation; above 20 (torch's default softplus
    # threshold) a float64 loss still has its resolution.
    for magnitude, (scale, shift) in itertools.product(
        (12.0, 16.0, 21.0, 25.0, 30.0, 40.0, -12.0, -16.0, -21.0, -25.0, -30.0, -40.0),
        ((1.0, 0.0), (0.9, 0.1), (0.9, 0.05), (0.98, 0.018)),
    ):
        large = np.full(8, magnitude)
        hard = (large > 0).astype(dtype)
        t = scale * hard + shift
        expected = np.sum((1.0 - t) * _softplus(large) + t * _softplus(-large))
        result = f(asarray(large.astype(dtype)), asarray(hard), scale=scale, shift=shift)
        actual = None if result is None else float(to_numpy(result))
        rtol = 256 * np.finfo(dtype).eps
        if actual is not None and not np.isclose(actual, expected, rtol=rtol, atol=0.0):
            problems.append(
                f"hard targets at |z| = {magnitude}, scale={scale}, shift={shift}: {actual} "
                f"instead of {expected} (cancellation)"
            )
    infinite = np.array([np.inf, -np.inf, np.inf, -np.inf, 1.0])
    for labels, scale, shift, exact in (
        ([1.0, 0.0, 1.0, 0.0, 0.5], 1.0, 0.0, _softplus(1.0) / 2 + _softplus(-1.0) / 2),
        ([1.0, 0.0, 0.5, 0.5, 0.5], 1.0, 0.0, np.inf),
        ([1.0, 0.0, 1.0, 0.0, 0.5], 0.9, 0.05, np.inf),
    ):
        labels = np.array(labels)
        result = f(
            asarray(infinite.astype(dtype)),
            asarray(labels.astype(dtype)),
            scale=scale,
            shift=shift,
        )
        value = None if result is None else float(to_numpy(result))
        if value is not None and np.isfinite(value) and not np.isclose(value, exact):
            problems.append(f"infinite logits: finite {value} instead of {exact}")
    return problems


CHECKS = {
    "logsumexp": _check_logsumexp,
    "log_softmax": _check_log_softmax,
    "sum_and_sum_exp": _check_sum_and_sum_exp,
    "sum_shifted": _check_sum_shifted,
    "inplace_exp": _check_inplace_exp,
    "subtract_into": _check_subtract_into,
    "add_along_axis": _check_add_along_axis,
    "add_matmul": _check_add_matmul,
    "matmul_into": _check_matmul_into,
    "matmul_out": _check_matmul_out,
    "set_rows": _check_set_rows,
    "finite_or_zero": _check_finite_or_zero,
    "sigmoid": _check_sigmoid,
    "sigmoid_cross_entropy_sum": _check_sigmoid_cross_entropy_sum,
    "min_and_max": _check_min_and_max,
    "index_dtype": _check_index_dtype,
    "inplace_sigmoid": _check_inplace_sigmoid,
    "add_scaled": _check_add_scaled,
}


def extension_problems(xp: Any, asarray: Convert, to_numpy: Convert, dtype: str) -> list[str]:
    """What is wrong with the extensions ``xp`` offers (an empty list: nothing)."""
    problems = []
    rng = np.random.default_rng(0)
    for name in EXTENSIONS:
        function = getattr(xp, name, None)
        if function is None:
            continue
        try:
            found = CHECKS[name](function, asarray, to_numpy, rng, dtype)
        except Exception as error:  # a crash is a finding too, reported with the rest
            found = [f"raised {type(error).__name__}: {error}"]
        problems += [f"{name} ({dtype}): {problem}" for problem in found]
    return problems


def unlisted_names(xp: Any, base: Any, dtypes: tuple[str, ...]) -> list[str]:
    """Public names ``xp`` offers beyond ``base`` (its own where they differ) that are
    neither standard, nor in ``EXTENSIONS``, nor one of ``dtypes``."""
    offered = {
        name
        for name in dir(xp)
        if not name.startswith("_")
        and (base is None or getattr(base, name, None) is not getattr(xp, name))
    }
    return sorted(offered - STANDARD - set(EXTENSIONS) - set(dtypes))


def _compare_override(name, overlay, base, asarray, to_numpy, rng):
    x = rng.normal(size=(3, 5, 4))
    if name == "vecdot":
        y = rng.normal(size=(3, 5, 4))
        for axis in (0, 1, 2, -1):
            a, b = asarray(x), asarray(y)
            expected = to_numpy(base.vecdot(a, b, axis=axis))
            yield from _differs(
                f"axis={axis}", to_numpy(overlay.vecdot(a, b, axis=axis)), expected, "float64"
            )
    elif name == "broadcast_to":
        row = asarray(x[:1])
        expected = to_numpy(base.broadcast_to(row, (3, 5, 4)))
        yield from _differs(
            "(1, 5, 4) to (3, 5, 4)",
            to_numpy(overlay.broadcast_to(row, (3, 5, 4))),
            expected,
            "float64",
        )
    elif name == "take_along_axis":
        for axis in range(x.ndim):
            shape = (*x.shape[:axis], 2, *x.shape[axis + 1 :])
            ids = asarray(rng.integers(0, x.shape[axis], size=shape))
            expected = to_numpy(base.take_along_axis(asarray(x), ids, axis=axis))
            actual = to_numpy(overlay.take_along_axis(asarray(x), ids, axis=axis))
            yield from _differs(f"axis={axis}", actual, expected, "float64")
    elif name == "squeeze":
        y = asarray(x[:, :1, None, :])  # (3, 1, 1, 4)
        for axis in (1, 2, -2, -3, (1, 2)):
            expected = to_numpy(base.squeeze(y, axis=axis))
            actual = to_numpy(overlay.squeeze(y, axis=axis))
            yield from _differs(f"axis={axis}", actual, expected, "float64")
        # An axis whose size is not 1 is refused, as the standard asks.
        for axis in (0, -1, (1, 3)):
            try:
                overlay.squeeze(y, axis=axis)
            except ValueError:
                continue
            yield f"axis={axis} (size other than 1) was squeezed, not refused"
    elif name == "expand_dims":
        for given in (asarray(x), asarray(rng.integers(0, 9, size=(3, 5)))):
            for axis in range(-given.ndim - 1, given.ndim + 1):
                expected = base.expand_dims(given, axis=axis)
                actual = overlay.expand_dims(given, axis=axis)
                if tuple(actual.shape) != tuple(expected.shape) or actual.dtype != given.dtype:
                    yield f"axis={axis}: {actual.dtype} {tuple(actual.shape)}"
                yield from _differs(f"axis={axis}", to_numpy(actual), to_numpy(expected), "float64")
            # An axis out of range is refused, as the standard asks (IndexError).
            for axis in (given.ndim + 1, -given.ndim - 2):
                try:
                    overlay.expand_dims(given, axis=axis)
                except IndexError:
                    continue
                yield f"axis={axis} (out of range) was not refused with an IndexError"
    elif name == "clip":
        ids = asarray(rng.integers(-120, 300, size=(3, 5, 4)))
        for x_given, bounds in (
            (ids, (-1, 0)),
            (ids, (-100, -99)),
            (ids, (254, 255)),
            (ids, (None, 20)),
            (ids, (3, None)),
            (asarray(x), (-0.5, 0.25)),
            (asarray(x), (asarray(x[:1] - 1.0), asarray(x[:1]))),
            # Bounds outside the dtype's range (the standard leaves them to the library:
            # an overlay must do what its base does).
            (asarray(np.array([1, 200, 7], np.uint8)), (10, 300)),
            (asarray(np.array([-5, 9], np.int32)), (-(2**40), 2)),
        ):
            low, high = bounds
            try:
                expected = to_numpy(base.clip(x_given, low, high))
            except Exception as error:  # the overlay must then refuse it too
                try:
                    overlay.clip(x_given, low, high)
                except type(error):
                    continue
                yield f"bounds {bounds!r}: accepted where the base raises {error!r}"
                continue
            actual = overlay.clip(x_given, low, high)
            if actual.dtype != x_given.dtype:
                yield f"bounds {bounds!r}: dtype {actual.dtype}, not {x_given.dtype}"
            yield from _differs(f"bounds {bounds!r}", to_numpy(actual), expected, "float64")
    elif name == "sum":
        # The overlay's own case (a floating array over everything or one axis, in its
        # dtype) and what it leaves to its base: integer promotion, a dtype asked for,
        # several axes or none, keepdims over everything.
        for given in (
            asarray(x),
            asarray(x.astype(np.float32)),
            asarray(x.astype(np.float16)),  # (a half dtype: no upcast of its sum)
            base.permute_dims(asarray(x.astype(np.float32)), (2, 0, 1)),  # (strided)
            asarray(rng.integers(-5, 5, size=(3, 5, 4))),
            asarray(np.array([[1, 200], [7, 255]], np.uint8)),
        ):
            for axis in (None, 0, 1, -1, (0, 1), ()):
                for keepdims in (False, True):
                    for dtype in (None, base.float64):
                        options = dict(axis=axis, keepdims=keepdims, dtype=dtype)
                        expected = base.sum(given, **options)
                        actual = overlay.sum(given, **options)
                        case = f"{given.dtype} {options}"
                        if actual.dtype != expected.dtype or actual.shape != expected.shape:
                            yield f"{case}: {actual.dtype} {tuple(actual.shape)}"
                        yield from _differs(case, to_numpy(actual), to_numpy(expected), "float64")
    elif name == "asarray":
        # Python numbers with and without a dtype (the overlay's own case: a float of a
        # given dtype), a list, and an array with and without a copy.
        floats = [base.float32, base.float64]
        for value in (0.1, -2.5e-8, 1e5, float("inf"), float("nan"), 0.0, -0.0, 3):
            for dtype in (None, *floats):
                expected = base.asarray(value, dtype=dtype)
                actual = overlay.asarray(value, dtype=dtype)
                if actual.dtype != expected.dtype or tuple(actual.shape) != ():
                    yield f"{value!r}, dtype={dtype}: {actual.dtype} {tuple(actual.shape)}"
                expected, actual = to_numpy(expected), to_numpy(actual)
                if not (
                    np.array_equal(actual, expected, equal_nan=True)
                    and np.signbit(actual) == np.signbit(expected)
                ):
                    yield f"{value!r}, dtype={dtype}: {actual!r}, not {expected!r}"
        given = asarray(x)
        for copy in (None, True, False):
            yield from _differs(
                f"an array, copy={copy}",
                to_numpy(overlay.asarray(given, copy=copy)),
                to_numpy(base.asarray(given, copy=copy)),
                "float64",
            )
        yield from _differs(
            "a list", to_numpy(overlay.asarray([0.5, 2.0])), np.array([0.5, 2.0]), "float64"
        )
    else:
        yield "a standard function overridden without a check here: add one"


def override_problems(overlay: Any, base: Any, asarray: Convert, to_numpy: Convert) -> list[str]:
    """Standard functions ``overlay`` replaces must agree with ``base``'s."""
    rng = np.random.default_rng(1)
    overridden = sorted(
        name
        for name in STANDARD - set(EXTENSIONS)
        if getattr(overlay, name, None) is not getattr(base, name, None)
    )
    problems = []
    for name in overridden:
        try:
            found = list(_compare_override(name, overlay, base, asarray, to_numpy, rng))
        except Exception as error:  # a crash is a finding too, reported with the rest
            found = [f"raised {type(error).__name__}: {error}"]
        problems += [f"{name}: {problem}" for problem in found]
    return problems


def _namespaces(backend) -> list[tuple[str, Any, Any]]:
    """(label, namespace, what it builds on) for the namespaces the core may run on
    with this backend: the plain one, and lsr's overlay where it has its own."""
    plain = backend.registry.namespace()
    overlay = backend.registry.overlay()
    if overlay is plain:
        return [("namespace", plain, None)]
    return [("namespace", plain, None), ("overlay", overlay, plain)]


def _ships(backend, label: str) -> bool:
    """Whether lsr wrote this namespace (rather than taking a library's as it is)."""
    return label == "overlay" or not backend.registry.in_array_api_compat


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_offered_extension_honours_the_protocol(backend, dtype):
    problems = [
        f"{label}: {problem}"
        for label, xp, _ in _namespaces(backend)
        for problem in extension_problems(xp, backend.asarray, backend.to_numpy, dtype)
    ]
    assert problems == []


def test_lsr_namespaces_offer_only_listed_extensions(backend):
    for label, xp, base in _namespaces(backend):
        if _ships(backend, label):
            assert unlisted_names(xp, base, backend.registry.half_precision) == [], label


def test_overridden_standard_functions_keep_their_meaning(backend):
    for _, xp, base in _namespaces(backend):
        if base is not None:
            assert override_problems(xp, base, backend.asarray, backend.to_numpy) == []


def test_every_namespace_lsr_ships_offers_an_extension(backend):
    """Otherwise the protocol checks above would pass on it vacuously (and an overlay
    that offers none has no reason to exist)."""
    for label, xp, _ in _namespaces(backend):
        if _ships(backend, label):
            assert [name for name in EXTENSIONS if getattr(xp, name, None)], label


# --- The checker can fail -----------------------------------------------------------


class _NumPyExtensions:
    """NumPy with every extension written correctly: the checker must accept it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def logsumexp(x, /, *, axis, keepdims=False):
        top = np.max(x, axis=axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):  # log(0) = -inf for a fully masked row
            result = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
        return result if keepdims else np.squeeze(result, axis=axis)

    @staticmethod
    def log_softmax(x, /, *, axis, dtype, out=None):
        x = x.astype(dtype)
        with np.errstate(invalid="ignore"):
            shifted = x - np.max(x, axis=axis, keepdims=True)
            result = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        if out is None:
            return result
        out[...] = result
        return out

    @staticmethod
    def sum_and_sum_exp(x, /, *, axis):
        return np.sum(x, axis=axis), np.sum(np.exp(x), axis=axis, keepdims=True)

    @staticmethod
    def sum_shifted(x, top, /, *, axis):
        return np.sum(x - top, axis=axis, keepdims=True)

    @staticmethod
    def inplace_exp(x):
        return np.exp(x, out=x)

    @staticmethod
    def subtract_into(out, x1, x2):
        return np.subtract(x1, x2, out=out)

    @staticmethod
    def add_along_axis(x, indices, values, /, *, axis):
        np.put_along_axis(x, indices, np.take_along_axis(x, indices, axis=axis) + values, axis)
        return x

    @staticmethod
    def add_matmul(out, x1, x2):
        out += x1 @ x2
        return out

    @staticmethod
    def matmul_into(out, x1, x2):
        out[...] = x1 @ x2
        return out

    @staticmethod
    def matmul_out(shape, *, dtype, device):
        # Column-major, a multiple of 128 rows, as PyTorch's on the CPU.
        rows, columns = shape
        return np.zeros((columns, rows - rows % 128), dtype=dtype).T

    @staticmethod
    def set_rows(out, indices, values):
        out[indices, ...] = values
        return out

    @staticmethod
    def finite_or_zero(x):
        return np.where(np.isfinite(x), x, 0.0)

    @staticmethod
    def sigmoid(x):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))

    @staticmethod
    def min_and_max(x):
        return np.min(x), np.max(x)

    @staticmethod
    def index_dtype(device):
        return np.intp

    @staticmethod
    def inplace_sigmoid(x):
        with np.errstate(over="ignore"):
            x[...] = 1.0 / (1.0 + np.exp(-x))
        return x

    @staticmethod
    def add_scaled(x, y, alpha):
        x += alpha * y.astype(x.dtype)  # (alpha * y in x's precision, as torch's add_)
        return x

    @staticmethod
    def sigmoid_cross_entropy_sum(z, y, *, scale=1.0, shift=0.0, weight=None, pos_weight=None):
        # The core's form without its guard: NaN at an infinite logit whose slope is 0.
        t = scale * y + shift
        r = 1.0 if pos_weight is None else pos_weight
        slope = np.where(z >= 0, 1.0 - t, -r * t)
        with np.errstate(invalid="ignore"):
            loss = (1.0 + (r - 1.0) * t) * _softplus(-np.abs(z)) + slope * z
        return np.sum(loss if weight is None else weight * loss)


class _BrokenExtensions(_NumPyExtensions):
    """Each extension wrong in a way an implementation could plausibly be."""

    @staticmethod
    def logsumexp(x, /, *, axis, keepdims=False):
        # The max shift without guarding rows of -inf: they give NaN.
        top = np.max(x, axis=axis, keepdims=True)
        with np.errstate(invalid="ignore"):
            result = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
        return result if keepdims else np.squeeze(result, axis=axis)

    @staticmethod
    def log_softmax(x, /, *, axis, dtype, out=None):
        # Unshifted: exp overflows for large logits (and ``out`` is left as it was).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))

    @staticmethod
    def sum_and_sum_exp(x, /, *, axis):
        return np.sum(x, axis=axis), np.sum(np.exp(x), axis=axis)  # drops the axis

    @staticmethod
    def sum_shifted(x, top, /, *, axis):
        # Unshifted first: the rounding of large logits reaches the sum.
        return np.sum(x, axis=axis, keepdims=True) - x.shape[axis] * top

    @staticmethod
    def inplace_exp(x):
        return np.exp(x)  # a new array; x untouched

    @staticmethod
    def subtract_into(out, x1, x2):
        # Right for a fresh ``out``, wrong when ``out`` is ``x1``.
        out[...] = -x2
        out += x1
        return out

    @staticmethod
    def add_along_axis(x, indices, values, /, *, axis):
        np.put_along_axis(x, indices, values, axis)  # assigns instead of adding
        return x

    @staticmethod
    def add_matmul(out, x1, x2):
        return out + x1 @ x2  # not in place

    @staticmethod
    def matmul_into(out, x1, x2):
        out[...] = x1 @ x2 + 1.0  # off by one
        return out

    @staticmethod
    def matmul_out(shape, *, dtype, device):
        rows, columns = shape
        return np.zeros((columns, rows - rows % 128), dtype=dtype)  # the .T forgotten

    @staticmethod
    def set_rows(out, indices, values):
        out[np.sort(indices), ...] = values  # the rows in sorted order, not as given
        return out

    @staticmethod
    def sigmoid_cross_entropy_sum(z, y, *, scale=1.0, shift=0.0, weight=None, pos_weight=None):
        # Clamped logits: right for finite ones, a plausible finite value at infinite
        # ones; and pos_weight ignored.
        t = scale * y + shift
        z = np.clip(z, -50.0, 50.0)
        loss = (1.0 - t) * _softplus(z) + t * _softplus(-z)
        return np.sum(loss if weight is None else weight * loss)

    @staticmethod
    def finite_or_zero(x):
        return np.where(np.isnan(x), 0.0, x)  # infinities kept

    @staticmethod
    def min_and_max(x):
        return np.nanmin(x), np.nanmax(x)  # NaN elements skipped

    @staticmethod
    def index_dtype(device):
        return np.int32  # not NumPy's default

    @staticmethod
    def inplace_sigmoid(x):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))  # a new array; x untouched

    @staticmethod
    def add_scaled(x, y, alpha):
        x -= alpha * y  # the sign of alpha lost
        return x

    @staticmethod
    def sigmoid(x):
        return np.exp(x) / (1.0 + np.exp(x))  # NaN at +inf (inf / inf)

    @staticmethod
    def softmax(x, /, *, axis):
        return np.exp(x) / np.sum(np.exp(x), axis=axis, keepdims=True)


def test_the_checker_accepts_a_correct_namespace():
    xp = _NumPyExtensions()
    assert all(getattr(xp, name, None) is not None for name in EXTENSIONS)
    for dtype in ("float64", "float32"):
        assert extension_problems(xp, np.asarray, np.asarray, dtype) == []
    assert unlisted_names(xp, np, ()) == []


def test_the_checker_can_fail():
    problems = extension_problems(_BrokenExtensions(), np.asarray, np.asarray, "float64")
    for name in EXTENSIONS:
        assert any(problem.startswith(f"{name} ") for problem in problems), name
    assert any("out is x1" in problem for problem in problems)
    assert unlisted_names(_BrokenExtensions(), np, ()) == ["softmax"]


def test_the_override_check_can_fail():
    """An overlay whose take_along_axis ignores ``axis`` is caught; an unchecked
    override is reported rather than passed."""
    import array_api_compat.numpy as base

    class Overlay:
        def __getattr__(self, name):
            return getattr(base, name)

        @staticmethod
        def take_along_axis(x, indices, /, *, axis=-1):
            return np.take_along_axis(x, indices, axis=-1)

        @staticmethod
        def flip(x, /, *, axis=None):
            return np.flip(x, axis=axis)

    problems = override_problems(Overlay(), base, np.asarray, np.asarray)
    assert any(p.startswith("take_along_axis: ") for p in problems)
    assert any(p.startswith("flip: ") and "without a check" in p for p in problems)


# --- The registry's facts against the libraries -------------------------------------


def test_each_array_is_claimed_by_its_backend_only(backend):
    x = backend.asarray(np.array([1.0, 2.0]))
    claimed = [name for name, entry in _compat.BACKENDS.items() if entry.is_array(x)]
    assert claimed == [backend.name]
    assert _compat.backend_of(x) is backend.registry


def test_the_namespace_resolved_is_the_registry_namespace(backend):
    x = backend.asarray(np.array([1.0, 2.0]))
    assert _compat.array_namespace(x, None, x) is backend.registry.namespace()
    assert backend.xp is backend.registry.namespace()
    if backend.registry.in_array_api_compat:
        # array-api-compat, asked directly, agrees with the registry.
        import array_api_compat

        assert _compat.array_namespace(x) is array_api_compat.array_namespace(x)
        assert _compat.device(x) == array_api_compat.device(x)


def test_half_precision_dtypes_are_those_the_library_has(backend):
    library = importlib.import_module(backend.registry.module)
    has = tuple(
        name
        for name in ("float16", "bfloat16")
        if hasattr(backend.xp, name) or hasattr(library, name)
    )
    assert backend.registry.half_precision == has


def test_writable_is_whether_arrays_take_item_assignment(backend):
    x = backend.asarray(np.zeros(3))
    try:
        x[...] = 1.0
    except TypeError:
        writable = False
    else:
        writable = True
        assert backend.to_numpy(x).tolist() == [1.0, 1.0, 1.0]
    assert backend.registry.writable is writable


def _abstract_values(backend) -> list[tuple[str, bool, bool]]:
    """(where, is_concrete, values_are_cheap) seen inside the backend's tracers."""
    seen = []

    def record(where):
        def probe(a):
            seen.append((where, _compat.is_concrete(a), _compat.values_are_cheap(a)))
            return a

        return probe

    values = np.ones((2, 3))
    if backend.name == "jax":
        import jax

        jax.jit(record("jax.jit"))(backend.asarray(values))
        jax.vmap(record("jax.vmap"))(backend.asarray(values))
    elif backend.name == "torch":
        import torch

        torch.func.vmap(record("torch.func.vmap"))(backend.asarray(values))
        record("meta device")(torch.ones(2, device="meta"))
    elif backend.name == "tensorflow":
        import tensorflow as tf

        tf.function(record("tf.function"))(backend.asarray(values))
    return seen


def test_values_are_concrete_and_cheap_in_eager_cpu_code_only(backend):
    x = backend.asarray(np.ones((2, 3)))
    assert _compat.is_concrete(x) and _compat.values_are_cheap(x)
    abstract = _abstract_values(backend)
    assert [where for where, concrete, cheap in abstract if concrete or cheap] == []
    if backend.name in ("jax", "torch", "tensorflow"):
        assert abstract, "no tracer was tried"


def test_may_carry_gradient_only_where_autodiff_can_record(backend):
    """Where it says False, the core drops the test that keeps d/dfactor exact at a
    factor of 0 (``_ops.times``): it must be True wherever a derivative may be taken."""
    x = backend.asarray(np.ones((2, 3)))
    name = backend.registry.name
    if name in ("numpy", "array_api_strict"):
        assert not _compat.may_carry_gradient(x)
    elif name == "torch":
        import torch

        assert not _compat.may_carry_gradient(x)
        x.requires_grad_(True)
        assert _compat.may_carry_gradient(x) and _compat.may_carry_gradient(x * 2)
        with torch.no_grad():  # (as in a custom Function's forward)
            assert not _compat.may_carry_gradient(x.detach() * 2)
        seen = []
        torch.func.grad(lambda t: seen.append(_compat.may_carry_gradient(t)) or t.sum())(
            torch.ones(3)
        )
        assert seen == [True]
    elif name == "jax":
        import jax

        assert not _compat.may_carry_gradient(x)
        seen = []
        jax.grad(lambda t: seen.append(_compat.may_carry_gradient(t)) or t.sum())(x)
        jax.jit(lambda t: seen.append(_compat.may_carry_gradient(t)) or t)(x)
        assert seen == [True, True]
    else:
        assert _compat.may_carry_gradient(x)  # (a tape may watch any tensor)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # (torch.jit.trace)
def test_a_host_constant_is_cheap_to_read_and_carries_no_gradient(backend):
    """``is_host_constant`` (one dispatch, for the reduced loss of a small call) says
    what ``values_are_cheap and not may_carry_gradient`` say, in every state tried:
    eager, recorded by autodiff, under no_grad, inside each tracer, on the meta device."""
    seen = []

    def probe(where):
        def record(a):
            both = _compat.values_are_cheap(a) and not _compat.may_carry_gradient(a)
            seen.append((where, _compat.is_host_constant(a), both))
            return a

        return record

    x = backend.asarray(np.ones((2, 3)))
    probe("eager")(x)
    name = backend.registry.name
    if name == "torch":
        import torch

        leaf = torch.ones(3, requires_grad=True)
        probe("requires_grad")(leaf * 2)
        with torch.no_grad():  # (as in a custom Function's forward)
            probe("no_grad")(leaf)
        torch.func.grad(lambda t: probe("torch.func.grad")(t).sum())(torch.ones(3))
        torch.func.vmap(probe("torch.func.vmap"))(x)
        torch.jit.trace(probe("torch.jit.trace"), (torch.ones(3),), check_trace=False)
        probe("meta device")(torch.ones(2, device="meta"))
    elif name == "jax":
        import jax

        jax.jit(probe("jax.jit"))(x)
        jax.grad(lambda t: probe("jax.grad")(t).sum())(x)
    elif name == "tensorflow":
        import tensorflow as tf

        tf.function(probe("tf.function"))(x)
    assert [row for row in seen if row[1] != row[2]] == []
    # Only eager values that nothing records (a TensorFlow tape may watch any tensor).
    constant = {"eager": name != "tensorflow", "no_grad": True}
    assert [(where, is_constant) for where, is_constant, _ in seen] == [
        (where, constant.get(where, False)) for where, _, _ in seen
    ]
    if name in ("torch", "jax", "tensorflow"):
        assert len(seen) > 1, "no tracer was tried"


def test_unknown_backend_names_are_refused():
    with pytest.raises(ValueError, match=r"Unknown backend: expected one of .*name='cupy'"):
        _compat.get_backend("cupy")


# --- Import hygiene of the registry ---------------------------------------------------

REGISTRY_FILE = Path(_compat.__file__)

LOAD_BY_PATH = textwrap.dedent(
    """
    import importlib.util, sys
    sys.modules["array_api_compat"] = None  # blocked: importing it now fails
    spec = importlib.util.spec_from_file_location("registry", {path!r})
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    print(",".join(b.environment for b in registry.BACKENDS.values()))
    """
)


def _load_by_path(path: Path) -> subprocess.CompletedProcess:
    script = LOAD_BY_PATH.format(path=str(path))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_the_registry_loads_from_its_file_with_the_standard_library_only():
    """How the noxfile reads it: without lsr, array-api-compat or any framework."""
    result = _load_by_path(REGISTRY_FILE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == [b.environment for b in _compat.BACKENDS.values()]


def test_the_load_by_path_check_can_fail(tmp_path):
    copy = tmp_path / "registry.py"
    copy.write_text("import array_api_compat\n" + REGISTRY_FILE.read_text())
    assert _load_by_path(copy).returncode != 0


def test_resolving_a_namespace_imports_no_framework():
    prelude = textwrap.dedent(
        """
        import numpy as np
        from lsr import _compat
        for x in (np.ones(2), np.float64(1.0)):
            _compat.array_namespace(x, x)
            _compat.is_concrete(x), _compat.values_are_cheap(x), _compat.device(x)
            _compat.is_tf_array(x), _compat.backend_of(x)
        _compat.is_concrete([1.0]), _compat.backend_of(1.0)
        """
    )
    assert loaded_frameworks("lsr._compat", FRAMEWORKS, prelude=prelude) == []

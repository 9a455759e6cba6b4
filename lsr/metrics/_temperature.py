"""Temperature scaling (Guo et al. 2017): fit T on held-out logits, then divide by it.

``fit_temperature`` finds the minimizer of the mean NLL with its own deterministic
solver (safeguarded Newton on the inverse temperature, in float64 where the namespace has
it) instead of a framework optimizer, so every backend gets the same T.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from lsr._checks import cast, check_logits, is_floating_dtype
from lsr._compat import array_namespace, device, is_concrete
from lsr._typing import Array, Namespace
from lsr._validation import check_positive_int, fail_type, fail_value
from lsr.metrics import _core as metrics_core
from lsr.metrics._inputs import prepare_scores

__all__ = ["apply_temperature", "fit_temperature"]


def _check_temperature(xp: Namespace, temperature: Any) -> Any:
    if isinstance(temperature, bool):
        fail_type("`temperature` must be a positive number.", "temperature", temperature)
    if isinstance(temperature, numbers.Real):
        # numbers.Real's stub has no comparison with int (python/mypy#3186).
        if not (math.isfinite(temperature) and temperature > 0):  # type: ignore[operator]
            fail_value("`temperature` must be finite and > 0.", "temperature", temperature)
        return float(temperature)
    shape = getattr(temperature, "shape", None)
    if shape is None or tuple(shape) != () or not is_floating_dtype(xp, temperature.dtype):
        fail_type(
            "`temperature` must be a positive number or a floating 0-d array.",
            "temperature",
            temperature,
        )
    if is_concrete(temperature) and not float(temperature) > 0:
        fail_value("`temperature` must be > 0.", "temperature", float(temperature))
    return temperature


def apply_temperature(logits: Any, temperature: Any) -> Array:
    """``logits / temperature`` (temperature scaling), in the logits' library and dtype.

    Args:
        logits: any floating array.
        temperature: a positive Python number (from ``fit_temperature``) or a floating
            0-d array of the same library.

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import apply_temperature
        >>> print(apply_temperature(np.array([[2.0, -1.0]]), 2.0))
        [[ 1.  -0.5]]
    """
    xp = array_namespace(logits, temperature if hasattr(temperature, "shape") else None)
    check_logits(xp, logits)
    temperature = _check_temperature(xp, temperature)
    if not isinstance(temperature, float):
        temperature = cast(xp, temperature, logits.dtype)
    return logits / temperature


def _wide_dtype(xp: Namespace, like: Array) -> Any:
    """float64 where the namespace has it (not JAX without x64), else float32."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.float64
    return xp.float64 if "float64" in info().dtypes(device=device(like)) else xp.float32


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    bounds: tuple[float, float] = (0.05, 20.0),
    axis: int = -1,
    max_iter: int = 100,
) -> float:
    """The temperature T minimizing the mean NLL of ``softmax(logits / T)`` (Guo et al.).

    Fit it on held-out logits (a validation set), then use ``apply_temperature``.
    The NLL is convex in the inverse temperature ``b = 1/T`` (its second derivative is
    the mean variance of the logits under ``softmax(b z)``), so the minimizer is the root
    of the first derivative, found by Newton's method safeguarded by bisection on a
    bracket, in float64 (float32 where the namespace has no float64, e.g. JAX without
    x64). No framework optimizer, no randomness: the same inputs give the same T on
    every backend (to float64 rounding). If the minimizer lies outside ``bounds``, the
    nearest bound is returned.

    Needs concrete arrays (it returns a Python float): call it outside ``jax.jit``.

    Args:
        logits: (..., K, ...) held-out logits with the K classes on ``axis``.
        labels: their integer class ids (the logits' shape without the class axis).
        bounds: ``(T_min, T_max)`` with ``0 < T_min < T_max``.
        axis: the class axis.
        max_iter: most derivative evaluations after the two at the bounds.

    Returns:
        T as a Python float.

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import fit_temperature
        >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> labels = np.array([0, 1, 1, 1])  # 3 of 4 right: best p = 0.75 = sigmoid(4/T)
        >>> print(round(fit_temperature(logits, labels), 6), round(4 / np.log(3), 6))
        3.640957 3.640957
    """
    xp, logits, labels, axis = prepare_scores(
        logits, labels, axis=axis, from_logits=True, name="logits"
    )
    if not (is_concrete(logits) and is_concrete(labels)):
        fail_value(
            "fit_temperature needs concrete arrays (it returns a Python float); call it "
            "outside jax.jit / tf.function.",
            "logits",
            logits,
        )
    if (
        not isinstance(bounds, (tuple, list))
        or len(bounds) != 2
        or not all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in bounds)
        or not (0 < bounds[0] < bounds[1] < math.inf)
    ):
        fail_value(
            "`bounds` must be (T_min, T_max) with 0 < T_min < T_max < inf.", "bounds", bounds
        )
    check_positive_int("max_iter", max_iter)
    if not bool(xp.all(xp.isfinite(logits))):
        fail_value(
            "fit_temperature needs finite logits: NaN or inf has no best temperature (the "
            "fit would stop at a bound and look like a result). Drop or fix those rows.",
            "logits",
            logits,
        )
    wide = cast(xp, logits, _wide_dtype(xp, logits))
    target = metrics_core.target_logits(xp, wide, labels, axis)

    def derivatives(b: float) -> tuple[float, float]:
        return metrics_core.nll_derivatives(xp, wide, target, b, axis)

    low, high = 1.0 / float(bounds[1]), 1.0 / float(bounds[0])
    if derivatives(low)[0] >= 0.0:
        return float(bounds[1])
    if derivatives(high)[0] <= 0.0:
        return float(bounds[0])
    # Relative precision the derivative can resolve in the dtype it is computed in.
    tolerance = 1e-13 if wide.dtype == xp.float64 else 1e-6
    b = min(max(1.0, low), high)
    for _ in range(max_iter):
        slope, curvature = derivatives(b)
        newton_step = slope / curvature if curvature > 0.0 else math.inf
        if abs(newton_step) <= tolerance * b:
            # Converged to rounding; another step would only chase noise.
            return 1.0 / (b - newton_step)
        if slope > 0.0:
            high = b
        else:
            low = b
        following = b - newton_step
        if not low < following < high:
            # Newton left the bracket: bisect it (in log b, since b spans decades).
            following = math.sqrt(low * high)
        if high - low <= tolerance * high:
            break
        b = following
    return 1.0 / b

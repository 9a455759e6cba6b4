"""Calibration and representation metrics: see what label smoothing does to a model.

Müller, Kornblith & Hinton (2019), "When Does Label Smoothing Help?", show that label
smoothing calibrates networks (lower expected calibration error, much like temperature
scaling) and pulls penultimate-layer activations into tight, equidistant clusters. This
module measures both on any array-API array (NumPy, array-api-strict, PyTorch, JAX;
TensorFlow through lsr's namespace), with the same numbers on every backend:

* ``expected_calibration_error`` and ``reliability_diagram`` (Guo et al. 2017),
* ``negative_log_likelihood``, ``fit_temperature`` and ``apply_temperature``
  (temperature scaling, Guo et al. 2017),
* ``penultimate_projection`` (Müller et al. 2019, Figure 1),
* ``plot_reliability_diagram`` and ``plot_penultimate_projection``, which need the
  optional ``matplotlib`` (``pip install 'lsr[plot]'``), imported only when called.

Importing this module imports no framework, NumPy or matplotlib.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

# Not `from lsr import _core`: the submodule lsr.metrics._core would rebind that name.
from lsr import _core as lsr_core
from lsr._checks import (
    cast,
    check_label_range,
    check_logits,
    is_floating_dtype,
    is_integer_dtype,
)
from lsr._compat import array_namespace, is_concrete
from lsr._validation import (
    check_choice,
    check_positive_int,
    fail_type,
    fail_value,
    normalize_axis,
)
from lsr.metrics import _core as core

__all__ = [
    "PenultimateProjection",
    "ReliabilityDiagram",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "penultimate_projection",
    "plot_penultimate_projection",
    "plot_reliability_diagram",
    "reliability_diagram",
]

NORMS = ("l1", "l2", "max")
BIN_EDGE_RULES = ("right", "left")

Array = Any


class ReliabilityDiagram(NamedTuple):
    """Per-bin statistics of top-label confidence (arrays of the input's library).

    Attributes:
        confidence: (n_bins,) mean confidence of the examples in each bin (0 if empty).
        accuracy: (n_bins,) fraction of them predicted correctly (0 if empty).
        count: (n_bins,) number of examples in each bin (floating).
        edges: (n_bins + 1,) the bin edges ``0, 1/n_bins, ..., 1``.
    """

    confidence: Array
    accuracy: Array
    count: Array
    edges: Array


class PenultimateProjection(NamedTuple):
    """Coordinates of examples in the plane through three class templates.

    Attributes:
        coords: (N, 2) coordinates of ``feature - template_0`` in the plane's basis.
        basis: (2, D) orthonormal rows spanning the plane.
    """

    coords: Array
    basis: Array


# --------------------------------------------------------------------------- checks


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail_type(f"`{name}` must be True or False.", name, value)


def _probability_tolerance(xp: Any, dtype: Any) -> float:
    if dtype == xp.float64:
        return 1e-6
    return 1e-3 if dtype == xp.float32 else 1e-2


def _check_probabilities(xp: Any, probs: Array, axis: int, name: str) -> None:
    """Probabilities in [0, 1] that sum to 1 over ``axis`` (checked when concrete)."""
    if not is_concrete(probs):
        return
    if not bool(xp.all(xp.isfinite(probs))) or bool(xp.any((probs < 0) | (probs > 1))):
        fail_value(
            f"With from_logits=False, `{name}` must hold probabilities in [0, 1]; pass "
            "logits with from_logits=True otherwise.",
            name,
            probs,
        )
    totals = xp.sum(cast(xp, probs, lsr_core.compute_dtype(xp, probs.dtype)), axis=axis)
    worst = float(xp.max(xp.abs(totals - 1.0)))
    if worst > _probability_tolerance(xp, probs.dtype):
        raise ValueError(
            f"With from_logits=False, `{name}` must sum to 1 over the class axis {axis}; "
            "pass logits with from_logits=True otherwise. "
            f"Received: {name} whose sums differ from 1 by up to {worst:.3g}"
        )


def _prepare(
    scores: Any, labels: Any, *, axis: Any, from_logits: Any, name: str = "logits_or_probs"
) -> tuple[Any, Array, Array, int]:
    """Validate a (scores, integer labels) pair; return ``(xp, scores, labels, axis)``.

    ``scores`` come back in the compute dtype (float32 for half precision).
    """
    xp = array_namespace(scores, labels)
    _check_bool("from_logits", from_logits)
    check_logits(xp, scores, name)
    axis = normalize_axis(axis, scores.ndim)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type("`labels` must be integer class ids.", "labels", labels)
    expected = tuple(scores.shape[:axis]) + tuple(scores.shape[axis + 1 :])
    if tuple(labels.shape) != expected:
        fail_value(
            f"`labels` must have the shape of `{name}` without the class axis {axis}, {expected}.",
            "labels",
            labels,
        )
    num_classes = scores.shape[axis]
    if num_classes == 0 or math.prod(expected) == 0:
        fail_value(f"`{name}` must hold at least one example and one class.", name, scores)
    check_label_range(xp, labels, num_classes, None)
    if not from_logits:
        _check_probabilities(xp, scores, axis, name)
    return xp, cast(xp, scores, lsr_core.compute_dtype(xp, scores.dtype)), labels, axis


def _check_binning(n_bins: Any, bin_edges: Any) -> bool:
    check_positive_int("n_bins", n_bins)
    check_choice("bin_edges", bin_edges, BIN_EDGE_RULES)
    return bin_edges == "right"


# --------------------------------------------------------------------- calibration


def reliability_diagram(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
) -> ReliabilityDiagram:
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Each example's confidence is its largest class probability and it is correct when
    that class is the label (Guo et al. 2017). Examples go into ``n_bins`` equal-width
    bins of [0, 1] by confidence; see ``expected_calibration_error`` for the bin rule.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of equal-width bins (>= 1).
        from_logits: whether the scores are logits (softmax is applied) or probabilities.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        axis: the class axis.

    Returns:
        A ``ReliabilityDiagram`` of (n_bins,) arrays ``confidence``, ``accuracy``,
        ``count`` and the (n_bins + 1,) ``edges``, in the compute dtype (float32 for
        half-precision input).

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import reliability_diagram
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
        >>> diagram = reliability_diagram(probs, np.array([0, 1, 1, 1]), n_bins=2,
        ...                               from_logits=False)
        >>> print(diagram.confidence, diagram.accuracy, diagram.count)
        [0.   0.75] [0.   0.75] [0. 4.]
    """
    xp, scores, labels, axis = _prepare(logits_or_probs, labels, axis=axis, from_logits=from_logits)
    right = _check_binning(n_bins, bin_edges)
    confidence, correct = core.top_label(xp, scores, labels, axis=axis, from_logits=from_logits)
    mean_confidence, accuracy, count = core.bin_statistics(
        xp, confidence, correct, n_bins, right=right
    )
    edges = core.bin_edges(xp, n_bins, dtype=confidence.dtype, like=confidence)
    return ReliabilityDiagram(mean_confidence, accuracy, count, edges)


def expected_calibration_error(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
) -> Array:
    r"""Binned top-label calibration error (ECE, its root-mean-square form, or MCE).

    Guo et al. (2017), "On Calibration of Modern Neural Networks", eq. (3): examples
    are grouped by top-label confidence into ``n_bins`` equal-width bins ``B_b``, and

    * ``norm="l1"`` (ECE): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``,
    * ``norm="l2"``: ``sqrt(sum_b |B_b|/N * (acc(B_b) - conf(B_b))**2)``,
    * ``norm="max"`` (MCE): ``max_b |acc(B_b) - conf(B_b)|`` over non-empty bins.

    Bin rule: with the default ``bin_edges="right"`` the bins are ``(lo, hi]``, as in
    Guo et al.'s code and the ``uncertainty-calibration`` package (a top-label
    confidence is at least 1/K > 0, so the open end at 0 loses nothing). With
    ``bin_edges="left"`` they are ``[lo, hi)``, as in torchmetrics >= 1.0, except that
    here the last bin is closed, ``[lo, 1]``: torchmetrics puts a confidence of exactly
    1.0 into an extra bin of its own, so the two differ when some confidence rounds to
    1.0. The edges are the floats ``j / n_bins`` in the compute dtype.

    Traceable (``jax.jit``): under tracing, value checks cannot run and a label out of
    range makes the result NaN.

    Args:
        logits_or_probs: (..., K, ...) scores with the K classes on ``axis``.
        labels: integer class ids, the scores' shape without the class axis.
        n_bins: number of equal-width bins (>= 1); 15 as in Guo et al.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        from_logits: whether the scores are logits (softmax is applied) or probabilities
            (they must lie in [0, 1] and sum to 1 over ``axis``).
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        axis: the class axis.

    Returns:
        A 0-d array of the input's library, in the compute dtype.

    Raises:
        TypeError: non-floating scores, non-integer labels, arrays of mixed libraries.
        ValueError: bad options, shapes or empty input; for concrete arrays, labels out of
            [0, K) and (with ``from_logits=False``) rows that are not distributions.

    Example:
        The torchmetrics documentation's example (its [lo, hi) bins; the same here):

        >>> import numpy as np
        >>> from lsr.metrics import expected_calibration_error
        >>> probs = np.array([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40],
        ...                   [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
        >>> labels = np.array([0, 1, 2, 0])
        >>> for norm in ("l1", "l2", "max"):
        ...     ece = expected_calibration_error(probs, labels, n_bins=3, norm=norm,
        ...                                      from_logits=False, bin_edges="left")
        ...     print(norm, round(float(ece), 4))
        l1 0.2
        l2 0.2082
        max 0.2333
    """
    check_choice("norm", norm, NORMS)
    diagram = reliability_diagram(
        logits_or_probs,
        labels,
        n_bins=n_bins,
        from_logits=from_logits,
        bin_edges=bin_edges,
        axis=axis,
    )
    xp = array_namespace(diagram.count)
    return core.calibration_error(xp, diagram.confidence, diagram.accuracy, diagram.count, norm)


def negative_log_likelihood(
    logits_or_probs: Any, labels: Any, *, from_logits: bool = True, axis: int = -1
) -> Array:
    """Mean negative log-likelihood of the labels (a 0-d array).

    ``mean(logsumexp(z) - z_y)`` for logits, ``mean(-log p_y)`` for probabilities. For
    logits this is ``lsr.smooth_ce(logits, labels, smoothing=0.0)``.

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import negative_log_likelihood
        >>> probs = np.array([[0.5, 0.5], [0.25, 0.75]])
        >>> print(round(float(negative_log_likelihood(probs, np.array([0, 1]),
        ...                                           from_logits=False)), 6))
        0.490415
    """
    xp, scores, labels, axis = _prepare(logits_or_probs, labels, axis=axis, from_logits=from_logits)
    target = core.target_logits(xp, scores, labels, axis)
    if from_logits:
        return core.mean_nll(xp, scores, target, 1.0, axis)
    return -xp.mean(xp.log(target))


# ------------------------------------------------------------- temperature scaling


def _check_temperature(xp: Any, temperature: Any) -> Any:
    if isinstance(temperature, bool):
        fail_type("`temperature` must be a positive number.", "temperature", temperature)
    if isinstance(temperature, numbers.Real):
        if not (math.isfinite(temperature) and temperature > 0):
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


def _wide_dtype(xp: Any, like: Array) -> Any:
    """float64 where the namespace has it (not JAX without x64), else float32."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.float64
    from lsr._compat import device

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
    xp, logits, labels, axis = _prepare(logits, labels, axis=axis, from_logits=True, name="logits")
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
    target = core.target_logits(xp, wide, labels, axis)

    def derivatives(b: float) -> tuple[float, float]:
        return core.nll_derivatives(xp, wide, target, b, axis)

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


# ------------------------------------------------------ penultimate-layer geometry


def _template_axis(class_weights: Array, dimension: int, class_axis: Any) -> int:
    if class_axis is not None:
        return normalize_axis(class_axis, 2, "class_axis")
    matches = [a for a in (0, 1) if class_weights.shape[1 - a] == dimension]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail_value(
            f"`class_weights` must be (K, D) or (D, K) with D = {dimension}, the features' "
            "last dimension.",
            "class_weights",
            class_weights,
        )
    fail_value(
        "`class_weights` is square, so whether classes are rows (PyTorch Linear.weight, "
        "class_axis=0) or columns (Keras/Flax Dense kernel, class_axis=1) is ambiguous; "
        "pass class_axis.",
        "class_axis",
        class_axis,
    )
    return 0  # unreachable


def _check_classes(classes: Any, num_classes: int) -> tuple[int, int, int]:
    try:
        chosen = tuple(classes) if not isinstance(classes, str) else None
    except TypeError:
        chosen = None
    ok = (
        chosen is not None
        and len(chosen) == 3
        and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in chosen)
    )
    if not ok or len({int(c) for c in chosen}) != 3:
        fail_value("`classes` must be three distinct integer class ids.", "classes", classes)
    if not all(0 <= int(c) < num_classes for c in chosen):
        fail_value(f"`classes` must be class ids in [0, {num_classes}).", "classes", classes)
    return tuple(int(c) for c in chosen)


def penultimate_projection(
    features: Any, class_weights: Any, classes: Any, *, class_axis: int | None = None
) -> PenultimateProjection:
    """Project penultimate-layer features onto the plane through three class templates.

    Müller, Kornblith & Hinton (2019), Figure 1: a class's template is its row (or
    column) of the final layer's weights, the direction whose inner product with the
    features gives that class's logit. Take the templates ``t0, t1, t2`` of three
    classes, an orthonormal basis of the plane through them (Gram-Schmidt on ``t1 - t0``
    and ``t2 - t0``), and the 2-D coordinates of ``feature - t0`` in that basis. With
    label smoothing, examples of each class form tight clusters at equal distances.

    Args:
        features: (N, D) penultimate-layer activations (usually of examples of the three
            classes).
        class_weights: the final layer's weights, (K, D) (PyTorch ``Linear.weight``) or
            (D, K) (Keras/Flax ``Dense`` kernel); the layout is inferred from D unless
            the matrix is square, where ``class_axis`` is required.
        classes: three distinct class ids.
        class_axis: 0 if classes are rows, 1 if columns; default: inferred.

    Returns:
        ``PenultimateProjection(coords, basis)``: coords (N, 2) and basis (2, D), in the
        compute dtype of the features and weights.

    Raises:
        ValueError: bad shapes or classes, or (for concrete arrays) templates on one line.

    Example:
        >>> import numpy as np
        >>> from lsr.metrics import penultimate_projection
        >>> weights = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
        >>> features = np.array([[1.0, 1.0, 5.0]])  # (N=1, D=3); weights are (K=4, D=3)
        >>> coords, basis = penultimate_projection(features, weights, (0, 1, 2))
        >>> print(coords, basis)
        [[1. 1.]] [[1. 0. 0.]
         [0. 1. 0.]]
    """
    xp = array_namespace(features, class_weights)
    check_logits(xp, features, "features")
    if features.ndim != 2:
        fail_value("`features` must have shape (N, D).", "features", features)
    if not is_floating_dtype(xp, class_weights.dtype):
        fail_type(
            "`class_weights` must have a real floating dtype.", "class_weights", class_weights
        )
    if class_weights.ndim != 2:
        fail_value(
            "`class_weights` must be a matrix, (K, D) or (D, K).", "class_weights", class_weights
        )
    dimension = features.shape[1]
    class_axis = _template_axis(class_weights, dimension, class_axis)
    if class_weights.shape[1 - class_axis] != dimension:
        fail_value(
            f"`class_weights` must have D = {dimension} (the features' last dimension) on "
            f"axis {1 - class_axis}.",
            "class_weights",
            class_weights,
        )
    chosen = _check_classes(classes, class_weights.shape[class_axis])
    dtype = lsr_core.compute_dtype(xp, xp.result_type(features.dtype, class_weights.dtype))
    from lsr._compat import device

    index = xp.asarray(chosen, device=device(class_weights))
    templates = xp.take(cast(xp, class_weights, dtype), index, axis=class_axis)
    if class_axis == 1:
        templates = xp.matrix_transpose(templates)
    if is_concrete(templates):
        first = templates[1, :] - templates[0, :]
        second = templates[2, :] - templates[0, :]
        norms = float(xp.sqrt(xp.sum(first * first))) * float(xp.sqrt(xp.sum(second * second)))
        cosine = float(xp.sum(first * second)) / norms if norms > 0 else 1.0
        if not abs(cosine) < 1.0 - 1e-6:
            fail_value(
                "The three classes' templates lie on one line, so they span no plane.",
                "classes",
                classes,
            )
    coords, basis = core.plane_projection(xp, cast(xp, features, dtype), templates)
    return PenultimateProjection(coords, basis)


# ----------------------------------------------------------------------- plotting


def _matplotlib_figure(function: str) -> Any:
    """matplotlib's ``Figure`` class, imported on demand (Agg canvas, no pyplot state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"lsr.metrics.{function} needs matplotlib, an optional dependency: install it "
            "with `pip install 'lsr[plot]'` (or `pip install matplotlib`). The metrics "
            "themselves do not need it."
        ) from error
    return Figure


def _to_numpy(array: Any) -> Any:
    """A host NumPy copy of an array of any supported library (for plotting only)."""
    import numpy as np

    if hasattr(array, "detach"):  # torch: leave autograd, move to host
        array = array.detach().cpu()
    if hasattr(array, "numpy") and not isinstance(array, np.ndarray):
        try:
            return np.asarray(array.numpy())
        except (TypeError, AttributeError, RuntimeError):
            pass
    try:
        return np.from_dlpack(array)
    except (TypeError, AttributeError, BufferError, RuntimeError):
        return np.asarray(array)


def _new_axes(function: str, ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    figure = _matplotlib_figure(function)(figsize=figsize)
    return figure, figure.add_subplot()


def plot_reliability_diagram(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
    ax: Any = None,
    title: str | None = None,
    save_path: Any = None,
) -> Any:
    """Draw a reliability diagram (needs matplotlib): accuracy per confidence bin.

    Bars show each bin's accuracy, red bars the gap to its mean confidence, the dashed
    diagonal perfect calibration; the legend gives the ECE. Computed by
    ``reliability_diagram`` with the same arguments.

    Args:
        logits_or_probs, labels, n_bins, from_logits, bin_edges, axis: as in
            ``reliability_diagram``.
        ax: a matplotlib ``Axes`` to draw on (e.g. one panel of a larger figure);
            default: a new figure (created without pyplot, so no global state changes).
        title: the axes' title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    diagram = reliability_diagram(
        logits_or_probs,
        labels,
        n_bins=n_bins,
        from_logits=from_logits,
        bin_edges=bin_edges,
        axis=axis,
    )
    figure, ax = _new_axes("plot_reliability_diagram", ax, (4.0, 4.0))
    import numpy as np

    confidence, accuracy, count, edges = (_to_numpy(a) for a in diagram)
    occupied = count > 0
    ece = float(np.sum(count * np.abs(accuracy - confidence)) / np.sum(count))
    lefts, width = edges[:-1], 1.0 / n_bins
    ax.bar(
        lefts[occupied],
        accuracy[occupied],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    ax.bar(
        lefts[occupied],
        confidence[occupied] - accuracy[occupied],
        bottom=accuracy[occupied],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        label=f"gap (ECE = {ece:.3f})",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    if save_path is not None:
        figure.savefig(save_path, dpi=120, bbox_inches="tight")
    return figure


def plot_penultimate_projection(
    features: Any,
    labels: Any,
    class_weights: Any,
    classes: Any,
    *,
    class_axis: int | None = None,
    ax: Any = None,
    title: str | None = None,
    save_path: Any = None,
) -> Any:
    """Scatter the examples of three classes in the plane of their templates (matplotlib).

    Müller et al. (2019), Figure 1. Only the examples whose label is one of ``classes``
    are drawn, coloured by class; crosses mark the templates themselves.

    Args:
        features: (N, D) penultimate-layer activations.
        labels: (N,) integer class ids of the examples.
        class_weights, classes, class_axis: as in ``penultimate_projection``.
        ax: a matplotlib ``Axes`` to draw on; default: a new figure (no pyplot).
        title: the axes' title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    xp = array_namespace(features, labels, class_weights)
    if not is_integer_dtype(xp, labels.dtype) or tuple(labels.shape) != tuple(features.shape[:1]):
        fail_value(
            "`labels` must be (N,) integer class ids, one per feature row.", "labels", labels
        )
    coords, basis = penultimate_projection(features, class_weights, classes, class_axis=class_axis)
    figure, ax = _new_axes("plot_penultimate_projection", ax, (4.5, 4.5))
    import numpy as np

    coords, basis, labels = _to_numpy(coords), _to_numpy(basis), _to_numpy(labels)
    weights = _to_numpy(class_weights)
    axis_of_classes = _template_axis(weights, basis.shape[1], class_axis)
    templates = np.take(weights, [int(c) for c in classes], axis=axis_of_classes)
    if axis_of_classes == 1:
        templates = templates.T
    template_coords = (templates - templates[0]) @ basis.T
    colors = ("tab:blue", "tab:orange", "tab:green")
    for class_id, color, point in zip(classes, colors, template_coords, strict=True):
        chosen = labels == class_id
        ax.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=6,
            alpha=0.5,
            color=color,
            label=f"class {class_id}",
        )
        ax.scatter(point[0], point[1], marker="X", s=120, color=color, edgecolor="black")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("basis 1")
    ax.set_ylabel("basis 2")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small", markerscale=2.0)
    if save_path is not None:
        figure.savefig(save_path, dpi=120, bbox_inches="tight")
    return figure

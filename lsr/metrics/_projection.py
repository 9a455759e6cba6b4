"""The geometry of the penultimate layer: Müller, Kornblith & Hinton (2019), Figure 1.

Features are projected onto the plane through three classes' templates (their rows, or
columns, of the final layer's weights); ``lsr.metrics._core.plane_projection`` does the
arithmetic.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from lsr import _core
from lsr._checks import cast, check_logits, is_floating_dtype
from lsr._compat import array_namespace, device, is_concrete
from lsr._typing import Array
from lsr._validation import fail_type, fail_value, normalize_axis
from lsr.metrics import _core as metrics_core

__all__ = ["PenultimateProjection", "penultimate_projection", "project_with_templates"]


class PenultimateProjection(NamedTuple):
    """Coordinates of examples in the plane through three class templates.

    Attributes:
        coords: (N, 2) coordinates of ``feature - template_0`` in the plane's basis.
        basis: (2, D) orthonormal rows spanning the plane.
    """

    coords: Array
    basis: Array


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


def _check_classes(classes: Any, num_classes: int) -> tuple[int, int, int]:
    try:
        chosen = tuple(classes) if not isinstance(classes, str) else None
    except TypeError:
        chosen = None
    if (
        chosen is None
        or len(chosen) != 3
        or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in chosen)
        or len({int(c) for c in chosen}) != 3
    ):
        fail_value("`classes` must be three distinct integer class ids.", "classes", classes)
    if not all(0 <= int(c) < num_classes for c in chosen):
        fail_value(f"`classes` must be class ids in [0, {num_classes}).", "classes", classes)
    first, second, third = (int(c) for c in chosen)
    return first, second, third


def project_with_templates(
    features: Any, class_weights: Any, classes: Any, *, class_axis: int | None = None
) -> tuple[PenultimateProjection, Array]:
    """``penultimate_projection`` and the (3, 2) coordinates of the three templates.

    The templates' own coordinates (the first is the origin) are what a figure marks;
    they come from the same validated, cast templates as the features' coordinates.
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
    dtype = _core.compute_dtype(xp, xp.result_type(features.dtype, class_weights.dtype))
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
    coords, basis = metrics_core.plane_projection(xp, cast(xp, features, dtype), templates)
    template_coords, _ = metrics_core.plane_projection(xp, templates, templates)
    return PenultimateProjection(coords, basis), template_coords


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
    projection, _ = project_with_templates(features, class_weights, classes, class_axis=class_axis)
    return projection

"""Knowledge distillation loss (Hinton et al. 2015), on the same core as ``smooth_ce``.

The soft-target cross-entropy is ``smooth_ce`` with dense labels ``softmax(teacher/T)``,
no smoothing and logits ``student/T``, scaled by ``T**2`` so that its gradient keeps the
magnitude of a hard-target loss as T changes. ``distill_loss_core`` is the pure
array-API part (traceable; adapters call it after ``prepare_distill``); ``distill_loss``
is the public generic function.
"""

from __future__ import annotations

import numbers
from typing import Any

from lsr import _core
from lsr._checks import cast, check_flag, check_logits, check_num_classes
from lsr._compat import array_namespace, is_concrete
from lsr._typing import Array, DType, Namespace
from lsr._validation import (
    REDUCTIONS,
    check_choice,
    fail_type,
    fail_value,
    normalize_axis,
)

__all__ = ["distill_loss", "distill_loss_core", "prepare_distill"]


def distill_loss_core(
    student_logits: Array,
    teacher_logits: Array,
    *,
    xp: Namespace,
    temperature: Any,
    axis: int,
    reduction: str,
    where: Array | None,
    kl: bool,
) -> Array:
    """``T**2 * H(softmax(teacher/T), softmax(student/T))`` (or the KL form), reduced.

    Inputs validated and in one compute dtype (``prepare_distill``). The teacher's
    distribution is built densely (it is soft); the student's loss then uses the core's
    closed form ``lse(s/T) - sum_k p_k s_k/T`` without a log-softmax array.
    """
    if where is not None:
        # The teacher's logits of left-out positions (a row of -inf, say) would make NaN
        # soft targets there: replaced by 0 first. (The student's are replaced by the
        # core's pass itself: ``differentiated``.)
        teacher_logits = xp.where(xp.expand_dims(where, axis=axis), teacher_logits, 0.0)
    scaled_teacher = teacher_logits / temperature
    soft_targets = xp.exp(scaled_teacher - _core.logsumexp(xp, scaled_teacher, axis))
    spec = _core.Spec(
        num_classes=student_logits.shape[axis],
        axis=axis,
        dense=True,
        where=where,
        reduction=reduction,
        kl=kl,
    )
    loss, _, _ = _core.smooth_ce(
        student_logits / temperature, soft_targets, spec, xp=xp, differentiated=True
    )
    return loss * (temperature * temperature)


def _check_temperature(xp: Namespace, temperature: Any, dtype: DType) -> Any:
    if isinstance(temperature, bool):
        fail_type("`temperature` must be a positive number.", "temperature", temperature)
    if isinstance(temperature, numbers.Real):
        # numbers.Real's stub has no comparison with int (python/mypy#3186).
        if not temperature > 0 or temperature == float("inf"):  # type: ignore[operator]
            fail_value("`temperature` must be finite and > 0.", "temperature", temperature)
        return float(temperature)
    shape = getattr(temperature, "shape", None)
    if shape is None or tuple(shape) != () or not xp.isdtype(temperature.dtype, "real floating"):
        fail_type(
            "`temperature` must be a positive number or a floating 0-d array.",
            "temperature",
            temperature,
        )
    temperature = cast(xp, temperature, dtype)
    if not is_concrete(temperature):
        # Under tracing the value cannot be read: a temperature that is not > 0 (NaN
        # included) makes the loss NaN, never a plausible number.
        return xp.where(temperature > 0, temperature, xp.nan)
    if not float(temperature) > 0:
        fail_value("`temperature` must be > 0.", "temperature", float(temperature))
    return temperature


def prepare_distill(
    student_logits: Any,
    teacher_logits: Any,
    *,
    temperature: Any,
    axis: int,
    reduction: str,
    where: Any,
    kl: bool,
) -> tuple[Any, Array, Array, dict[str, Any]]:
    """Validate; return ``(xp, student, teacher, keyword arguments of distill_loss_core)``.

    Both logits come back in the student's compute dtype (float32 for half precision).
    """
    xp = array_namespace(
        student_logits,
        teacher_logits,
        where,
        temperature if hasattr(temperature, "shape") else None,
    )
    check_logits(xp, student_logits, "student_logits")
    check_logits(xp, teacher_logits, "teacher_logits")
    if tuple(teacher_logits.shape) != tuple(student_logits.shape):
        fail_value(
            f"`teacher_logits` must have the student's shape {tuple(student_logits.shape)}.",
            "teacher_logits",
            teacher_logits,
        )
    axis = normalize_axis(axis, student_logits.ndim)
    if student_logits.shape[axis] is not None:
        check_num_classes(
            student_logits.shape[axis], "student_logits.shape", tuple(student_logits.shape)
        )
    check_choice("reduction", reduction, REDUCTIONS)
    kl = check_flag("kl", kl)
    positions = tuple(student_logits.shape[:axis]) + tuple(student_logits.shape[axis + 1 :])
    if where is not None and (where.dtype != xp.bool or tuple(where.shape) != positions):
        fail_value(
            f"`where` must be a boolean mask of shape {positions} (the logits' shape "
            "without the class axis).",
            "where",
            where,
        )
    dtype = _core.compute_dtype(xp, student_logits.dtype)
    options = {
        "xp": xp,
        "temperature": _check_temperature(xp, temperature, dtype),
        "axis": axis,
        "reduction": reduction,
        "where": where,
        "kl": kl,
    }
    return xp, cast(xp, student_logits, dtype), cast(xp, teacher_logits, dtype), options


def distill_loss(
    student_logits: Any,
    teacher_logits: Any,
    *,
    temperature: Any,
    axis: int = -1,
    reduction: str = "mean",
    where: Any = None,
    kl: bool = False,
) -> Any:
    r"""Knowledge-distillation loss: soft-target cross-entropy at temperature T, times T².

    Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": with
    ``p = softmax(teacher_logits / T)`` and ``q = softmax(student_logits / T)`` the loss
    per position is ``T**2 * sum_k -p_k log q_k``; the ``T**2`` keeps the gradient's
    scale independent of T (the gradient in the student's logits is ``T (q - p)``).
    With ``kl=True`` it is ``T**2 * KL(p || q)`` instead (the same gradient, minimum 0,
    what ``torch.nn.functional.kl_div`` computes). Combine it with a hard-target loss
    (e.g. ``lsr.smooth_ce``) as the paper does. Müller et al. (2019) found that teachers
    trained with label smoothing distil worse students.

    The teacher is not detached here (the generic function cannot know the library):
    pass teacher logits computed without gradient tracking, or use an adapter.

    Args:
        student_logits: (..., K, ...) with the K classes on ``axis``.
        teacher_logits: the same shape (cast to the student's compute dtype).
        temperature: T > 0, a Python number or a floating 0-d array (may be traced).
        axis: the class axis.
        reduction: ``"none"`` (the positions' shape), ``"sum"`` or ``"mean"`` (over the
            positions kept by ``where``; 0 if none is).
        where: optional boolean mask of the positions to keep.
        kl: return the KL-divergence form.

    Returns:
        The loss in the student's compute dtype (float32 for half precision).

    Example:
        >>> import numpy as np
        >>> from lsr._distill import distill_loss
        >>> student = np.array([[1.0, 2.0, 0.5]])
        >>> teacher = np.array([[2.0, 1.0, 0.0]])
        >>> print(round(float(distill_loss(student, teacher, temperature=2.0, kl=True)), 6))
        0.418517
    """
    _, student, teacher, options = prepare_distill(
        student_logits,
        teacher_logits,
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=where,
        kl=kl,
    )
    return distill_loss_core(student, teacher, **options)

"""``smooth_ce`` (a ``tf.custom_gradient``), ``smooth_labels`` and ``distill_loss`` on
tf.Tensors (see ``lsr.tensorflow`` for the conventions and the gradient rules)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

import lsr
from lsr import _core
from lsr._aux import as_aux
from lsr._checks import prepare_smooth_ce
from lsr._validation import fail_type
from lsr.tensorflow._gradients import (
    OPTIONS_WITH_GRADIENTS,
    argument_gradients,
    differentiable_arguments,
    first_order_only,
    may_need_gradient,
    refuse_forward_mode,
    stop_recording,
    with_arguments,
)
from lsr.tensorflow._inputs import (
    all_positions,
    as_option,
    as_optional_tensor,
    as_prior,
    as_tensor,
    check_class_axis,
)
from lsr.tensorflow._namespace import namespace

__all__ = ["distill_loss", "smooth_ce", "smooth_labels"]


def _loss_given(logits: Any) -> Any:
    """``(labels, spec) -> reduced loss``: the core's forward pass on fixed logits."""
    return lambda labels, spec: _core.smooth_ce(
        logits, labels, spec, xp=namespace, differentiated=True
    )[0]


def _smooth_ce_with_gradient(logits: Any, labels: Any, spec: _core.Spec) -> Any:
    """``_core.smooth_ce`` forward, ``_core.smooth_ce_grad`` backward for the logits.

    Dense labels and array-valued ``weight``, ``prior`` and ``smoothing`` are inputs of
    the custom gradient too, so that their gradients are the same eagerly and in graphs.
    With ``spec.aux``, ``(loss, Aux)``: the auxiliary outputs leave the custom gradient's
    forward as constants (made where nothing is recorded), so no gradient reaches them.
    """
    refuse_forward_mode(logits, labels, *(getattr(spec, n) for n in OPTIONS_WITH_GRADIENTS))
    arguments = differentiable_arguments(labels, spec)
    names = tuple(arguments)
    aux: dict[str, Any] = {}
    if not tf.executing_eagerly():
        loss = _fused_smooth_ce(logits, labels, spec, names, tuple(arguments.values()), aux)
        return (loss, as_aux(aux, tf.stop_gradient)) if spec.aux else loss
    logits_need_gradient = may_need_gradient(logits)

    @tf.custom_gradient
    def forward(z, *values):
        y, call = with_arguments(labels, spec, names, values)
        # What the tape would record here is never used (the custom gradient replaces
        # it) but would keep logits-sized temporaries alive until the tape is freed.
        with stop_recording():
            loss, lse, denominator = _core.smooth_ce(z, y, call, xp=namespace, aux=aux)

        def backward(upstream):
            grad = None
            if logits_need_gradient:
                cotangent = tf.cast(upstream, lse.dtype)
                grad = first_order_only(
                    _core.smooth_ce_grad(z, y, lse, denominator, cotangent, call, xp=namespace)
                )
            return [
                grad,
                *argument_gradients(_loss_given(z), labels, spec, names, values, upstream),
            ]

        return loss, backward

    loss = forward(logits, *arguments.values())
    return (loss, as_aux(aux, tf.stop_gradient)) if spec.aux else loss


def _fused_smooth_ce(
    logits: Any,
    labels: Any,
    spec: _core.Spec,
    names: tuple[str, ...],
    values: tuple,
    aux: dict[str, Any] | None = None,
) -> Any:
    """In a graph: the loss and its gradient from one pass (``_core.loss_and_grad``).

    One exp of the logits serves both (XLA's CPU reductions do not vectorize an exp fused
    into them, so a separate logsumexp and backward exp cost twice); a graph that asks
    for no gradient never runs the gradient's ops. Eagerly, ``_smooth_ce_with_gradient``
    computes the gradient only when a tape asks for it.
    """
    axis, reduction = spec.axis, spec.reduction

    @tf.custom_gradient
    def forward(z, *values):
        y, call = with_arguments(labels, spec, names, values)
        with stop_recording():
            loss, grad = _core.reduced_loss_and_grad(z, y, call, xp=namespace, aux=aux)

        def backward(upstream):
            cotangent = tf.cast(upstream, grad.dtype)
            if reduction == "none":
                cotangent = tf.expand_dims(cotangent, axis)
            return [
                first_order_only(grad * cotangent),
                *argument_gradients(_loss_given(z), labels, spec, names, values, upstream),
            ]

        return loss, backward

    return forward(logits, *values)


# Autograph would rewrite Python branches on tensors into tf.cond; lsr's code has none by
# design, and leaving it unconverted keeps such a bug an error instead of a silent change.
@tf.autograph.experimental.do_not_convert
def smooth_ce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    ignore_index: int | None = None,
    weight: Any = None,
    where: Any = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
) -> Any:
    r"""Label-smoothed softmax cross-entropy ``H(q', softmax(logits))`` on tf.Tensors.

    The semantics and keywords of ``lsr.smooth_ce`` (see there for every option):
    ``q' = (1 - smoothing) q + smoothing u`` with ``u`` named by ``prior``, computed in
    closed form for integer labels (no one-hot tensor), with a custom gradient.

    Args:
        logits: floating scores, shape ``(..., K, ...)`` with the K classes on ``axis``.
            float16/bfloat16 are computed (and returned) in float32.
        labels: integer class ids of shape ``logits.shape`` without ``axis``, or dense
            floating targets of the logits' shape.
        smoothing: epsilon in [0, 1], a Python float, a 0-d tensor, or one epsilon per
            position (the labels' shape for class ids, or broadcastable to it, e.g.
            (N, 1) per example; dimensions may be unknown inside ``tf.function``).
        prior: ``"uniform"`` (``u_k = 1/K``, as Keras' ``label_smoothing``), ``"others"``
            (epsilon spread over the K - 1 other classes), or a (K,) distribution.
        axis: the class axis.
        ignore_index: integer labels equal to it get loss 0 and gradient 0 and are left
            out of the mean.
        weight: per-class weights of shape (K,) (PyTorch's semantics).
        where: boolean mask of the positions to keep (shape of the integer labels).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        kl: return ``KL(q' || p)`` (minimum 0) instead of the cross-entropy.
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position.
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per position
            (Pereyra et al. 2017), weighted and reduced like ``z_loss``.
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` from the same pass,
            without gradient (integer labels only; see ``lsr.Aux``); False: the loss alone,
            and no extra sum.
        causal_shift: next-token prediction: the logits at position t are scored
            against the label at t + 1 along the labels' last axis (the sequence), and
            each sequence's last position is left out (as ``where``). Only the labels and
            a mask are shifted: the logits are never sliced or copied. Class ids only;
            ``where`` is not shifted (it masks the logits' positions): mark padding
            with ``ignore_index``.

    Returns:
        A tf.Tensor: 0-d for "mean" and "sum", the positions' shape for "none". With
        ``return_aux=True``, ``(loss, aux)`` (``lsr.Aux``, without gradient).

    Raises:
        TypeError, ValueError: as ``lsr.smooth_ce``; value checks (labels in range,
            smoothing in [0, 1]) run eagerly only. Inside ``tf.function`` an
            out-of-range label gives NaN. A ValueError also when, inside
            ``tf.function``, the rank or the class axis' size is unknown.

    Example:
        >>> import numpy as np
        >>> import lsr.tensorflow
        >>> loss = lsr.tensorflow.smooth_ce(
        ...     np.array([[100.0, -100.0, -100.0]]), np.array([0]), smoothing=0.1
        ... )
        >>> print(f"{float(loss):.4f}")  # Keras: 400 * 0.1 / 3
        13.3333

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision".
    """
    logits = as_tensor("logits", logits)
    labels = as_tensor("labels", labels)
    check_class_axis("logits", logits, axis)
    _, logits, labels, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=as_option("smoothing", smoothing),
        prior=as_prior(prior),
        axis=axis,
        ignore_index=ignore_index,
        weight=as_optional_tensor("weight", weight),
        where=as_optional_tensor("where", where),
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
        causal_shift=causal_shift,
    )
    if not logits.shape.is_fully_defined() and spec.where is None:
        spec = spec.replace(where=all_positions(logits, spec.axis))
    return _smooth_ce_with_gradient(logits, labels, spec)


@tf.autograph.experimental.do_not_convert
def smooth_labels(
    labels: Any,
    num_classes: int | None = None,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    dtype: Any = None,
) -> Any:
    r"""Dense smoothed targets ``q' = (1 - smoothing) q + smoothing u`` as a tf.Tensor.

    The semantics of ``lsr.smooth_labels``; ``labels`` is never modified (a NumPy array
    stays as it was). On one-hot labels with K classes:

    * ``prior="others"`` gives ``clip(q, eps / (K - 1), 1 - eps)``: cleverhans' 2017 MNIST
      tutorial ``Y_train.clip(0.1 / 9, 0.9)`` for ``smoothing=0.1``, K = 10.
    * ``prior="uniform"`` gives ``q - eps (q - 1/K)``: cleverhans v3
      ``CrossEntropy(model, smoothing=0.1)``, 0.91 on the true class and 0.01 elsewhere.

    Args:
        labels: integer class ids (then ``num_classes`` is required; the class axis is
            inserted at ``axis``) or dense floating targets with the classes on ``axis``.
        num_classes: K, for integer labels.
        smoothing: epsilon in [0, 1].
        prior: ``"uniform"``, ``"others"`` or a (K,) class distribution.
        axis: the class axis (of the result).
        dtype: the result's floating dtype (a tf.DType or its name); default: the dense
            labels' dtype, float32 for integer labels.

    Returns:
        A tf.Tensor of smoothed targets.

    Example:
        >>> import numpy as np
        >>> import lsr.tensorflow
        >>> y = np.eye(10, dtype=np.float32)[[3]]
        >>> q = lsr.tensorflow.smooth_labels(y, smoothing=0.1, prior="others")
        >>> print(np.round(q.numpy()[0, 2:5], 4))
        [0.0111 0.9    0.0111]
    """
    labels = as_tensor("labels", labels)
    if labels.dtype.is_floating:
        check_class_axis("labels", labels, axis)
    if dtype is not None:
        try:
            dtype = tf.as_dtype(dtype)
        except TypeError:
            fail_type("`dtype` must be a floating dtype (a tf.DType or its name).", "dtype", dtype)
    return lsr.smooth_labels(
        labels,
        num_classes,
        smoothing=as_option("smoothing", smoothing),
        prior=as_prior(prior),
        axis=axis,
        dtype=dtype,
    )


@tf.autograph.experimental.do_not_convert
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
    """Hinton et al. (2015) distillation loss, ``T**2`` times the soft-target cross-entropy.

    ``lsr.distill_loss`` on tf.Tensors; the teacher's logits pass through
    ``tf.stop_gradient``, so only the student receives gradients. See ``lsr.distill_loss``.

    Example:
        >>> import tensorflow as tf
        >>> import lsr.tensorflow
        >>> student = tf.constant([[1.0, 2.0, 0.5]])
        >>> teacher = tf.constant([[2.0, 1.0, 0.0]])
        >>> loss = lsr.tensorflow.distill_loss(student, teacher, temperature=2.0, kl=True)
        >>> round(float(loss), 6)
        0.418517
    """
    student_logits = as_tensor("student_logits", student_logits)
    teacher_logits = as_tensor("teacher_logits", teacher_logits)
    check_class_axis("student_logits", student_logits, axis)
    check_class_axis("teacher_logits", teacher_logits, axis)
    where = as_optional_tensor("where", where)
    if where is None and not student_logits.shape.is_fully_defined():
        # As in smooth_ce: the mean's count of positions from the dynamic shape.
        where = all_positions(student_logits, axis)
    return lsr.distill_loss(
        student_logits,
        tf.stop_gradient(teacher_logits),
        temperature=as_option("temperature", temperature),
        axis=axis,
        reduction=reduction,
        where=where,
        kl=kl,
    )

"""``smooth_bce`` (a ``tf.custom_gradient``): the core's smoothed sigmoid (binary,
multi-label) cross-entropy on tf.Tensors (see ``lsr.tensorflow`` for the gradient rules,
which are ``smooth_ce``'s)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from lsr import _core
from lsr._checks_binary import prepare_smooth_bce
from lsr.tensorflow._gradients import (
    argument_gradients,
    compiled_by_xla,
    first_order_only,
    may_need_gradient,
    refuse_forward_mode,
    stop_recording,
    with_arguments,
)
from lsr.tensorflow._inputs import as_option, as_optional_tensor, as_tensor, check_class_axis
from lsr.tensorflow._namespace import namespace

__all__ = ["smooth_bce"]

# The options besides the logits that a gradient may be asked for, when they are
# floating tensors (soft labels too).
_OPTIONS_WITH_GRADIENTS = ("weight", "pos_weight", "prior", "smoothing")


def _differentiable_arguments(labels: Any, spec: _core.BinarySpec) -> dict[str, Any]:
    """Name -> floating tensor, for the arguments besides the logits that get gradients."""
    candidates = {"labels": labels}
    candidates.update({name: getattr(spec, name) for name in _OPTIONS_WITH_GRADIENTS})
    return {
        name: value
        for name, value in candidates.items()
        if isinstance(value, tf.Tensor) and value.dtype.is_floating and may_need_gradient(value)
    }


def _loss_given(logits: Any) -> Any:
    """``(labels, spec) -> reduced loss``: the core's forward pass on fixed logits."""
    return lambda labels, spec: _core.binary_loss(logits, labels, spec, xp=namespace)[0]


def _smooth_bce_with_gradient(logits: Any, labels: Any, spec: _core.BinarySpec) -> Any:
    """``_core.binary_loss`` forward, ``_core.binary_grad`` backward for the logits (under
    XLA both from ``_core.binary_loss_and_grad``).

    Soft labels and array-valued ``weight``, ``pos_weight``, ``prior`` and ``smoothing``
    are inputs of the custom gradient too, so that their gradients are the same eagerly
    and in graphs (autodiff of the core's forward pass in just those arguments).
    """
    refuse_forward_mode(logits, labels, *(getattr(spec, n) for n in _OPTIONS_WITH_GRADIENTS))
    arguments = _differentiable_arguments(labels, spec)
    names = tuple(arguments)
    eager = tf.executing_eagerly()
    xla = compiled_by_xla()
    logits_need_gradient = may_need_gradient(logits)

    @tf.custom_gradient
    def forward(z, *values):
        y, call = with_arguments(labels, spec, names, values)
        # What the tape would record here is never used (the custom gradient replaces it).
        with stop_recording():
            # In a graph the gradient is made beside the loss (its ops are pruned when no
            # gradient is asked for); under XLA from the loss's own exp(-|z|), which XLA
            # fuses into one pass, while a graph run op by op is faster with one sigmoid
            # op than with the three that share it. Eagerly only when a tape asks, in the
            # backward pass.
            unit_grad = None
            if xla:
                loss, denominator, unit_grad = _core.binary_loss_and_grad(z, y, call, xp=namespace)
            else:
                loss, denominator = _core.binary_loss(z, y, call, xp=namespace)
                if not eager:
                    unit_grad = _core.binary_grad(z, y, denominator, 1.0, call, xp=namespace)

        def backward(upstream):
            grad = None
            cotangent = tf.cast(upstream, loss.dtype)
            if unit_grad is not None:
                grad = first_order_only(unit_grad * cotangent)
            elif logits_need_gradient:
                grad = first_order_only(
                    _core.binary_grad(z, y, denominator, cotangent, call, xp=namespace)
                )
            return [
                grad,
                *argument_gradients(_loss_given(z), labels, spec, names, values, upstream),
            ]

        return loss, backward

    return forward(logits, *arguments.values())


# Autograph would rewrite Python branches on tensors into tf.cond; lsr's code has none by
# design (as ``smooth_ce``).
@tf.autograph.experimental.do_not_convert
def smooth_bce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any = 0.1,
    prior: Any = 0.5,
    axis: int = -1,
    weight: Any = None,
    pos_weight: Any = None,
    where: Any = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Any:
    r"""Label-smoothed sigmoid (binary) cross-entropy on tf.Tensors, one target per logit.

    The semantics and keywords of ``lsr.smooth_bce``: each target ``y`` becomes
    ``y' = (1 - smoothing) y + smoothing u`` with ``u`` the smoothing value ``prior``, and
    the loss of an element is ``-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))]``,
    with a custom gradient. With the defaults (``prior=0.5``) and ``reduction="none"``,
    the mean over the last axis is Keras'
    ``binary_crossentropy(y, z, from_logits=True, label_smoothing=smoothing)``.

    Args:
        logits: floating scores of any shape, one per (element, label). float16/bfloat16
            are computed (and returned) in float32.
        labels: targets of the logits' shape: bool or integer 0/1, or floating values in
            [0, 1] (soft targets; they get gradients).
        smoothing: epsilon in [0, 1], a Python float or a 0-d tensor.
        prior: the smoothing value ``u`` in [0, 1]: a number (0.5, as Keras),
            ``"uniform"`` (``1/K`` over the K labels on ``axis``, as timm), or a tensor
            that broadcasts to the logits.
        axis: the label axis (for ``prior="uniform"`` only).
        weight: element weights that broadcast to the logits (PyTorch's ``weight``).
        pos_weight: weights ``r`` of the positive term that broadcast to the logits
            (``tf.nn.weighted_cross_entropy_with_logits``' ``pos_weight``).
        where: boolean mask (broadcasting to the logits) of the elements to keep.
        ignore_index: integer labels equal to it are left out (loss and gradient 0, not
            counted by the mean). Integer labels only.
        reduction: ``"mean"`` over the kept elements (the default, as Keras' losses and
            ``lsr.tensorflow.smooth_ce``; a mean over nothing is 0), ``"sum"`` or
            ``"none"``.

    Returns:
        A tf.Tensor: 0-d for "mean" and "sum", the logits' shape for "none".

    Raises:
        TypeError, ValueError: as ``lsr.smooth_bce``; value checks (labels in [0, 1], an
            array prior in [0, 1]) run eagerly only. Inside ``tf.function`` a label
            outside [0, 1] gives NaN. A ValueError also when, inside ``tf.function``,
            the rank is unknown, or the label axis' size is for ``prior="uniform"``.

    Example:
        >>> import numpy as np
        >>> import lsr.tensorflow
        >>> logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], dtype=np.float32)
        >>> labels = np.array([[1, 0, 1], [0, 1, 0]])
        >>> print(f"{float(lsr.tensorflow.smooth_bce(logits, labels, smoothing=0.1)):.4f}")
        0.3680

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision".
    """
    logits = as_tensor("logits", logits)
    labels = as_tensor("labels", labels)
    if isinstance(prior, str) and prior == "uniform":
        check_class_axis("logits", logits, axis)
    _, logits, labels, spec = prepare_smooth_bce(
        logits,
        labels,
        smoothing=as_option("smoothing", smoothing),
        prior=as_option("prior", prior),
        axis=axis,
        weight=as_optional_tensor("weight", weight),
        pos_weight=as_optional_tensor("pos_weight", pos_weight),
        where=as_optional_tensor("where", where),
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return _smooth_bce_with_gradient(logits, labels, spec)

"""``smooth_bce`` (a ``jax.custom_jvp``): the core's smoothed sigmoid (binary,
multi-label) cross-entropy on jax arrays (see ``lsr.jax`` for the conventions).

``lsr._core.BinarySpec`` is a pytree (registered in ``_namespace`` with ``Spec``): its
array fields (an array smoothing or prior, ``weight``, ``pos_weight``, the
``where`` mask) are the leaves that JAX traces and differentiates; the rest (the shape, a
float smoothing or prior, ``ignore_index``, the reduction, whether the labels were
checked) is hashable auxiliary data, part of the compiled program.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from lsr import _core
from lsr._checks_binary import prepare_smooth_bce
from lsr.jax._jvp import is_zero, options_tangent
from lsr.jax._namespace import as_jax, as_scalar, xp

__all__ = ["smooth_bce"]


@jax.custom_jvp
def _smooth_bce(logits: Any, labels: Any, spec: _core.BinarySpec) -> Any:
    loss, _ = _core.binary_loss(logits, labels, spec, xp=xp)
    return loss


# The options besides the logits that may carry tangents, when they are arrays (boolean
# masks never have any).
_DIFFERENTIABLE = ("smoothing", "prior", "weight", "pos_weight")


@functools.partial(_smooth_bce.defjvp, symbolic_zeros=True)
def _smooth_bce_jvp(primals, tangents):
    logits, labels, spec = primals
    logits_dot, labels_dot, spec_dot = tangents
    if is_zero(logits_dot):
        loss, _ = _core.binary_loss(logits, labels, spec, xp=xp)
        tangent_out = jnp.zeros_like(loss)
    else:
        # The core's closed-form gradient with a unit cotangent per reduced value (from
        # the loss's own exp(-|z|)): for "none" it is d loss_i / d z_i elementwise, else
        # d loss / d z. Reverse mode keeps just this gradient (one logits-sized array)
        # as its residual.
        loss, _, grad = _core.binary_loss_and_grad(logits, labels, spec, xp=xp)
        tangent = grad * logits_dot
        tangent_out = tangent if spec.reduction == "none" else jnp.sum(tangent)

    # Soft labels and array options: differentiate the core's forward pass in just the
    # arguments whose tangents are not zero.
    extra = options_tangent(
        lambda targets, options: _core.binary_loss(logits, targets, options, xp=xp)[0],
        labels,
        labels_dot,
        spec,
        spec_dot,
        names=_DIFFERENTIABLE,
        soft_labels=jnp.issubdtype(labels.dtype, jnp.floating),
    )
    if extra is not None:
        tangent_out = tangent_out + extra
    return loss, tangent_out


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
    reduction: str = "none",
) -> jax.Array:
    r"""Label-smoothed sigmoid (binary) cross-entropy for JAX, one target per logit.

    Each target ``y`` (0/1 multi-hot, or soft in [0, 1]) becomes
    ``y' = (1 - smoothing) y + smoothing u`` with ``u`` the smoothing value ``prior``, and
    the loss of an element is ``-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))]``,
    computed stably for any logit. The same definition and numbers as ``lsr.smooth_bce``
    (``lsr.binary_smoothing`` translates the published conventions). At
    ``smoothing=0`` it is ``optax.sigmoid_binary_cross_entropy``. Works under
    ``jax.jit``, ``grad``/``value_and_grad``, ``vmap``, ``jvp`` and ``hessian``.

    As optax's losses (and ``lsr.jax.smooth_ce``), it returns the elementwise loss by
    default (``reduction="none"``); ``"mean"`` averages over the kept elements.

    Args:
        logits: unnormalized scores of any shape, one per (element, label); any jax
            array-like. float16/bfloat16 are computed (and returned) in float32.
        labels: targets of the logits' shape: bool or integer 0/1, or floating values
            in [0, 1] (soft targets; differentiable).
        smoothing: epsilon in [0, 1]. A Python float is a compile-time constant; a jax
            scalar (may be traced) is a runtime input, differentiable.
        prior: the smoothing value ``u`` in [0, 1]: a number (0.5 by default, as Keras'
            ``label_smoothing``), ``"uniform"`` (``1/K`` over the K labels on ``axis``,
            as timm), or an array that broadcasts to the logits (may be traced,
            differentiable).
        axis: the label axis (for ``prior="uniform"`` only).
        weight: element weights that broadcast to the logits (PyTorch's ``weight``).
        pos_weight: weights ``r`` of the positive term that broadcast to the logits, one
            per label (PyTorch's ``pos_weight``).
        where: optax-style boolean mask (broadcasting to the logits) of the elements to
            keep: the others get loss 0 and gradient 0 and leave the mean's denominator.
        ignore_index: integer labels equal to it are left out as ``where`` leaves them.
            Integer labels only.
        reduction: ``"none"`` (the default: the logits' shape, as optax), ``"mean"`` over
            the kept elements (weights are not in the denominator; a mean over nothing
            is 0) or ``"sum"``.

    Returns:
        A jax array: the logits' shape for "none", 0-d for "mean" and "sum".

    Raises:
        TypeError, ValueError: as ``lsr.smooth_bce``, at trace time for shapes, dtypes
            and options. Value checks (labels, an array prior) need concrete arrays;
            under ``jax.jit``/``vmap`` a label outside [0, 1] makes its loss, every
            reduction over it and the gradient NaN instead.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lsr.jax import smooth_bce
        >>> logits = jnp.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> labels = jnp.array([[1, 0, 1], [0, 1, 0]])
        >>> smooth_bce(logits, labels).shape  # one loss per element, as optax
        (2, 3)
        >>> mean_loss = lambda z, y: smooth_bce(z, y, reduction="mean")
        >>> loss, grad = jax.jit(jax.value_and_grad(mean_loss))(logits, labels)
        >>> print(f"{loss:.4f}", grad.shape)
        0.3680 (2, 3)

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
        Müller et al. 2019, "When Does Label Smoothing Help?".
    """
    logits, labels = as_jax(logits, "logits"), as_jax(labels)
    weight, pos_weight = as_jax(weight, "weight"), as_jax(pos_weight, "pos_weight")
    where = as_jax(where, "where")
    smoothing = as_scalar(smoothing)
    if not isinstance(prior, str):
        prior = as_scalar(prior)
    # Concrete arrays (closed over by a jitted function, say) are checked by value even
    # while a caller is traced; tracers skip the value checks (NaN in the loss instead).
    with jax.ensure_compile_time_eval():
        _, logits, labels, spec = prepare_smooth_bce(
            logits,
            labels,
            smoothing=smoothing,
            prior=prior,
            axis=axis,
            weight=weight,
            pos_weight=pos_weight,
            where=where,
            ignore_index=ignore_index,
            reduction=reduction,
        )
    return _smooth_bce_compiled(logits, labels, spec)


# As ``smooth_ce``'s: one compiled program per shape and static options when called
# eagerly (not a dispatch per op), inlined into a caller's ``jit``.
_smooth_bce_compiled = jax.jit(_smooth_bce)

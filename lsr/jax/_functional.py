"""``smooth_ce`` (a ``jax.custom_jvp``), ``smooth_labels``, ``estimate_prior``,
``distill_loss``: the core's functions on jax arrays (see ``lsr.jax`` for the conventions).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from lsr import _core, _distill, _functions
from lsr._aux import as_aux
from lsr._checks import prepare_smooth_ce
from lsr.jax._jvp import is_zero, options_tangent
from lsr.jax._namespace import as_jax, as_prior, as_scalar, pass_namespace

__all__ = ["distill_loss", "estimate_prior", "smooth_ce", "smooth_labels"]


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _smooth_ce(logits: Any, labels: Any, spec: _core.Spec, xp: Any) -> Any:
    """The core's loss; ``xp``: the namespace of its pass (``pass_namespace``)."""
    aux: dict[str, Any] = {}
    loss, _, _ = _core.smooth_ce(logits, labels, spec, xp=xp, aux=aux)
    return _with_aux(loss, aux, spec)


def _with_aux(loss: Any, aux: dict[str, Any], spec: _core.Spec) -> Any:
    """The loss, or ``(loss, Aux)`` when the call asked for the auxiliary outputs."""
    return (loss, as_aux(aux)) if spec.aux else loss


# The arguments besides the logits that may carry tangents (integer labels and boolean
# masks never have any).
_DIFFERENTIABLE = ("smoothing", "prior", "weight")


@functools.partial(_smooth_ce.defjvp, symbolic_zeros=True)
def _smooth_ce_jvp(xp, primals, tangents):
    logits, labels, spec = primals
    logits_dot, labels_dot, spec_dot = tangents
    aux = {}  # (filled by the pass)
    if is_zero(logits_dot):
        loss, _, _ = _core.smooth_ce(logits, labels, spec, xp=xp, aux=aux)
        tangent_out = jnp.zeros_like(loss)
    else:
        # The loss and the core's closed-form gradient in one pass (one exp of the
        # logits: XLA's CPU reductions do not vectorize an exp fused into them, which
        # made a separate logsumexp twice as slow at K = 128000), with a unit cotangent
        # per reduced value: for "none" the row of position i is d loss_i / d z_i, else
        # d loss / d z. Reverse mode keeps that gradient as its residual.
        loss, grad = _core.reduced_loss_and_grad(logits, labels, spec, xp=xp, aux=aux)
        summed_axes = spec.axis if spec.reduction == "none" else None
        tangent_out = jnp.sum(grad * logits_dot, axis=summed_axes)

    # Dense labels, weight, an array prior and an array smoothing: differentiate the core's
    # forward pass in just the arguments whose tangents are not zero.
    extra = options_tangent(
        lambda targets, options: _core.smooth_ce(
            logits, targets, options, xp=xp, differentiated=True
        )[0],
        labels,
        labels_dot,
        spec,
        spec_dot,
        names=_DIFFERENTIABLE,
        soft_labels=spec.dense,
    )
    if extra is not None:
        tangent_out = tangent_out + extra
    # The auxiliary outputs are metrics: their tangents are zero.
    zeros = {name: jnp.zeros_like(value) for name, value in aux.items()}
    return _with_aux(loss, aux, spec), _with_aux(tangent_out, zeros, spec)


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
    reduction: str = "none",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
) -> Any:
    r"""Label-smoothed softmax cross-entropy ``H(q', softmax(logits))`` for JAX.

    ``q' = (1 - smoothing) q + smoothing u``, with ``q`` the one-hot (or given dense)
    target and ``u`` the distribution named by ``prior`` (Szegedy et al. 2016). The same
    definition and numbers as ``lsr.smooth_ce``; for integer labels no N x K target is
    built. Works under ``jax.jit``, ``grad``/``value_and_grad``, ``vmap``, ``jvp``,
    ``jacfwd`` and ``hessian``, and on sharded arrays.

    As optax's losses, it returns one loss per position by default
    (``reduction="none"``), so code that averages with its own mask keeps its value when
    it swaps ``optax.softmax_cross_entropy_with_integer_labels`` for this function.
    ``reduction="mean"`` averages over the kept positions (``where``, ``ignore_index``)
    in the same pass.

    Args:
        logits: unnormalized scores, shape ``(..., K, ...)`` with the K classes on
            ``axis``; any jax array-like. float16/bfloat16 are computed (and returned)
            in float32.
        labels: integer class ids, the logits' shape without ``axis`` (any integer
            dtype), or dense floating targets of the logits' shape (one-hot or soft, e.g.
            a teacher's probabilities; differentiable).
        smoothing: epsilon in [0, 1]. A Python float is a compile-time constant; a jax
            scalar (for example a traced argument of a jitted step) is a runtime input,
            so an epsilon schedule does not recompile. Differentiable when an array. May
            also be one epsilon per position (the labels' shape, or broadcastable to it:
            ``lsr.smooth_ce``), traced too.
        prior: ``"uniform"`` (``u_k = 1/K``: optax, PyTorch, Keras; the true class gets
            ``1 - eps + eps/K``), ``"others"`` (eps spread over the K - 1 other classes:
            T5X, fairseq, cleverhans 2017), or a (K,) class distribution (may be traced).
        axis: the class axis of ``logits`` (-1, as in optax).
        ignore_index: integer labels equal to it get loss 0 and gradient 0 and leave the
            mean's denominator. Integer labels only.
        weight: per-class weights of shape (K,), PyTorch's semantics (see
            ``lsr.smooth_ce``); "mean" then divides by the sum of ``w_y`` over kept
            positions.
        where: optax-style boolean mask of the positions to keep, the logits' shape
            without ``axis``: masked positions get loss 0 and gradient 0 and leave the
            mean's denominator.
        reduction: ``"none"`` (the default: the positions' shape, as optax's losses
            return), ``"mean"`` (over kept positions) or ``"sum"``.
        kl: return ``KL(q' || p)`` (minimum 0, as T5X reports it); same gradient.
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position (PaLM, T5X).
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
        A jax array: 0-d for "mean" and "sum", else the positions' shape. With
        ``return_aux=True``, ``(loss, aux)`` (``lsr.Aux``, zero tangents).

    Raises:
        TypeError, ValueError: as ``lsr.smooth_ce``, at trace time for shapes, dtypes and
            options. Value checks (labels in range, smoothing in [0, 1], the prior summing
            to 1) need concrete arrays; under ``jax.jit``/``vmap`` an out-of-range label
            makes its loss, every reduction over it and the gradient NaN instead.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lsr.jax import smooth_ce
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> labels = jnp.array([0, 1])
        >>> smooth_ce(logits, labels).shape  # one loss per example, as optax
        (2,)
        >>> mean_loss = lambda z, y: smooth_ce(z, y, reduction="mean")
        >>> loss, grad = jax.jit(jax.value_and_grad(mean_loss))(logits, labels)
        >>> print(f"{loss:.4f}", grad.shape)
        0.5047 (2, 3)

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
        Müller et al. 2019, "When Does Label Smoothing Help?".
    """
    logits, labels = as_jax(logits, "logits"), as_jax(labels)
    weight, where = as_jax(weight, "weight"), as_jax(where, "where")
    smoothing, prior = as_scalar(smoothing), as_prior(prior)
    given_dtype = logits.dtype  # (the pass's namespace depends on it: pass_namespace)
    # Concrete arrays (closed over by a jitted function, say) are checked by value even
    # while a caller is being traced: without this, comparisons on them would be staged
    # into the program and could not be read. Tracers still skip the value checks.
    with jax.ensure_compile_time_eval():
        _, logits, labels, spec = prepare_smooth_ce(
            logits,
            labels,
            smoothing=smoothing,
            prior=prior,
            axis=axis,
            ignore_index=ignore_index,
            weight=weight,
            where=where,
            reduction=reduction,
            kl=kl,
            z_loss=z_loss,
            softcap=softcap,
            confidence_penalty=confidence_penalty,
            return_aux=return_aux,
            causal_shift=causal_shift,
        )
    namespace = pass_namespace(given_dtype, logits.ndim, spec.axis, spec.num_classes)
    return _smooth_ce_compiled(logits, labels, spec, namespace)


# Called eagerly, the core's ops would be dispatched one by one, each compiled on its
# own (the gradient pass's variadic reduction, ``_namespace.sum_and_sum_exp``, anew on
# every call: 100 ms for an 8 x 4 input, measured before ``pass_namespace`` sent float32
# 8 x 4 logits to two plain sums). Compiled once per shape, static options and namespace
# instead; inside a caller's ``jit``, ``grad`` or ``vmap`` this is an inner call that
# XLA inlines.
_smooth_ce_compiled = jax.jit(_smooth_ce, static_argnums=3)


def smooth_labels(
    labels: Any,
    num_classes: int | None = None,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    dtype: Any = None,
) -> jax.Array:
    r"""Dense smoothed targets ``q' = (1 - smoothing) q + smoothing u`` as a jax array.

    ``lsr.smooth_labels`` for jax array-likes. For one-hot ``labels`` and
    ``prior="uniform"`` this is ``optax.smooth_labels(labels, smoothing)``. Prefer passing
    integer labels straight to ``smooth_ce``, which never builds these N x K targets.

    Args:
        labels: integer class ids (then ``num_classes`` is required and the class axis is
            inserted at ``axis`` of the result), or dense floating targets.
        num_classes: K, for integer labels.
        smoothing: epsilon in [0, 1] (a Python float or a jax array, may be traced): one
            value, or one per position as in ``lsr.smooth_labels``.
        prior: ``"uniform"``, ``"others"`` or a (K,) class distribution.
        axis: the class axis (of the result).
        dtype: the result's floating dtype; default: the dense labels' dtype, or JAX's
            default float for integer labels.

    Returns:
        The smoothed targets: ``labels.shape`` with K inserted at ``axis`` for integer
        labels, else ``labels.shape``.

    Example:
        >>> import jax.numpy as jnp
        >>> from lsr.jax import smooth_labels
        >>> print(smooth_labels(jnp.array([1]), 4, smoothing=0.2, prior="others"))
        [[0.06666667 0.8        0.06666667 0.06666667]]
    """
    # Values of concrete arrays are checked even while a caller is traced (see smooth_ce);
    # targets built from concrete inputs alone are then constants of the traced program.
    with jax.ensure_compile_time_eval():
        return _functions.smooth_labels(
            as_jax(labels),
            num_classes,
            smoothing=as_scalar(smoothing),
            prior=as_prior(prior),
            axis=axis,
            dtype=dtype,
        )


def estimate_prior(
    labels: Any,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    pseudocount: float = 0.0,
    dtype: Any = None,
) -> jax.Array:
    """The class distribution of integer ``labels``, for ``prior=`` (``lsr.estimate_prior``).

    Example:
        >>> import jax.numpy as jnp
        >>> from lsr.jax import estimate_prior
        >>> print(estimate_prior(jnp.array([0, 0, 1, 2]), 3))
        [0.5  0.25 0.25]
    """
    with jax.ensure_compile_time_eval():  # value checks on concrete labels, as above
        return _functions.estimate_prior(
            as_jax(labels),
            num_classes,
            ignore_index=ignore_index,
            pseudocount=pseudocount,
            dtype=dtype,
        )


def distill_loss(
    student_logits: Any,
    teacher_logits: Any,
    *,
    temperature: Any,
    axis: int = -1,
    reduction: str = "none",
    where: Any = None,
    kl: bool = False,
) -> jax.Array:
    """Hinton et al. (2015) distillation loss, ``T**2`` times the soft-target cross-entropy.

    ``lsr.distill_loss`` on jax arrays; the teacher's logits pass through
    ``jax.lax.stop_gradient``, so only the student receives gradients. See
    ``lsr.distill_loss``. As ``smooth_ce`` (and optax's losses), one loss per position
    by default (``reduction="none"``); ``"mean"`` and ``"sum"`` reduce.

    Example:
        >>> import jax.numpy as jnp
        >>> import lsr.jax
        >>> student = jnp.array([[1.0, 2.0, 0.5]])
        >>> teacher = jnp.array([[2.0, 1.0, 0.0]])
        >>> loss = lsr.jax.distill_loss(student, teacher, temperature=2.0, kl=True)
        >>> loss.shape, round(float(loss[0]), 6)
        ((1,), 0.418517)
    """
    return _distill.distill_loss(
        as_jax(student_logits),
        jax.lax.stop_gradient(as_jax(teacher_logits)),
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=as_jax(where),
        kl=kl,
    )

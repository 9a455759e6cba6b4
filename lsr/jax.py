"""JAX adapter: ``from lsr.jax import smooth_ce``.

The core's definition (``lsr._core``) as an idiomatic JAX function: jax array-likes in
(Python lists and NumPy arrays become jax arrays), jax arrays out, keyword-only options as
in optax, and an optax-style ``where`` mask of positions.

Differentiation: ``smooth_ce`` is a ``jax.custom_jvp`` whose rule is the core's closed-form
logits gradient, ``<smooth_ce_grad(z), dz>`` (``lsr._core.smooth_ce_grad``, from the logits
and one logsumexp per position). One rule serves both modes: reverse mode
(``jax.grad``, ``value_and_grad``) comes from JAX transposing that linear map, and forward
mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) uses it directly; the rule itself is
plain ``jax.numpy`` code, so it is differentiable again (Hessians). Under ``jax.jit`` the
loss and its gradient compile to one XLA computation that keeps one logits-sized array for
the backward pass, where differentiating the core's operations one by one keeps several
(measured in the README). Derivatives with respect to dense ``labels``, ``weight``, an
array ``prior`` and an array ``smoothing`` are supported too (distillation, learned
priors, sensitivity to epsilon): they are computed by differentiating the core's forward
pass in those arguments only, and only when they are asked for.

Sharding: the core uses only reductions over the class axis, an elementwise select and a
gather along it, so jitted ``smooth_ce`` on logits sharded along the batch axis, the class
axis or both (``NamedSharding``) compiles to partial reductions plus all-reduces of
per-position values, never an all-gather of the logits (checked on the compiled HLO in
``tests/distributed``). For code written per device with ``jax.shard_map``,
``vocab_parallel_smooth_ce`` does the same by hand with named-axis collectives.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from lsr import _core, _distill, _functions, _linear
from lsr._checks import prepare_linear_smooth_ce, prepare_smooth_ce
from lsr._jax_vocab_parallel import vocab_parallel_smooth_ce

__all__ = [
    "distill_loss",
    "estimate_prior",
    "linear_smooth_ce",
    "smooth_ce",
    "smooth_labels",
    "vocab_parallel_smooth_ce",
]


def _as_jax(x: Any, name: str = "labels") -> Any:
    """``x`` as a jax array (tracers pass through); ``None`` stays ``None``.

    Without x64, JAX stores 64-bit integers as int32 and silently wraps larger values
    (2**32 + 1 becomes 1, a real class id): such values are refused here, where they can
    still be read. (A jax array that already wrapped them cannot be told apart.)
    """
    if x is None or isinstance(x, jax.Array):
        return x
    if not jax.config.jax_enable_x64:
        values = np.asarray(x)
        if values.dtype.kind in "iu" and values.dtype.itemsize > 4 and values.size:
            low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
            if int(values.min()) < low or int(values.max()) > high:
                raise ValueError(
                    f"`{name}` holds integers outside int32, which JAX without x64 would "
                    "wrap into other values (2**32 + 1 becomes 1); enable "
                    "`jax.config.update('jax_enable_x64', True)` or map the ids into int32 "
                    f"first. Received: {name} with min={int(values.min())}, "
                    f"max={int(values.max())}"
                )
    return jnp.asarray(x)


def _as_jax_scalar(smoothing: Any) -> Any:
    """A Python number stays static (folded into the program); anything else is an array.

    A traced or array ``smoothing`` is a runtime input, so a schedule of epsilon runs in one
    compiled program.
    """
    if isinstance(smoothing, numbers.Real) and not isinstance(smoothing, bool):
        return float(smoothing)
    return smoothing if isinstance(smoothing, bool) else _as_jax(smoothing)


def _as_jax_prior(prior: Any) -> Any:
    return prior if isinstance(prior, str) else _as_jax(prior)


def _sum_and_sum_exp(x: Any, /, *, axis: int) -> tuple[Any, Any]:
    """``(sum(x), sum(exp(x)))`` over ``axis`` (the second with the axis kept), as one
    variadic reduction.

    The core sums the max-shifted logits (for large logits' accuracy). Two plain sums
    over ``x`` would make XLA's CPU backend store ``x``, a logits-sized temporary; a
    variadic reduce fuses its producer instead, and reads the logits once.
    """
    zero = jnp.zeros((), x.dtype)
    total, total_exp = jax.lax.reduce(
        (x, jnp.exp(x)), (zero, zero), lambda a, b: (a[0] + b[0], a[1] + b[1]), (axis,)
    )
    return total, jnp.expand_dims(total_exp, axis)


class _Namespace:
    """``jax.numpy`` plus the core's optional ``sum_and_sum_exp`` (see above)."""

    sum_and_sum_exp = staticmethod(_sum_and_sum_exp)

    def __getattr__(self, name: str) -> Any:
        return getattr(jnp, name)


_xp = _Namespace()


def _flatten_spec(spec: _core.Spec) -> tuple[tuple[Any, ...], _core.Spec]:
    return spec.arrays(), spec.static()


def _unflatten_spec(static: _core.Spec, arrays: tuple[Any, ...]) -> _core.Spec:
    return static.with_arrays(tuple(arrays))


# The options object is a pytree: its arrays (an array smoothing or prior, the class
# weights, the mask) are leaves that JAX traces and differentiates; everything else is
# hashable auxiliary data, part of the compiled program.
jax.tree_util.register_pytree_node(_core.Spec, _flatten_spec, _unflatten_spec)


@jax.custom_jvp
def _smooth_ce(logits: Any, labels: Any, spec: _core.Spec) -> Any:
    loss, _, _ = _core.smooth_ce(logits, labels, spec, xp=_xp)
    return loss


def _is_zero(tangent: Any) -> bool:
    """Whether a tangent is JAX's symbolic zero (nothing asked for that argument)."""
    return all(isinstance(leaf, SymbolicZero) for leaf in jax.tree_util.tree_leaves(tangent))


# The arguments besides the logits that may carry tangents (integer labels and boolean
# masks never have any).
_DIFFERENTIABLE = ("smoothing", "prior", "weight")


@functools.partial(_smooth_ce.defjvp, symbolic_zeros=True)
def _smooth_ce_jvp(primals, tangents):
    logits, labels, spec = primals
    logits_dot, labels_dot, spec_dot = tangents
    if _is_zero(logits_dot):
        loss, _, _ = _core.smooth_ce(logits, labels, spec, xp=_xp)
        tangent_out = jnp.zeros_like(loss)
    else:
        # The loss and the core's closed-form gradient in one pass (one exp of the
        # logits: XLA's CPU reductions do not vectorize an exp fused into them, which
        # made a separate logsumexp twice as slow at K = 128000), with a unit cotangent
        # per reduced value: for "none" the row of position i is d loss_i / d z_i, else
        # d loss / d z. Reverse mode keeps that gradient as its residual.
        loss, grad = _core.reduced_loss_and_grad(logits, labels, spec, xp=_xp)
        summed_axes = spec.axis if spec.reduction == "none" else None
        tangent_out = jnp.sum(grad * logits_dot, axis=summed_axes)

    # Dense labels, weight, an array prior and an array smoothing: differentiate the core's
    # forward pass in just the arguments whose tangents are not zero.
    others = {"labels": (labels, labels_dot)} if spec.dense else {}
    for name in _DIFFERENTIABLE:
        value = getattr(spec, name)
        if value is not None and not isinstance(value, (float, str)):
            others[name] = (value, getattr(spec_dot, name))
    asked = {name: pair for name, pair in others.items() if not _is_zero(pair[1])}
    if asked:

        def loss_of(values):
            values = dict(values)
            targets = values.pop("labels", labels)
            return _core.smooth_ce(logits, targets, spec.replace(**values), xp=_xp)[0]

        _, extra = jax.jvp(
            loss_of,
            ({name: value for name, (value, _) in asked.items()},),
            ({name: tangent for name, (_, tangent) in asked.items()},),
        )
        tangent_out = tangent_out + extra
    return loss, tangent_out


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
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy ``H(q', softmax(logits))`` for JAX.

    ``q' = (1 - smoothing) q + smoothing u``, with ``q`` the one-hot (or given dense)
    target and ``u`` the distribution named by ``prior`` (Szegedy et al. 2016). The same
    definition and numbers as ``lsr.smooth_ce``; for integer labels no N x K target is
    built. Works under ``jax.jit``, ``grad``/``value_and_grad``, ``vmap``, ``jvp``,
    ``jacfwd`` and ``hessian``, and on sharded arrays.

    Args:
        logits: unnormalized scores, shape ``(..., K, ...)`` with the K classes on
            ``axis``; any jax array-like. float16/bfloat16 are computed (and returned)
            in float32.
        labels: integer class ids, the logits' shape without ``axis`` (any integer
            dtype), or dense floating targets of the logits' shape (one-hot or soft, e.g.
            a teacher's probabilities; differentiable).
        smoothing: epsilon in [0, 1]. A Python float is a compile-time constant; a jax
            scalar (for example a traced argument of a jitted step) is a runtime input,
            so an epsilon schedule does not recompile. Differentiable when an array.
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
        reduction: ``"mean"`` (over kept positions), ``"sum"``, or ``"none"`` (the
            positions' shape, as optax's losses return).
        kl: return ``KL(q' || p)`` (minimum 0, as T5X reports it); same gradient.
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position (PaLM, T5X).

    Returns:
        A jax array: 0-d for "mean" and "sum", else the positions' shape.

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
        >>> loss, grad = jax.jit(jax.value_and_grad(smooth_ce))(logits, labels)
        >>> print(f"{loss:.4f}", grad.shape)
        0.5047 (2, 3)

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
        Müller et al. 2019, "When Does Label Smoothing Help?".
    """
    logits, labels = _as_jax(logits, "logits"), _as_jax(labels)
    weight, where = _as_jax(weight, "weight"), _as_jax(where, "where")
    smoothing, prior = _as_jax_scalar(smoothing), _as_jax_prior(prior)
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
        )
    return _smooth_ce(logits, labels, spec)


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
        smoothing: epsilon in [0, 1] (a Python float or a jax scalar, may be traced).
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
            _as_jax(labels),
            num_classes,
            smoothing=_as_jax_scalar(smoothing),
            prior=_as_jax_prior(prior),
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
            _as_jax(labels),
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
    reduction: str = "mean",
    where: Any = None,
    kl: bool = False,
) -> jax.Array:
    """Hinton et al. (2015) distillation loss, ``T**2`` times the soft-target cross-entropy.

    ``lsr.distill_loss`` on jax arrays; the teacher's logits pass through
    ``jax.lax.stop_gradient``, so only the student receives gradients. See
    ``lsr.distill_loss``.

    Example:
        >>> import jax.numpy as jnp
        >>> import lsr.jax
        >>> student = jnp.array([[1.0, 2.0, 0.5]])
        >>> teacher = jnp.array([[2.0, 1.0, 0.0]])
        >>> loss = lsr.jax.distill_loss(student, teacher, temperature=2.0, kl=True)
        >>> round(float(loss), 6)
        0.418517
    """
    return _distill.distill_loss(
        _as_jax(student_logits),
        jax.lax.stop_gradient(_as_jax(teacher_logits)),
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=_as_jax(where),
        kl=kl,
    )


def _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, with_grad, cotangent=None):
    """``_linear.scanned_linear_smooth_ce``, one block at a time in a ``lax.scan``."""
    return _linear.scanned_linear_smooth_ce(
        hidden,
        kernel,
        bias,
        labels,
        xp=jnp,
        spec=spec,
        chunk_size=chunk_size,
        with_grad=with_grad,
        scan=jax.lax.scan,
        cotangent=cotangent,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear_smooth_ce(chunk_size, hidden, kernel, bias, labels, spec):
    loss, _ = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, False)
    return loss


def _linear_smooth_ce_fwd(chunk_size, hidden, kernel, bias, labels, spec):
    if spec.reduction == "none":
        # Each position's cotangent is known only in the backward pass, which recomputes.
        loss, _ = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, False)
        return loss, (None, (hidden, kernel, bias, labels, spec))
    loss, grads = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, True)
    return loss, (grads, (None, None, None, labels, spec))


def _linear_smooth_ce_bwd(chunk_size, residuals, cotangent):
    grads, (hidden, kernel, bias, labels, spec) = residuals
    if grads is None:
        _, grads = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, True, cotangent)
    else:
        grads = tuple(None if g is None else g * cotangent.astype(g.dtype) for g in grads)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, spec)
    labels_cotangent = (
        jnp.zeros_like(labels) if spec.dense else np.zeros(labels.shape, dtype=jax.dtypes.float0)
    )
    return (*grads, labels_cotangent, zeros)


_linear_smooth_ce.defvjp(_linear_smooth_ce_fwd, _linear_smooth_ce_bwd)


def linear_smooth_ce(
    hidden: Any,
    kernel: Any,
    labels: Any,
    *,
    bias: Any = None,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    ignore_index: int | None = None,
    weight: Any = None,
    where: Any = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
    chunk_size: int | None = None,
) -> jax.Array:
    r"""``smooth_ce(hidden @ kernel + bias, labels)`` without the N x K logits.

    For large vocabularies the output layer's logits are the largest arrays of a step.
    This computes the same loss, and under ``jax.grad`` the gradients for ``hidden``,
    ``kernel`` and ``bias``, over blocks of ``chunk_size`` rows, so that only one block of
    logits is alive at a time (a ``jax.custom_vjp``: for "mean" and "sum" the gradients
    are made in the forward pass and scaled by the cotangent; for "none" the backward
    pass recomputes the blocks).

    Args:
        hidden: (..., d) hidden states (flattened to (N, d)).
        kernel: (d, K), as ``flax.linen.Dense``'s kernel.
        labels: integer class ids of hidden's leading shape, or dense targets (..., K).
        bias: (K,) or None.
        smoothing, prior, ignore_index, weight, where, reduction, kl, z_loss: as
            ``smooth_ce`` with the class axis last.
        chunk_size: rows per block; by default as many as make 16 Mi logits. Under
            ``jax.jit`` the blocks are unrolled into the program.

    Returns:
        As ``smooth_ce``; for "none", one loss per row of hidden's leading shape.
        Gradients flow to ``hidden``, ``kernel`` and ``bias`` only (first order).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lsr.jax import linear_smooth_ce, smooth_ce
        >>> hidden = jax.random.normal(jax.random.key(0), (6, 4))
        >>> kernel = jax.random.normal(jax.random.key(1), (4, 10))
        >>> labels = jnp.array([1, 0, 9, 3, 3, 2])
        >>> fused = linear_smooth_ce(hidden, kernel, labels, chunk_size=4)
        >>> bool(jnp.allclose(fused, smooth_ce(hidden @ kernel, labels)))
        True
    """
    hidden, kernel, labels = _as_jax(hidden), _as_jax(kernel), _as_jax(labels)
    bias, weight, where = _as_jax(bias), _as_jax(weight), _as_jax(where)
    smoothing, prior = _as_jax_scalar(smoothing), _as_jax_prior(prior)
    if hidden.ndim < 1:
        raise ValueError(
            f"`hidden` must have shape (..., d). Received: hidden.shape={hidden.shape}"
        )
    dense = jnp.issubdtype(labels.dtype, jnp.floating)
    leading = hidden.shape[:-1]
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1, labels.shape[-1]) if dense else labels.reshape(-1)
    flat_where = None if where is None else where.reshape(-1)
    with jax.ensure_compile_time_eval():
        _, flat_labels, spec = prepare_linear_smooth_ce(
            flat_hidden,
            kernel,
            flat_labels,
            bias=bias,
            smoothing=smoothing,
            prior=prior,
            ignore_index=ignore_index,
            weight=weight,
            where=flat_where,
            reduction=reduction,
            kl=kl,
            z_loss=z_loss,
            chunk_size=chunk_size,
            projection_name="kernel",
        )
    loss = _linear_smooth_ce(chunk_size, flat_hidden, kernel, bias, flat_labels, spec)
    return loss.reshape(leading) if reduction == "none" else loss

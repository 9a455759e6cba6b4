"""``linear_smooth_ce``: the output layer and the loss in blocks, as a ``jax.custom_vjp``.

The blocks are ``lsr._linear.scanned_linear_smooth_ce`` (the core's ``loss_and_grad`` per
block of rows) run in a ``jax.lax.scan``; this module only registers the gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsr._aux import Aux as lsr_aux
from lsr._aux import as_aux
from lsr._checks import prepare_linear_smooth_ce
from lsr._linear import scanned_linear_smooth_ce
from lsr.jax._namespace import as_jax, as_prior, as_scalar

__all__ = ["linear_smooth_ce"]


def _linear_loss(
    chunk_size, hidden, kernel, bias, labels, spec, with_grad, cotangent=None, aux=None
):
    """``lsr._linear.scanned_linear_smooth_ce``, one block at a time in a ``lax.scan``."""
    return scanned_linear_smooth_ce(
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
        aux=aux,
        cond=jax.lax.cond,
        set_rows=_set_rows,
    )


def _set_rows(out, index, values):
    """``out`` with ``values`` at the rows ``index`` (an index past the end dropped);
    in place inside the compiled loop."""
    return out.at[index].set(values, mode="drop")


def _with_aux(loss, aux, spec):
    """The loss, or ``(loss, Aux)`` when the call asked for the auxiliary outputs."""
    return (loss, as_aux(aux)) if spec.aux else loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear_smooth_ce(chunk_size, hidden, kernel, bias, labels, spec):
    aux = {}
    loss, _ = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, False, aux=aux)
    return _with_aux(loss, aux, spec)


def _linear_smooth_ce_fwd(chunk_size, hidden, kernel, bias, labels, spec):
    aux = {}
    if spec.reduction == "none":
        # Each position's cotangent is known only in the backward pass, which recomputes.
        loss, _ = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, False, aux=aux)
        return _with_aux(loss, aux, spec), (None, (hidden, kernel, bias, labels, spec))
    loss, grads = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, True, aux=aux)
    return _with_aux(loss, aux, spec), (grads, (None, None, None, labels, spec))


def _linear_smooth_ce_bwd(chunk_size, residuals, cotangent):
    grads, (hidden, kernel, bias, labels, spec) = residuals
    if spec.aux:
        cotangent, _ = cotangent  # (the auxiliary outputs are metrics: no gradient)
    if grads is None:
        _, grads = _linear_loss(chunk_size, hidden, kernel, bias, labels, spec, True, cotangent)
    else:
        grads = tuple(None if g is None else g * cotangent.astype(g.dtype) for g in grads)
    # The fused loss differentiates the hidden states, kernel and bias only. Asked for
    # the gradient of an option array (an array smoothing, prior or class weights), it
    # answers NaN rather than a plausible 0; an option nobody differentiates drops it.
    options = jax.tree_util.tree_map(_not_differentiated, spec)
    labels_cotangent = (
        jnp.zeros_like(labels) if spec.dense else np.zeros(labels.shape, dtype=jax.dtypes.float0)
    )
    return (*grads, labels_cotangent, options)


def _not_differentiated(x):
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.full_like(x, jnp.nan)
    return jnp.zeros_like(x)


_linear_smooth_ce.defvjp(_linear_smooth_ce_fwd, _linear_smooth_ce_bwd)

# Called eagerly, the scan would be traced and compiled anew on every call (its body is a
# new closure each time); compiled once per shape, block size and static options
# instead, and inlined into a caller's own ``jit``.
_linear_smooth_ce_compiled = jax.jit(_linear_smooth_ce, static_argnums=0)


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
    reduction: str = "none",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
    chunk_size: int | None = None,
) -> Any:
    r"""``smooth_ce(hidden @ kernel + bias, labels)`` without the N x K logits.

    For large vocabularies the output layer's logits are the largest arrays of a step.
    This computes the same loss, and under ``jax.grad`` the gradients for ``hidden``,
    ``kernel`` and ``bias``, over blocks of ``chunk_size`` rows, so that only one block of
    logits is alive at a time (a ``jax.custom_vjp``: for "mean" and "sum" the gradients
    are made in the forward pass and scaled by the cotangent; for "none" the backward
    pass recomputes the blocks).

    The default is ``reduction="none"``, as ``smooth_ce`` and optax's losses, so that
    it replaces ``smooth_ce(hidden @ kernel, labels)`` with the same result. A training
    loss that is a plain mean or sum should say ``reduction="mean"`` (or ``"sum"``): then
    the backward pass does not recompute the blocks.

    Args:
        hidden: (..., d) hidden states (flattened to (N, d)).
        kernel: (d, K), as ``flax.linen.Dense``'s kernel.
        labels: integer class ids of hidden's leading shape, or dense targets (..., K).
        bias: (K,) or None.
        smoothing, prior, ignore_index, weight, where, reduction, kl, z_loss: as
            ``smooth_ce`` with the class axis last (``reduction`` defaults to "none").
            ``smoothing`` may be one epsilon per position of hidden's leading shape (or
            broadcastable to it); it stays with its position under ``causal_shift``, as
            ``where`` does (position t's epsilon smooths the label of t + 1).
        causal_shift: next-token prediction: the hidden state at position t is
            scored against the label at t + 1 along the labels' last axis (the
            sequence); each sequence's last position is left out, and (PyTorch) never
            projected. Only the labels are shifted: the hidden states are not copied.
            Give the (batch, sequence) layout: flattened rows are one sequence.
        chunk_size: rows per block; by default as many as make 16 Mi logits. Under
            ``jax.jit`` the blocks are unrolled into the program.

    Returns:
        As ``smooth_ce``; for "none", one loss per row of hidden's leading shape.
        With ``return_aux=True``, ``(loss, aux)`` as ``smooth_ce``.
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
    hidden, kernel, labels = as_jax(hidden), as_jax(kernel), as_jax(labels)
    bias, weight, where = as_jax(bias), as_jax(weight), as_jax(where)
    smoothing, prior = as_scalar(smoothing), as_prior(prior)
    with jax.ensure_compile_time_eval():
        _, flat_hidden, flat_labels, spec, leading = prepare_linear_smooth_ce(
            hidden,
            kernel,
            labels,
            bias=bias,
            smoothing=smoothing,
            prior=prior,
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
            chunk_size=chunk_size,
            projection_name="kernel",
        )
    loss = _linear_smooth_ce_compiled(chunk_size, flat_hidden, kernel, bias, flat_labels, spec)
    if not spec.aux:
        return loss.reshape(leading) if reduction == "none" else loss
    loss, aux = loss
    if reduction == "none":
        loss, aux = loss.reshape(leading), lsr_aux(*(value.reshape(leading) for value in aux))
    return loss, lsr_aux(*(jax.lax.stop_gradient(value) for value in aux))

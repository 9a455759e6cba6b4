"""``linear_smooth_ce`` on tf.Tensors: the output layer and the loss in blocks of rows in a
``tf.while_loop``, with a ``tf.custom_gradient`` (the blocks are
``lsr._linear.scanned_linear_smooth_ce``, the core's ``loss_and_grad`` per block)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from lsr import _core
from lsr._aux import as_aux
from lsr._checks import prepare_linear_smooth_ce
from lsr._linear import scanned_linear_smooth_ce
from lsr.tensorflow._gradients import (
    OPTIONS_WITH_GRADIENTS,
    argument_gradients,
    differentiable_arguments,
    first_order_only,
    refuse_forward_mode,
    stop_recording,
    with_arguments,
)
from lsr.tensorflow._inputs import (
    as_option,
    as_optional_tensor,
    as_prior,
    as_tensor,
    check_class_axis,
)

__all__ = ["linear_smooth_ce"]


def _scan(body: Any, init: Any, xs: dict[str, Any]) -> Any:
    """``jax.lax.scan``'s contract on a ``tf.while_loop``: one block at a time in graphs
    and under XLA (where unrolled blocks would be scheduled side by side)."""
    blocks = next(v for v in xs.values() if v is not None).shape[0]

    def element(i):
        return {name: None if v is None else v[i] for name, v in xs.items()}

    # The first block runs before the loop: it fixes the outputs' dtypes and shapes.
    carry, (first_rows, d_hidden) = body(init, element(0))
    losses = {
        name: tf.TensorArray(value.dtype, size=blocks, element_shape=value.shape).write(0, value)
        for name, value in first_rows.items()
    }
    rows = ()
    if d_hidden is not None:
        rows = tf.TensorArray(d_hidden.dtype, size=blocks, element_shape=d_hidden.shape)
        rows = rows.write(0, d_hidden)
    # while_loop carries tensors only: None entries of the carry stay outside it.
    present = () if carry is None else tuple(c is not None for c in carry)

    def pack(carry):
        return () if carry is None else tuple(c for c in carry if c is not None)

    def unpack(packed):
        if carry is None:
            return None
        values = iter(packed)
        return tuple(next(values) if here else None for here in present)

    def step(i, packed, losses, rows):
        new_carry, (block_rows, d_hidden) = body(unpack(packed), element(i))
        losses = {name: losses[name].write(i, value) for name, value in block_rows.items()}
        if d_hidden is not None:
            rows = rows.write(i, d_hidden)
        return i + 1, pack(new_carry), losses, rows

    # A known trip count also lets XLA differentiate the loop (``linear_smooth_ce``'s
    # gradients with respect to labels and options run autodiff through it).
    _, packed, losses, rows = tf.while_loop(
        lambda i, *_: i < blocks,
        step,
        (tf.constant(1), pack(carry), losses, rows),
        maximum_iterations=blocks - 1,
    )
    stacked = {name: value.stack() for name, value in losses.items()}
    return unpack(packed), (stacked, None if rows == () else rows.stack())


@tf.autograph.experimental.do_not_convert
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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
    chunk_size: int | None = None,
) -> Any:
    r"""``smooth_ce(hidden @ kernel + bias, labels)`` without the N x K logits.

    The loss and its gradients for ``hidden``, ``kernel`` and ``bias`` are computed over
    blocks of ``chunk_size`` rows in a ``tf.while_loop`` (a ``tf.custom_gradient``), so
    that the full logits of a large-vocabulary output layer never exist, also under XLA.
    For "mean" and "sum" the gradients are made in the forward pass and scaled by the
    cotangent in the backward pass; for "none" the backward pass recomputes the blocks
    with each row's cotangent.

    Args:
        hidden: (..., d) hidden states with a known number of rows (flattened to (N, d)).
        kernel: (d, K), as ``keras.layers.Dense``'s kernel.
        labels: integer class ids of hidden's leading shape, or dense targets (..., K).
        bias: (K,) or None.
        smoothing, prior, ignore_index, weight, where, reduction, kl, z_loss: as
            ``smooth_ce`` with the class axis last.
            ``smoothing`` may be one epsilon per position of hidden's leading shape (or
            broadcastable to it); it stays with its position under ``causal_shift``, as
            ``where`` does (position t's epsilon smooths the label of t + 1).
        causal_shift: next-token prediction: the hidden state at position t is
            scored against the label at t + 1 along the labels' last axis (the
            sequence); each sequence's last position is left out, and (PyTorch) never
            projected. Only the labels are shifted: the hidden states are not copied.
            Give the (batch, sequence) layout: flattened rows are one sequence.
        chunk_size: rows per block; by default as many as make 16 Mi logits.

    Returns:
        As ``smooth_ce``; for "none", one loss per row of hidden's leading shape.
        With ``return_aux=True``, ``(loss, aux)`` as ``smooth_ce``.
        Gradients reach ``hidden``, ``kernel`` and ``bias`` (first order only).

    Example:
        >>> import tensorflow as tf
        >>> import lsr.tensorflow
        >>> hidden = tf.random.stateless_normal((6, 4), seed=(0, 1))
        >>> kernel = tf.random.stateless_normal((4, 10), seed=(2, 3))
        >>> labels = tf.constant([1, 0, 9, 3, 3, 2])
        >>> fused = lsr.tensorflow.linear_smooth_ce(hidden, kernel, labels, chunk_size=4)
        >>> plain = lsr.tensorflow.smooth_ce(hidden @ kernel, labels)
        >>> print(f"{float(tf.abs(fused - plain)) < 1e-5}")
        True
    """
    hidden = as_tensor("hidden", hidden)
    kernel = as_tensor("kernel", kernel)
    labels = as_tensor("labels", labels)
    bias = as_optional_tensor("bias", bias)
    where = as_optional_tensor("where", where)
    if hidden.shape.rank < 1 or not hidden.shape.is_fully_defined():
        raise ValueError(
            "`hidden` must have shape (..., d) with every dimension known (the blocks of "
            "rows are laid out when the function is traced). Received: "
            f"hidden.shape={hidden.shape}"
        )
    if kernel.shape.rank == 2:
        check_class_axis("kernel", kernel, 1)
    xp, flat_hidden, flat_labels, spec, leading = prepare_linear_smooth_ce(
        hidden,
        kernel,
        labels,
        bias=bias,
        smoothing=as_option("smoothing", smoothing),
        prior=as_prior(prior),
        ignore_index=ignore_index,
        weight=as_optional_tensor("weight", weight),
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
    refuse_forward_mode(
        flat_hidden,
        kernel,
        bias,
        flat_labels,
        *(getattr(spec, name) for name in OPTIONS_WITH_GRADIENTS),
    )
    arguments = differentiable_arguments(flat_labels, spec)
    names = tuple(arguments)
    has_bias = bias is not None

    aux: dict[str, Any] = {}

    def run(h, k, b, y, call, with_grad, cotangent=None, aux=None):
        return scanned_linear_smooth_ce(
            h,
            k,
            b,
            y,
            xp=xp,
            spec=call,
            chunk_size=chunk_size,
            with_grad=with_grad,
            scan=_scan,
            cotangent=cotangent,
            aux=aux,
        )

    @tf.custom_gradient
    def forward(h, k, *rest):
        b = rest[0] if has_bias else None
        values = rest[1:] if has_bias else rest
        y, call = with_arguments(flat_labels, spec, names, values)
        # Recorded, the blocks would all stay alive on the tape (see smooth_ce).
        with stop_recording():
            loss, grads = run(h, k, b, y, call, with_grad=reduction != "none", aux=aux)

        def backward(upstream):
            if grads is None:
                dtype = _core.compute_dtype(xp, h.dtype)
                _, computed = run(h, k, b, y, call, True, tf.cast(upstream, dtype))
            else:
                computed = [None if g is None else g * tf.cast(upstream, g.dtype) for g in grads]
            return [
                *(first_order_only(g) for g in computed if g is not None),
                *argument_gradients(
                    lambda labels, o: run(h, k, b, labels, o, with_grad=False)[0],
                    flat_labels,
                    spec,
                    names,
                    values,
                    upstream,
                ),
            ]

        return loss, backward

    loss = forward(flat_hidden, kernel, *([bias] if has_bias else []), *arguments.values())
    if reduction == "none":
        loss = tf.reshape(loss, leading)
        aux = {name: tf.reshape(value, leading) for name, value in aux.items()}
    # (Made where nothing is recorded, in the custom gradient's forward: no gradient.)
    return (loss, as_aux(aux, tf.stop_gradient)) if spec.aux else loss

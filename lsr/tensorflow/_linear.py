"""``linear_smooth_ce`` on tf.Tensors: the output layer and the loss in blocks of rows in a
``tf.while_loop``, with a ``tf.custom_gradient`` (the blocks are
``lsr._linear.scanned_linear_smooth_ce``, the core's ``loss_and_grad`` per block). With
``tf.cond`` and a scatter for ``set_rows``, the loop runs over the kept rows only (as
JAX's): a block with no kept row is skipped, so the work scales with the kept rows."""

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


def _present(tree: Any) -> tuple[list[Any], Any]:
    """``(the tensors of a nest, a function that rebuilds the nest from them)``: a
    ``tf.while_loop`` or ``tf.cond`` carries tensors only, so the nest's None entries (no
    bias, no gradients) stay outside it."""
    leaves = tf.nest.flatten(tree)
    here = [leaf is not None for leaf in leaves]

    def rebuild(tensors: Any) -> Any:
        values = iter(tensors)
        return tf.nest.pack_sequence_as(
            tree, [next(values) if present else None for present in here]
        )

    return [leaf for leaf in leaves if leaf is not None], rebuild


def _scan(body: Any, init: Any, xs: Any) -> Any:
    """``jax.lax.scan``'s contract on a ``tf.while_loop`` (``xs`` a tensor or a dict of
    tensors and None, stacked on a leading block axis; the carry and each step's outputs
    nests of tensors and None): one block at a time in graphs and under XLA (where
    unrolled blocks would be scheduled side by side)."""
    blocks = next(x for x in tf.nest.flatten(xs) if x is not None).shape[0]

    def element(i):
        return tf.nest.map_structure(lambda x: None if x is None else x[i], xs)

    # The first block runs before the loop: it fixes the outputs' dtypes and shapes.
    carry, first = body(init, element(0))
    outputs, rebuild_outputs = _present(first)
    arrays = [
        tf.TensorArray(value.dtype, size=blocks, element_shape=value.shape).write(0, value)
        for value in outputs
    ]
    packed, rebuild_carry = _present(carry)
    if blocks == 1:
        # (No loop: XLA cannot differentiate a while_loop of zero iterations, which the
        # gradients with respect to labels and options would ask of it.)
        return rebuild_carry(packed), rebuild_outputs([array.stack() for array in arrays])

    def step(i, packed, arrays):
        new_carry, out = body(rebuild_carry(packed), element(i))
        values = _present(out)[0]
        arrays = [array.write(i, value) for array, value in zip(arrays, values, strict=True)]
        return i + 1, _present(new_carry)[0], arrays

    # A known trip count also lets XLA differentiate the loop (``linear_smooth_ce``'s
    # gradients with respect to labels and options run autodiff through it).
    _, packed, arrays = tf.while_loop(
        lambda i, *_: i < blocks,
        step,
        (tf.constant(1), packed, arrays),
        maximum_iterations=blocks - 1,
    )
    return rebuild_carry(packed), rebuild_outputs([array.stack() for array in arrays])


def _cond(pred: Any, if_true: Any, if_false: Any, operand: Any) -> Any:
    """``jax.lax.cond``'s contract on ``tf.cond`` (outputs: a nest of tensors and None,
    the same structure from both branches); eagerly, only the branch taken runs."""
    structure: list[Any] = []

    def branch(function: Any) -> Any:
        def run() -> list[Any]:
            tensors, rebuild = _present(function(operand))
            structure.append(rebuild)
            return tensors

        return run

    tensors = tf.cond(pred, branch(if_true), branch(if_false))
    return structure[0](tensors)


def _set_rows(out: Any, index: Any, values: Any) -> Any:
    """``out`` with ``values`` at the rows ``index``, an index ``N`` (past the end)
    dropped, for ``lsr._linear``'s kept-rows loop, where every row of ``out`` is written
    at most once, into zeros: a scatter-add of the values (the dropped ones made 0, at
    row 0) equals the assignment there, and unlike ``tensor_scatter_nd_update`` it is
    defined for the repeated index and never reads past the end. Called once, after the
    loop (``rows_in_carry=False``): inside it, a carried tensor updated in a ``tf.cond``
    is copied whole on every block."""
    valid = index < tf.shape(out, out_type=index.dtype)[0]
    shape = tf.concat([tf.shape(valid), tf.ones([tf.rank(values) - 1], tf.int32)], 0)
    values = tf.where(tf.reshape(valid, shape), values, tf.zeros_like(values))
    safe = tf.where(valid, index, tf.zeros_like(index))
    return tf.tensor_scatter_nd_add(out, safe[:, None], values)


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
            cond=_cond,
            set_rows=_set_rows,
            rows_in_carry=False,
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

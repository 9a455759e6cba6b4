"""Linear layer + label-smoothed cross-entropy over blocks of rows, in array-API code.

For a large vocabulary the logits ``hidden @ projection`` (N x K) are the largest arrays
of a language model's step. This computes the loss and the gradients with respect to the
hidden states, the projection and the bias one block of rows at a time: each block's
logits are made, turned into their gradient by ``_core.loss_and_grad`` and contracted
back, so no more than one block of logits exists at once and peak memory no longer grows
with N x K (Liger-Kernel's fused linear cross-entropy does the same on GPUs).

The "mean" reduction is known before any block is seen (``_core.mean_denominator``), so
every block's gradient is final when it is made; adapters then only scale the gradients
by the incoming cotangent (a scalar), or, for ``reduction="none"``, recompute the blocks
with each position's cotangent as its scale.
"""

from __future__ import annotations

from typing import Any

from lsr import _core
from lsr._compat import device
from lsr._core import Spec
from lsr._typing import Array, DType, Namespace

# The logits of one block: 16 Mi elements (64 MiB in float32) by default; the matrix
# products then run at full speed and the block stays small next to N x K.
DEFAULT_BLOCK_ELEMENTS = 1 << 24


def block_rows(num_rows: int, num_classes: int, chunk_size: int | None) -> int:
    """Rows per block: ``chunk_size``, or as many as fit ``DEFAULT_BLOCK_ELEMENTS`` logits."""
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, num_classes))
    return max(1, min(chunk_size, num_rows))


def logits_block(
    hidden: Array,
    projection: Array,
    bias: Array | None,
    labels: Array,
    where: Array | None,
    scale: Any,
    *,
    xp: Namespace,
    spec: Spec,
    with_grad: bool,
) -> tuple[Array, Array | None]:
    """One block of rows: ``(loss per row, gradient of sum_i scale_i loss_i w.r.t. its
    logits)``, the gradient in ``hidden``'s dtype (None without ``with_grad``).

    ``hidden`` (B, d), ``projection`` (d, K), ``bias`` (K,) or None, ``labels`` (B,) class
    ids or (B, K) targets, ``where`` (B,) or None.
    """
    logits = xp.matmul(hidden, projection)
    if bias is not None:
        logits = logits + bias
    logits = _cast(xp, logits, _core.compute_dtype(xp, logits.dtype))
    # A namespace that writes arrays in place (the PyTorch adapter's) turns the block's
    # own logits into their gradient: one block-sized array instead of two.
    in_place = getattr(xp, "subtract_into", None) is not None
    loss, _, grad = _core.loss_and_grad(
        logits,
        labels,
        spec.replace(axis=1, where=where, reduction="none"),
        scale,
        xp=xp,
        with_grad=with_grad,
        out=logits if in_place else None,
    )
    return loss, None if grad is None else _cast(xp, grad, hidden.dtype)


def _cast(xp: Namespace, x: Array, dtype: DType) -> Array:
    return x if x.dtype == dtype else xp.astype(x, dtype)


def zero_grads(xp: Namespace, projection: Array, bias: Array | None) -> tuple[Array, Array | None]:
    """The accumulators of d projection and d bias, before the first block."""
    # zeros_like keeps a transposed view's layout in PyTorch (nn.Linear's weight is
    # (K, d)), so the gradient comes back in the parameter's own layout.
    zeros = xp.zeros_like(projection)
    return zeros, None if bias is None else xp.zeros_like(bias)


def block_step(
    carry: tuple[Array, Array | None],
    hidden: Array,
    labels: Array,
    where: Array | None,
    scale: Any,
    *,
    xp: Namespace,
    projection: Array,
    bias: Array | None,
    spec: Spec,
) -> tuple[tuple[Array, Array | None], Array, Array]:
    """One block of the backward-ready pass: ``(carry, loss per row, d hidden rows)``.

    ``carry`` holds the running ``(d projection, d bias)``, updated in place by
    namespaces that offer ``add_matmul(out, a, b)`` (an in-place ``out += a @ b``; the
    PyTorch adapter's does), so no (d, K) temporary is made per block.
    """
    loss, grad = logits_block(
        hidden, projection, bias, labels, where, scale, xp=xp, spec=spec, with_grad=True
    )
    grad_projection, grad_bias = carry
    hidden_t = xp.matrix_transpose(hidden)
    add_matmul = getattr(xp, "add_matmul", None)
    if add_matmul is not None:
        grad_projection = add_matmul(grad_projection, hidden_t, grad)
    else:
        grad_projection = grad_projection + xp.matmul(hidden_t, grad)
    if grad_bias is not None:
        grad_bias = grad_bias + xp.sum(grad, axis=0)
    d_hidden = xp.matmul(grad, xp.matrix_transpose(projection))
    return (grad_projection, grad_bias), loss, d_hidden


def python_scan(xp: Namespace) -> Any:
    """``jax.lax.scan``'s contract as a Python loop, for eager namespaces (block after
    block: nothing can schedule them side by side)."""

    def scan(body, init, xs):
        blocks = next(v for v in xs.values() if v is not None).shape[0]
        carry, losses, rows = init, [], []
        for i in range(blocks):
            carry, (loss, d_hidden) = body(
                carry, {name: None if v is None else v[i, ...] for name, v in xs.items()}
            )
            losses.append(loss)
            rows.append(d_hidden)
        return carry, (xp.stack(losses), None if rows[0] is None else xp.stack(rows))

    return scan


def linear_smooth_ce(
    hidden: Array,
    projection: Array,
    bias: Array | None,
    labels: Array,
    *,
    xp: Namespace,
    spec: Spec,
    chunk_size: int | None,
    with_grad: bool,
    cotangent: Array | None = None,
) -> tuple[Array, tuple[Array, Array, Array | None] | None]:
    """The reduced loss and, with ``with_grad``, ``(d hidden, d projection, d bias)``,
    block after block in a Python loop (``scanned_linear_smooth_ce`` with
    ``python_scan``); see there for the arguments."""
    return scanned_linear_smooth_ce(
        hidden,
        projection,
        bias,
        labels,
        xp=xp,
        spec=spec,
        chunk_size=chunk_size,
        with_grad=with_grad,
        scan=python_scan(xp),
        cotangent=cotangent,
    )


def scanned_linear_smooth_ce(
    hidden: Array,
    projection: Array,
    bias: Array | None,
    labels: Array,
    *,
    xp: Namespace,
    spec: Spec,
    chunk_size: int | None,
    with_grad: bool,
    scan: Any,
    cotangent: Array | None = None,
) -> tuple[Array, tuple[Array, Array, Array | None] | None]:
    """The reduced loss and, with ``with_grad``, ``(d hidden, d projection, d bias)``.

    ``spec``: the options, for logits (N, K) with the class axis 1. ``cotangent``: for
    ``reduction="none"``, each row's cotangent (the gradients are then of
    ``sum_i cotangent_i loss_i``); otherwise the gradients are of the reduced loss.
    ``scan(body, init, xs)`` runs the blocks, with ``jax.lax.scan``'s contract: ``xs``
    a dict of arrays stacked on a leading block axis (or None), ``body(carry, x) ->
    (carry, (loss rows, d hidden rows or None))``; ``init`` is None without gradients.
    Unrolled into one program, XLA schedules the blocks' logits side by side (measured:
    as much memory as the plain loss); a loop runs one block at a time. Rows are padded
    to whole blocks and the padding masked out through ``where``.
    """
    num_rows, num_classes = hidden.shape[0], projection.shape[1]
    dtype = _core.compute_dtype(xp, hidden.dtype)
    like = xp.zeros((0, num_classes), dtype=dtype, device=device(hidden))
    scale, denominator, _ = _core.reduction_scale(labels, spec, xp=xp, like=like)
    if cotangent is not None:
        scale = cotangent
    rows = block_rows(num_rows, num_classes, chunk_size)
    blocks = -(-num_rows // rows)
    padding = blocks * rows - num_rows
    where = spec.where
    if where is None:
        where = xp.ones_like(hidden[:, 0], dtype=xp.bool)
    per_row_scale = not isinstance(scale, float) and scale.ndim > 0

    def stack(x):
        """``x`` padded with zeros (False) to whole blocks, with a leading block axis."""
        if padding:
            zeros = xp.zeros((padding, *x.shape[1:]), dtype=x.dtype, device=device(x))
            x = xp.concat([x, zeros], axis=0)
        return xp.reshape(x, (blocks, rows, *x.shape[1:]))

    xs = {
        "hidden": stack(hidden),
        "labels": stack(labels),
        "where": stack(where),
        "scale": stack(scale) if per_row_scale else None,
    }

    def body(carry, x):
        row_scale = x["scale"] if per_row_scale else scale
        if carry is None:
            loss, _ = logits_block(
                x["hidden"],
                projection,
                bias,
                x["labels"],
                x["where"],
                row_scale,
                xp=xp,
                spec=spec,
                with_grad=False,
            )
            return None, (loss, None)
        carry, loss, d_hidden = block_step(
            carry,
            x["hidden"],
            x["labels"],
            x["where"],
            row_scale,
            xp=xp,
            projection=projection,
            bias=bias,
            spec=spec,
        )
        return carry, (loss, d_hidden)

    init = zero_grads(xp, projection, bias) if with_grad else None
    carry, (losses, d_hidden) = scan(body, init, xs)
    per_row = xp.reshape(losses, (-1,))[:num_rows]
    loss = _core.reduce(xp, per_row, denominator, spec.reduction)
    if not with_grad:
        return loss, None
    d_hidden = xp.reshape(d_hidden, (-1, hidden.shape[1]))[:num_rows, ...]
    return loss, (d_hidden, *carry)

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
    out: Array | None = None,
) -> tuple[dict[str, Array], Array | None]:
    """One block of rows: ``({"loss": loss per row, and with spec.aux the auxiliary
    outputs per row}, gradient of sum_i scale_i loss_i w.r.t. its logits)``, the
    gradient in ``hidden``'s dtype (None without ``with_grad``).

    ``hidden`` (B, d), ``projection`` (d, K), ``bias`` (K,) or None, ``labels`` (B,) class
    ids or (B, K) targets, ``where`` (B,) or None. ``out``: a (B, K) array of
    ``hidden``'s dtype that receives the logits (``matmul_into``; the gradient is then
    made there too, in full precision), or None for a new one.
    """
    matmul_into = getattr(xp, "matmul_into", None)
    if out is not None and matmul_into is not None:
        logits = matmul_into(out, hidden, projection)
    else:
        logits = xp.matmul(hidden, projection)
    # A namespace that writes arrays in place (the PyTorch adapter's) adds the bias to
    # the block's logits and turns them into their gradient there: one block-sized
    # array instead of three.
    subtract_into = getattr(xp, "subtract_into", None)
    in_place = subtract_into is not None
    if bias is not None and subtract_into is not None:
        logits = subtract_into(logits, logits, -bias)
    elif bias is not None:
        logits = logits + bias
    logits = _cast(xp, logits, _core.compute_dtype(xp, logits.dtype))
    rows: dict[str, Array] = {}
    loss, _, grad = _core.loss_and_grad(
        logits,
        labels,
        spec.replace(axis=1, where=where, reduction="none"),
        scale,
        xp=xp,
        with_grad=with_grad,
        out=logits if in_place else None,
        aux=rows,
    )
    rows["loss"] = loss
    return rows, None if grad is None else _cast(xp, grad, hidden.dtype)


def _cast(xp: Namespace, x: Array, dtype: DType) -> Array:
    return x if x.dtype == dtype else xp.astype(x, dtype)


def zero_grads(xp: Namespace, projection: Array, bias: Array | None) -> tuple[Array, Array | None]:
    """The accumulators of d projection and d bias, before the first block."""
    # zeros_like keeps a transposed view's layout in PyTorch (nn.Linear's weight is
    # (K, d)), so the gradient comes back in the parameter's own layout.
    zeros = xp.zeros_like(projection)
    return zeros, None if bias is None else xp.zeros_like(bias)


def block_step(
    carry: tuple[Array, Array | None] | None,
    hidden: Array,
    labels: Array,
    where: Array | None,
    scale: Any,
    *,
    xp: Namespace,
    projection: Array,
    bias: Array | None,
    spec: Spec,
    out: Array | None = None,
) -> tuple[tuple[Array, Array | None] | None, dict[str, Array], Array | None]:
    """One block of rows: ``(carry, {"loss": loss per row, and with spec.aux the
    auxiliary outputs}, d hidden rows)``.

    ``carry`` holds the running ``(d projection, d bias)``, updated in place by
    namespaces that offer ``add_matmul(out, a, b)`` (an in-place ``out += a @ b``; the
    PyTorch adapter's does), so no (d, K) temporary is made per block. A ``carry`` of
    None asks for the loss only: ``(None, rows, None)``. ``out``: as ``logits_block``'s.
    """
    rows, grad = logits_block(
        hidden,
        projection,
        bias,
        labels,
        where,
        scale,
        xp=xp,
        spec=spec,
        with_grad=carry is not None,
        out=out,
    )
    if carry is None:
        return None, rows, None
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
    return (grad_projection, grad_bias), rows, d_hidden


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
    aux: dict[str, Array] | None = None,
) -> tuple[Array, tuple[Array, Array, Array | None] | None]:
    """The reduced loss and, with ``with_grad``, ``(d hidden, d projection, d bias)``,
    for eager namespaces: a Python loop over blocks of the *kept* rows only (see
    ``scanned_linear_smooth_ce`` for the arguments).

    Rows left out (``ignore_index``, ``where``) are never projected: their loss and
    gradient are 0 by definition, so the work scales with the kept rows (a padding-heavy
    batch costs what its tokens cost). The kept rows are read once (``nonzero``: on an
    accelerator, one synchronisation per call). Each block's rows are sliced (all kept)
    or gathered (``take``). With the ``matmul_into`` extension every block's logits are
    made in one (rows, K) array of this call (float32 and float64 inputs), which the
    next block overwrites (a fresh one per block would be mapped and its pages faulted
    in each time); with ``matmul_out``, the namespace's own array of that role, where it
    offers one for the default blocks (``_core.reads_rows_only``). With the ``set_rows``
    extension (PyTorch's namespace) each block's ``d hidden`` is written into the (N, d)
    result in place, so peak memory is the gradients plus one block and O(N) vectors;
    without it the blocks are concatenated at the end (and put back at their rows with
    one ``take``): one more (N, d) array.
    """
    num_rows, width = hidden.shape
    num_classes = projection.shape[1]
    dtype = _core.compute_dtype(xp, hidden.dtype)
    like = xp.zeros((0, num_classes), dtype=dtype, device=device(hidden))
    scale, denominator, _ = _core.reduction_scale(labels, spec, xp=xp, like=like)
    if cotangent is not None:
        scale = cotangent
    per_row_scale = not isinstance(scale, float) and scale.ndim > 0
    keep = _core.kept_positions(labels, spec, xp=xp)
    if keep is not None and bool(xp.all(keep)):
        keep = None
    kept = None if keep is None else xp.nonzero(keep)[0]
    count = num_rows if kept is None else kept.shape[0]
    rows = block_rows(count, num_classes, chunk_size)
    set_rows = getattr(xp, "set_rows", None)
    index_dtype = _core.index_dtype(xp, hidden)
    carry = zero_grads(xp, projection, bias) if with_grad else None
    d_hidden = None
    if with_grad and set_rows is not None:
        d_hidden = xp.zeros((num_rows, width), dtype=hidden.dtype, device=device(hidden))
    losses, gathered = [], []
    block = None
    if getattr(xp, "matmul_into", None) is not None and count and hidden.dtype == dtype:
        # (Half-precision logits are converted to a float32 block anyway, in which the
        # gradient is made: keeping their matmul result too would hold one more block.)
        matmul_out = getattr(xp, "matmul_out", None)
        default_blocks = chunk_size is None and count > rows
        if matmul_out is not None and default_blocks and _core.reads_rows_only(spec):
            # The namespace's own block for the default size (several blocks), where
            # it offers one: as many rows or fewer, in the layout its product writes
            # fastest.
            block = matmul_out((rows, num_classes), dtype=dtype, device=device(hidden))
            if block is not None:
                rows = block.shape[0]
        if block is None:
            block = xp.zeros((min(rows, count), num_classes), dtype=dtype, device=device(hidden))
    for start in range(0, count, rows):
        stop = min(start + rows, count)
        select = slice(start, stop) if kept is None else kept[start:stop]
        carry, block_rows_out, rows_grad = block_step(
            carry,
            _rows(xp, hidden, select),
            _rows(xp, labels, select),
            None,
            _rows(xp, scale, select) if per_row_scale else scale,
            xp=xp,
            projection=projection,
            bias=bias,
            spec=_block_spec(spec, lambda eps, select=select: _rows(xp, eps, select)),
            out=None if block is None else block[: stop - start, ...],
        )
        losses.append(block_rows_out)
        if rows_grad is None:
            continue
        if set_rows is None:
            gathered.append(rows_grad)
        else:
            if kept is None:
                select = xp.arange(start, stop, dtype=index_dtype, device=device(hidden))
            d_hidden = set_rows(d_hidden, select, rows_grad)
    empty = xp.zeros((0,), dtype=dtype, device=device(hidden))
    names = ["loss", *_core.AUX_NAMES] if spec.aux else ["loss"]
    per_row = {name: xp.concat([empty, *(part[name] for part in losses)]) for name in names}
    if spec.reduction == "none" and kept is not None:
        per_row = {name: _put_back(xp, value, keep, count) for name, value in per_row.items()}
    loss = _core.reduce(xp, per_row.pop("loss"), denominator, spec.reduction)
    _reduce_aux(xp, per_row, aux, labels, spec, like)
    if carry is None:
        return loss, None
    if d_hidden is None:
        zeros = xp.zeros((0, width), dtype=hidden.dtype, device=device(hidden))
        d_hidden = xp.concat([zeros, *gathered])
        if kept is not None:
            d_hidden = _put_back(xp, d_hidden, keep, count)
    return loss, (d_hidden, *carry)


def _block_spec(spec: Spec, rows_of: Any) -> Spec:
    """``spec`` for a block of rows: one epsilon per row is cut as the labels are
    (``rows_of``), like ``where``; every other option holds for all rows."""
    smoothing = spec.smoothing
    if isinstance(smoothing, float) or smoothing.ndim == 0:
        return spec
    return spec.replace(smoothing=rows_of(smoothing))


def _reduce_aux(
    xp: Namespace,
    per_row: dict[str, Array],
    aux: dict[str, Array] | None,
    labels: Array,
    spec: Spec,
    like: Array,
) -> None:
    """Put the auxiliary outputs of every row (``per_row``), reduced, into ``aux``."""
    if aux is None or not spec.aux:
        return
    count, _ = _core.denominator_parts(labels, spec, xp=xp, like=like)
    aux.update(_core.reduce_aux_values(xp, per_row, count, spec.reduction))


def _rows(xp: Namespace, x: Array, select: Any) -> Array:
    """The rows ``select`` of ``x``: a slice (a view where the library has them) or
    gathered by index."""
    return x[select, ...] if isinstance(select, slice) else xp.take(x, select, axis=0)


def _put_back(xp: Namespace, kept_rows: Array, keep: Array, count: int) -> Array:
    """The rows of the kept positions (in order) back at their positions, 0 elsewhere:
    one ``take`` from the kept rows and a zero row."""
    zero = xp.zeros((1, *kept_rows.shape[1:]), dtype=kept_rows.dtype, device=device(kept_rows))
    source = xp.concat([kept_rows, zero])
    rank = xp.cumulative_sum(xp.astype(keep, _core.index_dtype(xp, keep))) - 1
    return xp.take(source, xp.where(keep, rank, count), axis=0)


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
    aux: dict[str, Array] | None = None,
    cond: Any = None,
    set_rows: Any = None,
    rows_in_carry: bool = True,
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
    to whole blocks and the padding masked out through ``where``. (The eager
    ``linear_smooth_ce`` loops over the kept rows instead.) ``aux``: with ``spec.aux``,
    a dict that receives the auxiliary outputs, reduced (as ``_core.smooth_ce``'s).

    ``cond(pred, if_true, if_false, operand)`` (``jax.lax.cond``'s contract) and
    ``set_rows(out, index, values)`` (``out`` with ``values`` at the rows ``index``, an
    index ``N`` dropped; functional) run only the kept rows instead
    (``_scan_kept_rows``). ``rows_in_carry``: each block's ``d hidden`` rows are set into
    the (N, d) gradient inside the loop, in its carry (JAX: XLA updates it in place), or
    else stacked as the loop's outputs and set once after it (TensorFlow, where a carried
    tensor updated inside ``tf.cond`` is copied whole on every block).
    """
    num_rows, num_classes = hidden.shape[0], projection.shape[1]
    dtype = _core.compute_dtype(xp, hidden.dtype)
    like = xp.zeros((0, num_classes), dtype=dtype, device=device(hidden))
    scale, denominator, _ = _core.reduction_scale(labels, spec, xp=xp, like=like)
    if cotangent is not None:
        scale = cotangent
    rows = block_rows(num_rows, num_classes, chunk_size)
    blocks = -(-num_rows // rows)
    if cond is not None and set_rows is not None:
        return _scan_kept_rows(
            hidden,
            projection,
            bias,
            labels,
            scale,
            denominator,
            like,
            xp=xp,
            spec=spec,
            rows=rows,
            blocks=blocks,
            with_grad=with_grad,
            scan=scan,
            cond=cond,
            set_rows=set_rows,
            rows_in_carry=rows_in_carry,
            aux=aux,
        )
    padding = blocks * rows - num_rows
    # The rows that count (``where`` and ``ignore_index``): the others' hidden states are
    # zeroed in their block, so a left-out row's NaN or inf is never projected.
    where = _core.kept_positions(labels, spec, xp=xp)
    left_out = where is not None
    if where is None:
        where = xp.ones_like(hidden[:, 0], dtype=xp.bool)
    per_row_scale = not isinstance(scale, float) and scale.ndim > 0
    per_row_smoothing = not isinstance(spec.smoothing, float) and spec.smoothing.ndim > 0

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
        # (Padding rows get epsilon 0; they are left out through ``where``.)
        "smoothing": stack(spec.smoothing) if per_row_smoothing else None,
    }

    def body(carry, x):
        row_scale = x["scale"] if per_row_scale else scale
        block_hidden = x["hidden"]  # (padding rows are zeros already)
        if left_out:
            block_hidden = xp.where(xp.expand_dims(x["where"], axis=1), block_hidden, 0.0)
        carry, rows_out, d_hidden = block_step(
            carry,
            block_hidden,
            x["labels"],
            x["where"],
            row_scale,
            xp=xp,
            projection=projection,
            bias=bias,
            spec=_block_spec(spec, lambda _: x["smoothing"]),
        )
        return carry, (rows_out, d_hidden)

    init = zero_grads(xp, projection, bias) if with_grad else None
    carry, (stacked, d_hidden) = scan(body, init, xs)
    per_row = {name: xp.reshape(value, (-1,))[:num_rows] for name, value in stacked.items()}
    loss = _core.reduce(xp, per_row.pop("loss"), denominator, spec.reduction)
    _reduce_aux(xp, per_row, aux, labels, spec, like)
    if not with_grad:
        return loss, None
    d_hidden = xp.reshape(d_hidden, (-1, hidden.shape[1]))[:num_rows, ...]
    return loss, (d_hidden, *carry)


def _scan_kept_rows(
    hidden: Array,
    projection: Array,
    bias: Array | None,
    labels: Array,
    scale: Any,
    denominator: Any,
    like: Array,
    *,
    xp: Namespace,
    spec: Spec,
    rows: int,
    blocks: int,
    with_grad: bool,
    scan: Any,
    cond: Any,
    set_rows: Any,
    aux: dict[str, Array] | None,
    rows_in_carry: bool = True,
) -> tuple[Array, tuple[Array, Array, Array | None] | None]:
    """``scanned_linear_smooth_ce`` over the kept rows only, for a compiled loop.

    The blocks' shapes are fixed, so the kept rows are put first instead: a stable sort
    of "left out" gives each slot of ``blocks * rows`` the row it holds (the kept rows in
    order, then ``N`` for no row). Each block gathers its rows (one block of hidden
    states, never an (N, d) copy), a block with no kept row is skipped by ``cond`` (the
    work scales with the kept rows), and ``d hidden`` is an (N, d) part of the carry,
    each block's rows set into it by ``set_rows``. Peak memory above the inputs: the
    three gradients, one block's logits and rows, and O(N) vectors. Without
    ``rows_in_carry`` the blocks' ``d hidden`` rows are the loop's outputs instead (one
    more (blocks * rows, d) array), set into place by one ``set_rows`` after it."""
    num_rows, width = hidden.shape
    place = device(hidden)
    index_dtype = _core.index_dtype(xp, hidden)
    slots = xp.arange(blocks * rows, dtype=index_dtype, device=place)
    keep = _core.kept_positions(labels, spec, xp=xp)
    if keep is None:
        count: Any = num_rows
        order = slots
    else:
        count = xp.sum(xp.astype(keep, index_dtype))
        left_out = 1 - xp.astype(keep, xp.int8)
        order = xp.astype(xp.argsort(left_out, stable=True), index_dtype)
        padding = xp.zeros((blocks * rows - num_rows,), dtype=index_dtype, device=place)
        order = xp.concat([order, padding])
    order = xp.where(slots < count, order, num_rows)
    per_row_scale = not isinstance(scale, float) and scale.ndim > 0
    dtype = like.dtype
    names = ["loss", *_core.AUX_NAMES] if spec.aux else ["loss"]

    def body(carry: Any, index: Array) -> tuple[Any, dict[str, Array]]:
        valid = index < num_rows
        safe = xp.where(valid, index, 0)

        def take(x: Array) -> Array:
            return xp.take(x, safe, axis=0)

        def compute(carry: Any) -> tuple[Any, dict[str, Array]]:
            if carry is None:
                grads, d_hidden = None, None
            elif rows_in_carry:
                grads, d_hidden = carry
            else:
                grads, d_hidden = carry, None
            # A slot past the kept rows reads row 0: its hidden state is zeroed, so a
            # left-out row's NaN or inf never reaches the projection's gradient.
            block_hidden = xp.where(xp.expand_dims(valid, axis=1), take(hidden), 0.0)
            grads, rows_out, rows_grad = block_step(
                grads,
                block_hidden,
                take(labels),
                valid,
                take(scale) if per_row_scale else scale,
                xp=xp,
                projection=projection,
                bias=bias,
                spec=_block_spec(spec, take),
            )
            if carry is None:
                return None, rows_out
            if not rows_in_carry:
                return grads, {**rows_out, "d_hidden": rows_grad}
            return (grads, set_rows(d_hidden, index, rows_grad)), rows_out

        def skip(carry: Any) -> tuple[Any, dict[str, Array]]:
            zeros = xp.zeros((rows,), dtype=dtype, device=place)
            skipped = {name: zeros for name in names}
            if carry is not None and not rows_in_carry:
                skipped["d_hidden"] = xp.zeros((rows, width), dtype=hidden.dtype, device=place)
            return carry, skipped

        return cond(index[0] < num_rows, compute, skip, carry)

    init = None
    if with_grad and rows_in_carry:
        d_hidden = xp.zeros((num_rows, width), dtype=hidden.dtype, device=place)
        init = (zero_grads(xp, projection, bias), d_hidden)
    elif with_grad:
        init = zero_grads(xp, projection, bias)
    carry, stacked = scan(body, init, xp.reshape(order, (blocks, rows)))
    rows_grads = stacked.pop("d_hidden", None)
    per_row = {name: xp.reshape(value, (-1,)) for name, value in stacked.items()}
    if spec.reduction == "none":
        # Each row's values back at its position (0 where left out).
        zeros = xp.zeros((num_rows,), dtype=dtype, device=place)
        per_row = {name: set_rows(zeros, order, value) for name, value in per_row.items()}
    loss = _core.reduce(xp, per_row.pop("loss"), denominator, spec.reduction)
    _reduce_aux(xp, per_row, aux, labels, spec, like)
    if carry is None:
        return loss, None
    if not rows_in_carry:
        zeros = xp.zeros((num_rows, width), dtype=hidden.dtype, device=place)
        d_hidden = set_rows(zeros, order, xp.reshape(rows_grads, (blocks * rows, width)))
        grad_projection, grad_bias = carry
        return loss, (d_hidden, grad_projection, grad_bias)
    (grad_projection, grad_bias), d_hidden = carry
    return loss, (d_hidden, grad_projection, grad_bias)

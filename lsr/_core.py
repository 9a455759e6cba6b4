"""The array-API core: the one definition of label-smoothed targets and cross-entropy.

Every function here takes the namespace ``xp`` as a required keyword and is pure
array-API code: no framework import, no value-dependent Python branch (so it traces under
``jax.jit`` and ``tf.function``), constants created on the input's dtype and device.
Inputs are assumed validated (``lsr._checks``); adapters call these functions directly.

Notation (per position i, classes k = 1..K along ``axis``):

* ``q`` the target (one-hot for integer labels), ``u`` the smoothing distribution,
  ``q' = (1 - eps) q + eps u``, ``w`` the class weights (1 when absent).
* ``lse = logsumexp(z)``; the loss is ``sum_k w_k q'_k (lse - z_k)``, computed as
  ``(1 - eps) (A lse - B) + eps (s lse - t)`` with ``A = sum_k w_k q_k``,
  ``B = sum_k w_k q_k z_k``, ``s = sum_k w_k u_k`` and ``t = sum_k w_k u_k z_k``.
  For integer labels ``A = w_y`` and ``B = w_y z_y``: no N x K target is ever built.
* Its gradient is ``(sum_k w_k q'_k) softmax(z) - w * q'``, computed from the logits and
  ``lse`` alone, so adapters can register it as a custom gradient that stores nothing
  of size N x K besides the logits.

The smoothing distributions (``prior``):

* ``"uniform"``: ``u_k = 1/K`` (Szegedy et al. 2016; PyTorch, Keras, optax).
* ``"others"``: ``u = (1 - q) / (K - 1)``, so a one-hot target becomes exactly ``1 - eps``
  on its class and ``eps / (K - 1)`` elsewhere (cleverhans 2017, fairseq, T5X).
* a vector ``pi`` of shape (K,): ``u = pi`` (the Inception-v3 paper's label prior).
"""

from __future__ import annotations

import math
from typing import Any

from lsr._compat import device

Array = Any


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float32 for half-precision inputs (float32 accumulation), else the dtype itself."""
    if dtype == xp.float64 or dtype == xp.float32:
        return dtype
    return xp.float32


def _class_shape(ndim: int, axis: int, num_classes: int) -> tuple[int, ...]:
    """The shape that broadcasts a (K,) vector along ``axis`` of an ``ndim`` array."""
    return tuple(num_classes if d == axis else 1 for d in range(ndim))


def _along_axis(xp: Any, vector: Array, ndim: int, axis: int) -> Array:
    return xp.reshape(vector, _class_shape(ndim, axis, vector.shape[0]))


def _class_ids(xp: Any, like: Array, ndim: int, axis: int, num_classes: int, dtype: Any) -> Array:
    """0..K-1 along ``axis``, in the labels' integer ``dtype`` (TensorFlow compares no others)."""
    ids = xp.arange(num_classes, dtype=dtype, device=device(like))
    return _along_axis(xp, ids, ndim, axis)


def _dot_classes(xp: Any, z: Array, vector: Array, axis: int) -> Array:
    """``sum_k z_k vector_k`` over ``axis``, as one contraction (no N x K product kept).

    Classes with ``vector_k = 0`` contribute 0 even where ``z_k = -inf`` (a masked class
    that the prior or the weights give no mass).
    """
    along = _along_axis(xp, vector, z.ndim, axis)
    # The standard asks vecdot for a negative axis.
    return xp.vecdot(xp.where(along == 0, 0.0, z), along, axis=axis - z.ndim)


def _take(xp: Any, vector: Array, ids: Array) -> Array:
    """``vector[ids]`` for ids of any shape (the standard's ``take`` wants 1-D indices)."""
    return xp.reshape(xp.take(vector, xp.reshape(ids, (-1,))), ids.shape)


def _xlogx(xp: Any, x: Any) -> Any:
    """x log x with 0 log 0 = 0, for Python floats and arrays alike."""
    if isinstance(x, float):
        return x * math.log(x) if x > 0.0 else 0.0
    positive = x > 0
    return xp.where(positive, x * xp.log(xp.where(positive, x, 1.0)), 0.0)


def _times(xp: Any, factor: Any, x: Any) -> Any:
    """``factor * x`` with ``0 * x = 0`` even where ``x`` is infinite (a class or a term
    that carries no mass contributes nothing, as in the sum it stands for: a masked class
    has logit -inf, and ``0 * -inf`` would be NaN)."""
    if isinstance(factor, float):
        if factor == 0.0:
            return 0.0
        return x if factor == 1.0 else factor * x
    return factor * xp.where(factor == 0, 0.0, x)


def _row_max(xp: Any, z: Array, axis: int) -> Array:
    """The maximum over ``axis`` (kept, size 1), 0 for rows without a finite maximum.

    Every sum over the logits is taken on ``z - row_max``: the loss is invariant to that
    shift, and the shifted values are small, so the float rounding of large logits does
    not reach the result (with ``lse`` itself, of magnitude ``|z|``, it would). A row of
    all -inf is shifted by 0 instead of giving ``(-inf) - (-inf) = nan``.
    """
    row_max = xp.max(z, axis=axis, keepdims=True)
    return xp.where(xp.isfinite(row_max), row_max, 0.0)


def _index_dtype(xp: Any, like: Array) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.int64
    return info().default_dtypes(device=device(like))["indexing"]


def logsumexp(xp: Any, z: Array, axis: int) -> Array:
    """logsumexp over ``axis`` with the class axis kept (size 1); rows of -inf give -inf.

    The standard has no logsumexp; a namespace that offers a fused one as
    ``xp.logsumexp(z, axis=, keepdims=)`` (the PyTorch adapter's does) is used, which
    saves the logits-sized temporaries of the two-pass form below in eager mode.
    """
    fused = getattr(xp, "logsumexp", None)
    if fused is not None:
        return fused(z, axis=axis, keepdims=True)
    row_max = _row_max(xp, z, axis)
    return xp.log(xp.sum(xp.exp(z - row_max), axis=axis, keepdims=True)) + row_max


class _Positions:
    """What the forward and backward pass both need to know about each position.

    ``checked``: the labels are known to hold only class ids in [0, K) and
    ``ignore_index`` (``lsr._checks`` read them), and their values may be read. The NaN
    guard against out-of-range ids is then not needed, and when no position is left out
    ``valid`` is None, so no mask is applied at all.
    """

    def __init__(self, xp, labels, *, dense, num_classes, ignore_index, where, like, checked=False):
        self.dense = dense
        if dense:
            self.safe_labels = None
            self.out_of_range = None
            self.valid = where
            return
        keep = None if ignore_index is None else labels != ignore_index
        if where is not None:
            keep = where if keep is None else keep & where
        index_dtype = _index_dtype(xp, like)
        if checked:
            if keep is not None and bool(xp.all(keep)):
                keep = None
            self.valid = keep
            self.out_of_range = None
            safe = labels if keep is None else xp.where(keep, labels, 0)
            self.safe_labels = safe if safe.dtype == index_dtype else xp.astype(safe, index_dtype)
            return
        in_range = (labels >= 0) & (labels < num_classes)
        self.valid = keep
        # Out-of-range labels that are not ignored poison the result with NaN: under
        # tracing they cannot raise, and they must never give a plausible number.
        self.out_of_range = ~in_range if keep is None else (~in_range) & keep
        labels = xp.where(in_range, labels, 0)
        self.safe_labels = xp.astype(labels, index_dtype)

    def mask(self, xp: Any, values: Array) -> Array:
        """NaN at out-of-range labels, then 0 at positions that are not kept."""
        if self.out_of_range is not None:
            # A factor of NaN rather than a NaN constant: differentiating the result
            # (autodiff through the core, on the generic path) then gives NaN at the bad
            # position too, where a select would pass it a zero gradient. (The factor is
            # a constant, so the other positions' gradients stay finite.)
            values = values * xp.where(self.out_of_range, xp.nan, xp.ones_like(values))
        if self.valid is not None:
            values = xp.where(self.valid, values, 0.0)
        return values


def _weighted_targets(xp, labels, weight, axis):
    """``w * q`` for dense targets ``q`` (``q`` itself without weights)."""
    return labels if weight is None else labels * _along_axis(xp, weight, labels.ndim, axis)


def _dense_target_sum(xp, z, labels, weight, axis):
    """``B = sum_k w_k q_k z_k`` for dense targets (0 from classes of no mass, even at
    ``z_k = -inf``)."""
    weighted_targets = _weighted_targets(xp, labels, weight, axis)
    return xp.sum(_times(xp, weighted_targets, z), axis=axis)


def _target_terms(xp, z, labels, positions, weight, axis):
    """``A = sum_k w_k q_k`` and ``B = sum_k w_k q_k z_k`` per position (class axis removed)."""
    if positions.dense:
        return (
            xp.sum(_weighted_targets(xp, labels, weight, axis), axis=axis),
            _dense_target_sum(xp, z, labels, weight, axis),
        )
    index = xp.expand_dims(positions.safe_labels, axis=axis)
    target_logit = xp.squeeze(xp.take_along_axis(z, index, axis=axis), axis=axis)
    if weight is None:
        return xp.ones_like(target_logit), target_logit
    target_weight = _take(xp, weight, positions.safe_labels)
    return target_weight, _times(xp, target_weight, target_logit)


def _smoothing_vector_sum(xp, z, prior, weight, axis):
    """``sum_k v_k z_k`` for the smoothing vector v: 1 (named priors), ``w``, ``pi`` or
    ``pi * w`` (a vector prior). ``t`` follows from it (``_smoothing_sum``)."""
    if not isinstance(prior, str):
        return _dot_classes(xp, z, prior if weight is None else prior * weight, axis)
    if weight is None:
        return xp.sum(z, axis=axis)
    return _dot_classes(xp, z, weight, axis)


def _smoothing_sum(prior, num_classes, vector_sum, target_sum):
    """``t = sum_k w_k u_k z_k`` from ``_smoothing_vector_sum`` and ``B``."""
    if not isinstance(prior, str):
        return vector_sum
    if prior == "uniform":
        return vector_sum / num_classes
    # "others": u = (1 - q) / (K - 1).
    return (vector_sum - target_sum) / (num_classes - 1)


def _negative_target_entropy(xp, labels, positions, smoothing, prior, weight, axis, num_classes):
    """``sum_k w_k q'_k log q'_k`` per position: what the KL form adds to the loss."""
    if positions.dense:
        smoothed = smooth_dense_targets(labels, xp=xp, smoothing=smoothing, prior=prior, axis=axis)
        terms = _xlogx(xp, smoothed)
        if weight is not None:
            terms = terms * _along_axis(xp, weight, labels.ndim, axis)
        return xp.sum(terms, axis=axis)
    ids = positions.safe_labels
    target_weight = 1.0 if weight is None else _take(xp, weight, ids)
    total_weight = float(num_classes) if weight is None else xp.sum(weight)
    if isinstance(prior, str) and prior == "uniform":
        off = _xlogx(xp, smoothing / num_classes)
        on = _xlogx(xp, 1.0 - smoothing + smoothing / num_classes)
        return target_weight * on + (total_weight - target_weight) * off
    if isinstance(prior, str):  # "others"
        off = _xlogx(xp, smoothing / (num_classes - 1))
        on = _xlogx(xp, 1.0 - smoothing)
        return target_weight * on + (total_weight - target_weight) * off
    per_class = _xlogx(xp, smoothing * prior)
    if weight is not None:
        per_class = per_class * weight
    target_prior = _take(xp, prior, ids)
    return (
        xp.sum(per_class)
        - _take(xp, per_class, ids)
        + target_weight * _xlogx(xp, 1.0 - smoothing + smoothing * target_prior)
    )


def per_position_loss(
    logits: Array,
    labels: Array,
    *,
    xp: Any,
    dense: bool,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    kl: bool,
    z_loss: float,
) -> tuple[Array, Array, Array | None, Any]:
    """The loss at every position, with what reductions and the backward pass need.

    Args:
        logits: (..., K, ...) in a compute dtype (``compute_dtype``).
        labels: integer class ids with ``axis`` removed, or dense targets like ``logits``
            (already cast to the logits' dtype).

    Returns:
        ``(loss, lse, valid, mean_denominator)``: ``loss`` with the class axis removed
        (0 where not valid, NaN at out-of-range labels), ``lse`` with the class axis kept,
        ``valid`` a boolean mask or None, and the denominator of the "mean" reduction.
    """
    num_classes = logits.shape[axis]
    positions = _Positions(
        xp,
        labels,
        dense=dense,
        num_classes=num_classes,
        ignore_index=ignore_index,
        where=where,
        like=logits,
    )
    # Every sum is taken on the max-shifted logits (see _row_max).
    row_max = _row_max(xp, logits, axis)
    shifted = logits - row_max
    shifted_lse = logsumexp(xp, shifted, axis)
    target_mass, target_sum = _target_terms(xp, shifted, labels, positions, weight, axis)
    loss = combine_loss(
        xp,
        xp.squeeze(shifted_lse, axis=axis),
        labels,
        positions,
        target_mass,
        target_sum,
        _smoothing_vector_sum(xp, shifted, prior, weight, axis),
        smoothing=smoothing,
        prior=prior,
        weight=weight,
        axis=axis,
        num_classes=num_classes,
        kl=kl,
        z_loss=z_loss,
        shift=xp.squeeze(row_max, axis=axis),
    )
    denominator = _mean_denominator(xp, loss.shape, loss.dtype, positions, target_mass, weight)
    return loss, shifted_lse + row_max, positions.valid, denominator


def combine_loss(
    xp: Any,
    lse: Array,
    labels: Array,
    positions: Any,
    target_mass: Any,
    target_sum: Array,
    vector_sum: Array,
    *,
    smoothing: Any,
    prior: Any,
    weight: Array | None,
    axis: int,
    num_classes: int,
    kl: bool,
    z_loss: float,
    shift: Any = 0.0,
) -> Array:
    """Each position's loss, masked, from per-position quantities alone.

    ``(1 - eps) (A lse - B) + eps (s lse - t)`` (plus the KL and z-loss terms), with
    ``lse`` the logsumexp (class axis removed), ``A = target_mass``, ``B = target_sum``
    and ``t`` from ``vector_sum`` (``_smoothing_vector_sum`` of the logits). The formula
    is invariant to shifting every logit of a position by the same amount, so all of
    ``lse``, ``B`` and ``vector_sum`` may be of the logits minus ``shift`` (per position,
    the row maximum: what keeps large logits exact); only the z-loss reads
    ``lse + shift``. A term whose factor is 0 (``eps = 0``, ``eps = 1`` with no mass left
    on the target) contributes 0 even where the other factor is infinite (a masked
    class with logit -inf). Every path
    ends here: the one-shot forward, the blocked pass, and PyTorch's vocab-parallel
    form, which all-reduces these sums over the shards of the class axis first. (JAX's
    shard_map form has only its slice of ``weight`` and ``prior``, so it combines
    all-reduced class totals instead, and masks with a NaN factor that reaches the
    gradient through JAX's autodiff.)
    """
    smooth_mass = _smoothing_mass(xp, prior, weight, num_classes, target_mass)
    smooth_sum = _smoothing_sum(prior, num_classes, vector_sum, target_sum)
    keep = 1.0 - smoothing
    loss = _times(xp, keep, target_mass * lse - target_sum) + _times(
        xp, smoothing, smooth_mass * lse - smooth_sum
    )
    if kl:
        loss = loss + _negative_target_entropy(
            xp, labels, positions, smoothing, prior, weight, axis, num_classes
        )
    if z_loss:
        full_lse = lse + shift
        loss = loss + z_loss * full_lse * full_lse
    return positions.mask(xp, loss)


def _mean_denominator(xp, shape, dtype, positions, target_mass, weight):
    """PyTorch's rule: the sum of w_y over kept positions for integer labels, else a count.

    The sum of weights is used whatever its sign (negative weights are allowed, as in
    PyTorch) and NaN propagates. 0 means "no position kept" (the mean is then 0); kept
    positions whose weights sum to exactly 0 give NaN instead (PyTorch's 0/0), never a
    mean of 0 that would look like a perfect loss.
    """
    count = (
        math.prod(shape) if positions.valid is None else xp.sum(xp.astype(positions.valid, dtype))
    )
    if weight is None or positions.dense:
        return count
    kept_weight = (
        target_mass if positions.valid is None else xp.where(positions.valid, target_mass, 0.0)
    )
    total = xp.sum(kept_weight)
    if isinstance(count, int):
        return xp.where(total == 0, xp.nan, total) if count else total
    return xp.where((total == 0) & (count > 0), xp.nan, total)


def mean_denominator(
    labels: Array,
    num_classes: int,
    *,
    xp: Any,
    dense: bool,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    dtype: Any,
) -> Any:
    """The "mean" reduction's denominator from the labels alone, before any logit is read.

    What lets a blocked pass (``loss_and_grad`` over blocks of rows) scale each block's
    gradient by the global mean before the other blocks are seen. ``dtype``: the compute
    dtype of the logits.
    """
    positions = _Positions(
        xp,
        labels,
        dense=dense,
        num_classes=num_classes,
        ignore_index=ignore_index,
        where=where,
        like=labels,
    )
    target_mass = None
    if weight is not None and not dense:
        target_mass = _take(xp, weight, positions.safe_labels)
    shape = tuple(labels.shape)
    if dense:
        shape = shape[:axis] + shape[axis + 1 :]
    return _mean_denominator(xp, shape, dtype, positions, target_mass, weight)


def reduction_scale(
    labels: Array,
    num_classes: int,
    *,
    xp: Any,
    reduction: str,
    dense: bool,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    dtype: Any,
) -> tuple[Any, Any]:
    """``(scale, denominator)``: each position's weight in the reduced loss (the ``scale``
    of ``loss_and_grad``) and the mean's denominator, from the labels alone."""
    denominator = mean_denominator(
        labels,
        num_classes,
        xp=xp,
        dense=dense,
        axis=axis,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        dtype=dtype,
    )
    return (_per_unit(xp, 1.0, denominator) if reduction == "mean" else 1.0), denominator


def reduced_loss_and_grad(
    logits: Array, labels: Array, *, xp: Any, reduction: str, **options: Any
) -> tuple[Array, Array]:
    """The reduced loss and its gradient from one ``loss_and_grad`` pass, with a unit
    cotangent per reduced value (for "none", row i is d loss_i / d z_i). ``options``:
    ``loss_and_grad``'s keyword arguments."""
    scale, denominator = reduction_scale(
        labels,
        logits.shape[options["axis"]],
        xp=xp,
        reduction=reduction,
        dtype=logits.dtype,
        **{k: options[k] for k in ("dense", "axis", "ignore_index", "weight", "where")},
    )
    per_position, _, grad = loss_and_grad(logits, labels, scale, xp=xp, **options)
    return reduce(xp, per_position, denominator, reduction), grad


def loss_and_grad(
    logits: Array,
    labels: Array,
    scale: Any,
    *,
    xp: Any,
    dense: bool,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    kl: bool,
    z_loss: float,
    with_grad: bool = True,
    out: Array | None = None,
) -> tuple[Array, Array, Array | None]:
    """Each position's loss and logsumexp, and the gradient of ``sum_i scale_i loss_i``.

    The forward and backward passes in one: ``exp(z - max z)`` is computed once and
    becomes the gradient in place (on namespaces with in-place operators; the others
    get new arrays). ``scale`` is each position's weight in the total
    (``1 / mean_denominator`` for a mean; an array of the positions' shape, a 0-d array
    or a float). Returns ``(loss, lse with the class axis kept, gradient or None)``; the
    gradient has the logits' shape and dtype.

    ``out``, for namespaces whose arrays can be assigned in place: an array of the logits'
    shape and dtype that receives the gradient (or, with ``with_grad=False``, serves as
    scratch); it may be ``logits`` itself, which is then overwritten. A namespace may
    offer ``subtract_into(out, x1, x2)`` (``out[...] = x1 - x2`` in one pass) and
    ``inplace_exp(x)`` (the PyTorch adapter's do) to fill it without a new array.
    ``blocked_loss_and_grad`` runs the same pass over blocks of rows.
    """
    options = {"smoothing": smoothing, "prior": prior, "weight": weight, "axis": axis}
    rows = _Rows(
        xp,
        labels,
        dense=dense,
        ignore_index=ignore_index,
        where=where,
        num_classes=logits.shape[axis],
        like=logits,
        **options,
    )
    if with_grad:
        rows.scale_by(scale)
    sums, grad = _logits_pass(
        xp, logits, labels, rows, z_loss=z_loss, with_grad=with_grad, out=out, **options
    )
    loss, lse = _finish(xp, logits, labels, rows, sums, kl=kl, z_loss=z_loss, **options)
    if out is not None and grad is not None and grad is not out:
        out[...] = grad
        grad = out
    return loss, lse, grad


def blocked_loss_and_grad(
    logits: Array,
    labels: Array,
    *,
    xp: Any,
    blocks: list[Any],
    out: Array | None,
    scratch: Array | None,
    checked: bool,
    dense: bool,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    reduction: str,
    kl: bool,
    z_loss: float,
) -> tuple[Array, Array, Any, Array | None]:
    """``loss_and_grad`` block after block of rows, for namespaces whose arrays can be
    assigned in place (PyTorch, NumPy): the same results, with the temporaries of one
    block at a time and no logits-sized allocation besides ``out``.

    Everything that depends on the labels alone is computed once for all positions
    (``_Rows``) and sliced per block, so the pass over a block does only the work that
    reads its logits; each position's loss is assembled after the last block from the
    per-position sums (``_finish``). A block that fits the CPU's caches stays there
    between the few passes over it.

    Args:
        logits: (N, ...) logits in any floating dtype; blocks cut the leading axis, which
            must not be the class ``axis`` (``[...]`` is the one block of everything).
        blocks: the blocks, as indices of the leading axis (slices, or ``...``).
        out: where the gradient of the reduced loss goes (for ``reduction="none"``, of
            each position's loss), of the logits' shape and any floating dtype (a
            half-precision gradient is rounded once, from the compute dtype); None for
            the loss alone.
        scratch: an array of the compute dtype and the shape of the largest block, or
            None; needed for half-precision logits (each block is converted into it) or
            without ``out`` (the exponentials go there).
        checked: integer labels whose values were checked (``_Positions``).

    Returns:
        ``(reduced loss, lse with the class axis kept, mean denominator, out)``.
    """
    dtype = compute_dtype(xp, logits.dtype)
    options = {"smoothing": smoothing, "prior": prior, "weight": weight, "axis": axis}
    rows = _Rows(
        xp,
        labels,
        dense=dense,
        ignore_index=ignore_index,
        where=None,
        num_classes=logits.shape[axis],
        like=xp.astype(_rows(logits, slice(0, 0)), dtype),
        checked=checked,
        **options,
    )
    denominator = rows.mean_denominator()
    with_grad = out is not None
    if with_grad:
        rows.scale_by(_per_unit(xp, 1.0, denominator) if reduction == "mean" else 1.0)
    # The gradient goes straight into ``out`` unless it is rounded to a half dtype there.
    direct = with_grad and out.dtype == dtype
    sums = []
    for index in blocks:
        block = _rows(logits, index)
        work = None if scratch is None else _rows(scratch, slice(0, block.shape[0]))
        if block.dtype != dtype:
            work[...] = block
            block = work
        target = _rows(out, index) if direct else work
        block_sums, grad = _logits_pass(
            xp,
            block,
            _rows(labels, index) if dense else None,
            rows.block(index),
            z_loss=z_loss,
            with_grad=with_grad,
            out=target,
            **options,
        )
        if with_grad and (grad is not target or not direct):
            if index is ...:
                out[...] = grad
            else:
                out[index, ...] = grad
        sums.append(block_sums)
    if len(sums) > 1:
        sums = [xp.concat(s, axis=0) for s in zip(*sums, strict=True)]
    else:
        sums = sums[0]
    loss, lse = _finish(xp, logits, labels, rows, sums, kl=kl, z_loss=z_loss, **options)
    return reduce(xp, loss, denominator, reduction), lse, denominator, out


class _Rows:
    """What the pass over the logits needs of each position, from the labels alone.

    Made once for all positions and sliced for each block of rows (``block``), so that
    a pass over a block of logits computes nothing that its logits do not change:
    ``positions`` (``_Positions``) and ``target_mass`` (``A``), and after ``scale_by``
    the per-position factors of the gradient ``(sum_k w_k q'_k) softmax(z) - w q'``,
    each times the position's (masked) cotangent.
    """

    # The gradient's factors that hold one value per position (leading axis = rows),
    # sliced by block().
    _PER_POSITION = (
        "scale",
        "coefficient",
        "factor",
        "index",
        "correction",
        "background",
    )

    def __init__(
        self,
        xp,
        labels,
        *,
        dense,
        smoothing,
        prior,
        axis,
        ignore_index,
        weight,
        where,
        num_classes,
        like,
        checked=False,
    ):
        self.xp, self.labels, self.like = xp, labels, like
        self.settings = (smoothing, prior, weight, axis, num_classes)
        positions = _Positions(
            xp,
            labels,
            dense=dense,
            num_classes=num_classes,
            ignore_index=ignore_index,
            where=where,
            like=like,
            checked=checked and not dense,
        )
        self.positions = positions
        if dense:
            self.target_mass = xp.sum(_weighted_targets(xp, labels, weight, axis), axis=axis)
        else:
            self.target_mass = 1.0 if weight is None else _take(xp, weight, positions.safe_labels)
        self.index = None if dense else xp.expand_dims(positions.safe_labels, axis=axis)
        self.scale = self.coefficient = self.factor = None
        self.correction = self.background = self.background_vector = None

    def mean_denominator(self) -> Any:
        """The "mean" reduction's denominator (``_mean_denominator``)."""
        labels, positions = self.labels, self.positions
        shape = labels.shape
        if positions.dense:
            axis = self.settings[3]
            shape = shape[:axis] + shape[axis + 1 :]
        return _mean_denominator(
            self.xp, tuple(shape), self.like.dtype, positions, self.target_mass, self.settings[2]
        )

    def scale_by(self, scale: Any, *, targets: bool = True) -> None:
        """Fold in each position's cotangent (a float, 0-d, or the positions' shape);
        with ``targets``, also the terms ``_subtract_targets`` needs."""
        xp, labels, positions = self.xp, self.labels, self.positions
        smoothing, prior, weight, axis, num_classes = self.settings
        dtype = self.like.dtype
        # A float cotangent with nothing to mask stays one float for every position;
        # otherwise there is one (masked) value per position.
        if not (
            isinstance(scale, float) and positions.valid is None and positions.out_of_range is None
        ):
            # (ones_like rather than ones: it also works for unknown dimensions under
            # tf.function.)
            ones = xp.ones_like(self.target_mass if positions.dense else labels, dtype=dtype)
            scale = ones * (scale if isinstance(scale, float) else xp.astype(scale, dtype))
            scale = xp.expand_dims(positions.mask(xp, scale), axis=axis)
        smooth_mass = _smoothing_mass(xp, prior, weight, num_classes, self.target_mass)
        coefficient = (1.0 - smoothing) * self.target_mass + smoothing * smooth_mass
        if not isinstance(coefficient, float) and coefficient.ndim > 0:
            coefficient = xp.expand_dims(coefficient, axis=axis)
        self.scale, self.coefficient = scale, coefficient
        self.factor = coefficient * scale
        if positions.dense or not targets:
            return
        ndim = labels.ndim + 1
        background, on_target = _integer_target_terms(
            xp, positions, smoothing, prior, weight, ndim, axis, num_classes
        )
        correction = -(on_target * scale)
        if getattr(xp, "add_along_axis", None) is not None:
            # A scatter-add takes one value per index.
            if isinstance(correction, float):
                correction = xp.full(
                    self.index.shape, correction, dtype=dtype, device=device(self.like)
                )
            else:
                correction = xp.astype(xp.broadcast_to(correction, self.index.shape), dtype)
        self.correction = correction
        # A scalar background (no weights, a named prior) is folded into the cotangent:
        # one value per position (or for all); a per-class one stays a vector along the
        # class axis.
        if getattr(background, "ndim", 0) == 0:
            self.background = background * scale
        else:
            self.background_vector = background

    def softmax_factor(self, lse: Any, z_loss: float) -> Any:
        """The cotangent times ``sum_k w_k q'_k + 2 z_loss lse`` (``lse``, class axis kept,
        is read only with a z-loss: the only factor of the softmax that needs it)."""
        if not z_loss:
            return self.factor
        return self.scale * (self.coefficient + 2.0 * z_loss * lse)

    def block(self, index: Any) -> _Rows:
        """What a pass over these rows needs (``index`` of the leading axis; ``...``: all
        of them): the gradient's per-position factors, sliced. ``positions`` and
        ``target_mass`` stay whole: only ``_finish`` reads them, once for all rows."""
        if index is ...:
            return self
        part = object.__new__(_Rows)
        part.__dict__.update(self.__dict__)
        for name in self._PER_POSITION:
            value = getattr(self, name)
            if value is not None and not isinstance(value, float) and value.ndim > 0:
                setattr(part, name, _rows(value, index))
        return part


def _rows(x: Array, index: Any) -> Array:
    """``x[index]`` along the leading axis (``...``: all of ``x``)."""
    return x if index is ... else x[index, ...]


def _logits_pass(
    xp, logits, labels, rows, *, smoothing, prior, weight, axis, z_loss, with_grad, out
):
    """One pass over (a block of) the logits: ``(row max, sum of exp(z - max), the
    smoothing vector's sum, B for dense targets or z_y for class ids)`` per position, and the
    gradient of ``sum_i scale_i loss_i`` (or None), made in place from ``exp(z - max)``.
    ``out`` as in ``loss_and_grad`` (it may be ``logits``: what reads the logits as they
    are runs before they are overwritten)."""
    row_max = _row_max(xp, logits, axis)
    if not rows.positions.dense:
        # z_y - max z: gathered before ``out`` (which may be the logits) is written, and
        # from the logits themselves, so XLA need not keep the shifted logits for it.
        target = xp.squeeze(xp.take_along_axis(logits, rows.index, axis=axis) - row_max, axis=axis)
    subtract_into = getattr(xp, "subtract_into", None)
    if out is None:
        shifted = logits - row_max
    elif subtract_into is not None:
        shifted = subtract_into(out, logits, row_max)
    else:
        out[...] = logits
        out -= row_max
        shifted = out
    # The sums over the classes are of the shifted logits (see _row_max), taken while
    # the block is in the caches and before the exponential overwrites it.
    if rows.positions.dense:  # B = sum_k w_k q_k z_k
        target = _dense_target_sum(xp, shifted, labels, weight, axis)
    # A namespace may offer both plain sums of the shifted logits at once (JAX's does).
    both_sums = getattr(xp, "sum_and_sum_exp", None)
    if both_sums is not None and out is None and weight is None and isinstance(prior, str):
        vector_sum, sum_exp = both_sums(shifted, axis=axis)
        exp_shifted = xp.exp(shifted)
    else:
        vector_sum = _smoothing_vector_sum(xp, shifted, prior, weight, axis)
        inplace_exp = getattr(xp, "inplace_exp", None)
        if inplace_exp is not None:
            exp_shifted = inplace_exp(shifted)
        else:
            exp_shifted = xp.exp(shifted)
            if out is not None:
                out[...] = exp_shifted
                exp_shifted = out
        sum_exp = xp.sum(exp_shifted, axis=axis, keepdims=True)
    sums = (row_max, sum_exp, vector_sum, target)
    if not with_grad:
        return sums, None
    lse = xp.log(sum_exp) + row_max if z_loss else None
    # A row of all -inf has no probability to spread (sum 0): its softmax term is 0
    # (an ignored row's gradient is then exactly 0) instead of 0 / 0.
    sum_exp = xp.where(sum_exp == 0, 1.0, sum_exp)
    exp_shifted *= rows.softmax_factor(lse, z_loss) / sum_exp
    return sums, _subtract_targets(xp, exp_shifted, labels, rows, smoothing, prior, weight, axis)


def _subtract_targets(xp, grad, labels, rows, smoothing, prior, weight, axis):
    """``grad - scale * w * q'`` in place (``grad`` is a temporary of the pass), with the
    factors of ``rows``; integer labels never build ``w * q'`` and, where the namespace
    offers ``add_along_axis`` (an in-place scatter-add), not even a class mask."""
    if rows.positions.dense:
        smoothed = smooth_dense_targets(labels, xp=xp, smoothing=smoothing, prior=prior, axis=axis)
        if weight is not None:
            smoothed = smoothed * _along_axis(xp, weight, labels.ndim, axis)
        grad -= smoothed * rows.scale
        return grad
    if rows.background is not None:
        grad -= rows.background
    else:
        grad -= rows.background_vector * rows.scale
    add_along_axis = getattr(xp, "add_along_axis", None)
    if add_along_axis is not None:
        return add_along_axis(grad, rows.index, rows.correction, axis=axis)
    is_target = _class_ids(xp, grad, grad.ndim, axis, grad.shape[axis], rows.index.dtype)
    return xp.where(is_target == rows.index, grad + rows.correction, grad)


def _finish(xp, logits, labels, rows, sums, *, smoothing, prior, weight, axis, kl, z_loss):
    """Each position's loss and lse (class axis kept) from the sums of ``_logits_pass``."""
    row_max, sum_exp, vector_sum, target = sums
    shifted_lse = xp.log(sum_exp)
    # For integer labels ``target`` is z_y, and B = w_y z_y (all of the shifted logits).
    target_sum = (
        target if rows.positions.dense or weight is None else _times(xp, rows.target_mass, target)
    )
    loss = combine_loss(
        xp,
        xp.squeeze(shifted_lse, axis=axis),
        labels,
        rows.positions,
        rows.target_mass,
        target_sum,
        vector_sum,
        smoothing=smoothing,
        prior=prior,
        weight=weight,
        axis=axis,
        num_classes=logits.shape[axis],
        kl=kl,
        z_loss=z_loss,
        shift=xp.squeeze(row_max, axis=axis),
    )
    return loss, shifted_lse + row_max


def reduce(xp: Any, loss: Array, denominator: Any, reduction: str) -> Array:
    """Apply ``reduction``; a "mean" over nothing (every position ignored) is 0, not NaN."""
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if reduction == "sum":
        return total
    return _per_unit(xp, total, denominator)


def _per_unit(xp: Any, value: Any, denominator: Any) -> Any:
    """``value / denominator``, and 0 where the denominator is 0 (nothing kept; see
    ``_mean_denominator``). A negative or NaN denominator divides as it is."""
    if isinstance(denominator, int):
        return value / denominator if denominator else value * 0.0
    nothing = denominator == 0
    return xp.where(nothing, 0.0, value / xp.where(nothing, 1.0, denominator))


def smooth_ce(
    logits: Array,
    labels: Array,
    *,
    xp: Any,
    dense: bool,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    reduction: str,
    kl: bool,
    z_loss: float,
) -> tuple[Array, Array, Any]:
    """Forward pass: ``(reduced loss, lse with the class axis kept, mean denominator)``."""
    loss, lse, _, denominator = per_position_loss(
        logits,
        labels,
        xp=xp,
        dense=dense,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        kl=kl,
        z_loss=z_loss,
    )
    return reduce(xp, loss, denominator, reduction), lse, denominator


def smooth_ce_grad(
    logits: Array,
    labels: Array,
    lse: Array,
    denominator: Any,
    cotangent: Array,
    *,
    xp: Any,
    dense: bool,
    smoothing: Any,
    prior: Any,
    axis: int,
    ignore_index: int | None,
    weight: Array | None,
    where: Array | None,
    reduction: str,
    z_loss: float,
) -> Array:
    """The gradient of the reduced loss with respect to ``logits``, times ``cotangent``.

    ``(sum_k w_k q'_k + 2 z_loss lse) softmax(z) - w * q'`` per position, scaled by the
    cotangent of that position's loss. Needs only the logits, labels and ``lse`` (from the
    forward pass). The KL form has the same gradient (the target entropy is constant).
    Returns an array of the logits' shape in the logits' dtype.
    """
    # The cotangent of each position's loss.
    if reduction == "none":
        scale = cotangent
    else:
        if reduction == "mean":
            cotangent = _per_unit(xp, cotangent, denominator)
        scale = xp.broadcast_to(cotangent, lse.shape[:axis] + lse.shape[axis + 1 :])
    # Every per-position factor is folded in before touching N x K arrays, so the
    # backward allocates as few logits-sized temporaries as the formula allows.
    rows = _Rows(
        xp,
        labels,
        dense=dense,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore_index,
        weight=weight,
        where=where,
        num_classes=logits.shape[axis],
        like=logits,
    )
    rows.scale_by(scale, targets=False)
    # A row of all -inf (lse = -inf) has softmax 0, not exp(-inf - (-inf)) = nan.
    finite_lse = xp.where(xp.isfinite(lse), lse, 0.0)
    grad = xp.exp(logits - finite_lse) * rows.softmax_factor(lse, z_loss)
    return _subtract_weighted_targets(
        xp, grad, labels, rows.positions, smoothing, prior, weight, axis, rows.scale
    )


def _smoothing_mass(xp, prior, weight, num_classes, target_mass):
    """``s = sum_k w_k u_k`` without touching the logits."""
    if isinstance(prior, str):
        total_weight = float(num_classes) if weight is None else xp.sum(weight)
        if prior == "uniform":
            return total_weight / num_classes
        return (total_weight - target_mass) / (num_classes - 1)
    return xp.sum(prior if weight is None else prior * weight)


def _integer_target_terms(xp, positions, smoothing, prior, weight, ndim, axis, num_classes):
    """For integer labels, ``w * q' = background + on_target * one_hot(y)``:
    ``background`` on every class (a scalar, or a per-class vector along ``axis``) and
    ``on_target`` per position (class axis kept, or a scalar)."""
    target_weight = 1.0 if weight is None else _take(xp, weight, positions.safe_labels)
    if isinstance(prior, str):
        spread = 1.0 / (num_classes if prior == "uniform" else num_classes - 1)
        background = (
            smoothing * spread
            if weight is None
            else _along_axis(xp, smoothing * spread * weight, ndim, axis)
        )
        on_target = (1.0 - smoothing) * target_weight
        if prior == "others":
            on_target = on_target - smoothing * spread * target_weight
    else:
        weighted_prior = prior if weight is None else prior * weight
        background = _along_axis(xp, smoothing * weighted_prior, ndim, axis)
        on_target = (1.0 - smoothing) * target_weight
    # 0-d (an array smoothing without weights) broadcasts as it is.
    if not isinstance(on_target, float) and on_target.ndim > 0:
        on_target = xp.expand_dims(on_target, axis=axis)
    return background, on_target


def _subtract_weighted_targets(xp, grad, labels, positions, smoothing, prior, weight, axis, scale):
    """``grad - scale * w * q'``, without building ``w * q'`` for integer labels.

    ``scale`` is the per-position cotangent with the class axis kept (size 1).
    """
    ndim = grad.ndim
    num_classes = grad.shape[axis]
    if positions.dense:
        smoothed = smooth_dense_targets(labels, xp=xp, smoothing=smoothing, prior=prior, axis=axis)
        if weight is not None:
            smoothed = smoothed * _along_axis(xp, weight, ndim, axis)
        return grad - smoothed * scale
    background, on_target = _integer_target_terms(
        xp, positions, smoothing, prior, weight, ndim, axis, num_classes
    )
    grad = grad - background * scale
    index = xp.expand_dims(positions.safe_labels, axis=axis)
    is_target = _class_ids(xp, grad, ndim, axis, num_classes, index.dtype) == index
    return xp.where(is_target, grad - on_target * scale, grad)


def one_hot(labels: Array, num_classes: int, *, xp: Any, axis: int, dtype: Any) -> Array:
    """One-hot targets with the class axis inserted at ``axis`` (of the result)."""
    ndim = labels.ndim + 1
    ids = _class_ids(xp, labels, ndim, axis, num_classes, labels.dtype)
    return xp.astype(xp.expand_dims(labels, axis=axis) == ids, dtype)


def nan_where_out_of_range(
    targets: Array, labels: Array, num_classes: int, *, xp: Any, axis: int
) -> Array:
    """``targets`` (one-hot rows of ``labels``, class axis ``axis``) with NaN rows where a
    label is outside [0, K): what tracing leaves of the range check."""
    bad = xp.expand_dims((labels < 0) | (labels >= num_classes), axis=axis)
    return xp.where(bad, xp.nan, targets)


def smooth_dense_targets(
    targets: Array, *, xp: Any, smoothing: Any, prior: Any, axis: int
) -> Array:
    """``q' = (1 - eps) q + eps u`` for dense targets ``q`` (a new array; ``q`` is untouched)."""
    num_classes = targets.shape[axis]
    if isinstance(prior, str):
        if prior == "uniform":
            return (1.0 - smoothing) * targets + smoothing / num_classes
        return (1.0 - smoothing) * targets + smoothing * (1.0 - targets) / (num_classes - 1)
    return (1.0 - smoothing) * targets + smoothing * _along_axis(xp, prior, targets.ndim, axis)


def estimate_prior(
    labels: Array,
    num_classes: int,
    *,
    xp: Any,
    ignore_index: int | None,
    pseudocount: float,
    dtype: Any,
) -> Array:
    """Class frequencies ``(count_k + pseudocount) / sum_j (count_j + pseudocount)``.

    Counted from the sorted labels (two binary searches per class): O(N + K) memory, no
    N x K one-hot. A label outside [0, K) that is not ``ignore_index`` (possible only
    under tracing, where values are not checked) makes the result NaN.
    """
    flat = xp.reshape(labels, (-1,))
    kept = None if ignore_index is None else flat != ignore_index
    in_range = (flat >= 0) & (flat < num_classes)
    bad = ~in_range if kept is None else kept & ~in_range
    if kept is not None:
        flat = xp.where(kept, flat, -1)
    ordered = xp.sort(flat)
    ids = xp.arange(num_classes, dtype=flat.dtype, device=device(labels))
    counts = xp.searchsorted(ordered, ids, side="right") - xp.searchsorted(
        ordered, ids, side="left"
    )
    counts = xp.astype(counts, dtype) + pseudocount
    prior = counts / xp.sum(counts)
    return xp.where(xp.any(bad), xp.nan, prior)

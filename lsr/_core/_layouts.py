"""The one pass over other layouts of the logits: block after block of rows (eager
namespaces that write in place), and one shard of the class axis (vocabulary-parallel
forms, with the adapter's collectives). Both are ``_loss``'s ``logit_sums``, ``combine``
and ``gradient``; only how the rows or classes are split differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lsr._core import _ops
from lsr._core._loss import (
    FixedTargets,
    aux_outputs,
    combine,
    gradient,
    log_softmax_loss_and_grad,
    log_softmax_reduced,
    log_softmax_targets,
    log_softmax_terms,
    logit_sums,
    p_log_p,
    reduce,
    reduce_aux,
    reduction_scale,
    sharded_correct,
    sharded_correct_sums,
)
from lsr._core._spec import Spec
from lsr._core._targets import Positions, Shard, Targets, class_values
from lsr._typing import Array, Namespace


def sharded_loss(
    logits_shard: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    start: Any,
    all_reduce_max: Callable[[Array], Array],
    all_reduce_sum: Callable[[Any], Any],
) -> tuple[Array, Array, Targets, dict[str, Any], dict[str, Array]]:
    """The pass over one shard of the class axis: ``(each position's loss, lse with the
    class axis kept, targets, class values, extras)``, the same on every shard
    (``targets.spec`` holds this shard's slices of the vectors: what ``smooth_ce_grad``
    takes, with the class values, for this shard's part of the gradient). ``extras``:
    with ``spec.aux`` the auxiliary outputs per position (``aux_outputs``); with a
    confidence penalty ``"p_log_p"``, ``sum_k p_k log p_k`` over all the classes (class
    axis kept), what ``smooth_ce_grad`` takes as ``exp_dot``.

    ``logits_shard`` holds the classes ``[start, start + size)`` of ``spec.num_classes``
    (the global K; ``start`` an int, or an array such as a traced device index), and
    ``spec``'s (K,) vectors are whole: what the labels need of them is read here, and only
    the logits' sums are added up over the shards. Two collectives, supplied by the
    adapter: ``all_reduce_max`` of the row maxima (for a stable logsumexp; the result is a
    constant of the loss) and one ``all_reduce_sum`` of a list of per-position partial
    sums.
    """
    axis, size = spec.axis, logits_shard.shape[spec.axis]
    positions = Positions(xp, labels, spec, like=logits_shard)
    shard = Shard(xp, positions, start, size)
    values = class_values(xp, spec, positions)
    spec = spec.replace(
        prior=spec.prior if spec.named_prior else _ops.class_range(xp, spec.prior, start, size),
        weight=None if spec.weight is None else _ops.class_range(xp, spec.weight, start, size),
    )
    targets = Targets(xp, labels, spec, positions, like=logits_shard, shard=shard)
    local_max = xp.max(logits_shard, axis=axis, keepdims=True)
    if spec.softcap is not None:  # (the cap is increasing: the max of the capped logits)
        local_max, _ = _ops.soft_cap(xp, local_max, spec.softcap)
    global_max = all_reduce_max(local_max)
    top = _ops.finite_or_zero(xp, global_max)
    # (The one-pass sums, as beside a gradient, although exp(s) is not read here: JAX
    # differentiates this pass itself, and its variadic reduction measured as fast or
    # faster here on 2 simulated devices: 2.3-2.6 against 2.5-3.3 ms forward, 3.2-3.8
    # against 3.6-4.2 ms forward + backward, at 4096 x 1000.)
    sums, _ = logit_sums(xp, logits_shard, targets, top=top, one_pass_sums=True)
    if spec.aux:
        capped = logits_shard
        if spec.softcap is not None:
            capped, _ = _ops.soft_cap(xp, logits_shard, spec.softcap)
        sums.update(sharded_correct_sums(xp, capped, targets, shard, global_max))
    del sums["row_max"], sums["chain"]
    (sums,) = _all_reduce_arrays(all_reduce_sum, sums)
    sums["row_max"] = top
    targets.set_values(values)
    loss, lse = combine(xp, sums, targets)
    extras: dict[str, Array] = {}
    if spec.aux:
        sums["correct"] = sharded_correct(xp, sums)
        extras.update(aux_outputs(xp, sums, targets))
    if spec.confidence_penalty:
        extras["p_log_p"] = p_log_p(xp, sums)
    return loss, lse, targets, values, extras


def _all_reduce_arrays(
    all_reduce_sum: Callable[[list[Array]], list[Array]], *parts: dict[str, Any]
) -> list[dict[str, Any]]:
    """``parts`` with every array added up over the shards by one collective (Python
    floats are the same on every shard already)."""
    keys = [
        (i, name)
        for i, part in enumerate(parts)
        for name, value in part.items()
        if not isinstance(value, float)
    ]
    reduced = all_reduce_sum([parts[i][name] for i, name in keys])
    result = [dict(part) for part in parts]
    for (i, name), value in zip(keys, reduced, strict=True):
        result[i][name] = value
    return result


def blocked_loss_and_grad(
    logits: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    blocks: list[Any],
    out: Array | None,
    scratch: Array | None,
    aux: dict[str, Array] | None = None,
) -> tuple[Array, Array, Any, Array | None]:
    """``loss_and_grad`` block after block of rows, for namespaces whose arrays can be
    assigned in place (PyTorch, NumPy): the same results, with the temporaries of one
    block at a time and no logits-sized allocation besides ``out``.

    The targets are made once for all positions and sliced per block, so the pass over
    a block does only the work that reads its logits; each position's loss is combined
    after the last block from the per-position sums. A block that fits the CPU's caches
    stays there between the few passes over it.

    Args:
        logits: (N, ...) logits in any floating dtype; blocks cut the leading axis, which
            must not be the class axis (``[...]`` is the one block of everything).
        blocks: the blocks, as indices of the leading axis (slices, or ``...``).
        out: where the gradient of the reduced loss goes (for ``reduction="none"``, of
            each position's loss), of the logits' shape and any floating dtype (a
            half-precision gradient is rounded once, from the compute dtype); None for
            the loss alone.
        scratch: an array of the compute dtype and the shape of the largest block, or
            None; needed for half-precision logits (each block is converted into it) or
            without ``out`` (the exponentials go there).
        aux: with ``spec.aux``, a dict that receives the auxiliary outputs, reduced
            (``_loss.aux_outputs``, ``_loss.reduce_aux``).

    Returns:
        ``(reduced loss, lse with the class axis kept, mean denominator, out)``.
    """
    dtype = _ops.compute_dtype(xp, logits.dtype)
    like = xp.astype(_ops.rows(logits, slice(0, 0)), dtype, copy=False)
    scale, denominator, targets = reduction_scale(labels, spec, xp=xp, like=like)
    if out is not None:
        targets.scale_by(scale, in_place=True)
    # The gradient goes straight into ``out`` unless it is rounded to a half dtype there.
    direct = out is not None and out.dtype == dtype
    parts = []
    # (A half-precision block needs ``scratch``: the docstring's contract.)
    for index, block, work in _ops.blocks_of_rows(logits, blocks, scratch, dtype=dtype, copy=False):
        target = _ops.rows(out, index) if direct else work
        block_targets = targets.block(index)
        sums, exp_shifted = logit_sums(xp, block, block_targets, out=target)
        if out is not None:
            grad = gradient(
                xp,
                exp_shifted,
                sums["sum_exp"],
                block_targets,
                lse=xp.log(sums["sum_exp"]) + sums["row_max"] if spec.z_loss else None,
                in_place=True,
                chain=sums["chain"],
                exp_dot=sums.get("exp_dot"),
            )
            if grad is not target or not direct:
                _ops.set_rows(out, index, grad)
        parts.append(sums)
    for part in parts:
        del part["chain"]  # (used by the block's gradient only)
    if len(parts) > 1:
        sums = {name: xp.concat([part[name] for part in parts], axis=0) for name in parts[0]}
    else:
        sums = parts[0]
    loss, lse = combine(xp, sums, targets)
    if aux is not None and spec.aux:
        aux.update(reduce_aux(xp, aux_outputs(xp, sums, targets), targets, spec.reduction))
    return reduce(xp, loss, denominator, spec.reduction), lse, denominator, out


def blocked_log_softmax_loss_and_grad(
    logits: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    blocks: list[Any],
    scratch: Array | None,
    out: Array | None = None,
    fixed: FixedTargets | None = None,
) -> tuple[Array, Array | None]:
    """``log_softmax_loss_and_grad`` block after block of rows, for a spec where
    ``log_softmax_applies``: ``(reduced loss, out)``.

    Each block's ``log softmax(z)`` is written by the namespace's fused ``log_softmax``
    into ``out``'s rows where ``out`` is of the compute dtype, else into ``scratch`` (an
    array of the compute dtype and the shape of the largest block; None: a new array per
    block), then read for its class sums and its targets' terms (``log_softmax_terms``).
    With ``out`` (an array of the logits' shape, any floating dtype), the block's softmax
    is then made from it in place and becomes the gradient of the reduced loss (for
    "none", of each position's loss), written into ``out``'s rows (a half-precision
    gradient is rounded once, from the compute dtype); None: the loss alone. One pass
    that writes and two that read (and, with the gradient, the exponential and its
    scaling in place), where ``blocked_loss_and_grad`` makes about twice as many. The
    terms of a "sum" or "mean" are added up as two totals per block.

    Exact where the loss is finite (and the gradient, where ``leaves_positions_out``;
    see ``log_softmax_applies``); where it is not (a non-finite logit in some row, kept
    or not), the caller takes ``blocked_loss_and_grad``, which defines those rows'
    values.
    """
    if blocks == [...] and scratch is None and out is None:
        # One block of every row, into a new array: ``log_softmax_loss_and_grad``'s own
        # steps, without the views and block targets of the loop below (on small inputs
        # each costs about as much as the arithmetic).
        loss, _ = log_softmax_loss_and_grad(
            logits, labels, spec, xp=xp, with_grad=False, fixed=fixed
        )
        return loss, None
    dtype = _ops.compute_dtype(xp, logits.dtype)
    like = xp.astype(_ops.rows(logits, slice(0, 0)), dtype, copy=False)
    targets, denominator, totals = log_softmax_targets(
        xp, labels, spec, like, fixed, with_grad=out is not None
    )
    valid = targets.positions.valid
    # The log-softmax goes straight into ``out`` unless the gradient is rounded there.
    direct = out is not None and out.dtype == dtype
    inplace_exp = getattr(xp, "inplace_exp", None)
    dots, target_terms = [], []
    for index in blocks:
        block = _ops.rows(logits, index)
        work = _ops.rows(out, index) if direct else scratch
        if not direct and scratch is not None and index is not ...:
            work = _ops.rows(scratch, slice(0, block.shape[0]))
        log_p = _ops.log_softmax(xp, block, spec.axis, dtype, out=work)
        block_targets = targets.block(index)
        dot, target = log_softmax_terms(
            xp,
            log_p,
            block_targets,
            None if valid is None else _ops.rows(valid, index),
            totals=totals,
        )
        dots.append(dot)
        target_terms.append(target)
        if out is not None:
            softmax = xp.exp(log_p) if inplace_exp is None else inplace_exp(log_p)
            grad = gradient(xp, softmax, None, block_targets, lse=None, in_place=True)
            if grad is not work or not direct:
                _ops.set_rows(out, index, grad)
    if len(blocks) == 1:
        dot, target = dots[0], target_terms[0]
    elif totals:
        # (One reduction over the blocks' totals, not a running sum in the compute dtype.)
        dot, target = xp.sum(xp.stack(dots)), xp.sum(xp.stack(target_terms))
    else:
        dot, target = xp.concat(dots, axis=0), xp.concat(target_terms, axis=0)
    return log_softmax_reduced(xp, dot, target, targets, denominator, totals=totals), out

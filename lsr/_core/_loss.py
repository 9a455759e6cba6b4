"""The one pass: class sums of a block of rows, their combination into each position's
loss, and the gradient, all from the logits, the labels and the ``Spec``.

Per position, with ``s = z - max z`` (every sum is of the shifted logits; see
``_ops.row_max``) and the target algebra of ``_targets``::

    loss = M lse(s) - sum_k w_k q'_k s_k                      (+ KL term, + z-loss)
         = M log(sum_k exp s_k) - eps c sum_k v_k s_k - o w_y s_y
    d loss / d z = M softmax(z) - w q'                        (+ 2 z_loss lse softmax(z))

so a pass over the logits needs four sums per position (``logit_sums``): the row
maximum, ``sum_k exp(s_k)``, the dot product with ``v`` (or with ``w q'`` for dense
targets) and ``s_y``. A confidence penalty ``-beta H(p)`` (and the auxiliary outputs)
need a fifth, ``sum_k exp(s_k) s_k``, taken only then: ``H(p) = lse(s) - sum_k p_k s_k``,
and ``d(-beta H)/dz_j = beta p_j (s_j - sum_k p_k s_k) = beta (p_j log p_j + H p_j)``.
``combine`` turns them into the loss; ``gradient`` makes the
gradient from ``exp(s)``, in place where the namespace allows. Every entry point is
this pass: over all rows at once (``loss_and_grad``, ``smooth_ce`` below), from a saved
logsumexp in a backward pass (``smooth_ce_grad`` below), block after block of rows or
over a shard of the classes (``_layouts``).

Over 500 lines on purpose: the pass, its reductions and its gradient are one derivation
(the sums it takes are what the gradient and the auxiliary outputs read), and splitting
them would spread the formula over modules that must change together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lsr._compat import device, is_host_constant
from lsr._core import _ops
from lsr._core._spec import Spec
from lsr._core._targets import Positions, Shard, Targets, denominator_rule, smoothing_vector
from lsr._typing import Array, Namespace


def logit_sums(
    xp: Namespace,
    logits: Array,
    targets: Targets,
    *,
    top: Array | None = None,
    out: Array | None = None,
    in_place: bool = False,
    one_pass_sums: bool = True,
) -> tuple[dict[str, Array], Array]:
    """The per-position sums of a pass (class axis kept) and ``exp(s)``.

    ``top``: the row maxima to shift by (a class-sharded pass passes the global ones).
    ``out``: an array of the logits' shape and dtype that receives ``exp(s)`` (it may be
    ``logits``: what reads the logits as they are runs before they are overwritten).
    ``in_place``: ``exp(s)`` may be made in place in a temporary of this pass.
    ``one_pass_sums``: take the sum of ``s`` and of ``exp(s)`` in one pass with the
    namespace's ``sum_and_sum_exp`` where it has one (the caller chooses: under XLA's
    CPU backend it is the slower for a loss alone, see below; beside a gradient it is
    the faster for some dtypes and shapes only, and the JAX adapter hands the core a
    namespace without it for the others: ``lsr.jax._namespace.pass_namespace``).
    Returns ``({"row_max", "sum_exp", "dot", "target", "chain"}, exp(s))``: for class
    ids ``dot = sum_k v_k s_k`` and ``target = s_y`` (0 where a shard does not hold y),
    for dense targets ``dot = sum_k w_k q'_k s_k`` and no ``target``; with
    ``spec.softcap``, every sum is of the capped logits and ``chain`` (the logits'
    shape) is the cap's derivative, else None. With a confidence penalty or ``spec.aux``
    (only then), also ``exp_dot = sum_k exp(s_k) s_k`` (``entropy_sum``).
    """
    spec = targets.spec
    axis = spec.axis
    chain = None
    if spec.softcap is not None:
        # The pass runs on the capped logits; the gradient is taken back through the cap
        # at the end (``gradient``'s ``chain``).
        logits, chain = _ops.soft_cap(xp, logits, spec.softcap)
    if top is None:
        top = _ops.row_max(xp, logits, axis)
    sums: dict[str, Array] = {"row_max": top, "chain": chain}
    if not spec.dense:
        # s_y: gathered before ``out`` (which may be the logits) is written, and from the
        # logits themselves, so XLA need not keep the shifted logits for it.
        target = xp.take_along_axis(logits, targets.index, axis=axis) - top
        if targets.holds is not None:
            target = xp.where(targets.holds, target, 0.0)
        sums["target"] = target
        if spec.aux and targets.shard is None:
            # Top-1 correctness by the first maximum, as ``argmax`` (and so every
            # framework's accuracy) decides a tie; read before ``out`` is written. (A
            # class-sharded pass counts it over its shards: ``sharded_correct_sums``.)
            first = xp.argmax(logits, axis=axis, keepdims=True)
            sums["correct"] = xp.astype(first == targets.index, logits.dtype)
    subtract_into = getattr(xp, "subtract_into", None)
    if out is None:
        shifted = logits - top
    elif subtract_into is not None:
        shifted = subtract_into(out, logits, top)
    else:
        out[...] = logits
        out -= top
        shifted = out
    in_place = in_place or out is not None
    # The sums over the classes are taken while the block is in the caches, before the
    # exponential overwrites it.
    vector = None if spec.dense else smoothing_vector(spec)
    both_sums = getattr(xp, "sum_and_sum_exp", None)
    if spec.dense:
        dot = xp.sum(_ops.times(xp, targets.weighted, shifted), axis=axis, keepdims=True)
    elif both_sums is not None and out is None and vector is None and one_pass_sums:
        # (Only beside the gradient's exp(s). For the loss alone, XLA's CPU backend
        # (jaxlib 0.10) runs the variadic reduction, with the exponential fused into it,
        # as a plain loop, but two plain sums as its vectorized reductions: 2.2 against
        # 5.7 ms at 4096 x 1000 float32 under jax.jit. With the gradient, the variadic
        # one is the faster: 27.7 against 34.1 ms at 512 x 32000 bfloat16.)
        dot, sum_exp = both_sums(shifted, axis=axis)
        sums["dot"] = xp.expand_dims(dot, axis=axis)
        sums["sum_exp"] = sum_exp
        exp_shifted = xp.exp(shifted)
        if needs_entropy(spec):
            sums["exp_dot"] = entropy_sum(xp, exp_shifted, axis)
        return sums, exp_shifted
    elif vector is None:
        sum_shifted = getattr(xp, "sum_shifted", None)
        if sum_shifted is not None and out is None:
            # (The loss alone: ``shifted`` then feeds only the exponential's sum, which
            # XLA's CPU backend streams instead of storing it; see the JAX namespace.)
            dot = sum_shifted(logits, top, axis=axis)
        else:
            dot = xp.sum(shifted, axis=axis, keepdims=True)
    else:
        dot = xp.expand_dims(_ops.dot_classes(xp, shifted, vector, axis), axis=axis)
    sums["dot"] = dot
    inplace_exp = getattr(xp, "inplace_exp", None)
    if in_place and inplace_exp is not None:
        exp_shifted = inplace_exp(shifted)
    else:
        exp_shifted = xp.exp(shifted)
        if out is not None:
            out[...] = exp_shifted
            exp_shifted = out
    sums["sum_exp"] = xp.sum(exp_shifted, axis=axis, keepdims=True)
    if needs_entropy(spec):
        sums["exp_dot"] = entropy_sum(xp, exp_shifted, axis)
    return sums, exp_shifted


def sharded_correct_sums(
    xp: Namespace, logits: Array, targets: Targets, shard: Shard, top: Array
) -> dict[str, Array]:
    """Top-1 correctness on a shard of the classes, as sums over them (class axis kept)
    that the shards add up: ``at_top`` (1 on the shard holding y where ``z_y`` is the
    global maximum ``top``) and ``ties_before`` (the classes before y at ``top``).
    ``argmax(z) = y``, the first maximum winning a tie, is ``at_top = 1`` and
    ``ties_before = 0`` (``sharded_correct``)."""
    spec = targets.spec
    axis = spec.axis
    size = logits.shape[axis]
    shape = [1] * logits.ndim
    shape[axis] = size
    ids = xp.arange(size, dtype=targets.index.dtype, device=device(logits))
    label = xp.expand_dims(targets.positions.safe_labels, axis=axis) - shard.start
    tied = (logits == top) & (xp.reshape(ids, tuple(shape)) < label)
    at_top = xp.take_along_axis(logits, targets.index, axis=axis) == top
    return {
        "at_top": xp.astype(at_top & targets.holds, logits.dtype),
        "ties_before": xp.sum(xp.astype(tied, logits.dtype), axis=axis, keepdims=True),
    }


def sharded_correct(xp: Namespace, sums: dict[str, Array]) -> Array:
    """``sums["correct"]`` from ``sharded_correct_sums``' sums, added up over the shards."""
    correct = (sums.pop("at_top") == 1.0) & (sums.pop("ties_before") == 0.0)
    return xp.astype(correct, sums["sum_exp"].dtype)


def needs_entropy(spec: Spec) -> bool:
    """Whether the pass takes ``sum_k exp(s_k) s_k`` (nothing asked: it does not)."""
    return bool(spec.confidence_penalty) or spec.aux


def entropy_sum(xp: Namespace, exp_shifted: Array, axis: int) -> Array:
    """``sum_k exp(s_k) s_k`` (class axis kept) from ``exp(s)``: ``exp(s) s = e log e``,
    0 for a class of logit -inf (``e = 0``), never ``0 * -inf``. Read from ``exp(s)``
    so that a pass that made it in place (the shifted logits gone) takes it too."""
    return xp.sum(_ops.xlogx(xp, exp_shifted), axis=axis, keepdims=True)


def _mean_shifted(xp: Namespace, sums: dict[str, Array]) -> Array:
    """``sum_k p_k s_k = sum_k exp(s_k) s_k / sum_k exp(s_k)`` (class axis kept; 0 for
    a row of all -inf, whose sum is 0)."""
    sum_exp = sums["sum_exp"]
    return sums["exp_dot"] / xp.where(sum_exp == 0, 1.0, sum_exp)


def _entropy(xp: Namespace, lse_s: Array, sums: dict[str, Array], axis: int) -> Array:
    """``H(p) = lse(s) - sum_k p_k s_k``, class axis removed."""
    return lse_s - xp.squeeze(_mean_shifted(xp, sums), axis=axis)


def p_log_p(xp: Namespace, sums: dict[str, Array]) -> Array:
    """``sum_k p_k log p_k = sum_k p_k s_k - lse(s)`` (class axis kept): ``-H(p)`` from
    the sums of a pass, what ``gradient`` takes as ``exp_dot`` when its ``exp(s)`` is
    the softmax itself (a class-sharded backward). A row of all -inf gives 0."""
    sum_exp = sums["sum_exp"]
    return _mean_shifted(xp, sums) - xp.log(xp.where(sum_exp == 0, 1.0, sum_exp))


def _cross_entropy(
    xp: Namespace, lse_s: Array | None, dot: Array, target: Array | None, targets: Targets
) -> Array:
    """``H(w q', softmax(z)) = M lse(s) - sum_k w_k q'_k s_k`` per position (class axis
    removed; plus the target entropy for the KL form) from a pass's sums, for rows
    shifted by any ``s = z - shift``: ``lse_s`` is ``lse(s)`` (None: 0, for ``s = log p``),
    ``dot`` and ``target`` the sums of ``logit_sums`` (``target`` None for dense targets)."""
    if target is None:
        cross = dot
    else:
        cross = _ops.times(xp, targets.background, dot) + _ops.times(xp, targets.on_target, target)
    loss = -cross if lse_s is None else _ops.times(xp, targets.mass, lse_s) - cross
    if targets.spec.kl:
        loss = loss + targets.entropy
    return loss


def combine(xp: Namespace, sums: dict[str, Array], targets: Targets) -> tuple[Array, Array]:
    """Each position's loss (class axis removed, masked) and lse (class axis kept) from
    the sums of ``logit_sums`` (for a sharded pass: added up over the shards).

    A term whose factor is 0 (``eps = 0``, no mass left on the target) contributes 0
    even where the other factor is infinite (a masked class with logit -inf).
    """
    spec = targets.spec
    axis = spec.axis
    top = sums["row_max"]
    shifted_lse = xp.log(sums["sum_exp"])
    lse_s, dot = xp.squeeze(shifted_lse, axis=axis), xp.squeeze(sums["dot"], axis=axis)
    target = None if spec.dense else xp.squeeze(sums["target"], axis=axis)
    loss = _cross_entropy(xp, lse_s, dot, target, targets)
    if spec.z_loss:
        full_lse = lse_s + xp.squeeze(top, axis=axis)
        loss = loss + spec.z_loss * full_lse * full_lse
    if spec.confidence_penalty:
        loss = loss - spec.confidence_penalty * _entropy(xp, lse_s, sums, axis)
    return targets.positions.mask(xp, loss), shifted_lse + top


#: The auxiliary outputs, in the order of the adapters' ``Aux`` tuples.
AUX_NAMES = ("nll", "lse", "entropy", "correct")


def aux_outputs(xp: Namespace, sums: dict[str, Array], targets: Targets) -> dict[str, Array]:
    """The auxiliary outputs of each position (class axis removed, masked as the loss:
    0 where left out, NaN at an unchecked out-of-range id), from the sums of one pass
    (``spec.aux``; class ids only): ``nll = lse(z) - z_y`` (the unsmoothed negative
    log-likelihood), ``lse = logsumexp(z)``, ``entropy = H(softmax(z))`` and ``correct``
    (1.0 where ``argmax(z) = y``, the first maximum winning a tie, else 0.0). With a soft
    cap, all of the capped logits."""
    axis = targets.spec.axis
    top = xp.squeeze(sums["row_max"], axis=axis)
    lse_s = xp.squeeze(xp.log(sums["sum_exp"]), axis=axis)
    target = xp.squeeze(sums["target"], axis=axis)
    values = {
        "nll": lse_s - target,
        "lse": lse_s + top,
        "entropy": _entropy(xp, lse_s, sums, axis),
        "correct": xp.squeeze(sums["correct"], axis=axis),
    }
    return {name: targets.positions.mask(xp, values[name]) for name in AUX_NAMES}


def reduce_aux(
    xp: Namespace,
    values: dict[str, Array],
    targets: Targets,
    reduction: str,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None = None,
) -> dict[str, Array]:
    """``aux_outputs`` reduced like the loss, except that a mean is over the kept
    positions unweighted by class weights (0 when none is kept). ``all_reduce_sum``
    (as ``reduce_with_denominator``'s): over the global batch of the processes that
    split it."""
    if reduction == "none":
        return values
    count = targets.denominator_parts()[0]
    return reduce_aux_values(xp, values, count, reduction, all_reduce_sum)


def reduce_aux_values(
    xp: Namespace,
    values: dict[str, Array],
    count: Any,
    reduction: str,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None = None,
) -> dict[str, Array]:
    """``reduce_aux`` with the number of kept positions given (``denominator_parts``'s
    first part), for a pass that made the per-position values block by block, or on
    one process of several that split the batch (``all_reduce_sum``: the totals and the
    count are added up over them first)."""
    if reduction == "none":
        return values
    names = list(values)
    totals = [xp.sum(values[name]) for name in names]
    if all_reduce_sum is not None:
        *totals, count = all_reduce_sum([*totals, _as_array(xp, count, totals[0])])
    if reduction == "sum":
        return dict(zip(names, totals, strict=True))
    return {
        name: _ops.per_unit(xp, total, count) for name, total in zip(names, totals, strict=True)
    }


def gradient(
    xp: Namespace,
    exp_shifted: Array,
    sum_exp: Array | None,
    targets: Targets,
    *,
    lse: Array | None,
    in_place: bool,
    chain: Array | None = None,
    exp_dot: Array | None = None,
) -> Array:
    """``scale * ((M + 2 z_loss lse) softmax(z) - w q')`` from ``exp(s)`` and its sum
    (``sum_exp`` None: ``exp_shifted`` is the softmax itself), with the factors of
    ``targets.scale_by``. ``in_place``: ``exp_shifted`` is a temporary that becomes the
    gradient (functional otherwise, for autodiff through it). ``lse`` (class axis kept)
    is read only with a z-loss. ``chain``: the soft cap's derivative (``logit_sums``),
    by which the gradient of the capped logits becomes that of the logits.

    With a confidence penalty, plus ``scale beta (e_j s_j - e_j sum_k e_k s_k / S) / S``
    (``e = exp(s)``, ``S`` its sum): ``exp_dot`` is that sum of ``logit_sums``, or None
    to take it here (from the softmax, when ``sum_exp`` is None: then ``s = log p``)."""
    spec = targets.spec
    factor = targets.softmax_factor(lse)
    penalty = spec.confidence_penalty
    scaled_entropy_terms = None
    if penalty:
        axis = spec.axis
        if exp_dot is None:
            exp_dot = entropy_sum(xp, exp_shifted, axis)
        total = 1.0 if sum_exp is None else xp.where(sum_exp == 0, 1.0, sum_exp)
        # (Before ``exp_shifted`` becomes the gradient in place.)
        scaled_entropy_terms = _ops.xlogx(xp, exp_shifted) * (targets.scale * penalty / total)
        factor = factor - targets.scale * penalty * (exp_dot / total)
    if sum_exp is not None:
        # A row of all -inf has no probability to spread (sum 0): its softmax term is 0
        # (an ignored row's gradient is then exactly 0) instead of 0 / 0. Every other
        # row's sum is at least 1 (its maximum's term is exp(0)), or NaN or +inf, so
        # where nothing differentiates this (in place), max(sum, 1) is that guard in one
        # arithmetic operation instead of a comparison and a select (PyTorch's CPU
        # kernels take several times longer over booleans). Where autodiff may see it,
        # the select stays: the derivative of max at a tie is split in half, and a sum
        # of exactly 1 has a nonzero derivative where the shift carries none (a shard's
        # pass shifted by the global maximum).
        guarded = xp.maximum(sum_exp, 1.0) if in_place else xp.where(sum_exp == 0, 1.0, sum_exp)
        factor = factor / guarded
    if in_place:
        exp_shifted *= factor
        grad = exp_shifted
    else:
        grad = exp_shifted * factor
    if scaled_entropy_terms is not None:
        if in_place:
            grad += scaled_entropy_terms
        else:
            grad = grad + scaled_entropy_terms
    if spec.dense:
        subtract = targets.weighted * targets.scale
    elif targets.background_vector is None:
        subtract = targets.background_scaled
    else:
        subtract = targets.background_vector * targets.background_scaled
    if in_place:
        grad -= subtract
    else:
        grad = grad - subtract
    if not spec.dense:
        add_along_axis = getattr(xp, "add_along_axis", None)
        if in_place and add_along_axis is not None:
            grad = add_along_axis(grad, targets.index, targets.correction, axis=spec.axis)
        else:
            ids = _ops.class_ids(
                xp, grad, grad.ndim, spec.axis, grad.shape[spec.axis], targets.index.dtype
            )
            grad = xp.where(ids == targets.index, grad + targets.correction, grad)
    if chain is None:
        return grad
    if in_place:
        grad *= chain
        return grad
    return grad * chain


def _targets(xp: Namespace, labels: Array, spec: Spec, like: Array) -> Targets:
    return Targets(xp, labels, spec, Positions(xp, labels, spec, like=like), like=like)


def loss_and_grad(
    logits: Array,
    labels: Array,
    spec: Spec,
    scale: Any,
    *,
    xp: Namespace,
    with_grad: bool = True,
    out: Array | None = None,
    in_place: bool = False,
    targets: Targets | None = None,
    aux: dict[str, Array] | None = None,
) -> tuple[Array, Array, Array | None]:
    """Each position's loss and logsumexp, and the gradient of ``sum_i scale_i loss_i``.

    The forward and backward passes in one: ``exp(z - max z)`` is computed once and
    becomes the gradient (in place where ``out`` is given or ``in_place`` allows).
    ``scale`` is each position's weight in the total (``1 / mean_denominator`` for a
    mean; an array of the positions' shape, a 0-d array or a float). Returns ``(loss,
    lse with the class axis kept, gradient or None)``; the gradient has the logits'
    shape and dtype (in ``out`` when given, which may be ``logits`` itself).
    ``aux``: with ``spec.aux``, a dict that receives each position's ``aux_outputs``.
    """
    if targets is None:
        targets = _targets(xp, labels, spec, logits)
    if with_grad:
        targets.scale_by(scale, in_place=in_place or out is not None)
    sums, exp_shifted = logit_sums(
        xp, logits, targets, out=out, in_place=in_place, one_pass_sums=with_grad
    )
    loss, lse = combine(xp, sums, targets)
    if aux is not None and spec.aux:
        aux.update(aux_outputs(xp, sums, targets))
    if not with_grad:
        return loss, lse, None
    grad = gradient(
        xp,
        exp_shifted,
        sums["sum_exp"],
        targets,
        lse=lse,
        in_place=in_place or out is not None,
        chain=sums["chain"],
        exp_dot=sums.get("exp_dot"),
    )
    if out is not None and grad is not out:
        out[...] = grad
        grad = out
    return loss, lse, grad


def reduce(xp: Namespace, loss: Array, denominator: Any, reduction: str) -> Array:
    """Apply ``reduction``; a "mean" over nothing (every position left out) is 0, not NaN."""
    return reduce_with_denominator(xp, loss, denominator, reduction)[0]


def reduce_with_denominator(
    xp: Namespace,
    loss: Array,
    denominator: Any,
    reduction: str,
    all_reduce_sum: Callable[[list[Array]], list[Array]] | None = None,
) -> tuple[Array, Any]:
    """``reduce``, and the mean's denominator (what a backward pass divides by).

    ``all_reduce_sum``: adds values up over the processes that split the batch, for a
    global mean (not the mean of means). ``denominator`` is then the parts
    ``(count, weight total or None)`` of ``denominator_parts``: they are added up first,
    and PyTorch's rule (``_targets.denominator_rule``) applies to the global sums, so a
    process whose own kept weights sum to 0 does not make the global mean NaN.
    """
    if all_reduce_sum is None:
        if reduction == "none":
            return loss, denominator
        # (A 0-d loss is its own sum: a fused total, or one element's loss.)
        total = loss if loss.ndim == 0 else xp.sum(loss)
        if reduction == "sum":
            return total, denominator
        return _ops.per_unit(xp, total, denominator), denominator
    count, weight_total = denominator
    if reduction == "none":
        return loss, denominator_rule(xp, count, weight_total)
    total = xp.sum(loss)
    count = _as_array(xp, count, loss)
    values = [total, count] if weight_total is None else [total, count, weight_total]
    total, count, *weights = all_reduce_sum(values)
    denominator = denominator_rule(xp, count, weights[0] if weights else None)
    if reduction == "sum":
        return total, denominator
    return _ops.per_unit(xp, total, denominator), denominator


def _as_array(xp: Namespace, count: Any, like: Array) -> Any:
    """A count that is a Python int (every position known to count) as a 0-d array of
    ``like``'s dtype and device, for an all-reduce."""
    if isinstance(count, int):
        return xp.asarray(float(count), dtype=like.dtype, device=device(like))
    return count


def denominator_parts(labels: Array, spec: Spec, *, xp: Namespace, like: Array) -> tuple[Any, Any]:
    """``(number of kept positions, sum of their w_y or None)`` from the labels alone:
    the mean's denominator before PyTorch's rule, for ``reduce_with_denominator`` over
    processes. ``like``: an array of the compute dtype on the logits' device."""
    return _targets(xp, labels, spec, like).denominator_parts()


def reduction_scale(
    labels: Array, spec: Spec, *, xp: Namespace, like: Array
) -> tuple[Any, Any, Targets]:
    """``(scale, denominator, targets)`` from the labels alone, before any logit is read:
    each position's weight in the reduced loss (the ``scale`` of ``loss_and_grad``), the
    mean's denominator, and the targets (for ``loss_and_grad``). ``like``: an array of
    the compute dtype on the logits' device."""
    targets = _targets(xp, labels, spec, like)
    denominator = targets.mean_denominator()
    scale = _ops.per_unit(xp, 1.0, denominator) if spec.reduction == "mean" else 1.0
    return scale, denominator, targets


def smooth_ce(
    logits: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    in_place: bool = False,
    aux: dict[str, Array] | None = None,
    differentiated: bool = False,
) -> tuple[Array, Array, Any]:
    """Forward pass: ``(reduced loss, lse with the class axis kept, mean denominator)``.
    ``in_place``: the pass may overwrite its own temporaries (not under autodiff of
    PyTorch through the core). ``aux``: with ``spec.aux``, a dict that receives the
    auxiliary outputs (``aux_outputs``), reduced as ``reduce_aux`` does.

    ``differentiated``: the framework differentiates this pass itself (rather than
    taking the fused gradient). The logits of left-out positions are then replaced by 0
    first: the mask hides what they give from the loss, but a row of -inf (``log 0``,
    ``-inf - -inf``), +inf or NaN would still reach the derivatives as ``0 * inf``, in
    the logits' and also in a differentiated ``smoothing``, ``weight`` or ``prior``. One
    select over the logits, only where some position is left out (autodiff then keeps
    that copy for its backward pass)."""
    targets = _targets(xp, labels, spec, logits)
    valid = targets.positions.valid
    if differentiated and valid is not None:
        logits = xp.where(xp.expand_dims(valid, axis=spec.axis), logits, 0.0)
    per_position: dict[str, Array] = {}
    loss, lse, _ = loss_and_grad(
        logits,
        labels,
        spec,
        1.0,
        xp=xp,
        with_grad=False,
        in_place=in_place,
        targets=targets,
        aux=per_position,
    )
    if aux is not None and spec.aux:
        aux.update(reduce_aux(xp, per_position, targets, spec.reduction))
    denominator = targets.mean_denominator()
    return reduce(xp, loss, denominator, spec.reduction), lse, denominator


def reduced_loss_and_grad(
    logits: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    aux: dict[str, Array] | None = None,
) -> tuple[Array, Array]:
    """The reduced loss and its gradient from one pass, with a unit cotangent per
    reduced value (for "none", row i is d loss_i / d z_i). ``aux``: as in ``smooth_ce``."""
    scale, denominator, targets = reduction_scale(labels, spec, xp=xp, like=logits)
    per_position: dict[str, Array] = {}
    loss, _, grad = loss_and_grad(
        logits, labels, spec, scale, xp=xp, targets=targets, aux=per_position
    )
    if aux is not None and spec.aux:
        aux.update(reduce_aux(xp, per_position, targets, spec.reduction))
    return reduce(xp, loss, denominator, spec.reduction), grad


def log_softmax_applies(spec: Spec) -> bool:
    """Whether ``log_softmax_loss_and_grad`` computes this spec's loss: class ids, no
    class weights, and nothing that reads more of a row than its log-softmax (no soft
    cap, z-loss, confidence penalty or auxiliary output). Positions may be left out
    (``where``, ``ignore_index``).

    Where the pass's results are exact: where every position is kept, a finite loss
    means finite log-probabilities, so a finite loss is the whole condition, for the
    gradient too (a class weight of 0 on the target, without smoothing, would hide a row
    of +inf or all -inf from the loss but not from the gradient: hence no weights).
    A left-out row's loss is 0 whatever its logits in the per-position form (the mask
    selects); a "sum" or "mean" taken from totals (``sums_first``) multiplies its terms by
    0, so a non-finite logit there makes the result NaN, never a finite wrong number. Its
    gradient row is ``0 * exp(s)``: NaN for such logits, where the exact value is 0. So
    with positions left out and a gradient, the condition is a finite loss and a finite
    gradient (``leaves_positions_out``). Where it fails, the caller takes the pass
    shifted by the row maximum, which defines those rows' values."""
    return not (
        spec.dense
        or spec.weight is not None
        or spec.softcap is not None
        or spec.z_loss
        or spec.confidence_penalty
        or spec.aux
    )


def reads_rows_only(spec: Spec) -> bool:
    """Whether the pass reads the logits only elementwise and through sums along the
    class axis (and gathers at the labels): nothing that contracts a row with a class
    vector (class weights, a prior vector), no argmax (auxiliary outputs) and no dense
    targets. Those read a column-major block much more slowly (a strided row is copied
    for the contraction, an argmax runs along the strided axis): the fused linear loss
    takes a namespace's ``matmul_out`` block for such specs only."""
    return not (spec.dense or spec.weight is not None or spec.named_prior is None or spec.aux)


def leaves_positions_out(spec: Spec) -> bool:
    """Whether some positions may be left out of the loss (``where``, ``ignore_index``):
    then ``log_softmax_loss_and_grad``'s gradient is exact only where it is finite (see
    ``log_softmax_applies``)."""
    return spec.where is not None or spec.ignore_index is not None


def sums_first(spec: Spec, targets: Targets) -> bool:
    """Whether a reduced loss may be taken from two totals over the kept positions (the
    sum of ``dot`` and of ``target``, ``log_softmax_terms``): a "sum" or "mean" whose
    factors are the same at every position (Python floats: one smoothing, no class
    weights), without the KL form's additive entropy, and with no id out of range."""
    return (
        spec.reduction != "none"
        and not spec.kl
        and targets.positions.out_of_range is None
        and _ops.is_number(targets.background)
        and _ops.is_number(targets.on_target)
    )


def log_softmax_terms(
    xp: Namespace, log_p: Array, targets: Targets, valid: Array | None, *, totals: bool
) -> tuple[Array, Array]:
    """``(dot, target)`` of ``_cross_entropy`` from ``s = log softmax(z)`` of some rows
    (``targets`` and ``valid``, the kept positions or None, of the same rows): with
    ``totals`` (``sums_first``) their sums over the kept positions (0-d), else one per
    position (class axis removed, nothing masked)."""
    axis = targets.spec.axis
    vector = smoothing_vector(targets.spec)
    target = xp.take_along_axis(log_p, targets.index, axis=axis)
    if totals and valid is None:
        # (Everything at once: no position-sized array at all.)
        if vector is None:
            return xp.sum(log_p), xp.sum(target)
        return xp.sum(_ops.dot_classes(xp, log_p, vector, axis)), xp.sum(target)
    dot = xp.sum(log_p, axis=axis) if vector is None else _ops.dot_classes(xp, log_p, vector, axis)
    target = xp.squeeze(target, axis=axis)
    if not totals:
        return dot, target
    # The kept positions' totals as sums of products with the mask as numbers (a select
    # over booleans is several times slower than arithmetic in PyTorch's CPU kernels).
    # A left-out row's non-finite terms then make them NaN: see ``log_softmax_applies``.
    keep = xp.astype(valid, dot.dtype)
    return xp.sum(keep * dot), xp.sum(keep * target)


def log_softmax_reduced(
    xp: Namespace,
    dot: Array,
    target: Array,
    targets: Targets,
    denominator: Any,
    *,
    totals: bool,
) -> Array:
    """The reduced loss from ``log_softmax_terms`` (of every row: totals added up, or the
    per-position terms joined), as ``reduce`` would give it."""
    spec = targets.spec
    if not totals:
        loss = _cross_entropy(xp, None, dot, target, targets)
        return reduce(xp, targets.positions.mask(xp, loss), denominator, spec.reduction)
    like = dot
    on_host = is_host_constant(dot)
    if on_host:
        # Two numbers in host memory (the CPU, nothing recording): the few scalar steps
        # below in Python floats (float64), where each would be a kernel call of a few
        # microseconds on a 0-d array; rounded once to the compute dtype.
        dot, target = float(dot), float(target)
    total = _cross_entropy(xp, None, dot, target, targets)
    reduced = total if spec.reduction == "sum" else _ops.per_unit(xp, total, denominator)
    if on_host:
        # (+ 0.0: no kept position gives +0, as a sum over nothing does, not -0.)
        reduced = xp.asarray(reduced + 0.0, dtype=like.dtype, device=device(like))
    return reduced


class FixedTargets:
    """``reduction_scale``'s targets (with the gradient's factors of a unit cotangent
    folded in: ``Targets.scale_by``), the mean's denominator and ``sums_first``, for
    options under which none of them depends on the labels' values: class ids known to be
    in range (``spec.checked``), nothing left out, one smoothing for every position and
    no vector among the options. Made once from one call's labels
    (``fixed_targets``), they hold only Python numbers and the (array-free) spec, and
    serve every call with the same spec and positions' shape (the logits' dtype does not
    matter: every term is a Python float): the log-softmax forms then compute no term of
    the target algebra again. (An adapter's route for repeated calls keeps one per known
    options.)"""

    def __init__(
        self, template: Targets, denominator: int, totals: bool, shape: tuple, index_dtype: Any
    ):
        self.template, self.denominator, self.totals = template, denominator, totals
        self.shape, self.index_dtype = shape, index_dtype

    def targets(self, xp: Namespace, labels: Array, spec: Spec, like: Array) -> Targets:
        """The targets of class ids ``labels`` (in range), as ``reduction_scale`` would
        make them and ``scale_by`` scale them for a unit cotangent."""
        if spec is not self.template.spec and spec != self.template.spec:
            raise ValueError("These fixed targets were made for other options.")
        if tuple(labels.shape) != self.shape:
            raise ValueError(
                f"These fixed targets were made for positions of shape {self.shape}; "
                f"received labels of shape {tuple(labels.shape)}."
            )
        if labels.dtype != self.index_dtype:
            labels = xp.astype(labels, self.index_dtype)
        return self.template.with_ids(xp, labels, like=like)


def fixed_targets(labels: Array, spec: Spec, *, xp: Namespace, like: Array) -> FixedTargets | None:
    """``FixedTargets`` made from these labels (``like``: an array of the compute dtype
    on the logits' device), or None where the options do not allow them (see there)."""
    if spec.dense or not spec.checked or leaves_positions_out(spec) or spec.has_arrays():
        return None
    scale, denominator, targets = reduction_scale(labels, spec, xp=xp, like=like)
    totals = sums_first(spec, targets)
    targets.scale_by(scale, in_place=True)
    template = targets.without_ids()
    if template is None or type(denominator) is not int:
        return None
    safe_labels = targets.positions.safe_labels
    return FixedTargets(template, denominator, totals, tuple(safe_labels.shape), safe_labels.dtype)


def log_softmax_targets(
    xp: Namespace,
    labels: Array,
    spec: Spec,
    like: Array,
    fixed: FixedTargets | None,
    *,
    with_grad: bool,
) -> tuple[Targets, Any, bool]:
    """``(targets, mean denominator, sums_first)`` of the log-softmax forms: made of the
    labels (``reduction_scale``; with ``with_grad`` scaled for a unit cotangent, the
    factors of the gradient only: the loss's terms read the targets unscaled), or
    completed from ``fixed`` (which holds them so scaled) where the caller keeps it."""
    if fixed is not None:
        return fixed.targets(xp, labels, spec, like), fixed.denominator, fixed.totals
    scale, denominator, targets = reduction_scale(labels, spec, xp=xp, like=like)
    totals = sums_first(spec, targets)
    if with_grad:
        targets.scale_by(scale, in_place=True)
    return targets, denominator, totals


def log_softmax_loss_and_grad(
    logits: Array,
    labels: Array,
    spec: Spec,
    *,
    xp: Namespace,
    with_grad: bool = True,
    fixed: FixedTargets | None = None,
) -> tuple[Array, Array | None]:
    """``reduced_loss_and_grad`` in fewer operations, for a spec where
    ``log_softmax_applies``: the rows are shifted by their logsumexp rather than their
    maximum, ``s = log softmax(z)`` (the namespace's fused ``log_softmax``, which also
    converts half-precision logits), so that ``lse(s) = 0`` and ``exp(s)`` is the softmax
    the gradient starts from, in place. The same targets, loss terms and gradient as the
    pass above, in one block of every row (block by block of rows:
    ``_layouts.blocked_log_softmax_loss_and_grad``).

    Exact where the loss is finite (and the gradient, where ``leaves_positions_out``). A
    row with a NaN or +inf logit, or of all -inf, makes ``s`` NaN (a kept one makes the
    loss not finite, a left-out one its gradient row): there the caller takes the pass
    above, which defines those rows' values (a finite gradient for a row of all -inf,
    for one).
    Returns the reduced loss and, with ``with_grad``, the gradient of the reduced loss in
    the compute dtype (for "none", row i is d loss_i / d z_i).

    ``fixed``: this spec's ``FixedTargets`` for labels of this shape (``fixed_targets``),
    where the caller keeps them: the targets are then not made again.
    """
    log_p = _ops.log_softmax(xp, logits, spec.axis, _ops.compute_dtype(xp, logits.dtype))
    targets, denominator, totals = log_softmax_targets(
        xp, labels, spec, log_p, fixed, with_grad=with_grad
    )
    dot, target = log_softmax_terms(xp, log_p, targets, targets.positions.valid, totals=totals)
    reduced = log_softmax_reduced(xp, dot, target, targets, denominator, totals=totals)
    if not with_grad:
        return reduced, None
    inplace_exp = getattr(xp, "inplace_exp", None)
    softmax = xp.exp(log_p) if inplace_exp is None else inplace_exp(log_p)
    return reduced, gradient(xp, softmax, None, targets, lse=None, in_place=True)


def _cotangent_scale(
    xp: Namespace, cotangent: Array, denominator: Any, spec: Spec, lse: Array
) -> Any:
    """Each position's cotangent from that of the reduced loss."""
    if spec.reduction == "none":
        return cotangent
    if spec.reduction == "mean":
        cotangent = _ops.per_unit(xp, cotangent, denominator)
    axis = spec.axis
    return xp.broadcast_to(cotangent, lse.shape[:axis] + lse.shape[axis + 1 :])


def smooth_ce_grad(
    logits: Array,
    labels: Array,
    lse: Array | None,
    denominator: Any,
    cotangent: Array,
    spec: Spec,
    *,
    xp: Namespace,
    shard_start: Any = None,
    values: dict[str, Any] | None = None,
    exp_dot: Array | None = None,
) -> Array:
    """The gradient of the reduced loss with respect to ``logits``, times ``cotangent``,
    from a saved logsumexp (``lse``, class axis kept; None: recomputed from the logits,
    for a gradient that is itself differentiated): the backward half of the pass,
    functional (so it can itself be differentiated).

    With ``shard_start``, ``logits`` are the classes ``[start, start + size)`` of a
    class-sharded pass and ``values`` the reduced ``class_values`` of its forward
    (``sharded_loss``); the result is this shard's part of the gradient. With a
    confidence penalty, a shard needs ``exp_dot``, ``sum_k p_k log p_k`` over all the
    classes (``sharded_loss``'s ``p_log_p``); whole logits take it here.
    """
    positions = Positions(xp, labels, spec, like=logits)
    shard = None
    if shard_start is not None:
        shard = Shard(xp, positions, shard_start, logits.shape[spec.axis])
    targets = Targets(xp, labels, spec, positions, like=logits, values=values, shard=shard)
    chain = None
    if spec.softcap is not None:
        logits, chain = _ops.soft_cap(xp, logits, spec.softcap)
    if lse is None:
        # Recomputed (differentiably, where the namespace records operations): the
        # logsumexp of the logits the loss is of, capped or not.
        lse = _ops.logsumexp(xp, logits, spec.axis)
    targets.scale_by(_cotangent_scale(xp, cotangent, denominator, spec, lse))
    # A row of all -inf (lse = -inf) has softmax 0, not exp(-inf - (-inf)) = nan. Only
    # that lse is replaced: at lse = +inf (a +inf logit) or NaN the softmax keeps the
    # pass's values (NaN at a +inf logit, 0 at a finite one; NaN along a row with a NaN),
    # where replacing them by 0 made it exp(z), a finite and wrong gradient.
    softmax = xp.exp(logits - xp.where(lse == -math.inf, 0.0, lse))
    return gradient(
        xp, softmax, None, targets, lse=lse, in_place=False, chain=chain, exp_dot=exp_dot
    )

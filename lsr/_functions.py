"""The public generic functions: any array-API array in, the same array type out."""

from __future__ import annotations

import math
from typing import Any

from lsr import _core
from lsr._aux import as_aux
from lsr._checks import (
    cast,
    check_dtype_argument,
    check_label_range,
    check_num_classes,
    check_prior,
    check_smoothing,
    index_labels,
    is_floating_dtype,
    is_integer_dtype,
    matchable_ignore_index,
    prepare_smooth_ce,
)
from lsr._compat import array_namespace
from lsr._typing import Namespace
from lsr._validation import check_positive_int, fail_type, fail_value, normalize_axis


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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
) -> Any:
    r"""Label-smoothed softmax cross-entropy ``H(q', softmax(logits))``.

    ``q' = (1 - smoothing) q + smoothing u``, with ``q`` the one-hot (or given dense)
    target and ``u`` the distribution named by ``prior`` (Szegedy et al. 2016,
    "Rethinking the Inception Architecture for Computer Vision", section 7). For integer
    labels the loss is computed in closed form, ``lse(z) - sum_k q'_k z_k``, without
    building an N x K target.

    Args:
        logits: unnormalized scores, shape ``(..., K, ...)`` with the K classes on
            ``axis``. float16/bfloat16 are computed (and returned) in float32.
        labels: integer class ids with the class axis removed (any integer dtype), or
            dense floating targets (one-hot or soft) of the logits' shape.
        smoothing: epsilon in [0, 1]; a Python float, a 0-d array (so it may be traced),
            or one epsilon per position: an array of the positions' shape (that of
            class-id labels; the logits' shape without ``axis``) or broadcastable to it
            (NumPy's rule: (N, 1) is one epsilon per example of (N, T) tokens). Values
            outside [0, 1] raise when they can be read, else make every position NaN.
        prior: ``"uniform"`` (``u_k = 1/K``: PyTorch, Keras, optax; the true class gets
            ``1 - eps + eps/K``), ``"others"`` (eps spread over the K - 1 other classes;
            the true class gets exactly ``1 - eps``: cleverhans 2017, fairseq, T5X), or an
            array of shape (K,) holding a class distribution (see ``estimate_prior``).
        axis: the class axis of ``logits``.
        ignore_index: integer labels equal to it get loss 0 and gradient 0 and are left
            out of the mean (255 in segmentation, -100 in NLP). Integer labels only.
        weight: per-class weights of shape (K,), with PyTorch's semantics. Integer
            labels: ``(1 - eps) w_y (-log p_y) + eps sum_k u_k w_k (-log p_k)`` and "mean"
            divides by the sum of ``w_y`` over kept positions. Dense labels:
            ``sum_k w_k q'_k (-log p_k)`` and "mean" divides by the number of kept positions.
        where: optional boolean mask of the positions (the labels' position shape) to
            keep, as in optax; masked positions count like ignored ones.
        reduction: ``"none"`` (the positions' shape), ``"sum"`` or ``"mean"``. A mean over
            no kept position is 0 (with zero gradient), not NaN.
        kl: return the KL divergence ``KL(q' || p)`` (the loss minus the target entropy,
            weighted like the loss), whose minimum is 0, as T5X reports it.
        z_loss: coefficient of the auxiliary ``z_loss * logsumexp(logits)**2`` per
            position (PaLM, T5X).
        softcap: soft-capping: the loss (and its gradient) is of
            ``softcap * tanh(logits / softcap)`` (Gemma 2 caps its final logits at
            30). A logit of -inf (a masked class) stays masked. None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per
            position (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing
            Confident Output Distributions"), weighted and reduced like ``z_loss``
            (with ``softcap``: the entropy of the capped logits' softmax).
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` (integer labels
            only), taken from the same pass over the logits: see ``lsr.Aux``. False
            (the default) returns the loss alone and takes no extra sum.
        causal_shift: next-token prediction: the logits at position t are scored
            against the label at t + 1 along the labels' last axis (the sequence), and
            each sequence's last position is left out (as ``where``). Only the labels and
            a mask are shifted: the logits are never sliced or copied. Class ids only;
            ``where`` is not shifted (it masks the logits' positions): mark padding
            with ``ignore_index``.

    Returns:
        The loss: a 0-d array for "sum" and "mean", else the positions' shape. With
        ``return_aux=True``, ``(loss, aux)``.

    Raises:
        TypeError: non-floating logits, labels of another dtype, arrays of mixed libraries.
        ValueError: bad options or shapes, or (for concrete arrays) labels out of range,
            smoothing outside [0, 1], a prior that is not a distribution. Under tracing
            (``jax.jit``, ``tf.function``, ``torch.compile``) value checks cannot run: an
            out-of-range label then makes its loss (and any reduction over it) NaN.

    Example:
        >>> import numpy as np
        >>> import lsr
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> print(np.round(lsr.smooth_ce(logits, np.array([0, 1]), smoothing=0.1), 4))
        0.5047
        >>> loss, aux = lsr.smooth_ce(logits, np.array([0, 1]), return_aux=True)
        >>> print(np.round(aux.nll, 4), aux.correct)
        0.3964 1.0
    """
    xp, logits, labels, spec = prepare_smooth_ce(
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
    aux: dict[str, Any] = {}
    # (Whatever library the arrays are of, its autodiff may differentiate this.)
    loss, _, _ = _core.smooth_ce(logits, labels, spec, xp=xp, aux=aux, differentiated=True)
    return (loss, as_aux(aux)) if spec.aux else loss


def smooth_labels(
    labels: Any,
    num_classes: int | None = None,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    dtype: Any = None,
) -> Any:
    r"""Dense smoothed targets ``q' = (1 - smoothing) q + smoothing u``.

    Never modifies ``labels``. With ``prior="others"`` a one-hot row becomes
    ``clip(q, eps/(K-1), 1-eps)`` (cleverhans' 2017 MNIST tutorial); with ``"uniform"`` it
    becomes ``q - eps (q - 1/K)`` (PyTorch, Keras, optax, cleverhans v3).

    Args:
        labels: integer class ids (then ``num_classes`` is required and the class axis
            is inserted at ``axis`` of the result), or dense floating targets whose class
            axis is ``axis``.
        num_classes: K, for integer labels only.
        smoothing: epsilon in [0, 1]: a number, a 0-d array, or one epsilon per position
            (an array of the integer labels' shape, or dense ones' without ``axis``, or
            broadcastable to it).
        prior: ``"uniform"``, ``"others"`` or a (K,) class distribution (see ``smooth_ce``).
        axis: the class axis (of the result).
        dtype: the result's floating dtype; default: the dense labels' dtype, or the
            namespace's default floating dtype for integer labels.

    Returns:
        The smoothed targets, shape ``labels.shape`` with K inserted at ``axis`` for
        integer labels, else ``labels.shape``.

    Example:
        >>> import numpy as np
        >>> import lsr
        >>> print(lsr.smooth_labels(np.array([1]), 4, smoothing=0.2, prior="others"))
        [[0.06666667 0.8        0.06666667 0.06666667]]
    """
    xp = array_namespace(
        labels,
        None if isinstance(prior, str) else prior,
        smoothing if hasattr(smoothing, "shape") else None,
    )
    check_dtype_argument(xp, dtype)
    if is_integer_dtype(xp, labels.dtype):
        if num_classes is None:
            fail_value("Integer `labels` need `num_classes`.", "num_classes", num_classes)
        check_positive_int("num_classes", num_classes)
        axis = normalize_axis(axis, labels.ndim + 1)
        if dtype is None:
            dtype = _default_float(xp, labels)
        labels = index_labels(xp, labels)
        checked = check_label_range(xp, labels, num_classes, None) is not None
        positions, like = tuple(labels.shape), labels
        targets = _core.one_hot(labels, num_classes, xp=xp, axis=axis, dtype=dtype)
        if not checked:
            # Unchecked ids (tracing, accelerators): one outside [0, K) cannot raise, so
            # its row is NaN, not a row of smoothing alone.
            targets = _core.nan_where_out_of_range(targets, labels, num_classes, xp=xp, axis=axis)
    elif is_floating_dtype(xp, labels.dtype):
        if labels.ndim < 1:
            fail_value("Dense `labels` need a class axis.", "labels", labels)
        axis = normalize_axis(axis, labels.ndim)
        if num_classes is not None and num_classes != labels.shape[axis]:
            fail_value(
                f"`num_classes` must match the dense labels' class axis ({labels.shape[axis]}).",
                "num_classes",
                num_classes,
            )
        num_classes = labels.shape[axis]
        check_num_classes(num_classes, "labels.shape", tuple(labels.shape))
        targets = cast(xp, labels, labels.dtype if dtype is None else dtype)
        shape = tuple(labels.shape)
        positions = shape[:axis] + shape[axis + 1 :]
        like = targets[tuple(0 if d == axis else slice(None) for d in range(len(shape)))]
    else:
        fail_type("`labels` must be integer class ids or floating targets.", "labels", labels)
    spec = _core.Spec(
        num_classes=num_classes,
        axis=axis,
        dense=True,
        smoothing=check_smoothing(
            xp,
            smoothing,
            targets.dtype,
            positions,
            like=like,
            where="the shape of class-id labels; dense ones' without the class axis",
        ),
        prior=check_prior(xp, prior, num_classes, targets.dtype),
    )
    return _core.smooth_dense_targets(targets, spec, xp=xp)


def estimate_prior(
    labels: Any,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    pseudocount: float = 0.0,
    dtype: Any = None,
) -> Any:
    """The class distribution of integer ``labels``, for ``prior=`` in ``smooth_ce``.

    ``(count_k + pseudocount) / sum_j (count_j + pseudocount)``; positions equal to
    ``ignore_index`` are not counted. A positive ``pseudocount`` keeps unseen classes
    above 0.

    Example:
        >>> import numpy as np
        >>> import lsr
        >>> print(lsr.estimate_prior(np.array([0, 0, 1, 2]), 3))
        [0.5  0.25 0.25]
    """
    xp = array_namespace(labels)
    if not is_integer_dtype(xp, labels.dtype):
        fail_type("`labels` must be integer class ids.", "labels", labels)
    check_positive_int("num_classes", num_classes)
    if (
        isinstance(pseudocount, bool)
        or not isinstance(pseudocount, (int, float))
        or pseudocount < 0
    ):
        fail_value("`pseudocount` must be a non-negative number.", "pseudocount", pseudocount)
    check_dtype_argument(xp, dtype)
    labels = index_labels(xp, labels, ignore_index)
    ignore_index = matchable_ignore_index(xp, ignore_index, labels.dtype)
    checked = check_label_range(xp, labels, num_classes, ignore_index) is not None
    if not pseudocount and checked:
        if ignore_index is None:
            kept = math.prod(labels.shape)
        else:
            kept = int(xp.sum(xp.astype(labels != ignore_index, labels.dtype)))
        if kept == 0:
            # 0 / 0 for every class: a NaN prior (what tracing still gives).
            fail_value(
                "`estimate_prior` needs at least one label that is not ignore_index, or a "
                "positive `pseudocount` (which makes the estimate uniform).",
                "labels",
                labels,
            )
    dtype = _default_float(xp, labels) if dtype is None else dtype
    prior = _core.estimate_prior(
        labels,
        num_classes,
        xp=xp,
        ignore_index=ignore_index,
        pseudocount=float(pseudocount),
        dtype=dtype,
    )
    return prior


def _default_float(xp: Namespace, like: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.float32
    from lsr._compat import device

    return info().default_dtypes(device=device(like))["real floating"]

"""A float64 NumPy reference written plainly from the definition.

It builds the dense smoothed target q' = (1 - eps) q + eps u and evaluates
sum_k w_k q'_k (-log softmax(z)_k) with no closed forms, no shared code with lsr, and
loops where they make the definition obvious. Tests compare lsr against it.
"""

from __future__ import annotations

import numpy as np


def smoothed_targets(labels, num_classes, *, smoothing, prior, axis=-1, dense=False):
    """q' with the class axis moved last. ``labels`` are ids (axis removed) or dense.
    ``smoothing``: one number, or one epsilon per position (an array that broadcasts to
    the positions' shape, the class axis removed)."""
    if dense:
        q = np.moveaxis(np.asarray(labels, dtype=np.float64), axis, -1)
    else:
        labels = np.asarray(labels)
        q = np.zeros((*labels.shape, num_classes))
        for index in np.ndindex(labels.shape):
            if 0 <= labels[index] < num_classes:
                q[(*index, int(labels[index]))] = 1.0
    if isinstance(prior, str) and prior == "uniform":
        u = np.full(q.shape, 1.0 / num_classes)
    elif isinstance(prior, str) and prior == "others":
        u = (1.0 - q) / (num_classes - 1)
    else:
        u = np.broadcast_to(np.asarray(prior, dtype=np.float64), q.shape)
    # Position by position: each row of q' uses its own epsilon.
    eps = np.broadcast_to(np.asarray(smoothing, dtype=np.float64), q.shape[:-1])
    smoothed = np.empty_like(q)
    for index in np.ndindex(q.shape[:-1]):
        smoothed[index] = (1.0 - eps[index]) * q[index] + eps[index] * u[index]
    return smoothed


def log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def smooth_ce(
    logits,
    labels,
    *,
    smoothing=0.1,
    prior="uniform",
    axis=-1,
    ignore_index=None,
    weight=None,
    where=None,
    reduction="mean",
    kl=False,
    z_loss=0.0,
    softcap=None,
    confidence_penalty=0.0,
):
    z = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    if softcap is not None:
        # Soft-capping, cap * tanh(z / cap); a masked class (-inf) stays masked.
        with np.errstate(invalid="ignore"):
            z = np.where(np.isneginf(z), z, softcap * np.tanh(z / softcap))
    num_classes = z.shape[-1]
    labels = np.asarray(labels)
    dense = labels.dtype.kind == "f"
    keep = np.ones(z.shape[:-1], dtype=bool)
    if not dense and ignore_index is not None:
        keep &= labels != ignore_index
    if where is not None:
        keep &= np.asarray(where)
    targets = smoothed_targets(
        labels, num_classes, smoothing=smoothing, prior=prior, axis=axis, dense=dense
    )
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    logp = log_softmax(z)
    # A class with no target mass contributes nothing, also where its logit is -inf.
    mass = w * targets
    with np.errstate(invalid="ignore"):
        loss = -np.where(mass == 0, 0.0, mass * logp).sum(axis=-1)
    if kl:
        with np.errstate(divide="ignore", invalid="ignore"):
            xlogx = np.where(targets > 0, targets * np.log(targets), 0.0)
        loss = loss + (w * xlogx).sum(axis=-1)
    if z_loss:
        lse = np.log(np.exp(z).sum(axis=-1))
        loss = loss + z_loss * lse**2
    if confidence_penalty:
        # Pereyra et al. 2017: minus beta times the entropy of the model's distribution.
        loss = loss - confidence_penalty * entropy(logp)
    loss = np.where(keep, loss, 0.0)  # (an ignored row may be NaN: all -inf logits)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if dense or weight is None:
        denominator = keep.sum()
    else:
        denominator = sum(w[int(labels[i])] for i in np.ndindex(labels.shape) if keep[i])
    if not keep.any():
        return 0.0  # lsr's rule for a mean over nothing (PyTorch: NaN)
    # PyTorch's rule otherwise: divide by the kept weight sum whatever its sign; 0 is 0/0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(loss.sum()) / np.float64(denominator) if denominator else np.nan


def entropy(logp):
    """-sum_k p_k log p_k over the last axis, with 0 log 0 = 0."""
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        return -np.where(p > 0, p * logp, 0.0).sum(axis=-1)


def aux_outputs(
    logits, labels, *, axis=-1, ignore_index=None, where=None, reduction="mean", softcap=None
):
    """(nll, lse, entropy, correct) of class ids, per position (0 where left out) or
    reduced over the kept positions (a mean divides by their number)."""
    z = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    if softcap is not None:
        with np.errstate(invalid="ignore"):
            z = np.where(np.isneginf(z), z, softcap * np.tanh(z / softcap))
    labels = np.asarray(labels)
    keep = np.ones(z.shape[:-1], dtype=bool)
    if ignore_index is not None:
        keep &= labels != ignore_index
    if where is not None:
        keep &= np.asarray(where)
    values = {name: np.zeros(z.shape[:-1]) for name in ("nll", "lse", "entropy", "correct")}
    for index in np.ndindex(z.shape[:-1]):
        if not keep[index]:
            continue
        row = z[index]
        top = row.max()
        lse = top + np.log(np.sum(np.exp(row - top)))
        y = int(labels[index])
        p = np.exp(row - lse)
        values["nll"][index] = lse - row[y]
        values["lse"][index] = lse
        values["entropy"][index] = -sum(pk * np.log(pk) for pk in p if pk > 0)
        # Top-1 by the first maximum: a tie goes to the lowest class id.
        first_top = min(k for k in range(len(row)) if row[k] == top)
        values["correct"][index] = float(first_top == y)
    if reduction == "none":
        return values
    totals = {name: value.sum() for name, value in values.items()}
    if reduction == "sum":
        return totals
    count = keep.sum()
    return {name: total / count if count else 0.0 for name, total in totals.items()}


def numerical_gradient(f, x, step=1e-6):
    """Central differences of a scalar function of a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (f(up) - f(down)) / (2 * step)
    return grad


def smooth_bce(
    logits, labels, *, smoothing, prior, weight=None, pos_weight=None, keep=None, reduction="mean"
):
    """The smoothed binary cross-entropy from its definition, element by element:
    y' = (1 - eps) y + eps u and -w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))],
    a term whose target share is 0 counting 0 even where its log is -inf."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    shape = z.shape
    u = np.broadcast_to(np.asarray(prior, dtype=np.float64), shape)
    w = np.broadcast_to(np.asarray(1.0 if weight is None else weight, np.float64), shape)
    r = np.broadcast_to(np.asarray(1.0 if pos_weight is None else pos_weight, np.float64), shape)
    kept = np.broadcast_to(np.asarray(True if keep is None else keep), shape)
    loss = np.zeros(shape)
    for index in np.ndindex(shape):
        if not kept[index]:
            continue
        target = (1.0 - smoothing) * y[index] + smoothing * u[index]
        # log sigmoid(z) = -log(1 + exp(-z)); log(1 - sigmoid(z)) = -log(1 + exp(z)).
        log_p = -np.logaddexp(0.0, -z[index])
        log_not_p = -np.logaddexp(0.0, z[index])
        positive = r[index] * target
        term = 0.0
        if positive != 0.0:
            term -= positive * log_p
        if 1.0 - target != 0.0:
            term -= (1.0 - target) * log_not_p
        loss[index] = w[index] * term
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    count = int(np.sum(kept))
    return loss.sum() / count if count else 0.0

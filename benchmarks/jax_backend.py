"""JAX: lsr against optax and against the closed form, all under ``jax.jit``.

The native loss is what a JAX user writes today for integer labels with label smoothing:
``optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(labels), eps))``, which
builds an N x K target (optax has no integer-label smoothing). The closed form
``logsumexp(z) - (1 - eps) z_y - eps mean(z)`` differentiated by JAX is the best a user
could write by hand; ``optax.softmax_cross_entropy_with_integer_labels`` (no smoothing) is
a lower bound.

For the binary loss the native one is what a JAX user writes for multi-label targets with
label smoothing: ``optax.sigmoid_binary_cross_entropy(logits, (1 - eps) y + eps / 2)``
averaged (optax has no binary smoothing; ``optax.smooth_labels`` spreads over classes),
which is itself the closed form ``-y' log sigmoid(z) - (1 - y') log sigmoid(-z)``
differentiated by JAX; the same on the raw targets is the lower bound.

Exact memory is XLA's own account of the compiled program (``memory_analysis()``:
results plus scratch, everything beyond its inputs).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

import lsr.jax as lsr_jax
from benchmarks.common import (
    BINARY_PRIOR,
    OVERHEAD_CASES,
    OVERHEAD_LINEAR,
    POSITIVE_FRACTION,
    Case,
    LinearCase,
    Loss,
    Method,
    OverheadPair,
)

NAME = "jax"
DTYPES = ("float32", "bfloat16")
EXACT_MEMORY_METHOD = "XLA memory_analysis: output + temp - alias"


def versions() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "optax": optax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    logits_key, labels_key, ignore_key = jax.random.split(jax.random.key(seed), 3)
    logits = jax.random.normal(logits_key, case.shape, dtype=jnp.float32)
    logits = logits.astype(getattr(jnp, case.dtype))
    if case.kind == "multilabel":
        positive = jax.random.uniform(labels_key, case.shape) < POSITIVE_FRACTION
        return logits, positive.astype(logits.dtype)
    labels = jax.random.randint(labels_key, case.label_shape, 0, case.num_classes)
    if case.ignore_index is not None:
        ignored = jax.random.uniform(ignore_key, case.label_shape) < case.ignored
        labels = jnp.where(ignored, case.ignore_index, labels)
    return logits, labels


def _masked_mean(case: Case, per_position, labels):
    if case.ignore_index is None:
        return jnp.mean(per_position)
    keep = labels != case.ignore_index
    return jnp.sum(jnp.where(keep, per_position, 0.0)) / jnp.maximum(jnp.sum(keep), 1)


def _lsr(case: Case):
    return functools.partial(
        lsr_jax.smooth_ce,
        smoothing=case.smoothing,
        ignore_index=case.ignore_index,
        axis=case.axis,
        reduction="mean",  # the batch mean the optax losses below take (lsr.jax: per example)
    )


def _optax_one_hot(case: Case):
    def loss(logits, labels):
        one_hot = jax.nn.one_hot(labels, case.num_classes, axis=case.axis, dtype=logits.dtype)
        if case.axis == logits.ndim - 1:
            targets = optax.smooth_labels(one_hot, case.smoothing)
        else:  # optax.smooth_labels smooths the last axis only.
            targets = (1.0 - case.smoothing) * one_hot + case.smoothing / case.num_classes
        per_position = optax.softmax_cross_entropy(logits, targets, axis=case.axis)
        return _masked_mean(case, per_position, labels)

    return loss


def _closed_form(case: Case):
    def loss(logits, labels):
        z = logits.astype(jnp.float32)
        safe = (
            labels
            if case.ignore_index is None
            else jnp.where(labels == case.ignore_index, 0, labels)
        )
        lse = jax.nn.logsumexp(z, axis=case.axis)
        target = jnp.take_along_axis(z, jnp.expand_dims(safe, case.axis), axis=case.axis)
        target = jnp.squeeze(target, case.axis)
        per_position = lse - (1 - case.smoothing) * target - case.smoothing * z.mean(case.axis)
        return _masked_mean(case, per_position, labels)

    return loss


def _optax_integer(case: Case):
    def loss(logits, labels):
        safe = (
            labels
            if case.ignore_index is None
            else jnp.where(labels == case.ignore_index, 0, labels)
        )
        per_position = optax.softmax_cross_entropy_with_integer_labels(logits, safe, axis=case.axis)
        return _masked_mean(case, per_position, labels)

    return loss


def _lsr_binary(case: Case):
    return functools.partial(
        lsr_jax.smooth_bce,
        smoothing=case.smoothing,
        prior=BINARY_PRIOR,
        reduction="mean",  # the mean the optax loss below takes (lsr.jax: per element)
    )


def _optax_binary(smoothing: float):
    def loss(logits, targets):
        if smoothing:
            targets = (1 - smoothing) * targets + smoothing * BINARY_PRIOR
        return optax.sigmoid_binary_cross_entropy(logits, targets).mean()

    return loss


NATIVE = "optax smooth_labels(one_hot) + softmax_cross_entropy (jit)"
CLOSED = "closed form, jax autodiff (jit)"
BINARY_NATIVE = "optax sigmoid_binary_cross_entropy(smoothed targets) (jit)"


def losses(case: Case, **_: Any) -> list[Loss]:
    if case.loss == "binary":
        return [
            Loss("lsr.jax.smooth_bce (jit)", "lsr", _lsr_binary(case), "jit", (BINARY_NATIVE,)),
            Loss(BINARY_NATIVE, "native", _optax_binary(case.smoothing), "jit"),
            Loss(
                "optax sigmoid_binary_cross_entropy eps=0 (jit)",
                "bound",
                _optax_binary(0.0),
                "jit",
            ),
        ]
    return [
        Loss("lsr.jax.smooth_ce (jit)", "lsr", _lsr(case), "jit", (NATIVE, CLOSED)),
        Loss(NATIVE, "native", _optax_one_hot(case), "jit"),
        Loss(CLOSED, "closed form", _closed_form(case), "jit"),
        Loss(
            "optax softmax_cross_entropy_with_integer_labels eps=0 (jit)",
            "bound",
            _optax_integer(case),
            "jit",
        ),
    ]


def sync(output: Any) -> None:
    jax.block_until_ready(output)


def _program_bytes(jitted, *inputs) -> int:
    stats = jitted.lower(*inputs).compile().memory_analysis()
    return int(stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def step(loss: Loss, mode: str, inputs: tuple[Any, Any]):
    fn = loss.fn if mode == "forward" else jax.value_and_grad(loss.fn)
    return functools.partial(jax.jit(fn), *inputs)


def methods(case: Case, mode: str, *, inputs=None, **_: Any) -> list[Method]:
    inputs = make_inputs(case) if inputs is None else inputs
    result = []
    for loss in losses(case):
        fn = loss.fn if mode == "forward" else jax.value_and_grad(loss.fn)
        jitted = jax.jit(fn)
        result.append(
            Method(
                loss,
                functools.partial(jitted, *inputs),
                functools.partial(_program_bytes, jitted, *inputs),
            )
        )
    return result


def check_agreement(case: Case) -> dict[str, Any]:
    """lsr's loss and gradient against the native optax loss (max abs difference)."""
    inputs = make_inputs(case)
    if case.loss == "binary":
        ours, theirs, against = _lsr_binary(case), _optax_binary(case.smoothing), BINARY_NATIVE
    else:
        ours, theirs, against = _lsr(case), _optax_one_hot(case), NATIVE
    lsr_value, lsr_grad = jax.jit(jax.value_and_grad(ours))(*inputs)
    ref_value, ref_grad = jax.jit(jax.value_and_grad(theirs))(*inputs)
    return {
        "against": against,
        "loss_abs_diff": float(jnp.abs(lsr_value - ref_value.astype(jnp.float32))),
        "grad_max_abs_diff": float(
            jnp.max(jnp.abs(lsr_grad.astype(jnp.float32) - ref_grad.astype(jnp.float32)))
        ),
    }


def _linear_inputs(case: LinearCase) -> tuple[jax.Array, jax.Array, jax.Array]:
    keys = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(keys[0], (case.rows, case.width))
    kernel = 0.05 * jax.random.normal(keys[1], (case.width, case.classes))
    labels = jax.random.randint(keys[2], (case.rows,), 0, case.classes)
    return hidden, kernel, labels


def linear_step(case: LinearCase, method: str):
    """Forward and backward of the output layer + loss, gradients for hidden and kernel."""
    hidden, kernel, labels = _linear_inputs(case)

    if method == "lsr":

        def loss(h, k):
            return lsr_jax.linear_smooth_ce(
                h, k, labels, chunk_size=case.chunk_size, reduction="mean"
            )

        name = "lsr.jax.linear_smooth_ce (jit)"
    else:

        def loss(h, k):
            return _optax_one_hot(Case("labels", (case.rows, case.classes)))(h @ k, labels)

        name = "optax one-hot loss of h @ k (jit)"
    return name, functools.partial(jax.jit(jax.grad(loss, argnums=(0, 1))), hidden, kernel)


def overhead_pairs() -> list[OverheadPair]:
    """Every public loss of ``lsr.jax`` beside optax's, on tiny inputs, compiled by
    ``jax.jit`` (the per-call cost is then dispatch) and called without it (what a new
    user sees first: every operation dispatched on its own)."""
    softmax_case = OVERHEAD_CASES["softmax"]
    linear_case = Case("labels", (OVERHEAD_LINEAR.rows, OVERHEAD_LINEAR.classes))
    args = {
        "softmax": make_inputs(softmax_case),
        "binary": make_inputs(OVERHEAD_CASES["binary"]),
        "linear": _linear_inputs(OVERHEAD_LINEAR),
    }
    one_hot = _optax_one_hot(softmax_case)
    linear_one_hot = _optax_one_hot(linear_case)

    def plain_linear(hidden, kernel, labels):
        return linear_one_hot(hidden @ kernel, labels)

    def linear_loss(hidden, kernel, labels):
        return lsr_jax.linear_smooth_ce(hidden, kernel, labels, smoothing=0.1, reduction="mean")

    pairs = [
        (
            "lsr.jax.smooth_ce",
            "optax softmax_cross_entropy(smooth_labels(one_hot))",
            "softmax",
            _lsr(softmax_case),
            one_hot,
        ),
        (
            "lsr.jax.smooth_bce",
            "optax sigmoid_binary_cross_entropy(smoothed targets)",
            "binary",
            _lsr_binary(OVERHEAD_CASES["binary"]),
            _optax_binary(0.1),
        ),
        (
            "lsr.jax.linear_smooth_ce",
            "optax softmax_cross_entropy(smooth_labels(one_hot)) of h @ k",
            "linear",
            linear_loss,
            plain_linear,
        ),
    ]
    return [
        OverheadPair(
            entry,
            rival,
            variant,
            inputs,
            ours,
            theirs,
            args[inputs],
            2 if inputs == "linear" else 1,
        )
        for variant in ("jit", "eager")
        for entry, rival, inputs, ours, theirs in pairs
    ]


def overhead_step(fn, args: tuple[Any, ...], differentiable: int, mode: str, variant: str):
    """One call of ``fn`` on ``args`` (jitted or not): the loss, or the loss and its
    gradients with respect to the first ``differentiable`` inputs."""
    if mode != "forward":
        fn = jax.value_and_grad(fn, argnums=tuple(range(differentiable)))
    if variant == "jit":
        fn = jax.jit(fn)
    return functools.partial(fn, *args)


def to_numpy(array: jax.Array) -> Any:
    return jax.device_get(array.astype(jnp.float32))

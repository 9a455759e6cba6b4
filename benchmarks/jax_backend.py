"""JAX: lsr against optax under ``jax.jit``.

The baseline is what a JAX user writes today for integer labels with label smoothing:
``optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(labels), eps))``, which
builds an N x K target. ``optax.softmax_cross_entropy_with_integer_labels`` (no
smoothing) is a lower bound. Memory is XLA's own account of the compiled program
(``compiled.memory_analysis()``): the bytes of its results plus its scratch buffers,
i.e. everything it allocates beyond its inputs. That is exact and needs no run.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

import lsr
from benchmarks.common import Case, Loss, Method

NAME = "jax"
KINDS = ("labels", "segmentation")

try:
    import lsr.jax as lsr_jax
except ImportError:  # The adapter is not there yet: time the generic function.
    lsr_jax = None


def versions() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "optax": optax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "lsr_implementation": "lsr.jax.smooth_ce"
        if lsr_jax is not None
        else "lsr.smooth_ce (generic, native autodiff: lsr.jax not importable)",
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    logits_key, labels_key, ignore_key = jax.random.split(jax.random.key(seed), 3)
    logits = jax.random.normal(logits_key, case.shape, dtype=jnp.float32)
    label_shape = case.shape[: case.axis] + case.shape[case.axis + 1 :]
    labels = jax.random.randint(labels_key, label_shape, 0, case.num_classes)
    if case.ignore_index is not None:
        ignored = jax.random.uniform(ignore_key, label_shape) < 0.1
        labels = jnp.where(ignored, case.ignore_index, labels)
    return logits, labels


def _lsr_loss(case: Case):
    module = lsr_jax if lsr_jax is not None else lsr
    return functools.partial(
        module.smooth_ce,
        smoothing=case.smoothing,
        ignore_index=case.ignore_index,
        axis=case.axis,
    )


def _optax_smoothed(case: Case):
    def loss(logits, labels):
        one_hot = jax.nn.one_hot(labels, case.num_classes, axis=case.axis, dtype=logits.dtype)
        if case.axis == logits.ndim - 1:
            targets = optax.smooth_labels(one_hot, case.smoothing)
        else:  # optax.smooth_labels smooths the last axis only.
            targets = (1.0 - case.smoothing) * one_hot + case.smoothing / case.num_classes
        per_position = optax.softmax_cross_entropy(logits, targets, axis=case.axis)
        if case.ignore_index is None:
            return jnp.mean(per_position)
        keep = labels != case.ignore_index
        return jnp.sum(jnp.where(keep, per_position, 0.0)) / jnp.maximum(jnp.sum(keep), 1)

    return loss


def _optax_integer(case: Case):
    def loss(logits, labels):
        if case.ignore_index is None:
            return jnp.mean(
                optax.softmax_cross_entropy_with_integer_labels(logits, labels, axis=case.axis)
            )
        keep = labels != case.ignore_index
        per_position = optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.where(keep, labels, 0), axis=case.axis
        )
        return jnp.sum(jnp.where(keep, per_position, 0.0)) / jnp.maximum(jnp.sum(keep), 1)

    return loss


ONE_HOT_BASELINE = "optax.softmax_cross_entropy + smooth_labels(one_hot) (jit)"


def lsr_losses(case: Case) -> list[Loss]:
    name = "lsr.jax.smooth_ce" if lsr_jax is not None else "lsr.smooth_ce"
    return [Loss(f"{name} (jit)", "lsr", _lsr_loss(case), "jit", ONE_HOT_BASELINE)]


def baseline_losses(case: Case) -> list[Loss]:
    return [
        Loss(ONE_HOT_BASELINE, "baseline", _optax_smoothed(case), "jit"),
        Loss(
            "optax.softmax_cross_entropy_with_integer_labels eps=0 (jit)",
            "bound",
            _optax_integer(case),
            "jit",
        ),
    ]


def sync(output: Any) -> None:
    jax.block_until_ready(output)


def program_bytes(jitted, *inputs) -> int:
    """Bytes the compiled program allocates beyond its inputs: results plus scratch."""
    stats = jitted.lower(*inputs).compile().memory_analysis()
    return int(stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def methods(case: Case, mode: str, **_: Any) -> list[Method]:
    logits, labels = make_inputs(case)
    result = []
    for loss in lsr_losses(case) + baseline_losses(case):
        fn = loss.fn if mode == "forward" else jax.value_and_grad(loss.fn)
        jitted = jax.jit(fn)
        result.append(
            Method(
                name=loss.name,
                role=loss.role,
                step=functools.partial(jitted, logits, labels),
                peak_bytes=functools.partial(program_bytes, jitted, logits, labels),
                memory_method="XLA compiled memory_analysis: output + temp - alias (exact)",
                compare_to=loss.compare_to,
            )
        )
    return result


def check_agreement(case: Case) -> dict[str, float]:
    """lsr's loss and gradient against the optax one-hot baseline (max abs difference)."""
    logits, labels = make_inputs(case)
    lsr_value, lsr_grad = jax.jit(jax.value_and_grad(_lsr_loss(case)))(logits, labels)
    ref_value, ref_grad = jax.jit(jax.value_and_grad(_optax_smoothed(case)))(logits, labels)
    return {
        "loss_abs_diff": float(jnp.abs(lsr_value - ref_value)),
        "grad_max_abs_diff": float(jnp.max(jnp.abs(lsr_grad - ref_grad))),
    }

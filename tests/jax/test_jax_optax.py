"""Parity with optax, the loss JAX users already run: values and gradients.

lsr's ``prior="uniform"`` is optax's convention: ``optax.smooth_labels(one_hot, eps)``
gives ``(1 - eps) q + eps / K``. With it, ``optax.softmax_cross_entropy`` is the
reference for dense and integer labels at any epsilon, and
``optax.softmax_cross_entropy_with_integer_labels`` at epsilon 0. The defaults are
optax's too: one loss per example, so a swap keeps the value of code that reduces by itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lsr.jax
from tests.backends import assert_close
from tests.conftest import get_backend

get_backend("jax")  # x64 on, as in every JAX session
N, K = 7, 11


def _inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(scale=4.0, size=(N, K)), dtype)
    labels = jnp.asarray(rng.integers(0, K, size=N))
    return logits, labels


def _close(actual, expected, dtype):
    # Two float32 implementations that round differently: a few ulps of the inputs' scale.
    assert actual.dtype == expected.dtype == dtype
    assert_close(actual, expected, np.dtype(dtype), scale=4.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("integer_labels", [False, True])
def test_matches_optax_smooth_labels_then_softmax_cross_entropy(smoothing, integer_labels, dtype):
    logits, labels = _inputs(dtype)
    one_hot = jax.nn.one_hot(labels, K, dtype=dtype)
    targets = labels if integer_labels else one_hot

    def ours(z):
        return lsr.jax.smooth_ce(z, targets, smoothing=smoothing, reduction="none")

    def theirs(z):
        return optax.softmax_cross_entropy(z, optax.smooth_labels(one_hot, smoothing))

    _close(jax.jit(ours)(logits), theirs(logits), dtype)
    position_weights = jnp.linspace(0.5, 2.0, N, dtype=dtype)
    grad = jax.jit(jax.grad(lambda z: jnp.sum(ours(z) * position_weights)))(logits)
    expected_grad = jax.grad(lambda z: jnp.sum(theirs(z) * position_weights))(logits)
    _close(grad, expected_grad, dtype)
    mean_grad = jax.grad(
        lambda z: lsr.jax.smooth_ce(z, targets, smoothing=smoothing, reduction="mean")
    )(logits)
    _close(mean_grad, jax.grad(lambda z: jnp.mean(theirs(z)))(logits), dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_matches_optax_integer_labels_without_smoothing(dtype):
    logits, labels = _inputs(dtype, seed=1)
    where = jnp.arange(N) % 3 != 0

    def ours(z):
        return lsr.jax.smooth_ce(z, labels, smoothing=0.0, where=where, reduction="none")

    def theirs(z):
        return optax.softmax_cross_entropy_with_integer_labels(z, labels, where=where)

    _close(ours(logits), theirs(logits), dtype)
    _close(
        jax.grad(lambda z: jnp.sum(ours(z)))(logits),
        jax.grad(lambda z: jnp.sum(theirs(z)))(logits),
        dtype,
    )


def test_smooth_labels_matches_optax():
    one_hot = jax.nn.one_hot(jnp.array([0, 3, 2]), 4)
    np.testing.assert_allclose(
        lsr.jax.smooth_labels(one_hot, smoothing=0.2), optax.smooth_labels(one_hot, 0.2)
    )
    np.testing.assert_allclose(
        lsr.jax.smooth_labels(jnp.array([0, 3, 2]), 4, smoothing=0.2, dtype=one_hot.dtype),
        optax.smooth_labels(one_hot, 0.2),
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_default_is_per_example_as_optax_integer_labels(dtype):
    """The swap ``optax.softmax_cross_entropy_with_integer_labels`` -> ``lsr.jax.smooth_ce``
    with no other change than ``smoothing=0.0`` keeps every example's loss, and so the
    value of a mean the caller takes with its own mask."""
    logits, labels = _inputs(dtype, seed=2)
    ours = lsr.jax.smooth_ce(logits, labels, smoothing=0.0)
    theirs = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    assert ours.shape == theirs.shape == (N,)
    _close(ours, theirs, dtype)
    mask = (jnp.arange(N) % 3 != 0).astype(dtype)
    _close(jnp.sum(ours * mask) / jnp.sum(mask), jnp.sum(theirs * mask) / jnp.sum(mask), dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("smoothing", [0.1, 0.35])
def test_default_is_per_example_as_optax_smooth_labels(smoothing, dtype):
    logits, labels = _inputs(dtype, seed=3)
    one_hot = jax.nn.one_hot(labels, K, dtype=dtype)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, smoothing))
    for targets in (labels, one_hot):
        ours = lsr.jax.smooth_ce(logits, targets, smoothing=smoothing)
        assert ours.shape == (N,)
        _close(ours, expected, dtype)


def test_the_other_losses_default_to_per_example_too():
    """``linear_smooth_ce`` and ``distill_loss`` against optax on the full logits."""
    rng = np.random.default_rng(4)
    hidden = jnp.asarray(rng.normal(size=(2, 3, 5)))
    kernel = jnp.asarray(rng.normal(size=(5, K)))
    labels = jnp.asarray(rng.integers(0, K, size=(2, 3)))
    one_hot = jax.nn.one_hot(labels, K, dtype=hidden.dtype)
    expected = optax.softmax_cross_entropy(hidden @ kernel, optax.smooth_labels(one_hot, 0.1))
    fused = lsr.jax.linear_smooth_ce(hidden, kernel, labels, smoothing=0.1, chunk_size=4)
    assert fused.shape == (2, 3)
    _close(fused, expected, jnp.float64)

    student, teacher = hidden @ kernel, jnp.asarray(rng.normal(size=(2, 3, K)))
    temperature = 2.0
    # Hinton et al. 2015: T**2 times the cross-entropy from the teacher's soft targets.
    expected = temperature**2 * optax.softmax_cross_entropy(
        student / temperature, jax.nn.softmax(teacher / temperature)
    )
    distilled = lsr.jax.distill_loss(student, teacher, temperature=temperature)
    assert distilled.shape == (2, 3)
    _close(distilled, expected, jnp.float64)

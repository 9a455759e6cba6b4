"""lsr.jax.linear_smooth_ce against optax on the full logits: values, gradients, jit,
and the compiled program's memory (flat in the number of rows)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lsr.jax as lj
from tests.backends import assert_close


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _inputs(shape=(13, 6), num_classes=9, dense=False, seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=shape))
    kernel = jnp.asarray(rng.normal(size=(shape[-1], num_classes)))
    bias = jnp.asarray(rng.normal(size=num_classes))
    if dense:
        labels = jnp.asarray(rng.dirichlet(np.ones(num_classes), size=shape[:-1]))
    else:
        labels = rng.integers(0, num_classes, size=shape[:-1])
        labels.reshape(-1)[::4] = -1
        labels = jnp.asarray(labels)
    return hidden, kernel, bias, labels


def _optax_loss(logits, labels, dense, reduction):
    """optax's smoothed cross-entropy; ignored labels (-1) masked out by hand."""
    num_classes = logits.shape[-1]
    if dense:
        targets, keep = labels, jnp.ones(labels.shape[:-1], dtype=bool)
    else:
        keep = labels >= 0
        targets = jax.nn.one_hot(jnp.where(keep, labels, 0), num_classes, dtype=logits.dtype)
    per_row = optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, 0.2))
    per_row = jnp.where(keep, per_row, 0.0)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return jnp.sum(per_row)
    return jnp.sum(per_row) / jnp.sum(keep)


@pytest.mark.parametrize("chunk_size", [1, 4, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dense", [False, True], ids=["class ids", "probabilities"])
@pytest.mark.parametrize("shape", [(13, 6), (3, 5, 6)], ids=["(N, d)", "(B, T, d)"])
def test_matches_optax_on_the_full_logits_under_jit(chunk_size, reduction, dense, shape):
    hidden, kernel, bias, labels = _inputs(shape, dense=dense)
    cotangent = jnp.linspace(0.5, 1.5, int(np.prod(shape[:-1]))).reshape(shape[:-1])
    if reduction != "none":
        cotangent = 1.7

    def ours(h, k, b):
        loss = lj.linear_smooth_ce(
            h,
            k,
            labels,
            bias=b,
            smoothing=0.2,
            ignore_index=None if dense else -1,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        return jnp.sum(loss * cotangent), loss

    def theirs(h, k, b):
        loss = _optax_loss(h @ k + b, labels, dense, reduction)
        return jnp.sum(loss * cotangent), loss

    (_, loss), grads = jax.jit(jax.value_and_grad(ours, argnums=(0, 1, 2), has_aux=True))(
        hidden, kernel, bias
    )
    (_, expected_loss), expected_grads = jax.value_and_grad(
        theirs, argnums=(0, 1, 2), has_aux=True
    )(hidden, kernel, bias)
    assert loss.shape == expected_loss.shape
    assert_close(np.asarray(loss), np.asarray(expected_loss), "float64")
    for actual, expected in zip(grads, expected_grads, strict=True):
        assert_close(np.asarray(actual), np.asarray(expected), "float64")


def test_where_mask_and_no_bias():
    hidden, kernel, _, labels = _inputs()
    labels = jnp.abs(labels)
    where = jnp.arange(13) % 3 != 0
    options = dict(where=where, reduction="mean")
    ours = jax.grad(lambda h: lj.linear_smooth_ce(h, kernel, labels, chunk_size=5, **options))
    theirs = jax.grad(lambda h: lj.smooth_ce(h @ kernel, labels, **options))
    assert_close(np.asarray(ours(hidden)), np.asarray(theirs(hidden)), "float64")


def test_bad_arguments_raise_at_trace_time():
    hidden, kernel, _, labels = _inputs()
    with pytest.raises(ValueError, match=r"`kernel` must have shape \(d, K\)"):
        lj.linear_smooth_ce(hidden, kernel.T, labels)
    with pytest.raises(ValueError, match="`chunk_size` must be a positive integer"):
        lj.linear_smooth_ce(hidden, kernel, labels, chunk_size=0)


def _program_bytes(fn, *args):
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes


def test_compiled_memory_stays_flat_as_rows_grow():
    """XLA's own account of loss + gradients: four times the rows add the N x d
    gradient of the hidden states (and O(N) vectors) to the fused path, with half the
    rows left out too, and N x K buffers to the plain one."""
    width, num_classes, chunk = 16, 4000, 64
    with jax.enable_x64(False):
        sizes = {}
        for rows in (256, 1024):
            hidden = jnp.ones((rows, width))
            kernel = jnp.ones((width, num_classes))
            labels = jnp.zeros((rows,), jnp.int32).at[::2].set(-100)

            def fused(h, k, labels=labels):
                return lj.linear_smooth_ce(
                    h, k, labels, chunk_size=chunk, reduction="mean", ignore_index=-100
                )

            def plain(h, k, labels=labels):
                return lj.smooth_ce(h @ k, labels, reduction="mean", ignore_index=-100)

            sizes[rows] = [
                _program_bytes(jax.value_and_grad(f, argnums=(0, 1)), hidden, kernel)
                for f in (fused, plain)
            ]
    fused_growth = sizes[1024][0] - sizes[256][0]
    plain_growth = sizes[1024][1] - sizes[256][1]
    assert fused_growth <= (1024 - 256) * (width * 4 + 32)
    assert plain_growth >= (1024 - 256) * num_classes * 4  # The check can fail.


@pytest.mark.parametrize("name", ["smoothing", "weight", "prior"])
def test_the_gradient_of_an_option_is_nan_not_zero(name):
    """The fused loss differentiates the hidden states, kernel and bias only; asked for an
    option's gradient, it says NaN rather than a plausible 0. The others are unaffected."""
    hidden = jnp.linspace(-1.0, 1.0, 48).reshape(6, 8)
    kernel = jnp.linspace(-1.0, 1.0, 32).reshape(8, 4)
    labels = jnp.array([0, 1, 2, 3, 0, 1])
    value = {
        "smoothing": jnp.asarray(0.1),
        "weight": jnp.ones(4),
        "prior": jnp.full((4,), 0.25),
    }[name]

    def loss(hidden, option):
        return lj.linear_smooth_ce(hidden, kernel, labels, reduction="mean", **{name: option})

    option_grad = jax.grad(loss, argnums=1)(hidden, value)
    assert bool(jnp.all(jnp.isnan(option_grad)))
    hidden_grad = jax.grad(loss)(hidden, value)
    expected = jax.grad(
        lambda h: lj.smooth_ce(h @ kernel, labels, reduction="mean", **{name: value})
    )(hidden)
    np.testing.assert_allclose(hidden_grad, expected, rtol=1e-5, atol=1e-7)

"""JAX-only edges: the generic path under ``jax.jit`` and 64-bit ids without x64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsr
import lsr.jax


def test_generic_path_under_jit_poisons_the_gradient_of_a_bad_label():
    """Autodiff through the core (``lsr.smooth_ce`` on jax arrays): an out-of-range label
    makes the loss NaN and its row of the gradient NaN, never a zero gradient."""
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
    labels = jnp.asarray([0, 9, 2])
    loss, grad = jax.jit(jax.value_and_grad(lambda z, y: lsr.smooth_ce(z, y)))(logits, labels)
    assert np.isnan(loss)
    assert np.all(np.isnan(grad[1]))
    # Only the bad row: the others keep their gradient where the loss is per position.
    per_row = jax.jit(jax.grad(lambda z, y: jnp.sum(lsr.smooth_ce(z, y, reduction="none"))))
    grad = per_row(logits, labels)
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[np.array([0, 2])]))


def test_generic_path_under_jit_poisons_traced_smoothing_and_prior():
    logits = jnp.zeros((2, 3))
    labels = jnp.asarray([0, 1])
    loss = jax.jit(lambda s: lsr.smooth_ce(logits, labels, smoothing=s))(jnp.float32(1.5))
    assert np.isnan(loss)
    prior = jnp.asarray([0.5, 0.5, 0.5])
    loss = jax.jit(lambda p: lsr.smooth_ce(logits, labels, prior=p))(prior)
    assert np.isnan(loss)


def test_int64_ids_beyond_int32_are_refused_without_x64():
    """Without x64, JAX would wrap 2**32 + 1 to class 1: refused while values are readable."""
    logits = np.zeros((2, 4), np.float32)
    labels = np.array([2**32 + 1, 0], np.int64)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"outside int32.*Received: labels with min=0"):
            lsr.jax.smooth_ce(logits, labels)
        # In range, 64-bit ids are fine.
        loss = lsr.jax.smooth_ce(logits, np.array([1, 0], np.int64))
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)
    # With x64 the ids stay 64-bit and are range-checked like any other.
    with jax.enable_x64(True), pytest.raises(ValueError, match="class ids"):
        lsr.jax.smooth_ce(logits, labels)


@pytest.mark.parametrize("library", ["numpy", "jax"])
def test_float0_labels_get_lsr_errors_on_repeated_calls(library):
    """A NumPy array of JAX's float0 dtype (a zero gradient) counts as a JAX array: as
    labels it gets lsr's errors (mixed libraries beside NumPy logits, not class ids
    beside JAX ones), also after good calls of the same shapes (the known options'
    lookup reads whether the labels' values are cheap, and such an array has no
    devices)."""
    logits, labels = np.zeros((6, 3), np.float32), np.array([0, 1, 2, 0, 1, 2])
    if library == "jax":
        logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    for _ in range(2):
        lsr.smooth_ce(logits, labels)
    message = "one array-API library" if library == "numpy" else "integer class ids"
    for _ in range(2):
        with pytest.raises(TypeError, match=message):
            lsr.smooth_ce(logits, np.zeros(6, jax.dtypes.float0))


def test_a_repeated_call_reads_ignore_index_for_the_index_dtype_of_now():
    """JAX's index dtype follows its x64 flag, which the known options' key does not
    hold: an ignore_index that int64 holds and int32 cannot (so that it matches no
    label) must not be compared with int32 ids after the flag was turned off."""
    logits = jnp.zeros((3, 4), jnp.float32)
    with jax.enable_x64(True):
        for _ in range(2):
            lsr.smooth_ce(logits, jnp.asarray([1, 2, 0], jnp.int32), ignore_index=2**40)
    with jax.enable_x64(False), pytest.raises(ValueError, match="class ids"):
        lsr.smooth_ce(logits, jnp.asarray([1, 7, 0], jnp.int32), ignore_index=2**40)


def _made_with_x64(values, dtype):
    with jax.enable_x64(True):
        return jnp.asarray(np.array(values, dtype))


_WIDE_ID_CALLS = {
    "lsr.smooth_ce": lambda y: lsr.smooth_ce(jnp.zeros((2, 4)), y),
    "lsr.jax.smooth_ce": lambda y: lsr.jax.smooth_ce(jnp.zeros((2, 4)), y, ignore_index=-100),
    "lsr.smooth_labels": lambda y: lsr.smooth_labels(y, 4, smoothing=0.1),
    "lsr.estimate_prior": lambda y: lsr.estimate_prior(y, 4),
    "lsr.smooth_bce": lambda y: lsr.smooth_bce(jnp.zeros(2), y),
    "lsr.jax.smooth_bce": lambda y: lsr.jax.smooth_bce(jnp.zeros(2), y),
    "lsr.smooth_binary_labels": lambda y: lsr.smooth_binary_labels(y, smoothing=0.1),
    # causal_shift concatenates the labels with an ignore_index column, which would cast
    # them to int32 before any other check saw them.
    "lsr.smooth_ce causal_shift": lambda y: lsr.smooth_ce(
        jnp.zeros((1, 2, 4)), y[None], causal_shift=True, ignore_index=-100
    ),
    "lsr.jax.linear_smooth_ce causal_shift": lambda y: lsr.jax.linear_smooth_ce(
        jnp.ones((1, 2, 3)), jnp.ones((3, 4)), y[None], causal_shift=True, ignore_index=-100
    ),
}


# (JAX warns where the causal shift's ignore_index column is made in the labels' int64,
# which it makes int32: the user's 64-bit array in a process without x64.)
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64:UserWarning")
@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("call", _WIDE_ID_CALLS.values(), ids=list(_WIDE_ID_CALLS))
def test_a_64bit_jax_array_used_without_x64_is_refused_before_it_wraps(call, dtype):
    """A jax array made while x64 was on keeps its 64-bit values; with x64 off, every
    JAX operation casts it to 32 bits first, and 2**32 + 1 becomes 1, a class id (or a
    positive binary label). Its stored values are read and such ids refused, on every
    entry point, also after good calls of the same shapes (the repeated-call path)."""
    good, bad = _made_with_x64([1, 0], dtype), _made_with_x64([2**32 + 1, 0], dtype)
    kept = "int32" if dtype is np.int64 else "uint32"
    with jax.enable_x64(False):
        expected = np.asarray(call(jnp.asarray([1, 0], jnp.int32)))
        for _ in range(2):
            np.testing.assert_allclose(np.asarray(call(good)), expected, rtol=1e-6)
        with pytest.raises(ValueError, match=rf"outside {kept}.*min=0, max={2**32 + 1}"):
            call(bad)


def test_a_repeated_binary_call_reads_ignore_index_for_the_index_dtype_of_now():
    """As above, for the binary checks' known options."""
    logits = jnp.zeros((2, 2), jnp.float32)
    with jax.enable_x64(True):
        for _ in range(2):
            lsr.smooth_bce(logits, jnp.asarray([[1, 0], [0, 1]], jnp.int32), ignore_index=2**40)
    with jax.enable_x64(False), pytest.raises(ValueError, match="0 or 1"):
        lsr.smooth_bce(logits, jnp.asarray([[1, 7], [0, 1]], jnp.int32), ignore_index=2**40)


def test_numpy_ids_beyond_32_bits_stay_numpys_with_jax_imported():
    """NumPy's own ids are never cast to 32 bits: with jax imported and x64 off, NumPy
    arrays on the generic path keep every id (the JAX check is for jax arrays and for
    NumPy arrays that become jax arrays)."""
    logits = np.zeros((2, 3), np.float32)
    with jax.enable_x64(False):
        loss = lsr.smooth_ce(logits, np.array([0, 2**40], np.uint64), ignore_index=2**40)
        np.testing.assert_allclose(loss, np.log(3.0), rtol=1e-6)
        with pytest.raises(ValueError, match="class ids"):
            lsr.smooth_ce(logits, np.array([0, 2**40], np.uint64))
        binary = lsr.smooth_bce(np.zeros(2, np.float32), np.array([0, 1], np.uint64))
        np.testing.assert_allclose(binary, np.log(2.0), rtol=1e-6)

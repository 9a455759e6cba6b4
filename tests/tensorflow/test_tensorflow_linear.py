"""lsr.tensorflow.linear_smooth_ce against lsr's own smooth_ce on the full logits (itself
checked against Keras and the reference), eager, in a tf.function and under XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import lsr.tensorflow as lt
from tests.backends import assert_close


def _inputs(shape=(13, 6), num_classes=9, dense=False, seed=0):
    rng = np.random.default_rng(seed)
    hidden = tf.constant(rng.normal(size=shape))
    kernel = tf.constant(rng.normal(size=(shape[-1], num_classes)))
    bias = tf.constant(rng.normal(size=num_classes))
    if dense:
        labels = tf.constant(rng.dirichlet(np.ones(num_classes), size=shape[:-1]))
    else:
        labels = rng.integers(0, num_classes, size=shape[:-1])
        labels.reshape(-1)[::4] = -1
        labels = tf.constant(labels)
    return hidden, kernel, bias, labels


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dense", [False, True], ids=["class ids", "probabilities"])
@pytest.mark.parametrize("shape", [(13, 6), (3, 5, 6)], ids=["(N, d)", "(B, T, d)"])
def test_matches_smooth_ce_of_the_full_logits(mode, reduction, dense, shape):
    hidden, kernel, bias, labels = _inputs(shape, dense=dense)
    options = dict(smoothing=0.2, reduction=reduction, ignore_index=None if dense else -1)
    cotangent = tf.constant(np.linspace(0.5, 1.5, int(np.prod(shape[:-1]))).reshape(shape[:-1]))
    if reduction != "none":
        cotangent = tf.constant(1.7, tf.float64)

    def both(h, k, b):
        results = []
        for loss_fn in (
            lambda: lt.linear_smooth_ce(h, k, labels, bias=b, chunk_size=4, **options),
            lambda: lt.smooth_ce(tf.tensordot(h, k, 1) + b, labels, **options),
        ):
            with tf.GradientTape() as tape:
                tape.watch([h, k, b])
                loss = loss_fn()
                total = tf.reduce_sum(loss * cotangent)
            results.append((loss, tape.gradient(total, [h, k, b])))
        return results

    if mode != "eager":
        both = tf.function(both, jit_compile=mode == "xla")
    (loss, grads), (expected_loss, expected_grads) = both(hidden, kernel, bias)
    assert loss.shape == expected_loss.shape
    assert_close(loss.numpy(), expected_loss.numpy(), "float64")
    for actual, expected in zip(grads, expected_grads, strict=True):
        assert_close(actual.numpy(), expected.numpy(), "float64")


def test_unknown_number_of_rows_is_a_clear_error():
    _, kernel, _, _ = _inputs()

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float64)])
    def loss(h):
        return lt.linear_smooth_ce(h, kernel, tf.zeros([13], tf.int64))

    with pytest.raises(ValueError, match="every dimension known"):
        loss.get_concrete_function()


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_blocks_of_left_out_rows_are_skipped_and_give_zero(mode, reduction, monkeypatch):
    """The loop runs over the kept rows only (as JAX's): with whole blocks of padding,
    the result is still smooth_ce of the full logits (0 and a zero gradient at the
    padding, whose NaN hidden states never reach a gradient), and eagerly only the
    blocks holding kept rows are projected."""
    hidden, kernel, bias, labels = _inputs((13, 6))
    labels = labels.numpy()
    labels[:] = 2
    labels[[0, 3, 4, 5, 6, 7, 8, 9, 11, 12]] = -1  # three kept rows: one block of 4
    hidden = hidden.numpy()
    hidden[[4, 9]] = np.nan
    labels, hidden = tf.constant(labels), tf.constant(hidden)
    kept = labels != -1
    options = dict(smoothing=0.2, reduction=reduction, ignore_index=-1)
    import lsr._linear

    projected = []
    block_step = lsr._linear.block_step

    def counting(carry, block_hidden, *args, **kwargs):
        projected.append(block_hidden.shape[0])
        return block_step(carry, block_hidden, *args, **kwargs)

    monkeypatch.setattr(lsr._linear, "block_step", counting)

    def both(h, k, b):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([h, k, b])
            loss = lt.linear_smooth_ce(h, k, labels, bias=b, chunk_size=4, **options)
            # The reference never sees the padding's NaN hidden states.
            clean = tf.where(kept[:, None], h, tf.zeros_like(h))
            expected = lt.smooth_ce(clean @ k + b, labels, **options)
            total, expected_total = tf.reduce_sum(loss), tf.reduce_sum(expected)
        return (
            (loss, tape.gradient(total, [h, k, b])),
            (expected, tape.gradient(expected_total, [h, k, b])),
        )

    if mode != "eager":
        both = tf.function(both, jit_compile=mode == "xla")
    (loss, grads), (expected_loss, expected_grads) = both(hidden, kernel, bias)
    assert_close(loss.numpy(), expected_loss.numpy(), "float64")
    for actual, expected in zip(grads, expected_grads, strict=True):
        assert np.all(np.isfinite(actual.numpy()))
        assert_close(actual.numpy(), expected.numpy(), "float64")
    assert np.all(grads[0].numpy()[~kept.numpy()] == 0.0)
    if mode == "eager":
        # One block of the kept rows (the other three blocks are skipped), once in the
        # forward pass ("none": and once more in the backward pass, with the cotangent).
        assert projected == [4] * (2 if reduction == "none" else 1)


@pytest.mark.parametrize("option", ["dense labels", "class weights", "smoothing per row"])
@pytest.mark.parametrize("chunk_size", [None, 2], ids=["one block", "blocks of 2"])
def test_one_block_under_xla_with_an_option_that_has_a_gradient(option, chunk_size):
    """One block (the default for small inputs) runs without a loop: under XLA a
    while_loop of no iteration could not be differentiated, which the gradients with
    respect to labels and options ask for; those come back dense."""
    rng = np.random.default_rng(7)
    hidden = tf.constant(rng.normal(size=(3, 5)))
    kernel = tf.constant(rng.normal(size=(5, 11)))
    labels = tf.constant([1, 2, 3])
    options = {}
    if option == "dense labels":
        labels = tf.constant(rng.dirichlet(np.ones(11), size=3))
    elif option == "class weights":
        options["weight"] = tf.constant(rng.random(11) + 0.5)
    else:
        options["smoothing"] = tf.constant([0.1, 0.2, 0.3], tf.float64)
    differentiated = labels if option == "dense labels" else next(iter(options.values()))

    name = next(iter(options), None)

    @tf.function(jit_compile=True)
    def both(h, k, argument):
        y = argument if name is None else labels
        given = {} if name is None else {name: argument}
        results = []
        for loss_fn in (
            lambda: lt.linear_smooth_ce(h, k, y, chunk_size=chunk_size, **given),
            lambda: lt.smooth_ce(h @ k, y, **given),
        ):
            with tf.GradientTape() as tape:
                tape.watch([h, k, argument])
                loss = loss_fn()
            results.append((loss, tape.gradient(loss, [h, k, argument])))
        return results

    (loss, grads), (expected_loss, expected_grads) = both(hidden, kernel, differentiated)
    assert_close(loss.numpy(), expected_loss.numpy(), "float64")
    for actual, expected in zip(grads, expected_grads, strict=True):
        assert isinstance(actual, tf.Tensor)
        assert_close(actual.numpy(), expected.numpy(), "float64")


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_the_hidden_states_gradient_is_set_once_after_the_loop(mode, monkeypatch):
    """Each block's rows of the hidden states' gradient are the loop's outputs, set into
    place once after it: set inside the loop (a tf.cond in a while_loop), the whole
    (N, d) gradient was copied on every block, eagerly, in graphs and under XLA."""
    import lsr.tensorflow._linear as tf_linear

    hidden, kernel, _, labels = _inputs((13, 6))
    calls = []
    set_rows = tf_linear._set_rows

    def counting(out, index, values):
        calls.append(tuple(out.shape))
        return set_rows(out, index, values)

    monkeypatch.setattr(tf_linear, "_set_rows", counting)

    def step(h, k):
        with tf.GradientTape() as tape:
            tape.watch([h, k])
            loss = lt.linear_smooth_ce(h, k, labels, chunk_size=2, ignore_index=-1)
        return loss, tape.gradient(loss, [h, k])

    if mode == "graph":
        step = tf.function(step)
    loss, _ = step(hidden, kernel)
    assert calls == [(13, 6)]  # seven blocks, one set_rows: the (N, d) gradient
    expected = lt.smooth_ce(hidden @ kernel, labels, ignore_index=-1)
    assert_close(loss.numpy(), expected.numpy(), "float64")

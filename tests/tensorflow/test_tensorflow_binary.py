"""lsr.tensorflow.smooth_bce: the smoothed sigmoid cross-entropy against the losses
TensorFlow users already run, eagerly, in ``tf.function`` and under XLA.

Expected values come from Keras' ``binary_crossentropy(..., from_logits=True,
label_smoothing=e)`` (which averages over the last axis), from
``tf.nn.sigmoid_cross_entropy_with_logits`` and ``tf.nn.weighted_cross_entropy_with_logits``
on targets smoothed here by hand from the published formula ``y' = (1 - eps) y + eps u``
(Keras ``u = 1/2``, timm ``u = 1/K``), and from TensorFlow's autodiff of those losses (and
of ``_formula``, the definition in TF ops, for the gradients in the other arguments).
Nothing here shares code with lsr.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import lsr.tensorflow as lsr_tf
from tests.backends import assert_close

N, K = 6, 5
MODES = ["eager", "graph", "xla"]
REDUCTIONS = ["none", "mean", "sum"]


def run(mode, fn, *args):
    if mode == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=mode == "xla")(*args)


def _inputs(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    logits = tf.constant(rng.normal(scale=3.0, size=(N, K)), dtype)
    labels = tf.constant(rng.integers(0, 2, size=(N, K)))
    return logits, labels


def _soft(dtype="float32", seed=1):
    return tf.constant(np.random.default_rng(seed).uniform(size=(N, K)), dtype)


def _smoothed(labels, eps, u, dtype):
    """The published smoothed target, by hand: y (1 - eps) + eps u."""
    # (tf.constant, not tf.cast: a Python float cast to float64 goes through float32.)
    return tf.cast(labels, dtype) * (1.0 - eps) + eps * tf.constant(u, dtype)


def _reduce(per_element, reduction):
    if reduction == "none":
        return per_element
    if reduction == "sum":
        return tf.reduce_sum(per_element)
    return tf.reduce_mean(per_element)


def _formula(logits, labels, eps, u, weight, pos_weight, reduction):
    """-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))] in TF ops."""
    target = labels * (1.0 - eps) + eps * u
    per_element = weight * tf.nn.weighted_cross_entropy_with_logits(
        labels=target, logits=logits, pos_weight=pos_weight
    )
    return _reduce(per_element, reduction)


def _cotangent(reduction, dtype):
    """Unequal cotangents for "none", so that each element's gradient is checked."""
    if reduction == "none":
        return tf.cast(tf.reshape(tf.linspace(-1.0, 2.0, N * K), (N, K)), dtype)
    return tf.constant(1.5, dtype)


def _loss_and_grad(loss_fn, reduction):
    def fn(z, *args):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = loss_fn(z, *args)
            scalar = tf.reduce_sum(loss * _cotangent(reduction, loss.dtype))
        return loss, tape.gradient(scalar, z)

    return fn


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_matches_keras_binary_crossentropy(mode, dtype, smoothing):
    logits, labels = _inputs(dtype)

    def ours(z, y):
        per_element = lsr_tf.smooth_bce(z, y, smoothing=smoothing, reduction="none")
        return tf.reduce_mean(per_element, axis=-1)  # Keras averages over the last axis

    def theirs(z, y):
        return keras.losses.binary_crossentropy(
            tf.cast(y, z.dtype), z, from_logits=True, label_smoothing=smoothing
        )

    got, grad = run(mode, _loss_and_grad(ours, "mean"), logits, labels)
    want, want_grad = run(mode, _loss_and_grad(theirs, "mean"), logits, labels)
    assert got.dtype == dtype and got.shape == (N,)
    assert_close(got, want, dtype, scale=4)
    assert_close(grad, want_grad, dtype, scale=4)
    # The default reduction is the mean over every element, as Keras' loss objects.
    mean = lsr_tf.smooth_bce(logits, labels, smoothing=smoothing)
    assert mean.shape == ()
    assert_close(mean, tf.reduce_mean(want), dtype, scale=4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("smoothing", "prior", "u"),
    [
        (0.1, 0.5, 0.5),  # Keras, TF v1, YOLOv5
        (0.3, 0.0, 0.0),  # one-sided
        (0.2, "uniform", 1.0 / K),  # timm: y (1 - e) + e / K
        (0.15, "vector", np.linspace(0.05, 0.6, K)),  # one u per label
    ],
)
def test_matches_sigmoid_cross_entropy_on_targets_smoothed_by_hand(
    mode, reduction, dtype, smoothing, prior, u
):
    logits, labels = _inputs(dtype, seed=2)
    if prior == "vector":
        prior = tf.constant(u, dtype)
    targets = _smoothed(labels, smoothing, u, dtype)

    def ours(z, y):
        return lsr_tf.smooth_bce(z, y, smoothing=smoothing, prior=prior, reduction=reduction)

    def theirs(z, t):
        return _reduce(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z), reduction)

    got, grad = run(mode, _loss_and_grad(ours, reduction), logits, labels)
    want, want_grad = _loss_and_grad(theirs, reduction)(logits, targets)
    assert got.dtype == dtype and grad.dtype == dtype
    assert_close(got, want, dtype, scale=4)
    assert_close(grad, want_grad, dtype, scale=4)
    # The comparison can fail: the labels as they are give other numbers.
    unsmoothed = _reduce(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, dtype), logits=logits),
        reduction,
    )
    assert not np.allclose(got, unsmoothed)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pos_weight_matches_weighted_cross_entropy_with_logits(mode, reduction):
    logits, labels = _inputs("float64", seed=3)
    pos_weight = tf.constant(np.linspace(0.5, 3.0, K))
    targets = _smoothed(labels, 0.2, 0.5, "float64")

    def ours(z, y):
        return lsr_tf.smooth_bce(z, y, smoothing=0.2, pos_weight=pos_weight, reduction=reduction)

    def theirs(z, t):
        per_element = tf.nn.weighted_cross_entropy_with_logits(
            labels=t, logits=z, pos_weight=pos_weight
        )
        return _reduce(per_element, reduction)

    got, grad = run(mode, _loss_and_grad(ours, reduction), logits, labels)
    want, want_grad = _loss_and_grad(theirs, reduction)(logits, targets)
    assert_close(got, want, "float64", scale=4)
    assert_close(grad, want_grad, "float64", scale=4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_in_every_argument_match_autodiff_of_the_formula(mode, reduction):
    logits, _ = _inputs("float64", seed=4)
    args = (
        logits,
        _soft("float64", seed=4),
        tf.constant(0.2, tf.float64),
        tf.constant(np.linspace(0.1, 0.9, K)),
        tf.constant(np.random.default_rng(4).uniform(0.5, 2.0, size=K)),
        tf.constant(np.linspace(0.5, 2.5, K)),
    )

    def ours(z, y, eps, u, w, r):
        return lsr_tf.smooth_bce(
            z, y, smoothing=eps, prior=u, weight=w, pos_weight=r, reduction=reduction
        )

    def gradients(loss_fn):
        def fn(*values):
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = loss_fn(*values)
                scalar = tf.reduce_sum(loss * _cotangent(reduction, tf.float64))
            return loss, tape.gradient(scalar, values)

        return fn

    got, grads = run(mode, gradients(ours), *args)
    want, want_grads = gradients(lambda *a: _formula(*a, reduction))(*args)
    assert_close(got, want, "float64", scale=4)
    for grad, want_grad in zip(grads, want_grads, strict=True):
        assert grad is not None and float(tf.reduce_max(tf.abs(want_grad))) > 0
        assert_close(grad, want_grad, "float64", scale=10)


def test_a_trainable_variable_weight_gets_its_gradient_eagerly():
    logits, labels = _inputs("float64", seed=5)
    weight = tf.Variable(np.linspace(0.5, 1.5, K))
    with tf.GradientTape() as tape:
        loss = lsr_tf.smooth_bce(logits, labels, weight=weight)
    got = tape.gradient(loss, weight)
    with tf.GradientTape() as tape:
        want = _formula(logits, tf.cast(labels, tf.float64), 0.1, 0.5, weight, 1.0, "mean")
    assert_close(got, tape.gradient(want, weight), "float64", scale=4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_eager_graph_and_xla_give_the_same_values(reduction):
    logits, labels = _inputs(seed=6)
    where = tf.constant(np.random.default_rng(6).uniform(size=(N, K)) < 0.7)
    weight = tf.constant(np.linspace(0.5, 1.5, K), tf.float32)

    def ours(z, y):
        return lsr_tf.smooth_bce(z, y, weight=weight, where=where, reduction=reduction)

    fn = _loss_and_grad(ours, reduction)
    eager = fn(logits, labels)
    for mode in ("graph", "xla"):
        for got, want in zip(run(mode, fn, logits, labels), eager, strict=True):
            assert_close(got, want, "float32")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_an_unknown_batch_size_inside_tf_function(jit, reduction):
    """keras.Model.fit traces with a batch of None."""
    logits, labels = _inputs(seed=7)
    weight = tf.constant(np.linspace(0.5, 1.5, K), tf.float32)
    where = tf.constant(np.random.default_rng(7).uniform(size=(N, K)) < 0.7)
    cases = [{}, {"weight": weight}, {"where": where[:1]}]
    for options in cases:

        def ours(z, y, options=options):
            return lsr_tf.smooth_bce(z, y, reduction=reduction, **options)

        fn = _loss_and_grad(ours, reduction)
        signature = [tf.TensorSpec([None, K], tf.float32), tf.TensorSpec([None, K], tf.int64)]
        dynamic = tf.function(fn, input_signature=signature, jit_compile=jit)
        for got, want in zip(dynamic(logits, labels), fn(logits, labels), strict=True):
            assert_close(got, want, "float32")


def test_where_and_ignore_index_leave_elements_out():
    logits, labels = _inputs("float64", seed=8)
    where = np.random.default_rng(8).uniform(size=(N, K)) < 0.6
    loss, grad = _loss_and_grad(
        lambda z, y: lsr_tf.smooth_bce(z, y, where=tf.constant(where)), "mean"
    )(logits, labels)
    per_element = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=_smoothed(labels, 0.1, 0.5, "float64"), logits=logits
    )
    assert_close(loss, np.sum(per_element.numpy()[where]) / where.sum(), "float64", scale=4)
    assert not grad.numpy()[~where].any()
    ignored = tf.where(tf.constant(where), labels, -100)
    for mode in MODES:
        loss_ignored, grad_ignored = run(
            mode,
            _loss_and_grad(lambda z, y: lsr_tf.smooth_bce(z, y, ignore_index=-100), "mean"),
            logits,
            ignored,
        )
        assert_close(loss_ignored, loss, "float64")
        assert_close(grad_ignored, grad, "float64")
    # A mean over nothing is 0, with a zero gradient.
    nothing = tf.zeros((N, K), tf.bool)
    for mode in MODES:
        loss, grad = run(
            mode,
            _loss_and_grad(lambda z, y: lsr_tf.smooth_bce(z, y, where=nothing), "mean"),
            logits,
            labels,
        )
        assert float(loss) == 0.0 and not grad.numpy().any()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_is_computed_in_float32(mode, dtype):
    logits, labels = _inputs(seed=9)
    half = tf.cast(logits, dtype)
    loss, grad = run(mode, _loss_and_grad(lsr_tf.smooth_bce, "mean"), half, labels)
    assert loss.dtype == tf.float32 and grad.dtype == dtype
    rounded = tf.cast(half, tf.float64)
    want = tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(
            labels=_smoothed(labels, 0.1, 0.5, "float64"), logits=rounded
        )
    )
    assert_close(loss, want, "float32")


def test_bad_input_raises_with_received():
    logits, labels = _inputs(seed=10)
    with pytest.raises(ValueError, match=r"`labels` must have the logits' shape.*Received:"):
        lsr_tf.smooth_bce(logits, labels[:, :-1])
    bad = tf.tensor_scatter_nd_update(labels, [[2, 3]], tf.constant([2], labels.dtype))
    with pytest.raises(ValueError, match=r"`labels` must be 0 or 1.*Received: .*max=2"):
        lsr_tf.smooth_bce(logits, bad)
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 1\].*Received:"):
        lsr_tf.smooth_bce(logits, _soft() + 1.0)
    with pytest.raises(ValueError, match=r"`prior`.*\[0, 1\].*Received: prior=1.5"):
        lsr_tf.smooth_bce(logits, labels, prior=1.5)
    with pytest.raises(ValueError, match=r"`prior`.*\[0, 1\].*Received:"):
        lsr_tf.smooth_bce(logits, labels, prior=tf.fill([K], 1.5))
    with pytest.raises(ValueError, match=r"Received: smoothing=1.5"):
        lsr_tf.smooth_bce(logits, labels, smoothing=1.5)
    with pytest.raises(ValueError, match=r"Received: reduction='avg'"):
        lsr_tf.smooth_bce(logits, labels, reduction="avg")
    with pytest.raises(TypeError, match=r"`logits` must be a tf.Tensor.*Received:"):
        lsr_tf.smooth_bce(object(), labels)
    # Shapes are checked when a function is traced.
    with pytest.raises(ValueError, match=r"`labels` must have the logits' shape.*Received:"):
        tf.function(lsr_tf.smooth_bce)(logits, labels[:, :-1])


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_of_range_labels_inside_tf_function_give_nan(jit, reduction):
    logits, labels = _inputs(seed=11)
    bad = tf.tensor_scatter_nd_update(labels, [[2, 3]], tf.constant([2], labels.dtype))
    fn = tf.function(
        _loss_and_grad(lambda z, y: lsr_tf.smooth_bce(z, y, reduction=reduction), reduction),
        jit_compile=jit,
    )
    loss, grad = fn(logits, bad)
    assert np.isnan(loss.numpy()).any() and np.isnan(grad.numpy()[2, 3])
    if reduction == "none":
        assert np.isfinite(np.delete(loss.numpy().ravel(), 2 * K + 3)).all()
    loss, grad = fn(logits, labels)
    assert np.isfinite(loss.numpy()).all() and np.isfinite(grad.numpy()).all()


def test_the_one_exponential_form_is_taken_under_xla_only(monkeypatch):
    """Under XLA the loss and gradient come from one exponential (XLA fuses them into one
    pass); a graph run op by op keeps the one-op sigmoid; both agree."""
    from lsr import _core

    taken = []
    real = _core.binary_loss_and_grad

    def spy(*args, **kwargs):
        taken.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "binary_loss_and_grad", spy)
    rng = np.random.default_rng(5)
    logits = tf.constant(rng.normal(scale=3.0, size=(6, 5)))
    labels = tf.constant((rng.uniform(size=(6, 5)) < 0.3).astype(np.float64))

    def value_and_grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = lsr_tf.smooth_bce(z, labels, reduction="mean")
        return loss, tape.gradient(loss, z)

    results = {}
    for jit in (False, True):
        taken.clear()
        results[jit] = tf.function(value_and_grad, jit_compile=jit)(logits)
        assert taken == ([True] if jit else []), jit
    for graph, xla in zip(results[False], results[True], strict=True):
        np.testing.assert_allclose(xla.numpy(), graph.numpy(), rtol=1e-12, atol=1e-15)

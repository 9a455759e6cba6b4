"""lsr.tensorflow: the core's numbers and gradients on tf.Tensors, eager, graph and XLA.

Expected values come from tests/reference.py (float64 NumPy, written from the
definition), from TensorFlow autodiff of that definition written in TF ops, from Keras'
and tf.nn's own losses, and from published numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import lsr
import lsr.tensorflow as lsr_tf
from tests import reference
from tests.backends import assert_close

K = 5
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])
PRIOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
MODES = ["eager", "graph", "xla"]


def run(mode, fn, *args):
    if mode == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=mode == "xla")(*args)


def loss_and_grad(logits, labels, **options):
    """lsr.tensorflow.smooth_ce and its gradient with respect to the logits."""

    def fn(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = lsr_tf.smooth_ce(z, y, **options)
        return loss, tape.gradient(loss, z)

    return fn


def reference_in_tf(logits, targets, keep, weight, reduction):
    """The definition in TF ops (dense smoothed targets, log_softmax), for autodiff.

    ``targets``: q' from tests/reference.py, class axis last; ``keep``: kept positions.
    """
    log_p = tf.nn.log_softmax(logits, axis=-1)
    w = tf.ones(logits.shape[-1], logits.dtype) if weight is None else weight
    per_position = -tf.reduce_sum(w * targets * log_p, axis=-1)
    per_position = tf.where(keep, per_position, tf.zeros_like(per_position))
    if reduction == "none":
        return per_position
    if reduction == "sum":
        return tf.reduce_sum(per_position)
    return tf.reduce_sum(per_position) / tf.reduce_sum(tf.cast(keep, logits.dtype))


def _case(seed=0, n=8, dense=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, K))
    if dense:
        labels = rng.dirichlet(np.ones(K), size=n)
    else:
        labels = rng.integers(0, K, size=n)
        labels[::3] = -100
    return logits, labels


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_gradient_match_the_definition(mode, dtype, prior, reduction):
    logits, labels = _case()
    prior_value = PRIOR if prior == "vector" else prior
    options = dict(smoothing=0.2, prior=prior_value, ignore_index=-100, reduction=reduction)
    z = tf.constant(logits, dtype=dtype)
    loss, grad = run(
        mode,
        loss_and_grad(z, None, **{**options, "prior": tf.constant(PRIOR, dtype)})
        if prior == "vector"
        else loss_and_grad(z, None, **options),
        z,
        tf.constant(labels),
    )
    assert loss.dtype == dtype and grad.dtype == dtype
    assert_close(loss.numpy(), reference.smooth_ce(logits, labels, **options), dtype)

    targets = reference.smoothed_targets(labels, K, smoothing=0.2, prior=prior_value)
    keep = tf.constant(labels != -100)
    with tf.GradientTape() as tape:
        tape.watch(z)
        expected = reference_in_tf(z, tf.constant(targets, dtype), keep, None, reduction)
        # A "none" loss is differentiated with a non-uniform cotangent.
        scalar = (
            expected
            if reduction != "none"
            else tf.reduce_sum(expected * tf.range(8.0, dtype=dtype))
        )
    expected_grad = tape.gradient(scalar, z).numpy()
    if reduction == "none":
        with tf.GradientTape() as tape:
            tape.watch(z)
            actual = lsr_tf.smooth_ce(
                z,
                tf.constant(labels),
                **{**options, "prior": tf.constant(PRIOR, dtype) if prior == "vector" else prior},
            )
            weighted = tf.reduce_sum(actual * tf.range(8.0, dtype=dtype))
        grad = tape.gradient(weighted, z)
    assert_close(grad.numpy(), expected_grad, dtype, scale=10)
    assert np.all(grad.numpy()[labels == -100] == 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dense", [False, True])
def test_class_weights_and_dense_labels_match_the_definition(mode, dense):
    logits, labels = _case(seed=1, dense=dense)
    z = tf.constant(logits)
    options = dict(smoothing=0.3, prior="others", weight=tf.constant(WEIGHT))
    if not dense:
        options["ignore_index"] = -100
    loss, grad = run(mode, loss_and_grad(z, None, **options), z, tf.constant(labels))
    numpy_options = {**options, "weight": WEIGHT}
    assert_close(loss.numpy(), reference.smooth_ce(logits, labels, **numpy_options), "float64")
    # Weighted integer labels divide the mean by the kept target weights (PyTorch's rule).
    targets = reference.smoothed_targets(labels, K, smoothing=0.3, prior="others", dense=dense)
    keep = np.ones(len(labels), bool) if dense else labels != -100
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = reference_in_tf(
            z, tf.constant(targets), tf.constant(keep), tf.constant(WEIGHT), "sum"
        )
        if dense:
            denominator = float(keep.sum())
        else:
            denominator = float(WEIGHT[labels[keep]].sum())
        expected = total / denominator
    assert_close(grad.numpy(), tape.gradient(expected, z).numpy(), "float64", scale=10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_parity_with_keras_categorical_crossentropy(mode, smoothing):
    logits, labels = _case(seed=2)
    labels = np.abs(labels) % K
    z = tf.constant(logits, tf.float32)
    loss, grad = run(mode, loss_and_grad(z, None, smoothing=smoothing), z, tf.constant(labels))
    keras = pytest.importorskip("keras")  # installed with the tensorflow extra
    builtin = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing, from_logits=True)
    with tf.GradientTape() as tape:
        tape.watch(z)
        expected = builtin(tf.one_hot(labels, K), z)
    assert_close(loss.numpy(), expected.numpy(), "float32")
    assert_close(grad.numpy(), tape.gradient(expected, z).numpy(), "float32")


def test_parity_with_tf_nn_softmax_cross_entropy_at_zero_smoothing():
    logits, labels = _case(seed=3)
    labels = np.abs(labels) % K
    z = tf.constant(logits, tf.float32)
    loss = lsr_tf.smooth_ce(z, tf.constant(labels), smoothing=0.0, reduction="none")
    expected = tf.nn.softmax_cross_entropy_with_logits(labels=tf.one_hot(labels, K), logits=z)
    assert_close(loss.numpy(), expected.numpy(), "float32")
    sparse = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
    assert_close(loss.numpy(), sparse.numpy(), "float32")


@pytest.mark.parametrize("mode", MODES)
def test_published_keras_value(mode):
    """Keras docs: CategoricalCrossentropy(label_smoothing=0.1, from_logits=True) on
    logits [[100, -100, -100]] with target [1, 0, 0] is 400 * 0.1 / 3."""
    z = tf.constant([[100.0, -100.0, -100.0]])
    loss = run(mode, lambda a, b: lsr_tf.smooth_ce(a, b, smoothing=0.1), z, tf.constant([0]))
    np.testing.assert_allclose(float(loss), 400 * 0.1 / 3, rtol=1e-6)
    dense = run(
        mode, lambda a, b: lsr_tf.smooth_ce(a, b, smoothing=0.1), z, tf.constant([[1.0, 0, 0]])
    )
    np.testing.assert_allclose(float(dense), 400 * 0.1 / 3, rtol=1e-6)


def test_out_of_range_labels_raise_eagerly_and_give_nan_in_graphs():
    z = tf.zeros((3, K))
    bad = tf.constant([0, K, 2])
    with pytest.raises(ValueError, match=r"integers in \[0, 5\).*Received: labels with min=5"):
        lsr_tf.smooth_ce(z, bad)
    for jit in (False, True):
        per_position = tf.function(
            lambda a, b: lsr_tf.smooth_ce(a, b, reduction="none"), jit_compile=jit
        )(z, bad).numpy()
        assert np.isfinite(per_position[[0, 2]]).all() and np.isnan(per_position[1])
        mean = tf.function(lambda a, b: lsr_tf.smooth_ce(a, b), jit_compile=jit)(z, bad)
        assert np.isnan(float(mean))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unknown_batch_dimension_gives_the_static_results(jit, reduction):
    """Keras' fit traces with a batch dimension of None."""
    logits, labels = _case(seed=4)
    options = dict(smoothing=0.1, weight=WEIGHT, ignore_index=-100, reduction=reduction)

    def fn(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = lsr_tf.smooth_ce(z, y, **options)
            scalar = tf.reduce_sum(loss * tf.range(1.0, 9.0, dtype=loss.dtype)[: tf.size(loss)])
        return loss, tape.gradient(scalar, z)

    signature = [tf.TensorSpec([None, K], tf.float64), tf.TensorSpec([None], tf.int64)]
    dynamic = tf.function(fn, input_signature=signature, jit_compile=jit)
    loss, grad = dynamic(tf.constant(logits), tf.constant(labels))
    static_loss, static_grad = fn(tf.constant(logits), tf.constant(labels))
    assert_close(loss.numpy(), reference.smooth_ce(logits, labels, **options), "float64")
    assert_close(loss.numpy(), static_loss.numpy(), "float64")
    assert_close(grad.numpy(), static_grad.numpy(), "float64")


def test_every_position_ignored_gives_zero_with_zero_gradient():
    z = tf.constant(np.random.default_rng(5).normal(size=(3, K)))
    loss, grad = loss_and_grad(z, None, ignore_index=-1)(z, tf.constant([-1, -1, -1]))
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_segmentation_layout_and_kl_and_z_loss():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, K, 3, 2))
    labels = rng.integers(0, K, size=(2, 3, 2))
    labels[0, 0, 0] = 255
    options = dict(smoothing=0.1, axis=1, ignore_index=255, kl=True, z_loss=1e-3)
    loss = tf.function(lambda a, b: lsr_tf.smooth_ce(a, b, **options), jit_compile=True)(
        tf.constant(logits), tf.constant(labels)
    )
    assert_close(loss.numpy(), reference.smooth_ce(logits, labels, **options), "float64")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    logits32, labels = _case(seed=7)
    labels = np.abs(labels) % K
    z = tf.cast(tf.constant(logits32, tf.float32), dtype)
    loss, grad = loss_and_grad(z, None, smoothing=0.1)(z, tf.constant(labels))
    assert loss.dtype == tf.float32 and grad.dtype == dtype
    rounded = tf.cast(z, tf.float64).numpy()
    assert_close(loss.numpy(), reference.smooth_ce(rounded, labels, smoothing=0.1), "float32")


def test_numpy_arrays_lists_and_variables_are_accepted():
    logits = [[2.0, 0.5, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
    expected = reference.smooth_ce(np.array(logits), np.array([0, 1]), smoothing=0.1)
    from_lists = lsr_tf.smooth_ce(logits, [0, 1], smoothing=0.1)
    assert from_lists.dtype == tf.float32
    assert_close(from_lists.numpy(), expected, "float32")
    from_numpy = lsr_tf.smooth_ce(np.array(logits), np.array([0, 1]), smoothing=np.float64(0.1))
    assert from_numpy.dtype == tf.float64  # float64 stays float64
    assert_close(from_numpy.numpy(), expected, "float64")

    variable = tf.Variable(np.array(logits))
    with tf.GradientTape() as tape:
        loss = lsr_tf.smooth_ce(variable, [0, 1], smoothing=0.1)
    grad = tape.gradient(loss, variable)
    z = tf.constant(np.array(logits))
    _, expected_grad = loss_and_grad(z, None, smoothing=0.1)(z, tf.constant([0, 1]))
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy())


def test_tensor_smoothing_can_be_traced():
    z = tf.constant(np.random.default_rng(8).normal(size=(4, K)))
    labels = tf.constant([0, 1, 2, 3])
    fn = tf.function(lambda a, b, eps: lsr_tf.smooth_ce(a, b, smoothing=eps), jit_compile=True)
    for eps in (0.0, 0.25):
        expected = reference.smooth_ce(z.numpy(), labels.numpy(), smoothing=eps)
        assert_close(fn(z, labels, tf.constant(eps, tf.float64)).numpy(), expected, "float64")


def test_second_derivatives_raise_instead_of_being_wrong():
    z = tf.constant(np.random.default_rng(9).normal(size=(2, K)))
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            loss = lsr_tf.smooth_ce(z, tf.constant([1, 2]))
        grad = inner.gradient(loss, z)
    with pytest.raises(NotImplementedError, match="second derivative"):
        outer.gradient(grad, z)


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"`logits` must be a tf.Tensor.*Received: logits="):
        lsr_tf.smooth_ce({"a": 1}, [0])
    with pytest.raises(TypeError, match=r"real floating dtype.*Received: logits="):
        lsr_tf.smooth_ce(tf.constant([[1, 2]]), tf.constant([0]))
    with pytest.raises(ValueError, match=r"Received: smoothing=1.5"):
        lsr_tf.smooth_ce(tf.zeros((1, 3)), tf.constant([0]), smoothing=1.5)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def unknown_rank(z):
        return lsr_tf.smooth_ce(z, tf.constant([0]))

    with pytest.raises(ValueError, match="known number of dimensions"):
        unknown_rank(tf.zeros((1, 3)))


# --- cleverhans MNIST usage --------------------------------------------------------

MNIST_LABELS = np.array([5, 0, 4, 1, 9, 2, 1, 3])  # the first MNIST training labels


def _one_hot(dtype=np.float32):
    return np.eye(10, dtype=dtype)[MNIST_LABELS]


@pytest.mark.parametrize("as_tensor", [False, True])
def test_cleverhans_2017_tutorial_clip(as_tensor):
    """``Y_train.clip(0.1 / 9, 0.9)`` from cleverhans' 2017 MNIST tutorial is prior="others"."""
    y = _one_hot()
    original = y.copy()
    given = tf.constant(y) if as_tensor else y
    smoothed = lsr_tf.smooth_labels(given, smoothing=0.1, prior="others").numpy()
    np.testing.assert_allclose(smoothed, y.clip(0.1 / 9, 0.9), rtol=1e-6)
    assert np.isclose(smoothed.max(), 0.9) and np.isclose(smoothed.min(), 0.011111111)
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(y, original)
    if as_tensor:
        np.testing.assert_array_equal(given.numpy(), original)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_cleverhans_v3_cross_entropy_targets(as_tensor):
    """cleverhans v3 ``CrossEntropy(model, smoothing=0.1)``: ``y - 0.1 * (y - 1/K)``."""
    y = _one_hot()
    original = y.copy()
    given = tf.constant(y) if as_tensor else y
    smoothed = lsr_tf.smooth_labels(given, smoothing=0.1, prior="uniform").numpy()
    np.testing.assert_allclose(smoothed, y - 0.1 * (y - 1.0 / 10), rtol=1e-6)
    assert np.isclose(smoothed.max(), 0.91) and np.isclose(smoothed.min(), 0.01)
    np.testing.assert_array_equal(y, original)


def test_cleverhans_targets_from_integer_labels_and_the_generic_function():
    from_ids = lsr_tf.smooth_labels(tf.constant(MNIST_LABELS, tf.int32), 10, prior="others")
    assert from_ids.dtype == tf.float32
    np.testing.assert_allclose(from_ids.numpy(), _one_hot().clip(0.1 / 9, 0.9), rtol=1e-6)
    # The generic function on a NumPy array returns a NumPy array, and leaves it alone.
    y = _one_hot(np.float64)
    generic = lsr.smooth_labels(y, smoothing=0.1, prior="others")
    assert isinstance(generic, np.ndarray) and generic.dtype == np.float64
    np.testing.assert_allclose(generic, y.clip(0.1 / 9, 0.9), rtol=1e-15)
    np.testing.assert_array_equal(y, _one_hot(np.float64))

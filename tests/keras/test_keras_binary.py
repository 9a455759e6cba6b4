"""lsr.keras.SmoothBinaryCrossEntropy against keras.losses.BinaryCrossentropy: values and
gradients, probabilities and logits, fit, serialization, and other Keras backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from lsr.keras import SmoothBinaryCrossEntropy
from tests import reference
from tests.backends import assert_close, selected_backends

N, K = 12, 5


@pytest.fixture(autouse=True)
def _without_op_determinism():
    """Keras refuses XLA while TensorFlow's op determinism is on (see test_keras_loss)."""
    from tensorflow.python.framework import config

    was_enabled = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    yield
    if was_enabled:
        config.enable_op_determinism()


def _case(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(N, K)).astype(np.float32)
    labels = rng.integers(0, 2, size=(N, K)).astype(np.float32)
    return logits, labels


def _value_and_grad(loss_fn, y_true, y_pred, sample_weight=None):
    y_pred = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss_fn(y_true, y_pred, sample_weight=sample_weight)
    return value.numpy(), tape.gradient(value, y_pred).numpy()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_parity_with_binary_crossentropy(label_smoothing, reduction, from_logits):
    logits, labels = _case()
    y_pred = logits if from_logits else 1.0 / (1.0 + np.exp(-logits))
    options = dict(from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
    weights = np.linspace(0.5, 1.5, N).astype(np.float32)
    expected = _value_and_grad(keras.losses.BinaryCrossentropy(**options), labels, y_pred, weights)
    actual = _value_and_grad(SmoothBinaryCrossEntropy(**options), labels, y_pred, weights)
    # Probabilities: Keras takes clipped logarithms, lsr the logits log(p / (1 - p)).
    scale = 1 if from_logits else 10
    for got, wanted in zip(actual, expected, strict=True):
        assert_close(got, wanted, "float32", scale=scale)


def test_the_per_sample_mean_is_over_axis():
    logits, labels = _case(seed=1)
    loss = SmoothBinaryCrossEntropy(from_logits=True, label_smoothing=0.2, axis=0, reduction=None)
    expected = reference.smooth_bce(logits, labels, smoothing=0.2, prior=0.5, reduction="none")
    assert_close(loss(labels, logits), expected.mean(axis=0), "float32")


@pytest.mark.parametrize(
    ("prior", "u"),
    [("uniform", 1.0 / K), (0.0, 0.0), ([0.1, 0.2, 0.3, 0.4, 0.5], np.arange(1, 6) / 10)],
)
def test_other_smoothing_values_match_the_reference(prior, u):
    logits, labels = _case(seed=2)
    loss = SmoothBinaryCrossEntropy(
        from_logits=True, label_smoothing=0.3, prior=prior, reduction=None
    )
    expected = reference.smooth_bce(logits, labels, smoothing=0.3, prior=u, reduction="none")
    assert_close(loss(labels, logits), expected.mean(axis=-1), "float32")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"Received: prior=1.5"):
        SmoothBinaryCrossEntropy(prior=1.5)
    with pytest.raises(ValueError, match=r"Received: prior='half'"):
        SmoothBinaryCrossEntropy(prior="half")
    with pytest.raises(ValueError, match=r"Received: label_smoothing=2"):
        SmoothBinaryCrossEntropy(label_smoothing=2)
    with pytest.raises(TypeError, match=r"Received: from_logits='yes'"):
        SmoothBinaryCrossEntropy(from_logits="yes")
    logits, labels = _case()
    with pytest.raises(ValueError, match=r"y_true.*\(12, 5\).*Received: y_true.shape=\(12, 4\)"):
        SmoothBinaryCrossEntropy(from_logits=True)(labels[:, :4], logits)
    with pytest.raises(ValueError, match=r"one value per label \(5 on axis 1\)"):
        SmoothBinaryCrossEntropy(from_logits=True, prior=[0.5, 0.5])(labels, logits)
    with pytest.raises(ValueError, match=r"0 or 1|in \[0, 1\]"):
        SmoothBinaryCrossEntropy(from_logits=True)(labels * 3.0, logits)


def test_labels_outside_0_1_are_named_y_true():
    """Keras' name for them, not `labels` (``smooth_bce``'s), also for integer labels."""
    logits, labels = _case()
    labels[0, 0], labels[3, 2] = 2.0, -0.5
    loss = SmoothBinaryCrossEntropy(from_logits=True, label_smoothing=0.1)
    with pytest.raises(
        ValueError,
        match=r"^`y_true` must be in \[0, 1\] \(binary or soft targets\); 2 are not\. "
        r"Received: y_true with min=-0\.5, max=2\.0$",
    ):
        loss(labels, logits)
    with pytest.raises(ValueError, match=r"^`y_true` must be .* Received: y_true with min=3\.0"):
        loss(np.where(labels == 1, 3, 0), logits)


def test_config_round_trip_and_saved_model(tmp_path):
    loss = SmoothBinaryCrossEntropy(
        from_logits=True, label_smoothing=0.2, reduction="sum", name="tags", prior="uniform"
    )
    config = loss.get_config()
    assert config == {
        "name": "tags",
        "reduction": "sum",
        "from_logits": True,
        "label_smoothing": 0.2,
        "axis": -1,
        "prior": "uniform",
        "dtype": None,
    }
    json.dumps(config)
    assert SmoothBinaryCrossEntropy.from_config(config).get_config() == config
    generic = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(generic, SmoothBinaryCrossEntropy) and generic.get_config() == config
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, SmoothBinaryCrossEntropy)
    assert loaded.loss.get_config() == config


def _train(loss, labels, *, activation=None, jit_compile="auto"):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(K, activation=activation)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=jit_compile)
    history = model.fit(x, labels, batch_size=12, epochs=3, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"]


@pytest.mark.parametrize(
    ("activation", "jit_compile"), [(None, False), (None, True), ("sigmoid", False)]
)
def test_fit_follows_binary_crossentropy(activation, jit_compile):
    labels = np.random.default_rng(8).integers(0, 2, size=(32, K)).astype(np.float32)
    from_logits = activation is None
    options = dict(from_logits=from_logits, label_smoothing=0.1)
    expected_weights, expected_loss = _train(
        keras.losses.BinaryCrossentropy(**options),
        labels,
        activation=activation,
        jit_compile=jit_compile,
    )
    weights, losses = _train(
        SmoothBinaryCrossEntropy(**options),
        labels,
        activation=activation,
        jit_compile=jit_compile,
    )
    assert_close(losses, expected_loss, "float32", scale=10)
    for actual, expected in zip(weights, expected_weights, strict=True):
        assert_close(actual, expected, "float32", scale=10)


OTHER_BACKEND = textwrap.dedent(
    """
    import json
    import numpy as np
    import keras
    from lsr.keras import SmoothBinaryCrossEntropy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 2, size=(6, 5)).astype("float32")
    loss = SmoothBinaryCrossEntropy(from_logits=True, label_smoothing=0.2, prior="uniform")
    value = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.integers(0, 2, size=(16, 5)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss=loss)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    try:
        loss(labels * 3.0, logits)
        bad_labels = None
    except ValueError as error:
        bad_labels = str(error)
    print(json.dumps({
        "backend": keras.backend.backend(), "value": value, "fit_losses": history.history["loss"],
        "bad_labels": bad_labels,
    }))
    """
)
OTHER_BACKENDS = [name for name in ("jax", "torch") if name in selected_backends()]

# Generated only in sessions that install those backends ("tests(all)"), never skipped.
if OTHER_BACKENDS:

    @pytest.mark.parametrize("keras_backend", OTHER_BACKENDS)
    def test_other_keras_backends(keras_backend):
        environment = dict(os.environ, KERAS_BACKEND=keras_backend)
        result = subprocess.run(
            [sys.executable, "-c", OTHER_BACKEND], capture_output=True, text=True, env=environment
        )
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["backend"] == keras_backend
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(6, 5)).astype("float32")
        labels = rng.integers(0, 2, size=(6, 5)).astype("float32")
        expected = reference.smooth_bce(logits, labels, smoothing=0.2, prior=0.2)
        assert_close(report["value"], expected, "float32")
        assert all(np.isfinite(report["fit_losses"]))
        assert report["bad_labels"].startswith("`y_true` must be in [0, 1]"), report


def test_a_one_output_model_with_labels_of_shape_n():
    """Dense(1, sigmoid) with labels of shape (N,): Keras brings both to the same rank."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=32).astype(np.float32)

    def train(loss):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        return model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]

    expected = train(keras.losses.BinaryCrossentropy(label_smoothing=0.1))
    assert_close(
        train(SmoothBinaryCrossEntropy(label_smoothing=0.1)), expected, "float32", scale=10
    )

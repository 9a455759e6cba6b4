"""lsr.keras.SmoothCrossEntropy against Keras' own losses, in compile/fit, and serialized."""

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

from lsr.keras import SmoothCrossEntropy
from tests import reference
from tests.backends import assert_close, selected_backends


@pytest.fixture(autouse=True)
def _without_op_determinism():
    """Keras refuses XLA while TensorFlow's op determinism is on, and the tutorial's tests
    (same process, in the cross-backend session) switch it on for reproducible reports."""
    from tensorflow.python.framework import config

    was_enabled = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    yield
    if was_enabled:
        config.enable_op_determinism()


K = 5


def _case(seed=0, n=12):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, K)).astype(np.float32)
    labels = rng.integers(0, K, size=n)
    return logits, labels


def _value_and_grad(loss_fn, y_true, y_pred, sample_weight=None):
    y_pred = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss_fn(y_true, y_pred, sample_weight=sample_weight)
    return value.numpy(), tape.gradient(value, y_pred).numpy()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_parity_with_categorical_crossentropy_from_logits(label_smoothing, reduction):
    logits, labels = _case()
    one_hot = np.eye(K, dtype=np.float32)[labels]
    options = dict(from_logits=True, label_smoothing=label_smoothing, reduction=reduction)
    expected = _value_and_grad(keras.losses.CategoricalCrossentropy(**options), one_hot, logits)
    for y_true in (one_hot, labels, labels[:, None]):
        actual = _value_and_grad(SmoothCrossEntropy(**options), y_true, logits)
        assert_close(actual[0], expected[0], "float32")
        assert_close(actual[1], expected[1], "float32")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_parity_with_categorical_crossentropy_on_probabilities(label_smoothing):
    logits, labels = _case(seed=1)
    probabilities = tf.nn.softmax(logits).numpy()
    # A confident row where Keras' clipping to [epsilon, 1 - epsilon] is active.
    probabilities[0] = [1.0, 0.0, 0.0, 0.0, 0.0]
    one_hot = np.eye(K, dtype=np.float32)[labels]
    builtin = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    expected = _value_and_grad(builtin, one_hot, probabilities)
    actual = _value_and_grad(
        SmoothCrossEntropy(label_smoothing=label_smoothing), labels, probabilities
    )
    assert_close(actual[0], expected[0], "float32")
    assert_close(actual[1], expected[1], "float32", scale=10)


def test_sample_weight_and_published_value():
    loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.1)
    value = loss(np.array([[1.0, 0.0, 0.0]]), np.array([[100.0, -100.0, -100.0]]))
    np.testing.assert_allclose(float(value), 400 * 0.1 / 3, rtol=1e-6)
    logits, labels = _case(seed=2)
    weights = np.linspace(0.0, 2.0, len(labels)).astype(np.float32)
    builtin = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    expected = builtin(np.eye(K)[labels], logits, sample_weight=weights)
    assert_close(loss(labels, logits, sample_weight=weights), expected, "float32")


def test_prior_others_and_vector_match_the_reference():
    logits, labels = _case(seed=3)
    prior = [0.1, 0.3, 0.2, 0.25, 0.15]
    for name, value in (("others", "others"), ("vector", prior)):
        loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.3, prior=value)
        expected = reference.smooth_ce(
            logits, labels, smoothing=0.3, prior=np.array(prior) if name == "vector" else value
        )
        assert_close(loss(labels, logits), expected, "float32")


def test_ignore_class_matches_sparse_categorical_crossentropy():
    logits, labels = _case(seed=4)
    labels[::4] = -1
    builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    ours = SmoothCrossEntropy(from_logits=True, ignore_class=-1)
    expected = _value_and_grad(builtin, labels, logits)
    actual = _value_and_grad(ours, labels, logits)
    assert_close(actual[0], expected[0], "float32")
    assert_close(actual[1], expected[1], "float32")
    # With smoothing: the mean over the kept positions of the definition.
    smoothed = SmoothCrossEntropy(from_logits=True, label_smoothing=0.2, ignore_class=-1)
    assert_close(
        smoothed(labels, logits),
        reference.smooth_ce(logits, labels, smoothing=0.2, ignore_index=-1),
        "float32",
    )


def test_class_axis_one_counts_the_classes_on_that_axis():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, K, 3)).astype(np.float32)
    labels = rng.integers(0, K, size=(2, 3))
    loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.1, axis=1)
    expected = reference.smooth_ce(logits, labels, smoothing=0.1, axis=1)
    assert_close(loss(labels, logits), expected, "float32")
    one_hot = np.moveaxis(np.eye(K, dtype=np.float32)[labels], -1, 1)
    assert_close(loss(one_hot, logits), expected, "float32")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"Received: label_smoothing=1.5"):
        SmoothCrossEntropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"`prior` must be one of"):
        SmoothCrossEntropy(prior="gaussian")
    with pytest.raises(ValueError, match=r"sum to 1"):
        SmoothCrossEntropy(prior=[0.5, 0.6])
    with pytest.raises(TypeError, match=r"Received: from_logits='yes'"):
        SmoothCrossEntropy(from_logits="yes")
    with pytest.raises(TypeError, match=r"Received: ignore_class=1.0"):
        SmoothCrossEntropy(ignore_class=1.0)
    with pytest.raises(ValueError, match=r"`ignore_class` applies to integer labels"):
        SmoothCrossEntropy(ignore_class=0)(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        SmoothCrossEntropy(from_logits=True)(np.array([0, 3]), np.zeros((2, 3)))


def test_other_keras_backends_are_refused_clearly(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "openvino")
    with pytest.raises(
        NotImplementedError, match=r"Received: keras.backend.backend\(\)='openvino'"
    ):
        SmoothCrossEntropy()


def test_config_round_trip_and_saved_model(tmp_path):
    loss = SmoothCrossEntropy(
        from_logits=True,
        label_smoothing=0.2,
        axis=-1,
        reduction="sum",
        name="lsr_loss",
        prior=[0.1, 0.3, 0.2, 0.25, 0.15],
        ignore_class=-1,
        softcap=30.0,
        confidence_penalty=0.05,
    )
    config = loss.get_config()
    assert config == {
        "name": "lsr_loss",
        "reduction": "sum",
        "from_logits": True,
        "label_smoothing": 0.2,
        "axis": -1,
        "prior": [0.1, 0.3, 0.2, 0.25, 0.15],
        "ignore_class": -1,
        "softcap": 30.0,
        "confidence_penalty": 0.05,
        "dtype": None,
    }
    json.dumps(config)
    restored = SmoothCrossEntropy.from_config(config)
    assert restored.get_config() == config
    generic = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(generic, SmoothCrossEntropy) and generic.get_config() == config
    logits, labels = _case(seed=6)
    assert_close(restored(labels, logits), loss(labels, logits), "float32")

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, SmoothCrossEntropy)
    assert loaded.loss.get_config() == config


def _train(loss, labels, *, activation=None, jit_compile="auto", steps=3):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(K, activation=activation)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=jit_compile)
    # Batches of 12 (the last one short): the traced batch dimension is None.
    history = model.fit(x, labels, batch_size=12, epochs=steps, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_follows_categorical_crossentropy(jit_compile):
    labels = np.random.default_rng(8).integers(0, K, size=32)
    one_hot = np.eye(K, dtype=np.float32)[labels]
    expected_weights, expected_loss = _train(
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        one_hot,
        jit_compile=jit_compile,
    )
    for y in (labels, one_hot):
        weights, losses = _train(
            SmoothCrossEntropy(from_logits=True, label_smoothing=0.1), y, jit_compile=jit_compile
        )
        assert_close(losses, expected_loss, "float32", scale=10)
        for actual, expected in zip(weights, expected_weights, strict=True):
            assert_close(actual, expected, "float32", scale=10)


def test_fit_on_a_softmax_output_uses_the_logits_like_keras():
    labels = np.random.default_rng(9).integers(0, K, size=32)
    one_hot = np.eye(K, dtype=np.float32)[labels]
    expected_weights, expected_loss = _train(
        keras.losses.CategoricalCrossentropy(label_smoothing=0.1), one_hot, activation="softmax"
    )
    weights, losses = _train(SmoothCrossEntropy(label_smoothing=0.1), labels, activation="softmax")
    assert_close(losses, expected_loss, "float32", scale=10)
    for actual, expected in zip(weights, expected_weights, strict=True):
        assert_close(actual, expected, "float32", scale=10)


# --- other Keras backends, each in a fresh interpreter -------------------------------

OTHER_BACKEND = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from lsr.keras import SmoothCrossEntropy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 5, size=6)
    loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.2, prior="others")
    value = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.integers(0, 5, size=16)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss=loss)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "value": value,
        "fit_losses": history.history["loss"],
    }))
    """
)


OTHER_BACKENDS = [name for name in ("jax", "torch") if name in selected_backends()]


def _check_other_backend(keras_backend):
    environment = dict(os.environ, KERAS_BACKEND=keras_backend)
    result = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == keras_backend
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 5, size=6)
    expected = reference.smooth_ce(logits, labels, smoothing=0.2, prior="others")
    assert_close(report["value"], expected, "float32")
    assert all(np.isfinite(report["fit_losses"]))


# Generated only in sessions that install those backends ("tests(all)"), never skipped.
if OTHER_BACKENDS:

    @pytest.mark.parametrize("keras_backend", OTHER_BACKENDS)
    def test_other_keras_backends_use_the_generic_core(keras_backend):
        _check_other_backend(keras_backend)

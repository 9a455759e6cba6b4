"""lsr.keras.CalibrationError, the Keras metric of the streaming calibration state: the
batch expected_calibration_error after update_state calls, reset_state, Keras' label
forms, model.evaluate/fit and tf.function with an unknown batch size (TensorFlow)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from lsr import metrics
from lsr.keras import CalibrationError
from tests.backends import assert_close


def _probs(seed, n=75, num_classes=4):
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.normal(size=(n, num_classes))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    noise = rng.integers(0, num_classes, n)
    labels = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), noise)
    return probs, labels


def _batch(probs, labels, **options):
    return float(metrics.expected_calibration_error(probs, labels, from_logits=False, **options))


@pytest.mark.parametrize(
    "norm, debias", [("l1", False), ("l2", False), ("l2", True), ("max", False)]
)
@pytest.mark.parametrize("scope", ["top_label", "classwise"])
def test_update_state_calls_give_the_batch_error_and_reset_state_empties(scope, norm, debias):
    probs, labels = _probs(0)
    metric = CalibrationError(
        n_bins=10, norm=norm, num_classes=4, scope=scope, debias=debias, dtype="float64"
    )
    for start, stop in ((0, 1), (1, 33), (33, 75)):
        metric.update_state(labels[start:stop], probs[start:stop])
    options = dict(n_bins=10, norm=norm, scope=scope, debias=debias)
    assert_close(float(metric.result()), _batch(probs, labels, **options), "float64")
    metric.reset_state()
    assert np.isnan(float(metric.result()))
    metric.update_state(labels[:20], probs[:20])
    assert_close(float(metric.result()), _batch(probs[:20], labels[:20], **options), "float64")


def test_keras_label_forms_and_logits():
    probs, labels = _probs(1)
    expected = _batch(probs, labels, n_bins=6)
    forms = {
        "ids": labels,
        "ids with an axis of 1": labels[:, None],
        "one-hot": np.eye(4)[labels],
        "float ids": labels.astype("float32"),
    }
    for y_true in forms.values():
        metric = CalibrationError(n_bins=6, dtype="float64")
        metric.update_state(y_true, probs)
        assert_close(float(metric.result()), expected, "float64")
    from_logits = CalibrationError(n_bins=6, from_logits=True, dtype="float64")
    from_logits.update_state(labels, np.log(probs))
    assert_close(float(from_logits.result()), expected, "float64")


@pytest.mark.parametrize("scope", ["top_label", "classwise"])
def test_model_evaluate_and_fit(scope):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(101, 6)).astype("float32")
    y = rng.integers(0, 3, 101)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    metric = CalibrationError(n_bins=5, norm="l2", scope=scope, num_classes=3, dtype="float64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[metric])
    # 101 = 6 batches of 16 and one of 5: the last batch's size differs.
    result = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    probs = model.predict(x, batch_size=16, verbose=0).astype("float64")
    expected = _batch(probs, y, n_bins=5, norm="l2", scope=scope)
    assert_close(result["calibration_error"], expected, "float32")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["calibration_error"][0])


def test_update_state_traces_with_an_unknown_batch_size():
    probs, labels = _probs(3)
    metric = CalibrationError(n_bins=7, scope="classwise", num_classes=4, dtype="float64")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None, 4], tf.float64),
        ]
    )
    def update(y_true, y_pred):
        metric.update_state(y_true, y_pred)
        return metric.result()

    update(labels[:50], probs[:50])
    value = update(labels[50:], probs[50:])
    assert_close(float(value), _batch(probs, labels, n_bins=7, scope="classwise"), "float64")


def test_config_round_trip():
    metric = CalibrationError(
        n_bins=4, norm="max", scope="classwise", num_classes=3, bin_edges="left"
    )
    config = metric.get_config()
    clone = CalibrationError.from_config(config)
    assert clone.get_config() == config
    assert config["bin_edges"] == "left" and config["num_classes"] == 3
    assert keras.saving.get_registered_object("lsr>CalibrationError") is CalibrationError


def test_options_and_weights_are_checked():
    with pytest.raises(ValueError, match=r"equal-mass.*Received: binning='equal_mass'"):
        CalibrationError(binning="equal_mass")
    with pytest.raises(ValueError, match=r"pass num_classes.*Received: num_classes=None"):
        CalibrationError(scope="classwise")
    with pytest.raises(ValueError, match=r"Received: norm='max'"):
        CalibrationError(norm="max", debias=True)
    probs, labels = _probs(4, n=5)
    with pytest.raises(NotImplementedError, match="sample_weight"):
        CalibrationError().update_state(labels, probs, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="num_classes=3"):
        CalibrationError(scope="classwise", num_classes=3).update_state(labels, probs)
    with pytest.raises(ValueError, match=r"in \[0, 4\).*Received: labels with min=4"):
        CalibrationError().update_state(labels + 4, probs)


def test_soft_targets_are_refused_eagerly_and_give_nan_when_traced():
    """A row of y_true that is not one-hot has no true class: its argmax would give a
    plausible number, so eagerly it is an error and under tf.function the result NaN."""
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], np.float32)
    soft = np.array([[0.9, 0.1, 0.0], [0.0, 1.0, 0.0]], np.float32)
    metric = CalibrationError(n_bins=5)
    with pytest.raises(ValueError, match=r"must be one-hot rows.*Received: y_true="):
        metric.update_state(soft, probs)
    metric.update_state(np.eye(3, dtype=np.float32)[[0, 1]], probs)
    assert np.isfinite(float(metric.result()))  # (one-hot rows are fine)

    traced = CalibrationError(n_bins=5)

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3])])
    def update(y_true, y_pred):
        traced.update_state(y_true, y_pred)
        return traced.result()

    assert np.isnan(float(update(tf.constant(soft), tf.constant(probs))))

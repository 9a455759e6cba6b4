"""lsr.keras.CalibrationError, the Keras metric of the streaming calibration state: the
batch expected_calibration_error after update_state calls, reset_state, Keras' label
forms, model.evaluate/fit and tf.function with an unknown batch size (TensorFlow)."""

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

from lsr import metrics
from lsr.keras import CalibrationError
from tests.backends import assert_close, selected_backends


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


def _threshold(scope):
    """The thresholded scope's threshold, for the metric and the batch function alike."""
    return {"threshold": 0.2} if scope == "thresholded" else {}


@pytest.mark.parametrize(
    "norm, debias", [("l1", False), ("l1", True), ("l2", False), ("l2", True), ("max", False)]
)
@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
def test_update_state_calls_give_the_batch_error_and_reset_state_empties(scope, norm, debias):
    probs, labels = _probs(0)
    options = dict(n_bins=10, norm=norm, scope=scope, debias=debias, **_threshold(scope))
    metric = CalibrationError(num_classes=4, dtype="float64", **options)
    for start, stop in ((0, 1), (1, 33), (33, 75)):
        metric.update_state(labels[start:stop], probs[start:stop])
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


@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
def test_model_evaluate_and_fit(scope):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(101, 6)).astype("float32")
    y = rng.integers(0, 3, 101)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    metric = CalibrationError(
        n_bins=5, norm="l2", scope=scope, num_classes=3, dtype="float64", **_threshold(scope)
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[metric])
    # 101 = 6 batches of 16 and one of 5: the last batch's size differs.
    result = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    probs = model.predict(x, batch_size=16, verbose=0).astype("float64")
    expected = _batch(probs, y, n_bins=5, norm="l2", scope=scope, **_threshold(scope))
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
    thresholded = CalibrationError(scope="thresholded", num_classes=3, threshold=0.05)
    config = thresholded.get_config()
    assert config["threshold"] == 0.05
    assert CalibrationError.from_config(config).get_config() == config
    # Its default, resolved once: the batch function's 0.01.
    assert CalibrationError(scope="thresholded", num_classes=3).get_config()["threshold"] == 0.01
    assert keras.saving.get_registered_object("lsr>CalibrationError") is CalibrationError


def test_options_and_weights_are_checked():
    with pytest.raises(ValueError, match=r"at least n_bins=15.*Received: resolution=10"):
        CalibrationError(binning="equal_mass", resolution=10)
    with pytest.raises(ValueError, match=r"pass num_classes.*Received: num_classes=None"):
        CalibrationError(scope="classwise")
    with pytest.raises(ValueError, match=r"Received: norm='max'"):
        CalibrationError(norm="max", debias=True)
    probs, labels = _probs(4, n=5)
    with pytest.raises(ValueError, match=r"non-negative.*Received: sample_weight="):
        CalibrationError().update_state(labels, probs, sample_weight=-np.ones(5))
    with pytest.raises(ValueError, match=r"shape of `labels`.*Received: sample_weight="):
        CalibrationError().update_state(labels, probs, sample_weight=np.ones(4))
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


# ------------------------------------------------------------------ sample weights


def _weights(seed, n):
    weights = np.random.default_rng(seed).integers(0, 4, size=n)
    weights[0] = 1  # a positive total in every batch below
    return weights


@pytest.mark.parametrize("scope", ["top_label", "classwise"])
def test_sample_weight_repeats_examples_in_all_keras_forms(scope):
    probs, labels = _probs(5)
    weights = _weights(5, len(labels))
    repeated = np.repeat(np.arange(len(labels)), weights)
    options = dict(n_bins=8, norm="l2", scope=scope)
    expected = _batch(probs[repeated], labels[repeated], **options)
    forms = {
        "per example": weights,
        "float, trailing axis of 1": weights[:, None].astype("float32"),
    }
    for sample_weight in forms.values():
        metric = CalibrationError(num_classes=4, dtype="float64", **options)
        metric.update_state(labels[:30], probs[:30], sample_weight=sample_weight[:30])
        metric.update_state(labels[30:], probs[30:], sample_weight=sample_weight[30:])
        assert_close(float(metric.result()), expected, "float64")
    scalar = CalibrationError(num_classes=4, dtype="float64", **options)
    scalar.update_state(labels, probs, sample_weight=2.5)  # the same weight for all
    assert_close(float(scalar.result()), _batch(probs, labels, **options), "float64")


def test_sample_weight_under_tf_function_and_in_fit():
    probs, labels = _probs(6)
    weights = _weights(6, len(labels)).astype("float64")
    repeated = np.repeat(np.arange(len(labels)), weights.astype(int))
    metric = CalibrationError(n_bins=7, dtype="float64")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None, 4], tf.float64),
            tf.TensorSpec([None], tf.float64),
        ]
    )
    def update(y_true, y_pred, sample_weight):
        metric.update_state(y_true, y_pred, sample_weight=sample_weight)
        return metric.result()

    update(labels[:40], probs[:40], weights[:40])
    value = update(labels[40:], probs[40:], weights[40:])
    assert_close(float(value), _batch(probs[repeated], labels[repeated], n_bins=7), "float64")
    # A weight that cannot be checked while tracing poisons the result instead.
    metric.reset_state()
    assert np.isnan(float(update(labels[:3], probs[:3], np.array([1.0, -1.0, 1.0]))))

    x = np.random.default_rng(6).normal(size=(48, 6)).astype("float32")
    y = labels[:48]
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=[CalibrationError(n_bins=5)])
    history = model.fit(x, y, sample_weight=weights[:48], batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["calibration_error"][0])


# --- other Keras backends, each in a fresh interpreter -------------------------------

OTHER_BACKEND = textwrap.dedent(
    """
    import json
    import numpy as np
    import keras
    from lsr.keras import CalibrationError

    rng = np.random.default_rng(0)
    logits = 2.0 * rng.normal(size=(60, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=60)
    weights = rng.integers(0, 3, size=60).astype("float32")
    weights[0] = weights[30] = 1.0
    results = {}
    for scope in ("top_label", "classwise"):
        for weighted in (False, True):
            metric = CalibrationError(n_bins=6, scope=scope, num_classes=4, dtype="float32")
            for batch in (slice(0, 30), slice(30, 60)):
                metric.update_state(
                    labels[batch], probs[batch].astype("float32"),
                    sample_weight=weights[batch] if weighted else None,
                )
            results[f"{scope} {weighted}"] = float(keras.ops.convert_to_numpy(metric.result()))
    x = rng.normal(size=(40, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=[CalibrationError(n_bins=5)])
    evaluated = model.evaluate(x, labels[:40], batch_size=16, return_dict=True, verbose=0)
    predicted = model.predict(x, batch_size=16, verbose=0)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "results": results,
        "evaluated": evaluated["calibration_error"],
        "predicted": predicted.tolist(),
    }))
    """
)

OTHER_BACKENDS = [name for name in ("jax", "torch") if name in selected_backends()]


def _check_other_backend(keras_backend):
    environment = dict(os.environ, KERAS_BACKEND=keras_backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == keras_backend
    rng = np.random.default_rng(0)
    logits = 2.0 * rng.normal(size=(60, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype("float32")
    labels = rng.integers(0, 4, size=60)
    weights = rng.integers(0, 3, size=60)
    weights[0] = weights[30] = 1
    repeated = np.repeat(np.arange(60), weights)
    for scope in ("top_label", "classwise"):
        expected = _batch(probs, labels, n_bins=6, scope=scope)
        assert_close(report["results"][f"{scope} False"], expected, "float32")
        weighted = _batch(probs[repeated], labels[repeated], n_bins=6, scope=scope)
        assert_close(report["results"][f"{scope} True"], weighted, "float32")
    # evaluate runs update_state traced (jax.jit / torch): the error of what it predicts.
    predicted = np.array(report["predicted"], dtype="float32")
    expected = _batch(predicted, labels[:40], n_bins=5)
    assert_close(report["evaluated"], expected, "float32", scale=10.0)


# Generated only in sessions that install those backends ("tests(all)"), never skipped.
if OTHER_BACKENDS:

    @pytest.mark.parametrize("keras_backend", OTHER_BACKENDS)
    def test_the_metric_on_other_keras_backends(keras_backend):
        _check_other_backend(keras_backend)


def test_equal_mass_bins_of_fine_bins_and_their_config():
    """binning="equal_mass": ``resolution`` fine variables grouped by ``result``; on
    confidences at the centres of 256 fine bins (exact in binary) the groups are the
    batch function's equal-mass bins. The options survive get_config."""
    rng = np.random.default_rng(5)
    first = (rng.integers(0, 256, 150) + 0.5) / 256
    probs = np.stack([first, 1 - first], axis=1)
    labels = (rng.random(150) < first).astype(np.int64)
    metric = CalibrationError(n_bins=5, binning="equal_mass", resolution=256, dtype="float64")
    for start, stop in ((0, 50), (50, 150)):
        metric.update_state(labels[start:stop], probs[start:stop])
    expected = _batch(probs, labels, n_bins=5, binning="equal_mass")
    assert_close(float(metric.result()), expected, "float64")
    config = metric.get_config()
    assert config["binning"] == "equal_mass" and config["resolution"] == 256
    assert CalibrationError.from_config(config).get_config() == config

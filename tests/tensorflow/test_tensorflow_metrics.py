"""lsr.metrics under tf.function (collected only when TensorFlow is selected): the
calibration error and its bootstrap interval trace, and equal the eager numbers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lsr import metrics


def _case(seed=0, n=60, num_classes=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, num_classes))
    labels = rng.integers(0, num_classes, size=n)
    return tf.constant(logits), tf.constant(labels)


@pytest.mark.parametrize(
    "options",
    [
        dict(n_bins=10),
        dict(n_bins=5, norm="l1", debias=True, scope="classwise"),
        dict(n_bins=5, scope="thresholded", threshold=0.05, method="percentile"),
    ],
)
def test_calibration_error_interval_under_tf_function(options):
    logits, labels = _case()

    @tf.function
    def interval(z, y):
        return metrics.calibration_error_interval(z, y, n_resamples=30, seed=2, **options)

    eager = metrics.calibration_error_interval(logits, labels, n_resamples=30, seed=2, **options)
    for traced, expected in zip(interval(logits, labels), eager, strict=True):
        assert np.isfinite(float(expected))
        np.testing.assert_allclose(float(traced), float(expected), rtol=1e-12)


def test_an_unknown_number_of_examples_is_refused():
    logits, labels = _case()
    traced = tf.function(
        lambda z, y: metrics.calibration_error_interval(z, y),
        input_signature=[
            tf.TensorSpec((None, 4), tf.float64),
            tf.TensorSpec((None,), tf.int64),
        ],
    )
    with pytest.raises(ValueError, match=r"number of examples.*Received: logits_or_probs.shape="):
        traced(logits, labels)

"""Per-position smoothing under ``tf.function``, the smoothing traced (the shared
adapter tests are in ``tests/test_per_position_smoothing_adapters.py``)."""

from __future__ import annotations

import numpy as np

from tests import reference
from tests.backends import assert_close
from tests.test_per_position_smoothing_adapters import K, _case


def test_tf_function_with_traced_smoothing_of_unknown_batch():
    import tensorflow as tf

    import lsr.tensorflow

    logits, labels, eps = _case(4)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, K], tf.float64),
            tf.TensorSpec([None, None], tf.int64),
            tf.TensorSpec([None, 1], tf.float64),  # one epsilon per example
        ]
    )
    def loss_and_grad(z, y, e):
        with tf.GradientTape() as tape:
            tape.watch(z)
            none = lsr.tensorflow.smooth_ce(
                z, y, smoothing=e, prior="others", ignore_index=-100, reduction="none"
            )
            total = tf.reduce_sum(none)
        return none, tape.gradient(total, z)

    per_example = eps[:, :1]
    none, grad = loss_and_grad(logits, labels, per_example)
    options = dict(smoothing=np.broadcast_to(per_example, labels.shape), prior="others")
    options["ignore_index"] = -100
    assert_close(
        none.numpy(), reference.smooth_ce(logits, labels, reduction="none", **options), "float64"
    )
    expected_grad = reference.numerical_gradient(
        lambda z: reference.smooth_ce(z, labels, reduction="sum", **options), logits
    )
    assert_close(grad.numpy(), expected_grad, "float64", scale=1e4)
    bad = per_example.copy()
    bad[1, 0] = -0.5
    # (Eagerly a ValueError; traced, every kept position is NaN, ignored ones keep 0.)
    none_bad, _ = loss_and_grad(logits, labels, bad)
    kept = labels != -100
    assert np.isnan(none_bad.numpy()[kept]).all() and (none_bad.numpy()[~kept] == 0).all()

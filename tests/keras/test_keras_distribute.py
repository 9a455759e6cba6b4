"""SmoothCrossEntropy under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow initializes its runtime, which this
test process has already done, so the comparison runs in one fresh interpreter: the same
model and data trained and evaluated on one device and under the two-replica strategy.
With ``ignore_class`` the replicas keep different numbers of positions; Keras' own
``SparseCategoricalCrossentropy`` then averages the replicas' means, lsr's loss does not.
The sigmoid loss (``SmoothBinaryCrossEntropy``) is run on 27 samples in batches of 16: the
last batch of 11 splits 6/5 between the replicas, where Keras' own
``BinaryCrossentropy`` averages the replicas' means.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.backends import assert_close

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    from lsr.keras import SmoothBinaryCrossEntropy, SmoothCrossEntropy

    K = 5
    rng = np.random.default_rng(0)
    if sys.argv[1] == "categorical":
        x = rng.normal(size=(32, 4)).astype("float32")
        y = rng.integers(0, K, size=32)
        y[1:8] = -1  # ignored: the first replica of each batch of 16 keeps 1 of 8 positions
        losses = (
            ("lsr", SmoothCrossEntropy, {"label_smoothing": 0.1, "prior": "others"}),
            ("keras", keras.losses.SparseCategoricalCrossentropy, {}),
        )
        common = {"ignore_class": -1}
    else:  # multi-label; the last batch of 11 samples splits 6/5
        x = rng.normal(size=(27, 4)).astype("float32")
        y = rng.integers(0, 2, size=(27, K)).astype("float32")
        losses = (
            ("lsr", SmoothBinaryCrossEntropy, {"label_smoothing": 0.1}),
            ("keras", keras.losses.BinaryCrossentropy, {}),
        )
        common = {}

    def run(strategy, loss_class, **options):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(K)])
            loss = loss_class(from_logits=True, **common, **options)
            model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        initial = float(model.evaluate(x, y, batch_size=16, verbose=0))
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return {
            "replicas": strategy.num_replicas_in_sync,
            "initial_loss": initial,
            "fit_losses": history.history["loss"],
            "weights": [w.tolist() for w in model.get_weights()],
        }

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    # One strategy object for every run: separate MirroredStrategy instances in one
    # process can clash over collective-op instance keys.
    single_device = tf.distribute.OneDeviceStrategy(devices[0])
    mirrored = tf.distribute.MirroredStrategy(devices)
    report = {"devices": devices}
    for name, loss_class, options in losses:
        report[name] = {
            "single": run(single_device, loss_class, **options),
            "mirrored": run(mirrored, loss_class, **options),
        }
    print(json.dumps(report))
    """
)


@pytest.mark.parametrize("kind", ["categorical", "binary"])
def test_mirrored_strategy_gives_the_single_device_loss_and_gradients(kind):
    result = subprocess.run([sys.executable, "-c", SCRIPT, kind], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    single, mirrored = report["lsr"]["single"], report["lsr"]["mirrored"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert np.isfinite(single["initial_loss"]) and single["initial_loss"] > 0
    assert_close(mirrored["initial_loss"], single["initial_loss"], "float32", scale=10)
    assert_close(mirrored["fit_losses"], single["fit_losses"], "float32", scale=10)
    # Two epochs of SGD moved the weights; they moved identically.
    assert len(single["weights"]) == 2
    for actual, expected in zip(mirrored["weights"], single["weights"], strict=True):
        assert_close(np.array(actual), np.array(expected), "float32", scale=10)
    # The check can fail: Keras' own loss (with ignore_class, or with replicas of
    # different sizes) trains differently under the strategy.
    builtin = report["keras"]
    assert np.isfinite(builtin["single"]["initial_loss"])
    with pytest.raises(AssertionError):
        for actual, expected in zip(
            builtin["mirrored"]["weights"], builtin["single"]["weights"], strict=True
        ):
            assert_close(np.array(actual), np.array(expected), "float32", scale=10)

"""What the subprocess of test_tensorflow_distribute.py runs: MirroredStrategy on 2 CPUs.

TensorFlow fixes its logical devices when it initializes, so the two logical CPU devices
are configured in a fresh process. Every case runs the same model and global batch once
under ``tf.distribute.MirroredStrategy`` and once on a single device, and saves both;
the test compares them (and the single-device loss with the float64 reference).

Run as ``python -m tests.distributed._tf_worker OUT_FILE``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

IGNORE = -100
NUM_CLASSES = 7
NUM_FEATURES = 5
GLOBAL_BATCH = 12  # 6 positions per replica


def problem(seed: int, *, ignore: bool) -> dict:
    """A dense layer's initial weights and a global batch (first half: replica 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=GLOBAL_BATCH)
    if ignore:
        # Replica 0 keeps one position, replica 1 all six: per-replica means would differ.
        labels[1 : GLOBAL_BATCH // 2] = IGNORE
    return {
        "features": rng.normal(size=(GLOBAL_BATCH, NUM_FEATURES)),
        "kernel": rng.normal(scale=0.5, size=(NUM_FEATURES, NUM_CLASSES)),
        "bias": rng.normal(scale=0.1, size=NUM_CLASSES),
        "labels": labels,
    }


def main(out_file: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras

    import lsr.keras
    import lsr.tensorflow

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    results = {}

    def dense_model(case, dtype):
        layer = keras.layers.Dense(
            NUM_CLASSES,
            dtype=dtype,
            kernel_initializer=keras.initializers.Constant(case["kernel"]),
            bias_initializer=keras.initializers.Constant(case["bias"]),
        )
        return keras.Sequential([keras.Input((NUM_FEATURES,), dtype=dtype), layer])

    def per_replica(case, dtype):
        """Replica r's half of the global batch, placed on its device."""

        def value(context):
            half = GLOBAL_BATCH // 2
            start = context.replica_id_in_sync_group * half
            return (
                tf.constant(case["features"][start : start + half], dtype=dtype),
                tf.constant(case["labels"][start : start + half]),
            )

        return strategy.experimental_distribute_values_from_function(value)

    # --- Custom training loops with lsr.tensorflow.smooth_ce -------------------------------
    # "average": per-position losses and tf.nn.compute_average_loss (TF's own recipe).
    # "global-count": per-replica sums over the global number of kept positions, summed
    #   over replicas with the replica context's all_reduce (exact with ignore_index).
    # "mean-of-means": each replica's own "mean", averaged: the recipe that is NOT exact.
    def replica_loss(recipe, logits, labels):
        options = {"smoothing": 0.1, "prior": "others", "ignore_index": IGNORE}
        if recipe == "average":
            per_position = lsr.tensorflow.smooth_ce(logits, labels, reduction="none", **options)
            return tf.nn.compute_average_loss(per_position, global_batch_size=GLOBAL_BATCH)
        if recipe == "global-count":
            context = tf.distribute.get_replica_context()
            kept = tf.reduce_sum(tf.cast(labels != IGNORE, logits.dtype))
            total_kept = context.all_reduce(tf.distribute.ReduceOp.SUM, kept)
            summed = lsr.tensorflow.smooth_ce(logits, labels, reduction="sum", **options)
            return summed / tf.maximum(total_kept, 1.0)
        mean = lsr.tensorflow.smooth_ce(logits, labels, reduction="mean", **options)
        return mean / strategy.num_replicas_in_sync

    def custom_loop(case, dtype, recipe):
        with strategy.scope():
            model = dense_model(case, dtype)

        @tf.function
        def step(features, labels):
            with tf.GradientTape() as tape:
                loss = replica_loss(recipe, model(features), labels)
            return loss, tape.gradient(loss, model.trainable_variables)

        loss, grads = strategy.run(step, args=per_replica(case, dtype))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
        return loss.numpy(), [g.numpy() for g in grads]

    def single_device(case, dtype):
        model = dense_model(case, dtype)
        features = tf.constant(case["features"], dtype=dtype)
        with tf.GradientTape() as tape:
            loss = lsr.tensorflow.smooth_ce(
                model(features),
                tf.constant(case["labels"]),
                smoothing=0.1,
                prior="others",
                ignore_index=IGNORE,
            )
        grads = tape.gradient(loss, model.trainable_variables)
        return loss.numpy(), [g.numpy() for g in grads]

    for ignore in (False, True):
        case = problem(seed=int(ignore), ignore=ignore)
        for dtype in ("float32", "float64"):
            results[("single", ignore, dtype)] = single_device(case, dtype)
            for recipe in ("average", "global-count", "mean-of-means"):
                results[(recipe, ignore, dtype)] = custom_loop(case, dtype, recipe)

    # --- Keras: model.compile / fit with lsr.keras.SmoothCrossEntropy ---------------------
    def fit_once(case, distributed, loss_kwargs, loss_class=None):
        loss_class = loss_class or lsr.keras.SmoothCrossEntropy
        scope = strategy.scope() if distributed else tf.distribute.get_strategy().scope()
        with scope:
            model = dense_model(case, "float32")
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=1.0),
                loss=loss_class(from_logits=True, **loss_kwargs),
            )
        history = model.fit(
            case["features"].astype("float32"),
            case["labels"],
            batch_size=GLOBAL_BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        # One SGD step with learning rate 1: the weight change is minus the gradient.
        kernel, bias = (v.numpy() for v in model.trainable_variables)
        return history.history["loss"][0], [case["kernel"] - kernel, case["bias"] - bias]

    keras_cases = {
        "keras-uniform": (False, {"label_smoothing": 0.1}),
        "keras-others": (False, {"label_smoothing": 0.2, "prior": "others"}),
        "keras-ignore-class": (True, {"label_smoothing": 0.1, "ignore_class": IGNORE}),
    }
    for name, (ignore, loss_kwargs) in keras_cases.items():
        case = problem(seed=10 + int(ignore), ignore=ignore)
        results[(name, "mirrored")] = fit_once(case, True, loss_kwargs)
        results[(name, "single")] = fit_once(case, False, loss_kwargs)

    # Keras's own loss with ignore_class, for comparison: it averages per-replica means.
    case = problem(seed=11, ignore=True)
    builtin = keras.losses.SparseCategoricalCrossentropy
    for placement, distributed in (("mirrored", True), ("single", False)):
        results[("keras-builtin-ignore-class", placement)] = fit_once(
            case, distributed, {"ignore_class": IGNORE}, loss_class=builtin
        )

    np.save(out_file, np.array(results, dtype=object), allow_pickle=True)


if __name__ == "__main__":
    main(sys.argv[1])

# docs/examples/tf_mirrored.py: two logical CPUs stand in for two GPUs
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import lsr.keras  # noqa: E402
import lsr.tensorflow  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
features = rng.normal(size=(64, 16)).astype("float32")
labels = rng.integers(0, 10, size=64)


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(10)])


# Keras: compile and fit as usual; Keras divides each replica's loss by the number of
# replicas, so the step is the single-device one.
with strategy.scope():
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=lsr.keras.SmoothCrossEntropy(from_logits=True, label_smoothing=0.1, prior="others"),
    )
history = model.fit(features, labels, batch_size=64, epochs=1, shuffle=False, verbose=0)
single = make_model()
single.compile(
    optimizer=keras.optimizers.SGD(0.1),
    loss=lsr.keras.SmoothCrossEntropy(from_logits=True, label_smoothing=0.1, prior="others"),
)
single_history = single.fit(features, labels, batch_size=64, epochs=1, shuffle=False, verbose=0)
print(
    "keras fit loss, 2 replicas vs 1 device:",
    history.history["loss"][0],
    single_history.history["loss"][0],
)
print(
    "same weights after the step:",
    np.allclose(model.layers[0].kernel.numpy(), single.layers[0].kernel.numpy(), atol=1e-6),
)


# A custom loop with padding (ignore_index): sum each replica's losses and divide by the
# number of kept positions over ALL replicas (tf.nn.compute_average_loss divides by the
# global batch size, which counts the padding).
labels_padded = labels.copy()
labels_padded[:24] = -100  # replica 0 gets mostly padding
dataset = tf.data.Dataset.from_tensor_slices((features, labels_padded)).batch(64)
with strategy.scope():
    model = make_model()


@tf.function
def replica_loss(x, y):
    context = tf.distribute.get_replica_context()
    kept = context.all_reduce("sum", tf.reduce_sum(tf.cast(y != -100, tf.float32)))
    total = lsr.tensorflow.smooth_ce(model(x), y, ignore_index=-100, reduction="sum")
    return total / tf.maximum(kept, 1.0)


for x, y in strategy.experimental_distribute_dataset(dataset):
    loss = strategy.reduce("sum", strategy.run(replica_loss, args=(x, y)), axis=None)
one_device = lsr.tensorflow.smooth_ce(
    make_model()(features), tf.constant(labels_padded), ignore_index=-100
)
print("custom loop loss, 2 replicas vs 1 device:", float(loss), float(one_device))

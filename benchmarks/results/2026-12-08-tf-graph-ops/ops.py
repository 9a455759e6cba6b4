"""tf.function at 256 x 10: where lsr's graph spends its time against Keras', and why lsr
does not dispatch to TensorFlow's fused kernel there (ad hoc; see ops.txt).

Run from the repository root: ``python benchmarks/results/2026-12-08-tf-graph-ops/ops.py``.

1. Each graph (forward + backward, as ``benchmarks.tensorflow_backend`` builds it) run in
   a session with a full trace, 300 times: the time of each op, summed over the ops.
2. Three tf.functions timed in turns, 15 rounds: lsr, Keras' CategoricalCrossentropy on
   one-hot targets, and a sketch of the kernel route (one ``OneHot`` of the smoothed
   targets, ``SoftmaxCrossEntropyWithLogits``, NaN at out-of-range ids).
3. The rows where the kernel's values differ from lsr's documented ones.
"""

import collections
import time

import keras
import numpy as np
import tensorflow as tf

import lsr.tensorflow as lsr_tf

EPS, N, K = 0.1, 256, 10
cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=EPS)


def keras_loss(z, y):
    return cross_entropy(tf.one_hot(y, K, dtype=z.dtype), z)


def lsr_loss(z, y):
    return lsr_tf.smooth_ce(z, y, smoothing=EPS)


def kernel_rows(z, y):
    """The kernel route's per-row loss and gradient (smoothed targets of mass 1)."""
    targets = tf.one_hot(y, K, on_value=1 - EPS + EPS / K, off_value=EPS / K)
    bad = (y < 0) | (y >= K)
    targets = tf.where(tf.expand_dims(bad, -1), np.float32(np.nan), targets)
    return tf.raw_ops.SoftmaxCrossEntropyWithLogits(features=z, labels=targets)


def kernel_loss(z, y):
    @tf.custom_gradient
    def forward(z):
        loss, backprop = kernel_rows(z, y)
        return tf.reduce_sum(loss) / N, lambda upstream: backprop * (upstream / N)

    return forward(z)


def step(fn):
    def run(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = fn(z, y)
        return value, tape.gradient(value, z)

    return tf.function(run, reduce_retracing=False)


LOSSES = {"keras": keras_loss, "lsr": lsr_loss, "kernel route": kernel_loss}
rng = np.random.default_rng(0)
z_np = rng.standard_normal((N, K)).astype(np.float32)
y_np = rng.integers(0, K, N).astype(np.int32)

print("1. Op time per call from a full trace (us, summed over the ops), forward + backward")
for name in ("keras", "lsr"):
    concrete = step(LOSSES[name]).get_concrete_function(
        tf.TensorSpec((N, K), tf.float32), tf.TensorSpec((N,), tf.int32)
    )
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(concrete.graph.as_graph_def(), name="")
    types = {op.name: op.type for op in graph.get_operations()}
    inputs = [t.name for t in concrete.inputs]
    outputs = [t.name for t in concrete.outputs]
    feed = {inputs[0]: z_np, inputs[1]: y_np}
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    with tf.compat.v1.Session(graph=graph) as session:
        for _ in range(50):
            session.run(outputs, feed)
        by_type, runs = collections.Counter(), 300
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            session.run(outputs, feed, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    by_type[types.get(node.node_name, "(runtime)")] += node.all_end_rel_micros
    counted = [t for t in types.values() if t not in ("Const", "Identity", "Placeholder")]
    print(
        f"  {name}: {sum(by_type.values()) / runs:.0f} us over {len(counted)} ops "
        "(other than constants, identities and inputs); by op type:"
    )
    for op_type, micros in by_type.most_common(12):
        print(f"    {op_type:34s} {micros / runs:6.1f}")

print("2. tf.function forward + backward, median us per call over 15 rounds (ratio to Keras)")
functions = {name: step(fn) for name, fn in LOSSES.items()}
z, y = tf.constant(z_np), tf.constant(y_np)
for fn in functions.values():
    fn(z, y)
times = {name: [] for name in functions}
for _ in range(15):
    for name, fn in functions.items():
        start = time.perf_counter()
        for _ in range(300):
            out = fn(z, y)
        out[0].numpy()
        times[name].append((time.perf_counter() - start) / 300 * 1e6)
for name, values in times.items():
    ratio = np.median(np.array(values) / np.array(times["keras"]))
    print(f"  {name:14s} {np.median(values):6.0f} us  {ratio:.3f}")

print("3. Rows of non-finite logits (reduction 'none', label, loss and gradient row)")
inf = np.inf
edges = np.array(
    [[0, 1, 2, 3], [-inf, -inf, -inf, -inf], [inf, 1, 2, 3], [-inf, 1, 2, 3]], np.float32
)
edge_labels = np.array([0, 2, 0, 1], np.int32)
K = 4


@tf.function
def lsr_rows(z, y):
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = lsr_tf.smooth_ce(z, y, smoothing=EPS, reduction="none")
    return loss, tape.gradient(loss, z)


ours, kernel = lsr_rows(edges, edge_labels), tf.function(kernel_rows)(edges, edge_labels)
np.set_printoptions(precision=3, suppress=True)
for i, row in enumerate(edges):
    print(f"  logits {row}, label {edge_labels[i]}")
    print(f"    lsr    {ours[0][i].numpy():8.4f} {ours[1][i].numpy()}")
    print(f"    kernel {kernel[0][i].numpy():8.4f} {kernel[1][i].numpy()}")

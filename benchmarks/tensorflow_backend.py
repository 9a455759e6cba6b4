"""TensorFlow: lsr against Keras' ``CategoricalCrossentropy`` and ``tf.nn``'s fused loss.

Both TensorFlow baselines need dense targets, so they pay for ``tf.one_hot`` plus
smoothing inside the timed function, as a TF user with integer labels does. Each loss runs
under ``tf.function`` twice: with XLA (``jit_compile=True``) and as a plain graph (where
``tf.nn.softmax_cross_entropy_with_logits`` is TensorFlow's fused C++ kernel).

TensorFlow's default CPU allocator keeps no statistics
(``tf.config.experimental.get_memory_info`` reports zeros), so memory is measured in a
separate process started with ``TF_CPU_ALLOCATOR_USE_BFC=true`` (``MEMORY_ENV``), whose
BFC allocator records the exact peak of bytes in use; timings come from a process with
the default allocator, as users run it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras
import tensorflow as tf

import lsr
from benchmarks.common import Case, Loss, Method

# Each case and mode builds new tf.functions on purpose; TensorFlow's retracing advice
# does not apply.
tf.get_logger().setLevel("ERROR")

NAME = "tensorflow"
KINDS = ("labels",)
# The environment of the memory-measuring process (see the module docstring).
MEMORY_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
MEMORY_METHOD = "BFC allocator peak, in a process with TF_CPU_ALLOCATOR_USE_BFC=true (exact)"

try:
    import lsr.tensorflow as lsr_tensorflow
except ImportError:  # The adapter is not there yet: time the generic function.
    lsr_tensorflow = None

VARIANTS = {"xla": "tf.function(jit_compile=True)", "graph": "tf.function"}


def versions() -> dict[str, Any]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "lsr_implementation": "lsr.tensorflow.smooth_ce"
        if lsr_tensorflow is not None
        else "lsr.smooth_ce (generic, native autodiff: lsr.tensorflow not importable)",
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    generator = tf.random.Generator.from_seed(seed)
    logits = generator.normal(case.shape, dtype=tf.float32)
    label_shape = case.shape[: case.axis] + case.shape[case.axis + 1 :]
    labels = generator.uniform(label_shape, 0, case.num_classes, dtype=tf.int32)
    return logits, labels


def _keras_loss(case: Case):
    cross_entropy = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=case.smoothing, axis=case.axis
    )

    def loss(logits, labels):
        targets = tf.one_hot(labels, case.num_classes, axis=case.axis, dtype=logits.dtype)
        return cross_entropy(targets, logits)

    return loss


def _tf_nn_loss(case: Case):
    def loss(logits, labels):
        targets = tf.one_hot(labels, case.num_classes, axis=case.axis, dtype=logits.dtype)
        targets = (1.0 - case.smoothing) * targets + case.smoothing / case.num_classes
        return tf.reduce_mean(
            tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits, axis=case.axis)
        )

    return loss


def _tf_sparse_loss(case: Case):
    def loss(logits, labels):
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )

    return loss


KERAS = "keras CategoricalCrossentropy(one_hot)"
TF_NN = "tf.nn.softmax_cross_entropy_with_logits(one_hot)"


def lsr_losses(case: Case) -> list[Loss]:
    module = lsr_tensorflow if lsr_tensorflow is not None else lsr
    name = f"{module.__name__}.smooth_ce"
    fn = functools.partial(module.smooth_ce, smoothing=case.smoothing, axis=case.axis)
    return [
        Loss(f"{name} (xla)", "lsr", fn, "xla", f"{KERAS} (xla)"),
        Loss(f"{name} (graph)", "lsr", fn, "graph", f"{TF_NN} (graph)"),
    ]


def baseline_losses(case: Case) -> list[Loss]:
    return [
        Loss(f"{KERAS} (xla)", "baseline", _keras_loss(case), "xla"),
        Loss(f"{TF_NN} (graph)", "baseline", _tf_nn_loss(case), "graph"),
        Loss(
            "tf.nn.sparse_softmax_cross_entropy_with_logits eps=0 (xla)",
            "bound",
            _tf_sparse_loss(case),
            "xla",
        ),
    ]


def sync(output: Any) -> None:
    # A tf.function call on CPU returns once every output is computed; reading the
    # scalar loss back makes that explicit (and waits for a GPU too).
    first = output[0] if isinstance(output, tuple) else output
    first.numpy()


def _compiled(loss: Loss, mode: str):
    if mode == "forward":
        fn = loss.fn
    else:

        def fn(logits, labels):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = loss.fn(logits, labels)
            return value, tape.gradient(value, logits)

    return tf.function(fn, jit_compile=loss.variant == "xla", reduce_retracing=False)


def peak_allocated_bytes(step) -> int:
    """Peak bytes in use by the CPU (BFC) allocator during ``step()`` beyond before it."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    result = step()
    sync(result)
    del result
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


def methods(case: Case, mode: str, **_: Any) -> list[Method]:
    logits, labels = make_inputs(case)
    can_probe = all(os.environ.get(key) == value for key, value in MEMORY_ENV.items())
    result = []
    for loss in lsr_losses(case) + baseline_losses(case):
        step = functools.partial(_compiled(loss, mode), logits, labels)
        result.append(
            Method(
                name=loss.name,
                role=loss.role,
                step=step,
                peak_bytes=functools.partial(peak_allocated_bytes, step) if can_probe else None,
                memory_method=MEMORY_METHOD if can_probe else "",
                compare_to=loss.compare_to,
            )
        )
    return result


def check_agreement(case: Case) -> dict[str, float]:
    """lsr's loss and gradient against Keras' (max abs difference)."""
    logits, labels = make_inputs(case)
    outputs = {}
    for loss in (lsr_losses(case)[0], baseline_losses(case)[0]):
        value, gradient = _compiled(loss, "forward+backward")(logits, labels)
        outputs[loss.role] = (value, gradient)
    return {
        "loss_abs_diff": float(tf.abs(outputs["lsr"][0] - outputs["baseline"][0])),
        "grad_max_abs_diff": float(
            tf.reduce_max(tf.abs(outputs["lsr"][1] - outputs["baseline"][1]))
        ),
    }

"""TensorFlow: lsr against Keras' ``CategoricalCrossentropy`` in each execution mode.

Keras' loss needs dense targets, so it pays for ``tf.one_hot`` inside the timed function,
as a Keras user with integer labels does. Every loss runs eagerly, in a ``tf.function``
and under XLA (``jit_compile=True``); the closed form
``logsumexp(z) - (1 - eps) z_y - eps mean(z)`` differentiated by TensorFlow is timed under
XLA, and ``tf.nn.sparse_softmax_cross_entropy_with_logits`` (no smoothing) is a lower bound.
Each timed function is one ``tf.function`` called with the inputs as arguments: calling a
jit-compiled function from inside another would fold its inputs into constants and
recompile for every new input.

For the binary loss lsr's ``smooth_bce`` runs against Keras'
``BinaryCrossentropy(from_logits=True, label_smoothing=eps)`` (Keras' own smoothing,
towards 1/2) and against ``tf.nn.sigmoid_cross_entropy_with_logits`` on targets smoothed
by hand (``(1 - eps) y + eps / 2``), both in every execution mode;
``tf.nn.sigmoid_cross_entropy_with_logits`` on the raw targets is the lower bound (XLA).
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import tensorflow as tf

import lsr.keras as lsr_keras
import lsr.tensorflow as lsr_tf
from benchmarks.common import (
    BINARY_PRIOR,
    OVERHEAD_CASES,
    OVERHEAD_LINEAR,
    POSITIVE_FRACTION,
    Case,
    LinearCase,
    Loss,
    Method,
    OverheadPair,
)

# Each case and mode builds new tf.functions on purpose; TensorFlow's retracing advice
# does not apply.
tf.get_logger().setLevel("ERROR")

NAME = "tensorflow"
DTYPES = ("float32", "bfloat16")
EXACT_MEMORY_METHOD = None  # The default CPU allocator keeps no statistics.
VARIANTS = ("eager", "graph", "xla")


def versions() -> dict[str, Any]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    generator = tf.random.Generator.from_seed(seed)
    logits = tf.cast(generator.normal(case.shape, dtype=tf.float32), getattr(tf, case.dtype))
    if case.kind == "multilabel":
        positive = generator.uniform(case.shape) < POSITIVE_FRACTION
        return logits, tf.cast(positive, logits.dtype)
    labels = generator.uniform(case.label_shape, 0, case.num_classes, dtype=tf.int32)
    if case.ignore_index is not None:
        ignored = generator.uniform(case.label_shape) < case.ignored
        labels = tf.where(ignored, case.ignore_index, labels)
    return logits, labels


def _keep(case: Case, labels):
    return None if case.ignore_index is None else labels != case.ignore_index


def _lsr(case: Case):
    return functools.partial(
        lsr_tf.smooth_ce,
        smoothing=case.smoothing,
        axis=case.axis,
        ignore_index=case.ignore_index,
    )


def _keras(case: Case):
    cross_entropy = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=case.smoothing, axis=case.axis
    )

    def loss(logits, labels):
        # Ignored labels (out of range) give an all-zero one-hot row, as Keras users get.
        targets = tf.one_hot(labels, case.num_classes, axis=case.axis, dtype=logits.dtype)
        return cross_entropy(targets, logits)

    return loss


def _closed_form(case: Case):
    def loss(logits, labels):
        z = tf.cast(logits, tf.float32)
        keep = _keep(case, labels)
        safe = labels if keep is None else tf.where(keep, labels, 0)
        lse = tf.reduce_logsumexp(z, axis=case.axis)
        index = tf.expand_dims(safe, case.axis)
        target = tf.squeeze(tf.experimental.numpy.take_along_axis(z, index, case.axis), case.axis)
        per_position = (
            lse - (1 - case.smoothing) * target - case.smoothing * tf.reduce_mean(z, axis=case.axis)
        )
        if keep is None:
            return tf.reduce_mean(per_position)
        kept = tf.cast(keep, per_position.dtype)
        return tf.reduce_sum(per_position * kept) / tf.maximum(tf.reduce_sum(kept), 1.0)

    return loss


def _sparse(case: Case):
    def loss(logits, labels):
        if case.axis != logits.shape.rank - 1:
            logits = tf.experimental.numpy.moveaxis(logits, case.axis, -1)
        keep = _keep(case, labels)
        safe = labels if keep is None else tf.where(keep, labels, 0)
        per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        return tf.reduce_mean(per_position)

    return loss


def _lsr_binary(case: Case):
    return functools.partial(lsr_tf.smooth_bce, smoothing=case.smoothing, prior=BINARY_PRIOR)


def _keras_binary(case: Case):
    cross_entropy = keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=case.smoothing
    )

    def loss(logits, targets):
        return cross_entropy(targets, logits)

    return loss


def _sigmoid(smoothing: float):
    def loss(logits, targets):
        if smoothing:
            targets = (1 - smoothing) * targets + smoothing * BINARY_PRIOR
        per_element = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
        return tf.reduce_mean(per_element)

    return loss


KERAS = "keras CategoricalCrossentropy(one_hot)"
CLOSED = "closed form, tf autodiff (xla)"
KERAS_BINARY = "keras BinaryCrossentropy(label_smoothing)"
SIGMOID = "tf.nn.sigmoid_cross_entropy_with_logits(smoothed targets)"


def _binary_losses(case: Case) -> list[Loss]:
    result = []
    for variant in VARIANTS:
        rivals = (f"{KERAS_BINARY} ({variant})", f"{SIGMOID} ({variant})")
        result += [
            Loss(
                f"lsr.tensorflow.smooth_bce ({variant})",
                "lsr",
                _lsr_binary(case),
                variant,
                rivals,
            ),
            Loss(rivals[0], "native", _keras_binary(case), variant),
            Loss(rivals[1], "native", _sigmoid(case.smoothing), variant),
        ]
    result.append(
        Loss("tf.nn.sigmoid_cross_entropy_with_logits eps=0 (xla)", "bound", _sigmoid(0.0), "xla")
    )
    return result


def losses(case: Case, **_: Any) -> list[Loss]:
    if case.loss == "binary":
        return _binary_losses(case)
    result = []
    for variant in VARIANTS:
        native = f"{KERAS} ({variant})"
        rivals = (native, CLOSED) if variant == "xla" else (native,)
        result.append(
            Loss(f"lsr.tensorflow.smooth_ce ({variant})", "lsr", _lsr(case), variant, rivals)
        )
        result.append(Loss(native, "native", _keras(case), variant))
    result.append(Loss(CLOSED, "closed form", _closed_form(case), "xla"))
    result.append(
        Loss(
            "tf.nn.sparse_softmax_cross_entropy_with_logits eps=0 (xla)",
            "bound",
            _sparse(case),
            "xla",
        )
    )
    return result


def sync(output: Any) -> None:
    # Reading the scalar loss back waits for every output (also on a GPU).
    first = output[0] if isinstance(output, (tuple, list)) else output
    first.numpy()


def _function(loss: Loss, mode: str):
    if mode == "forward":
        # A plain function of the two inputs, for every loss alike: a tf.function binds
        # each call's arguments against its Python function's signature, which for lsr's
        # losses (a functools.partial of a function with a dozen keyword parameters)
        # cost the loss alone 745 against 323 microseconds for forward + backward at
        # 8 x 4 (benchmarks/results/2026-12-06-jax-tf-full/, before this wrapping).

        def fn(logits, labels):
            return loss.fn(logits, labels)

    else:

        def fn(logits, labels):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = loss.fn(logits, labels)
            return value, tape.gradient(value, logits)

    if loss.variant == "eager":
        return fn
    return tf.function(fn, jit_compile=loss.variant == "xla", reduce_retracing=False)


def step(loss: Loss, mode: str, inputs: tuple[Any, Any]):
    return functools.partial(_function(loss, mode), *inputs)


def methods(case: Case, mode: str, *, inputs=None, **_: Any) -> list[Method]:
    inputs = make_inputs(case) if inputs is None else inputs
    return [Method(loss, step(loss, mode, inputs)) for loss in losses(case)]


def check_agreement(case: Case) -> dict[str, Any]:
    """lsr's loss and gradient against Keras' under XLA (max abs difference)."""
    inputs = make_inputs(case)
    found = {loss.name: loss for loss in losses(case)}
    ours_name, against = "lsr.tensorflow.smooth_ce (xla)", f"{KERAS} (xla)"
    if case.loss == "binary":
        ours_name, against = "lsr.tensorflow.smooth_bce (xla)", f"{KERAS_BINARY} (xla)"
    ours = _function(found[ours_name], "forward+backward")(*inputs)
    theirs = _function(found[against], "forward+backward")(*inputs)
    return {
        "against": against,
        "loss_abs_diff": float(tf.abs(ours[0] - tf.cast(theirs[0], tf.float32))),
        "grad_max_abs_diff": float(
            tf.reduce_max(tf.abs(tf.cast(ours[1], tf.float32) - tf.cast(theirs[1], tf.float32)))
        ),
    }


def _linear_inputs(case: LinearCase) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    generator = tf.random.Generator.from_seed(0)
    hidden = generator.normal((case.rows, case.width))
    kernel = 0.05 * generator.normal((case.width, case.classes))
    labels = generator.uniform((case.rows,), 0, case.classes, dtype=tf.int32)
    return hidden, kernel, labels


def linear_step(case: LinearCase, method: str):
    """Forward and backward of the output layer + loss under XLA, gradients for hidden
    and kernel."""
    hidden, kernel, labels = _linear_inputs(case)
    keras_loss = _keras(Case("labels", (case.rows, case.classes)))

    @tf.function(jit_compile=True)
    def run(h, k, y):
        with tf.GradientTape() as tape:
            tape.watch([h, k])
            if method == "lsr":
                loss = lsr_tf.linear_smooth_ce(h, k, y, chunk_size=case.chunk_size)
            else:
                loss = keras_loss(h @ k, y)
        return tape.gradient(loss, [h, k])

    name = "keras loss of h @ k (xla)"
    if method == "lsr":
        name = "lsr.tensorflow.linear_smooth_ce (xla)"
    return name, functools.partial(run, hidden, kernel, labels)


def _keras_call(loss_object):
    """A Keras loss object called as Keras calls it, ``loss(y_true, y_pred)``."""

    def loss(logits, labels):
        return loss_object(labels, logits)

    return loss


def overhead_pairs() -> list[OverheadPair]:
    """Every public loss of ``lsr.tensorflow`` beside Keras' and ``tf.nn``'s, on tiny
    inputs, eagerly and in a ``tf.function``; lsr's Keras loss classes beside Keras' own,
    called eagerly."""
    eps = 0.1
    softmax_case, binary_case = OVERHEAD_CASES["softmax"], OVERHEAD_CASES["binary"]
    linear_case = Case("labels", (OVERHEAD_LINEAR.rows, OVERHEAD_LINEAR.classes))
    args = {
        "softmax": make_inputs(softmax_case),
        "binary": make_inputs(binary_case),
        "linear": _linear_inputs(OVERHEAD_LINEAR),
    }
    keras_ce, keras_linear = _keras(softmax_case), _keras(linear_case)

    def smoothed_one_hot(logits, labels):
        targets = tf.one_hot(labels, softmax_case.num_classes, dtype=logits.dtype)
        targets = (1 - eps) * targets + eps / softmax_case.num_classes
        per_row = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        return tf.reduce_mean(per_row)

    def plain_linear(hidden, kernel, labels):
        return keras_linear(hidden @ kernel, labels)

    ce_rival = "keras CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(one_hot)"
    bce_rival = "keras BinaryCrossentropy(from_logits=True, label_smoothing=0.1)"
    functions = [
        ("lsr.tensorflow.smooth_ce", ce_rival, "softmax", _lsr(softmax_case), keras_ce, eps),
        (
            "lsr.tensorflow.smooth_ce",
            "tf.nn.softmax_cross_entropy_with_logits(smoothed one_hot)",
            "softmax",
            _lsr(softmax_case),
            smoothed_one_hot,
            eps,
        ),
        (
            "lsr.tensorflow.smooth_bce",
            bce_rival,
            "binary",
            _lsr_binary(binary_case),
            _keras_binary(binary_case),
            eps,
        ),
        (
            "lsr.tensorflow.linear_smooth_ce",
            "keras CategoricalCrossentropy(label_smoothing=0.1) of h @ k",
            "linear",
            functools.partial(lsr_tf.linear_smooth_ce, smoothing=eps),
            plain_linear,
            eps,
        ),
    ]
    keras_classes = [
        (
            "lsr.keras.SmoothCrossEntropy",
            ce_rival,
            "softmax",
            _keras_call(lsr_keras.SmoothCrossEntropy(from_logits=True, label_smoothing=eps)),
            keras_ce,
            eps,
        ),
        (
            "lsr.keras.SmoothCrossEntropy",
            "keras SparseCategoricalCrossentropy(from_logits=True)",
            "softmax",
            _keras_call(lsr_keras.SmoothCrossEntropy(from_logits=True)),
            _keras_call(keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
            0.0,
        ),
        (
            "lsr.keras.SmoothBinaryCrossEntropy",
            bce_rival,
            "binary",
            _keras_call(lsr_keras.SmoothBinaryCrossEntropy(from_logits=True, label_smoothing=eps)),
            _keras_binary(binary_case),
            eps,
        ),
    ]
    return [
        OverheadPair(
            entry,
            rival,
            variant,
            inputs,
            ours,
            theirs,
            args[inputs],
            2 if inputs == "linear" else 1,
            smoothing,
        )
        for variant, found in (
            ("eager", functions + keras_classes),
            ("tf.function", functions),
        )
        for entry, rival, inputs, ours, theirs, smoothing in found
    ]


def overhead_step(fn, args: tuple[Any, ...], differentiable: int, mode: str, variant: str):
    """One call of ``fn`` on ``args``, eagerly or as a ``tf.function``: the loss, or the
    loss and its gradients with respect to the first ``differentiable`` inputs."""
    if mode == "forward":
        # (A plain function for every loss alike, as in ``_function``.)

        def call(*inputs):
            return fn(*inputs)

    else:

        def call(*inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs[:differentiable])
                value = fn(*inputs)
            return value, tape.gradient(value, inputs[:differentiable])

    if variant == "tf.function":
        call = tf.function(call, reduce_retracing=False)
    return functools.partial(call, *args)


def to_numpy(tensor: tf.Tensor) -> Any:
    return tf.cast(tensor, tf.float32).numpy()

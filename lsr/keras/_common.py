"""What both Keras losses share: the backends they run on, shape checks that work inside
traced functions, the logits behind a Keras softmax or sigmoid output, and the exact
global-batch mean under ``tf.distribute``."""

from __future__ import annotations

import numbers
from typing import Any

import keras

from lsr._validation import check_fraction, fail_type

__all__ = [
    "check_arguments",
    "check_backend",
    "check_known_rank",
    "exact_over_replicas",
    "logits_behind_activation",
]

_BACKENDS = ("tensorflow", "jax", "torch", "numpy")


def check_backend() -> str:
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise NotImplementedError(
            f"lsr.keras's losses run on the Keras backends {', '.join(_BACKENDS)}; "
            f"lsr has no adapter for this one. Received: keras.backend.backend()={backend!r}"
        )
    return backend


def check_known_rank(name: str, value: Any) -> None:
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(shape, "rank", 0) is None:
        raise ValueError(
            f"`{name}` must have a known number of dimensions (inside a traced function, "
            f"give it a shape with a rank). Received: {name}.shape=<unknown rank>"
        )


def logits_behind_activation(y_pred: Any, activation: str = "Softmax") -> Any:
    """The logits a Keras softmax (or sigmoid) output was computed from, or None (as Keras
    finds them)."""
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        return logits
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if tf.executing_eagerly() or not isinstance(y_pred, tf.Tensor):
        return None
    op = y_pred.op
    if op.type == activation and len(op.inputs) == 1:
        return op.inputs[0]
    return None


def exact_over_replicas(loss: Any, kept: Any) -> Any:
    """Per-position losses rescaled so that Keras' results under ``tf.distribute`` are
    the global batch's: the gradient, and the reported loss.

    Under a strategy, Keras reduces each replica's loss alone (divided by that replica's
    count ``k_r`` of kept positions), sums the replicas' gradients of that divided by the
    number of replicas ``R``, and reports (its loss tracker) the replicas' values
    weighted by their numbers of samples ``n_r``: the batch mean only when every replica
    keeps as many positions and holds as many samples. With ``D`` kept positions and
    ``N`` samples in the global batch, the gradient is the global mean's when each
    replica's losses are scaled by ``R k_r / D``, and the reported value is when they are
    scaled by ``N k_r / (D n_r)``; the two agree when the replicas hold equal numbers of
    samples. The result has the first scale's gradient and the second's value (the
    scales are constants for autodiff), so training and the reported loss both match
    one device, with ``ignore_class`` and with an uneven last batch. Outside a strategy
    the loss is returned as it is.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return loss
    dtype = loss.dtype
    if kept is None:
        local_count = tf.cast(tf.size(loss), dtype)
    else:
        local_count = tf.reduce_sum(tf.cast(kept, dtype))
    # The samples of this replica (Keras' tracker weighs the replica's value by them).
    local_samples = tf.cast(tf.shape(loss)[0], dtype) if loss.shape.rank else tf.ones((), dtype)
    totals = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([local_count, local_samples]))
    global_count, global_samples = totals[0], totals[1]
    replicas = tf.cast(context.num_replicas_in_sync, dtype)
    gradient_scale = tf.math.divide_no_nan(local_count * replicas, global_count)
    value_scale = tf.math.divide_no_nan(local_count * global_samples, global_count * local_samples)
    return loss * tf.stop_gradient(gradient_scale) + tf.stop_gradient(
        loss * (value_scale - gradient_scale)
    )


def check_arguments(
    loss: Any, name: Any, dtype: Any, from_logits: Any, label_smoothing: Any, axis: Any
) -> None:
    """The constructor arguments both losses share with Keras' own (after
    ``keras.losses.Loss.__init__``, which resolved ``dtype`` into ``loss.dtype``)."""
    check_backend()
    if not isinstance(name, str):
        fail_type("`name` must be a string.", "name", name)
    if not keras.backend.is_float_dtype(loss.dtype):
        fail_type(
            "`dtype` must be a floating dtype or a floating dtype policy (the loss is "
            "computed in it).",
            "dtype",
            dtype,
        )
    if not isinstance(from_logits, bool):
        fail_type("`from_logits` must be a bool.", "from_logits", from_logits)
    check_fraction("label_smoothing", label_smoothing)
    if not isinstance(label_smoothing, numbers.Real):
        fail_type("`label_smoothing` must be a Python float.", "label_smoothing", label_smoothing)
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        fail_type("`axis` must be an integer.", "axis", axis)

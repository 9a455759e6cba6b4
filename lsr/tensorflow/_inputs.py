"""tf.Tensors from what users pass (tensors, variables, NumPy arrays, lists), and the
shape facts lsr needs before computing: a known rank, a known number of classes, and the
count of positions when the batch size is unknown (``keras.Model.fit``)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import tensorflow as tf

from lsr._validation import fail_type, fail_value, normalize_axis

__all__ = [
    "all_positions",
    "as_option",
    "as_optional_tensor",
    "as_prior",
    "as_tensor",
    "check_class_axis",
]


def as_tensor(name: str, value: Any) -> Any:
    """A tf.Tensor from a tensor, variable, NumPy array or Python (nested) list, with a
    known number of dimensions (every check after this one reads the shape)."""
    if isinstance(value, tf.Variable):
        # Reading the variable keeps it on the tape, so its gradient still arrives.
        tensor = tf.convert_to_tensor(value)
    elif isinstance(value, tf.Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        try:
            # (types-tensorflow's TensorCompatible lists no numbers.Number.)
            tensor = tf.convert_to_tensor(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`{name}` could not be converted to a tf.Tensor: {error} "
                f"Received: {name}={value!r}"
            ) from error
    else:
        fail_type(
            f"`{name}` must be a tf.Tensor, a NumPy array or a list of numbers; convert "
            "arrays of other libraries first.",
            name,
            value,
        )
    if tensor.shape.rank is None:
        raise ValueError(
            f"`{name}` must have a known number of dimensions (inside tf.function, give "
            f"the function an input_signature with a rank). Received: {name}.shape=<unknown rank>"
        )
    return tensor


def as_optional_tensor(name: str, value: Any) -> Any:
    return None if value is None else as_tensor(name, value)


def as_prior(value: Any) -> Any:
    """A prior's name as it is; anything else is an array of K probabilities."""
    return value if value is None or isinstance(value, str) else as_tensor("prior", value)


def as_option(name: str, value: Any) -> Any:
    """``smoothing`` and ``temperature``: bools, strings and Python numbers as they are
    (the checks of ``lsr._checks`` name them), arrays as tensors."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic) and isinstance(value, numbers.Real):
        return value.item()  # A NumPy scalar is a number here, not a NumPy array.
    if isinstance(value, numbers.Real):
        return value
    return as_tensor(name, value)


def check_class_axis(name: str, tensor: Any, axis: Any) -> None:
    """Refuse a class axis of unknown size (inside ``tf.function``): K sets the shapes of
    everything the core builds. A bad ``axis`` is left to the checks that name it."""
    rank = tensor.shape.rank
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        return
    if -rank <= axis < rank and tensor.shape[axis] is None:
        fail_value(
            f"`{name}` must have a known number of classes (the size of its axis {axis}); "
            "inside tf.function, give the input_signature that size (other dimensions may "
            "be None).",
            f"{name}.shape",
            tuple(tensor.shape),
        )


def all_positions(logits: Any, axis: Any) -> Any:
    """An all-true ``where`` mask of the logits' dynamic shape without the class axis.

    The core counts the positions of a mean from the static shape; with an unknown
    dimension (a batch of None, as in ``keras.Model.fit``) this mask gives it the count
    as a tensor instead. ``axis``: valid for the logits (checked before)."""
    axis = normalize_axis(axis, logits.shape.rank)
    shape = tf.shape(logits)
    return tf.ones(tf.concat([shape[:axis], shape[axis + 1 :]], axis=0), dtype=tf.bool)

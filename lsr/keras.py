"""Keras 3 adapter: ``SmoothCrossEntropy``, a drop-in for ``CategoricalCrossentropy``, and
``SmoothBinaryCrossEntropy``, a drop-in for ``BinaryCrossentropy``.

Swapping the class name is the whole migration: the constructor takes the arguments of
``keras.losses.CategoricalCrossentropy`` (``from_logits``, ``label_smoothing``, ``axis``,
``reduction``, ``name``, ``dtype``) with the same defaults, plus lsr's ``prior`` and
``ignore_class`` (as in ``SparseCategoricalCrossentropy``). Labels may be one-hot (or
soft) targets of the predictions' shape, or integer class ids without the class axis
(also with a trailing axis of size 1, as Keras' sparse losses accept them): integer
labels are never expanded to one-hot.

Backends: on TensorFlow the loss runs ``lsr.tensorflow.smooth_ce`` (custom gradient,
``tf.function``, XLA, ``tf.distribute``); on JAX, PyTorch and NumPy it runs the generic
``lsr.smooth_ce`` on the backend's own arrays (autodiff through lsr's array-API core).
Any other Keras backend raises ``NotImplementedError`` when the loss is created.

Where it differs from ``CategoricalCrossentropy``: ``label_smoothing`` is applied along
``axis`` (Keras counts the classes on the last axis whatever ``axis`` is), and it also
applies to integer labels. Under ``tf.distribute`` strategies the "sum_over_batch_size"
(and "mean") reduction is the mean over the global batch's kept positions, exactly as on
one device, where Keras' own losses average each replica's mean (different when the
replicas keep different numbers of positions: ``ignore_class``, uneven last batches).
With ``from_logits=False`` probabilities are turned into
logits the way Keras' TensorFlow backend does (normalized, clipped to
``[epsilon, 1 - epsilon]``, logarithm; or, for the output of a Keras softmax, the logits
behind it).

Keras treats ``y_true`` as a constant; a caller whose tape watches soft (floating)
``y_true`` targets gets their gradient, the same eagerly and inside ``tf.function``
(``lsr.tensorflow``'s rule); integer labels have none. The constructor checks its
arguments when the loss is made; ``call`` checks shapes before computing (a class axis of
unknown size, as a model output of shape ``(None, None)`` gives in ``fit``, is a
ValueError). Inside ``fit`` label values cannot be read: an out-of-range class id makes
the loss NaN.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from lsr._checks import check_prior
from lsr._compat import get_backend
from lsr._validation import PRIOR_NAMES, check_fraction, fail_type, fail_value, normalize_axis

__all__ = ["SmoothBinaryCrossEntropy", "SmoothCrossEntropy"]

_BACKENDS = ("tensorflow", "jax", "torch", "numpy")


def _check_backend() -> str:
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise NotImplementedError(
            f"lsr.keras.SmoothCrossEntropy runs on the Keras backends {', '.join(_BACKENDS)}; "
            f"lsr has no adapter for this one. Received: keras.backend.backend()={backend!r}"
        )
    return backend


def _checked_prior(prior: Any) -> str | list[float]:
    """A prior name, or a class distribution as a list of floats (serializable)."""
    if isinstance(prior, str):
        if prior not in PRIOR_NAMES:
            fail_value(f"`prior` must be one of {PRIOR_NAMES} or a distribution.", "prior", prior)
        return prior
    try:
        given = np.asarray(prior)
        # Booleans are not probabilities (True would silently read as 1.0).
        values = None if given.dtype == bool else np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or values.size < 1:
        fail_type(
            f"`prior` must be one of {PRIOR_NAMES} or a 1-d sequence of class probabilities.",
            "prior",
            prior,
        )
    # The same checks (and messages) as every lsr function, once, on the given values.
    check_prior(get_backend("numpy").namespace(), values, values.size, np.float64)
    return [float(v) for v in values]


def _check_known_rank(name: str, value: Any) -> None:
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(shape, "rank", 0) is None:
        raise ValueError(
            f"`{name}` must have a known number of dimensions (inside a traced function, "
            f"give it a shape with a rank). Received: {name}.shape=<unknown rank>"
        )


def _logits_behind_softmax(y_pred: Any, activation: str = "Softmax") -> Any:
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


def _exact_over_replicas(loss: Any, kept: Any) -> Any:
    """Per-position losses rescaled so that Keras' mean is the global batch's mean.

    Under ``tf.distribute``, Keras divides each replica's loss by that replica's count of
    (kept) positions and by the number of replicas, then sums the replicas' gradients:
    the batch mean only when every replica keeps as many positions. Multiplying by
    ``local_count * replicas / global_count`` (a constant for autodiff) makes the sum of
    the replicas' results the mean over every kept position of the global batch, also
    with ``ignore_class`` and with uneven last batches. Outside a strategy it is 1.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return loss
    if kept is None:
        local_count = tf.cast(tf.size(loss), loss.dtype)
    else:
        local_count = tf.reduce_sum(tf.cast(kept, loss.dtype))
    global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
    replicas = tf.cast(context.num_replicas_in_sync, loss.dtype)
    return loss * tf.stop_gradient(tf.math.divide_no_nan(local_count * replicas, global_count))


@keras.saving.register_keras_serializable(package="lsr")
class SmoothCrossEntropy(keras.losses.Loss):
    r"""Label-smoothed cross-entropy with ``CategoricalCrossentropy``'s interface.

    The loss at each position is ``H(q', p)`` with ``q' = (1 - label_smoothing) q +
    label_smoothing u``: ``u_k = 1/K`` for ``prior="uniform"`` (Keras' own
    ``label_smoothing``), ``eps`` spread over the K - 1 other classes for ``"others"``,
    or a given class distribution.

    Args:
        from_logits: whether ``y_pred`` holds logits (else probabilities).
        label_smoothing: epsilon in [0, 1].
        axis: the class axis of ``y_pred``.
        reduction: a Keras reduction (``"sum_over_batch_size"``, ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or None).
        name: the loss name.
        dtype: the dtype of the loss's computations (Keras' ``floatx()`` by default).
        prior: ``"uniform"``, ``"others"`` or a sequence of K class probabilities.
        ignore_class: an integer label whose positions get loss 0 and are left out of the
            mean (integer labels only), as in ``SparseCategoricalCrossentropy``.

    Example:
        >>> import numpy as np
        >>> from lsr.keras import SmoothCrossEntropy
        >>> loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.1)
        >>> value = loss(np.array([[1.0, 0.0, 0.0]]), np.array([[100.0, -100.0, -100.0]]))
        >>> print(f"{float(value):.4f}")  # 400 * 0.1 / 3, as CategoricalCrossentropy
        13.3333
        >>> print(f"{float(loss(np.array([0]), np.array([[100.0, -100.0, -100.0]]))):.4f}")
        13.3333

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
        Müller et al. 2019, "When Does Label Smoothing Help?".
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smooth_cross_entropy",
        dtype: Any = None,
        *,
        prior: Any = "uniform",
        ignore_class: int | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_backend()
        if not isinstance(name, str):
            fail_type("`name` must be a string.", "name", name)
        if not keras.backend.is_float_dtype(self.dtype):
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
            fail_type(
                "`label_smoothing` must be a Python float.", "label_smoothing", label_smoothing
            )
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            fail_type("`axis` must be an integer.", "axis", axis)
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, numbers.Integral)
        ):
            fail_type("`ignore_class` must be an integer or None.", "ignore_class", ignore_class)
        # Declared, not inferred: to mypy, float and int are not numbers.Real/Integral
        # (typeshed), so it takes what follows the NoReturn checks above for unreachable.
        self.from_logits: bool = from_logits
        self.label_smoothing: float = float(label_smoothing)
        self.axis: int = int(axis)
        self.prior: str | list[float] = _checked_prior(prior)
        self.ignore_class: int | None = None if ignore_class is None else int(ignore_class)
        self._given_dtype: Any = dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        for name, value in (("y_true", y_true), ("y_pred", y_pred)):
            if value is None or isinstance(value, (str, bytes)):
                fail_type(f"`{name}` must be an array of numbers.", name, value)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        backend = _check_backend()
        # Shapes are checked before anything is computed: inside a traced function
        # (``model.fit``) a dimension may be unknown, and K must not be.
        _check_known_rank("y_true", y_true)
        _check_known_rank("y_pred", y_pred)
        ndim = len(y_pred.shape)
        if ndim < 1:
            fail_value(
                "`y_pred` must have at least one dimension (the class axis).", "y_pred", y_pred
            )
        axis = normalize_axis(self.axis, ndim)
        if y_pred.shape[axis] is None:
            fail_value(
                f"`y_pred` must have a known number of classes (the size of its axis {axis}); "
                "the model's output must have that size (other dimensions may be None).",
                "y_pred.shape",
                tuple(y_pred.shape),
            )
        logits = y_pred
        if self.from_logits and _logits_behind_softmax(y_pred) is not None:
            # As Keras' own cross-entropies warn: probabilities are not logits.
            warnings.warn(
                "SmoothCrossEntropy got `from_logits=True`, but `y_pred` comes from a "
                "softmax and holds probabilities, not logits. Remove the softmax from the "
                "model's output, or pass `from_logits=False`.",
                UserWarning,
                stacklevel=2,
            )
        if not self.from_logits:
            logits = _logits_behind_softmax(y_pred)
            if logits is None:
                epsilon = keras.config.epsilon()
                probabilities = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
                logits = ops.log(ops.clip(probabilities, epsilon, 1.0 - epsilon))

        label_ndim = len(y_true.shape)
        sparse = label_ndim == ndim - 1 or (
            label_ndim == ndim and y_true.shape[axis] == 1 and y_pred.shape[axis] != 1
        )
        if sparse:
            labels = ops.squeeze(y_true, axis=axis) if label_ndim == ndim else y_true
            labels = ops.cast(labels, "int32")
        else:
            if self.ignore_class is not None:
                fail_value(
                    "`ignore_class` applies to integer labels (class ids); these labels have "
                    "the predictions' shape (one-hot or soft targets).",
                    "ignore_class",
                    self.ignore_class,
                )
            labels = ops.cast(y_true, logits.dtype)

        prior = self.prior
        if not isinstance(prior, str):
            float64 = keras.backend.standardize_dtype(logits.dtype) == "float64"
            prior_dtype = "float64" if float64 else "float32"
            prior = ops.convert_to_tensor(prior, dtype=prior_dtype)
        if backend == "tensorflow":
            from lsr.tensorflow import smooth_ce
        else:
            from lsr import smooth_ce
        loss = smooth_ce(
            logits,
            labels,
            smoothing=self.label_smoothing,
            prior=prior,
            axis=axis,
            ignore_index=self.ignore_class if sparse else None,
            reduction="none",
        )
        kept = None
        if self.ignore_class is not None:
            kept = ops.not_equal(labels, self.ignore_class)
        if backend == "tensorflow" and self.reduction in ("sum_over_batch_size", "mean"):
            loss = _exact_over_replicas(loss, kept)
        if kept is not None:
            # As SparseCategoricalCrossentropy does: the mask leaves ignored positions
            # out of the "sum_over_batch_size" denominator (Keras has no public setter).
            from keras.src.backend import set_keras_mask

            set_keras_mask(loss, kept)
        return loss

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "axis": self.axis,
                "prior": self.prior,
                "ignore_class": self.ignore_class,
                "dtype": None if self._given_dtype is None else self._dtype_policy.name,
            }
        )
        return config


def _checked_binary_prior(prior: Any) -> float | str | list[float]:
    """The smoothing value u: a float in [0, 1], "uniform", or a list of one per label."""
    if isinstance(prior, str):
        if prior != "uniform":
            fail_value(
                "`prior` must be a number in [0, 1], 'uniform' or one value per label.",
                "prior",
                prior,
            )
        return prior
    if isinstance(prior, numbers.Real) and not isinstance(prior, bool):
        if not 0.0 <= float(prior) <= 1.0:
            fail_value("`prior` (the smoothing value u) must be in [0, 1].", "prior", prior)
        return float(prior)
    try:
        given = np.asarray(prior)
        values = None if given.dtype == bool else np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or values.size < 1:
        fail_type(
            "`prior` must be a number in [0, 1], 'uniform' or a 1-d sequence of one value "
            "per label.",
            "prior",
            prior,
        )
    if not np.all((values >= 0) & (values <= 1)):
        fail_value("`prior` (the smoothing values u) must be in [0, 1].", "prior", prior)
    return [float(v) for v in values]


@keras.saving.register_keras_serializable(package="lsr")
class SmoothBinaryCrossEntropy(keras.losses.Loss):
    r"""Label-smoothed sigmoid (binary, multi-label) cross-entropy with
    ``BinaryCrossentropy``'s interface.

    Each element's target becomes ``(1 - label_smoothing) y + label_smoothing u``: with
    the default ``prior=0.5`` exactly Keras' own ``label_smoothing``; ``prior="uniform"``
    is ``u = 1/K`` over the K labels on ``axis`` (timm), ``prior=0.0`` one-sided, or one
    value per label. As ``BinaryCrossentropy``, each sample's loss is the mean over
    ``axis`` of its elements' losses, then Keras' reduction (with ``sample_weight``)
    applies. Computed by ``lsr.smooth_bce`` in softplus form on every Keras backend
    (TensorFlow, JAX, PyTorch, NumPy).

    Args:
        from_logits: whether ``y_pred`` holds logits (else probabilities: the logits of
            a Keras sigmoid output are used, as Keras does; other probabilities are
            clipped to ``[epsilon, 1 - epsilon]`` and turned into ``log(p / (1 - p))``,
            the same loss as Keras' clipped logarithms).
        label_smoothing: epsilon in [0, 1].
        axis: the axis the per-sample mean is taken over (the labels).
        reduction: a Keras reduction (``"sum_over_batch_size"``, ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or None).
        name: the loss name.
        dtype: the dtype of the loss's computations (Keras' ``floatx()`` by default).
        prior: the smoothing value ``u``: a number in [0, 1], ``"uniform"`` or a sequence
            of one value per label.

    Example:
        >>> import numpy as np
        >>> from lsr.keras import SmoothBinaryCrossEntropy
        >>> loss = SmoothBinaryCrossEntropy(from_logits=True, label_smoothing=0.1)
        >>> y_true = np.array([[1.0, 0.0, 1.0]])
        >>> y_pred = np.array([[2.0, -1.0, 0.5]])
        >>> print(f"{float(loss(y_true, y_pred)):.4f}")  # as BinaryCrossentropy
        0.3631
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "smooth_binary_cross_entropy",
        dtype: Any = None,
        *,
        prior: Any = 0.5,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_backend()
        if not isinstance(name, str):
            fail_type("`name` must be a string.", "name", name)
        if not keras.backend.is_float_dtype(self.dtype):
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
            fail_type(
                "`label_smoothing` must be a Python float.", "label_smoothing", label_smoothing
            )
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            fail_type("`axis` must be an integer.", "axis", axis)
        self.from_logits: bool = from_logits
        self.label_smoothing: float = float(label_smoothing)
        self.axis: int = int(axis)
        self.prior: float | str | list[float] = _checked_binary_prior(prior)
        self._given_dtype: Any = dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        for name, value in (("y_true", y_true), ("y_pred", y_pred)):
            if value is None or isinstance(value, (str, bytes)):
                fail_type(f"`{name}` must be an array of numbers.", name, value)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        _check_backend()
        _check_known_rank("y_true", y_true)
        _check_known_rank("y_pred", y_pred)
        ndim = len(y_pred.shape)
        if ndim < 1:
            fail_value("`y_pred` must have at least one dimension.", "y_pred", y_pred)
        axis = normalize_axis(self.axis, ndim)
        if tuple(y_true.shape) != tuple(y_pred.shape):
            fail_value(
                f"`y_true` must have the predictions' shape {tuple(y_pred.shape)}.",
                "y_true.shape",
                tuple(y_true.shape),
            )
        behind = _logits_behind_softmax(y_pred, "Sigmoid")
        if self.from_logits and behind is not None:
            warnings.warn(
                "SmoothBinaryCrossEntropy got `from_logits=True`, but `y_pred` comes from a "
                "sigmoid and holds probabilities, not logits. Remove the sigmoid from the "
                "model's output, or pass `from_logits=False`.",
                UserWarning,
                stacklevel=2,
            )
        logits = y_pred
        if not self.from_logits:
            logits = behind
            if logits is None:
                epsilon = keras.config.epsilon()
                p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
                logits = ops.log(p) - ops.log1p(-p)
        labels = ops.cast(y_true, logits.dtype)
        prior = self.prior
        if isinstance(prior, list):
            if y_pred.shape[axis] is not None and len(prior) != y_pred.shape[axis]:
                fail_value(
                    f"`prior` must have one value per label ({y_pred.shape[axis]} on axis {axis}).",
                    "prior",
                    prior,
                )
            shape = [1] * ndim
            shape[axis] = len(prior)
            prior = ops.reshape(ops.convert_to_tensor(prior, dtype=logits.dtype), shape)
        from lsr import smooth_bce

        loss = smooth_bce(
            logits,
            labels,
            smoothing=self.label_smoothing,
            prior=prior,
            axis=axis,
            reduction="none",
        )
        return ops.mean(loss, axis=axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "axis": self.axis,
                "prior": self.prior,
                "dtype": None if self._given_dtype is None else self._dtype_policy.name,
            }
        )
        return config

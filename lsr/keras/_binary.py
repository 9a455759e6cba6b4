"""``SmoothBinaryCrossEntropy``: the sigmoid (binary, multi-label) loss with
``BinaryCrossentropy``'s interface."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops
from keras.src.losses.loss import squeeze_or_expand_to_same_rank

from lsr._checks_binary import check_binary_labels
from lsr._validation import fail_type, fail_value, normalize_axis
from lsr.keras._common import (
    check_arguments,
    check_backend,
    check_known_rank,
    exact_over_replicas,
    logits_behind_activation,
)

__all__ = ["SmoothBinaryCrossEntropy"]


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
    applies. Computed in softplus form by ``lsr.tensorflow.smooth_bce`` on TensorFlow and
    by ``lsr.smooth_bce`` on the JAX, PyTorch and NumPy backends.

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
        check_arguments(self, name, dtype, from_logits, label_smoothing, axis)
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
        backend = check_backend()
        check_known_rank("y_true", y_true)
        check_known_rank("y_pred", y_pred)
        # As Keras' losses: labels of shape (N,) for predictions of shape (N, 1) (a
        # one-output binary model), and the reverse, are brought to the same rank.
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
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
        # Named as Keras names them (``smooth_bce``, which finds them valid, says `labels`).
        check_binary_labels(y_true, name="y_true")
        behind = logits_behind_activation(y_pred, "Sigmoid")
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
        if backend == "tensorflow":  # (the custom gradient: the logits alone are kept)
            from lsr.tensorflow import smooth_bce
        else:
            from lsr import smooth_bce

        loss = smooth_bce(
            logits,
            labels,
            smoothing=self.label_smoothing,
            prior=prior,
            axis=axis,
            reduction="none",
        )
        loss = ops.mean(loss, axis=axis)
        if backend == "tensorflow" and self.reduction in ("sum_over_batch_size", "mean"):
            # Under tf.distribute: the global batch's mean, also when replicas hold
            # different numbers of samples (an uneven last batch).
            loss = exact_over_replicas(loss, None)
        return loss

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

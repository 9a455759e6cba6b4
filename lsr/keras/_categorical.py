"""``SmoothCrossEntropy``: the softmax loss with ``CategoricalCrossentropy``'s interface."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from lsr._checks import check_prior, check_softcap, check_z_loss
from lsr._compat import get_backend
from lsr._validation import PRIOR_NAMES, fail_type, fail_value, normalize_axis
from lsr.keras._common import (
    check_arguments,
    check_backend,
    check_known_rank,
    exact_over_replicas,
    logits_behind_activation,
)

__all__ = ["SmoothCrossEntropy"]


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
        softcap: soft-capping (Gemma 2): the loss is of ``softcap * tanh(z / softcap)``
            for the logits ``z``, or None. Logits only: needs ``from_logits=True``.
        confidence_penalty: beta >= 0 of an added ``-beta H(p)`` per position, the
            entropy of the predicted distribution (Pereyra et al. 2017).

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
        softcap: float | None = None,
        confidence_penalty: float = 0.0,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_arguments(self, name, dtype, from_logits, label_smoothing, axis)
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
        self.softcap: float | None = check_softcap(softcap)
        if self.softcap is not None and not from_logits:
            fail_value(
                "`softcap` caps logits: it needs `from_logits=True` (these predictions are "
                "probabilities).",
                "softcap",
                softcap,
            )
        self.confidence_penalty: float = check_z_loss(confidence_penalty, "confidence_penalty")
        self._given_dtype: Any = dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        for name, value in (("y_true", y_true), ("y_pred", y_pred)):
            if value is None or isinstance(value, (str, bytes)):
                fail_type(f"`{name}` must be an array of numbers.", name, value)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        backend = check_backend()
        # Shapes are checked before anything is computed: inside a traced function
        # (``model.fit``) a dimension may be unknown, and K must not be.
        check_known_rank("y_true", y_true)
        check_known_rank("y_pred", y_pred)
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
        if self.from_logits and logits_behind_activation(y_pred) is not None:
            # As Keras' own cross-entropies warn: probabilities are not logits.
            warnings.warn(
                "SmoothCrossEntropy got `from_logits=True`, but `y_pred` comes from a "
                "softmax and holds probabilities, not logits. Remove the softmax from the "
                "model's output, or pass `from_logits=False`.",
                UserWarning,
                stacklevel=2,
            )
        if not self.from_logits:
            logits = logits_behind_activation(y_pred)
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
            softcap=self.softcap,
            confidence_penalty=self.confidence_penalty,
        )
        kept = None
        if self.ignore_class is not None:
            kept = ops.not_equal(labels, self.ignore_class)
        if backend == "tensorflow" and self.reduction in ("sum_over_batch_size", "mean"):
            loss = exact_over_replicas(loss, kept)
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
                "softcap": self.softcap,
                "confidence_penalty": self.confidence_penalty,
                "dtype": None if self._given_dtype is None else self._dtype_policy.name,
            }
        )
        return config

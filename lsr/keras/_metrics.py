"""``CalibrationError``: the streaming calibration error as a ``keras.metrics.Metric``.

The metric's variables are ``lsr.metrics``' ``CalibrationState`` (per-bin count, sum of
confidences, sum of correctness); ``update_state`` adds a batch's sums with the same
array-API code as ``lsr.metrics.update_calibration_state`` (on the Keras backend's own
tensors), ``result`` is ``calibration_error_from_state``. Eager calls are validated as
``lsr.metrics`` validates; inside ``fit``/``evaluate`` (traced, batch size unknown) only
shapes are checked, and an out-of-range label makes the result NaN.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from lsr._checks import is_integer_dtype
from lsr._compat import array_namespace, is_concrete
from lsr._validation import fail_value, normalize_axis
from lsr.keras._common import check_backend, check_known_rank
from lsr.metrics import CalibrationState, update_calibration_state
from lsr.metrics._streaming import accumulate, error_from_state, metric_state_shape

__all__ = ["CalibrationError"]


@keras.saving.register_keras_serializable(package="lsr")
class CalibrationError(keras.metrics.Metric):
    """Binned calibration error (ECE, l2, MCE; top-label, classwise or thresholded),
    accumulated.

    The numbers of ``lsr.metrics.expected_calibration_error`` on every batch passed to
    ``update_state`` (equal-width bins; up to the order of floating-point additions),
    with O(n_bins x K) variables whatever the number of examples.

    ``y_true``: integer class ids (the predictions' shape without the class axis, or
    with a class axis of size 1, as Keras' sparse metrics take them), or one-hot targets
    of the predictions' shape (their argmax is the label). ``y_pred``: probabilities
    (Keras' metric convention) unless ``from_logits=True``. ``sample_weight`` (optional,
    as ``fit(sample_weight=...)`` passes it): one non-negative weight per example (the
    labels' shape, with or without a trailing axis of 1, or a scalar for the whole
    batch); each example counts with its weight, so an integer weight is the example
    repeated (``lsr.metrics.update_calibration_state(..., sample_weight=)``). Eagerly a
    negative or non-finite weight is an error; traced, it makes the result NaN.

    Args:
        n_bins: number of equal-width bins (>= 1).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        num_classes: K, required with ``scope="classwise"`` or ``"thresholded"`` (the
            state has K rows).
        scope: ``"top_label"``, ``"classwise"`` or ``"thresholded"`` (classwise over
            the class probabilities above ``threshold`` only; a class with none in
            the whole stream is left out of the mean).
        from_logits: whether ``y_pred`` holds logits.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        debias: the debiased l2 estimator of Kumar et al. (2019), or their l1
            correction by resampling (with ``lsr.metrics``' default seed 0); not with
            ``norm="max"``.
        binning: ``"equal_width"``, or ``"equal_mass"``: the variables then have
            ``resolution`` fine equal-width bins, grouped into ``n_bins`` equal-mass
            bins by ``result`` (an approximation of the batch function's edges that
            never cuts a fine bin: ``lsr.metrics.calibration_error_from_state``).
        threshold: with ``scope="thresholded"`` only, the probability a prediction
            must exceed to count (default None: 0.01, as the batch function).
        axis: the class axis of ``y_pred``.
        name: the metric's name.
        dtype: the dtype of the variables (the sums) and the result (Keras'
            ``floatx()`` by default; float32 counts are exact up to 2**24 per bin).
        resolution: the number of fine bins with ``binning="equal_mass"`` (1000).

    Example:
        >>> import numpy as np
        >>> from lsr.keras import CalibrationError
        >>> metric = CalibrationError(n_bins=2)
        >>> metric.update_state(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
        >>> metric.update_state(np.array([1]), np.array([[0.3, 0.7]]))
        >>> print(round(float(metric.result()), 4))  # one bin: confidence 0.8, accuracy 2/3
        0.1333
    """

    def __init__(
        self,
        n_bins: int = 15,
        norm: str = "l1",
        *,
        num_classes: int | None = None,
        scope: str = "top_label",
        from_logits: bool = False,
        bin_edges: str = "right",
        debias: bool = False,
        binning: str = "equal_width",
        threshold: float | None = None,
        axis: int = -1,
        name: str = "calibration_error",
        dtype: Any = None,
        resolution: int = 1000,
    ) -> None:
        check_backend()
        shape, threshold = metric_state_shape(
            n_bins=n_bins,
            norm=norm,
            num_classes=num_classes,
            scope=scope,
            from_logits=from_logits,
            bin_edges=bin_edges,
            debias=debias,
            binning=binning,
            threshold=threshold,
            resolution=resolution,
        )
        super().__init__(name=name, dtype=dtype)
        self.n_bins, self.norm, self.num_classes, self.scope = n_bins, norm, num_classes, scope
        self.binning, self.resolution = binning, resolution
        self.threshold = threshold
        self.from_logits, self.bin_edges, self.debias, self.axis = (
            from_logits,
            bin_edges,
            debias,
            axis,
        )
        self.state_variables = [
            self.add_variable(shape=shape, initializer="zeros", dtype=self.dtype, name=field)
            for field in CalibrationState._fields
        ]

    def _state(self) -> CalibrationState:
        return CalibrationState(*(ops.convert_to_tensor(v.value) for v in self.state_variables))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred, y_true = ops.convert_to_tensor(y_pred), ops.convert_to_tensor(y_true)
        check_known_rank("y_true", y_true)
        check_known_rank("y_pred", y_pred)
        ndim = len(y_pred.shape)
        if ndim < 1:
            fail_value("`y_pred` must have a class axis.", "y_pred", y_pred)
        axis = normalize_axis(self.axis, ndim)
        num_classes = y_pred.shape[axis]
        if num_classes is None:
            fail_value(
                f"`y_pred` must have a known number of classes (its axis {axis}).",
                "y_pred.shape",
                tuple(y_pred.shape),
            )
        if len(y_true.shape) == ndim and (y_true.shape[axis] != 1 or num_classes == 1):
            y_true = _one_hot_ids(y_true, axis)
        elif len(y_true.shape) == ndim:
            y_true = ops.squeeze(y_true, axis=axis)
        xp = array_namespace(y_pred)
        if not is_integer_dtype(xp, y_true.dtype):
            y_true = ops.cast(y_true, "int32")
        if keras.backend.standardize_dtype(y_pred.dtype) not in ("float32", "float64"):
            y_pred = ops.cast(y_pred, "float32")
        state = self._state()
        if self.scope != "top_label" and num_classes != self.num_classes:
            fail_value(
                f"This {self.scope} metric was made for num_classes={self.num_classes}.",
                "y_pred.shape",
                tuple(y_pred.shape),
            )
        if sample_weight is not None:
            sample_weight = _weights_like(sample_weight, y_true, y_pred.dtype)
        if is_concrete(y_pred) and None not in tuple(y_pred.shape):
            state = update_calibration_state(
                state,
                y_pred,
                y_true,
                from_logits=self.from_logits,
                bin_edges=self.bin_edges,
                axis=axis,
                sample_weight=sample_weight,
                threshold=self.threshold,
            )
        else:
            weights = None
            if sample_weight is not None:
                # Unreadable values: a negative or non-finite weight poisons the result.
                usable = ops.logical_and(ops.isfinite(sample_weight), sample_weight >= 0)
                weights = ops.reshape(ops.where(usable, sample_weight, float("nan")), (-1, 1))
            state = accumulate(
                xp,
                state,
                y_pred,
                y_true,
                axis=axis,
                from_logits=self.from_logits,
                right=self.bin_edges == "right",
                weights=weights,
                threshold=self.threshold,
            )
        for variable, value in zip(self.state_variables, state, strict=True):
            variable.assign(value)

    def result(self) -> Any:
        state = self._state()
        return error_from_state(
            array_namespace(state.count),
            state,
            self.norm,
            debias=self.debias,
            equal_mass_bins=self.n_bins if self.binning == "equal_mass" else None,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_bins": self.n_bins,
            "norm": self.norm,
            "num_classes": self.num_classes,
            "scope": self.scope,
            "from_logits": self.from_logits,
            "bin_edges": self.bin_edges,
            "debias": self.debias,
            "axis": self.axis,
            "threshold": self.threshold if self.scope == "thresholded" else None,
            "binning": self.binning,
            "resolution": self.resolution,
        }


def _weights_like(sample_weight: Any, labels: Any, dtype: Any) -> Any:
    """Keras' forms of per-example weights as the labels' shape, in ``dtype``: a scalar
    (broadcast over the batch), the labels' shape, or that with a trailing axis of 1."""
    weights = ops.convert_to_tensor(sample_weight)
    check_known_rank("sample_weight", weights)
    rank = len(weights.shape)
    if rank == len(labels.shape) + 1 and weights.shape[-1] == 1:
        weights = ops.squeeze(weights, axis=-1)
    elif rank == 0:
        weights = ops.broadcast_to(weights, ops.shape(labels))
    if keras.backend.standardize_dtype(weights.dtype) == "bool":
        fail_value(
            "`sample_weight` must be a real floating or integer array (one weight per example).",
            "sample_weight",
            weights,
        )
    return ops.cast(weights, dtype)


def _one_hot_ids(y_true: Any, axis: int) -> Any:
    """The class ids of one-hot targets. A row that is not one-hot (soft targets) has no
    class to be correct about: an error on concrete values; under tracing its id is -1,
    which makes the result NaN rather than a number for the argmax's class."""
    ones = ops.sum(ops.cast(ops.equal(y_true, 1), "int32"), axis=axis)
    zeros = ops.sum(ops.cast(ops.equal(y_true, 0), "int32"), axis=axis)
    one_hot = ops.logical_and(ops.equal(ones, 1), ops.equal(ones + zeros, y_true.shape[axis]))
    if is_concrete(one_hot) and not bool(ops.all(one_hot)):
        fail_value(
            "`y_true` with the predictions' shape must be one-hot rows (a calibration "
            "error needs one true class per example); soft targets have none.",
            "y_true",
            y_true,
        )
    ids = ops.cast(ops.argmax(y_true, axis=axis), "int32")
    return ops.where(one_hot, ids, -1)

"""``CalibrationError``: the streaming calibration error as a ``torchmetrics.Metric``.

The state is ``lsr.metrics``' ``CalibrationState`` (three (n_bins,) or (K, n_bins)
tensors registered with ``dist_reduce_fx="sum"``, so torchmetrics' own synchronization
merges the processes' states); ``update`` and ``compute`` are
``lsr.metrics.update_calibration_state`` and ``calibration_error_from_state``.
torchmetrics is an optional dependency: ``lsr.torch`` imports this module (and
torchmetrics) only when ``lsr.torch.CalibrationError`` is first used.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from lsr.metrics import (
    CalibrationState,
    calibration_error_from_state,
    update_calibration_state,
)
from lsr.metrics._streaming import metric_state_shape

__all__ = ["CalibrationError"]


class CalibrationError(Metric):
    """Binned calibration error (ECE, l2, MCE; top-label, classwise or thresholded),
    accumulated.

    The numbers of ``lsr.metrics.expected_calibration_error`` on everything passed to
    ``update`` (equal-width bins; up to the order of floating-point additions), with
    O(n_bins x K) state whatever the number of examples. Under DDP, torchmetrics sums the
    processes' states before ``compute``.

    Compared with ``torchmetrics.classification.MulticlassCalibrationError``: the same
    quantity (all three norms) with ``bin_edges="left"`` when no confidence is exactly
    1.0 (torchmetrics bins [lo, hi) and gives 1.0 an extra bin; lsr's last bin is
    [lo, 1]). The default here is Guo et al.'s (lo, hi] bins. Scores are logits unless
    ``from_logits=False`` (torchmetrics guesses from their range). The state is the
    same size for ``scope="top_label"`` whatever K, so ``num_classes`` is needed only
    for the classwise and thresholded scopes.

    Args:
        n_bins: number of equal-width bins (>= 1).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        num_classes: K, required with ``scope="classwise"`` or ``"thresholded"`` (the
            state has K rows).
        scope: ``"top_label"``, ``"classwise"`` or ``"thresholded"`` (classwise over
            the class probabilities above ``threshold`` only; a class with none in
            the whole stream is left out of the mean).
        from_logits: whether ``update`` receives logits or probabilities.
        bin_edges: ``"right"`` for (lo, hi] bins, ``"left"`` for [lo, hi) bins.
        debias: the debiased l2 estimator of Kumar et al. (2019), or their l1
            correction by resampling (with ``lsr.metrics``' default seed 0); not with
            ``norm="max"``.
        binning: ``"equal_width"``, or ``"equal_mass"``: the state then has
            ``resolution`` fine equal-width bins, grouped into ``n_bins`` equal-mass
            bins by ``compute`` (an approximation of the batch function's edges that
            never cuts a fine bin: ``lsr.metrics.calibration_error_from_state``).
        resolution: the number of fine bins with ``binning="equal_mass"`` (1000).
        threshold: with ``scope="thresholded"`` only, the probability a prediction
            must exceed to count (default None: 0.01, as the batch function).
        axis: the class axis of the scores (1, as in ``F.cross_entropy``).
        state_dtype: the dtype of the sums (float64: counts exact to 2**53).
        **kwargs: ``torchmetrics.Metric``'s options (``dist_sync_on_step``,
            ``process_group``...).

    Example:
        >>> import torch
        >>> from lsr.torch import CalibrationError
        >>> metric = CalibrationError(n_bins=2, from_logits=False)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.3, 0.7]]), torch.tensor([1]))
        >>> print(round(float(metric.compute()), 4))  # one bin: confidence 0.8, accuracy 2/3
        0.1333
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    count: torch.Tensor
    confidence_sum: torch.Tensor
    correct_sum: torch.Tensor

    def __init__(
        self,
        n_bins: int = 15,
        norm: str = "l1",
        *,
        num_classes: int | None = None,
        scope: str = "top_label",
        from_logits: bool = True,
        bin_edges: str = "right",
        debias: bool = False,
        binning: str = "equal_width",
        threshold: float | None = None,
        axis: int = 1,
        state_dtype: torch.dtype = torch.float64,
        resolution: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        self.n_bins, self.norm, self.num_classes, self.scope = n_bins, norm, num_classes, scope
        self.binning, self.resolution = binning, resolution
        self.threshold = threshold
        self.from_logits, self.bin_edges, self.debias, self.axis = (
            from_logits,
            bin_edges,
            debias,
            axis,
        )
        for field in CalibrationState._fields:
            self.add_state(
                field, default=torch.zeros(shape, dtype=state_dtype), dist_reduce_fx="sum"
            )

    def _state(self) -> CalibrationState:
        return CalibrationState(self.count, self.confidence_sum, self.correct_sum)

    def update(
        self,
        preds: torch.Tensor,
        target: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: ``preds`` (..., K, ...) scores, ``target`` integer class ids and,
        optionally, one non-negative ``sample_weight`` per example (``target``'s shape;
        an integer weight counts the example that many times)."""
        state = update_calibration_state(
            self._state(),
            preds,
            target,
            from_logits=self.from_logits,
            bin_edges=self.bin_edges,
            axis=self.axis,
            sample_weight=sample_weight,
            threshold=self.threshold,
        )
        self.count, self.confidence_sum, self.correct_sum = state

    def compute(self) -> torch.Tensor:
        """The calibration error of everything seen, in ``state_dtype`` (NaN before any
        update)."""
        equal_mass = self.binning == "equal_mass"
        return calibration_error_from_state(
            self._state(),
            norm=self.norm,
            debias=self.debias,
            binning=self.binning,
            n_bins=self.n_bins if equal_mass else None,
        )

"""lsr.torch.CalibrationError, the torchmetrics wrapper of the streaming calibration state:
the batch expected_calibration_error after several updates, torchmetrics' own
MulticlassCalibrationError where both define the same quantity, torchmetrics' merging of
states (dist_reduce_fx="sum"), reset, and the lazy import of torchmetrics."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from lsr import metrics
from lsr.torch import CalibrationError


def _logits(seed, n=120, num_classes=5):
    generator = torch.Generator().manual_seed(seed)
    logits = 2.5 * torch.randn(n, num_classes, generator=generator, dtype=torch.float64)
    noise = torch.randint(0, num_classes, (n,), generator=generator)
    right = torch.rand(n, generator=generator) < 0.6
    return logits, torch.where(right, logits.argmax(dim=1), noise)


def _feed(metric, scores, labels, sizes=(1, 40, 50, 29)):
    start = 0
    for size in sizes:
        metric.update(scores[start : start + size], labels[start : start + size])
        start += size
    assert start == len(labels)


@pytest.mark.parametrize(
    "norm, debias", [("l1", False), ("l1", True), ("l2", False), ("l2", True), ("max", False)]
)
@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
@pytest.mark.parametrize("bin_edges", ["right", "left"])
def test_equals_the_batch_error_after_several_updates(bin_edges, scope, norm, debias):
    logits, labels = _logits(0)
    options = dict(n_bins=10, norm=norm, scope=scope, bin_edges=bin_edges, debias=debias)
    if scope == "thresholded":
        options["threshold"] = 0.2  # for the metric and the batch function alike
    metric = CalibrationError(num_classes=5, **options)
    _feed(metric, logits, labels)
    expected = metrics.expected_calibration_error(logits, labels, **options)
    torch.testing.assert_close(metric.compute(), expected)
    # Class axis 1, as in F.cross_entropy: (N, K, L) scores work as (N * L, K).
    spatial = CalibrationError(num_classes=5, **options)
    spatial.update(logits.reshape(20, 6, 5).transpose(1, 2), labels.reshape(20, 6))
    torch.testing.assert_close(spatial.compute(), expected)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("seed", range(2))
def test_equals_torchmetrics_on_left_closed_bins(seed, norm):
    # torchmetrics bins [lo, hi) and gives a confidence of exactly 1.0 an extra bin,
    # where lsr closes its last bin: the same quantity with bin_edges="left" on inputs
    # without a confidence of 1.0 (asserted below). Probabilities in float32, as
    # torchmetrics computes.
    logits, labels = _logits(seed)
    probs = torch.softmax(logits, dim=1).float()
    assert float(probs.max()) < 1.0
    ours = CalibrationError(n_bins=15, norm=norm, from_logits=False, bin_edges="left")
    theirs = MulticlassCalibrationError(num_classes=5, n_bins=15, norm=norm)
    _feed(ours, probs, labels)
    _feed(theirs, probs, labels)
    torch.testing.assert_close(ours.compute().float(), theirs.compute(), rtol=1e-5, atol=1e-6)


def test_merged_states_are_the_state_of_the_whole():
    # torchmetrics merges (and, under DDP, all-reduces) with each state's
    # dist_reduce_fx: "sum" makes two halves the whole.
    logits, labels = _logits(1)
    whole, first, second = (CalibrationError(n_bins=8, norm="l2") for _ in range(3))
    _feed(whole, logits, labels)
    first.update(logits[:55], labels[:55])
    second.update(logits[55:], labels[55:])
    assert not torch.equal(first.count, whole.count)
    first.merge_state(second)
    torch.testing.assert_close(first.count, whole.count)
    torch.testing.assert_close(first.compute(), whole.compute())
    assert {
        first._reductions[name].__name__ for name in ("count", "confidence_sum", "correct_sum")
    } == {"dim_zero_sum"}


def test_reset_empties_the_state():
    logits, labels = _logits(2)
    metric = CalibrationError(n_bins=5)
    metric.update(logits, labels)
    assert float(metric.count.sum()) == len(labels)
    metric.reset()
    assert float(metric.count.sum()) == 0.0
    metric.update(logits[:30], labels[:30])
    expected = metrics.expected_calibration_error(logits[:30], labels[:30], n_bins=5)
    torch.testing.assert_close(metric.compute(), expected)


def test_options_are_checked_when_the_metric_is_made():
    with pytest.raises(ValueError, match=r"at least n_bins=15.*Received: resolution=10"):
        CalibrationError(binning="equal_mass", resolution=10)
    with pytest.raises(ValueError, match=r"\(lo, hi\] bins.*Received: bin_edges='left'"):
        CalibrationError(binning="equal_mass", bin_edges="left")
    with pytest.raises(ValueError, match=r"pass num_classes.*Received: num_classes=None"):
        CalibrationError(scope="classwise")
    with pytest.raises(ValueError, match=r"Received: norm='max'"):
        CalibrationError(norm="max", debias=True)
    metric = CalibrationError(scope="classwise", num_classes=4)
    with pytest.raises(ValueError, match=r"one row per class"):
        metric.update(torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64))


def test_lsr_torch_imports_torchmetrics_only_when_the_metric_is_used():
    script = (
        "import sys, lsr.torch\n"
        "print('torchmetrics' in sys.modules)\n"
        "lsr.torch.CalibrationError\n"
        "print('torchmetrics' in sys.modules, lsr.torch.CalibrationError.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "lsr.torch"]


def test_sample_weight_counts_each_example_that_many_times():
    generator = torch.Generator().manual_seed(3)
    logits = 2.0 * torch.randn(50, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (50,), generator=generator)
    weights = torch.randint(0, 3, (50,), generator=generator)
    weights[0] = 1
    repeated = torch.repeat_interleave(torch.arange(50), weights)
    metric = CalibrationError(n_bins=6, norm="l2")
    metric.update(logits[:20], labels[:20], weights[:20].double())
    metric.update(logits[20:], labels[20:], sample_weight=weights[20:])
    expected = metrics.expected_calibration_error(
        logits[repeated], labels[repeated], n_bins=6, norm="l2", axis=1
    )
    torch.testing.assert_close(metric.compute(), expected)
    with pytest.raises(ValueError, match=r"non-negative.*Received: sample_weight="):
        metric.update(logits[:2], labels[:2], torch.tensor([1.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
def test_equal_mass_bins_of_fine_bins(scope):
    """binning="equal_mass": ``resolution`` fine bins grouped by ``compute``. On
    confidences at the centres of 256 fine bins (exact in binary, so ties stay ties)
    the groups are the batch function's equal-mass bins."""
    generator = torch.Generator().manual_seed(0)
    first = (torch.randint(0, 256, (200,), generator=generator) + 0.5) / 256
    probs = torch.stack([first, 1 - first], dim=1).double()
    labels = (torch.rand(200, generator=generator) < first).long()
    threshold = {"threshold": 0.2} if scope == "thresholded" else {}
    metric = CalibrationError(
        n_bins=6,
        binning="equal_mass",
        resolution=256,
        num_classes=2,
        scope=scope,
        from_logits=False,
        **threshold,
    )
    _feed(metric, probs, labels, sizes=(1, 99, 100))
    assert metric.count.shape[-1] == 256
    expected = metrics.expected_calibration_error(
        probs,
        labels,
        n_bins=6,
        binning="equal_mass",
        scope=scope,
        from_logits=False,
        **threshold,
    )
    torch.testing.assert_close(metric.compute(), expected)

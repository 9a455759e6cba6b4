"""lsr.metrics and distill_loss against PyTorch's own tools: torchmetrics and torch.nn.functional.

Collected only in sessions that select torch (tests/conftest.py); torchmetrics is pinned
with torch in backends/torch.txt.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError

from lsr import metrics
from lsr._distill import distill_loss


def _logits(seed, n=300, num_classes=6, scale=2.5, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, num_classes, generator=generator, dtype=dtype)
    noise = torch.randint(0, num_classes, (n,), generator=generator)
    right = torch.rand(n, generator=generator) < 0.7
    labels = torch.where(right, logits.argmax(dim=1), noise)
    return logits, labels


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 5, 15])
@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_on_left_closed_bins(norm, n_bins, seed):
    logits, labels = _logits(seed)
    probs = torch.softmax(logits, dim=1)
    # torchmetrics gives a confidence of exactly 1.0 a bin of its own; lsr closes its
    # last bin instead. Keep such confidences out of this comparison.
    assert float(probs.max()) < 1.0
    expected = MulticlassCalibrationError(num_classes=6, n_bins=n_bins, norm=norm)(probs, labels)
    from_probs = metrics.expected_calibration_error(
        probs, labels, n_bins=n_bins, norm=norm, from_logits=False, bin_edges="left"
    )
    from_logits = metrics.expected_calibration_error(
        logits, labels, n_bins=n_bins, norm=norm, bin_edges="left"
    )
    torch.testing.assert_close(from_probs, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(from_logits, expected, rtol=1e-5, atol=1e-6)


def test_torchmetrics_bins_are_left_closed():
    # Confidences exactly on edges (0.5, 0.75 of four bins): torchmetrics agrees with
    # bin_edges="left" and not with the default (lo, hi] rule, as documented.
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.6, 0.4, 0.0], [0.25, 0.75, 0.0], [0.9, 0.1, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    # [lo, hi): {0.5 right, 0.6 wrong} and {0.75 right, 0.9 wrong}: ECE 0.1875.
    # (lo, hi]: {0.5 right}, {0.6 wrong, 0.75 right} and {0.9 wrong}: ECE 0.4375.
    expected = MulticlassCalibrationError(num_classes=3, n_bins=4)(probs, labels)
    left = metrics.expected_calibration_error(
        probs, labels, n_bins=4, from_logits=False, bin_edges="left"
    )
    right = metrics.expected_calibration_error(probs, labels, n_bins=4, from_logits=False)
    torch.testing.assert_close(left, expected)
    torch.testing.assert_close(left, torch.tensor(0.1875))
    torch.testing.assert_close(right, torch.tensor(0.4375))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_distill_matches_torch_losses(temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 10, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(8, 10, generator=generator, dtype=torch.float64)
    soft_targets = torch.softmax(teacher / temperature, dim=1)
    log_student = F.log_softmax(student / temperature, dim=1)
    kl_expected = F.kl_div(log_student, soft_targets, reduction="batchmean") * temperature**2
    ce_expected = F.cross_entropy(student / temperature, soft_targets) * temperature**2
    torch.testing.assert_close(
        distill_loss(student, teacher, temperature=temperature, kl=True), kl_expected
    )
    torch.testing.assert_close(distill_loss(student, teacher, temperature=temperature), ce_expected)


def test_distill_gradient_is_temperature_times_probability_gap():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    temperature = 3.0
    distill_loss(student, teacher, temperature=temperature).backward()
    expected = (
        temperature
        * (torch.softmax(student / temperature, 1) - torch.softmax(teacher / temperature, 1))
        / 6
    )
    torch.testing.assert_close(student.grad, expected.detach())


def test_temperature_fit_lowers_nll_of_overconfident_logits():
    logits, labels = _logits(4, n=2000, dtype=torch.float64)
    overconfident = 4.0 * logits
    found = metrics.fit_temperature(overconfident, labels)
    before = F.cross_entropy(overconfident, labels)
    after = F.cross_entropy(metrics.apply_temperature(overconfident, found), labels)
    assert found > 1.5
    assert float(after) < float(before)
    torch.testing.assert_close(
        metrics.negative_log_likelihood(metrics.apply_temperature(overconfident, found), labels),
        after,
    )

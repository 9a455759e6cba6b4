"""PyTorch: probabilities passed as logits get a warning that says the fix (read from
the autograd graph: no value is read)."""

from __future__ import annotations

import warnings

import pytest
import torch

import lsr.torch


def test_torch_warns_on_probabilities():
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0])
    with pytest.warns(UserWarning, match=r"comes from a softmax.*Pass the scores before"):
        lsr.torch.cross_entropy(torch.softmax(logits, dim=1), target)
    with pytest.warns(UserWarning, match=r"comes from a softmax"):
        lsr.torch.smooth_ce(torch.softmax(logits, dim=1), target)
    # Logits, and log-probabilities (logits up to a constant), raise no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lsr.torch.cross_entropy(logits, target)
        lsr.torch.cross_entropy(torch.log_softmax(logits, dim=1), target)

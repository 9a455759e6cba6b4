"""Comparisons shared by the PyTorch tests."""

from __future__ import annotations

import torch

from tests.backends import assert_close


def assert_value_and_grad_close(got, expected, leaf, *, with_grad: bool) -> None:
    """``got`` equals ``expected`` (float32 tolerances), and so does its gradient with
    respect to ``leaf`` when ``with_grad``."""
    assert_close(got.detach(), expected.detach(), torch.float32)
    if with_grad:
        (grad,) = torch.autograd.grad(got, leaf)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        assert_close(grad, expected_grad, torch.float32)


def count_full_checks(monkeypatch, module, check: str, record_module, record: str) -> list:
    """A list that grows by one on each call of ``module.check`` (an adapter's first
    full check, which a repeated call with known options skips), with
    ``record_module.record`` (its record of known options) emptied for the test."""
    monkeypatch.setattr(record_module, record, {})
    calls: list = []
    full_check = getattr(module, check)
    monkeypatch.setattr(module, check, lambda *a: calls.append(1) or full_check(*a))
    return calls

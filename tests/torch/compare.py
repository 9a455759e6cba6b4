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


def under(context, call):
    """``call()`` inside ``context`` (a mode such as ``torch.no_grad()``)."""
    with context:
        return call()


def off_the_route_calls(loss) -> dict:
    """Calls of ``loss(z, y)`` (``z`` a leaf that requires grad) in each mode that
    changes an eager loss's path, by name: what a route for repeated plain calls
    (``is_plain_eager_mode``) must never take, whatever options a plain call made known.
    """

    def forward_ad(z, y):
        import torch.autograd.forward_ad as fwAD

        with fwAD.dual_level():
            # (The primal asks for a reverse-mode gradient too, as a plain call's does.)
            return loss(fwAD.make_dual(z, torch.ones_like(z)), y)

    return {
        "no gradient": lambda z, y: loss(z.detach(), y),
        "no_grad": lambda z, y: under(torch.no_grad(), lambda: loss(z, y)),
        "autocast": lambda z, y: under(
            torch.autocast("cpu", dtype=torch.bfloat16), lambda: loss(z, y)
        ),
        "forward AD": forward_ad,
        "torch.func": lambda z, y: torch.func.grad(lambda x: loss(x, y))(z.detach()),
        # A transform active around a call whose input it does not wrap.
        "torch.func closure": lambda z, y: torch.func.grad(lambda s: s * loss(z, y))(
            torch.tensor(1.0)
        ),
        "torch.jit.trace": lambda z, y: torch.jit.trace(
            lambda x, t: loss(x, t), (z, y), check_trace=False
        ),
        "torch.compile": lambda z, y: torch.compile(
            lambda x, t: loss(x, t), backend="aot_eager", fullgraph=True
        )(z, y),
    }

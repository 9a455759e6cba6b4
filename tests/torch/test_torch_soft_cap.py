"""PyTorch: the soft cap on every differentiation path that recomputes the logsumexp
(double backward, torch.func, forward mode), against autograd of the capped logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jvp

import lsr.torch

CAP = 2.0


def _case():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(4, 5, dtype=torch.float64, generator=generator)
    return logits, torch.tensor([0, 2, 4, 1])


def _ours(z, y):
    return lsr.torch.smooth_ce(z, y, smoothing=0.1, softcap=CAP)


def _theirs(z, y):
    """The smoothed cross-entropy of the capped logits, written from the formula."""
    targets = 0.9 * F.one_hot(y, 5).to(z.dtype) + 0.1 / 5
    return -(targets * F.log_softmax(CAP * torch.tanh(z / CAP), dim=1)).sum(dim=1).mean()


def test_double_backward():
    logits, labels = _case()
    results = []
    for loss_fn in (_ours, _theirs):
        z = logits.clone().requires_grad_()
        (first,) = torch.autograd.grad(loss_fn(z, labels), z, create_graph=True)
        (second,) = torch.autograd.grad(first.square().sum(), z)
        results.append((first.detach(), second))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


# Forward mode through torch's own tanh/log_softmax loads a scripted decomposition that
# warns about torch.jit.script (torch's, not lsr's).
@pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")
@pytest.mark.parametrize("transform", ["grad", "jvp", "forward_ad"])
def test_function_transforms(transform):
    logits, labels = _case()
    tangent = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if transform == "grad":
        ours, theirs = (grad(f)(logits, labels) for f in (_ours, _theirs))
    elif transform == "jvp":
        ours, theirs = (
            jvp(lambda z, f=f: f(z, labels), (logits,), (tangent,))[1] for f in (_ours, _theirs)
        )
    else:
        import torch.autograd.forward_ad as fwad

        values = []
        for f in (_ours, _theirs):
            with fwad.dual_level():
                values.append(fwad.unpack_dual(f(fwad.make_dual(logits, tangent), labels)).tangent)
        ours, theirs = values
    torch.testing.assert_close(ours, theirs)


def test_ignored_rows_of_minus_infinity_with_z_loss_have_zero_gradient():
    """scale 0 times (M + 2 z_loss lse) with lse = -inf must be 0, not NaN."""
    logits = torch.tensor(
        [[1.0, 2.0, 0.5], [float("-inf")] * 3], dtype=torch.float64, requires_grad=True
    )
    loss = lsr.torch.smooth_ce(logits, torch.tensor([0, -100]), z_loss=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.equal(logits.grad[1], torch.zeros(3, dtype=torch.float64))
    assert torch.isfinite(logits.grad[0]).all()

"""Per-position smoothing in PyTorch: its drop-ins stay float-only; torch.func and the
vocabulary-parallel form (the shared adapter tests are in
``tests/test_per_position_smoothing_adapters.py``)."""

from __future__ import annotations

import pytest

from tests import reference
from tests.backends import assert_close
from tests.test_per_position_smoothing_adapters import K, _case


def test_torch_drop_ins_stay_float_only():
    """``cross_entropy`` and ``SmoothCrossEntropyLoss`` keep PyTorch's float
    ``label_smoothing``: a per-position tensor is refused by name."""
    import torch

    import lsr.torch

    logits, labels = torch.zeros(4, K), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="label_smoothing"):
        lsr.torch.cross_entropy(logits, labels, label_smoothing=torch.full((4,), 0.1))


def test_torch_func_and_vocab_parallel():
    """The torch.func path (``SmoothCE`` with its vmap rule) and the vocabulary-parallel
    form on one process take per-position epsilons too."""
    import torch
    import torch.distributed as dist

    import lsr.torch

    logits, labels, eps = _case(6)
    options = dict(prior="others", ignore_index=-100, kl=True)
    z, y, e = torch.from_numpy(logits), torch.from_numpy(labels), torch.from_numpy(eps)
    grad = torch.func.grad(lambda z: lsr.torch.smooth_ce(z, y, smoothing=e, axis=-1, **options))(z)
    expected_grad = reference.numerical_gradient(
        lambda z: reference.smooth_ce(z, labels, smoothing=eps, **options), logits
    )
    assert_close(grad.numpy(), expected_grad, "float64", scale=1e4)
    if dist.is_initialized():  # pragma: no cover - another test's group
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        loss = lsr.torch.vocab_parallel_smooth_ce(z, y, smoothing=e, **options)
    finally:
        dist.destroy_process_group()
    expected = reference.smooth_ce(logits, labels, smoothing=eps, **options)
    assert_close(loss.numpy(), expected, "float64")

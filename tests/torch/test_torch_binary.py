"""lsr.torch's sigmoid (binary, multi-label) loss against PyTorch's own.

``binary_cross_entropy_with_logits`` and ``SmoothBCEWithLogitsLoss`` are drop-ins for
``F.binary_cross_entropy_with_logits`` and ``nn.BCEWithLogitsLoss``; ``smooth_bce`` is
the same loss in lsr's keyword grammar. Expected values and gradients come from
PyTorch's function on targets smoothed in this file from the published definition
``y' = (1 - eps) y + eps u`` (Szegedy et al. 2016, applied to each sigmoid target),
never from lsr's code.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lsr.torch as lt
from tests.backends import assert_close
from tests.torch.compare import (
    assert_value_and_grad_close,
    count_full_checks,
    off_the_route_calls,
)

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
LSR_ADDITIONS = ["label_smoothing", "prior"]
REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [torch.float32, torch.float64]
# See tests/torch/test_torch_adapter.py: dynamo's harmless warnings about array-api-compat's
# lru_cache'd probes and about instantiating autograd.Functions; inductor's torch.jit use.
DYNAMO_CACHE_WARNING = "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning"
DYNAMO_FUNCTION_WARNING = "ignore:.*should not be instantiated:DeprecationWarning"
TORCH_JIT_WARNING = "ignore:`torch.jit.script:DeprecationWarning"


def _logits(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)


def _target(kind, shape, dtype, seed=1):
    """0/1 targets as int64, uint8 or bool, or soft targets in [0, 1] of ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "soft":
        return torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype)
    hot = torch.rand(shape, generator=generator) < 0.4
    return {"int64": hot.to(torch.int64), "uint8": hot.to(torch.uint8), "bool": hot}[kind]


def _smoothed(target, smoothing, prior, dtype):
    """The published definition, written here: ``(1 - eps) y + eps u``."""
    return (1.0 - smoothing) * target.to(dtype) + smoothing * prior


def _value_and_grad(loss_fn, logits):
    leaf = logits.detach().clone().requires_grad_()
    loss = loss_fn(leaf)
    # A non-uniform cotangent also checks the "none" gradient element by element.
    cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad(loss, leaf, cotangent)
    return loss.detach(), grad


def _options(shape, dtype, options):
    """(weight, pos_weight): weight per label for (N, K), per (t, 1) for (B, T, K)."""
    weight = pos_weight = None
    num_labels = shape[-1]
    if "weight" in options:
        weight_shape = (num_labels,) if len(shape) == 2 else (shape[1], 1)
        weight = torch.linspace(0.5, 1.5, weight_shape[0], dtype=dtype).reshape(weight_shape)
    if "pos_weight" in options:
        pos_weight = torch.linspace(0.5, 3.0, num_labels, dtype=dtype)
    return weight, pos_weight


SHAPES = {"(N, K)": (6, 5), "(B, T, K)": (2, 3, 4)}
OPTIONS = {
    "": (),
    "weight": ("weight",),
    "pos_weight": ("pos_weight",),
    "both": ("weight", "pos_weight"),
}
TARGETS = ["soft", "int64", "uint8", "bool"]


# --- values and gradients -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_drop_in_matches_f_on_targets_smoothed_by_hand(
    shape, kind, options, reduction, label_smoothing, dtype
):
    shape = SHAPES[shape]
    weight, pos_weight = _options(shape, dtype, OPTIONS[options])
    target = _target(kind, shape, dtype)
    expected_target = _smoothed(target, label_smoothing, 0.5, dtype)
    # Positionally, as PyTorch's users call it: only the function differs.
    loss, grad = _value_and_grad(
        lambda z: lt.binary_cross_entropy_with_logits(
            z, target, weight, None, None, reduction, pos_weight, label_smoothing=label_smoothing
        ),
        _logits(shape, dtype),
    )
    expected_loss, expected_grad = _value_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(
            z, expected_target, weight, None, None, reduction, pos_weight
        ),
        _logits(shape, dtype),
    )
    assert loss.dtype == expected_loss.dtype == dtype
    assert loss.shape == expected_loss.shape
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS)
def test_module_called_positionally_matches_bce_with_logits_loss(options, reduction, dtype):
    shape = (3, 4, 5)
    weight, pos_weight = _options(shape, dtype, OPTIONS[options])
    arguments = (weight, None, None, reduction, pos_weight)
    ours = lt.SmoothBCEWithLogitsLoss(*arguments, label_smoothing=0.2)
    theirs = nn.BCEWithLogitsLoss(*arguments)
    target = _target("soft", shape, dtype)
    loss, grad = _value_and_grad(lambda z: ours(z, target), _logits(shape, dtype))
    expected_loss, expected_grad = _value_and_grad(
        lambda z: theirs(z, _smoothed(target, 0.2, 0.5, dtype)), _logits(shape, dtype)
    )
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)
    # Without smoothing it is nn.BCEWithLogitsLoss itself, on the targets as given.
    plain = lt.SmoothBCEWithLogitsLoss(*arguments)
    assert_close(plain(_logits(shape, dtype), target), theirs(_logits(shape, dtype), target), dtype)


PRIORS = {
    "0.5": lambda k, dtype: (0.5, 0.5),
    "one-sided 0": lambda k, dtype: (0.0, 0.0),
    "uniform": lambda k, dtype: ("uniform", 1.0 / k),
    "per label": lambda k, dtype: (torch.linspace(0.1, 0.9, k, dtype=dtype),) * 2,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior", PRIORS)
def test_smooth_bce_priors_match_f_on_targets_smoothed_by_hand(prior, reduction, dtype):
    shape = (2, 3, 4)
    prior, u = PRIORS[prior](shape[-1], dtype)
    target = _target("int64", shape, dtype)
    pos_weight = torch.linspace(0.5, 3.0, shape[-1], dtype=dtype)
    loss, grad = _value_and_grad(
        lambda z: lt.smooth_bce(
            z, target, smoothing=0.25, prior=prior, pos_weight=pos_weight, reduction=reduction
        ),
        _logits(shape, dtype),
    )
    expected_loss, expected_grad = _value_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(
            z, _smoothed(target, 0.25, u, dtype), pos_weight=pos_weight, reduction=reduction
        ),
        _logits(shape, dtype),
    )
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)


def test_ignore_index_and_where_leave_elements_out_of_the_mean():
    shape, dtype = (4, 5), torch.float64
    target = _target("int64", shape, dtype)
    ignored = torch.rand(shape, generator=torch.Generator().manual_seed(3)) < 0.3
    with_ignored = torch.where(ignored, -1, target)
    pos_weight = torch.linspace(0.5, 3.0, 5, dtype=dtype)
    per_element = F.binary_cross_entropy_with_logits(
        _logits(shape, dtype),
        _smoothed(target, 0.1, 0.5, dtype),
        pos_weight=pos_weight,
        reduction="none",
    )
    expected = per_element[~ignored].mean()  # PyTorch's mean: a count, weights not in it
    by_index = lt.smooth_bce(
        _logits(shape, dtype), with_ignored, ignore_index=-1, pos_weight=pos_weight
    )
    by_mask = lt.smooth_bce(_logits(shape, dtype), target, where=~ignored, pos_weight=pos_weight)
    assert_close(by_index, expected, dtype)
    assert_close(by_mask, expected, dtype)


def test_mean_over_no_kept_element_is_zero_with_zero_gradient():
    leaf = _logits((3, 4), torch.float64).requires_grad_()
    target = _target("bool", (3, 4), torch.float64)
    loss = lt.smooth_bce(leaf, target, where=torch.zeros(3, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(leaf.grad) == 0


def test_gradients_of_target_and_smoothing_go_through_autograd():
    """With a target or smoothing that requires grad, every input gets its gradient; the
    loss is linear in eps, so d/d eps is the loss at targets u minus that at targets y."""
    dtype = torch.float64
    logits = _logits((4, 3), dtype).requires_grad_()
    target = _target("soft", (4, 3), dtype).requires_grad_()
    smoothing = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    pos_weight = torch.linspace(0.5, 3.0, 3, dtype=dtype)
    loss = lt.smooth_bce(logits, target, smoothing=smoothing, pos_weight=pos_weight)
    grads = torch.autograd.grad(loss, (logits, target, smoothing))
    expected = F.binary_cross_entropy_with_logits(
        logits, (1.0 - smoothing) * target + smoothing * 0.5, pos_weight=pos_weight
    )
    expected_grads = torch.autograd.grad(expected, (logits, target, smoothing))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, dtype)
    difference = F.binary_cross_entropy_with_logits(
        logits, torch.full_like(target, 0.5), pos_weight=pos_weight
    ) - F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    assert_close(grads[2], difference.detach(), dtype)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
def test_torch_func_vmap_grad_and_jvp_match_f():
    dtype = torch.float64
    logits = _logits((3, 4, 5), dtype)
    target = _target("soft", (3, 4, 5), dtype)
    tangent = _logits((3, 4, 5), dtype, seed=5)

    def ours(z, y):
        return lt.smooth_bce(z, y, smoothing=0.2)

    def theirs(z, y):
        return F.binary_cross_entropy_with_logits(z, _smoothed(y, 0.2, 0.5, dtype))

    assert_close(
        torch.func.vmap(torch.func.grad(ours))(logits, target),
        torch.func.vmap(torch.func.grad(theirs))(logits, target),
        dtype,
    )
    _, ours_tangent = torch.func.jvp(lambda z: ours(z, target), (logits,), (tangent,))
    _, theirs_tangent = torch.func.jvp(lambda z: theirs(z, target), (logits,), (tangent,))
    assert_close(ours_tangent, theirs_tangent, dtype)


def test_double_backward_matches_f():
    dtype = torch.float64
    target = _target("soft", (4, 3), dtype)
    pos_weight = torch.linspace(0.5, 3.0, 3, dtype=dtype)
    hessians = []
    for loss_fn in (
        lambda z: lt.smooth_bce(z, target, smoothing=0.1, pos_weight=pos_weight),
        lambda z: F.binary_cross_entropy_with_logits(
            z, _smoothed(target, 0.1, 0.5, dtype), pos_weight=pos_weight
        ),
    ):
        leaf = _logits((4, 3), dtype).requires_grad_()
        (grad,) = torch.autograd.grad(loss_fn(leaf), leaf, create_graph=True)
        (second,) = torch.autograd.grad(
            (grad * torch.arange(12.0, dtype=dtype).view(4, 3)).sum(), leaf
        )
        hessians.append(second)
    assert torch.count_nonzero(hessians[1]) > 0
    assert_close(hessians[0], hessians[1], dtype)


# --- half precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_bfloat16_is_computed_in_float32(reduction):
    """The loss from the bfloat16 logits, computed in float32: torch's float32 loss of
    the same (upcast) logits to float32 accuracy; the gradient in bfloat16."""
    logits = _logits((8, 6), torch.bfloat16)
    target = _target("int64", (8, 6), torch.float32)
    pos_weight = torch.linspace(0.5, 3.0, 6)
    loss, grad = _value_and_grad(
        lambda z: lt.smooth_bce(
            z, target, smoothing=0.1, pos_weight=pos_weight, reduction=reduction
        ),
        logits,
    )
    expected_loss, expected_grad = _value_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(
            z.float(),
            _smoothed(target, 0.1, 0.5, torch.float32),
            pos_weight=pos_weight,
            reduction=reduction,
        ),
        logits,
    )
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert_close(loss, expected_loss, torch.float32)
    assert_close(grad.float(), expected_grad.float(), torch.bfloat16)
    # The drop-in rounds the loss to the input's dtype, as PyTorch's function does.
    theirs = F.binary_cross_entropy_with_logits(logits, target.bfloat16(), reduction=reduction)
    ours = lt.binary_cross_entropy_with_logits(logits, target.long(), reduction=reduction)
    assert ours.dtype == theirs.dtype == torch.bfloat16


def test_drop_in_under_autocast_is_float32_as_torch():
    logits = _logits((8, 5), torch.float32)
    target = _target("soft", (8, 5), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half_logits = logits @ torch.eye(5)
        assert half_logits.dtype == torch.bfloat16
        ours = lt.binary_cross_entropy_with_logits(half_logits, target)
        theirs = F.binary_cross_entropy_with_logits(half_logits, target)
    assert ours.dtype == theirs.dtype == torch.float32
    assert_close(ours, theirs, torch.float32)


# --- memory: backward keeps the logits only ---------------------------------------------------


def _saved(call):
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        call()
    return saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_keeps_the_input_and_target_only(monkeypatch, dtype):
    # The eager Function of inputs past the small path's size (which holds the gradient
    # from forward to backward: tests below).
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 0)
    logits = _logits((16, 12), dtype).requires_grad_()
    target = _target("soft", (16, 12), dtype)
    pos_weight = torch.linspace(0.5, 3.0, 12, dtype=dtype)
    saved = _saved(lambda: lt.smooth_bce(logits, target, smoothing=0.1, pos_weight=pos_weight))
    full_size = {tensor.data_ptr() for tensor in saved if tensor.numel() >= logits.numel()}
    # The tensors themselves (a bfloat16 input is not kept as a float32 copy).
    assert full_size == {logits.data_ptr(), target.data_ptr()}
    assert sum(tensor.numel() for tensor in saved) <= 2 * logits.numel() + 12 + 1
    # The check can fail: autograd through the core's plain ops (taken when the
    # smoothing requires grad) keeps logits-sized temporaries of its own.
    smoothing = torch.tensor(0.1, requires_grad=True)
    saved = _saved(
        lambda: lt.smooth_bce(logits, target, smoothing=smoothing, pos_weight=pos_weight)
    )
    others = [
        tensor
        for tensor in saved
        if tensor.numel() >= logits.numel()
        and tensor.data_ptr() not in (logits.data_ptr(), target.data_ptr())
    ]
    assert others


# --- half precision: block by block, never a whole float32 copy ------------------------------


def _half_options(name, shape):
    """(options for lsr, the element weights and kept mask of the expected value)."""
    n, k = shape
    generator = torch.Generator().manual_seed(2)
    rows = torch.rand(n, 1, generator=generator)
    return {
        "plain": ({}, None, None),
        "weight (N, K)": ({"weight": torch.rand(shape, generator=generator)}, "weight", None),
        "weight (K,)": ({"weight": torch.rand(k, generator=generator)}, "weight", None),
        "weight (N, 1)": ({"weight": rows}, "weight", None),
        "pos_weight": ({"pos_weight": torch.rand(k, generator=generator) + 0.5}, None, None),
        "where (N, 1)": ({"where": rows > 0.3}, None, rows > 0.3),
        "prior (K,)": ({"prior": torch.rand(k, generator=generator)}, None, None),
    }[name]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "weight (N, K)",
        "weight (K,)",
        "weight (N, 1)",
        "pos_weight",
        "where (N, 1)",
        "prior (K,)",
        "ignore_index",
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_in_blocks_matches_float32(monkeypatch, dtype, name, reduction):
    """Half-precision logits are converted block by block (here blocks of 3 rows, some
    options cut with them, some broadcast along them): the loss of the float32 values,
    and their float32 gradient rounded once."""
    monkeypatch.setattr("lsr.torch._autograd.BLOCK_ELEMENTS", 40)
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 0)  # (not the small path)
    shape, eps = (16, 12), 0.1
    logits = _logits(shape, dtype)
    if name == "ignore_index":
        target = _target("int64", shape, dtype)
        target[::3, 1::2] = -1
        options, weight_name, kept = {"ignore_index": -1}, None, target != -1
    else:
        target = _target("soft", shape, dtype)
        options, weight_name, kept = _half_options(name, shape)
        options = {key: value.to(dtype) if value.is_floating_point() else value
                   for key, value in options.items()}  # fmt: skip
    leaf = logits.clone().requires_grad_()
    loss = lt.smooth_bce(leaf, target, smoothing=eps, reduction=reduction, **options)
    (grad,) = torch.autograd.grad(loss, leaf)
    # Expected: PyTorch's loss in float32 on targets smoothed here, masked by hand.
    prior = options.get("prior", 0.5)
    prior = prior.float() if torch.is_tensor(prior) else prior
    smoothed = _smoothed(target.clamp(min=0), eps, prior, torch.float32)
    leaf = logits.float().requires_grad_()
    elements = F.binary_cross_entropy_with_logits(
        leaf,
        smoothed,
        None if weight_name is None else options[weight_name].float(),
        pos_weight=options["pos_weight"].float() if "pos_weight" in options else None,
        reduction="none",
    )
    if kept is not None:
        elements = torch.where(kept, elements, 0.0)
    expected = elements.sum()
    if reduction == "mean":
        expected = expected / (elements.numel() if kept is None else kept.expand(shape).sum())
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_close(loss.detach(), expected.detach(), torch.float32)
    torch.testing.assert_close(grad, expected_grad.to(dtype), rtol=2**-7, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_half_precision_scalar_logit(reduction):
    """A 0-d logit (which PyTorch's loss accepts) is one block of its own."""
    logit, target = torch.tensor(2.5, dtype=torch.bfloat16), torch.tensor(1.0)
    leaf = logit.clone().requires_grad_()
    loss = lt.smooth_bce(leaf, target.to(torch.bfloat16), smoothing=0.1, reduction=reduction)
    (grad,) = torch.autograd.grad(loss, leaf)
    wide = logit.float().requires_grad_()
    expected = F.binary_cross_entropy_with_logits(wide, torch.tensor(0.95))
    (expected_grad,) = torch.autograd.grad(expected, wide)
    assert_close(loss.detach(), expected.detach(), torch.float32)
    assert grad.dtype == torch.bfloat16 and torch.equal(grad, expected_grad.to(torch.bfloat16))


def test_half_precision_per_sample_gradients_under_no_grad():
    """vmap of a vjp inside no_grad: the backward runs with grad mode off and batched
    logits, which the blocked path (a plain float32 scratch) cannot take."""
    logits = _logits((3, 9, 5), torch.bfloat16)
    target = _target("int64", (9, 5), torch.bfloat16)

    def per_sample(z):
        _, vjp = torch.func.vjp(lambda x: lt.smooth_bce(x, target, smoothing=0.1), z)
        return vjp(torch.tensor(2.5))[0]

    with torch.no_grad():
        grads = torch.func.vmap(per_sample)(logits)
    for z, grad in zip(logits, grads, strict=True):
        wide = z.float().requires_grad_()
        expected = F.binary_cross_entropy_with_logits(
            wide, _smoothed(target, 0.1, 0.5, torch.float32)
        )
        (expected_grad,) = torch.autograd.grad(expected, wide, torch.tensor(2.5))
        torch.testing.assert_close(grad, expected_grad.to(torch.bfloat16), rtol=2**-7, atol=1e-6)


def test_half_precision_gradient_needs_no_float32_copy(monkeypatch):
    """Forward and backward of bfloat16 logits hold the gradient and a few float32 blocks:
    no float32 copy of the logits (4 of their own size each) nor of the targets."""
    from tests.torch.memory import peak_allocated_bytes

    block = 1 << 16
    monkeypatch.setattr("lsr.torch._autograd.BLOCK_ELEMENTS", block)
    logits = _logits((4096, 256), torch.bfloat16).requires_grad_()
    target = _target("soft", (4096, 256), torch.bfloat16)
    pos_weight = torch.linspace(0.5, 2.0, 256, dtype=torch.bfloat16)

    def step():
        lt.smooth_bce(logits, target, smoothing=0.1, pos_weight=pos_weight).backward()
        logits.grad = None

    step()
    gradient_bytes = logits.numel() * logits.element_size()
    assert peak_allocated_bytes(step) <= gradient_bytes + 10 * block * 4
    # The bound can fail: the same loss in float32 holds logits-sized float32 arrays.
    wide = logits.detach().float().requires_grad_()

    def wide_step():
        lt.smooth_bce(wide, target.float(), smoothing=0.1, pos_weight=pos_weight.float()).backward()
        wide.grad = None

    assert peak_allocated_bytes(wide_step) > gradient_bytes + 10 * block * 4


# --- the drop-in: signatures, state dict, deprecated arguments --------------------------------


def _parameters(function, skip_self=False):
    parameters = list(inspect.signature(function).parameters.values())
    return parameters[1:] if skip_self else parameters


def _mismatches(ours, theirs):
    """The shared parameters whose (name, kind, default) differ, and the additions that
    are not keyword-only: empty when ``ours`` is a drop-in for ``theirs``."""
    shared = [(p.name, p.kind, p.default) for p in ours[: len(theirs)]]
    expected = [(p.name, p.kind, p.default) for p in theirs]
    found = [pair for pair in zip(shared, expected, strict=False) if pair[0] != pair[1]]
    if len(ours) < len(theirs):
        found.append(("missing", [p.name for p in theirs[len(ours) :]]))
    found += [("not keyword-only", p.name) for p in ours[len(theirs) :] if p.kind != KEYWORD_ONLY]
    return found


def test_function_signature_is_pytorchs():
    ours = _parameters(lt.binary_cross_entropy_with_logits)
    theirs = _parameters(F.binary_cross_entropy_with_logits)
    assert [p.name for p in theirs][-1] == "pos_weight"  # as documented: last, positional
    assert _mismatches(ours, theirs) == []
    assert [p.name for p in ours[len(theirs) :]] == LSR_ADDITIONS


def test_module_constructor_and_state_dict_are_pytorchs():
    ours = _parameters(lt.SmoothBCEWithLogitsLoss.__init__, skip_self=True)
    theirs = _parameters(nn.BCEWithLogitsLoss.__init__, skip_self=True)
    assert _mismatches(ours, theirs) == []
    assert [p.name for p in ours[len(theirs) :]] == LSR_ADDITIONS
    weight, pos_weight = torch.rand(3, 4), torch.rand(4)
    for arguments in [
        (),
        (weight,),
        (None, None, None, "mean", pos_weight),
        (weight, None, None, "sum", pos_weight),
    ]:
        mine, torchs = lt.SmoothBCEWithLogitsLoss(*arguments), nn.BCEWithLogitsLoss(*arguments)
        assert isinstance(mine, nn.BCEWithLogitsLoss)
        assert list(mine.state_dict()) == list(torchs.state_dict())
        for key, value in torchs.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value)
    # A state dict saved from PyTorch's module loads into lsr's.
    loaded = lt.SmoothBCEWithLogitsLoss(torch.zeros(3, 4), pos_weight=torch.zeros(4))
    loaded.load_state_dict(nn.BCEWithLogitsLoss(weight, pos_weight=pos_weight).state_dict())
    assert torch.equal(loaded.weight, weight) and torch.equal(loaded.pos_weight, pos_weight)


def test_the_signature_check_can_fail():
    assert _mismatches(_parameters(lt.smooth_bce), _parameters(F.binary_cross_entropy_with_logits))

    def positional_additions(
        input, target, weight=None, size_average=None, reduce=None, reduction="mean",
        pos_weight=None, label_smoothing=0.0,
    ):  # fmt: skip
        pass

    found = _mismatches(
        _parameters(positional_additions), _parameters(F.binary_cross_entropy_with_logits)
    )
    assert found == [("not keyword-only", "label_smoothing")]


def test_extra_positional_argument_is_rejected_as_by_torch():
    logits, target = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(TypeError):
        F.binary_cross_entropy_with_logits(logits, target, None, None, None, "mean", None, 0.1)
    with pytest.raises(TypeError):
        lt.binary_cross_entropy_with_logits(logits, target, None, None, None, "mean", None, 0.1)
    with pytest.raises(TypeError):
        lt.SmoothBCEWithLogitsLoss(None, None, None, "mean", None, 0.1)


@pytest.mark.parametrize(
    ("size_average", "reduce"), [(True, None), (False, None), (None, False), (False, True)]
)
def test_legacy_reduction_arguments_follow_torch(size_average, reduce):
    logits, target = _logits((5, 4), torch.float64), _target("soft", (5, 4), torch.float64)
    arguments = (target, None, size_average, reduce, "mean")
    with pytest.warns(UserWarning, match="size_average"):
        expected = F.binary_cross_entropy_with_logits(logits, *arguments)
    with pytest.warns(UserWarning, match="deprecated") as record:
        loss = lt.binary_cross_entropy_with_logits(logits, *arguments)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert loss.shape == expected.shape
    assert_close(loss, expected, torch.float64)
    with pytest.warns(UserWarning, match="size_average"):
        module = lt.SmoothBCEWithLogitsLoss(None, size_average, reduce)
        expected_module = nn.BCEWithLogitsLoss(None, size_average, reduce)
    assert module.reduction == expected_module.reduction
    assert_close(module(logits, target), expected, torch.float64)


def test_no_warning_without_legacy_arguments():
    logits, target = _logits((3, 4), torch.float64), _target("soft", (3, 4), torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lt.binary_cross_entropy_with_logits(logits, target, reduction="sum", label_smoothing=0.1)
        lt.SmoothBCEWithLogitsLoss(reduction="sum")(logits, target)


# --- torch.compile ----------------------------------------------------------------------------


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
def test_torch_compile_fullgraph_matches_eager_and_bad_targets_give_nan():
    torch._dynamo.reset()
    dtype = torch.float32
    target = _target("soft", (6, 5), dtype)
    weight, pos_weight = _options((6, 5), dtype, ("weight", "pos_weight"))

    def loss_fn(z, y):
        return lt.binary_cross_entropy_with_logits(
            z, y, weight, pos_weight=pos_weight, label_smoothing=0.2
        )

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    loss, grad = _value_and_grad(lambda z: compiled(z, target), _logits((6, 5), dtype))
    expected_loss, expected_grad = _value_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(
            z, _smoothed(target, 0.2, 0.5, dtype), weight, pos_weight=pos_weight
        ),
        _logits((6, 5), dtype),
    )
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)
    # A target value cannot raise inside the graph; it makes the loss NaN instead.
    bad = target.clone()
    bad[0, 0] = 2.0
    with pytest.raises(ValueError, match="Received:"):
        loss_fn(_logits((6, 5), dtype), bad)  # eager raises
    assert torch.isnan(compiled(_logits((6, 5), dtype), bad))
    for value in (-0.5, float("nan")):
        bad[0, 0] = value
        assert torch.isnan(compiled(_logits((6, 5), dtype), bad)), value


def _changed_module_smoothing(z, y, eps):
    criterion = lt.SmoothBCEWithLogitsLoss()
    criterion.label_smoothing = eps  # (a float attribute, changed after construction)
    return criterion(z, y)


# name: (the call, compiled with float arguments eps and prior; the smoothing and prior
# it applies)
_FLOAT_OPTION_CALLS = {
    "smooth_bce": (lambda z, y, eps, u: lt.smooth_bce(z, y, smoothing=eps, prior=u), None),
    "binary_cross_entropy_with_logits": (
        lambda z, y, eps, u: lt.binary_cross_entropy_with_logits(
            z, y, label_smoothing=eps, prior=u
        ),
        None,
    ),
    "SmoothBCEWithLogitsLoss": (lambda z, y, eps, u: _changed_module_smoothing(z, y, eps), 0.5),
    # smooth_bce's defaults, smoothing 0.1 and prior 0.5 (eps and u unused): a keyword's
    # default is an argument that dynamic=True makes symbolic too.
    "smooth_bce defaults": (lambda z, y, eps, u: lt.smooth_bce(z, y), (0.1, 0.5)),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("dynamic", [None, True], ids=["dynamic=None", "dynamic=True"])
@pytest.mark.parametrize("name", list(_FLOAT_OPTION_CALLS))
def test_float_options_compile_under_fullgraph_whether_or_not_dynamic(name, dynamic):
    """``torch.compile`` makes a float argument symbolic (every float, the keywords'
    defaults included, under ``dynamic=True``; a float given a second value otherwise),
    where dynamo cannot trace the checks' reading of it ("Unsupported hasattr call"
    under ``fullgraph=True``). The adapter reads such floats as constants: each value
    compiles, and gives F.binary_cross_entropy_with_logits of the smoothed targets."""
    torch._dynamo.reset()
    dtype = torch.float32
    target = _target("int64", (6, 5), dtype)
    call, fixed = _FLOAT_OPTION_CALLS[name]
    compiled = torch.compile(call, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    values = [(0.1, 0.5), (0.3, 0.2), (0.0, 0.5)]
    if isinstance(fixed, tuple):
        values = [fixed]
    for eps, prior in values:
        prior = fixed if isinstance(fixed, float) else prior
        loss, grad = _value_and_grad(
            lambda z, eps=eps, prior=prior: compiled(z, target, eps, prior), _logits((6, 5), dtype)
        )
        expected_loss, expected_grad = _value_and_grad(
            lambda z, eps=eps, prior=prior: F.binary_cross_entropy_with_logits(
                z, _smoothed(target, eps, prior, dtype)
            ),
            _logits((6, 5), dtype),
        )
        assert_close(loss, expected_loss, dtype)
        assert_close(grad, expected_grad, dtype)


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING, TORCH_JIT_WARNING)
def test_module_under_torch_compile_inductor():
    torch._dynamo.reset()
    criterion = lt.SmoothBCEWithLogitsLoss(
        pos_weight=torch.linspace(0.5, 3.0, 4), label_smoothing=0.1
    )
    compiled = torch.compile(criterion, fullgraph=True)
    target = _target("int64", (3, 2, 4), torch.float32)
    loss, grad = _value_and_grad(lambda z: compiled(z, target), _logits((3, 2, 4), torch.float32))
    expected_loss, expected_grad = _value_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(
            z, _smoothed(target, 0.1, 0.5, torch.float32), pos_weight=criterion.pos_weight
        ),
        _logits((3, 2, 4), torch.float32),
    )
    assert_close(loss, expected_loss, torch.float32)
    assert_close(grad, expected_grad, torch.float32)
    # Inductor's code: a target out of [0, 1] (NaN too) makes the loss and gradient NaN.
    for dtype, value in ((torch.float32, 1.5), (torch.float32, float("nan")), (torch.int64, 2)):
        bad = target.to(dtype).clone()
        bad[1, 0, 2] = value
        loss, grad = _value_and_grad(
            lambda z, bad=bad: compiled(z, bad), _logits((3, 2, 4), torch.float32)
        )
        assert torch.isnan(loss) and torch.isnan(grad[1, 0, 2]), value


# The modules whose Python torch.compile ran (and guarded) before lsr::smooth_bce: the
# checks, the core, the array namespaces and the autograd Functions.
_UNGUARDED_MODULES = ("lsr_dot__checks", "lsr_dot__core", "lsr_dot__compat", "array_api_compat")
_UNGUARDED_MODULES += ("lsr_dot_torch_dot__autograd", "lsr_dot_torch_dot__namespace")

# name: a call of each entry point that funnels into smooth_bce's route under compile.
_COMPILED_ENTRIES = {
    "smooth_bce": lambda z, y: lt.smooth_bce(z, y, smoothing=0.1, prior=0.5),
    "smooth_bce named prior, mask": lambda z, y: lt.smooth_bce(
        z, y, smoothing=0.2, prior="uniform", where=torch.arange(5) < 4, reduction="sum"
    ),
    "binary_cross_entropy_with_logits": lambda z, y: lt.binary_cross_entropy_with_logits(
        z, y, None, pos_weight=torch.linspace(0.5, 3.0, 5), label_smoothing=0.1
    ),
    "SmoothBCEWithLogitsLoss": lambda z, y: lt.SmoothBCEWithLogitsLoss(label_smoothing=0.1)(z, y),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("name", list(_COMPILED_ENTRIES))
def test_torch_compile_guards_none_of_the_checks_or_the_core(name):
    """Under torch.compile the checks and the core run inside ``lsr::smooth_bce``'s
    decomposition (an overload for each kind of prior), which dynamo does not trace: the
    compiled code tests no guard on their Python, and gives the eager values."""
    torch._dynamo.reset()
    call = _COMPILED_ENTRIES[name]
    logits = _logits((6, 5), torch.float32).requires_grad_(True)
    target = _target("soft", (6, 5), torch.float32)
    explained = torch._dynamo.explain(call)(logits, target)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    guarded = [g.name for g in explained.out_guards if any(m in g.name for m in _UNGUARDED_MODULES)]
    assert guarded == []
    assert len(explained.out_guards) < 100  # (245 when dynamo traced the checks and core)
    operators = {str(node.target) for graph in explained.graphs for node in graph.graph.nodes}
    assert "lsr.smooth_bce" in operators
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    loss, grad = _value_and_grad(lambda z: compiled(z, target), logits.detach())
    expected_loss, expected_grad = _value_and_grad(lambda z: call(z, target), logits.detach())
    assert_close(loss, expected_loss, torch.float32)
    assert_close(grad, expected_grad, torch.float32)


def test_the_compiled_operators_take_every_option():
    """Both overloads of ``lsr::smooth_bce`` name every parameter of ``smooth_bce``, in
    the order ``forward_smooth_bce`` passes them, and differ in the prior's type only: a
    new option that the operator did not take would be dropped from every compiled
    call."""
    from lsr.torch import _binary

    public = list(inspect.signature(lt.smooth_bce).parameters)
    route = list(inspect.signature(_binary.is_plain_compiled_binary_call).parameters)
    assert set(route) == set(public)
    priors = {}
    for overload in ("default", "named_prior"):
        arguments = getattr(torch.ops.lsr.smooth_bce, overload)._schema.arguments
        assert [argument.name for argument in arguments] == route
        # (The dispatcher passes the schema's arguments by position.)
        assert list(inspect.signature(_binary._traced_smooth_bce).parameters) == route
        priors[overload] = str(next(a.type for a in arguments if a.name == "prior"))
    assert priors == {"default": "float", "named_prior": "str"}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ignore_index": -1},
        {"weight": torch.linspace(0.5, 1.5, 5), "pos_weight": torch.linspace(0.5, 3.0, 5)},
        {"prior": "uniform", "ignore_index": -1},
    ],
    ids=["plain", "ignore_index", "weight pos_weight", "uniform prior ignore_index"],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_compile_dynamic_shapes_give_eager_values(reduction, options):
    """Under ``dynamic=True`` ``lsr::smooth_bce``'s decomposition sees symbolic sizes:
    the mean's count, and ``1 / K`` for ``prior="uniform"``, which the core must take as
    numbers, not arrays. Two batch sizes through one compiled function give the eager
    values."""
    torch._dynamo.reset()

    def call(z, y):
        return lt.smooth_bce(z, y, reduction=reduction, **options)

    compiled = torch.compile(call, fullgraph=True, dynamic=True, backend="aot_eager")
    for size in (6, 9):
        target = _target("int64", (size, 5), torch.float32, seed=size)
        if "ignore_index" in options:
            target[0, 0] = -1
        loss, grad = _value_and_grad(
            lambda z, y=target: compiled(z, y), _logits((size, 5), torch.float32)
        )
        expected_loss, expected_grad = _value_and_grad(
            lambda z, y=target: call(z, y), _logits((size, 5), torch.float32)
        )
        assert_close(loss, expected_loss, torch.float32)
        assert_close(grad, expected_grad, torch.float32)


_REFUSED_UNDER_COMPILE = {
    "reduction": (dict(reduction="bad"), "Received: reduction='bad'"),
    "prior": (dict(prior=1.5), "Received: prior=1.5"),
    "named prior": (dict(prior="bogus"), "Received: prior='bogus'"),
    "ignore_index on floats": (dict(ignore_index=3), "Received: ignore_index=3"),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("fullgraph", [False, True], ids=["graph breaks", "fullgraph"])
@pytest.mark.parametrize("case", list(_REFUSED_UNDER_COMPILE))
def test_torch_compile_refuses_bad_arguments_with_lsrs_error(case, fullgraph):
    """An argument the checks refuse inside ``lsr::smooth_bce`` is a graph break: where
    graph breaks are allowed the call runs eagerly and raises lsr's own ValueError; with
    ``fullgraph=True`` the compile fails with lsr's message, never with a value."""
    options, message = _REFUSED_UNDER_COMPILE[case]
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda z, y: lt.smooth_bce(z, y, **options), fullgraph=fullgraph, backend="aot_eager"
    )
    logits, target = _logits((6, 5), torch.float32), _target("soft", (6, 5), torch.float32)
    with pytest.raises(Exception, match=re.escape(message)) as raised:
        compiled(logits, target)
    if not fullgraph:
        assert raised.type is ValueError


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda z, y: lt.smooth_bce(z.tolist(), y), TypeError, r"`input` must be a torch\.Tensor"),
        (lambda z, y: lt.smooth_bce(z, y.tolist()), TypeError, r"`target` must be a torch\.Tensor"),
        (
            lambda z, y: lt.binary_cross_entropy_with_logits(z, y[:, :2]),
            ValueError,
            r"`target` must have the input's shape",
        ),
        (
            lambda z, y: lt.binary_cross_entropy_with_logits(z, torch.where(y > 0.5, 2.0, y)),
            ValueError,
            r"`target` must be in \[0, 1\].* Received: target with min=2\.0",
        ),
        (
            lambda z, y: lt.smooth_bce(z, (y > 0.5).long() * 2),
            ValueError,
            r"`target` must be 0 or 1",
        ),
        (lambda z, y: lt.smooth_bce(z, y, ignore_index=-1), ValueError, r"integer labels only"),
        (
            lambda z, y: lt.binary_cross_entropy_with_logits(z, y, [1.0, 2.0, 3.0]),
            TypeError,
            r"`weight` must be a torch\.Tensor",
        ),
        (
            lambda z, y: lt.binary_cross_entropy_with_logits(z, y, label_smoothing=1.5),
            ValueError,
            r"`label_smoothing` must be in \[0, 1\]",
        ),
        (
            lambda z, y: lt.binary_cross_entropy_with_logits(z, y.double()),
            TypeError,
            r"`target` must have the input's floating dtype",
        ),
        (lambda z, y: lt.smooth_bce(z, y, prior=1.5), ValueError, r"`prior`"),
        (lambda z, y: lt.smooth_bce(z, y, prior=[0.5]), TypeError, r"`prior` must be"),
    ],
    ids=[
        "input a list",
        "target a list",
        "target of another shape",
        "soft target 2",
        "integer target 2",
        "ignore_index with float targets",
        "weight a list",
        "label_smoothing 1.5",
        "float64 target",
        "prior 1.5",
        "prior a list",
    ],
)
def test_bad_arguments_raise_with_received(call, error, match):
    logits = _logits((4, 3), torch.float32)
    target = _target("soft", (4, 3), torch.float32)
    with pytest.raises(error, match=match) as info:
        call(logits, target)
    assert "Received:" in str(info.value)


def test_module_constructor_checks_its_additions():
    with pytest.raises(ValueError, match=r"Received: label_smoothing=1\.5"):
        lt.SmoothBCEWithLogitsLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"Received: prior='others'"):
        lt.SmoothBCEWithLogitsLoss(prior="others")
    with pytest.raises(TypeError, match=r"Received: pos_weight="):
        lt.SmoothBCEWithLogitsLoss(pos_weight=[1.0, 2.0])
    criterion = lt.SmoothBCEWithLogitsLoss(label_smoothing=0.1, prior=torch.full((3,), 0.25))
    assert list(criterion.state_dict()) == ["prior"]
    assert "label_smoothing=0.1" in repr(criterion)


@pytest.mark.parametrize("mask", ["where", "ignore_index"])
def test_a_left_out_infinite_logit_does_not_reach_the_options_gradients(mask):
    """Padding with logit -inf, left out: the loss and every gradient (pos_weight, weight,
    soft targets) stay finite, and equal those of the kept elements alone."""
    logits = torch.tensor([[0.5, -1.0, float("-inf")]], dtype=torch.float64)
    kept = torch.tensor([[True, True, False]])
    pos_weight = torch.tensor([1.5, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    if mask == "where":
        target = torch.tensor([[0.8, 0.1, 1.0]], dtype=torch.float64, requires_grad=True)
        options = {"where": kept}
    else:
        target = torch.tensor([[1, 0, -100]])
        options = {"ignore_index": -100}
    loss = lt.smooth_bce(logits, target, pos_weight=pos_weight, weight=weight, **options)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pos_weight.grad).all() and pos_weight.grad[2] == 0
    assert torch.isfinite(weight.grad).all() and weight.grad[2] == 0
    if target.requires_grad:
        assert torch.isfinite(target.grad).all() and target.grad[0, 2] == 0


def test_the_drop_in_returns_the_dtype_pytorch_promotes_to():
    logits = torch.randn(4, 3).half()
    for target in (torch.rand(4, 3), torch.rand(4, 3).half()):
        expected = F.binary_cross_entropy_with_logits(logits, target)
        assert lt.binary_cross_entropy_with_logits(logits, target).dtype == expected.dtype


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_batched_cotangents_give_the_jacobian(reduction):
    """autograd's own vmap (vectorized jacobian, is_grads_batched) over the Function's
    backward, which otherwise updates its sigmoid in place: the loop's rows."""
    logits = _logits((3, 4), torch.float64)
    target = _target("soft", (3, 4), torch.float64)

    def loss(z):
        return lt.smooth_bce(z, target, smoothing=0.2, reduction=reduction)

    vectorized = torch.autograd.functional.jacobian(loss, logits, vectorize=True)
    looped = torch.autograd.functional.jacobian(loss, logits, vectorize=False)
    torch.testing.assert_close(vectorized, looped)


def test_the_eager_path_binds_no_signature_per_call(monkeypatch):
    """As ``smooth_ce``'s: no ``inspect.signature`` per eager call (tens of
    microseconds); under ``torch.func`` the transform-ready path still works."""
    import inspect

    calls = []
    signature = inspect.signature

    def counting(*args, **kwargs):
        calls.append(args)
        return signature(*args, **kwargs)

    logits = torch.randn(8, 5, requires_grad=True)
    target = torch.randint(0, 2, (8, 5)).float()
    lt.smooth_bce(logits, target).backward()
    monkeypatch.setattr(inspect, "signature", counting)
    lt.smooth_bce(logits, target).backward()
    assert calls == []
    targets = torch.randint(0, 2, (3, 8, 5)).float()
    batched = torch.func.vmap(lambda t: lt.smooth_bce(logits.detach(), t))(targets)
    one_by_one = torch.stack([lt.smooth_bce(logits.detach(), t) for t in targets])
    torch.testing.assert_close(batched, one_by_one)


def test_sum_and_mean_use_the_fused_sum_and_fall_back_at_infinite_logits(monkeypatch):
    """Eagerly on the CPU, "sum" and "mean" take the total from the torch namespace's
    fused sum (declined with ``pos_weight``: the core's form computes it); where a logit
    is infinite it gives NaN (``0 * inf``), and the core computes the exact value
    itself. Hard targets at large logits of the matching sign keep their small loss."""
    from lsr.torch import _namespace

    # The eager Function (small inputs may take PyTorch's kernel instead: tests below).
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 0)
    results = []
    fused = _namespace.xp.sigmoid_cross_entropy_sum

    def spy(*args, **kwargs):
        results.append(fused(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(_namespace.xp, "sigmoid_cross_entropy_sum", spy)
    logits, target = _logits((6, 5), torch.float64), _target("soft", (6, 5), torch.float64)
    all_options = _options((6, 5), torch.float64, ("weight", "pos_weight"))
    for reduction, (weight, pos_weight) in itertools.product(
        ("mean", "sum"), (all_options, (all_options[0], None), (None, None))
    ):
        results.clear()
        loss = lt.smooth_bce(
            logits,
            target,
            smoothing=0.2,
            weight=weight,
            pos_weight=pos_weight,
            reduction=reduction,
        )
        expected = F.binary_cross_entropy_with_logits(
            logits,
            _smoothed(target, 0.2, 0.5, torch.float64),
            weight,
            pos_weight=pos_weight,
            reduction=reduction,
        )
        assert len(results) == 1 and (results[0] is None) == (pos_weight is not None)
        torch.testing.assert_close(loss, expected)
    for dtype in (torch.float32, torch.float64):
        large = torch.tensor([[16.0, -16.0, 40.0, -40.0]], dtype=dtype)
        hard = (large > 0).to(dtype)
        results.clear()
        loss = lt.smooth_bce(large, hard, smoothing=0.0, reduction="sum")
        assert len(results) == 1 and results[0] is not None
        exact = 2 * (math.log1p(math.exp(-16.0)) + math.log1p(math.exp(-40.0)))
        assert float(loss) == pytest.approx(exact, rel=1e-5), dtype
    # Target 1 at +inf and 0 at -inf cost 0 (PyTorch's own kernel: NaN).
    logits = torch.tensor([[float("inf"), float("-inf"), 0.5]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    results.clear()
    leaf = logits.clone().requires_grad_()
    loss = lt.smooth_bce(leaf, target, smoothing=0.0, reduction="sum")
    assert len(results) == 1 and torch.isnan(results[0])
    torch.testing.assert_close(loss, F.softplus(torch.tensor(-0.5, dtype=torch.float64)))
    loss.backward()
    torch.testing.assert_close(
        leaf.grad,
        torch.tensor(
            [[0.0, 0.0, torch.sigmoid(torch.tensor(0.5)).item() - 1]], dtype=torch.float64
        ),
    )


def test_unread_targets_out_of_range_give_nan_even_at_zero_weight(monkeypatch):
    """Where the targets' values are not read (as on an accelerator), an out-of-range
    target makes the loss and its gradient NaN, also at an element of weight 0 (whose
    product must not turn the NaN into 0)."""
    from lsr import _compat

    monkeypatch.setattr(_compat.TorchBackend, "values_are_cheap", lambda self, x: False)
    target = _target("soft", (6, 5), torch.float32)
    target[2, 3] = 1.5
    weight = torch.ones(6, 5)
    weight[2, 3] = 0.0
    for reduction in ("mean", "sum", "none"):
        loss, grad = _value_and_grad(
            lambda z, r=reduction: lt.smooth_bce(z, target, weight=weight, reduction=r).sum(),
            _logits((6, 5), torch.float32),
        )
        assert torch.isnan(loss) and torch.isnan(grad[2, 3]), reduction


# --- eager PyTorch's path for small inputs ---------------------------------------------------


def _edge_binary_logits(dtype):
    """Logits a caller can send: ordinary, +-inf, NaN, large magnitudes and 0."""
    rows = [
        [0.5, -1.0, 2.0, 0.0, 1.0],
        [-math.inf, 3.0, math.inf, 0.0, -2.0],
        [math.nan, 0.0, 1.0, -3.0, 4.0],
        [40.0, -40.0, 1e4, -1e4, 0.0],
    ]
    return torch.tensor(rows, dtype=torch.float64).to(dtype)


def _small_options(name, dtype):
    """lsr's options by name, for (4, 5) logits, and the targets they go with."""
    target = torch.tensor(
        [[1, 0, 1, 0, 1], [0, 1, 1, 0, 0], [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]], dtype=torch.int64
    )
    per_label = torch.linspace(0.25, 1.0, 5, dtype=dtype)
    if name == "ignore_index":
        return target.masked_fill(target.new_tensor([[0, 1, 0, 0, 1]] * 4).bool(), -1), {
            "ignore_index": -1
        }
    options = {
        "plain": {},
        "no smoothing": {"smoothing": 0.0},
        "weight": {"weight": per_label},
        "pos_weight": {"pos_weight": per_label + 1.0},
        "where": {"where": torch.tensor([[True], [False], [True], [True]])},
        "prior tensor": {"prior": per_label},
        "smoothing tensor": {"smoothing": torch.tensor(0.2, dtype=dtype)},
    }[name]
    return target.to(dtype), options


def _binary_loss_and_grad(logits, target, small, monkeypatch, retain=False, **options):
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 1 << 16 if small else 0)
    leaf = logits.detach().clone().requires_grad_()
    loss = lt.smooth_bce(leaf, target, **options)
    path = type(loss.grad_fn).__name__
    cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    grads = torch.autograd.grad(loss, leaf, cotangent, retain_graph=retain)
    if retain:  # a second backward through the retained graph gives the same again
        grads += torch.autograd.grad(loss, leaf, cotangent)
    return loss.detach(), grads, path


def _assert_same_values(ours, theirs, dtype):
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.isinf(), theirs.isinf())
    finite = ours.isfinite()
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=2**-7 if dtype in (
        torch.bfloat16, torch.float16) else 1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("retain", [False, True], ids=["once", "retain_graph"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "no smoothing",
        "weight",
        "pos_weight",
        "where",
        "prior tensor",
        "smoothing tensor",
        "ignore_index",
    ],
)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str
)
def test_small_path_matches_the_eager_function(monkeypatch, dtype, name, reduction, retain):
    """Small CPU inputs take ``SmoothBCESmall`` (the gradient made in the forward pass),
    larger ones the eager Function (the gradient made in backward): the same loss and
    gradients, NaN and inf in the same places, for every option, edge logits included."""
    logits = _edge_binary_logits(dtype)
    target, options = _small_options(name, dtype)
    options = {"smoothing": 0.1, **options, "reduction": reduction}
    small = _binary_loss_and_grad(logits, target, True, monkeypatch, retain, **options)
    eager = _binary_loss_and_grad(logits, target, False, monkeypatch, retain, **options)
    assert small[2] == "SmoothBCESmallBackward"
    assert eager[2] == "SmoothBCEEagerBackward"
    _assert_same_values(small[0], eager[0], dtype)
    for ours, theirs in zip(small[1], eager[1], strict=True):
        assert ours.dtype == dtype
        _assert_same_values(ours, theirs, dtype)


def _grad_with_cotangent(logits, target, cotangent, small, monkeypatch, **options):
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 1 << 16 if small else 0)
    leaf = logits.detach().clone().requires_grad_()
    loss = lt.smooth_bce(leaf, target, **options)
    expected_path = "SmoothBCESmallBackward" if small else "SmoothBCEEagerBackward"
    assert type(loss.grad_fn).__name__ == expected_path
    (grad,) = torch.autograd.grad(loss, leaf, cotangent.expand(loss.shape))
    return grad


def test_small_path_scales_a_half_precision_gradient_in_float32(monkeypatch):
    """A float16 loss scaled by 65536 (``GradScaler``'s first scale): the gradient held
    from the forward pass is float32, scaled there and rounded once, as on the eager
    Function (in float16 the scale itself rounds to inf, and small entries flush to 0)."""
    logits = _logits((64, 32), torch.float16)
    target = _target("bool", (64, 32), torch.float16)
    for scale in (65536.0, 2.0**-20):
        cotangent = torch.tensor(scale)
        small = _grad_with_cotangent(logits, target, cotangent, True, monkeypatch, smoothing=0.0)
        eager = _grad_with_cotangent(logits, target, cotangent, False, monkeypatch, smoothing=0.0)
        assert small.dtype == torch.float16 and bool(small.isfinite().all())
        torch.testing.assert_close(small, eager, rtol=2**-10, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_small_path_gives_left_out_elements_zero_at_any_cotangent(monkeypatch, reduction):
    """Left-out elements have gradient 0 even where the cotangent is inf or NaN (the held
    gradient is masked before the cotangent would multiply it: the small path then
    computes it as the eager Function does); kept ones get what the eager Function
    gives. Also for a "mean" over no kept element."""
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
    for target in (
        torch.tensor([[1, -100, 0], [0, 1, -100]]),
        torch.full((2, 3), -100),
    ):
        for value in (math.inf, math.nan, 3.0):
            cotangent = torch.tensor(value)
            if reduction == "none":
                cotangent = torch.tensor([[1.0, value, 1.0], [2.0, 1.0, value]])
            options = {"ignore_index": -100, "reduction": reduction}
            small = _grad_with_cotangent(logits, target, cotangent, True, monkeypatch, **options)
            eager = _grad_with_cotangent(logits, target, cotangent, False, monkeypatch, **options)
            assert torch.equal(small[target == -100], torch.zeros_like(small[target == -100]))
            _assert_same_values(small, eager, torch.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_small_path_double_backward_matches_f(reduction):
    """A double backward through the small path (``create_graph=True``) gives PyTorch's
    second derivatives on the targets smoothed by hand. (Smoothing towards 0.1: targets
    down to 0.02, which PyTorch's own kernel form is not trusted with.)"""
    logits = _logits((4, 5), torch.float64)
    target = _target("soft", (4, 5), torch.float64)
    results = []
    for loss_fn in (
        lambda z: lt.smooth_bce(z, target, smoothing=0.2, prior=0.1, reduction=reduction),
        lambda z: F.binary_cross_entropy_with_logits(
            z, _smoothed(target, 0.2, 0.1, torch.float64), reduction=reduction
        ),
    ):
        leaf = logits.clone().requires_grad_()
        loss = loss_fn(leaf)
        (grad,) = torch.autograd.grad(loss.sum(), leaf, create_graph=True)
        (second,) = torch.autograd.grad((grad * grad).sum(), leaf)
        results.append((loss.detach(), grad.detach(), second, type(loss.grad_fn).__name__))
    assert results[0][3] == "SmoothBCESmallBackward"
    for ours, theirs in zip(results[0][:3], results[1][:3], strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_small_inputs_take_pytorchs_kernel_only_where_the_core_allows(dtype, reduction):
    """Small CPU inputs whose smoothed targets are all at least 2**-5 (and nothing left
    out, no pos_weight) take ``F.binary_cross_entropy_with_logits`` on the smoothed
    targets, differentiated by PyTorch; the others, and any call whose loss would not be
    finite that way, take ``SmoothBCESmall``. Each gives PyTorch's loss and gradient on
    the targets smoothed here (float32 for half-precision inputs)."""
    logits = _logits((6, 5), dtype)
    target = _target("int64", (6, 5), dtype)
    weight = torch.linspace(0.5, 1.5, 5, dtype=dtype)
    infinite = logits.clone()
    infinite[0, 0] = math.inf  # (target 0: the kernel form's loss is inf there, lsr's too)
    infinite[1, 1] = -math.inf
    cases = [  # (logits, lsr's options, expected Function)
        (logits, {"smoothing": 0.1}, "BinaryCrossEntropyWithLogitsBackward0"),
        (logits, {"smoothing": 0.1, "weight": weight}, "BinaryCrossEntropyWithLogitsBackward0"),
        (logits, {"smoothing": 2**-4}, "BinaryCrossEntropyWithLogitsBackward0"),  # t >= 2**-5
        (logits, {"smoothing": 0.1, "prior": 0.25}, "SmoothBCESmallBackward"),  # t = 0.025
        (logits, {"smoothing": 0.0}, "SmoothBCESmallBackward"),
        (logits, {"smoothing": 0.1, "pos_weight": weight + 1}, "SmoothBCESmallBackward"),
        (logits, {"smoothing": 0.1, "where": target >= 0}, "SmoothBCESmallBackward"),
        (infinite, {"smoothing": 0.1}, "SmoothBCESmallBackward"),
    ]
    for z, options, expected_path in cases:
        leaf = z.clone().requires_grad_()
        loss = lt.smooth_bce(leaf, target, reduction=reduction, **options)
        assert type(loss.grad_fn).__name__ == expected_path, options
        cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
        (grad,) = torch.autograd.grad(loss, leaf, cotangent)
        wide = z.float().requires_grad_()
        prior = options.get("prior", 0.5)
        elements = F.binary_cross_entropy_with_logits(
            wide,
            _smoothed(target, options["smoothing"], prior, torch.float32),
            None if "weight" not in options else options["weight"].float(),
            pos_weight=None if "pos_weight" not in options else options["pos_weight"].float(),
            reduction="none",
        )
        # The exact value at the infinite logits (PyTorch's own form gives NaN at -inf).
        elements = torch.where(z.isinf(), torch.where(z > 0, math.inf, -0.05 * -math.inf), elements)
        if "where" in options:
            elements = torch.where(options["where"], elements, 0.0)
        expected = {"none": elements, "sum": elements.sum(), "mean": elements.mean()}[reduction]
        assert loss.dtype == torch.float32 and grad.dtype == dtype
        torch.testing.assert_close(loss.detach(), expected.detach())
        if not z.isinf().any():
            (expected_grad,) = torch.autograd.grad(expected, wide, cotangent)
            torch.testing.assert_close(grad, expected_grad.to(dtype), rtol=2**-7, atol=1e-6)


def test_pytorchs_kernel_form_is_taken_only_where_it_keeps_the_losss_digits():
    """The kernel form's loss at large negative logits cancels to ``-t z``: for a
    smoothed target of 2**-5 (``kernel_form_applies``' bound, taken) every element is
    within 48 units of float32's epsilon of the exact value; at 2**-8 that form would be
    off by more (refused: lsr's own pass stays within a unit)."""
    z = -torch.logspace(0, 6, 200).double()  # (float32 values: the reference is exact for them)
    unit = 2.0**-23
    for target, expected_path in ((2**-5, "BinaryCrossEntropyWithLogitsBackward0"),
                                  (2**-8, "SmoothBCESmallBackward")):  # fmt: skip
        exact = (1 - target) * z + F.softplus(-z)  # float64: the reference
        leaf = z.float().requires_grad_()
        ours = lt.smooth_bce(
            leaf, torch.zeros_like(leaf), smoothing=2 * target, prior=0.5, reduction="none"
        )
        assert type(ours.grad_fn).__name__ == expected_path
        error = ((ours.detach().double() - exact).abs() / exact).max() / unit
        kernel = F.binary_cross_entropy_with_logits(
            z.float(), torch.full_like(z.float(), target), reduction="none"
        )
        kernel_error = ((kernel.double() - exact).abs() / exact).max() / unit
        if target == 2**-5:
            assert error <= 48 and kernel_error <= 48
        else:
            assert error <= 1 and kernel_error > 48


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("requires_grad", [False, True], ids=["loss", "loss-and-grad"])
@pytest.mark.parametrize("small", [True, False], ids=["small", "eager"])
def test_a_traced_binary_loss_gives_each_later_calls_own_value(monkeypatch, small, requires_grad):
    """Under ``torch.jit.trace`` the labels cannot be read (a value read would be a
    constant of the trace): the mean's count of kept elements is each call's own, and
    neither path takes PyTorch's kernel, which would not mark a later call's label out
    of [0, 1] (NaN there)."""
    monkeypatch.setattr("lsr.torch._binary.SMALL_BINARY_ELEMENTS", 1 << 16 if small else 0)
    logits = _logits((4, 3), torch.float32).requires_grad_(requires_grad)
    first = torch.tensor([[1, 0, -1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    kept_fewer = torch.tensor([[-1, -1, -1], [-1, -1, 1], [1, -1, 0], [0, 0, 1]])
    out_of_range = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 2]])
    for ignore_index in (-1, None):

        def loss(z, t, ignore_index=ignore_index):
            return lt.smooth_bce(z, t, smoothing=0.1, ignore_index=ignore_index)

        start = first if ignore_index is not None else first.clamp(min=0)
        traced = torch.jit.trace(loss, (logits, start), check_trace=False)
        for labels in (start, kept_fewer) if ignore_index is not None else (start,):
            kept = labels != -1
            elements = F.binary_cross_entropy_with_logits(
                logits, _smoothed(labels.clamp(min=0), 0.1, 0.5, torch.float32), reduction="none"
            )
            expected = elements[kept].sum() / kept.sum()
            assert_value_and_grad_close(
                traced(logits, labels), expected, logits, with_grad=requires_grad
            )
        assert torch.isnan(traced(logits, out_of_range))


# --- repeated calls ---------------------------------------------------------------------------


def _count_full_checks(monkeypatch):
    """How often the adapter's full checks ran (their first: ``check_tensor``)."""
    from lsr import _checks_binary
    from lsr.torch import _binary

    return count_full_checks(
        monkeypatch, _binary, "check_tensor", _checks_binary, "_KNOWN_BINARY_OPTIONS"
    )


@pytest.mark.parametrize("kind", ["soft", "int64", "bool"])
def test_a_repeated_call_checks_only_the_labels_and_gives_the_same_values(kind, monkeypatch):
    """A call with an earlier call's options, types, shapes and dtypes skips the
    adapter's checks; its labels' values are still read (a bad one raises) and its
    values are F.binary_cross_entropy_with_logits' on the smoothed targets."""
    calls = _count_full_checks(monkeypatch)
    dtype = torch.float32
    for seed, expected_calls in ((1, 2), (2, 2)):  # (one call per tensor checked)
        target = _target(kind, (6, 5), dtype, seed=seed)
        loss, grad = _value_and_grad(
            lambda z, target=target: lt.smooth_bce(z, target, smoothing=0.2), _logits((6, 5), dtype)
        )
        expected_loss, expected_grad = _value_and_grad(
            lambda z, target=target: F.binary_cross_entropy_with_logits(
                z, _smoothed(target, 0.2, 0.5, dtype)
            ),
            _logits((6, 5), dtype),
        )
        assert_close(loss, expected_loss, dtype)
        assert_close(grad, expected_grad, dtype)
        assert len(calls) == expected_calls
    if kind != "bool":
        bad = _target(kind, (6, 5), dtype, seed=3)
        bad[0, 0] = 2
        with pytest.raises(ValueError, match="Received: target"):
            lt.smooth_bce(_logits((6, 5), dtype), bad, smoothing=0.2)
        assert len(calls) == 2


@pytest.mark.parametrize(
    "options",
    [
        {"weight": torch.ones(6, 5)},
        {"pos_weight": torch.ones(5)},
        {"where": torch.ones(6, 5, dtype=torch.bool)},
        {"smoothing": torch.tensor(0.2)},
        {"prior": torch.full((5,), 0.5)},
    ],
    ids=["weight", "pos_weight", "where", "tensor smoothing", "tensor prior"],
)
def test_calls_with_tensor_options_are_checked_whole(options, monkeypatch):
    """Also after a call without them has made the other options known (the key holds
    no tensor option: such a call must not find the spec made without it)."""
    calls = _count_full_checks(monkeypatch)
    target = _target("int64", (6, 5), torch.float32)
    plain = {name: value for name, value in (("smoothing", 0.1), ("prior", 0.5))}
    lt.smooth_bce(_logits((6, 5), torch.float32), target, **plain)
    calls.clear()
    for count in (2, 4):
        lt.smooth_bce(_logits((6, 5), torch.float32), target, **{**plain, **options})
        assert len(calls) == count


# --- the route for repeated small calls ----------------------------------------------------


def _route_decisions(monkeypatch):
    """A list of ``is_plain_eager_binary_call``'s answers, one per call of smooth_bce."""
    from lsr.torch import _binary

    decisions: list = []
    plain = _binary.is_plain_eager_binary_call
    monkeypatch.setattr(
        _binary,
        "is_plain_eager_binary_call",
        lambda *arguments: decisions.append(plain(*arguments)) or decisions[-1],
    )
    return decisions


@pytest.mark.parametrize(
    "smoothing, path",
    [(0.1, "BinaryCrossEntropyWithLogitsBackward0"), (0.0, "SmoothBCESmallBackward")],
    ids=["PyTorch's kernel", "SmoothBCESmall"],
)
def test_a_repeated_plain_call_takes_the_route_to_the_small_paths(smoothing, path, monkeypatch):
    """The second plain call skips every check but the labels' values (the first is
    checked whole) and the full path's tests of autograd (counted: the route is taken,
    not the full path with known options), and gives F's loss and gradient by the full
    path's small paths; a bad label on the route still raises."""
    from lsr.torch import _binary

    calls = _count_full_checks(monkeypatch)
    decisions = _route_decisions(monkeypatch)
    full_paths: list = []
    full_path_test = _binary.needs_autograd_through_core
    monkeypatch.setattr(
        _binary,
        "needs_autograd_through_core",
        lambda *arguments: full_paths.append(1) or full_path_test(*arguments),
    )
    for seed in (1, 2):
        target = _target("soft", (6, 5), torch.float32, seed=seed)
        leaf = _logits((6, 5), torch.float32).requires_grad_()
        loss = lt.smooth_bce(leaf, target, smoothing=smoothing)
        assert loss.grad_fn.name() == path
        expected = F.binary_cross_entropy_with_logits(
            leaf, _smoothed(target, smoothing, 0.5, torch.float32)
        )
        (grad,) = torch.autograd.grad(loss, leaf)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        assert_close(loss.detach(), expected.detach(), torch.float32)
        assert_close(grad, expected_grad, torch.float32)
    assert decisions == [True, True]
    assert len(calls) == 2  # (the first call's input and target)
    # (Both of the first call's, whose options were not known; none of the second's.)
    assert full_paths == [1, 1]
    bad = _target("soft", (6, 5), torch.float32, seed=3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="Received: target"):
        lt.smooth_bce(_logits((6, 5), torch.float32).requires_grad_(), bad, smoothing=smoothing)
    assert decisions == [True, True, True] and len(calls) == 2


def _binary_forward_ad_target(z, y):
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        return lt.smooth_bce(z, fwAD.make_dual(y, torch.ones_like(y)))


_NOT_ROUTED_BINARY = {
    **off_the_route_calls(lt.smooth_bce),
    "tensor smoothing": lambda z, y: lt.smooth_bce(z, y, smoothing=torch.tensor(0.1)),
    "int smoothing": lambda z, y: lt.smooth_bce(z, y, smoothing=0),
    "tensor prior": lambda z, y: lt.smooth_bce(z, y, prior=torch.full((5,), 0.5)),
    "weight": lambda z, y: lt.smooth_bce(z, y, weight=torch.ones(5)),
    "pos_weight": lambda z, y: lt.smooth_bce(z, y, pos_weight=torch.ones(5)),
    "where": lambda z, y: lt.smooth_bce(z, y, where=torch.ones(5, dtype=torch.bool)),
    "target requires grad": lambda z, y: lt.smooth_bce(z, y.clone().requires_grad_()),
    "large": lambda z, y: lt.smooth_bce(
        torch.zeros(300, 300, requires_grad=True), torch.zeros(300, 300)
    ),
    "forward AD target": _binary_forward_ad_target,
    "torch.func target": lambda z, y: torch.func.grad(lambda t: lt.smooth_bce(z, t))(y),
}


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", list(_NOT_ROUTED_BINARY))
def test_every_other_binary_call_takes_the_full_path(name, monkeypatch):
    """A call that the full path would not give to the small paths (or that it gives to
    them under other conditions) never takes the route, also after a plain call of the
    same shapes has made its options known."""
    torch._dynamo.reset()
    target = _target("soft", (6, 5), torch.float32)
    decisions = _route_decisions(monkeypatch)
    lt.smooth_bce(_logits((6, 5), torch.float32).requires_grad_(), target)  # (now known)
    lt.smooth_bce(_logits((6, 5), torch.float32).requires_grad_(), target)
    assert decisions == [True, True]
    decisions.clear()
    _NOT_ROUTED_BINARY[name](_logits((6, 5), torch.float32).requires_grad_(), target)
    assert decisions and not any(decisions), name


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.1])
def test_forward_mode_dual_logits_match_f(smoothing, requires_grad):
    """A dual tensor of ``torch.autograd.forward_ad`` gives F's loss and tangent, for
    each small path's smoothing (PyTorch's kernel at 0.1, lsr's pass below): the torch
    namespace's fused sum, whose out= steps have no forward-mode rule, declines it (at
    0 and 0.05 it raised NotImplementedError)."""
    import torch.autograd.forward_ad as fwAD

    logits = (_logits((6, 5), torch.float32) * 4.0).requires_grad_(requires_grad)
    target = _target("int64", (6, 5), torch.float32)
    tangent = torch.linspace(-1.0, 1.0, 30).reshape(6, 5)
    smoothed = _smoothed(target, smoothing, 0.5, torch.float32)
    with fwAD.dual_level():
        ours = fwAD.unpack_dual(
            lt.smooth_bce(fwAD.make_dual(logits, tangent), target, smoothing=smoothing)
        )
        theirs = fwAD.unpack_dual(
            F.binary_cross_entropy_with_logits(fwAD.make_dual(logits, tangent), smoothed)
        )
    assert_close(ours.primal.detach(), theirs.primal.detach(), torch.float32)
    assert_close(ours.tangent.detach(), theirs.tangent.detach(), torch.float32)

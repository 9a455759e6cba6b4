"""lsr.torch.cross_entropy and SmoothCrossEntropyLoss as drop-ins for PyTorch's own.

The promise: replacing ``F.cross_entropy`` by ``lsr.torch.cross_entropy`` (or
``nn.CrossEntropyLoss`` by ``SmoothCrossEntropyLoss``) changes nothing else in the
caller's code. So the shared parameters must be PyTorch's (names, order, kinds,
defaults, read from ``inspect.signature`` of the installed torch), and every call
``F.cross_entropy`` accepts, written positionally as PyTorch users write it, must give
its values and gradients. Expected values come from ``F.cross_entropy`` itself.
"""

from __future__ import annotations

import inspect
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lsr.torch as lt
from tests.backends import assert_close

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
LSR_ADDITIONS = ["prior", "kl", "z_loss", "softcap", "confidence_penalty"]


def _parameters(function, skip_self=False):
    parameters = list(inspect.signature(function).parameters.values())
    return parameters[1:] if skip_self else parameters


def _mismatches(ours, theirs):
    """The shared parameters whose (name, kind, default) differ, and the additions that
    are not keyword-only: empty when ``ours`` is a drop-in for ``theirs``."""
    shared = [(p.name, p.kind, p.default) for p in ours[: len(theirs)]]
    expected = [(p.name, p.kind, p.default) for p in theirs]
    found = [pair for pair in zip(shared, expected, strict=True) if pair[0] != pair[1]]
    if len(ours) < len(theirs):
        found.append(("missing", [p.name for p in theirs[len(ours) :]]))
    found += [("not keyword-only", p.name) for p in ours[len(theirs) :] if p.kind != KEYWORD_ONLY]
    return found


# --- signatures -----------------------------------------------------------------------------


def test_cross_entropy_signature_is_f_cross_entropy_s():
    ours, theirs = _parameters(lt.cross_entropy), _parameters(F.cross_entropy)
    assert [p.name for p in theirs][:3] == ["input", "target", "weight"]  # as documented
    assert _mismatches(ours, theirs) == []
    assert [p.name for p in ours[len(theirs) :]] == LSR_ADDITIONS


def test_module_constructor_is_cross_entropy_loss_s():
    ours = _parameters(lt.SmoothCrossEntropyLoss.__init__, skip_self=True)
    theirs = _parameters(nn.CrossEntropyLoss.__init__, skip_self=True)
    assert _mismatches(ours, theirs) == []
    assert [p.name for p in ours[len(theirs) :]] == LSR_ADDITIONS


def test_the_signature_check_can_fail():
    """smooth_ce (keyword-only options, `smoothing`) is not a drop-in, and the check says so;
    nor is a function whose additions could be passed by position."""
    assert _mismatches(_parameters(lt.smooth_ce), _parameters(F.cross_entropy)) != []

    def positional_additions(
        input,
        target,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
        prior="uniform",
    ):
        pass

    found = _mismatches(_parameters(positional_additions), _parameters(F.cross_entropy))
    assert found == [("not keyword-only", "prior")]


def test_extra_positional_argument_is_rejected_as_by_torch():
    logits, target = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(TypeError):
        F.cross_entropy(logits, target, None, None, -100, None, "mean", 0.0, "uniform")
    with pytest.raises(TypeError):
        lt.cross_entropy(logits, target, None, None, -100, None, "mean", 0.0, "uniform")
    with pytest.raises(TypeError):
        lt.SmoothCrossEntropyLoss(None, None, -100, None, "mean", 0.0, "others")


# --- values and gradients -------------------------------------------------------------------

SHAPES = {"(C,)": (5,), "(N, C)": (6, 5), "(N, C, d)": (3, 5, 4), "(N, C, d1, d2)": (2, 5, 3, 2)}
# Class ids with PyTorch's default ignore_index, class ids ignoring a valid class (2),
# and class probabilities (where ignore_index must stay -100, as in PyTorch).
TARGETS = {"ids": -100, "ids, ignore class 2": 2, "probabilities": -100}


def _logits(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)


def _target(kind, shape, dtype, ignore_index, seed=1):
    generator = torch.Generator().manual_seed(seed)
    num_classes = shape[0] if len(shape) == 1 else shape[1]
    if kind == "probabilities":
        scores = torch.randn(shape, generator=generator, dtype=torch.float64)
        return torch.softmax(scores, dim=0 if len(shape) == 1 else 1).to(dtype)
    positions = () if len(shape) == 1 else (shape[0], *shape[2:])
    labels = torch.randint(0, num_classes, positions, generator=generator)
    ignored = torch.rand(positions, generator=generator) < 0.3
    labels = torch.where(ignored, ignore_index, labels)
    # At least one counted position: a mean over none is the documented difference.
    labels.view(-1)[0] = 0
    return labels


def _value_and_grad(loss_fn, logits):
    leaf = logits.detach().clone().requires_grad_()
    loss = loss_fn(leaf)
    # A non-uniform cotangent also checks the "none" gradient position by position.
    cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad(loss, leaf, cotangent)
    return loss.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_matches_f_cross_entropy(
    shape, kind, weighted, reduction, label_smoothing, dtype
):
    shape = SHAPES[shape]
    num_classes = shape[0] if len(shape) == 1 else shape[1]
    ignore_index = TARGETS[kind]
    target = _target(kind, shape, dtype, ignore_index)
    weight = torch.linspace(0.5, 1.5, num_classes, dtype=dtype) if weighted else None
    # Positionally, as F.cross_entropy's users call it: only the function differs.
    arguments = (target, weight, None, ignore_index, None, reduction, label_smoothing)
    logits = _logits(shape, dtype)
    loss, grad = _value_and_grad(lambda z: lt.cross_entropy(z, *arguments), logits)
    expected_loss, expected_grad = _value_and_grad(lambda z: F.cross_entropy(z, *arguments), logits)
    assert loss.dtype == expected_loss.dtype and loss.shape == expected_loss.shape
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["ids", "probabilities"])
def test_half_precision_matches_f_cross_entropy(kind, reduction, dtype):
    """The loss in the input's dtype, as torch's; lsr computes it in float32 and rounds
    once, so it is compared with torch's at the half dtype's tolerance."""
    shape = (16, 7, 3)
    target = _target(kind, shape, dtype, -100)
    logits = _logits(shape, dtype)
    arguments = (target, None, None, -100, None, reduction, 0.1)
    loss, grad = _value_and_grad(lambda z: lt.cross_entropy(z, *arguments), logits)
    expected_loss, expected_grad = _value_and_grad(lambda z: F.cross_entropy(z, *arguments), logits)
    assert loss.dtype == expected_loss.dtype == dtype
    assert grad.dtype == expected_grad.dtype == dtype
    assert_close(loss.float(), expected_loss.float(), dtype)
    assert_close(grad.float(), expected_grad.float(), dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_half_precision_rounding_in_the_small_path_is_autograds_own(reduction, dtype):
    """On the small path the drop-in rounds its float32 loss inside the Function (no
    autograd node of its own): the loss, its gradient for a cotangent other than 1, a
    second backward through the retained graph and a double backward are exactly those
    of ``smooth_ce``'s float32 loss rounded by autograd's ``.to``, on the first call and
    on the route of a repeated one."""
    target = torch.tensor([0, 2, 1, 4, 3, 0, 2, 1])
    for _ in range(2):
        logits = _logits((8, 5), dtype).requires_grad_()
        loss = lt.cross_entropy(logits, target, reduction=reduction, label_smoothing=0.1)
        assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
        reference_logits = logits.detach().clone().requires_grad_()
        reference = lt.smooth_ce(reference_logits, target, reduction=reduction, smoothing=0.1).to(
            dtype
        )
        assert loss.dtype == reference.dtype == dtype
        assert torch.equal(loss.detach(), reference.detach())
        cotangent = torch.linspace(0.5, 2.0, loss.numel()).reshape(loss.shape).to(dtype)
        for _ in range(2):  # (the second through the retained graph)
            (grad,) = torch.autograd.grad(loss, logits, cotangent, retain_graph=True)
            (expected,) = torch.autograd.grad(
                reference, reference_logits, cotangent, retain_graph=True
            )
            assert torch.equal(grad, expected)
        (grad,) = torch.autograd.grad(loss, logits, cotangent, create_graph=True)
        (expected,) = torch.autograd.grad(reference, reference_logits, cotangent, create_graph=True)
        (second,) = torch.autograd.grad(grad.float().square().sum(), logits)
        (expected_second,) = torch.autograd.grad(expected.float().square().sum(), reference_logits)
        assert torch.equal(grad.detach(), expected.detach())
        assert torch.equal(second, expected_second)


def test_half_precision_under_autocast_is_float32_as_torch():
    logits = _logits((8, 5), torch.float32)
    target = _target("ids", (8, 5), torch.float32, -100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half_logits = logits @ torch.eye(5)  # a bfloat16 result, as autocast code has
        assert half_logits.dtype == torch.bfloat16
        ours = lt.cross_entropy(half_logits, target, label_smoothing=0.1)
        theirs = F.cross_entropy(half_logits, target, label_smoothing=0.1)
    assert ours.dtype == theirs.dtype == torch.float32
    assert_close(ours, theirs, torch.float32)


def test_smooth_ce_keeps_its_float32_loss_for_half_inputs():
    """The difference between the drop-in and lsr's own grammar is deliberate."""
    logits = _logits((4, 3), torch.float16)
    target = torch.tensor([0, 1, 2, 0])
    assert lt.smooth_ce(logits, target).dtype == torch.float32
    assert lt.cross_entropy(logits, target).dtype == torch.float16


# --- PyTorch's deprecated arguments ---------------------------------------------------------

LEGACY = [pair for pair in itertools.product([None, True, False], repeat=2) if pair != (None, None)]


@pytest.mark.parametrize(("size_average", "reduce"), LEGACY, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_legacy_reduction_arguments_follow_torch(size_average, reduce, reduction):
    logits = _logits((6, 4), torch.float64)
    target = _target("ids", (6, 4), torch.float64, -100)
    arguments = (target, None, size_average, -100, reduce, reduction, 0.2)
    with pytest.warns(UserWarning, match="size_average"):
        expected = F.cross_entropy(logits, *arguments)
    with pytest.warns(UserWarning, match=r"`size_average` and `reduce` are deprecated") as record:
        loss = lt.cross_entropy(logits, *arguments)
    # The warning points at the caller's line, not into lsr.
    assert record[0].filename == __file__
    assert loss.shape == expected.shape
    assert_close(loss, expected, torch.float64)


def test_no_legacy_warning_without_legacy_arguments():
    logits, target = _logits((3, 4), torch.float64), torch.tensor([0, 1, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lt.cross_entropy(logits, target, reduction="sum")


def test_elementwise_mean_is_mean_with_a_warning_as_in_torch():
    logits, target = _logits((3, 4), torch.float64), torch.tensor([0, 1, 3])
    with pytest.warns(UserWarning, match="elementwise_mean"):
        expected = F.cross_entropy(logits, target, reduction="elementwise_mean")
    with pytest.warns(UserWarning, match="elementwise_mean"):
        loss = lt.cross_entropy(logits, target, reduction="elementwise_mean")
    assert_close(loss, expected, torch.float64)


# --- the documented difference, and errors --------------------------------------------------


@pytest.mark.parametrize(
    ("logits", "target"),
    [
        (torch.zeros(3, 4), torch.full((3,), -100)),
        (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)),
    ],
    ids=["all ignored", "empty batch"],
)
def test_mean_over_no_counted_position_is_zero_where_torch_gives_nan(logits, target):
    leaf = logits.clone().requires_grad_()
    assert torch.isnan(F.cross_entropy(logits, target))  # the difference is real
    loss = lt.cross_entropy(leaf, target, label_smoothing=0.1)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(leaf.grad) == 0


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"label_smoothing": 1.5}, ValueError, r"`label_smoothing` must be in \[0, 1\]"),
        ({"reduction": "average"}, ValueError, r"Received: reduction='average'"),
        ({"ignore_index": 255, "dense": True}, ValueError, r"Received: ignore_index=255"),
    ],
)
def test_errors_name_pytorchs_parameters(arguments, error, match):
    arguments = dict(arguments)
    target = torch.full((2, 3), 1 / 3) if arguments.pop("dense", False) else torch.tensor([0, 1])
    with pytest.raises(error, match=match):
        lt.cross_entropy(torch.zeros(2, 3), target, **arguments)


# --- SmoothCrossEntropyLoss -----------------------------------------------------------------


def test_module_forward_is_the_drop_in(monkeypatch):
    """The module computes through lsr.torch.cross_entropy (so it rounds a half-precision
    loss to the input's dtype as nn.CrossEntropyLoss does, unlike smooth_ce)."""
    import lsr.torch._modules as modules

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return lt.cross_entropy(*args, **kwargs)

    monkeypatch.setattr(modules, "cross_entropy", spy)
    criterion = lt.SmoothCrossEntropyLoss(label_smoothing=0.1, prior="others")
    logits = _logits((4, 3), torch.float16)
    loss = criterion(logits, torch.tensor([0, 1, 2, 0]))
    assert len(calls) == 1
    assert calls[0]["label_smoothing"] == 0.1 and calls[0]["prior"] == "others"
    assert loss.dtype == nn.CrossEntropyLoss()(logits, torch.tensor([0, 1, 2, 0])).dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_called_positionally_matches_cross_entropy_loss(reduction):
    weight = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    arguments = (weight, None, 2, None, reduction, 0.25)
    ours, theirs = lt.SmoothCrossEntropyLoss(*arguments), nn.CrossEntropyLoss(*arguments)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    logits = _logits((3, 5, 4), torch.float64)
    target = _target("ids, ignore class 2", (3, 5, 4), torch.float64, 2)
    loss, grad = _value_and_grad(lambda z: ours(z, target), logits)
    expected_loss, expected_grad = _value_and_grad(lambda z: theirs(z, target), logits)
    assert_close(loss, expected_loss, torch.float64)
    assert_close(grad, expected_grad, torch.float64)

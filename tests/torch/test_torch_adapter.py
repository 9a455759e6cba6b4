"""lsr.torch against PyTorch's own losses: values, gradients, autograd and transforms.

Expected values come from ``F.cross_entropy`` / ``nn.CrossEntropyLoss`` (where the
conventions overlap), from the float64 reference in tests/reference.py, or from a plain
re-implementation of the segmentation snippet that builds its one-hot target.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lsr.torch as lt
from lsr.torch import _autograd as autograd
from lsr.torch import _functional as functional
from lsr.torch import _namespace as namespace
from lsr.torch._autograd import BLOCK_ELEMENTS, row_blocks
from tests import reference
from tests.backends import assert_close
from tests.torch.memory import peak_allocated_bytes

DTYPES = [torch.float32, torch.float64]
REDUCTIONS = ["mean", "sum", "none"]
# dynamo warns when it traces array-api-compat's lru_cache'd type probes (harmless), and
# torch 2.13's dynamo itself instantiates every autograd.Function it traces, which torch
# deprecates (any autograd.Function under torch.compile warns, not only lsr's).
DYNAMO_CACHE_WARNING = "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning"
DYNAMO_FUNCTION_WARNING = "ignore:.*should not be instantiated:DeprecationWarning"
# Inductor and forward-mode AD script helpers with torch.jit, which torch 2.13 deprecates.
TORCH_JIT_WARNING = "ignore:`torch.jit.script:DeprecationWarning"


def _logits(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)


def _class_ids(shape, num_classes, seed=1, ignore_index=None, ignored_fraction=0.25):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, shape, generator=generator)
    if ignore_index is not None:
        ignored = torch.rand(shape, generator=generator) < ignored_fraction
        labels = torch.where(ignored, ignore_index, labels)
    return labels


def _probabilities(shape, dtype, seed=2, axis=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=generator, dtype=torch.float64), axis).to(
        dtype
    )


def _value_and_grad(loss_fn, logits):
    logits = logits.detach().clone().requires_grad_()
    loss = loss_fn(logits)
    # A fixed, non-uniform cotangent also checks the "none" gradient position by position.
    cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad(loss, logits, cotangent)
    return loss.detach(), grad


def _assert_matches(ours, theirs, logits, dtype):
    loss, grad = _value_and_grad(ours, logits)
    expected_loss, expected_grad = _value_and_grad(theirs, logits)
    assert loss.dtype == expected_loss.dtype and loss.shape == expected_loss.shape
    assert grad.dtype == logits.dtype
    assert_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)


# --- equality with F.cross_entropy ------------------------------------------------------

SHAPES = {
    "(N, C)": ((7, 5), (7,)),
    "(N, C, H, W)": ((2, 4, 3, 5), (2, 3, 5)),
    "(C,) unbatched": ((6,), ()),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_class_ids_match_f_cross_entropy(dtype, reduction, weighted, shape):
    logits_shape, label_shape = SHAPES[shape]
    num_classes = logits_shape[0] if len(logits_shape) == 1 else logits_shape[1]
    logits = _logits(logits_shape, dtype)
    # The unbatched case keeps its one target (an ignored one is its own test below).
    ignore = -100 if label_shape else None
    target = _class_ids(label_shape, num_classes, ignore_index=ignore)
    weight = torch.linspace(0.3, 2.0, num_classes, dtype=dtype) if weighted else None
    options = dict(weight=weight, reduction=reduction)
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=0.2, **options),
        lambda z: F.cross_entropy(z, target, label_smoothing=0.2, **options),
        logits,
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_custom_ignore_index_matches_f_cross_entropy(dtype, reduction, weighted):
    logits = _logits((3, 5, 4, 4), dtype)
    target = _class_ids((3, 4, 4), 5, ignore_index=255, ignored_fraction=0.5)
    weight = torch.linspace(2.0, 0.5, 5, dtype=dtype) if weighted else None
    options = dict(weight=weight, reduction=reduction, ignore_index=255)
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=0.1, **options),
        lambda z: F.cross_entropy(z, target, label_smoothing=0.1, **options),
        logits,
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3, 2), (5,)], ids=str)
def test_probability_targets_match_f_cross_entropy(dtype, reduction, weighted, shape):
    logits = _logits(shape, dtype)
    axis = 0 if len(shape) == 1 else 1
    target = _probabilities(shape, dtype, axis=axis)
    weight = torch.linspace(0.3, 2.0, shape[axis], dtype=dtype) if weighted else None
    options = dict(weight=weight, reduction=reduction)
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=0.3, **options),
        lambda z: F.cross_entropy(z, target, label_smoothing=0.3, **options),
        logits,
        dtype,
    )


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4),
    num_classes=st.integers(2, 7),
    spatial=st.lists(st.integers(1, 3), max_size=2),
    smoothing=st.floats(0.0, 1.0),
    reduction=st.sampled_from(REDUCTIONS),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_f_cross_entropy(
    batch, num_classes, spatial, smoothing, reduction, weighted, seed
):
    logits = _logits((batch, num_classes, *spatial), torch.float64, seed=seed)
    target = _class_ids((batch, *spatial), num_classes, seed=seed + 1, ignore_index=-100)
    # torch's "mean" is NaN when every target is ignored (tested separately).
    target.view(-1)[0] = 0
    weight = torch.linspace(0.5, 1.5, num_classes, dtype=torch.float64) if weighted else None
    options = dict(weight=weight, reduction=reduction)
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=smoothing, **options),
        lambda z: F.cross_entropy(z, target, label_smoothing=smoothing, **options),
        logits,
        torch.float64,
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_all_ignored_mean_is_zero_where_torch_gives_nan(weighted):
    logits = _logits((4, 3), torch.float64).requires_grad_()
    target = torch.full((4,), -100)
    weight = torch.ones(3, dtype=torch.float64) if weighted else None
    torch_loss = F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
    assert torch.isnan(torch_loss)
    loss = lt.smooth_ce(logits, target, weight=weight, smoothing=0.1)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_smoothing_zero_is_plain_cross_entropy():
    logits = _logits((5, 4), torch.float64)
    target = _class_ids((5,), 4)
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=0.0),
        lambda z: F.cross_entropy(z, target),
        logits,
        torch.float64,
    )


@pytest.mark.parametrize("scalar", [np.float32(0.2), np.float64(0.2)], ids=["f32", "f64"])
def test_a_numpy_scalar_smoothing_is_a_number_as_in_pytorch(scalar):
    """``F.cross_entropy(label_smoothing=np.float32(0.2))`` runs, so every smoothing of
    lsr.torch takes a NumPy scalar as the number it holds (it once raised that the
    arguments mix NumPy and PyTorch); a NumPy array is still refused."""

    def close(actual, wanted):
        assert_close(actual.detach(), wanted.detach(), torch.float64)

    logits = _logits((5, 4), torch.float64)
    target = _class_ids((5,), 4)
    expected = F.cross_entropy(logits, target, label_smoothing=float(scalar))
    close(F.cross_entropy(logits, target, label_smoothing=scalar), expected)
    for loss in (
        lt.smooth_ce(logits, target, smoothing=scalar),
        lt.cross_entropy(logits, target, label_smoothing=scalar),
        lt.SmoothCrossEntropyLoss(label_smoothing=scalar)(logits, target),
    ):
        close(loss, expected)
    soft = torch.rand(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    binary = lt.smooth_bce(logits, soft, smoothing=float(scalar))
    for loss in (
        lt.smooth_bce(logits, soft, smoothing=scalar),
        lt.binary_cross_entropy_with_logits(logits, soft, label_smoothing=scalar),
        lt.SmoothBCEWithLogitsLoss(label_smoothing=scalar)(logits, soft),
    ):
        close(loss, binary)
    with pytest.raises(TypeError, match="Received: smoothing="):
        lt.smooth_ce(logits, target, smoothing=np.array([0.2] * 5))


@pytest.mark.parametrize("prior", ["others", "vector"])
@pytest.mark.parametrize("options", [{}, {"kl": True}, {"z_loss": 1e-2}], ids=str)
def test_priors_kl_and_z_loss_match_the_reference(prior, options):
    """What torch lacks, against the float64 reference (class axis 1, K-dim input)."""
    num_classes = 5
    logits = _logits((2, num_classes, 3), torch.float64)
    target = _class_ids((2, 3), num_classes, ignore_index=-100)
    prior_vector = np.linspace(1.0, 3.0, num_classes) / np.linspace(1.0, 3.0, num_classes).sum()
    weight = np.linspace(0.5, 1.5, num_classes)
    loss = lt.smooth_ce(
        logits,
        target,
        smoothing=0.2,
        prior=torch.from_numpy(prior_vector) if prior == "vector" else prior,
        weight=torch.from_numpy(weight),
        **options,
    )
    expected = reference.smooth_ce(
        logits.numpy(),
        target.numpy(),
        smoothing=0.2,
        prior=prior_vector if prior == "vector" else prior,
        axis=1,
        ignore_index=-100,
        weight=weight,
        **options,
    )
    assert_close(loss, expected, torch.float64)


# --- autograd -------------------------------------------------------------------------

GRADCHECK_CASES = {
    "uniform": dict(smoothing=0.2),
    "weighted mean": dict(smoothing=0.2, weight=torch.tensor([0.5, 2.0, 1.0, 1.5])),
    "others, sum": dict(smoothing=0.3, prior="others", reduction="sum"),
    "vector prior, none": dict(
        smoothing=0.3,
        prior=torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64),
        reduction="none",
    ),
    "kl and z_loss": dict(smoothing=0.1, kl=True, z_loss=0.05),
}


def _gradcheck_options(name):
    return {
        key: value.double() if isinstance(value, torch.Tensor) else value
        for key, value in GRADCHECK_CASES[name].items()
    }


@pytest.mark.parametrize("case", GRADCHECK_CASES)
@pytest.mark.parametrize("dense", [False, True], ids=["class ids", "probabilities"])
def test_gradcheck_and_gradgradcheck(case, dense):
    logits = _logits((3, 4, 2), torch.float64).requires_grad_()
    if dense:
        target = _probabilities((3, 4, 2), torch.float64)
    else:
        target = _class_ids((3, 2), 4, ignore_index=-100)
    options = _gradcheck_options(case)

    def loss_fn(z):
        return lt.smooth_ce(z, target, **options)

    assert torch.autograd.gradcheck(loss_fn, (logits,))
    # Double backward is supported: the backward is made of differentiable torch ops.
    assert torch.autograd.gradgradcheck(loss_fn, (logits,))


def test_double_backward_matches_torch():
    logits = _logits((4, 5), torch.float64)
    target = _class_ids((4,), 5, ignore_index=-100)
    target[0] = 2
    direction = _logits((4, 5), torch.float64, seed=7)

    def hessian_vector_product(loss_fn):
        z = logits.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss_fn(z), z, create_graph=True)
        (hvp,) = torch.autograd.grad(grad, z, direction)
        return hvp

    assert_close(
        hessian_vector_product(lambda z: lt.smooth_ce(z, target, smoothing=0.2)),
        hessian_vector_product(lambda z: F.cross_entropy(z, target, label_smoothing=0.2)),
        torch.float64,
    )


def test_backward_keeps_only_the_logits_at_full_size():
    """The custom Function saves the logits and per-position values, nothing of N x C.

    (The eager fast path also keeps the gradient it computed in the forward pass until
    backward, as an attribute of the graph node: see ``test_fast_path_allocates_...``.)
    """
    logits = _logits((64, 50), torch.float32).requires_grad_()
    target = _class_ids((64,), 50, ignore_index=-100)
    weight = torch.rand(50)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        lt.smooth_ce(logits, target, weight=weight, smoothing=0.1)
    full_size = [tensor for tensor in saved if tensor.numel() >= logits.numel()]
    assert len(full_size) == 1 and full_size[0].data_ptr() == logits.data_ptr()
    assert sum(tensor.numel() for tensor in saved) <= logits.numel() + 3 * 64 + 50 + 1
    # The check can fail: F.cross_entropy keeps its log-softmax, a second N x C tensor.
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(logits, target, weight=weight, label_smoothing=0.1)
    assert any(
        tensor.numel() >= logits.numel() and tensor.data_ptr() != logits.data_ptr()
        for tensor in saved
    )


# --- the eager fast path: forward and gradient in one pass over blocks of rows --------


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of at most 7 logits: several blocks, and a ragged last one, on test sizes."""
    monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", 7)


BLOCKED_CASES = {
    "(N, C) class ids": ((9, 5), "ids"),
    "(N, C, H, W) class ids": ((5, 4, 3, 2), "ids"),
    "(N, C) probabilities": ((9, 5), "probabilities"),
    "(N, C, H, W) probabilities": ((5, 4, 3, 2), "probabilities"),
}


def test_row_blocks_hold_a_block_of_logits_and_rows_an_l2_cache():
    """Logits up to ``BLOCK_ELEMENTS`` are one block; over it, 2-D logits are cut into
    blocks of at most ``ROW_BLOCK_ELEMENTS`` (2 MiB of float32), other layouts into
    blocks of at most ``BLOCK_ELEMENTS`` (whole rows of the batch axis, at least one)."""
    block, row_block = autograd.BLOCK_ELEMENTS, autograd.ROW_BLOCK_ELEMENTS
    assert (block, row_block) == (1 << 20, 1 << 19)

    def shape_blocks(shape, axis=1):
        # (Expanded views: the sizes without the memory.)
        logits = torch.zeros((1,) * len(shape)).expand(shape)
        blocks = row_blocks(logits, axis)
        if blocks == [...]:
            return [shape[0]]
        return [len(range(shape[0])[index]) for index in blocks]

    assert shape_blocks((1024, 1024)) == [1024]  # exactly one block
    assert shape_blocks((1025, 1024)) == [512, 512, 1]
    assert shape_blocks((4096, 1000)) == [524] * 7 + [428]
    assert shape_blocks((8, 21, 128, 128)) == [3, 3, 2]
    assert shape_blocks((2, 21, 512, 512)) == [1, 1]  # (an image over a block)
    assert shape_blocks((4096, 1000), axis=0) == [4096]  # no batch axis to cut


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", BLOCKED_CASES, ids=list(BLOCKED_CASES))
def test_blocked_fast_path_matches_f_cross_entropy(dtype, reduction, weighted, case):
    shape, kind = BLOCKED_CASES[case]
    logits = _logits(shape, dtype)
    assert len(row_blocks(logits, 1)) > 2  # The fast path really runs in blocks here.
    positions = (shape[0], *shape[2:])
    if kind == "ids":
        target = _class_ids(positions, shape[1], ignore_index=255)
    else:
        target = _probabilities(shape, dtype)
    weight = torch.linspace(0.5, 2.0, shape[1], dtype=dtype) if weighted else None
    options = {"weight": weight, "reduction": reduction}
    if kind == "ids":
        options["ignore_index"] = 255
    _assert_matches(
        lambda z: lt.smooth_ce(z, target, smoothing=0.2, **options),
        lambda z: F.cross_entropy(z, target, label_smoothing=0.2, **options),
        logits,
        dtype,
    )


@pytest.mark.usefixtures("small_blocks")
def test_blocked_fast_path_in_bfloat16_is_float32_accurate():
    logits = _logits((9, 6), torch.float32).bfloat16()
    target = _class_ids((9,), 6, ignore_index=-100)
    leaf = logits.detach().requires_grad_()
    loss = lt.smooth_ce(leaf, target, smoothing=0.1)
    loss.backward()
    float_leaf = logits.detach().float().requires_grad_()
    expected = F.cross_entropy(float_leaf, target, label_smoothing=0.1)
    expected.backward()
    assert loss.dtype == torch.float32 and leaf.grad.dtype == torch.bfloat16
    assert_close(loss.detach(), expected.detach(), torch.float32)
    assert_close(leaf.grad.float(), float_leaf.grad.bfloat16().float(), torch.bfloat16)


@pytest.mark.parametrize("exp2", [True, False], ids=["exp2", "exp"])
@pytest.mark.parametrize("small", [True, False], ids=["small", "blocked"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_probabilities_are_accurate_far_below_the_top_class(
    dtype, small, exp2, monkeypatch
):
    """The eager CPU paths compute exp(x) of more than 32,768 values (here 16 x 4096)
    as exp2(x * log2 e) on CPUs without AVX-512 (and as exp with it), of x = z - max z
    (the blocked pass) or x = log p (``SmoothCESmall``). For classes up to 16
    below the top logit the gradient (softmax minus one-hot, smoothing 0) stays within
    2 (|log p| + 1) * 2**-23 of the float64 value, relative: the rounding of x and of the
    product (each |x| * 2**-24 at most, |x| <= |log p|), that of the row's log-sum in x,
    and the exponential's own (a unit or so, which depends on the CPU's vector kernel),
    as for any softmax taken through the log domain (PyTorch's own backward of
    ``log_softmax`` included). (Measured for the exp2 form, in units of (|log p| + 1) *
    2**-23: with AVX-512 1.06 at most for small inputs, 0.47 for the blocked pass; with
    AVX2 only (torch 2.13's other CPU kernels) 1.30 and 0.44, F.cross_entropy's own
    0.90.) Which kernel runs is tested in test_torch_small.py; here the rule is set."""
    monkeypatch.setattr(autograd, "SMALL_ELEMENTS", 1 << 16 if small else 0)
    monkeypatch.setattr(namespace, "_ONE_OP_EXP", 1 << 15 if exp2 else sys.maxsize)
    generator = torch.Generator().manual_seed(4)
    num_classes = 4096
    offsets = torch.linspace(-16.0, 0.0, num_classes, dtype=torch.float64)
    # (16 rows: more values than the namespace's exp takes in one operation.)
    logits = torch.stack(
        [offsets[torch.randperm(num_classes, generator=generator)] + 40.0 * r for r in range(16)]
    )
    target = torch.randint(0, num_classes, (16,), generator=generator)
    leaf = logits.to(dtype).requires_grad_()
    loss = lt.smooth_ce(leaf, target, smoothing=0.0, reduction="sum")
    (grad,) = torch.autograd.grad(loss, leaf)
    probabilities = torch.softmax(leaf.detach().double(), dim=1)
    off_target = torch.ones_like(probabilities, dtype=torch.bool)
    off_target[torch.arange(16), target] = False
    relative = (grad.double() - probabilities).abs() / probabilities
    unit = {torch.float32: 2.0**-23, torch.float64: 2.0**-52}[dtype]
    bound = 2.0 * unit * (probabilities.log().abs() + 1.0)
    assert (relative[off_target] < bound[off_target]).all()
    assert (leaf.numel() <= autograd.SMALL_ELEMENTS) == small  # (the path meant)
    assert (leaf.numel() > namespace._ONE_OP_EXP) == exp2  # (and the exp form meant)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_second_backward_through_a_retained_graph_is_bitwise_equal(reduction):
    logits = _logits((9, 5), torch.float32).requires_grad_()
    target = _class_ids((9,), 5)
    loss = lt.smooth_ce(logits, target, reduction=reduction).sum()
    (first,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (second,) = torch.autograd.grad(loss, logits)
    assert torch.equal(first, second)
    # And a doubled cotangent doubles the precomputed gradient exactly.
    loss = lt.smooth_ce(logits, target, reduction=reduction).sum()
    (doubled,) = torch.autograd.grad(2.0 * loss, logits)
    assert torch.equal(doubled, 2.0 * first)


def test_no_gradient_is_computed_without_grad_mode():
    logits = _logits((16, 5), torch.float32)
    target = _class_ids((16,), 5)
    with torch.no_grad():
        no_grad = lt.smooth_ce(logits.requires_grad_(), target)
    plain = lt.smooth_ce(logits.detach(), target)
    expected = F.cross_entropy(logits.detach(), target, label_smoothing=0.1)
    assert no_grad.grad_fn is None and plain.grad_fn is None
    assert_close(no_grad, expected, torch.float32)
    assert_close(plain, expected, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("options", "non_finite_ignored"),
    [({}, False), ({"z_loss": 1e-4}, False), ({}, True)],
    ids=["log-softmax-form", "blocked-pass", "log-softmax-form-falling-back"],
)
def test_fast_path_allocates_one_logits_sized_buffer_where_torch_allocates_three(
    dtype, options, non_finite_ignored
):
    """Forward + backward with respect to the logits: lsr's peak extra memory is the
    gradient (plus, for half precision, one float32 block of scratch, and a few
    per-position arrays), F.cross_entropy's is about three logits. Over twelve blocks
    of rows (``ROW_BLOCK_ELEMENTS`` each), on both eager paths: the log-softmax form
    block by block, and the blocked pass (a z-loss reads more of a row than the
    log-softmax); and where the form's
    gradient is not finite (an ignored row holding NaN) and the call takes the blocked
    pass after it, which must not hold two gradients at once."""
    logits = _logits((2048, 3000), dtype)
    target = _class_ids((2048,), 3000, ignore_index=-100)
    target[5] = -100
    if non_finite_ignored:
        logits[5, 3] = math.nan
    logits_bytes = logits.numel() * logits.element_size()
    block_bytes = min(BLOCK_ELEMENTS, autograd.ROW_BLOCK_ELEMENTS) * 4
    assert logits.numel() > 5 * BLOCK_ELEMENTS

    def step(loss_fn):
        def run():
            leaf = logits.detach().requires_grad_()
            torch.autograd.grad(loss_fn(leaf, target), leaf)

        return run

    ours = peak_allocated_bytes(step(lambda z, y: lt.smooth_ce(z, y, smoothing=0.1, **options)))
    theirs = peak_allocated_bytes(step(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1)))
    scratch_blocks = 0 if dtype == torch.float32 else 1
    assert logits_bytes <= ours <= logits_bytes + (scratch_blocks + 0.25) * block_bytes
    assert theirs >= 2.5 * logits_bytes  # The comparison can fail: torch's own is larger.


def test_every_call_allocates_its_own_gradient():
    """No buffer outlives a call: the second step allocates a new logits-sized gradient
    even though the first one's was dropped (memory the caller may still reach through
    its storage is never written again; see tests/test_torch_edges.py)."""
    logits = _logits((512, 3000), torch.float32)
    target = _class_ids((512,), 3000)
    logits_bytes = logits.numel() * logits.element_size()
    expected_leaf = logits.detach().requires_grad_()
    expected_loss = F.cross_entropy(expected_leaf, target, label_smoothing=0.1)
    (expected,) = torch.autograd.grad(expected_loss, expected_leaf)

    def step():
        leaf = logits.detach().requires_grad_()
        (grad,) = torch.autograd.grad(lt.smooth_ce(leaf, target, smoothing=0.1), leaf)
        assert_close(grad, expected, torch.float32)

    assert peak_allocated_bytes(step) >= logits_bytes
    assert peak_allocated_bytes(step) >= logits_bytes


@pytest.mark.usefixtures("small_blocks")
def test_a_gradient_still_held_is_never_written_over():
    """Whoever holds a gradient (autograd.grad's result, a leaf's .grad, a graph not yet
    differentiated) keeps it: the next call writes elsewhere."""
    first_logits = _logits((9, 5), torch.float32, seed=2).requires_grad_()
    second_logits = _logits((9, 5), torch.float32, seed=3).requires_grad_()
    target = _class_ids((9,), 5)

    def expected_grad(logits):
        leaf = logits.detach().requires_grad_()
        return torch.autograd.grad(F.cross_entropy(leaf, target, label_smoothing=0.1), leaf)[0]

    # autograd.grad's result, kept by the caller.
    (held,) = torch.autograd.grad(lt.smooth_ce(first_logits, target), first_logits)
    (other,) = torch.autograd.grad(lt.smooth_ce(second_logits, target), second_logits)
    assert held.data_ptr() != other.data_ptr()
    assert_close(held, expected_grad(first_logits), torch.float32)
    assert_close(other, expected_grad(second_logits), torch.float32)
    # A leaf's accumulated .grad.
    lt.smooth_ce(first_logits, target).backward()
    lt.smooth_ce(second_logits, target).backward()
    assert_close(first_logits.grad, expected_grad(first_logits), torch.float32)
    assert_close(second_logits.grad, expected_grad(second_logits), torch.float32)
    # Two losses in one graph, differentiated together.
    total = lt.smooth_ce(first_logits, target) + lt.smooth_ce(second_logits, target)
    grads = torch.autograd.grad(total, (first_logits, second_logits))
    assert_close(grads[0], expected_grad(first_logits), torch.float32)
    assert_close(grads[1], expected_grad(second_logits), torch.float32)


def test_gradients_are_right_across_threads():
    """Threads computing losses at once never share a gradient."""
    import concurrent.futures

    cases = [(_logits((64, 50), torch.float32, seed=seed), seed) for seed in range(8)]
    target = _class_ids((64,), 50)

    def grads(logits, function, repeats=20):
        results = []
        for _ in range(repeats):
            leaf = logits.detach().requires_grad_()
            results.append(torch.autograd.grad(function(leaf, target), leaf)[0])
        return results

    def ours(logits, _):
        return grads(logits, lambda z, y: lt.smooth_ce(z, y, smoothing=0.1))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        computed = list(pool.map(lambda case: ours(*case), cases))
    for (logits, _), results in zip(cases, computed, strict=True):
        (expected,) = grads(logits, lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1), 1)
        for result in results:
            assert_close(result, expected, torch.float32)


def test_gradients_for_weight_and_probability_targets():
    """Gradients other than the logits' go through autograd of the core."""
    logits = _logits((5, 4), torch.float64).requires_grad_()
    target = _probabilities((5, 4), torch.float64).requires_grad_()
    weight = torch.linspace(0.5, 2.0, 4, dtype=torch.float64).requires_grad_()
    loss = lt.smooth_ce(logits, target, weight=weight, smoothing=0.2)
    expected = F.cross_entropy(logits, target, weight=weight, label_smoothing=0.2)
    grads = torch.autograd.grad(loss, (logits, target, weight))
    expected_grads = torch.autograd.grad(expected, (logits, target, weight))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, torch.float64)
    assert torch.autograd.gradcheck(
        lambda w: lt.smooth_ce(logits.detach(), target.detach(), weight=w), (weight,)
    )


# --- transforms: torch.func, torch.compile, autocast ------------------------------------


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
def test_torch_func_grad_vmap_and_hessian():
    logits = _logits((3, 6, 5), torch.float64)
    target = _class_ids((3, 6), 5, ignore_index=-100)
    target[:, 0] = 1
    weight = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)

    def ours(z, y):
        return lt.smooth_ce(z, y, weight=weight, smoothing=0.2)

    def theirs(z, y):
        return F.cross_entropy(z, y, weight=weight, label_smoothing=0.2)

    # torch cannot vmap its own weighted loss with ignored targets: loop for the reference.
    for transform in (
        lambda f: f,
        torch.func.grad,
        torch.func.hessian,
        torch.func.jacfwd,
    ):
        expected = torch.stack(
            [transform(theirs)(z, y) for z, y in zip(logits, target, strict=True)]
        )
        assert_close(torch.func.vmap(transform(ours))(logits, target), expected, torch.float64)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
@pytest.mark.parametrize(
    "transform", [torch.func.jacfwd, torch.func.grad], ids=lambda transform: transform.__name__
)
def test_derivative_with_respect_to_smoothing(transform):
    """The loss is linear in eps: its derivative is CE(eps=1) - CE(eps=0), from torch."""
    logits = _logits((4, 5, 2), torch.float64)
    target = _class_ids((4, 2), 5, ignore_index=-100)
    target[0, 0] = 3
    uniform = torch.full((5,), 0.2, dtype=torch.float64)

    def loss_of(smoothing):
        return lt.smooth_ce(logits, target, smoothing=smoothing, prior=uniform)

    expected = F.cross_entropy(logits, target, label_smoothing=1.0) - F.cross_entropy(
        logits, target
    )
    derivative = transform(loss_of)(torch.tensor(0.3, dtype=torch.float64))
    assert_close(derivative, expected, torch.float64)


def test_out_of_range_target_under_vmap_gives_nan():
    """Values cannot be checked under torch.func; a bad id must not give a plausible loss."""
    logits = _logits((2, 3, 4), torch.float64)
    target = torch.tensor([[0, 1, 2], [0, 9, 2]])
    loss = torch.func.vmap(lambda z, y: lt.smooth_ce(z, y, smoothing=0.1))(logits, target)
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    logits = _logits((6, 5, 3), torch.float32)
    target = _class_ids((6, 3), 5, ignore_index=-100)
    weight = torch.linspace(0.5, 1.5, 5)

    def loss_fn(z, y, w):
        return lt.smooth_ce(z, y, weight=w, smoothing=0.1)

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    _assert_matches(
        lambda z: compiled(z, target, weight),
        lambda z: F.cross_entropy(z, target, weight=weight, label_smoothing=0.1),
        logits,
        torch.float32,
    )
    # Out-of-range ids cannot raise inside the graph; they make the loss NaN instead.
    bad = target.clone()
    bad[0, 0] = 7
    assert torch.isnan(compiled(logits, bad, weight))


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
def test_a_smoothing_tensor_varies_under_dynamic_fullgraph_compile():
    """docs/torch.md's way to change epsilon between calls of a compiled function: a
    0-d tensor argument, under ``dynamic=True``, gives F.cross_entropy's values."""
    torch._dynamo.reset()
    logits = _logits((6, 5), torch.float32)
    target = _class_ids((6,), 5)
    compiled = torch.compile(
        lambda z, y, eps: lt.smooth_ce(z, y, smoothing=eps),
        fullgraph=True,
        dynamic=True,
        backend="aot_eager",
    )
    for eps in (0.1, 0.3):
        _assert_matches(
            lambda z, eps=eps: compiled(z, target, torch.tensor(eps)),
            lambda z, eps=eps: F.cross_entropy(z, target, label_smoothing=eps),
            logits,
            torch.float32,
        )


def _changed_module_smoothing(z, y, eps):
    criterion = lt.SmoothCrossEntropyLoss()
    criterion.label_smoothing = eps  # (a float attribute, changed after construction)
    return criterion(z, y)


def _teacher(z):
    """A teacher's logits for distillation: fixed, of the student's shape."""
    return torch.linspace(-1.0, 1.0, z.numel()).reshape(z.shape)


def _z_loss_reference(z, y, eps):
    """Eager lsr: F.cross_entropy has no z-loss (the term itself is tested elsewhere)."""
    return lt.smooth_ce(z, y, smoothing=eps, z_loss=eps / 10)


def _cross_entropy(z, y, eps):
    return F.cross_entropy(z, y, label_smoothing=eps)


# name: (the call, compiled with a float argument eps; its reference, eager)
_FLOAT_SMOOTHING_CALLS = {
    "smooth_ce": (lambda z, y, eps: lt.smooth_ce(z, y, smoothing=eps), _cross_entropy),
    "smooth_ce z_loss": (
        lambda z, y, eps: lt.smooth_ce(z, y, smoothing=eps, z_loss=eps / 10),
        _z_loss_reference,
    ),
    "cross_entropy": (
        lambda z, y, eps: lt.cross_entropy(z, y, label_smoothing=eps),
        _cross_entropy,
    ),
    "SmoothCrossEntropyLoss": (_changed_module_smoothing, _cross_entropy),
    # A temperature, the distillation loss's float (eps + 1: 1.1, 1.3 and 1.0).
    "distill_loss": (
        lambda z, y, eps: lt.distill_loss(z, _teacher(z), temperature=eps + 1.0),
        lambda z, y, eps: lt.distill_loss(z, _teacher(z), temperature=eps + 1.0),
    ),
    # smooth_ce's default smoothing, 0.1 (eps unused): a keyword's default is an
    # argument that dynamic=True makes symbolic too.
    "smooth_ce default": (lambda z, y, eps: lt.smooth_ce(z, y), _cross_entropy),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("dynamic", [None, True], ids=["dynamic=None", "dynamic=True"])
@pytest.mark.parametrize("name", list(_FLOAT_SMOOTHING_CALLS))
def test_a_float_smoothing_compiles_under_fullgraph_whether_or_not_dynamic(name, dynamic):
    """``torch.compile`` makes a float argument symbolic (every float, the keywords'
    defaults included, under ``dynamic=True``; a float given a second value otherwise),
    where dynamo cannot trace the checks' reading of it ("Unsupported hasattr call"
    under ``fullgraph=True``). The adapter reads such floats as constants: each value
    compiles, and gives the reference's values."""
    torch._dynamo.reset()
    logits = _logits((6, 5), torch.float32)
    target = _class_ids((6,), 5)
    call, reference = _FLOAT_SMOOTHING_CALLS[name]
    compiled = torch.compile(call, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for eps in (0.1,) if name.endswith("default") else (0.1, 0.3, 0.0):
        _assert_matches(
            lambda z, eps=eps: compiled(z, target, eps),
            lambda z, eps=eps: reference(z, target, eps),
            logits,
            torch.float32,
        )


# The modules whose Python torch.compile ran (and guarded) before lsr::smooth_ce: the
# checks, the core, the array namespaces and the autograd Functions.
_UNGUARDED_MODULES = ("lsr_dot__checks", "lsr_dot__core", "lsr_dot__compat", "array_api_compat")
_UNGUARDED_MODULES += ("lsr_dot_torch_dot__autograd", "lsr_dot_torch_dot__namespace")

# name: a call of each entry point that funnels into smooth_ce's route under compile.
_COMPILED_ENTRIES = {
    "smooth_ce": lambda z, y: lt.smooth_ce(z, y, smoothing=0.1),
    "smooth_ce weight ignore_index": lambda z, y: lt.smooth_ce(
        z, y, weight=torch.linspace(0.5, 1.5, 5), ignore_index=2, smoothing=0.2
    ),
    "smooth_ce terms": lambda z, y: lt.smooth_ce(
        z, y, z_loss=0.01, softcap=5.0, confidence_penalty=0.1, reduction="none"
    ),
    "cross_entropy": lambda z, y: lt.cross_entropy(z, y, label_smoothing=0.1),
    "SmoothCrossEntropyLoss": lambda z, y: lt.SmoothCrossEntropyLoss(label_smoothing=0.1)(z, y),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("name", list(_COMPILED_ENTRIES))
def test_torch_compile_guards_none_of_the_checks_or_the_core(name):
    """Under torch.compile the checks and the core run inside ``lsr::smooth_ce``'s
    decomposition, which dynamo does not trace: the compiled code tests no guard on
    their Python (it tested over 300 when it traced them), and gives the eager values."""
    torch._dynamo.reset()
    call = _COMPILED_ENTRIES[name]
    logits = _logits((6, 5), torch.float32).requires_grad_(True)
    target = _class_ids((6,), 5)
    explained = torch._dynamo.explain(call)(logits, target)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    guarded = [g.name for g in explained.out_guards if any(m in g.name for m in _UNGUARDED_MODULES)]
    assert guarded == []
    assert len(explained.out_guards) < 100  # (341 when dynamo traced the checks and core)
    operators = [node.target for graph in explained.graphs for node in graph.graph.nodes]
    assert torch.ops.lsr.smooth_ce.default in operators or torch.ops.lsr.smooth_ce in operators
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    _assert_matches(
        lambda z: compiled(z, target), lambda z: call(z, target), logits.detach(), torch.float32
    )


def test_the_compiled_operator_takes_every_option():
    """``lsr::smooth_ce``'s schema names every parameter of ``smooth_ce`` but the two the
    compiled route leaves to the full path (``return_aux``, ``causal_shift``), in the
    order ``_smooth_ce`` passes them: a new option that the operator did not take would
    be dropped from every compiled call."""
    import inspect

    schema = [argument.name for argument in torch.ops.lsr.smooth_ce.default._schema.arguments]
    private = list(inspect.signature(functional._smooth_ce).parameters)
    public = set(inspect.signature(lt.smooth_ce).parameters)
    assert schema == [
        name for name in private if name not in ("return_aux", "causal_shift", "loss_dtype")
    ]
    assert public == set(schema) | {"return_aux", "causal_shift"}
    route = list(inspect.signature(functional.is_plain_compiled_call).parameters)
    assert route == [name for name in private if name != "loss_dtype"]
    # (The dispatcher passes the schema's arguments by position.)
    assert list(inspect.signature(functional._traced_smooth_ce).parameters) == schema


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ignore_index": 1},
        {"weight": torch.linspace(0.5, 1.5, 5), "ignore_index": 1},
        {"kl": True, "prior": "others"},
    ],
    ids=["plain", "ignore_index", "weight ignore_index", "kl others"],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_compile_dynamic_shapes_give_eager_values(reduction, options):
    """Under ``dynamic=True`` ``lsr::smooth_ce``'s decomposition sees symbolic sizes: the
    mean's count, the number of classes and the terms made of it (``eps / C``, the KL
    entropy), which the core must take as numbers, not arrays. Two batch sizes through
    one compiled function give the eager values."""
    torch._dynamo.reset()

    def call(z, y):
        return lt.smooth_ce(z, y, reduction=reduction, **options)

    compiled = torch.compile(call, fullgraph=True, dynamic=True, backend="aot_eager")
    for size in (6, 9):
        target = _class_ids((size,), 5, seed=size)
        _assert_matches(
            lambda z, y=target: compiled(z, y),
            lambda z, y=target: call(z, y),
            _logits((size, 5), torch.float32),
            torch.float32,
        )


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
def test_torch_compile_an_ignore_index_beyond_int64_is_traced():
    """An int the schema's int64 cannot hold is no argument of ``lsr::smooth_ce``: the
    call is traced through the full path, and gives the eager value (no id matches)."""
    torch._dynamo.reset()

    def call(z, y):
        return lt.smooth_ce(z, y, ignore_index=2**70)

    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    target = _class_ids((6,), 5)
    _assert_matches(
        lambda z: compiled(z, target),
        lambda z: call(z, target),
        _logits((6, 5), torch.float32),
        torch.float32,
    )


# (torch.export's own pytree code warns on torch 2.13.)
@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
def test_torch_export_keeps_the_operator_and_decomposes_it():
    """``torch.export`` records ``lsr::smooth_ce``; ``run_decompositions()`` expands it
    into aten operations; both programs give the eager loss."""

    class Loss(nn.Module):
        def forward(self, z, y):
            return lt.smooth_ce(z, y, smoothing=0.1)

    logits, target = _logits((6, 5), torch.float32), _class_ids((6,), 5)
    expected = lt.smooth_ce(logits, target, smoothing=0.1)
    program = torch.export.export(Loss(), (logits, target))
    targets = [str(node.target) for node in program.graph.nodes]
    assert "lsr.smooth_ce.default" in targets
    decomposed = program.run_decompositions()
    assert not [t for t in map(str, (n.target for n in decomposed.graph.nodes)) if "lsr" in t]
    for exported in (program, decomposed):
        assert_close(exported.module()(logits, target), expected, torch.float32)


_REFUSED_UNDER_COMPILE = {
    "reduction": (dict(reduction="bad"), (6,), "Received: reduction='bad'"),
    "smoothing": (dict(smoothing=1.5), (6,), "Received: smoothing=1.5"),
    "labels' shape": (dict(), (5,), "Received: labels=<array shape=(5,)"),
    "axis": (dict(axis=3), (6,), "Received: axis=3"),
}


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
@pytest.mark.parametrize("fullgraph", [False, True], ids=["graph breaks", "fullgraph"])
@pytest.mark.parametrize("case", list(_REFUSED_UNDER_COMPILE))
def test_torch_compile_refuses_bad_arguments_with_lsrs_error(case, fullgraph):
    """An argument the checks refuse inside ``lsr::smooth_ce`` is a graph break: where
    graph breaks are allowed the call runs eagerly and raises lsr's own ValueError; with
    ``fullgraph=True`` the compile fails with lsr's message (as when dynamo traced the
    checks), never with a value."""
    options, label_shape, message = _REFUSED_UNDER_COMPILE[case]
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda z, y: lt.smooth_ce(z, y, **options), fullgraph=fullgraph, backend="aot_eager"
    )
    logits, target = _logits((6, 5), torch.float32), _class_ids(label_shape, 5)
    with pytest.raises(Exception, match=re.escape(message)) as raised:
        compiled(logits, target)
    if not fullgraph:
        assert raised.type is ValueError


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING)
def test_torch_compile_eager_backend_checks_the_ids():
    """Out of a compiled graph (``backend="eager"`` runs dynamo's graph eagerly)
    ``lsr::smooth_ce`` is the eager path, which reads the ids: an id out of range raises
    instead of giving a loss."""
    torch._dynamo.reset()
    compiled = torch.compile(lambda z, y: lt.smooth_ce(z, y), backend="eager")
    target = _class_ids((6,), 5)
    target[0] = 7
    with pytest.raises(ValueError, match="class ids"):
        compiled(_logits((6, 5), torch.float32), target)


@pytest.mark.filterwarnings(DYNAMO_CACHE_WARNING, DYNAMO_FUNCTION_WARNING, TORCH_JIT_WARNING)
def test_module_under_torch_compile_inductor():
    torch._dynamo.reset()
    criterion = lt.SmoothCrossEntropyLoss(label_smoothing=0.1, ignore_index=255)
    compiled = torch.compile(criterion, fullgraph=True)
    logits = _logits((2, 4, 3, 3), torch.float32)
    target = _class_ids((2, 3, 3), 4, ignore_index=255)
    _assert_matches(
        lambda z: compiled(z, target),
        lambda z: F.cross_entropy(z, target, ignore_index=255, label_smoothing=0.1),
        logits,
        torch.float32,
    )


@pytest.mark.parametrize("dense", [False, True], ids=["class ids", "probabilities"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bfloat16_autocast_is_float32_accurate(dense, weighted):
    torch.manual_seed(0)
    layer = nn.Linear(8, 10)
    features = torch.randn(32, 8)
    target = _probabilities((32, 10), torch.float32) if dense else _class_ids((32,), 10)
    # Class weights take the core through a contraction, which autocast would run in
    # bfloat16; float32 weights next to bfloat16 logits are what autocast code has.
    weight = torch.linspace(0.5, 1.5, 10) / 3 if weighted else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = 10.0 * layer(features)
        loss = lt.smooth_ce(logits, target, weight=weight, smoothing=0.8)
        assert logits.dtype == torch.bfloat16
        assert loss.dtype == torch.float32
        loss.backward()  # inside the autocast region, as training loops often do
    assert layer.weight.grad.dtype == torch.float32
    # The same bfloat16 logits, computed by torch in float32.
    float_logits = logits.detach().float().requires_grad_()
    expected = F.cross_entropy(float_logits, target, weight=weight, label_smoothing=0.8)
    assert_close(loss.detach(), expected.detach(), torch.float32)
    # The logits' gradient keeps their dtype and is torch's float32 one, rounded.
    logits_leaf = logits.detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lt.smooth_ce(logits_leaf, target, weight=weight, smoothing=0.8).backward()
    expected.backward()
    assert logits_leaf.grad.dtype == torch.bfloat16
    assert_close(logits_leaf.grad.float(), float_logits.grad.bfloat16().float(), torch.bfloat16)


def test_half_precision_loss_is_float32():
    logits = _logits((4, 3), torch.float16)
    target = _class_ids((4,), 3)
    loss = lt.smooth_ce(logits, target, smoothing=0.1)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(logits.float(), target, label_smoothing=0.1)
    assert_close(loss, expected, torch.float32)


# --- SmoothCrossEntropyLoss ---------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_module_is_a_drop_in_for_cross_entropy_loss(reduction, weighted):
    weight = torch.linspace(0.5, 1.5, 4) if weighted else None
    arguments = dict(weight=weight, ignore_index=3, reduction=reduction, label_smoothing=0.15)
    ours = lt.SmoothCrossEntropyLoss(**arguments)
    theirs = nn.CrossEntropyLoss(**arguments)
    assert isinstance(ours, nn.CrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours, theirs = ours.double(), theirs.double()  # the weight is a buffer and follows
    assert (ours.weight is None) == (not weighted)
    if weighted:
        assert ours.weight.dtype == torch.float64
    logits = _logits((2, 4, 5), torch.float64)
    target = _class_ids((2, 5), 4)
    _assert_matches(lambda z: ours(z, target), lambda z: theirs(z, target), logits, torch.float64)


def test_module_defaults_match_cross_entropy_loss():
    logits = _logits((6, 3), torch.float64)
    target = _class_ids((6,), 3, ignore_index=-100)
    target[0] = 0
    _assert_matches(
        lambda z: lt.SmoothCrossEntropyLoss()(z, target),
        lambda z: nn.CrossEntropyLoss()(z, target),
        logits,
        torch.float64,
    )


def test_module_legacy_reduction_arguments_follow_torch():
    with pytest.warns(UserWarning, match="size_average and reduce"):
        ours = lt.SmoothCrossEntropyLoss(reduce=False)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        theirs = nn.CrossEntropyLoss(reduce=False)
    assert ours.reduction == theirs.reduction == "none"


def test_module_prior_others_equals_rescaled_uniform():
    """ "others" with eps is "uniform" with eps * K / (K - 1): the true class gets 1 - eps."""
    num_classes = 5
    logits = _logits((4, num_classes), torch.float64)
    target = _class_ids((4,), num_classes)
    others = lt.SmoothCrossEntropyLoss(label_smoothing=0.2, prior="others")
    uniform = lt.SmoothCrossEntropyLoss(label_smoothing=0.2 * num_classes / (num_classes - 1))
    _assert_matches(
        lambda z: others(z, target), lambda z: uniform(z, target), logits, torch.float64
    )
    assert "prior='others'" in repr(others)


def test_module_prior_tensor_is_a_buffer():
    prior = torch.tensor([0.5, 0.25, 0.25])
    criterion = lt.SmoothCrossEntropyLoss(label_smoothing=0.3, prior=prior).double()
    assert "prior" in criterion.state_dict() and criterion.prior.dtype == torch.float64
    logits = _logits((4, 3), torch.float64)
    target = _class_ids((4,), 3)
    expected = reference.smooth_ce(
        logits.numpy(), target.numpy(), smoothing=0.3, prior=prior.double().numpy()
    )
    assert_close(criterion(logits, target), expected, torch.float64)


# --- LabelSmoothSoftmaxCE -----------------------------------------------------------------


def snippet_loss(logits, label, lb_pos, lb_neg, reduction, lb_ignore):
    """The segmentation snippet written plainly: dense lb_pos/lb_neg targets, then sum."""
    log_probabilities = torch.log_softmax(logits, dim=1)
    ignored = label == lb_ignore
    safe_label = torch.where(ignored, 0, label)
    one_hot = torch.zeros_like(logits).scatter_(1, safe_label.unsqueeze(1), 1.0)
    targets = lb_pos * one_hot + lb_neg * (1.0 - one_hot)
    targets = targets * (~ignored).unsqueeze(1).to(logits.dtype)
    loss = -torch.sum(log_probabilities * targets, dim=1)
    if reduction == "mean":
        return loss.sum() / (~ignored).sum()
    if reduction == "sum":
        return loss.sum()
    return loss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("lb_pos", "lb_neg"), [(0.9, 0.005), (0.8, 0.05), (1.0, 0.0), (0.3, 0.3), (0.7, 0.1)]
)
def test_label_smooth_softmax_ce_matches_the_snippet(dtype, reduction, lb_pos, lb_neg):
    logits = _logits((2, 6, 4, 5), dtype)
    label = _class_ids((2, 4, 5), 6, ignore_index=255)
    criterion = lt.LabelSmoothSoftmaxCE(
        lb_pos=lb_pos, lb_neg=lb_neg, reduction=reduction, lb_ignore=255
    )
    _assert_matches(
        lambda z: criterion(z, label),
        lambda z: snippet_loss(z, label, lb_pos, lb_neg, reduction, 255),
        logits,
        dtype,
    )


def test_label_smooth_softmax_ce_defaults_and_all_ignored():
    criterion = lt.LabelSmoothSoftmaxCE()
    assert (criterion.lb_pos, criterion.lb_neg, criterion.reduction, criterion.lb_ignore) == (
        0.9,
        0.005,
        "mean",
        255,
    )
    logits = _logits((1, 19, 2, 2), torch.float64).requires_grad_()
    label = torch.full((1, 2, 2), 255)
    assert torch.isnan(snippet_loss(logits, label, 0.9, 0.005, "mean", 255))
    loss = criterion(logits, label)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (dict(lb_pos=0.1, lb_neg=0.2), ValueError, r"lb_neg.*Received: lb_neg=0.2"),
        (dict(lb_pos=0.0, lb_neg=0.0), ValueError, r"Received: lb_pos=0.0"),
        (dict(lb_neg=-0.1), ValueError, r"Received: lb_neg=-0.1"),
        (dict(reduction="avg"), ValueError, r"Received: reduction='avg'"),
        (dict(lb_pos="0.9"), TypeError, r"Received: lb_pos='0.9'"),
    ],
)
def test_label_smooth_softmax_ce_rejects_bad_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        lt.LabelSmoothSoftmaxCE(**arguments)


# --- bad input ----------------------------------------------------------------------------


def test_out_of_range_target_raises_a_clear_error():
    logits = _logits((3, 4), torch.float32)
    with pytest.raises(ValueError, match=r"class ids .* \[0, 4\) or ignore_index=-100"):
        lt.smooth_ce(logits, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"Received: labels with min=-1, max=-1"):
        lt.smooth_ce(logits, torch.tensor([0, -1, -100]))
    # Torch's own error for the same input is an opaque index error.
    with pytest.raises((IndexError, RuntimeError)):
        F.cross_entropy(logits, torch.tensor([0, 4, 1]))


@pytest.mark.parametrize(
    ("target", "weight", "match"),
    [
        (torch.tensor([0, 1]), torch.ones(3, dtype=torch.float64), r"Received: weight.dtype"),
        (torch.full((2, 3), 1 / 3, dtype=torch.float64), None, r"Received: target.dtype"),
        (torch.full((2, 3), 1 / 3, dtype=torch.bfloat16), None, r"Received: target.dtype"),
        (torch.tensor([0, 1]), torch.ones(3, dtype=torch.int64), r"floating dtype"),
        ([0, 1], None, r"torch.Tensor. Received: target=\[0, 1\]"),
    ],
    ids=["weight float64", "target float64", "target bfloat16", "weight int", "target list"],
)
def test_mismatched_dtypes_raise_type_error(target, weight, match):
    logits = _logits((2, 3), torch.float32)
    with pytest.raises(TypeError, match=match):
        lt.smooth_ce(logits, target, weight=weight)


def test_half_input_accepts_float32_targets_and_weight():
    """As under autocast: half-precision logits with float32 data and buffers."""
    logits = _logits((2, 3), torch.bfloat16)
    target = _probabilities((2, 3), torch.float32)
    loss = lt.smooth_ce(logits, target, weight=torch.ones(3), smoothing=0.1)
    expected = F.cross_entropy(logits.float(), target, label_smoothing=0.1)
    assert_close(loss, expected, torch.float32)


@pytest.mark.parametrize("name", ["target", "weight", "prior"])
def test_mismatched_devices_raise_value_error(name):
    logits = _logits((2, 3), torch.float32)
    arguments = dict(target=torch.tensor([0, 1]), weight=None, prior="uniform")
    meta = {
        "target": torch.tensor([0, 1], device="meta"),
        "weight": torch.ones(3, device="meta"),
        "prior": torch.full((3,), 1 / 3, device="meta"),
    }
    arguments[name] = meta[name]
    target = arguments.pop("target")
    with pytest.raises(ValueError, match=rf"input's device \(cpu\)\. Received: {name}.device=meta"):
        lt.smooth_ce(logits, target, **arguments)


def test_ignore_index_with_probability_targets_is_rejected_like_torch():
    logits = _logits((2, 3), torch.float32)
    target = _probabilities((2, 3), torch.float32)
    with pytest.raises(RuntimeError, match="ignore_index"):
        F.cross_entropy(logits, target, ignore_index=1)
    with pytest.raises(ValueError, match=r"Received: ignore_index=1"):
        lt.smooth_ce(logits, target, ignore_index=1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (dict(smoothing=1.5), ValueError, r"Received: smoothing=1.5"),
        (dict(reduction="avg"), ValueError, r"Received: reduction='avg'"),
        (dict(prior="others2"), ValueError, r"Received: prior='others2'"),
        (dict(axis=3), ValueError, r"Received: axis=3"),
    ],
)
def test_core_errors_reach_torch_users(options, error, match):
    with pytest.raises(error, match=match):
        lt.smooth_ce(_logits((2, 3), torch.float32), torch.tensor([0, 1]), **options)


def test_module_rejects_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"Received: label_smoothing=1.5"):
        lt.SmoothCrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"Received: prior='gaussian'"):
        lt.SmoothCrossEntropyLoss(prior="gaussian")


def test_the_eager_path_binds_no_signature_per_call(monkeypatch):
    """A Function with a separate ``setup_context`` has every ``apply`` bind its
    arguments through ``inspect.signature`` (tens of microseconds, as much as
    ``F.cross_entropy`` takes on a small batch): the eager fast path must not be one."""
    import inspect

    calls = []
    signature = inspect.signature

    def counting(*args, **kwargs):
        calls.append(args)
        return signature(*args, **kwargs)

    logits = torch.randn(8, 5, requires_grad=True)
    target = torch.randint(0, 5, (8,))
    lt.smooth_ce(logits, target).backward()  # (first call: imports, caches)
    monkeypatch.setattr(inspect, "signature", counting)
    lt.smooth_ce(logits, target).backward()
    assert calls == []
    # The check can fail: the Functions for torch.func do bind their arguments.
    autograd.SmoothCE.apply(logits, target, None, 0.1, "uniform", _static_spec())
    assert calls


def _static_spec():
    from lsr._checks import check_smooth_ce

    _, _, spec = check_smooth_ce(
        torch.zeros(8, 5),
        torch.zeros(8, dtype=torch.int64),
        smoothing=0.1,
        prior="uniform",
        axis=1,
        ignore_index=None,
        weight=None,
        reduction="mean",
    )
    return spec.static()


def test_torch_func_over_a_closed_over_input_takes_the_transform_path():
    """Under ``torch.func.vmap`` over the targets only, the logits are no wrapped tensor,
    yet functorch is active: the call must take the Function that supports transforms."""
    logits = torch.randn(4, 5)
    targets = torch.randint(0, 5, (3, 4))
    batched = torch.func.vmap(lambda t: lt.smooth_ce(logits, t))(targets)
    one_by_one = torch.stack([lt.smooth_ce(logits, t) for t in targets])
    torch.testing.assert_close(batched, one_by_one)


@pytest.mark.parametrize("into", [False, True], ids=["new", "out"])
@pytest.mark.parametrize(
    "shape,axis,layout",
    [
        ((37, 1000), 1, "rows"),
        ((37, 1000), 1, "transposed"),
        ((3, 21, 9, 7), 1, "rows"),
        ((3, 21, 9, 7), 1, "channels_last"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_log_softmax_converts_once_and_is_torchs_float32_result(
    dtype, shape, axis, layout, into, monkeypatch
):
    """The namespace's log-softmax of half-precision logits in float32 converts them
    into its result (``out``, or one new contiguous array) and works there in place: no
    other array is made, whatever the logits' layout, and the values are those of
    ``torch.log_softmax`` of the converted logits, bit for bit (a row with -inf, one
    with +inf and one with NaN included)."""
    logits = _logits(shape, torch.float32).to(dtype)
    if layout == "transposed":
        logits = logits.T.contiguous().T
    elif layout == "channels_last":
        logits = logits.contiguous(memory_format=torch.channels_last)
    rows = torch.movedim(logits, axis, -1)  # (a view: a row per position)
    rows[(0,) * (rows.ndim - 1)][0] = float("-inf")
    rows[(1,) * (rows.ndim - 1)][2] = float("inf")
    rows[(2,) * (rows.ndim - 1)][4] = float("nan")
    expected = torch.log_softmax(logits.float(), axis)
    out = torch.full(shape, 7.0) if into else None
    kernel, calls = torch.log_softmax, []

    def spy(x, dim, *args, **kwargs):
        calls.append((x.dtype, kwargs.get("out") is x))
        return kernel(x, dim, *args, **kwargs)

    monkeypatch.setattr(torch, "log_softmax", spy)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        result = namespace.xp.log_softmax(logits, axis=axis, dtype=torch.float32, out=out)
    monkeypatch.undo()
    # (The arrays ATen's operations make, but a structured kernel's own result: with
    # ``out``, none at all.)
    made = [e.name for e in profile.events() if e.name in ("aten::empty", "aten::empty_strided")]
    assert calls == [(torch.float32, True)]  # one log-softmax, in place, of float32
    assert torch.equal(result.nan_to_num(nan=9.0), expected.nan_to_num(nan=9.0))
    assert torch.equal(result.isnan(), expected.isnan())
    if into:
        assert result.data_ptr() == out.data_ptr()
    assert len(made) == (0 if into else 1), made
    assert result.is_contiguous()


def test_half_log_softmax_under_autograd_is_differentiable():
    """Where autograd records the log-softmax (a logit that requires a gradient), the
    namespace does not write in place: the result has PyTorch's derivative."""
    leaf = _logits((5, 40), torch.float32).bfloat16().requires_grad_()  # (not narrow)
    result = namespace.xp.log_softmax(leaf, axis=1, dtype=torch.float32)
    (grad,) = torch.autograd.grad(result[:, 2].sum(), leaf)
    twin = leaf.detach().requires_grad_()
    (expected,) = torch.autograd.grad(
        torch.log_softmax(twin, 1, dtype=torch.float32)[:, 2].sum(), twin
    )
    assert torch.equal(grad, expected)

"""lsr.torch.linear_smooth_ce against F.cross_entropy(F.linear(...)): values, gradients,
layouts, and the memory it exists for."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import lsr.torch as lt
from tests.backends import assert_close
from tests.torch.memory import allocation_sizes, peak_allocated_bytes


def _inputs(shape=(13, 6), num_classes=9, dtype=torch.float64, dense=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(shape, generator=generator, dtype=dtype)
    weight = torch.randn(num_classes, shape[-1], generator=generator, dtype=dtype)
    bias = torch.randn(num_classes, generator=generator, dtype=dtype)
    if dense:
        target = torch.softmax(torch.randn((*shape[:-1], num_classes), generator=generator), -1)
        target = target.to(dtype)
    else:
        target = torch.randint(0, num_classes, shape[:-1], generator=generator)
        target.view(-1)[::4] = -100
    return hidden, weight, bias, target


def _grads(loss_fn, hidden, weight, bias, cotangent):
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
    loss = loss_fn(*leaves)
    grads = torch.autograd.grad((loss * cotangent).sum(), leaves)
    return loss.detach(), grads


@pytest.mark.parametrize("chunk_size", [1, 4, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dense", [False, True], ids=["class ids", "probabilities"])
@pytest.mark.parametrize("shape", [(13, 6), (3, 5, 6)], ids=["(N, d)", "(B, T, d)"])
def test_matches_f_cross_entropy_of_f_linear(chunk_size, reduction, dense, shape):
    hidden, weight, bias, target = _inputs(shape, dense=dense)
    class_weight = torch.linspace(0.5, 1.5, 9, dtype=torch.float64)
    cotangent = torch.rand(shape[:-1], dtype=torch.float64) if reduction == "none" else 1.7

    def ours(h, w, b):
        return lt.linear_smooth_ce(
            h,
            w,
            target,
            bias=b,
            weight=class_weight,
            reduction=reduction,
            smoothing=0.2,
            chunk_size=chunk_size,
        )

    def theirs(h, w, b):
        logits = F.linear(h, w, b)
        if logits.ndim == 3:  # F.cross_entropy wants the classes on axis 1.
            logits = logits.movedim(-1, 1)
            target_ = target.movedim(-1, 1) if dense else target
        else:
            target_ = target
        return F.cross_entropy(
            logits, target_, weight=class_weight, reduction=reduction, label_smoothing=0.2
        )

    loss, grads = _grads(ours, hidden, weight, bias, cotangent)
    expected_loss, expected_grads = _grads(theirs, hidden, weight, bias, cotangent)
    assert loss.shape == expected_loss.shape
    assert_close(loss, expected_loss, torch.float64)
    for actual, expected in zip(grads, expected_grads, strict=True):
        assert actual.shape == expected.shape
        assert_close(actual, expected, torch.float64)
    assert grads[1].is_contiguous()  # In nn.Linear's own (C, d) layout.


def test_without_bias_and_with_prior_others():
    hidden, weight, _, target = _inputs()
    leaves = [t.clone().requires_grad_() for t in (hidden, weight)]
    ours = lt.linear_smooth_ce(*leaves, target, prior="others", chunk_size=5)
    theirs = lt.smooth_ce(F.linear(hidden, weight), target, prior="others")
    assert_close(ours.detach(), theirs, torch.float64)
    ours.backward()
    assert leaves[0].grad is not None and leaves[1].grad is not None


def test_module_parameters_receive_gradients_in_bfloat16():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 50).bfloat16()
    hidden = torch.randn(32, 8).bfloat16().requires_grad_()
    target = torch.randint(0, 50, (32,))
    loss = lt.linear_smooth_ce(hidden, layer.weight, target, bias=layer.bias, chunk_size=7)
    assert loss.dtype == torch.float32
    loss.backward()
    assert layer.weight.grad.dtype == torch.bfloat16 and hidden.grad.dtype == torch.bfloat16
    expected = F.cross_entropy(layer(hidden).float(), target, label_smoothing=0.1)
    assert_close(loss.detach(), expected.detach(), torch.bfloat16)


def test_second_derivatives_and_second_backward_raise_clear_errors():
    hidden, weight, bias, target = _inputs()
    hidden.requires_grad_()
    loss = lt.linear_smooth_ce(hidden, weight, target, bias=bias)
    (grad,) = torch.autograd.grad(loss, hidden, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        torch.autograd.grad(grad.sum(), hidden)
    loss = lt.linear_smooth_ce(hidden, weight, target, bias=bias)
    torch.autograd.grad(loss, hidden, retain_graph=True)
    with pytest.raises(RuntimeError, match="already handed to a first backward"):
        torch.autograd.grad(loss, hidden)


def test_no_gradient_work_without_grad_mode():
    hidden, weight, bias, target = _inputs()
    with torch.no_grad():
        loss = lt.linear_smooth_ce(hidden.requires_grad_(), weight, target, bias=bias)
    assert loss.grad_fn is None
    expected = F.cross_entropy(F.linear(hidden, weight, bias), target, label_smoothing=0.1)
    assert_close(loss, expected.detach(), torch.float64)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"projection": torch.zeros(9, 5, dtype=torch.float64)}, ValueError, r"\(K, d\)"),
        ({"projection": torch.zeros(9, 6)}, TypeError, "must have the hidden states' dtype"),
        ({"projection": torch.zeros(9, 5, dtype=torch.float64)}, ValueError, "projection"),
        ({"chunk_size": -3}, ValueError, "`chunk_size` must be a positive integer"),
        ({"target": torch.full((13,), 9)}, ValueError, r"integers in \[0, 9\)"),
        ({"hidden": [[1.0]]}, TypeError, "`input` must be a torch.Tensor"),
    ],
)
def test_bad_arguments_raise_before_computing(change, error, match):
    hidden, weight, _, target = _inputs()
    arguments = {"hidden": hidden, "projection": weight, "target": target, **change}
    chunk_size = arguments.pop("chunk_size", None)
    with pytest.raises(error, match=match):
        lt.linear_smooth_ce(
            arguments["hidden"],
            arguments["projection"],
            arguments["target"],
            chunk_size=chunk_size,
        )


def test_peak_memory_stays_flat_as_rows_grow():
    """Four times the rows: the plain path's peak grows by about three N x C buffers,
    the fused path's only by the N x d gradient of the hidden states."""
    width, num_classes, chunk = 16, 4000, 64
    peaks = {}

    def fused(hidden, weight, bias, target):
        leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]
        loss = lt.linear_smooth_ce(*leaves[:2], target, bias=leaves[2], chunk_size=chunk)
        torch.autograd.grad(loss, leaves)

    def plain(hidden, weight, bias, target):
        leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]
        loss = F.cross_entropy(F.linear(*leaves), target, label_smoothing=0.1)
        torch.autograd.grad(loss, leaves)

    for rows in (256, 1024):
        inputs = _inputs((rows, width), num_classes, torch.float32)
        peaks[rows] = tuple(
            peak_allocated_bytes(functools.partial(step, *inputs)) for step in (fused, plain)
        )
    logits_growth = (1024 - 256) * num_classes * 4
    fused_growth = peaks[1024][0] - peaks[256][0]
    plain_growth = peaks[1024][1] - peaks[256][1]
    assert fused_growth <= 2 * (1024 - 256) * width * 4 + 4096
    assert plain_growth >= 2 * logits_growth  # The check can fail: the plain path grows.


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kept", [1.0, 0.3])
def test_peak_memory_is_at_the_floor(reduction, dtype, kept):
    """Forward and backward hold, beyond the inputs, the gradients of the hidden states,
    the projection and the bias, one block's logits (in the compute dtype, float32, and
    for half precision also their matmul result) and one block of rows: nothing that
    grows with N x C. Rows are not a multiple of the block, some are ignored."""
    rows, width, num_classes, chunk = 1003, 64, 4000, 128
    hidden, weight, bias, target = _inputs((rows, width), num_classes, dtype, seed=2)
    generator = torch.Generator().manual_seed(3)
    target[torch.rand(rows, generator=generator) > kept] = -100

    def step():
        leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]
        loss = lt.linear_smooth_ce(
            leaves[0], leaves[1], target, bias=leaves[2], chunk_size=chunk, reduction=reduction
        )
        torch.autograd.grad(loss.sum(), leaves)

    size = dtype.itemsize
    gradients = (rows * width + num_classes * width + num_classes) * size
    block_logits = chunk * num_classes * (4 + (size if size < 4 else 0))
    block_rows = 2 * chunk * width * size  # gathered rows and their gradient
    vectors = 16 * rows * 8  # per-row losses, scales, indices, masks (int64 at most)
    peak = peak_allocated_bytes(step)
    assert peak <= gradients + block_logits + block_rows + vectors
    # The check can fail: one more block of logits is over the bound.
    assert chunk * num_classes * 4 > block_rows + vectors


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_block_of_logits_is_allocated_per_call(dtype):
    """Every block's logits are made in one (rows, C) array of the call: a fresh one per
    block is mapped and its pages faulted in each time (about 5% of a large step)."""
    rows, width, num_classes, chunk = 1000, 16, 3000, 128  # 8 blocks, the last partial
    hidden, weight, bias, target = _inputs((rows, width), num_classes, dtype, seed=5)
    leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]

    def step():
        loss = lt.linear_smooth_ce(leaves[0], leaves[1], target, bias=leaves[2], chunk_size=chunk)
        torch.autograd.grad(loss, leaves)

    block_bytes = chunk * num_classes * dtype.itemsize
    sizes = allocation_sizes(step)
    assert sizes.count(block_bytes) == 1
    # The check can fail: nothing else of a block's size or larger but the gradients.
    gradients = {rows * width, num_classes * width}
    assert [s for s in sizes if s >= block_bytes and s // dtype.itemsize not in gradients] == [
        block_bytes
    ]


def _recorded_blocks(monkeypatch):
    """The (shape, strides) of every array ``matmul_into`` writes a block's logits into,
    and the set of their storages' addresses."""
    from lsr.torch import _namespace

    outs = []
    matmul_into = _namespace.xp.matmul_into

    def recording(out, x1, x2):
        outs.append((tuple(out.shape), out.stride(), out.untyped_storage().data_ptr()))
        return matmul_into(out, x1, x2)

    monkeypatch.setattr(_namespace.xp, "matmul_into", recording)
    return outs


def test_default_blocks_are_column_major_on_the_cpu(monkeypatch):
    """On the CPU the default blocks (several of them) are a multiple of 128 rows and
    written column-major, the last, partial block into a slice of the same array (MKL's
    products are faster so); values and gradients are F.cross_entropy(F.linear(...))'s
    all the same."""
    outs = _recorded_blocks(monkeypatch)
    # 2**24 // 65536 = 256 rows of 16 Mi logits; 600 rows: blocks of 256, 256 and 88.
    rows, width, num_classes = 600, 3, 1 << 16
    hidden, weight, bias, _ = _inputs((rows, width), num_classes, torch.float32, seed=7)
    target = torch.randint(0, num_classes, (rows,), generator=torch.Generator().manual_seed(1))

    def fused(h, w, b):
        return lt.linear_smooth_ce(h, w, target, bias=b)

    def plain(h, w, b):
        return F.cross_entropy(F.linear(h, w, b), target, label_smoothing=0.1)

    loss, grads = _grads(fused, hidden, weight, bias, 1.0)
    assert [(shape, stride) for shape, stride, _ in outs] == [
        ((256, num_classes), (1, 256)),
        ((256, num_classes), (1, 256)),
        ((88, num_classes), (1, 256)),
    ]
    assert len({pointer for _, _, pointer in outs}) == 1
    expected, expected_grads = _grads(plain, hidden, weight, bias, 1.0)
    assert_close(loss, expected, "float32")
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, "float32")


@pytest.mark.parametrize(
    "option",
    ["chunk_size", "weight", "prior", "return_aux", "probabilities", "one block"],
)
def test_other_blocks_stay_row_major(monkeypatch, option):
    """Where a column-major block would be slower (a pass that reads each row as a
    vector: class weights, a prior vector, an argmax for the auxiliary outputs, dense
    targets) or is not the default size with several blocks, the block is the plain
    row-major one."""
    outs = _recorded_blocks(monkeypatch)
    num_classes = 1 << 16  # 256 rows of 16 Mi logits
    rows = 200 if option == "one block" else 600  # (200 kept: fewer than a block)
    generator = torch.Generator().manual_seed(2)
    hidden, weight, bias, target = _inputs(
        (rows, 3), num_classes, torch.float32, dense=option == "probabilities", seed=3
    )
    if option == "one block":
        target = torch.randint(0, num_classes, (rows,), generator=generator)
    options = {
        "chunk_size": {"chunk_size": 256},  # a block size asked for is kept as it is
        "weight": {"weight": torch.rand(num_classes, generator=generator)},
        "prior": {"prior": torch.softmax(torch.randn(num_classes, generator=generator), 0)},
        "return_aux": {"return_aux": True},
    }.get(option, {})
    lt.linear_smooth_ce(hidden, weight, target, bias=bias, **options)
    assert outs and all(stride[1] == 1 for _, stride, _ in outs)


@pytest.mark.parametrize(
    ("rows", "expected"), [(524, 512), (333, 256), (130, 128), (128, 128), (127, None)]
)
def test_the_cpu_block_is_a_multiple_of_128_rows_or_none(rows, expected):
    from lsr.torch import _namespace

    block = _namespace.xp.matmul_out((rows, 5), dtype=torch.float64, device="cpu")
    if expected is None:
        assert block is None
    else:
        assert block.shape == (expected, 5) and block.stride() == (1, expected)
        assert block.dtype == torch.float64 and not block.any()
    # Elsewhere (here the meta device, standing for an accelerator): the caller's own.
    assert _namespace.xp.matmul_out((524, 5), dtype=torch.float32, device="meta") is None


def test_only_kept_rows_are_projected():
    """Ignored rows are skipped before the projection: the matrix products' work is in
    proportion to the kept rows (counted by PyTorch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    rows, width, num_classes = 200, 16, 300
    hidden, weight, bias, target = _inputs((rows, width), num_classes, torch.float32, seed=4)
    target = target.clamp(min=0)
    flops = {}
    for kept_every in (1, 4):
        labels = target.clone()
        labels[torch.arange(rows) % kept_every != 0] = -100
        leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]
        with FlopCounterMode(display=False) as counter:
            loss = lt.linear_smooth_ce(leaves[0], leaves[1], labels, bias=leaves[2], chunk_size=32)
            loss.backward()
        flops[kept_every] = counter.get_total_flops()
    assert flops[1] > 0 and flops[4] * 4 == flops[1]


def test_every_row_ignored_gives_zero_and_zero_gradients():
    hidden, weight, bias, target = _inputs((9, 6), 7, torch.float64)
    target[:] = -100
    leaves = [t.detach().requires_grad_() for t in (hidden, weight, bias)]
    loss = lt.linear_smooth_ce(leaves[0], leaves[1], target, bias=leaves[2], chunk_size=4)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.count_nonzero(leaf.grad) == 0 for leaf in leaves)


@pytest.mark.parametrize("name", ["smoothing", "weight", "prior"])
def test_an_option_that_requires_grad_is_refused(name):
    """The fused loss differentiates input, projection and bias only: an option tensor
    that requires grad would get no gradient (None) without a word."""
    hidden, projection = torch.randn(6, 8), torch.randn(4, 8, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    value = {
        "smoothing": torch.tensor(0.1),
        "weight": torch.ones(4),
        "prior": torch.full((4,), 0.25),
    }[name].requires_grad_()
    with pytest.raises(ValueError, match=f"does not differentiate `{name}`") as info:
        lt.linear_smooth_ce(hidden, projection, target, **{name: value})
    assert f"Received: {name}.requires_grad=True" in str(info.value)
    with torch.no_grad():  # (nothing is differentiated there)
        lt.linear_smooth_ce(hidden, projection, target, **{name: value})
    lt.linear_smooth_ce(hidden, projection, target, **{name: value.detach()}).backward()
    assert projection.grad is not None

"""Eager PyTorch's path for small inputs (``SmoothCESmall``: the core's
``log_softmax_loss_and_grad``) against the blocked pass on the same inputs, edges
included: the two must give the same values and gradients, NaN where the other has NaN."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

import lsr.torch as lt
from lsr.torch import _autograd as autograd
from lsr.torch import _functional as functional
from lsr.torch import _namespace as namespace
from tests.backends import assert_close
from tests.torch.compare import count_full_checks, off_the_route_calls, under

INF = math.inf
NAN = math.nan


def _edge_logits(dtype: torch.dtype) -> torch.Tensor:
    """Rows a caller can send: ordinary, masked classes (-inf), a row of all -inf, +inf,
    NaN, large magnitudes, and ties."""
    rows = [
        [0.5, -1.0, 2.0, 0.0, 1.0],
        [-INF, 3.0, -INF, 0.0, 1.0],
        [-INF, -INF, -INF, -INF, -INF],
        [INF, 0.0, 1.0, 2.0, 3.0],
        [NAN, 0.0, 1.0, 2.0, 3.0],
        [1e4, -1e4, 0.0, 3e3, 1e4],
        [2.0, 2.0, 2.0, 2.0, 2.0],
    ]
    return torch.tensor(rows, dtype=torch.float64).to(dtype)


def _loss_and_grad(logits, target, small, monkeypatch, **options):
    monkeypatch.setattr(autograd, "SMALL_ELEMENTS", 1 << 16 if small else 0)
    leaf = logits.detach().requires_grad_()
    loss = lt.smooth_ce(leaf, target, **options)
    path = type(loss.grad_fn).__name__
    cotangent = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad(loss, leaf, cotangent)
    return loss.detach(), grad, path


def _assert_same(small, blocked, dtype):
    assert torch.equal(small.isnan(), blocked.isnan())
    assert torch.equal(small.isinf(), blocked.isinf())
    finite = small.isfinite()
    assert_close(small[finite], blocked[finite], dtype)


def _assert_paths_agree(logits, target, dtype, monkeypatch, **options):
    """The small path and the blocked pass (each asserted to be the one taken) give the
    same loss and gradient, NaN and inf where the other has them; returns the small
    path's gradient."""
    small_loss, small_grad, small_path = _loss_and_grad(
        logits, target, True, monkeypatch, **options
    )
    loss, grad, path = _loss_and_grad(logits, target, False, monkeypatch, **options)
    assert (small_path, path) == ("SmoothCESmallBackward", "SmoothCEFusedBackward")
    _assert_same(small_loss, loss, dtype)
    _assert_same(small_grad.float(), grad.float(), dtype)
    return small_grad


# The options of the log-softmax form: smoothing at its ends, both named priors, KL.
EVERY_OPTION = pytest.mark.parametrize(
    "options",
    [
        {"smoothing": 0.1},
        {"smoothing": 0.0},
        {"smoothing": 1.0},
        {"smoothing": 0.3, "prior": "others"},
        {"smoothing": 0.2, "kl": True},
    ],
    ids=["eps0.1", "eps0", "eps1", "others", "kl"],
)

# One row at a time, and all rows together (the non-finite rows then make the reduced
# loss NaN or inf, and the whole call takes the blocked pass).
ROWS = [[i] for i in range(7)] + [list(range(7))]


@pytest.mark.parametrize("rows", ROWS, ids=lambda rows: "-".join(map(str, rows)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@EVERY_OPTION
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("block_elements", [None, 10], ids=["one-block", "blocks"])
def test_small_path_matches_the_blocked_pass_at_the_edges(
    rows, reduction, options, dtype, block_elements, monkeypatch
):
    """In one block of rows, or in blocks of two rows (all the rows together: the
    log-softmax form over blocks, ``blocked_log_softmax_loss_and_grad``)."""
    if block_elements is not None:
        monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", block_elements)
    logits = _edge_logits(dtype)[rows]
    target = torch.tensor([0, 1, 2, 3, 1, 0, 4])[rows]
    _assert_paths_agree(logits, target, dtype, monkeypatch, reduction=reduction, **options)


IGNORED = [[], [2], [3, 4], [0, 6], [2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize("ignored", IGNORED, ids=lambda rows: "-".join(map(str, rows)) or "none")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "options",
    [{"smoothing": 0.1}, {"smoothing": 0.3, "prior": "others"}, {"smoothing": 0.2, "kl": True}],
    ids=["eps0.1", "others", "kl"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block_elements", [None, 10], ids=["one-block", "blocks"])
def test_small_path_with_ignored_rows_matches_the_blocked_pass(
    ignored, reduction, options, dtype, block_elements, monkeypatch
):
    """With ``ignore_index`` the small path makes the gradient too: the edge rows, some
    ignored, give the blocked pass's loss and gradient, NaN where it has NaN. An ignored
    row of all -inf (2) gets a zero gradient there, not the log-softmax's ``0 * NaN``.
    (An ignored row holding +inf or NaN (3, 4) has a NaN gradient in both, as in
    ``F.cross_entropy``: its softmax is NaN. With a non-finite row kept, the loss is not
    finite and both calls take the blocked pass anyway.) In one block, or in blocks of
    two rows (the gradient then checked for non-finite values by its sum)."""
    if block_elements is not None:
        monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", block_elements)
    logits = _edge_logits(dtype)
    target = torch.tensor([0, 1, 2, 3, 1, 0, 4])
    target[ignored] = -100
    small_grad = _assert_paths_agree(
        logits, target, dtype, monkeypatch, reduction=reduction, **options
    )
    if 2 in ignored:
        assert not small_grad[2].any()


@pytest.mark.parametrize(
    "ignored", [[], [1], [0, 5, 6]], ids=lambda rows: "-".join(map(str, rows)) or "none"
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@EVERY_OPTION
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_log_softmax_form_over_blocks_matches_the_blocked_pass(
    ignored, reduction, options, dtype, monkeypatch
):
    """Finite logits in blocks of two rows: the log-softmax form over blocks gives the
    blocked pass's loss and gradient, the form itself (no fallback) for every option,
    reduction and dtype, with ignored rows in some blocks."""
    monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", 10)
    fallbacks = []
    blocked_pass = autograd._blocked_pass

    def spy(*args, **kwargs):
        fallbacks.append(args[0].shape)
        return blocked_pass(*args, **kwargs)

    monkeypatch.setattr(autograd, "_blocked_pass", spy)
    generator = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(7, 5, generator=generator, dtype=torch.float64)).to(dtype)
    target = torch.tensor([0, 1, 2, 3, 1, 0, 4])
    target[ignored] = -100
    assert len(autograd.row_blocks(logits, 1)) == 4
    _assert_paths_agree(logits, target, dtype, monkeypatch, reduction=reduction, **options)
    assert fallbacks == []


@pytest.mark.parametrize("block_elements", [None, 10])
@pytest.mark.parametrize("ignored", [[], [2], [3, 4], [0, 6], [0, 1, 2, 3, 4, 5, 6]])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_alone_with_ignored_rows_matches_the_blocked_pass(
    ignored, reduction, dtype, block_elements, monkeypatch
):
    """Without a gradient the loss takes the log-softmax path (``log_softmax_loss``),
    ``ignore_index`` included, in one block or in blocks of two rows: the edge rows,
    some of them ignored (the non-finite ones among them, or every row), give the blocked
    pass's loss (the one a call that also makes the gradient takes)."""
    logits = _edge_logits(dtype)
    target = torch.tensor([0, 1, 2, 3, 1, 0, 4])
    target[ignored] = -100
    _count_full_checks(monkeypatch)  # (no known options: the full path's call, once)
    calls = []

    def spy(*args):
        calls.append(len(autograd.row_blocks(args[0], 1)))
        return autograd.log_softmax_loss(*args)

    monkeypatch.setattr(functional, "log_softmax_loss", spy)
    if block_elements is not None:
        monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", block_elements)
    with torch.no_grad():
        alone = lt.smooth_ce(logits, target, smoothing=0.1, reduction=reduction)
    assert calls == [1 if block_elements is None else 4]
    leaf = logits.detach().requires_grad_()
    with_grad = lt.smooth_ce(leaf, target, smoothing=0.1, reduction=reduction)
    assert type(with_grad.grad_fn).__name__ in ("SmoothCEFusedBackward", "SmoothCESmallBackward")
    _assert_same(alone, with_grad.detach(), dtype)


@pytest.mark.parametrize("block_elements", [None, 40])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("classes", [5, 21])
def test_loss_alone_with_finite_ignored_rows_matches_pytorch(
    classes, reduction, block_elements, monkeypatch
):
    """The loss alone with ignored rows (finite logits: no fallback to hide a wrong
    total), in one block or several, against ``F.cross_entropy`` in float64; and a call
    that keeps nothing gives +0, as a sum over nothing does."""
    if block_elements is not None:
        monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(classes)
    logits = 3 * torch.randn(2, classes, 6, 4, generator=generator)
    target = torch.randint(0, classes, (2, 6, 4), generator=generator)
    target[torch.rand(2, 6, 4, generator=generator) < 0.3] = -100
    with torch.no_grad():
        loss = lt.smooth_ce(logits, target, smoothing=0.2, reduction=reduction)
        nothing = lt.smooth_ce(
            logits, torch.full_like(target, -100), smoothing=0.2, reduction=reduction
        )
    expected = F.cross_entropy(logits.double(), target, label_smoothing=0.2, reduction=reduction)
    assert_close(loss, expected.float(), torch.float32)
    assert torch.equal(torch.signbit(nothing), torch.zeros_like(nothing, dtype=torch.bool))
    assert not nothing.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(256, 10), (64, 1000), (1, 2), (3, 2)])
def test_small_path_matches_pytorch(shape, dtype):
    """Against ``F.cross_entropy(label_smoothing=)`` of the float32 logits."""
    generator = torch.Generator().manual_seed(sum(shape))
    logits = (3 * torch.randn(shape, generator=generator)).to(dtype)
    target = torch.randint(0, shape[1], shape[:1], generator=generator)
    leaf = logits.detach().requires_grad_()
    loss = lt.smooth_ce(leaf, target, smoothing=0.1)
    assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
    loss.backward()
    reference = logits.detach().float().requires_grad_()
    expected = F.cross_entropy(reference, target, label_smoothing=0.1)
    expected.backward()
    assert loss.dtype == torch.float32 and leaf.grad.dtype == dtype
    assert_close(loss.detach(), expected.detach(), torch.float32)
    assert_close(leaf.grad.float(), reference.grad.to(dtype).float(), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["rows", "transposed", "segmentation", "channels_last"])
def test_log_softmax_path_over_blocks_matches_pytorch(layout, dtype, monkeypatch):
    """Over one block of logits the log-softmax form runs block by block of rows, the
    gradient written into one buffer (through a float32 block of scratch for bfloat16):
    ``F.cross_entropy(label_smoothing=)``'s loss and gradient of the float32 logits, with
    targets ignored in two blocks, in every layout of the logits."""
    generator = torch.Generator().manual_seed(7)
    shape = (9, 6) if layout in ("rows", "transposed") else (5, 6, 3, 2)
    logits = (3 * torch.randn(shape, generator=generator)).to(dtype)
    if layout == "transposed":
        logits = logits.T.contiguous().T
    elif layout == "channels_last":
        logits = logits.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 6, (shape[0], *shape[2:]), generator=generator)
    target[1] = target[6 % shape[0]] = -100
    monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", 2 * math.prod(shape[1:]))
    assert len(autograd.row_blocks(logits, 1)) == math.ceil(shape[0] / 2)
    made = []
    blocked = autograd._core.blocked_log_softmax_loss_and_grad
    monkeypatch.setattr(
        autograd._core,
        "blocked_log_softmax_loss_and_grad",
        lambda *args, **kwargs: made.append(kwargs["out"]) or blocked(*args, **kwargs),
    )
    leaf = logits.detach().requires_grad_()
    loss = lt.smooth_ce(leaf, target, smoothing=0.1)
    assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
    # (A repeated call first gathers at ids assumed in range, which raises at -100 and
    # is made again with the ids read: the last call's buffer is the gradient.)
    assert made and made[-1].dtype == dtype
    loss.backward()
    reference = logits.detach().float().requires_grad_()
    expected = F.cross_entropy(reference, target, label_smoothing=0.1)
    expected.backward()
    assert loss.dtype == torch.float32 and leaf.grad.dtype == dtype
    assert_close(loss.detach(), expected.detach(), torch.float32)
    assert_close(leaf.grad.float(), reference.grad.to(dtype).float(), dtype)


@pytest.mark.parametrize(
    ("capability", "narrow"), [("AVX512", 16), ("AVX2", 8), ("DEFAULT", 0), ("NO AVX", 0)]
)
def test_narrow_classes_follow_the_cpu_vector_width(monkeypatch, capability, narrow):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert namespace._narrow_classes() == narrow


@pytest.mark.parametrize(
    ("capability", "one_op"),
    [("AVX512", sys.maxsize), ("AVX2", 1 << 15), ("DEFAULT", 1 << 15), ("NO AVX", 1 << 15)],
)
def test_exp_is_one_operation_at_every_size_with_avx512_only(monkeypatch, capability, one_op):
    """``_inplace_exp`` takes ``exp2`` of a product above 32,768 values, where PyTorch's
    ``exp2`` kernel was the faster (AVX2), but one ``exp`` at every size with AVX-512
    (where it is the faster); a CPU where neither was measured keeps the first rule."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert namespace._one_op_exp() == one_op
    monkeypatch.setattr(namespace, "_ONE_OP_EXP", one_op)
    calls = []
    for name in ("exp_", "exp2_"):
        method = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda x, _m=method, _n=name: calls.append(_n) or _m(x)
        )
    values = -torch.rand(1 << 16, dtype=torch.float64)
    result = namespace._inplace_exp(values.clone())
    assert calls == (["exp_"] if one_op > values.numel() else ["exp2_"])
    assert_close(result, values.exp(), torch.float64)


def _with_narrow_classes(monkeypatch, narrow):
    """The rule as on a CPU of another vector width (it is read where it is used)."""
    monkeypatch.setattr(namespace, "NARROW_CLASSES", narrow)
    monkeypatch.setattr(autograd, "NARROW_CLASSES", narrow)


@pytest.mark.parametrize("narrow", [16, 8, 0])
def test_the_class_axis_moves_below_the_vector_width_only(monkeypatch, narrow):
    _with_narrow_classes(monkeypatch, narrow)
    for classes in (2, 7, 8, 15, 16):
        logits = torch.randn(64, classes)
        result = namespace.xp.log_softmax(logits, axis=1, dtype=torch.float32)
        moved = result.stride(1) != 1
        assert moved == (classes < narrow), classes
        assert_close(result, torch.log_softmax(logits, 1), torch.float32)


@pytest.mark.parametrize("narrow", [16, 8])
def test_narrow_classes_take_the_small_path_up_to_2048_rows(monkeypatch, narrow):
    _with_narrow_classes(monkeypatch, narrow)
    for classes, limited in ((narrow - 1, True), (narrow, False)):
        assert autograd.is_small(torch.zeros(2048, classes), 1)
        assert autograd.is_small(torch.zeros(2049, classes), 1) == (not limited)
    # Wider rows take it at any size (block by block over one block of logits; an
    # expanded view: no memory of that size).
    assert autograd.is_small(torch.zeros(1, narrow).expand(1 << 24, narrow), 1)
    assert not autograd.is_small(torch.zeros(1, narrow - 1).expand(1 << 24, narrow - 1), 1)


@pytest.mark.parametrize("narrow", [16, 8, 0])
@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("shape", [(256, 10), (2048, 3), (64, 40)])
def test_small_path_gradient_has_the_logits_layout(shape, transposed, narrow, monkeypatch):
    """``autograd.grad`` hands over the path's own gradient: it must have the logits'
    strides (a narrow class axis is computed moved to the front), equal PyTorch's; for
    every vector width's rule."""
    _with_narrow_classes(monkeypatch, narrow)
    generator = torch.Generator().manual_seed(shape[1])
    logits = torch.randn(shape[::-1] if transposed else shape, generator=generator)
    logits = (logits.T if transposed else logits).requires_grad_()
    target = torch.randint(0, shape[1], shape[:1], generator=generator)
    loss = lt.smooth_ce(logits, target, smoothing=0.1, reduction="sum")
    assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
    (grad,) = torch.autograd.grad(loss, logits)
    (expected,) = torch.autograd.grad(
        F.cross_entropy(logits, target, label_smoothing=0.1, reduction="sum"), logits
    )
    assert grad.stride() == logits.stride()
    assert_close(grad, expected, torch.float32)


def test_small_path_second_backward_and_double_backward():
    """A retained graph's second backward gives the same gradient bit for bit; a double
    backward differentiates the gradient (gradgradcheck in float64)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = lt.smooth_ce(logits, target, smoothing=0.2)
    assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
    (first,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (second,) = torch.autograd.grad(loss, logits)
    assert torch.equal(first, second)

    def loss_fn(z):
        return lt.smooth_ce(z, target, smoothing=0.2, reduction="sum")

    assert torch.autograd.gradgradcheck(loss_fn, (logits,))


BAD_CALLS = [
    ({"target": torch.tensor([0, 1, 2, 3])}, ValueError),
    ({"target": torch.tensor([0, 1, -1, 2])}, ValueError),
    ({"target": torch.tensor([0.0, 1.0, 2.0, 1.0])}, ValueError),
    ({"target": torch.tensor([0, 1, 2])}, ValueError),
    ({"smoothing": 1.5}, ValueError),
    ({"smoothing": math.nan}, ValueError),
    ({"reduction": "avg"}, ValueError),
    ({"prior": "others", "input": torch.randn(4, 1)}, ValueError),
]


@pytest.mark.parametrize(("change", "error"), BAD_CALLS)
def test_small_path_errors_are_the_blocked_paths(change, error, monkeypatch):
    """Bad input is refused by the same validation, with the same message, whichever
    path the call would then take."""
    arguments = {
        "input": torch.randn(4, 3, requires_grad=True),
        "target": torch.tensor([0, 1, 2, 1]),
    }
    arguments.update(change)
    messages = []
    for small in (True, False):
        monkeypatch.setattr(autograd, "SMALL_ELEMENTS", 1 << 16 if small else 0)
        with pytest.raises(error) as raised:
            lt.smooth_ce(**arguments)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "Received:" in messages[0]


@pytest.mark.parametrize("small", [True, False], ids=["small", "blocked"])
def test_logits_changed_in_place_after_the_forward_pass(small, monkeypatch):
    """The usual backward hands over the gradient made in the forward pass: changing
    the (non-leaf) logits in place in between is allowed there, as on the blocked path
    and as with ``F.cross_entropy``; a second backward, which recomputes from the saved
    logits, then refuses with PyTorch's own error."""
    monkeypatch.setattr(autograd, "SMALL_ELEMENTS", 1 << 16 if small else 0)
    leaf = torch.randn(4, 3, requires_grad=True)
    logits = leaf * 1.0
    target = torch.tensor([0, 1, 2, 1])
    loss = lt.smooth_ce(logits, target, smoothing=0.1)
    expected_grad = torch.autograd.grad(
        F.cross_entropy(leaf * 1.0, target, label_smoothing=0.1), leaf
    )[0]
    with torch.no_grad():
        logits.add_(1.0)
    (grad,) = torch.autograd.grad(loss, leaf, retain_graph=True)
    assert_close(grad, expected_grad, torch.float32)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(loss, leaf)


def test_which_losses_alone_take_the_log_softmax_form():
    """On the CPU, every dtype and class count (half precision over many classes too,
    since its log-softmax converts first); on the meta device (as on accelerators),
    never."""
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        for num_classes in (10, 8193, 128000):
            assert autograd.takes_log_softmax_loss(torch.zeros(2, num_classes, dtype=dtype))
    assert not autograd.takes_log_softmax_loss(torch.zeros(2, 10, device="meta"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_half_precision_loss_alone_over_many_classes(dtype, reduction):
    """The loss alone of half-precision logits over more than 8192 classes, in blocks of
    rows with ignored targets among them, is the float32 loss of the converted logits;
    with an infinite logit it is lsr's float32 loss (the blocked pass's value there)."""
    generator = torch.Generator().manual_seed(5)
    logits = (3.0 * torch.randn(300, 9000, generator=generator)).to(dtype)
    target = torch.randint(0, 9000, (300,), generator=generator)
    target[::7] = -100
    assert logits.numel() > autograd.BLOCK_ELEMENTS  # (several blocks of rows)
    loss = lt.smooth_ce(logits, target, smoothing=0.1, reduction=reduction)
    expected = F.cross_entropy(logits.float(), target, label_smoothing=0.1, reduction=reduction)
    assert loss.dtype == torch.float32
    assert_close(loss, expected, torch.float32)
    logits[3, 17] = float("inf")
    loss = lt.smooth_ce(logits, target, smoothing=0.1, reduction="none")
    expected = lt.smooth_ce(logits.float(), target, smoothing=0.1, reduction="none")
    assert torch.equal(loss.isfinite(), expected.isfinite())
    assert_close(loss[loss.isfinite()], expected[expected.isfinite()], torch.float32)


# --- the route for repeated small calls ---------------------------------------------------


def _count_full_checks(monkeypatch):
    """How often smooth_ce's full path ran its first check (``check_tensors``)."""
    from lsr import _checks

    return count_full_checks(monkeypatch, functional, "check_tensors", _checks, "_KNOWN_OPTIONS")


def _leaf(shape=(6, 5), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).float().requires_grad_()


def test_a_repeated_plain_call_takes_the_route_and_gives_the_full_paths_values(monkeypatch):
    """The second call of a plain eager call skips the full path's checks (its first one
    is counted) and gives F.cross_entropy's loss and gradient; the route still reads the
    labels: an ignored id and an id out of range on the route are found."""
    calls = _count_full_checks(monkeypatch)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    for expected_calls in (1, 1):  # the first call checks whole, the second does not
        logits = _leaf()
        loss = lt.smooth_ce(logits, target, smoothing=0.2)
        assert type(loss.grad_fn).__name__.startswith("SmoothCESmall")
        assert len(calls) == expected_calls
        (grad,) = torch.autograd.grad(loss, logits)
        reference = _leaf()
        expected = F.cross_entropy(reference, target, label_smoothing=0.2)
        (expected_grad,) = torch.autograd.grad(expected, reference)
        assert_close(loss.detach(), expected.detach(), torch.float32)
        assert_close(grad, expected_grad, torch.float32)
    ignored = torch.tensor([0, -100, 2, 3, -100, 0])
    loss = lt.smooth_ce(_leaf(), ignored, smoothing=0.2)
    expected = F.cross_entropy(_leaf(), ignored, label_smoothing=0.2)
    assert_close(loss.detach(), expected.detach(), torch.float32)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="class ids"):
        lt.smooth_ce(_leaf(), torch.tensor([0, 1, 2, 3, 7, 0]), smoothing=0.2)
    assert len(calls) == 1
    # Another option's value is another key: checked whole.
    lt.smooth_ce(_leaf(), target, smoothing=0.3)
    assert len(calls) == 2


def test_the_route_keys_its_options_in_the_checks_order(monkeypatch):
    """The route hands the known options' key the options in the order of
    ``check_smooth_ce``'s signature (``_checks.KEYED_NAMES``), as the full path makes the
    key: in another order, a call would find the spec of another call's options (kl and
    return_aux swapped, say)."""
    from lsr import _checks

    seen: list = []
    known = functional.known_options

    def recorded(logits, labels, options, **keywords):
        seen.append(options)
        return known(logits, labels, options, **keywords)

    monkeypatch.setattr(functional, "known_options", recorded)
    values = dict(
        smoothing=0.25,
        prior="others",
        axis=1,
        ignore_index=-7,
        reduction="sum",
        kl=True,
        z_loss=0.5,
        softcap=30.0,
        confidence_penalty=0.75,
        return_aux=False,
    )
    lt.smooth_ce(_leaf(), torch.tensor([0, 1, 2, 3, 4, 0]), **values)
    assert seen == [tuple(values[name] for name in _checks.KEYED_NAMES)]
    with pytest.raises(TypeError, match="Expected the values"):
        _checks.known_options(_leaf(), torch.tensor([0, 1, 2, 3, 4, 0]), seen[0][:-1])


def test_the_route_keeps_the_targets_of_ids_in_range(monkeypatch):
    """A repeated call whose ids are all in range (left to the gather) takes the targets'
    terms made once for its options (``_core.FixedTargets``), with and without a
    gradient; one with ignored ids makes its own, and so does the next call (which reads
    its ids first, after one that had ignored ids); the call after that takes the kept
    ones again. The values are F.cross_entropy's throughout."""
    from lsr import _core

    _count_full_checks(monkeypatch)  # (and no known options to begin with)
    handed: list = []
    routed = functional.routed_call
    monkeypatch.setattr(
        functional,
        "routed_call",
        lambda *arguments: handed.append(arguments[5:]) or routed(*arguments),
    )
    plain = torch.tensor([0, 1, 2, 3, 4, 0])
    padded = torch.tensor([0, -100, 2, 3, -100, 0])
    kept = []
    for target in [plain, plain, padded, plain, plain]:
        handed.clear()
        for mode in ("gradient", "no_grad"):
            logits = _leaf()
            loss = _GRADIENT_MODES[mode](
                lambda z, target=target: lt.smooth_ce(z, target, smoothing=0.2), logits
            )
            expected, expected_grad = _expected_value_and_grad(target)
            assert_close(loss.detach(), expected, torch.float32)
            if mode == "gradient":
                assert_close(torch.autograd.grad(loss, logits)[0], expected_grad, torch.float32)
        # (The very first call takes the full path, which makes the options known. A
        # call after ignored ids reads its ids first, and a call whose gather raised on
        # them reads them then: neither takes the kept targets.)
        if target is padded:
            assert handed[-1] == (), handed
        else:
            assert isinstance(handed[-1][0], _core.FixedTargets), handed
        kept += [extra[0] for extra in handed if extra]
    assert len(kept) >= 6
    assert all(fixed is kept[0] for fixed in kept)  # (made once for these options)


@pytest.mark.parametrize(
    ("options", "shape", "dtype"),
    [
        ({"reduction": "none"}, (6, 5), torch.float32),
        ({"reduction": "sum"}, (6, 5), torch.float32),
        ({"kl": True}, (6, 5), torch.float32),
        ({"prior": "others", "kl": True}, (6, 5), torch.float32),
        ({"smoothing": 0.0}, (6, 5), torch.float32),
        ({"smoothing": 1.0, "reduction": "sum"}, (6, 5), torch.float32),
        ({}, (2, 5, 3, 4), torch.float32),  # (segmentation: classes on axis 1)
        ({}, (6, 5), torch.bfloat16),
        ({}, (5,), torch.float32),  # (one position)
    ],
    ids=lambda value: str(value).replace(" ", ""),
)
def test_the_kept_targets_give_the_full_paths_values(options, shape, dtype, monkeypatch):
    """Each kind of call whose targets the route keeps: a repeated call (on the route,
    where no targets are made of the labels: ``reduction_scale`` is not called) gives
    the first call's loss and gradient (the full path's, which made them), on the same
    logits and ids."""
    from lsr._core import _loss

    _count_full_checks(monkeypatch)
    generator = torch.Generator().manual_seed(3)
    positions = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = torch.randint(0, 5, positions, generator=generator)
    values = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    def call():
        logits = values.clone().requires_grad_()
        loss = lt.smooth_ce(logits, target, **{"smoothing": 0.2, **options})
        (grad,) = torch.autograd.grad(loss, logits, torch.ones_like(loss))
        return loss.detach(), grad

    expected, expected_grad = call()  # (the full path: the options become known)
    call()  # (the route: its targets made once, of these ids)
    made: list = []
    reduction_scale = _loss.reduction_scale
    monkeypatch.setattr(
        _loss,
        "reduction_scale",
        lambda *arguments, **keywords: made.append(1) or reduction_scale(*arguments, **keywords),
    )
    loss, grad = call()
    assert made == []
    assert grad.dtype == expected_grad.dtype == dtype
    assert_close(loss, expected, torch.float32)
    assert_close(grad.double(), expected_grad.double(), dtype)


def _count_label_reads(monkeypatch) -> list:
    """A list that grows by one each time a repeated call reads its ids
    (``labels_and_spec``) rather than leave them to the small path's gather."""
    from lsr import _checks

    reads: list = []
    read = _checks._KnownOptions.labels_and_spec
    monkeypatch.setattr(
        _checks._KnownOptions,
        "labels_and_spec",
        lambda self, labels: reads.append(1) or read(self, labels),
    )
    return reads


def _expected_value_and_grad(target, **options):
    reference = _leaf()
    expected = F.cross_entropy(reference, target, label_smoothing=0.2, **options)
    return expected.detach(), torch.autograd.grad(expected, reference)[0]


# How a call asks for a gradient: the route serves each (SmoothCESmall where the input
# is differentiated, log_softmax_loss where nothing is).
_GRADIENT_MODES = {
    "gradient": lambda call, logits: call(logits),
    "no_grad": lambda call, logits: under(torch.no_grad(), lambda: call(logits)),
    "inference_mode": lambda call, logits: under(torch.inference_mode(), lambda: call(logits)),
    "no gradient": lambda call, logits: call(logits.detach()),
}


@pytest.mark.parametrize("mode", list(_GRADIENT_MODES))
@pytest.mark.parametrize(
    ("ignore_index", "dtype"),
    [
        (-100, torch.int64),
        (-100, torch.uint8),
        (4, torch.int64),
        (0, torch.int64),
        (0, torch.uint8),
    ],
)
@pytest.mark.parametrize("blocks", [False, True], ids=["one-block", "blocks"])
def test_the_route_leaves_ids_in_range_unread_and_finds_every_other(
    ignore_index, dtype, mode, blocks, monkeypatch
):
    """On the route, ids all in [0, C) are left to the gather of the small path (or of
    the loss alone, where nothing is differentiated), which raises on any other; an
    ignore_index in [0, C) (which gather cannot find) has its ids read on every call.
    Ignored ids are found, ids out of range refused (a call of each kind after each
    other kind), and every value is F.cross_entropy's. Over one block of logits the ids
    are read on every call (a gather raising in a later block would waste the ones
    before it)."""
    if blocks:
        monkeypatch.setattr(autograd, "BLOCK_ELEMENTS", 10)
    calls = _count_full_checks(monkeypatch)
    reads = _count_label_reads(monkeypatch)
    in_range = ignore_index not in range(5)
    ignore = ignore_index if ignore_index >= 0 or dtype != torch.uint8 else None
    plain = torch.tensor([0, 1, 2, 3, 1, 2], dtype=dtype)
    padded = plain.clone()
    if ignore is not None:
        padded[[1, 4]] = ignore
    bad = torch.tensor([0, 1, 2, 3, 5, 2], dtype=dtype)
    negative = torch.tensor([0, 1, -1, 3, 1, 2]) if dtype == torch.int64 else bad
    sequence = [plain, plain, padded, padded, plain, bad, plain, negative, padded, plain]
    with_grad = mode == "gradient"

    def clean(target):  # every id in [0, C), none of them ignore_index
        return target is plain or (target is padded and ignore is None)

    def loss_of(logits, target):
        return _GRADIENT_MODES[mode](
            lambda z: lt.smooth_ce(z, target, smoothing=0.2, ignore_index=ignore_index), logits
        )

    for number, target in enumerate(sequence):
        reads.clear()
        if target is bad or target is negative:
            with pytest.raises(ValueError, match="class ids"):
                loss_of(_leaf(), target)
            continue
        logits = _leaf()
        loss = loss_of(logits, target)
        expected, expected_grad = _expected_value_and_grad(target.long(), ignore_index=ignore_index)
        assert_close(loss.detach(), expected, torch.float32)
        if with_grad:
            (grad,) = torch.autograd.grad(loss, logits)
            assert_close(grad, expected_grad, torch.float32)
        else:
            assert loss.grad_fn is None and not loss.requires_grad
        # (The first call is checked whole. A later one reads its ids unless the last
        # call's and its own are all in [0, C) and ignore_index is not.)
        unread = number == 0 or (
            not blocks and in_range and clean(sequence[number - 1]) and clean(target)
        )
        assert reads == ([] if unread else [1]), (number, reads)
    assert len(calls) == 1


def test_the_route_reads_the_size_limits_on_every_call(monkeypatch):
    """What a known option's key holds is decided once; the size limits of the small
    path (module constants, tuned per CPU) are read on every call, also on the route."""
    _count_full_checks(monkeypatch)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    for _ in range(2):
        loss = lt.smooth_ce(_leaf(), target)
        assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
    monkeypatch.setattr(autograd, "SMALL_ELEMENTS", 0)
    loss = lt.smooth_ce(_leaf(), target)
    assert type(loss.grad_fn).__name__ == "SmoothCEFusedBackward"


def test_the_route_still_warns_about_probabilities():
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    for _ in range(2):
        probabilities = torch.softmax(_leaf(), dim=1)
        with pytest.warns(UserWarning, match="holds probabilities"):
            lt.smooth_ce(probabilities, target, smoothing=0.2)


_NOT_ROUTED = {
    # (A call that differentiates nothing takes the route: see the test of ids above.)
    **{
        name: call
        for name, call in off_the_route_calls(lt.smooth_ce).items()
        if name not in ("no gradient", "no_grad")
    },
    # Grad mode off does not switch forward-mode AD off.
    "no_grad, forward AD": lambda z, y: under(
        torch.no_grad(), lambda: off_the_route_calls(lt.smooth_ce)["forward AD"](z, y)
    ),
    "no gradient, autocast": lambda z, y: under(
        torch.autocast("cpu", dtype=torch.bfloat16), lambda: lt.smooth_ce(z.detach(), y)
    ),
    "tensor smoothing": lambda z, y: lt.smooth_ce(z, y, smoothing=torch.tensor(0.1)),
    "int smoothing": lambda z, y: lt.smooth_ce(z, y, smoothing=0),
    "weight": lambda z, y: lt.smooth_ce(z, y, weight=torch.ones(5)),
    "prior tensor": lambda z, y: lt.smooth_ce(z, y, prior=torch.full((5,), 0.2)),
    "probabilities": lambda z, y: lt.smooth_ce(z, F.one_hot(y, 5).float()),
    # (The plain call's shapes: causal_shift is not in the key, only in the route's test.)
    "causal_shift": lambda z, y: lt.smooth_ce(z, y, causal_shift=True),
}


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", list(_NOT_ROUTED))
def test_every_other_call_takes_the_full_path(name, monkeypatch):
    """A call that the full path would not give to SmoothCESmall (or that it gives to
    it under other conditions) never takes the route, also after a plain call of the
    same shapes has made its options known."""
    torch._dynamo.reset()
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    calls = _count_full_checks(monkeypatch)
    lt.smooth_ce(_leaf(), target)  # (the plain call: its options are now known)
    calls.clear()
    _NOT_ROUTED[name](_leaf(), target)
    assert calls, name

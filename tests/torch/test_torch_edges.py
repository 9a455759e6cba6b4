"""lsr.torch at the edges of PyTorch's contract: memory, forward mode, batched gradients,
non-tensor arguments.

* Memory a caller can still reach is never written: every eager call allocates its own
  gradient (a storage kept by a tool, a gradient shared with another process, a saved
  small gradient).
* Forward-mode AD with ``torch.autograd.forward_ad`` dual tensors gives
  ``F.cross_entropy``'s tangent, and ``torch.func.jvp`` keeps working.
* ``torch.autograd.grad(..., is_grads_batched=True)`` equals a loop over the cotangents
  and ``F.cross_entropy``'s, for every reduction.
* Arguments that are not tensors get lsr's TypeError, not a library's AttributeError.

Expected values come from ``F.cross_entropy`` (PyTorch's own forward-mode and batched
gradients), from explicit formulas, or from copies taken before the call under test.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.multiprocessing as mp
import torch.nn.functional as F

import lsr.torch as lt
from tests.backends import assert_close
from tests.torch.compare import assert_value_and_grad_close

# Forward-mode AD scripts helpers with torch.jit, which torch 2.13 deprecates.
TORCH_JIT_WARNING = "ignore:`torch.jit.script:DeprecationWarning"
REDUCTIONS = ["mean", "sum", "none"]


def _logits(shape, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)


def _class_ids(shape, num_classes, seed=1, ignore_index=-100):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, shape, generator=generator)
    ignored = torch.rand(shape, generator=generator) < 0.25
    labels = torch.where(ignored, ignore_index, labels)
    labels.view(-1)[0] = 1  # At least one kept position.
    return labels


def _probabilities(shape, dtype=torch.float64, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=generator, dtype=torch.float64), 1).to(dtype)


def _grad_by_f_cross_entropy(logits, target, **options):
    leaf = logits.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(leaf, target, **options), leaf)
    return grad


def _bytes_of(storage):
    """A copy of the bytes behind ``storage``."""
    return torch.empty(0, dtype=torch.uint8).set_(storage).clone()


# --- memory the caller can still reach is never written ----------------------------------


def test_storage_of_a_dropped_gradient_is_never_written():
    """A memory tool, a checkpoint writer or a logger holding only the storage of a
    gradient keeps its bytes when the gradient itself is dropped and training goes on."""
    target = _class_ids((64,), 1000)
    first = _logits((64, 1000), torch.float32, seed=3).requires_grad_()
    lt.smooth_ce(first, target).backward()
    storage = first.grad.untyped_storage()
    before = _bytes_of(storage)
    first.grad = None
    for seed in (4, 5):  # Later steps of the same shape.
        later = _logits((64, 1000), torch.float32, seed=seed).requires_grad_()
        lt.smooth_ce(later, target).backward()
        assert_close(
            later.grad, _grad_by_f_cross_entropy(later, target, label_smoothing=0.1), "float32"
        )
    assert torch.equal(_bytes_of(storage), before)
    kept = torch.empty(0, dtype=torch.float32).set_(storage, 0, (64, 1000))
    assert_close(kept, _grad_by_f_cross_entropy(first, target, label_smoothing=0.1), "float32")


def _receive_gradient(inbox, outbox):
    """Receiver process: keep the gradient it was sent, report whether it ever changes."""
    gradient = inbox.get(timeout=120)
    snapshot = gradient.clone()
    outbox.put("received")
    assert inbox.get(timeout=120) == "check"
    # (NumPy pickles by value: nothing of this process must outlive it.)
    outbox.put((torch.equal(gradient, snapshot), snapshot.numpy()))


def test_gradient_shared_with_another_process_is_not_written_by_the_next_step():
    """torch.multiprocessing moves a sent tensor's storage to shared memory; the sender's
    next step must not write into what the receiver holds."""
    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(), context.Queue()
    receiver = context.Process(target=_receive_gradient, args=(inbox, outbox), daemon=True)
    receiver.start()
    try:
        target = _class_ids((32, 100), 100)[:, 0]
        sent = _logits((32, 100), torch.float32, seed=6).requires_grad_()
        lt.smooth_ce(sent, target).backward()
        inbox.put(sent.grad)
        assert outbox.get(timeout=120) == "received"
        sent.grad = None  # The sender keeps nothing; the receiver keeps the gradient.
        for seed in (7, 8):
            step = _logits((32, 100), torch.float32, seed=seed).requires_grad_()
            lt.smooth_ce(step, target).backward()
        inbox.put("check")
        unchanged, received = outbox.get(timeout=120)
    finally:
        receiver.join(timeout=60)
        if receiver.is_alive():
            receiver.kill()
    assert unchanged
    expected = _grad_by_f_cross_entropy(sent, target, label_smoothing=0.1)
    assert_close(received, expected, "float32")
    assert receiver.exitcode == 0


def test_saved_small_gradient_holds_only_its_own_bytes():
    """torch.save writes a tensor's whole storage: a 4 x 10 gradient must not carry the
    megabytes of an earlier, larger call."""
    large = _logits((1024, 8192), torch.float32).requires_grad_()
    lt.smooth_ce(large, torch.randint(0, 8192, (1024,))).backward()
    large.grad = None
    small = _logits((4, 10), torch.float32, seed=9).requires_grad_()
    lt.smooth_ce(small, torch.tensor([1, 2, 3, 4])).backward()
    saved, saved_copy = io.BytesIO(), io.BytesIO()
    torch.save(small.grad, saved)
    torch.save(small.grad.clone(), saved_copy)  # A tensor that owns exactly its 160 bytes.
    assert small.grad.untyped_storage().nbytes() == 4 * 10 * 4
    assert len(saved.getvalue()) == len(saved_copy.getvalue())
    assert len(saved.getvalue()) < 4096


def test_the_kept_buffer_and_its_release_are_gone():
    assert not hasattr(lt, "empty_cache")
    assert "empty_cache" not in lt.__all__


# --- forward-mode AD with dual tensors ---------------------------------------------------


def _tangent(function, primal, tangent):
    with fwAD.dual_level():
        output = function(fwAD.make_dual(primal, tangent))
        unpacked = fwAD.unpack_dual(output)
        return unpacked.primal.detach().clone(), unpacked.tangent.clone()


FORWARD_CASES = {
    "ids": dict(target="ids"),
    "ids, weight": dict(target="ids", weight=True),
    "ids, ignore_index=3": dict(target="ids", ignore_index=3),
    "ids, weight, eps=0": dict(target="ids", weight=True, smoothing=0.0),
    "probabilities": dict(target="probabilities"),
    "probabilities, weight": dict(target="probabilities", weight=True),
    "(N, C, H, W) ids, weight": dict(target="ids", weight=True, spatial=True),
}


def _forward_case(name, dtype=torch.float64):
    case = dict(FORWARD_CASES[name])
    shape = (3, 5, 2, 2) if case.get("spatial") else (6, 5)
    positions = shape[:1] + shape[2:]
    logits = _logits(shape, dtype)
    tangent = _logits(shape, dtype, seed=11)
    if case["target"] == "ids":
        target = _class_ids(positions, 5, ignore_index=case.get("ignore_index", -100))
    else:
        target = _probabilities(shape, dtype)
    options = {"label_smoothing": case.get("smoothing", 0.2)}
    if case.get("weight"):
        options["weight"] = torch.linspace(0.3, 2.0, 5, dtype=dtype)
    if "ignore_index" in case:
        options["ignore_index"] = case["ignore_index"]
    return logits, tangent, target, options


def _lsr_options(options):
    options = dict(options)
    options["smoothing"] = options.pop("label_smoothing")
    return options


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", FORWARD_CASES, ids=list(FORWARD_CASES))
def test_forward_ad_tangent_matches_f_cross_entropy(name, reduction):
    logits, tangent, target, options = _forward_case(name)
    ours = _tangent(
        lambda z: lt.smooth_ce(z, target, reduction=reduction, **_lsr_options(options)),
        logits,
        tangent,
    )
    theirs = _tangent(
        lambda z: F.cross_entropy(z, target, reduction=reduction, **options), logits, tangent
    )
    module = lt.SmoothCrossEntropyLoss(reduction=reduction, **options)
    through_module = _tangent(lambda z: module(z, target), logits, tangent)
    for value, expected in zip((*ours, *through_module), (*theirs, *theirs), strict=True):
        assert value.shape == expected.shape
        assert_close(value, expected, torch.float64)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
def test_forward_ad_in_float32_and_with_a_gradient_asked_too():
    """Dual logits that also require grad: one call gives the tangent and the gradient."""
    logits, tangent, target, options = _forward_case("ids, weight", torch.float32)
    leaf = logits.clone().requires_grad_()
    with fwAD.dual_level():
        loss = lt.smooth_ce(fwAD.make_dual(leaf, tangent), target, **_lsr_options(options))
        loss_tangent = fwAD.unpack_dual(loss).tangent.detach().clone()
    (grad,) = torch.autograd.grad(loss, leaf)
    _, expected_tangent = _tangent(lambda z: F.cross_entropy(z, target, **options), logits, tangent)
    assert_close(loss_tangent, expected_tangent, torch.float32)
    assert_close(grad, _grad_by_f_cross_entropy(logits, target, **options), torch.float32)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("argument", ["target", "weight"])
def test_forward_ad_through_probability_targets_and_weight(argument, reduction):
    """Tangents of the other arguments, against F.cross_entropy's forward mode."""
    logits, _, target, options = _forward_case("probabilities, weight")
    weight = options.pop("weight")
    primal = {"target": target, "weight": weight}[argument]
    tangent = _logits(primal.shape, seed=12)

    def loss_of(function, value):
        arguments = {"target": target, "weight": weight, argument: value}
        return function(logits, arguments["target"], weight=arguments["weight"])

    ours = _tangent(
        lambda v: loss_of(
            lambda z, y, weight: lt.smooth_ce(
                z, y, weight=weight, reduction=reduction, smoothing=0.2
            ),
            v,
        ),
        primal,
        tangent,
    )
    theirs = _tangent(
        lambda v: loss_of(
            lambda z, y, weight: F.cross_entropy(
                z, y, weight=weight, reduction=reduction, label_smoothing=0.2
            ),
            v,
        ),
        primal,
        tangent,
    )
    for value, expected in zip(ours, theirs, strict=True):
        assert_close(value, expected, torch.float64)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
def test_forward_ad_through_smoothing_and_prior():
    """The loss is linear in eps and in the prior: the tangents are explicit."""
    logits = _logits((6, 5))
    target = _class_ids((6,), 5)
    kept = target != -100
    prior = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64)
    neg_log_p = -torch.log_softmax(logits, dim=1)
    # d/d eps of the mean of (1 - eps) (-log p_y) + eps sum_k pi_k (-log p_k).
    eps_tangent = 0.5
    expected = (
        eps_tangent
        * ((neg_log_p @ prior)[kept] - neg_log_p[kept].gather(1, target[kept, None])[:, 0]).mean()
    )
    _, ours = _tangent(
        lambda eps: lt.smooth_ce(logits, target, smoothing=eps, prior=prior),
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(eps_tangent, dtype=torch.float64),
    )
    assert_close(ours, expected, torch.float64)
    # d/d pi (direction t) of eps sum_k pi_k (-log p_k): eps (t . -log p), averaged.
    prior_tangent = torch.tensor([0.3, -0.1, 0.0, -0.15, -0.05], dtype=torch.float64)
    expected = 0.3 * (neg_log_p @ prior_tangent)[kept].mean()
    _, ours = _tangent(
        lambda pi: lt.smooth_ce(logits, target, smoothing=0.3, prior=pi), prior, prior_tangent
    )
    assert_close(ours, expected, torch.float64)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_func_jvp_and_second_forward_derivative_still_match(reduction):
    logits, tangent, target, options = _forward_case("ids, weight")

    def ours(z):
        return lt.smooth_ce(z, target, reduction=reduction, **_lsr_options(options))

    def theirs(z):
        return F.cross_entropy(z, target, reduction=reduction, **options)

    for value, expected in zip(
        torch.func.jvp(ours, (logits,), (tangent,)),
        torch.func.jvp(theirs, (logits,), (tangent,)),
        strict=True,
    ):
        assert_close(value, expected, torch.float64)
    if reduction != "none":
        hessian = torch.func.jacfwd(torch.func.jacfwd(ours))(logits)
        assert_close(hessian, torch.func.jacfwd(torch.func.jacfwd(theirs))(logits), torch.float64)


# --- torch.autograd.grad(..., is_grads_batched=True) -------------------------------------

BATCHED_CASES = ["ids", "ids, weight", "ids, ignore_index=3", "probabilities, weight"]


def _batched_cotangents(loss, count=3):
    generator = torch.Generator().manual_seed(13)
    return torch.randn((count, *loss.shape), generator=generator, dtype=loss.dtype)


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", BATCHED_CASES)
def test_is_grads_batched_matches_a_loop_and_f_cross_entropy(name, reduction, create_graph):
    logits, _, target, options = _forward_case(name)
    leaf = logits.clone().requires_grad_()
    loss = lt.smooth_ce(leaf, target, reduction=reduction, **_lsr_options(options))
    cotangents = _batched_cotangents(loss)
    (batched,) = torch.autograd.grad(
        loss, leaf, cotangents, is_grads_batched=True, retain_graph=True, create_graph=create_graph
    )
    looped = []
    for cotangent in cotangents:
        # Each a fresh graph, so that no gradient of the batched call can be reused.
        fresh = logits.clone().requires_grad_()
        value = lt.smooth_ce(fresh, target, reduction=reduction, **_lsr_options(options))
        looped.append(torch.autograd.grad(value, fresh, cotangent)[0])
    reference_leaf = logits.clone().requires_grad_()
    reference = F.cross_entropy(reference_leaf, target, reduction=reduction, **options)
    (expected,) = torch.autograd.grad(reference, reference_leaf, cotangents, is_grads_batched=True)
    assert batched.shape == (len(cotangents), *logits.shape)
    assert_close(batched.detach(), torch.stack(looped), torch.float64)
    assert_close(batched.detach(), expected, torch.float64)
    # The retained graph still gives the plain gradient afterwards, in new memory.
    (again,) = torch.autograd.grad(loss, leaf, cotangents[0])
    assert again.untyped_storage().data_ptr() != batched.untyped_storage().data_ptr()
    assert_close(again, expected[0], torch.float64)
    assert_close(batched.detach(), expected, torch.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_is_grads_batched_through_linear_smooth_ce(reduction):
    generator = torch.Generator().manual_seed(14)
    hidden = torch.randn(6, 4, generator=generator, dtype=torch.float64).requires_grad_()
    weight = torch.randn(7, 4, generator=generator, dtype=torch.float64).requires_grad_()
    bias = torch.randn(7, generator=generator, dtype=torch.float64).requires_grad_()
    target = torch.tensor([0, 1, 6, 3, -100, 2])
    loss = lt.linear_smooth_ce(hidden, weight, target, bias=bias, reduction=reduction, chunk_size=4)
    cotangents = _batched_cotangents(loss)
    ours = torch.autograd.grad(loss, (hidden, weight, bias), cotangents, is_grads_batched=True)
    reference = F.cross_entropy(
        F.linear(hidden, weight, bias), target, reduction=reduction, label_smoothing=0.1
    )
    theirs = torch.autograd.grad(
        reference, (hidden, weight, bias), cotangents, is_grads_batched=True
    )
    for value, expected in zip(ours, theirs, strict=True):
        assert_close(value, expected, torch.float64)


# --- arguments that are not tensors -------------------------------------------------------


@pytest.fixture(scope="module")
def process_group():
    """A one-process gloo group, for the distributed entry points' argument checks."""
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    if created:
        dist.destroy_process_group()


def test_numpy_teacher_is_a_clear_type_error():
    student = _logits((4, 5), torch.float32)
    teacher = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(TypeError) as error:
        lt.distill_loss(student, teacher, temperature=2.0)
    assert str(error.value) == (
        "`teacher` must be a torch.Tensor. Received: teacher=<array shape=(4, 5) dtype=float32>"
    )


_Z = _logits((4, 5), torch.float32)
_Y = torch.tensor([0, 1, 2, 3])
_HIDDEN = _logits((4, 3), torch.float32)
_PROJECTION = _logits((5, 3), torch.float32)
_NUMPY_VECTOR = np.full(5, 0.2)

NON_TENSOR_CALLS = {
    "distill_loss input": (
        "input",
        lambda: lt.distill_loss(_Z.numpy(), _Z, temperature=2.0),
    ),
    "distill_loss where": (
        "where",
        lambda: lt.distill_loss(_Z, _Z, temperature=2.0, where=np.ones(4, dtype=bool)),
    ),
    "distill_loss temperature": (
        "temperature",
        lambda: lt.distill_loss(_Z, _Z, temperature=np.array(2.0)),
    ),
    "smooth_ce smoothing": (
        "smoothing",
        lambda: lt.smooth_ce(_Z, _Y, smoothing=np.array(0.1)),
    ),
    "SmoothCrossEntropyLoss weight": (
        "weight",
        lambda: lt.SmoothCrossEntropyLoss(weight=np.ones(5)),
    ),
    "SmoothCrossEntropyLoss prior": (
        "prior",
        lambda: lt.SmoothCrossEntropyLoss(prior=_NUMPY_VECTOR),
    ),
    "SmoothCrossEntropyLoss prior list": (
        "prior",
        lambda: lt.SmoothCrossEntropyLoss(prior=[0.2] * 5),
    ),
    "SmoothCrossEntropyLoss label_smoothing": (
        "label_smoothing",
        lambda: lt.SmoothCrossEntropyLoss(label_smoothing=np.array(0.1)),
    ),
    "LabelSmoothSoftmaxCE label": (
        "target",
        lambda: lt.LabelSmoothSoftmaxCE()(_Z[:, :, None], _Y.numpy()[:, None]),
    ),
    "linear_smooth_ce weight": (
        "weight",
        lambda: lt.linear_smooth_ce(_HIDDEN, _PROJECTION, _Y, weight=np.ones(5)),
    ),
    "linear_smooth_ce projection": (
        "projection",
        lambda: lt.linear_smooth_ce(_HIDDEN, _PROJECTION.numpy(), _Y),
    ),
    "cross_entropy weight": (
        "weight",
        lambda: lt.cross_entropy(_Z, _Y, np.ones(5)),
    ),
    "cross_entropy label_smoothing": (
        "label_smoothing",
        lambda: lt.cross_entropy(_Z, _Y, label_smoothing=np.array(0.1)),
    ),
    "linear_smooth_ce prior": (
        "prior",
        lambda: lt.linear_smooth_ce(_HIDDEN, _PROJECTION, _Y, prior=_NUMPY_VECTOR),
    ),
    "linear_smooth_ce smoothing": (
        "smoothing",
        lambda: lt.linear_smooth_ce(_HIDDEN, _PROJECTION, _Y, smoothing=np.array(0.1)),
    ),
    "data_parallel_smooth_ce weight": (
        "weight",
        lambda: lt.data_parallel_smooth_ce(_Z, _Y, weight=np.ones(5)),
    ),
    "data_parallel_smooth_ce where": (
        "where",
        lambda: lt.data_parallel_smooth_ce(_Z, _Y, where=np.ones(4, dtype=bool)),
    ),
    "data_parallel_smooth_ce group": (
        "group",
        lambda: lt.data_parallel_smooth_ce(_Z, _Y, group="world"),
    ),
    "vocab_parallel_smooth_ce prior": (
        "prior",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, prior=_NUMPY_VECTOR),
    ),
    "vocab_parallel_smooth_ce smoothing": (
        "smoothing",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, smoothing=np.array(0.1)),
    ),
    "vocab_parallel_smooth_ce where": (
        "where",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, where=[True] * 4),
    ),
    "vocab_parallel_smooth_ce shard_sizes": (
        "shard_sizes",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, shard_sizes=5),
    ),
    "vocab_parallel_smooth_ce group": (
        "group",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, group="world"),
    ),
    "vocab_parallel_smooth_ce batch_group": (
        "batch_group",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, batch_group="world"),
    ),
    "vocab_parallel_smooth_ce kl": (
        "kl",
        lambda: lt.vocab_parallel_smooth_ce(_Z, _Y, kl="no"),
    ),
}


@pytest.mark.usefixtures("process_group")
@pytest.mark.parametrize("call", NON_TENSOR_CALLS, ids=list(NON_TENSOR_CALLS))
def test_non_tensor_arguments_get_lsr_type_errors(call):
    name, function = NON_TENSOR_CALLS[call]
    with pytest.raises(TypeError) as error:
        function()
    message = str(error.value)
    assert f"`{name}` must be" in message
    assert f"Received: {name}=" in message


@pytest.mark.usefixtures("process_group")
def test_numpy_integer_shard_sizes_are_class_counts():
    """Sizes read from a NumPy array are integers too (one rank: the whole K)."""
    logits = _logits((4, 5))
    expected = F.cross_entropy(logits, _Y, label_smoothing=0.1)
    loss = lt.vocab_parallel_smooth_ce(logits, _Y, shard_sizes=np.array([5]), smoothing=0.1)
    assert_close(loss, expected, torch.float64)


@pytest.mark.filterwarnings(TORCH_JIT_WARNING)
def test_forward_ad_tangent_can_be_differentiated():
    """Reverse mode over forward mode: the gradient of the tangent."""
    logits, tangent, target, options = _forward_case("ids, weight")

    def gradient_of_tangent(function):
        leaf = logits.clone().requires_grad_()
        with fwAD.dual_level():
            loss_tangent = fwAD.unpack_dual(function(fwAD.make_dual(leaf, tangent))).tangent
        return torch.autograd.grad(loss_tangent, leaf)[0]

    ours = gradient_of_tangent(lambda z: lt.smooth_ce(z, target, **_lsr_options(options)))
    # The gradient of the tangent is the Hessian times the tangent: PyTorch's double
    # backward of its own loss (its reverse-over-forward fails here on an in-place exp).
    leaf = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(leaf, target, **options), leaf, create_graph=True)
    (expected,) = torch.autograd.grad(torch.sum(grad * tangent), leaf)
    assert_close(ours, expected, torch.float64)


def test_an_ignored_rows_finite_logits_get_no_gradient_on_the_autograd_path():
    """A smoothing that requires grad sends the loss through autograd of the core's ops.
    An ignored row holding an infinite logit must not spread NaN over its other logits
    (the row maximum's guard is differentiated as a select there, whose derivative at a
    non-finite maximum is exactly 0)."""
    logits = torch.tensor([[1.0, 2.0, float("inf"), 0.5], [0.1, 0.2, 0.3, 0.4]])
    leaf = logits.clone().requires_grad_()
    smoothing = torch.tensor(0.1, requires_grad=True)
    loss = lt.smooth_ce(leaf, torch.tensor([-100, 1]), smoothing=smoothing)
    loss.backward()
    expected = F.cross_entropy(logits[1:], torch.tensor([1]), label_smoothing=0.1)
    assert_close(loss.detach(), expected, torch.float32)
    assert torch.equal(leaf.grad[0, [0, 1, 3]], torch.zeros(3))
    assert torch.isfinite(leaf.grad[1]).all()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("requires_grad", [False, True], ids=["loss", "loss-and-grad"])
@pytest.mark.parametrize("shape", [(6, 20), (6, 4000)], ids=["small", "blocked"])
def test_a_traced_loss_gives_each_later_calls_own_value(shape, requires_grad):
    """``torch.jit.trace`` keeps every value Python reads as a constant of the trace: the
    labels' range, whether an id is ignored and the mean's count of kept positions must
    not be read while tracing, or later calls with other labels would reuse them."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(shape, generator=generator).requires_grad_(requires_grad)
    first = torch.tensor([0, 1, 2, 3, 4, -100])
    later = [torch.tensor([0, -100, -100, -100, -100, -100]), torch.tensor([5, 1, 2, 3, 4, 0])]

    def loss(z, t):
        return lt.smooth_ce(z, t, smoothing=0.1)

    traced = torch.jit.trace(loss, (logits, first), check_trace=False)
    for labels in [first, *later]:
        expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
        assert_value_and_grad_close(
            traced(logits, labels), expected, logits, with_grad=requires_grad
        )


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_a_traced_distillation_loss_checks_each_calls_temperature():
    """A temperature read while tracing would be checked once and never again: a later
    call's temperature that is not > 0 must make the loss NaN, not a number."""
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)

    def loss(s, t, temperature):
        return lt.distill_loss(s, t, temperature=temperature)

    traced = torch.jit.trace(loss, (student, teacher, torch.tensor(2.0)), check_trace=False)
    good = traced(student, teacher, torch.tensor(3.0))
    assert_close(good, loss(student, teacher, torch.tensor(3.0)), torch.float32)
    for bad in (-1.0, 0.0, math.nan):
        assert torch.isnan(traced(student, teacher, torch.tensor(bad)))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_the_fused_linear_loss_refuses_torch_jit_trace():
    hidden, projection = torch.randn(4, 8), torch.randn(6, 8)
    target = torch.tensor([0, 1, -100, 3])
    with pytest.raises(RuntimeError, match=r"cannot be traced by torch\.jit\.trace"):
        torch.jit.trace(lambda h, w, t: lt.linear_smooth_ce(h, w, t), (hidden, projection, target))


@pytest.mark.parametrize("name", ["data_parallel_smooth_ce", "vocab_parallel_smooth_ce"])
def test_the_distributed_losses_take_a_numpy_scalar_smoothing(process_group, name):
    """As every other smoothing of lsr.torch (and ``F.cross_entropy``'s): the number it
    holds. ``data_parallel_smooth_ce`` once checked it and passed the NumPy scalar on."""
    loss = getattr(lt, name)
    expected = loss(_Z, _Y, smoothing=float(np.float32(0.2)))
    got = loss(_Z, _Y, smoothing=np.float32(0.2))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    targets = (torch.arange(20).reshape(4, 5) % 3 == 0).float()
    expected = lt.data_parallel_smooth_bce(_Z, targets, smoothing=float(np.float32(0.2)))
    got = lt.data_parallel_smooth_bce(_Z, targets, smoothing=np.float32(0.2))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

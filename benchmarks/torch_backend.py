"""PyTorch: lsr against ``F.cross_entropy(label_smoothing=...)`` and, for the binary
loss, against ``F.binary_cross_entropy_with_logits`` on targets smoothed by hand
(``(1 - eps) y + eps / 2``, as PyTorch users write it: PyTorch has no binary label
smoothing), eager and torch.compile.

Exact memory (timing process): the peak of the bytes PyTorch's CPU allocator holds during
the step, replayed from ``torch.profiler``'s allocation records, beyond the inputs.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import lsr.torch as lsr_torch
from benchmarks.common import (
    BINARY_PRIOR,
    OVERHEAD_CASES,
    OVERHEAD_LINEAR,
    POSITIVE_FRACTION,
    Case,
    LinearCase,
    Loss,
    Method,
    OverheadPair,
)

# torch.compile notes, once per helper, that it traces through array-api-compat's cached
# type checks; informational for a benchmark.
warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
warnings.filterwarnings(
    "ignore", message=".*should not be instantiated", category=DeprecationWarning
)

NAME = "torch"
DTYPES = ("float32", "bfloat16")
EXACT_MEMORY_METHOD = "torch.profiler allocation record"


def versions() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # (What PyTorch chose its CPU kernels for; lsr.torch reads it too.)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(case.shape, generator=generator).to(getattr(torch, case.dtype))
    if case.kind == "multilabel":
        positive = torch.rand(case.shape, generator=generator) < POSITIVE_FRACTION
        return logits, positive.to(logits.dtype)
    labels = torch.randint(0, case.num_classes, case.label_shape, generator=generator)
    if case.ignore_index is not None:
        ignored = torch.rand(case.label_shape, generator=generator) < case.ignored
        labels = torch.where(ignored, case.ignore_index, labels)
    return logits, labels


def _ignore_index(case: Case) -> int:
    return -100 if case.ignore_index is None else case.ignore_index


def _lsr(case: Case):
    return functools.partial(
        lsr_torch.smooth_ce, smoothing=case.smoothing, ignore_index=_ignore_index(case)
    )


def _native(case: Case, smoothing: float):
    return functools.partial(
        F.cross_entropy, ignore_index=_ignore_index(case), label_smoothing=smoothing
    )


def _lsr_binary(case: Case):
    return functools.partial(lsr_torch.smooth_bce, smoothing=case.smoothing, prior=BINARY_PRIOR)


def _native_binary(smoothing: float):
    def loss(logits, targets):
        if smoothing:
            targets = (1 - smoothing) * targets + smoothing * BINARY_PRIOR
        return F.binary_cross_entropy_with_logits(logits, targets)

    return loss


NATIVE = "F.cross_entropy"
BINARY_NATIVE = "F.binary_cross_entropy_with_logits(smoothed targets)"
BINARY_BOUND = "F.binary_cross_entropy_with_logits eps=0"


def _family(case: Case) -> tuple[str, Any, str, Any, str, Any]:
    """The case's loss family: lsr's name and loss, the native one's, the bound's."""
    if case.loss == "binary":
        return (
            "lsr.torch.smooth_bce",
            _lsr_binary(case),
            BINARY_NATIVE,
            _native_binary(case.smoothing),
            BINARY_BOUND,
            _native_binary(0.0),
        )
    return (
        "lsr.torch.smooth_ce",
        _lsr(case),
        NATIVE,
        _native(case, case.smoothing),
        f"{NATIVE} eps=0",
        _native(case, 0.0),
    )


def losses(case: Case, *, compiled: bool) -> list[Loss]:
    lsr_name, lsr_loss, native, native_loss, bound, bound_loss = _family(case)
    result = [
        Loss(f"{lsr_name} (eager)", "lsr", lsr_loss, "eager", (f"{native} (eager)",)),
        Loss(f"{native} (eager)", "native", native_loss, "eager"),
        Loss(f"{bound} (eager)", "bound", bound_loss, "eager"),
    ]
    if compiled:
        result += [
            Loss(
                f"{lsr_name} (torch.compile)",
                "lsr",
                lsr_loss,
                "compile",
                (f"{native} (torch.compile)",),
            ),
            Loss(f"{native} (torch.compile)", "native", native_loss, "compile"),
        ]
    return result


def sync(output: Any) -> None:
    # CPU kernels run synchronously; on a GPU, wait for the queued kernels.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def step(loss: Loss, mode: str, inputs: tuple[Any, Any]):
    logits, labels = inputs
    fn = loss.fn
    if loss.variant == "compile":
        fn = torch.compile(fn, fullgraph=False, dynamic=False)
    if mode == "forward":

        def forward():
            with torch.no_grad():
                return fn(logits, labels)

        return forward
    leaf = logits.detach().requires_grad_(True)

    def forward_backward():
        value = fn(leaf, labels)
        (gradient,) = torch.autograd.grad(value, leaf)
        return value, gradient

    return forward_backward


def exact_peak_bytes(step_fn) -> int:
    """Peak bytes held by the CPU allocator during ``step_fn()`` beyond those before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        result = step_fn()
        sync(result)
        del result
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def methods(case: Case, mode: str, *, compiled: bool, inputs=None) -> list[Method]:
    if compiled:
        # Every case recompiles the same loss functions; past dynamo's recompile limit it
        # would silently run them eagerly. The previous case's programs are not needed.
        torch._dynamo.reset()
    inputs = make_inputs(case) if inputs is None else inputs
    result = []
    for loss in losses(case, compiled=compiled):
        step_fn = step(loss, mode, inputs)
        result.append(Method(loss, step_fn, functools.partial(exact_peak_bytes, step_fn)))
    return result


def check_agreement(case: Case) -> dict[str, Any]:
    """lsr's loss and gradient against the native loss's on this case (max abs difference)."""
    logits, labels = make_inputs(case)
    _, lsr_loss, native, native_loss, _, _ = _family(case)
    values = {}
    for name, fn in (("lsr", lsr_loss), ("native", native_loss)):
        leaf = logits.detach().requires_grad_(True)
        value = fn(leaf, labels)
        (gradient,) = torch.autograd.grad(value, leaf)
        values[name] = (value.detach().double(), gradient.double())
    return {
        "against": f"{native} (eager)",
        "loss_abs_diff": float((values["lsr"][0] - values["native"][0]).abs()),
        "grad_max_abs_diff": float((values["lsr"][1] - values["native"][1]).abs().max()),
    }


def linear_step(case: LinearCase, method: str):
    """Forward and backward of the output layer + loss, gradients for hidden and weight.

    ``method``: one of ``common.LINEAR_METHODS["torch"]``."""
    hidden, weight, labels = _linear_inputs(case)
    hidden, weight = hidden.requires_grad_(), weight.requires_grad_()
    losses = {
        "lsr": (
            "lsr.torch.linear_smooth_ce",
            lambda: lsr_torch.linear_smooth_ce(
                hidden, weight, labels, smoothing=0.1, chunk_size=case.chunk_size
            ),
        ),
        "plain": (
            "F.cross_entropy(F.linear(...))",
            lambda: F.cross_entropy(F.linear(hidden, weight), labels, label_smoothing=0.1),
        ),
        # ``options`` selects F.linear_cross_entropy's chunked path (without it, it is
        # F.linear then F.cross_entropy); with smoothing it warns and leaves that path.
        "native_fused": (
            "F.linear_cross_entropy(options=...) (chunked, no smoothing)",
            lambda: F.linear_cross_entropy(hidden, weight, labels, options=_chunked_options()),
        ),
        "native_fused_smoothing": (
            "F.linear_cross_entropy(options=..., label_smoothing=0.1)",
            lambda: F.linear_cross_entropy(
                hidden, weight, labels, label_smoothing=0.1, options=_chunked_options()
            ),
        ),
    }
    name, loss = losses[method]

    def run():
        with warnings.catch_warnings():
            # F.linear_cross_entropy warns that smoothing makes it build the whole logits.
            warnings.simplefilter("ignore", UserWarning)
            return torch.autograd.grad(loss(), (hidden, weight))

    return name, run


def _chunked_options():
    """F.linear_cross_entropy's chunked path with PyTorch's own defaults (chunk size and
    accumulation chosen by its "auto" heuristic)."""
    return torch.nn.LinearCrossEntropyOptions()


def _linear_inputs(case: LinearCase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(case.rows, case.width, generator=generator)
    weight = 0.05 * torch.randn(case.classes, case.width, generator=generator)
    labels = torch.randint(0, case.classes, (case.rows,), generator=generator)
    return hidden, weight, labels


def overhead_pairs() -> list[OverheadPair]:
    """Every public loss of ``lsr.torch`` (eager) beside PyTorch's own, on tiny inputs."""
    eps = 0.1
    softmax = make_inputs(OVERHEAD_CASES["softmax"])
    binary = make_inputs(OVERHEAD_CASES["binary"])
    linear = _linear_inputs(OVERHEAD_LINEAR)
    cross_entropy = functools.partial(F.cross_entropy, label_smoothing=eps)
    bce_module = nn.BCEWithLogitsLoss()

    def smoothed(targets):
        return (1 - eps) * targets + eps * BINARY_PRIOR

    def bce(logits, targets):
        return F.binary_cross_entropy_with_logits(logits, smoothed(targets))

    def bce_loss(logits, targets):
        return bce_module(logits, smoothed(targets))

    def plain_linear(hidden, weight, labels):
        return F.cross_entropy(F.linear(hidden, weight), labels, label_smoothing=eps)

    ce_rival, bce_rival = "F.cross_entropy(label_smoothing=0.1)", BINARY_NATIVE
    pairs = [
        (
            "lsr.torch.smooth_ce",
            ce_rival,
            "softmax",
            functools.partial(lsr_torch.smooth_ce, smoothing=eps),
            cross_entropy,
        ),
        (
            "lsr.torch.cross_entropy",
            ce_rival,
            "softmax",
            functools.partial(lsr_torch.cross_entropy, label_smoothing=eps),
            cross_entropy,
        ),
        (
            "lsr.torch.SmoothCrossEntropyLoss",
            "nn.CrossEntropyLoss(label_smoothing=0.1)",
            "softmax",
            lsr_torch.SmoothCrossEntropyLoss(label_smoothing=eps),
            nn.CrossEntropyLoss(label_smoothing=eps),
        ),
        (
            "lsr.torch.smooth_bce",
            bce_rival,
            "binary",
            functools.partial(lsr_torch.smooth_bce, smoothing=eps, prior=BINARY_PRIOR),
            bce,
        ),
        (
            "lsr.torch.binary_cross_entropy_with_logits",
            bce_rival,
            "binary",
            functools.partial(lsr_torch.binary_cross_entropy_with_logits, label_smoothing=eps),
            bce,
        ),
        (
            "lsr.torch.SmoothBCEWithLogitsLoss",
            "nn.BCEWithLogitsLoss()(smoothed targets)",
            "binary",
            lsr_torch.SmoothBCEWithLogitsLoss(label_smoothing=eps),
            bce_loss,
        ),
    ]
    linear_loss = functools.partial(lsr_torch.linear_smooth_ce, smoothing=eps)
    if hasattr(F, "linear_cross_entropy"):  # PyTorch 2.10+
        pairs.append(
            (
                "lsr.torch.linear_smooth_ce",
                "F.linear_cross_entropy(label_smoothing=0.1)",
                "linear",
                linear_loss,
                functools.partial(F.linear_cross_entropy, label_smoothing=eps),
            )
        )
    pairs.append(
        (
            "lsr.torch.linear_smooth_ce",
            "F.cross_entropy(F.linear(...), label_smoothing=0.1)",
            "linear",
            linear_loss,
            plain_linear,
        )
    )
    args = {"softmax": softmax, "binary": binary, "linear": linear}
    return [
        OverheadPair(
            entry,
            rival,
            "eager",
            inputs,
            ours,
            theirs,
            args[inputs],
            2 if inputs == "linear" else 1,
        )
        for entry, rival, inputs, ours, theirs in pairs
    ]


def overhead_step(fn, args: tuple[Any, ...], differentiable: int, mode: str, variant: str):
    """One call of ``fn`` on ``args`` (eager): the loss, or the loss and its gradients with
    respect to the first ``differentiable`` inputs."""
    assert variant == "eager", variant
    if mode == "forward":
        return functools.partial(fn, *args)
    leaves = [arg.detach().requires_grad_(True) for arg in args[:differentiable]]
    rest = args[differentiable:]

    def forward_backward():
        value = fn(*leaves, *rest)
        return value, torch.autograd.grad(value, leaves)

    return forward_backward


def to_numpy(tensor: torch.Tensor) -> Any:
    return tensor.detach().float().numpy()

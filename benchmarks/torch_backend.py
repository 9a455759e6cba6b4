"""PyTorch: lsr against ``F.cross_entropy(label_smoothing=...)``, eager and torch.compile.

Memory is the exact peak of the bytes PyTorch's CPU allocator holds during the step,
replayed from ``torch.profiler``'s allocation records (``profile_memory=True``), beyond
the inputs that already existed.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
import torch.nn.functional as F

import lsr
from benchmarks.common import Case, Loss, Method

# torch.compile notes, once per helper, that it traces through array-api-compat's cached
# type checks; informational for a benchmark.
warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")

NAME = "torch"
KINDS = ("labels", "segmentation")

try:
    import lsr.torch as lsr_torch
except ImportError:  # The adapter is not there yet: time the generic function.
    lsr_torch = None


def versions() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lsr_implementation": "lsr.torch.smooth_ce"
        if lsr_torch is not None
        else "lsr.smooth_ce (generic, native autograd: lsr.torch not importable)",
    }


def make_inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(case.shape, generator=generator, dtype=torch.float32)
    label_shape = case.shape[: case.axis] + case.shape[case.axis + 1 :]
    labels = torch.randint(0, case.num_classes, label_shape, generator=generator)
    if case.ignore_index is not None:
        ignored = torch.rand(label_shape, generator=generator) < 0.1
        labels = torch.where(ignored, case.ignore_index, labels)
    return logits, labels


def _lsr_loss(case: Case):
    if lsr_torch is not None:
        ignore_index = -100 if case.ignore_index is None else case.ignore_index
        return functools.partial(
            lsr_torch.smooth_ce, smoothing=case.smoothing, ignore_index=ignore_index, axis=1
        )
    return functools.partial(
        lsr.smooth_ce, smoothing=case.smoothing, ignore_index=case.ignore_index, axis=1
    )


def _torch_loss(case: Case, smoothing: float):
    ignore_index = -100 if case.ignore_index is None else case.ignore_index
    return functools.partial(F.cross_entropy, ignore_index=ignore_index, label_smoothing=smoothing)


def lsr_losses(case: Case, *, compiled: bool) -> list[Loss]:
    name = "lsr.torch.smooth_ce" if lsr_torch is not None else "lsr.smooth_ce"
    losses = [Loss(f"{name} (eager)", "lsr", _lsr_loss(case), "eager", "F.cross_entropy (eager)")]
    if compiled:
        losses.append(
            Loss(
                f"{name} (torch.compile)",
                "lsr",
                _lsr_loss(case),
                "compile",
                "F.cross_entropy (torch.compile)",
            )
        )
    return losses


def baseline_losses(case: Case, *, compiled: bool) -> list[Loss]:
    losses = [
        Loss("F.cross_entropy (eager)", "baseline", _torch_loss(case, case.smoothing), "eager"),
        Loss("F.cross_entropy eps=0 (eager)", "bound", _torch_loss(case, 0.0), "eager"),
    ]
    if compiled:
        losses.append(
            Loss(
                "F.cross_entropy (torch.compile)",
                "baseline",
                _torch_loss(case, case.smoothing),
                "compile",
            )
        )
    return losses


def sync(output: Any) -> None:
    # CPU kernels run synchronously; on a GPU, wait for the queued kernels.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _step(loss: Loss, mode: str, logits: torch.Tensor, labels: torch.Tensor):
    fn = loss.fn
    if loss.variant == "compile":
        fn = torch.compile(fn, fullgraph=False, dynamic=False)
    if mode == "forward":
        inputs = logits.detach()

        def forward():
            with torch.no_grad():
                return fn(inputs, labels)

        return forward
    leaf = logits.detach().requires_grad_(True)

    def forward_backward():
        value = fn(leaf, labels)
        (gradient,) = torch.autograd.grad(value, leaf)
        return value, gradient

    return forward_backward


def peak_allocated_bytes(step) -> int:
    """Peak bytes held by the CPU allocator during ``step()`` beyond what existed before."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        result = step()
        sync(result)
        del result
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def methods(case: Case, mode: str, *, compiled: bool = False) -> list[Method]:
    if compiled:
        # Every case recompiles the same loss functions; past dynamo's recompile limit it
        # would silently run them eagerly. The previous case's programs are not needed.
        torch._dynamo.reset()
    logits, labels = make_inputs(case)
    result = []
    for loss in lsr_losses(case, compiled=compiled) + baseline_losses(case, compiled=compiled):
        step = _step(loss, mode, logits, labels)
        result.append(
            Method(
                name=loss.name,
                role=loss.role,
                step=step,
                peak_bytes=functools.partial(peak_allocated_bytes, step),
                memory_method="torch.profiler allocation record (exact)",
                compare_to=loss.compare_to,
            )
        )
    return result


def check_agreement(case: Case) -> dict[str, float]:
    """lsr's loss and gradient against F.cross_entropy's on this case (max abs difference)."""
    logits, labels = make_inputs(case)
    values = {}
    for name, fn in (("lsr", _lsr_loss(case)), ("torch", _torch_loss(case, case.smoothing))):
        leaf = logits.detach().requires_grad_(True)
        value = fn(leaf, labels)
        (gradient,) = torch.autograd.grad(value, leaf)
        values[name] = (value.detach(), gradient)
    return {
        "loss_abs_diff": float((values["lsr"][0] - values["torch"][0]).abs()),
        "grad_max_abs_diff": float((values["lsr"][1] - values["torch"][1]).abs().max()),
    }

"""The smoothed sigmoid (binary, multi-label) cross-entropy in PyTorch.

* ``smooth_bce``: lsr's keyword grammar (``lsr.smooth_bce``'s), on torch tensors.
* ``binary_cross_entropy_with_logits``: a drop-in for
  ``torch.nn.functional.binary_cross_entropy_with_logits`` (the same parameters, in the
  same positions, with the same defaults), plus the keyword-only ``label_smoothing`` and
  ``prior``.
* ``SmoothBCEWithLogitsLoss``: a drop-in subclass of ``nn.BCEWithLogitsLoss`` (same
  constructor, same state dict) whose forward is ``binary_cross_entropy_with_logits``.

The gradient with respect to the logits is a ``torch.autograd.Function`` (``SmoothBCE``)
whose forward is ``lsr._core.binary_loss`` and whose backward is
``lsr._core.binary_grad``: it keeps the logits as given (no copy), the targets (integer
ones widened to int64, so that ``ignore_index`` compares by value), the mean's
denominator and the option tensors, where autograd through the core's plain ops
would keep several logits-sized temporaries. Small inputs on the CPU take shorter
paths: PyTorch's own ``F.binary_cross_entropy_with_logits`` on the core's smoothed
targets where ``_core.kernel_form_applies`` (its loss trusted only where finite), else,
with a gradient, ``SmoothBCESmall``: the gradient made in the forward pass (float32 for
half-precision logits), handed over by backward. A repeated plain call
(``is_plain_eager_binary_call``) whose options a recent call had goes to them from a
handful of tests, its targets' values the one thing checked again.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad

from lsr import _core
from lsr._checks_binary import BINARY_PRIOR_NAMES, check_smooth_bce, known_binary_options
from lsr._compat import values_are_cheap
from lsr._validation import check_choice, check_fraction, fail_type, fail_value
from lsr.torch._arguments import (
    COMPILES_THROUGH_OPERATORS,
    check_floating_dtype,
    check_same_device,
    check_tensor,
    checked_smoothing,
    is_int64,
    refused_while_tracing,
    traced_constants,
)
from lsr.torch._autograd import (
    is_batched,
    is_finite,
    is_plain_eager_mode,
    needs_autograd_through_core,
    row_blocks,
    scratch_block,
    without_autocast,
)
from lsr.torch._functional import torch_reduction
from lsr.torch._namespace import HALF, xp

__all__ = [
    "SmoothBCE",
    "SmoothBCESmall",
    "SmoothBCEWithLogitsLoss",
    "binary_cross_entropy_with_logits",
    "forward_smooth_bce",
    "smooth_bce",
]


class SmoothBCE(torch.autograd.Function):
    """Forward through ``_core.binary_loss``, backward through ``_core.binary_grad``.

    Inputs: the logits (any floating dtype; half precision is computed in float32), the
    targets, the spec's five array fields (tensors or None), the rest of the spec, and
    optionally the core's ``all_reduce_sum`` (a data-parallel global reduction: the
    denominator saved for backward is then the global one).
    Saved for backward: the logits themselves (no copy), the targets (integer ones in
    int64), the mean's
    denominator (0-d) and the option tensors that were given (weights, prior, ...). With
    ``create_graph=True`` the backward's plain ops are recorded, so double backward gets
    exact second derivatives.
    """

    # The forward and backward are plain torch ops, so functorch can batch them itself.
    generate_vmap_rule = True

    @staticmethod
    def forward(
        logits, labels, smoothing, prior, weight, pos_weight, where, static, all_reduce_sum=None
    ):
        compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
        spec = static.with_arrays((smoothing, prior, weight, pos_weight, where))
        loss, denominator = _core.binary_loss(
            compute_logits, labels, spec, xp=xp, all_reduce_sum=all_reduce_sum
        )
        # A Python int when nothing can be left out; a tensor output is what
        # setup_context can save.
        denominator = torch.as_tensor(
            denominator, dtype=compute_logits.dtype, device=compute_logits.device
        )
        return loss, denominator

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, labels, *arrays, static = inputs[:8]
        _, denominator = output
        ctx.mark_non_differentiable(denominator)
        ctx.given = tuple(value is not None for value in arrays)
        ctx.save_for_backward(
            logits, labels, denominator, *(value for value in arrays if value is not None)
        )
        ctx.static = static

    @staticmethod
    def backward(ctx, grad_loss, grad_denominator):
        logits, labels, denominator, *given = ctx.saved_tensors
        if values_are_cheap(denominator):
            # A count, read once: the mean's scale is then one division, not a guarded
            # one of four ops on a 0-d tensor (as much as a small batch's arithmetic).
            denominator = float(denominator)
        values = iter(given)
        arrays = tuple(next(values) if present else None for present in ctx.given)
        spec = ctx.static.with_arrays(arrays)
        # Eager only: not with create_graph (the ops are recorded: sigmoid keeps its
        # result), nor for a batched cotangent (autograd's vmap cannot update in place),
        # nor while torch.compile traces (it fuses the steps anyway).
        in_place = (
            not torch.compiler.is_compiling()
            and not torch.is_grad_enabled()
            and not is_batched(grad_loss)
        )
        # backward() called inside an autocast region runs under it too.
        with without_autocast(logits.device.type):
            if in_place and _blocked(logits, ctx.static) and not is_batched(logits):
                # Half precision: block by block into the gradient, no float32 copy
                # (not for logits batched by vmap, which a scratch block cannot hold).
                blocks = row_blocks(logits, -1)
                grad = _core.blocked_binary_grad(
                    logits,
                    labels,
                    denominator,
                    grad_loss.to(torch.float32),
                    spec,
                    xp=xp,
                    blocks=blocks,
                    scratch=scratch_block(logits, blocks),
                    out=torch.empty_like(logits),
                )
                return grad, None, None, None, None, None, None, None, None
            compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
            grad = _core.binary_grad(
                compute_logits,
                labels,
                denominator,
                grad_loss.to(compute_logits.dtype),
                spec,
                xp=xp,
                in_place=in_place,
                overwrite=compute_logits is not logits,  # (a float32 copy of ours)
            )
        return grad.to(logits.dtype), None, None, None, None, None, None, None, None


def _blocked(logits: torch.Tensor, static: Any) -> bool:
    """Whether the eager Function converts half-precision logits block by block (a
    reduced loss: "none" returns a float32 loss per element, as large as a copy)."""
    return logits.dtype in HALF and static.reduction != "none"


class SmoothBCEEager(torch.autograd.Function):
    """``SmoothBCE`` for eager calls outside ``torch.func`` transforms and
    ``torch.compile``, in the old style (``forward(ctx, ...)``): ``apply`` of a Function
    with a separate ``setup_context`` binds its arguments through ``inspect.signature``
    on every call (tens of microseconds, as much as a small batch's whole loss)."""

    @staticmethod
    def forward(
        ctx, logits, labels, smoothing, prior, weight, pos_weight, where, static, all_reduce_sum
    ):
        inputs = (logits, labels, smoothing, prior, weight, pos_weight, where, static)
        if _blocked(logits, static):
            # Half precision: converted block by block, never as a whole float32 copy.
            spec = static.with_arrays((smoothing, prior, weight, pos_weight, where))
            blocks = row_blocks(logits, -1)
            loss, denominator = _core.blocked_binary_loss(
                logits,
                labels,
                spec,
                xp=xp,
                blocks=blocks,
                scratch=scratch_block(logits, blocks),
                all_reduce_sum=all_reduce_sum,
            )
            output = (loss, torch.as_tensor(denominator, dtype=loss.dtype, device=loss.device))
        else:
            output = SmoothBCE.forward(*inputs, all_reduce_sum)
        SmoothBCE.setup_context(ctx, inputs, output)
        return output

    backward = SmoothBCE.backward


class SmoothBCESmall(torch.autograd.Function):
    """Eager PyTorch's path for small inputs on the CPU (``is_small_binary``) that need a
    gradient: the forward pass computes the loss (``_core.binary_loss``) and its gradient
    for a unit cotangent (``_core.binary_grad``, in place) together, and backward hands
    the gradient over, scaled by the cotangent. There the fixed cost of each call (the
    Python of a second pass over the spec, autograd's bookkeeping) is most of the time;
    the gradient is held from forward to backward, with the logits' shape, in the compute
    dtype (float32 for half-precision logits: scaled by the cotangent there and rounded
    once, as the eager Function's; a float16 gradient scaled in float16 would overflow
    at a loss scale of 65536 and lose the small entries that loss scaling is for).

    A cotangent that is not finite, a batch of cotangents (autograd's vmap), a second
    backward (``retain_graph=True``) and a double backward (``create_graph=True``, the
    ops recorded) take the gradient from ``_core.binary_grad`` with the cotangent, as the
    eager Function's backward does: a left-out element's gradient is then 0 whatever
    its cotangent (the held gradient is masked already, and ``0 * inf`` is NaN).
    Old-style ``forward(ctx, ...)``, as ``SmoothBCEEager``; the spec (whose option
    tensors need no gradient: ``needs_autograd_through_core``) is kept on ``ctx``.
    """

    @staticmethod
    def forward(ctx, logits, labels, spec, all_reduce_sum):
        compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
        loss, denominator = _core.binary_loss(
            compute_logits, labels, spec, xp=xp, all_reduce_sum=all_reduce_sum
        )
        # A number, as the eager Function's backward reads it (values are cheap here).
        denominator = float(denominator)
        grad = _core.binary_grad(
            compute_logits,
            labels,
            denominator,
            1.0,
            spec,
            xp=xp,
            in_place=True,
            overwrite=compute_logits is not logits,  # (a float32 copy of ours)
        )
        ctx.save_for_backward(logits, labels)
        ctx.spec, ctx.denominator, ctx.fused_grad = spec, denominator, grad
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad, ctx.fused_grad = ctx.fused_grad, None
        if grad is not None and not torch.is_grad_enabled() and not is_batched(grad_loss):
            if grad_loss.ndim == 0:
                # (The usual cotangent of a scalar loss is 1: reading it on the CPU is free.)
                scale = grad_loss.item()
                finite = math.isfinite(scale)
                if finite and scale != 1.0:
                    grad.mul_(scale)
            else:
                finite = bool(grad_loss.isfinite().all())
                if finite:
                    grad.mul_(grad_loss.to(grad.dtype))
            if finite:
                return grad.to(ctx.saved_tensors[0].dtype), None, None, None
        logits, labels = ctx.saved_tensors
        with without_autocast(logits.device.type):
            compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
            grad = _core.binary_grad(
                compute_logits,
                labels,
                ctx.denominator,
                grad_loss.to(compute_logits.dtype),
                ctx.spec,
                xp=xp,
            )
        return grad.to(logits.dtype), None, None, None


# Inputs of at most this many logits take the binary loss's small-input paths. (Not the
# softmax loss's bound, which is one block: here the eager Function was faster above it,
# forward + backward on a CPU with AVX-512, float32, smoothing 0.1: at 4096 x 80 1074
# against 1455 microseconds, at 12000 x 80 2639 against 3813, in
# benchmarks/results/2026-12-06-avx512/binary_bound.txt.)
SMALL_BINARY_ELEMENTS = 1 << 16


def is_small_binary(input: torch.Tensor) -> bool:
    """Whether the small-input paths (PyTorch's kernel where the core allows it, else
    ``SmoothBCESmall``) are the faster ones: CPU logits of at most
    ``SMALL_BINARY_ELEMENTS`` elements (read when called)."""
    return input.is_cpu and 0 < input.numel() <= SMALL_BINARY_ELEMENTS


def _loss_by_pytorchs_kernel(
    input: torch.Tensor, labels: torch.Tensor, spec: _core.BinarySpec
) -> torch.Tensor | None:
    """``F.binary_cross_entropy_with_logits`` on the core's smoothed targets, for small
    CPU inputs whose spec ``_core.kernel_form_applies`` to: one C++ call, differentiated
    by PyTorch's own backward node (the same gradient, ``sigmoid(z) - t``), where lsr's
    pass costs a dozen operations and as much Python. None where that loss is not finite
    (an infinite logit: NaN or inf there, where lsr's pass gives the exact value), for
    the caller to compute it by lsr's pass."""
    logits = input.to(_core.compute_dtype(xp, input.dtype))
    targets = _core.smooth_binary_targets(labels, spec, xp=xp, like=logits)
    loss = F.binary_cross_entropy_with_logits(
        logits, targets, spec.weight, reduction=spec.reduction
    )
    return loss if is_finite(loss) else None


def is_plain_eager_binary_call(
    input: Any, target: Any, weight: Any, pos_weight: Any, where: Any, smoothing: Any, prior: Any
) -> bool:
    """Whether ``smooth_bce`` may take its route for repeated small calls
    (``_small_binary``): small CPU logits (``is_small_binary``) that need a gradient
    (``requires_grad``, in grad mode), CPU targets that need none, no weight,
    ``pos_weight`` or mask, a float smoothing and a float or named prior, and nothing
    that changes the path (autocast,
    ``torch.compile``, ``torch.jit.trace``, ``torch.func``, forward-mode AD). Each is a
    test the full path makes on its way to ``_small_binary`` for such a call, or one
    that keeps the route to the calls it was measured for (a gradient for the input;
    not while tracing, whose calls the key already refuses), as
    ``lsr.torch._functional.is_plain_eager_call`` for the softmax loss. (Some are also
    settled by the key or by the mode tests, such as the target's device and its
    ``torch.func`` wrapper: they stay here, so that the route does not depend on how
    the key is made.)"""
    return (
        type(smoothing) is float
        and type(prior) in (float, str)
        and weight is None
        and pos_weight is None
        and where is None
        and isinstance(input, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and input.requires_grad
        and torch.is_grad_enabled()
        and not target.requires_grad
        and is_small_binary(input)
        and target.is_cpu
        and is_plain_eager_mode(input)
        and not torch._C._functorch.is_functorch_wrapped_tensor(target)
        and forward_ad.unpack_dual(target).tangent is None
    )


def _small_binary(
    input: torch.Tensor, labels: torch.Tensor, spec: _core.BinarySpec, all_reduce_sum: Any
) -> torch.Tensor | None:
    """The loss of a small eager CPU call (``is_small_binary``; no tensor among the
    options needs a gradient): PyTorch's own kernel where ``_core.kernel_form_applies``
    and its loss is finite, else, where the input needs a gradient, ``SmoothBCESmall``;
    None for the caller's Function (no gradient asked for)."""
    if all_reduce_sum is None and _core.kernel_form_applies(spec):
        loss = _loss_by_pytorchs_kernel(input, labels, spec)
        if loss is not None:
            return loss
    if input.requires_grad and torch.is_grad_enabled():
        return SmoothBCESmall.apply(input, labels, spec, all_reduce_sum)
    return None


def _forward_mode(input: torch.Tensor) -> bool:
    """Whether forward mode differentiates ``input``: a dual tensor of
    ``torch.autograd.forward_ad``, or a ``torch.func`` jvp (jvp, jacfwd, hessian). The
    Function has no jvp rule; these go through autograd of the core's plain ops. Where
    torch's private interpreter stack is not available, every torch.func call counts."""
    if forward_ad.unpack_dual(input).tangent is not None:
        return True
    if not torch._C._functorch.is_functorch_wrapped_tensor(input):
        return False
    try:
        from torch._C._functorch import TransformType
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    except ImportError:  # pragma: no cover - other torch versions
        return True
    interpreters = retrieve_all_functorch_interpreters()
    return any(interpreter.key() == TransformType.Jvp for interpreter in interpreters)


def _check_optional_tensor(name: str, value: Any, input: torch.Tensor) -> None:
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        fail_type(f"`{name}` must be a torch.Tensor or None.", name, value)
    check_same_device(name, value, input)


def _check_prior_type(prior: Any, input: torch.Tensor) -> None:
    if isinstance(prior, torch.Tensor):
        check_same_device("prior", prior, input)
    elif isinstance(prior, bool) or not isinstance(prior, (numbers.Real, str)):
        fail_type(
            "`prior` must be a number in [0, 1], 'uniform' or a torch.Tensor of smoothing "
            "values (one per label).",
            "prior",
            prior,
        )


def smooth_bce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    smoothing: float | torch.Tensor = 0.1,
    prior: float | str | torch.Tensor = 0.5,
    axis: int = -1,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    where: torch.Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Label-smoothed sigmoid (binary) cross-entropy, one independent target per logit.

    ``lsr.smooth_bce`` on torch tensors: each target ``y`` becomes
    ``y' = (1 - smoothing) y + smoothing u`` (``u`` the smoothing value ``prior``) and
    each element's loss is ``-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))]``.
    With ``smoothing=0`` it is ``F.binary_cross_entropy_with_logits(input, target,
    weight, pos_weight=pos_weight, reduction=reduction)``; ``binary_cross_entropy_with_logits``
    is the drop-in with that function's own signature.

    Args:
        input: logits of any shape, one per (element, label); float16/bfloat16 are
            computed in float32.
        target: targets of the input's shape: bool or integer 0/1 (multi-hot), or
            floating values in [0, 1] of the input's dtype (soft targets).
        smoothing: epsilon in [0, 1]; a float or a 0-d tensor.
        prior: the smoothing value ``u`` in [0, 1]: a number (0.5: towards 1/2, as
            Keras), ``"uniform"`` (``1/K`` for the K labels on ``axis``, as timm), or a
            tensor that broadcasts to the input (one value per label).
        axis: the label axis (for ``prior="uniform"`` only).
        weight: element weights that broadcast to the input (PyTorch's ``weight``).
        pos_weight: weights ``r`` of the positive term that broadcast to the input, one
            per label (PyTorch's ``pos_weight``).
        where: optional boolean mask (broadcasting to the input) of the elements to keep.
        ignore_index: integer targets equal to it are left out (loss and gradient 0,
            not counted by the mean). Integer targets only.
        reduction: ``"none"`` (the input's shape), ``"sum"`` or ``"mean"`` over the kept
            elements (weights are not in the denominator, as PyTorch); a mean over no
            kept element is 0, with a zero gradient.

    Returns:
        The loss: 0-d for "mean" and "sum", else the input's shape; float32 for half
        precision inputs (whose gradient keeps the input's dtype), else the input's
        dtype.

    Raises:
        TypeError: non-tensor arguments, a non-floating input, floating targets of
            another dtype than the input's.
        ValueError: tensors on different devices, targets of another shape, targets
            outside [0, 1] (read on concrete CPU tensors; under ``torch.compile``,
            ``torch.func`` or on an accelerator the loss is NaN there instead), options
            out of range.

    Example:
        >>> import torch
        >>> import lsr.torch
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> target = torch.tensor([[1, 0, 1], [0, 1, 0]])
        >>> print(f"{lsr.torch.smooth_bce(logits, target, smoothing=0.1).item():.4f}")
        0.3680
        >>> smoothed = target * 0.9 + 0.1 * 0.5  # the same targets, smoothed by hand
        >>> expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, smoothed)
        >>> print(f"{expected.item():.4f}")
        0.3680
    """
    return forward_smooth_bce(
        input,
        target,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        weight=weight,
        pos_weight=pos_weight,
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def forward_smooth_bce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    smoothing: Any,
    prior: Any,
    axis: int,
    weight: Any,
    pos_weight: Any,
    where: Any,
    ignore_index: Any,
    reduction: str,
    all_reduce_sum: Any = None,
) -> torch.Tensor:
    """``smooth_bce``'s checks and forward; ``all_reduce_sum`` (the core's, over the
    processes that split the batch) makes "sum" and "mean" global, for
    ``data_parallel_smooth_bce``."""
    if all_reduce_sum is None and torch.compiler.is_compiling():
        # The route under torch.compile: the checks and the core run inside one
        # operator's decomposition (``lsr::smooth_bce``), where dynamo guards none of
        # their Python (see ``_traced_smooth_bce``, and ``lsr::smooth_ce``).
        smoothing, prior = traced_constants(smoothing, prior)
        if COMPILES_THROUGH_OPERATORS and is_plain_compiled_binary_call(
            input,
            target,
            smoothing,
            prior,
            axis,
            weight,
            pos_weight,
            where,
            ignore_index,
            reduction,
        ):
            return torch.ops.lsr.smooth_bce(
                input,
                target,
                smoothing,
                prior,
                axis,
                weight,
                pos_weight,
                where,
                ignore_index,
                reduction,
            )
    return _checked_smooth_bce(
        input,
        target,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        weight=weight,
        pos_weight=pos_weight,
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
        all_reduce_sum=all_reduce_sum,
    )


def is_plain_compiled_binary_call(
    input: Any,
    target: Any,
    smoothing: Any,
    prior: Any,
    axis: Any,
    weight: Any,
    pos_weight: Any,
    where: Any,
    ignore_index: Any,
    reduction: Any,
) -> bool:
    """Whether ``smooth_bce`` hands a call under ``torch.compile`` to ``lsr::smooth_bce``
    (a float ``prior``) or ``lsr::smooth_bce.named_prior`` (a named one): every argument
    of a type the schema holds as it is (no conversion, such as a bool read as an int,
    that would hide a value the checks refuse, and ints in int64). Other calls are
    traced through the full path."""
    return (
        isinstance(input, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and type(smoothing) is float
        and type(prior) in (float, str)
        and is_int64(axis)
        and all(
            value is None or isinstance(value, torch.Tensor)
            for value in (weight, pos_weight, where)
        )
        and (ignore_index is None or is_int64(ignore_index))
        and type(reduction) is str
    )


def _traced_smooth_bce(
    input: torch.Tensor,
    target: torch.Tensor,
    smoothing: float,
    prior: float | str,
    axis: int,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    where: torch.Tensor | None,
    ignore_index: int | None,
    reduction: str,
) -> torch.Tensor:
    """``lsr::smooth_bce``, the operator that ``smooth_bce`` calls under
    ``torch.compile``: the full path (``_checked_smooth_bce``), as its decomposition.
    As ``lsr.torch._functional._traced_smooth_ce`` for the softmax loss: dynamo runs it
    on fake tensors without tracing it, AOTAutograd traces it to aten operators, and an
    argument the checks refuse while dynamo runs it becomes a graph break."""
    try:
        return _checked_smooth_bce(
            input,
            target,
            smoothing=smoothing,
            prior=prior,
            axis=axis,
            weight=weight,
            pos_weight=pos_weight,
            where=where,
            ignore_index=ignore_index,
            reduction=reduction,
            all_reduce_sum=None,
        )
    except (TypeError, ValueError) as error:
        refused_while_tracing(error)
        raise


# (Defined once, when lsr.torch is imported; one overload for each kind of prior.)
for _overload, _prior in (("", "float"), (".named_prior", "str")):
    torch.library.define(
        f"lsr::smooth_bce{_overload}",
        f"(Tensor input, Tensor target, float smoothing, {_prior} prior, int axis, "
        "Tensor? weight, Tensor? pos_weight, Tensor? where, int? ignore_index, "
        "str reduction) -> Tensor",
    )
    # (``disable``: see ``lsr::smooth_ce`` in ``lsr.torch._functional``.)
    torch.library.impl(
        f"lsr::smooth_bce{_overload}",
        "CompositeImplicitAutograd",
        torch.compiler.disable(_traced_smooth_bce),
    )


def _checked_smooth_bce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    smoothing: Any,
    prior: Any,
    axis: int,
    weight: Any,
    pos_weight: Any,
    where: Any,
    ignore_index: Any,
    reduction: str,
    all_reduce_sum: Any,
) -> torch.Tensor:
    """``forward_smooth_bce``'s full path: the route for repeated eager calls, else every
    argument checked, then the path for the mode and the options."""
    # check_smooth_bce's options but the tensors, as the known options' key holds them.
    options: dict[str, Any] = dict(
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore_index,
        reduction=reduction,
        logits_name="input",
        labels_name="target",
    )
    known = None
    if all_reduce_sum is None and is_plain_eager_binary_call(
        input, target, weight, pos_weight, where, smoothing, prior
    ):
        # The route for repeated small calls (where Python's time is most of the
        # call's): options an earlier call had are not checked again, and the tests
        # above stand for the full path's on its way to the small paths.
        known = known_binary_options(input, target, namespace=xp, **options)
        if known is not None:
            labels, spec = known.labels_and_spec(target)
            loss = _small_binary(input, labels, spec, None)
            if loss is not None:  # (always: the input needs a gradient)
                return loss
    elif (
        weight is None
        and pos_weight is None
        and where is None
        and isinstance(input, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and input.is_cpu
        and target.is_cpu
        and not torch.compiler.is_compiling()
    ):
        # Options an earlier call had (and tensors of its types, shapes and dtypes, on
        # one device): only the labels' values are checked again. (Not while tracing,
        # where a float may be symbolic: see ``traced_constants``.)
        known = known_binary_options(input, target, namespace=xp, **options)
    if known is not None:
        labels, spec = known.labels_and_spec(target)
    else:
        check_tensor("input", input)
        check_tensor("target", target)
        check_same_device("target", target, input)
        check_floating_dtype("target", target, input)
        if tuple(target.shape) != tuple(input.shape):
            # Named as PyTorch names it (the core says `labels`).
            fail_value(
                f"`target` must have the input's shape {tuple(input.shape)}: one 0/1 (or "
                "soft) target per logit.",
                "target.shape",
                tuple(target.shape),
            )
        for name, value in (("weight", weight), ("pos_weight", pos_weight), ("where", where)):
            _check_optional_tensor(name, value, input)
        _check_prior_type(prior, input)
        smoothing = checked_smoothing("smoothing", smoothing)
        smoothing, prior = traced_constants(smoothing, prior)
        options.update(smoothing=smoothing, prior=prior)
        _, labels, spec = check_smooth_bce(
            input,
            target,
            weight=weight,
            pos_weight=pos_weight,
            where=where,
            namespace=xp,
            **options,
        )
    with without_autocast(input.device.type):
        compiling = torch.compiler.is_compiling()
        if (
            needs_autograd_through_core(target, weight, smoothing, prior)
            or needs_autograd_through_core(pos_weight, None, None, None)
            or (not compiling and _forward_mode(input))
        ):
            logits = input.to(_core.compute_dtype(xp, input.dtype))
            loss, _ = _core.binary_loss(logits, labels, spec, xp=xp, all_reduce_sum=all_reduce_sum)
            return loss
        # The original input (a half one is converted inside the Function, so that
        # backward keeps the input only).
        function: type[torch.autograd.Function] = SmoothBCE
        if not (
            compiling
            or torch._C._are_functorch_transforms_active()
            or torch._C._functorch.is_functorch_wrapped_tensor(input)
        ):
            if is_small_binary(input):
                loss = _small_binary(input, labels, spec, all_reduce_sum)
                if loss is not None:
                    return loss
            function = SmoothBCEEager
        tensors, static = spec.arrays(), spec.static()
        loss, _ = function.apply(input, labels, *tensors, static, all_reduce_sum)
    return loss


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
    *,
    label_smoothing: float | torch.Tensor = 0.0,
    prior: float | str | torch.Tensor = 0.5,
) -> torch.Tensor:
    r"""``torch.nn.functional.binary_cross_entropy_with_logits``, computed by lsr, with
    label smoothing: change the prefix only.

    The parameters shared with PyTorch's function have its names, positions, kinds and
    defaults, so ``F.binary_cross_entropy_with_logits(...)`` becomes
    ``lsr.torch.binary_cross_entropy_with_logits(...)`` with nothing else changed; with
    ``label_smoothing=0`` its values and gradients are PyTorch's. The keyword-only
    ``label_smoothing`` and ``prior`` smooth every target towards ``prior``:
    ``y' = (1 - label_smoothing) y + label_smoothing * prior`` (``prior=0.5`` is Keras'
    and YOLOv5's convention; see ``lsr.binary_smoothing`` for the others).

    Where it differs from PyTorch's, on purpose: targets may also be bool or integer
    0/1; targets outside [0, 1] raise a ``ValueError`` (on concrete CPU tensors; under
    ``torch.compile`` or ``torch.func`` the loss is NaN there) instead of giving a
    number; floating targets must have the input's dtype (PyTorch would promote the
    loss to theirs); a "mean" over an empty input is 0, not NaN.

    Args:
        input: logits of any shape.
        target: targets of the input's shape: floating values in [0, 1] (the input's
            dtype), or bool/integer 0/1.
        weight: element weights that broadcast to the input.
        size_average: deprecated, as in PyTorch: with ``reduce`` it overrides
            ``reduction`` (None counts as True; ``reduce`` false gives "none", else
            ``size_average`` chooses "mean" or "sum") and warns (``UserWarning``).
        reduce: deprecated, as in PyTorch; see ``size_average``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"`` (PyTorch's deprecated
            ``"elementwise_mean"`` means "mean", with a warning).
        pos_weight: weights of the positive term, one per label (broadcasting to the
            input).
        label_smoothing: epsilon in [0, 1]; a float or a 0-d tensor.
        prior: the smoothing value ``u`` in [0, 1]: a number, ``"uniform"`` (``1/K`` over
            the K labels of the last axis) or a tensor of one value per label.

    Returns:
        As PyTorch's: a 0-d tensor for "mean" and "sum", else the input's shape; in the
        input's dtype, also for float16/bfloat16 (computed in float32 and rounded once),
        and float32 under ``torch.autocast``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> import lsr.torch
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        >>> pos_weight = torch.tensor([1.0, 2.0, 3.0])
        >>> ours = lsr.torch.binary_cross_entropy_with_logits(
        ...     logits, target, None, pos_weight=pos_weight
        ... )
        >>> theirs = F.binary_cross_entropy_with_logits(logits, target, None, pos_weight=pos_weight)
        >>> print(f"{ours.item():.4f} {theirs.item():.4f}")
        0.4633 0.4633
        >>> smoothed = lsr.torch.binary_cross_entropy_with_logits(
        ...     logits, target, label_smoothing=0.2, prior=0.5
        ... )
        >>> expected = F.binary_cross_entropy_with_logits(logits, 0.8 * target + 0.1)
        >>> print(f"{smoothed.item():.4f} {expected.item():.4f}")
        0.4388 0.4388
    """
    reduction = torch_reduction(size_average, reduce, reduction)
    # Checked here so that errors name PyTorch's parameter, not smooth_bce's `smoothing`.
    label_smoothing = checked_smoothing("label_smoothing", label_smoothing)
    label_smoothing, prior = traced_constants(label_smoothing, prior)
    check_fraction("label_smoothing", label_smoothing)
    loss = smooth_bce(
        input,
        target,
        smoothing=label_smoothing,
        prior=prior,
        axis=-1,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
    )
    # PyTorch returns half-precision losses in the dtype its arithmetic promotes to (the
    # input's, or a floating target's wider one), and float32 under autocast (which runs
    # it in float32).
    if input.dtype in HALF and not torch.is_autocast_enabled(input.device.type):
        wanted = torch.result_type(input, target) if target.is_floating_point() else input.dtype
        loss = loss.to(wanted)
    return loss


class SmoothBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    r"""``nn.BCEWithLogitsLoss`` computed by lsr, with label smoothing.

    Same constructor (names, positions and defaults), attributes and state dict as
    ``nn.BCEWithLogitsLoss`` (it is a subclass; ``weight`` and ``pos_weight`` are its
    buffers; a tensor ``prior`` adds a ``prior`` buffer), and its forward is
    ``lsr.torch.binary_cross_entropy_with_logits``: replacing the class name is the whole
    migration. The keyword-only
    ``label_smoothing`` and ``prior`` are lsr's additions.

    Args:
        weight: element weights that broadcast to the input.
        size_average: deprecated (as in PyTorch); use ``reduction``.
        reduce: deprecated (as in PyTorch); use ``reduction``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        pos_weight: weights of the positive term, one per label.
        label_smoothing: epsilon in [0, 1].
        prior: the smoothing value ``u`` in [0, 1]: a number, ``"uniform"`` or a tensor
            of one value per label (registered as a buffer).

    Shape:
        input: any shape; target: the input's shape; output: a scalar, or the input's
        shape for ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lsr.torch import SmoothBCEWithLogitsLoss
        >>> criterion = SmoothBCEWithLogitsLoss(label_smoothing=0.1)
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
        >>> target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        >>> expected = torch.nn.BCEWithLogitsLoss()(logits, 0.9 * target + 0.05)
        >>> print(f"{criterion(logits, target).item():.4f} {expected.item():.4f}")
        0.3680 0.3680
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: torch.Tensor | None = None,
        *,
        label_smoothing: float | torch.Tensor = 0.0,
        prior: float | str | torch.Tensor = 0.5,
    ) -> None:
        for name, value in (("weight", weight), ("pos_weight", pos_weight)):
            if value is not None and not isinstance(value, torch.Tensor):
                fail_type(f"`{name}` must be a torch.Tensor or None.", name, value)
        label_smoothing = checked_smoothing("label_smoothing", label_smoothing)
        check_fraction("label_smoothing", label_smoothing)
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        check_choice("reduction", self.reduction, ("none", "mean", "sum", "elementwise_mean"))
        self.label_smoothing = label_smoothing
        if isinstance(prior, torch.Tensor):
            self.register_buffer("prior", prior)
        else:
            if isinstance(prior, str):
                check_choice("prior", prior, BINARY_PRIOR_NAMES)
            elif isinstance(prior, bool) or not isinstance(prior, numbers.Real):
                fail_type(
                    "`prior` must be a number in [0, 1], 'uniform' or a torch.Tensor.",
                    "prior",
                    prior,
                )
            else:
                check_fraction("prior", prior)
            self.prior = prior

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(
            input,
            target,
            self.weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            prior=self.prior,
        )

    def extra_repr(self) -> str:
        prior = "tensor" if isinstance(self.prior, torch.Tensor) else repr(self.prior)
        return (
            f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, prior={prior}"
        )

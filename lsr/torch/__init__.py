"""PyTorch adapter: ``F.cross_entropy`` conventions on top of lsr's one core.

* ``smooth_ce``: the functional form, with ``F.cross_entropy``'s argument names and
  defaults (class axis 1, ``ignore_index=-100``, ``weight``, ``reduction``), plus
  lsr's ``smoothing``, ``prior``, ``kl`` and ``z_loss``.
* ``SmoothCrossEntropyLoss``: a drop-in subclass of ``nn.CrossEntropyLoss`` (same
  constructor, same state dict) that adds ``prior``.
* ``LabelSmoothSoftmaxCE``: the interface of the segmentation snippet with ``lb_pos`` /
  ``lb_neg`` targets, computed in closed form without its one-hot tensor.

The gradient with respect to the logits is registered as a ``torch.autograd.Function``
that calls ``lsr._core.smooth_ce_grad``: it keeps only the logits (and integer labels,
class weights and one logsumexp per position) for the backward pass, where autograd
through the core would keep several tensors of the logits' size.

Where lsr deliberately differs from ``F.cross_entropy``:

* a "mean" over a batch whose every target is ignored is 0 (gradient 0), not NaN;
* float16/bfloat16 logits are computed in float32 and the loss is returned in float32
  (the gradient keeps the logits' dtype), also under ``torch.autocast``;
* target ids out of range raise a ``ValueError`` (on concrete tensors; under
  ``torch.compile`` or ``torch.func`` the loss becomes NaN) instead of an index error.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import types
from typing import Any

import array_api_compat.torch as _compat_xp
import torch
from torch import nn
from torch.autograd import forward_ad

from lsr import _core, _distill, _linear
from lsr._checks import check_smooth_ce, prepare_linear_smooth_ce
from lsr._compat import values_are_cheap
from lsr.torch._distributed import data_parallel_smooth_ce, vocab_parallel_smooth_ce
from lsr._validation import (
    PRIOR_NAMES,
    check_choice,
    check_fraction,
    fail_type,
    fail_value,
)

__all__ = [
    "LabelSmoothSoftmaxCE",
    "SmoothCrossEntropyLoss",
    "data_parallel_smooth_ce",
    "distill_loss",
    "linear_smooth_ce",
    "smooth_ce",
    "vocab_parallel_smooth_ce",
]

_HALF = (torch.float16, torch.bfloat16)


def _vecdot(x1: torch.Tensor, x2: torch.Tensor, /, *, axis: int = -1) -> torch.Tensor:
    # array-api-compat's vecdot moves the axis with torch.moveaxis, which torch.func.vmap
    # cannot batch; torch.movedim is the same view and can be batched.
    x1, x2 = torch.broadcast_tensors(torch.movedim(x1, axis, -1), torch.movedim(x2, axis, -1))
    return (x1[..., None, :] @ x2[..., None])[..., 0, 0]


def _broadcast_to(x: torch.Tensor, /, shape: tuple[int, ...]) -> torch.Tensor:
    # The same view as torch.broadcast_to, which autograd's own vmap (is_grads_batched)
    # has no batching rule for; expand has one.
    return x.expand(shape)


def _logsumexp(x: torch.Tensor, /, *, axis: int, keepdims: bool = False) -> torch.Tensor:
    return torch.logsumexp(x, dim=axis, keepdim=keepdims)


def _add_matmul(out: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return out.addmm_(x1, x2)


_LOG2_E = 1.0 / math.log(2.0)


def _inplace_exp(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` in place, where ``x = z - max z`` (so ``x <= 0``).

    On the CPU it is computed as ``exp2(x * log2(e))``: PyTorch's CPU ``exp2`` kernel is
    several times faster than its ``exp`` (torch 2.13 with AVX512, 2 cores, a million
    values copied then exponentiated in place: 0.28 ms against 0.72 ms in float32, the
    extra multiplication included; 0.77 against 1.49 ms in float64), and ``exp`` is the
    costliest step of the loss. The rounding of the product adds a relative error of at
    most ``|x| * 2**-24`` in float32 (``2**-53`` in float64), so it is largest for the
    classes of smallest probability: about 1e-6 for a class 16 below the largest logit
    (probability ``e**-16`` of the top one's), less for those that carry the probability.
    On GPUs ``exp`` is used as it is.
    """
    if x.device.type == "cpu":
        return x.mul_(_LOG2_E).exp2_()
    return x.exp_()


def _subtract_into(out: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return torch.sub(x1, x2, out=out)


def _take_along_axis(x: torch.Tensor, indices: torch.Tensor, /, *, axis: int) -> torch.Tensor:
    # The core only gathers with non-negative ids, so array-api-compat's wrapping of
    # negative ones (two more ops per call) is not needed.
    return torch.gather(x, axis, indices)


def _add_along_axis(
    x: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, /, *, axis: int
) -> torch.Tensor:
    return x.scatter_add_(axis, indices, values)


# The namespace the core runs on here: array-api-compat's, with a vmap-friendly vecdot,
# torch's fused logsumexp (one pass, no logits-sized temporaries in eager mode), and an
# in-place scatter-add, exp and matmul-accumulate for the fused and blocked passes.
_xp = types.SimpleNamespace(
    **{
        **vars(_compat_xp),
        "vecdot": _vecdot,
        "broadcast_to": _broadcast_to,
        "logsumexp": _logsumexp,
        "add_along_axis": _add_along_axis,
        "take_along_axis": _take_along_axis,
        "inplace_exp": _inplace_exp,
        "subtract_into": _subtract_into,
        "add_matmul": _add_matmul,
    }
)


def _check_tensor(name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        fail_type(f"`{name}` must be a torch.Tensor.", name, value)


def _check_same_device(name: str, value: Any, input: torch.Tensor) -> None:
    if value.device != input.device:
        raise ValueError(
            f"`{name}` must be on the input's device ({input.device}). "
            f"Received: {name}.device={value.device}"
        )


def _check_floating_dtype(name: str, value: torch.Tensor, input: torch.Tensor) -> None:
    """A floating ``value`` must have the input's dtype (float32 is fine for half inputs)."""
    if not (value.is_floating_point() and input.is_floating_point()):
        return  # The core names non-floating arrays itself.
    allowed = (input.dtype, torch.float32) if input.dtype in _HALF else (input.dtype,)
    if value.dtype not in allowed:
        expected = " or ".join(str(dtype) for dtype in allowed)
        raise TypeError(
            f"`{name}` must have the input's floating dtype ({expected}); convert it "
            f"with .to(input.dtype). Received: {name}.dtype={value.dtype}"
        )


def _check_tensors(input: Any, target: Any, weight: Any, prior: Any) -> None:
    _check_tensor("input", input)
    _check_tensor("target", target)
    _check_same_device("target", target, input)
    _check_floating_dtype("target", target, input)
    for name, value in (("weight", weight), ("prior", prior)):
        if isinstance(value, torch.Tensor):
            _check_same_device(name, value, input)
            _check_floating_dtype(name, value, input)
        elif value is not None and not isinstance(value, str):
            fail_type(f"`{name}` must be a torch.Tensor.", name, value)


def _check_smoothing_type(name: str, value: Any) -> None:
    """A Python number or a torch tensor (a NumPy scalar array would mix libraries)."""
    if not isinstance(value, (numbers.Real, torch.Tensor)):
        fail_type(f"`{name}` must be a real number in [0, 1] or a 0-d torch.Tensor.", name, value)


def _check_prior_type(value: Any) -> None:
    if not isinstance(value, (str, torch.Tensor)):
        fail_type(
            "`prior` must be 'uniform', 'others' or a torch.Tensor of class probabilities.",
            "prior",
            value,
        )


def _without_autocast(device_type: str) -> Any:
    """Autocast switched off, where it is on: contractions in the core (vecdot) would
    otherwise run in half precision; the core already picks float32 for half inputs."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _nested_forward_mode() -> bool:
    """Whether torch.func forward mode (jvp, jacfwd) is applied to forward mode.

    A custom Function's jvp rule is opaque to an outer jvp: the second derivative it
    would carry comes out 0 (silently). Such calls take autograd through the core's
    plain ops instead. Where torch's private interpreter stack is not available, every
    torch.func call is taken to be nested (the plain path is correct for all of them).
    """
    try:
        from torch._C._functorch import TransformType
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    except ImportError:  # pragma: no cover - other torch versions
        return True
    interpreters = retrieve_all_functorch_interpreters()
    return sum(interpreter.key() == TransformType.Jvp for interpreter in interpreters) > 1


def _is_batched(cotangent: torch.Tensor) -> bool:
    """Whether ``cotangent`` is a batch seen one element at a time: a ``torch.func``
    tensor, or autograd's own vmap (``is_grads_batched=True``) that wraps it as a legacy
    batched tensor."""
    return torch._C._functorch.is_functorch_wrapped_tensor(
        cotangent
    ) or torch._C._functorch.is_legacy_batchedtensor(cotangent)


def _class_axis(input: torch.Tensor, axis: int) -> int:
    # F.cross_entropy reads a 1-D input as one unbatched position of C classes.
    return 0 if input.ndim == 1 and axis == 1 else axis


def _spec(static: _core.Spec, weight: Any, smoothing: Any, prior: Any) -> _core.Spec:
    """The options of a call from the hashable part kept on ``ctx`` and the tensors
    that autograd tracks (the Function's own inputs)."""
    return static.with_arrays((smoothing, prior, weight, None))


class _SmoothCE(torch.autograd.Function):
    """Forward through ``_core.smooth_ce``, backward through ``_core.smooth_ce_grad``.

    Saved for backward: the logits (the input itself, no copy), integer labels, the
    class weights and one logsumexp per position. With ``create_graph=True`` the
    backward recomputes the logsumexp with differentiable ops, so double backward (and
    ``torch.func`` higher-order transforms) get exact second derivatives.
    """

    # The forward and backward are plain torch ops, so functorch can batch them itself.
    generate_vmap_rule = True

    @staticmethod
    def forward(logits, labels, weight, smoothing, prior, static):
        compute_logits = logits.to(_core.compute_dtype(_xp, logits.dtype))
        loss, lse, denominator = _core.smooth_ce(
            compute_logits,
            labels,
            _spec(static, weight, smoothing, prior),
            xp=_xp,
            # (autograd does not record inside forward: the pass may reuse its temporaries)
            in_place=True,
        )
        # The denominator is a Python int when no position can be left out; a tensor
        # output is what setup_context can see.
        denominator = torch.as_tensor(denominator, dtype=lse.dtype, device=lse.device)
        return loss, lse, denominator

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, labels, weight, smoothing, prior, static = inputs
        _, lse, denominator = output
        ctx.mark_non_differentiable(lse, denominator)
        tensors = {"smoothing": smoothing, "prior": prior}
        ctx.tensor_options = [name for name, value in tensors.items() if torch.is_tensor(value)]
        ctx.plain_options = {
            name: value for name, value in tensors.items() if not torch.is_tensor(value)
        }
        saved = (logits, labels, weight, lse, denominator)
        saved += tuple(tensors[name] for name in ctx.tensor_options)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)
        ctx.options = static

    @staticmethod
    def _logits_grad(ctx, cotangent, recompute_lse):
        """``_core.smooth_ce_grad`` from what ``setup_context`` saved."""
        logits, labels, weight, lse, denominator, *tensor_values = ctx.saved_tensors
        options = dict(
            ctx.plain_options, **dict(zip(ctx.tensor_options, tensor_values, strict=True))
        )
        spec = _spec(ctx.options, weight, options["smoothing"], options["prior"])
        axis, reduction = spec.axis, spec.reduction
        # backward() called inside an autocast region runs under it too.
        with _without_autocast(logits.device.type):
            compute_logits = logits.to(_core.compute_dtype(_xp, logits.dtype))
            if recompute_lse:
                # The saved logsumexp carries no graph: recompute it from the logits when
                # the gradient itself is to be differentiated.
                lse = _core.logsumexp(_xp, compute_logits, axis)
            grad = _core.smooth_ce_grad(
                compute_logits, labels, lse, denominator, cotangent.to(lse.dtype), spec, xp=_xp
            )
        return grad, axis, reduction

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_denominator):
        # Grad mode is on in backward only for create_graph=True (double backward).
        grad, _, _ = _SmoothCE._logits_grad(ctx, grad_loss, torch.is_grad_enabled())
        return grad.to(ctx.saved_tensors[0].dtype), None, None, None, None, None


class _SmoothCEWithJvp(_SmoothCE):
    """``_SmoothCE`` plus forward mode, for eager use (dynamo cannot trace a custom jvp)."""

    @staticmethod
    def jvp(ctx, logits_tangent, *other_tangents):
        # The loss's tangent is <d loss / d logits, logits tangent>: the core's gradient
        # for a unit cotangent, contracted with the tangent. No transform runs inside, so
        # this also works under torch.autograd.forward_ad, which cannot nest a second
        # forward-mode level. Tangents of the target, weight, smoothing or prior never
        # reach here: smooth_ce sends those through autograd of the core's plain ops
        # (functorch may still pass zeros for them, which change nothing).
        del other_tangents
        if logits_tangent is None:
            return None, None, None
        axis, reduction = ctx.options.axis, ctx.options.reduction
        lse = ctx.saved_tensors[3]
        loss_shape = lse.shape[:axis] + lse.shape[axis + 1 :] if reduction == "none" else ()
        unit = torch.ones(loss_shape, dtype=lse.dtype, device=lse.device)
        # The saved logsumexp carries no graph: recomputed from the logits, the tangent
        # can itself be differentiated (a backward through it), for one more pass over
        # the logits on a path that is rare.
        grad, _, _ = _SmoothCE._logits_grad(ctx, unit, recompute_lse=True)
        products = grad * logits_tangent.to(grad.dtype)
        if reduction == "none":
            return torch.sum(products, dim=axis), None, None
        return torch.sum(products), None, None


# About 4 MiB of float32 per block: a block stays in the CPU's caches between the passes
# over it, and the per-block Python overhead stays small (measured best on 2 cores).
_BLOCK_ELEMENTS = 1 << 20


def _blocks(logits: torch.Tensor, axis: int) -> list[Any]:
    """Indices of blocks of the batch axis (0) of about ``_BLOCK_ELEMENTS`` logits each;
    ``[...]`` (everything at once) when there is no batch axis to split."""
    if axis == 0 or logits.ndim == 1 or logits.shape[0] == 0:
        return [...]
    rows = max(1, _BLOCK_ELEMENTS // max(1, logits[0].numel()))
    return [slice(start, start + rows) for start in range(0, logits.shape[0], rows)]


def _blocked_loss_and_grad(logits, labels, weight, smoothing, prior, static, with_grad):
    """The reduced loss, lse, mean denominator and (optionally) the gradient of the
    reduced loss (for "none", of each position's loss), from
    ``_core.blocked_loss_and_grad`` over blocks of rows.

    The gradient is written block by block straight into one buffer of the logits' shape
    (the only logits-sized allocation); half-precision logits go through one float32
    block of scratch, as does the loss alone. A fresh temporary per block would cost more
    than the arithmetic: blocks of a few MiB are mapped and unmapped by malloc each time,
    and every first write to their pages faults. (Advising the gradient buffer for
    transparent huge pages was tried and dropped: faster in a fresh process, but bimodal
    once memory is fragmented; see docs/large_vocabularies.md.)
    """
    dtype = _core.compute_dtype(_xp, logits.dtype)
    blocks = _blocks(logits, static.axis)
    # Every call allocates its own gradient: memory handed to the caller is never
    # written again (see docs/torch.md for tuning the allocator's page-fault cost).
    grad = (
        torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if with_grad else None
    )
    scratch = None
    if not with_grad or logits.dtype != dtype:
        scratch = torch.empty(logits[blocks[0]].shape, dtype=dtype, device=logits.device)
    # check_smooth_ce has read and checked the labels wherever that is cheap.
    spec = _spec(static, weight, smoothing, prior).replace(checked=values_are_cheap(labels))
    return _core.blocked_loss_and_grad(
        logits, labels, spec, xp=_xp, blocks=blocks, out=grad, scratch=scratch
    )


class _SmoothCEFused(_SmoothCE):
    """Eager PyTorch's fast path: the gradient is computed in the forward pass.

    One pass over blocks of rows gives the loss and the gradient of the reduced loss
    (``_blocked_loss_and_grad``), kept on ``ctx`` until backward, which scales it by the
    incoming cotangent in place and hands it over: one logits-sized buffer in all, where
    autograd through ``F.cross_entropy`` allocates three. A second backward through the
    same graph (``retain_graph=True``) or a double backward (``create_graph=True``)
    recomputes the gradient from the saved logits as ``_SmoothCE`` does. Forward mode
    goes through ``_SmoothCEWithJvp`` (autograd cannot give a jvp to a function with this
    extra gradient output).
    """

    @staticmethod
    def forward(logits, labels, weight, smoothing, prior, static, with_grad):
        loss, lse, denominator, grad = _blocked_loss_and_grad(
            logits, labels, weight, smoothing, prior, static, with_grad
        )
        denominator = torch.as_tensor(denominator, dtype=lse.dtype, device=lse.device)
        return loss, lse, denominator, grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        _SmoothCE.setup_context(ctx, inputs[:6], output[:3])
        ctx.fused_grad = output[3]
        if output[3] is not None:
            ctx.mark_non_differentiable(output[3])
        # Otherwise autograd would fill a logits-sized tensor of zeros as the (unused)
        # cotangent of that gradient output before every backward.
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_denominator, grad_grad):
        grad, ctx.fused_grad = ctx.fused_grad, None
        if grad_loss is None:  # The loss took no part in what is differentiated.
            return None, None, None, None, None, None, None
        if torch.is_grad_enabled():
            return (*_SmoothCE.backward(ctx, grad_loss, grad_lse, grad_denominator), None)
        if grad is None:
            # A second backward through a retained graph: the same blocked computation
            # again, so that it gives bit for bit the same gradient.
            logits, labels, weight, _, _, *tensor_values = ctx.saved_tensors
            named = {
                **ctx.plain_options,
                **dict(zip(ctx.tensor_options, tensor_values, strict=True)),
            }
            _, _, _, grad = _blocked_loss_and_grad(
                logits, labels, weight, named["smoothing"], named["prior"], ctx.options, True
            )
        axis, reduction = ctx.options.axis, ctx.options.reduction
        # Under autograd.grad(..., is_grads_batched=True) this backward runs under vmap
        # with a batch of cotangents: the gradient is then one product per cotangent, a
        # new tensor (the buffer cannot be scaled in place by a batch, nor read by .item()).
        batched = _is_batched(grad_loss)
        if reduction == "none":
            scale = grad_loss.unsqueeze(axis).to(grad.dtype)
        elif batched or grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:
            # (The usual cotangent of a scalar loss is 1: reading it on the CPU is free.)
            scale = grad_loss.to(grad.dtype)
        else:
            return grad, None, None, None, None, None, None
        grad = grad * scale if batched else grad.mul_(scale)
        return grad, None, None, None, None, None, None


def _needs_autograd_through_core(target, weight, smoothing, prior) -> bool:
    """Whether a derivative is asked for something other than the logits.

    Reverse mode (``requires_grad``), a forward-mode dual tensor
    (``torch.autograd.forward_ad``) or a ``torch.func`` transform's wrapped tensor: the
    custom Functions differentiate the logits only, so these go through autograd of the
    core's plain torch ops, which every mode of PyTorch's autograd handles natively.
    """
    for value in (target, weight, smoothing, prior):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if value.requires_grad:
            return True
        if not torch.compiler.is_compiling() and (
            torch._C._functorch.is_functorch_wrapped_tensor(value)
            or forward_ad.unpack_dual(value).tangent is not None
        ):
            return True
    return False


def smooth_ce(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    smoothing: float | torch.Tensor = 0.1,
    prior: str | torch.Tensor = "uniform",
    axis: int = 1,
    kl: bool = False,
    z_loss: float = 0.0,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy with ``F.cross_entropy``'s conventions.

    The cross-entropy ``H(q', softmax(input))`` with ``q' = (1 - smoothing) q +
    smoothing u`` (Szegedy et al. 2016, "Rethinking the Inception Architecture for
    Computer Vision", section 7). With ``prior="uniform"`` it equals
    ``F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
    reduction=reduction, label_smoothing=smoothing)``, except that a "mean" over targets
    that are all ``ignore_index`` is 0 rather than NaN.

    Args:
        input: logits of shape (C,), (N, C) or (N, C, d1, d2, ...), classes on ``axis``
            (1, or 0 for a 1-D input). float16/bfloat16 are computed in float32.
        target: class ids of the input's shape without the class axis (any integer
            dtype), or class probabilities of the input's shape and floating dtype.
        weight: per-class weights of shape (C,), PyTorch's semantics (for class ids the
            "mean" divides by the sum of the targets' weights).
        ignore_index: class ids equal to it get loss 0 and gradient 0 and are left out
            of the mean. For probability targets it must stay -100 (as in PyTorch).
        reduction: ``"none"`` (the target's position shape), ``"mean"`` or ``"sum"``.
        smoothing: epsilon in [0, 1] (``label_smoothing`` in PyTorch); a float or 0-d
            tensor.
        prior: ``"uniform"`` (PyTorch's convention: the true class gets
            ``1 - eps + eps / C``), ``"others"`` (eps spread over the C - 1 other classes,
            the true class gets ``1 - eps``: fairseq, T5X) or a (C,) tensor holding a
            class distribution (see ``lsr.estimate_prior``).
        axis: the class axis of ``input``.
        kl: return ``KL(q' || p)`` (the loss minus the target entropy), whose minimum
            is 0.
        z_loss: coefficient of an added ``z_loss * logsumexp(input)**2`` per position.

    Returns:
        A 0-d tensor for "mean" and "sum", else one loss per position; float32 for half
        precision inputs, else the input's dtype.

    Raises:
        TypeError: non-tensor arguments, non-floating input, a probability target or
            weight whose dtype differs from the input's.
        ValueError: tensors on different devices, bad shapes or options, class ids out
            of range (checked on concrete tensors; under ``torch.compile`` and
            ``torch.func`` they make the loss NaN instead).

    Example:
        >>> import torch
        >>> import lsr.torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([0, 1])
        >>> loss = lsr.torch.smooth_ce(logits, target, smoothing=0.1)
        >>> expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
        >>> print(f"{loss.item():.4f} {expected.item():.4f}")
        0.5047 0.5047
    """
    _check_tensors(input, target, weight, prior)
    _check_smoothing_type("smoothing", smoothing)
    axis = _class_axis(input, axis)
    dense = target.is_floating_point()
    if dense and ignore_index not in (-100, None):
        # As F.cross_entropy: a class id to ignore means nothing for probabilities.
        fail_value(
            "`ignore_index` applies to class-id targets only; leave it at -100 for "
            "probability (floating) targets.",
            "ignore_index",
            ignore_index,
        )
    ignore = None if dense else ignore_index
    # (Half-precision logits are converted block by block later, never here as a whole.)
    _, labels, spec = check_smooth_ce(
        input,
        target,
        smoothing=smoothing,
        prior=prior,
        axis=axis,
        ignore_index=ignore,
        weight=weight,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    with _without_autocast(input.device.type):
        functorch_input = (
            not torch.compiler.is_compiling()
            and torch._C._functorch.is_functorch_wrapped_tensor(input)
        )
        if _needs_autograd_through_core(target, weight, smoothing, prior) or (
            functorch_input and _nested_forward_mode()
        ):
            loss, _, _ = _core.smooth_ce(
                input.to(_core.compute_dtype(_xp, input.dtype)), labels, spec, xp=_xp
            )
            return loss
        # The tensors as the Function's own inputs (so autograd and torch.func see them),
        # the rest as one hashable object.
        arguments = (input, labels, spec.weight, spec.smoothing, spec.prior, spec.static())
        if torch.compiler.is_compiling():
            # Dynamo cannot trace a custom jvp; forward mode is for eager torch.func use.
            loss, _, _ = _SmoothCE.apply(*arguments)
        elif functorch_input or forward_ad.unpack_dual(input).tangent is not None:
            # torch.func transforms: the plain forward and backward, which they can batch;
            # forward-mode dual logits: the same, with the closed-form jvp.
            loss, _, _ = _SmoothCEWithJvp.apply(*arguments)
        else:
            with_grad = torch.is_grad_enabled() and input.requires_grad
            loss, _, _, _ = _SmoothCEFused.apply(*arguments, with_grad)
    return loss


class SmoothCrossEntropyLoss(nn.CrossEntropyLoss):
    r"""``nn.CrossEntropyLoss`` computed by lsr, with a choice of smoothing prior.

    Same constructor, attributes and state dict as ``nn.CrossEntropyLoss`` (it is a
    subclass, and ``weight`` is a buffer), so replacing the class name is the whole
    migration; ``prior``, ``kl`` and ``z_loss`` are lsr's additions (see ``smooth_ce``).
    A "mean" over a batch whose targets are all ``ignore_index`` gives 0, not NaN.

    Args:
        weight: per-class weights of shape (C,).
        size_average: deprecated (as in PyTorch); use ``reduction``.
        ignore_index: class id whose targets are left out.
        reduce: deprecated (as in PyTorch); use ``reduction``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        label_smoothing: epsilon in [0, 1].
        prior: ``"uniform"`` (PyTorch's convention), ``"others"`` or a (C,) tensor of
            class probabilities (registered as a buffer).
        kl: return ``KL(q' || p)`` instead of the cross-entropy.
        z_loss: coefficient of an added ``z_loss * logsumexp(input)**2``.

    Shape:
        input (C,), (N, C) or (N, C, d1, ...); target (), (N) or (N, d1, ...) class ids,
        or probabilities of the input's shape; output: a scalar, or the target's
        position shape for ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lsr.torch import SmoothCrossEntropyLoss
        >>> criterion = SmoothCrossEntropyLoss(label_smoothing=0.1, prior="others")
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([0, 1])
        >>> # The true class gets exactly 0.9: PyTorch's convention with 0.1 * 3 / 2.
        >>> expected = torch.nn.CrossEntropyLoss(label_smoothing=0.15)(logits, target)
        >>> print(f"{criterion(logits, target).item():.4f} {expected.item():.4f}")
        0.5589 0.5589
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        prior: str | torch.Tensor = "uniform",
        kl: bool = False,
        z_loss: float = 0.0,
    ) -> None:
        if weight is not None and not isinstance(weight, torch.Tensor):
            fail_type("`weight` must be a torch.Tensor or None.", "weight", weight)
        _check_smoothing_type("label_smoothing", label_smoothing)
        _check_prior_type(prior)
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        check_fraction("label_smoothing", label_smoothing)
        check_choice("reduction", self.reduction, ("none", "mean", "sum"))
        if isinstance(prior, torch.Tensor):
            self.register_buffer("prior", prior)
        else:
            check_choice("prior", prior, PRIOR_NAMES)
            self.prior = prior
        self.kl = kl
        self.z_loss = z_loss

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return smooth_ce(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            smoothing=self.label_smoothing,
            prior=self.prior,
            kl=self.kl,
            z_loss=self.z_loss,
        )

    def extra_repr(self) -> str:
        prior = "tensor" if isinstance(self.prior, torch.Tensor) else repr(self.prior)
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, prior={prior}"
        )


class LabelSmoothSoftmaxCE(nn.Module):
    r"""The segmentation snippet's ``lb_pos``/``lb_neg`` loss, without its one-hot tensor.

    The widely copied snippet builds, for every pixel, the target ``lb_pos`` on the true
    class and ``lb_neg`` on the C - 1 others (0 at pixels labelled ``lb_ignore``) and
    returns ``-sum_k target_k log_softmax(logits)_k``. That target has mass
    ``s = lb_pos + (C - 1) lb_neg`` (not necessarily 1) and equals ``s`` times lsr's
    uniform smoothing with ``eps = C lb_neg / s``, so the loss is
    ``s * smooth_ce(logits, label, smoothing=C * lb_neg / s, prior="uniform")``:
    same values and gradients, computed in closed form.

    Args:
        lb_pos: target value on the true class, > 0.
        lb_neg: target value on every other class, in [0, lb_pos].
        reduction: ``"mean"`` (sum over valid pixels / number of valid pixels; 0, not NaN,
            when no pixel is valid), ``"sum"`` or ``"none"`` (one loss per pixel, 0 at
            ignored pixels).
        lb_ignore: the label of pixels to leave out.

    Shape:
        logits (N, C, H, W) (any (N, C, d1, ...)), label (N, H, W) integer class ids.

    Example:
        >>> import torch
        >>> from lsr.torch import LabelSmoothSoftmaxCE
        >>> criterion = LabelSmoothSoftmaxCE(lb_pos=0.9, lb_neg=0.05)
        >>> logits = torch.zeros(1, 3, 1, 2)
        >>> label = torch.tensor([[[0, 255]]])
        >>> print(f"{criterion(logits, label).item():.4f}")  # (0.9 + 2 * 0.05) * log(3)
        1.0986
    """

    def __init__(
        self,
        lb_pos: float = 0.9,
        lb_neg: float = 0.005,
        reduction: str = "mean",
        lb_ignore: int = 255,
    ) -> None:
        super().__init__()
        for name, value in (("lb_pos", lb_pos), ("lb_neg", lb_neg)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                fail_type(f"`{name}` must be a real number.", name, value)
        if not lb_pos > 0:
            fail_value("`lb_pos` must be positive.", "lb_pos", lb_pos)
        if not 0 <= lb_neg <= lb_pos:
            # lb_neg > lb_pos would put more mass on wrong classes than on the true one:
            # a smoothing factor above 1, which lsr does not define.
            fail_value(f"`lb_neg` must be in [0, lb_pos={lb_pos}].", "lb_neg", lb_neg)
        check_choice("reduction", reduction, ("none", "mean", "sum"))
        self.lb_pos = float(lb_pos)
        self.lb_neg = float(lb_neg)
        self.reduction = reduction
        self.lb_ignore = lb_ignore

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        _check_tensor("logits", logits)
        if logits.ndim < 2:
            fail_value("`logits` must have shape (N, C, ...).", "logits", logits)
        num_classes = logits.shape[1]
        mass = self.lb_pos + (num_classes - 1) * self.lb_neg
        loss = smooth_ce(
            logits,
            label,
            ignore_index=self.lb_ignore,
            reduction=self.reduction,
            smoothing=min(num_classes * self.lb_neg / mass, 1.0),
        )
        return mass * loss

    def extra_repr(self) -> str:
        return (
            f"lb_pos={self.lb_pos}, lb_neg={self.lb_neg}, reduction={self.reduction!r}, "
            f"lb_ignore={self.lb_ignore}"
        )


def distill_loss(
    input: torch.Tensor,
    teacher: torch.Tensor,
    *,
    temperature: Any,
    axis: int = 1,
    reduction: str = "mean",
    where: torch.Tensor | None = None,
    kl: bool = False,
) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss, ``T**2`` times the soft-target cross-entropy.

    ``lsr.distill_loss`` with PyTorch's class axis 1; the teacher's logits are detached,
    so only the student (``input``) receives gradients. See ``lsr.distill_loss``.

    Example:
        >>> import torch, lsr.torch
        >>> student = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
        >>> teacher = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
        >>> loss = lsr.torch.distill_loss(student, teacher, temperature=2.0, kl=True)
        >>> loss.backward()
        >>> round(loss.item(), 6), teacher.grad is None
        (0.418517, True)
    """
    _check_tensor("input", input)
    _check_tensor("teacher", teacher)
    if where is not None:
        _check_tensor("where", where)
    if not isinstance(temperature, (numbers.Real, torch.Tensor)):
        fail_type(
            "`temperature` must be a positive number or a 0-d torch.Tensor.",
            "temperature",
            temperature,
        )
    return _distill.distill_loss(
        input,
        teacher.detach(),
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=where,
        kl=kl,
    )


class _LinearSmoothCE(torch.autograd.Function):
    """``_linear.linear_smooth_ce`` with the gradients made in the forward pass.

    For "mean" and "sum" the forward pass computes the loss and the gradients for the
    hidden states, the weight and the bias block by block, keeps them (N x d, K x d and K:
    the size of the inputs, never N x K) and backward scales them by the cotangent. For
    "none" each position's cotangent is only known in backward, which then recomputes
    the blocks with it (one more pass of matrix products).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, spec, chunk_size, with_grad):
        grads_now = with_grad and spec.reduction != "none"
        loss, grads = _linear.linear_smooth_ce(
            hidden,
            weight.mT,
            bias,
            labels,
            xp=_xp,
            spec=spec,
            chunk_size=chunk_size,
            with_grad=grads_now,
        )
        ctx.grads = grads
        ctx.spec = spec
        ctx.chunk_size = chunk_size
        if with_grad and not grads_now:
            ctx.save_for_backward(hidden, weight, bias, labels)
        ctx.set_materialize_grads(False)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        if grad_loss is None:
            return (None,) * 7
        grads, ctx.grads = ctx.grads, None
        if ctx.spec.reduction == "none" and _is_batched(grad_loss):
            grads = _batched_none_grads(ctx, grad_loss)
        elif ctx.spec.reduction == "none":
            hidden, weight, bias, labels = ctx.saved_tensors
            _, grads = _linear.linear_smooth_ce(
                hidden,
                weight.mT,
                bias,
                labels,
                xp=_xp,
                spec=ctx.spec,
                chunk_size=ctx.chunk_size,
                with_grad=True,
                cotangent=grad_loss.to(_core.compute_dtype(_xp, hidden.dtype)),
            )
        elif grads is None:
            raise RuntimeError(
                "lsr.torch.linear_smooth_ce: its gradients were already handed to a first "
                "backward pass; a second one (retain_graph=True) is not supported. Use "
                "smooth_ce(F.linear(...)) where the graph must be differentiated twice."
            )
        elif _is_batched(grad_loss):
            # is_grads_batched=True: one product per cotangent, the kept gradients unchanged.
            grads = tuple(None if g is None else g * grad_loss.to(g.dtype) for g in grads)
        elif grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:
            for grad in grads:
                if grad is not None:
                    grad.mul_(grad_loss.to(grad.dtype))
        d_hidden, d_projection, d_bias = grads
        return d_hidden, d_projection.mT, d_bias, None, None, None, None


def _batched_none_grads(ctx, cotangent):
    """``(d hidden, d projection, d bias)`` of a "none" loss for a batch of cotangents.

    Under ``autograd.grad(..., is_grads_batched=True)`` the cotangent is a batch seen one
    element at a time, which the blocked pass cannot scale in place; here the logits are
    formed whole (N x K, only on this path) and the core's out-of-place
    ``smooth_ce_grad`` gives their gradient, pulled back through the linear layer.
    """
    hidden, weight, bias, labels = ctx.saved_tensors
    dtype = _core.compute_dtype(_xp, hidden.dtype)
    inputs, projection = hidden.to(dtype), weight.to(dtype)
    logits = inputs @ projection.mT
    if bias is not None:
        logits = logits + bias.to(dtype)
    spec = ctx.spec
    _, lse, denominator = _core.smooth_ce(logits, labels, spec, xp=_xp)
    d_logits = _core.smooth_ce_grad(
        logits, labels, lse, denominator, cotangent.to(dtype), spec, xp=_xp
    )
    d_bias = None if bias is None else torch.sum(d_logits, dim=0).to(bias.dtype)
    return (
        (d_logits @ projection).to(hidden.dtype),
        (inputs.mT @ d_logits).to(weight.dtype),
        d_bias,
    )


def linear_smooth_ce(
    input: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    smoothing: float | torch.Tensor = 0.1,
    prior: str | torch.Tensor = "uniform",
    kl: bool = False,
    z_loss: float = 0.0,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""``smooth_ce(F.linear(input, weight, bias), target)`` without the N x C logits.

    For large vocabularies the logits of the output layer are the largest tensors of a
    training step. This computes the same loss and its gradients for ``input``,
    ``weight`` and ``bias`` over blocks of ``chunk_size`` rows, so that at most one
    block's logits exist at any time: peak memory stays flat as N grows (Liger-Kernel's
    fused linear cross-entropy does the same on GPUs). The gradients are made during the
    forward pass and kept until backward (the inputs' sizes, not N x C).

    Args:
        input: hidden states of shape (..., d) (flattened to (N, d)).
        weight: the output projection in ``nn.Linear``'s layout, (C, d).
        target: class ids of shape (...) (input's leading shape), or class
            probabilities of shape (..., C).
        bias: (C,) or None.
        class_weight: per-class weights, ``F.cross_entropy``'s ``weight``.
        ignore_index, reduction, smoothing, prior, kl, z_loss: as in ``smooth_ce``.
        chunk_size: rows per block; by default as many as make 16 Mi logits.

    Returns:
        As ``smooth_ce``; for ``reduction="none"``, one loss per row of the input's
        leading shape.

    Gradients flow to ``input``, ``weight`` and ``bias``; differentiating them again
    (double backward) or a second backward through the same graph is not supported.

    Example:
        >>> import torch, lsr.torch
        >>> hidden = torch.randn(6, 4)
        >>> layer = torch.nn.Linear(4, 10)
        >>> target = torch.tensor([1, 0, 9, 3, 3, -100])
        >>> fused = lsr.torch.linear_smooth_ce(
        ...     hidden, layer.weight, target, bias=layer.bias, chunk_size=4
        ... )
        >>> plain = lsr.torch.smooth_ce(layer(hidden), target)
        >>> bool(torch.allclose(fused, plain))
        True
    """
    for name, value in (("input", input), ("weight", weight), ("target", target)):
        _check_tensor(name, value)
    for name, value in (("bias", bias), ("class_weight", class_weight)):
        if value is not None:
            _check_tensor(name, value)
    _check_prior_type(prior)
    _check_smoothing_type("smoothing", smoothing)
    if input.ndim < 1:
        fail_value("`input` must have shape (..., d).", "input", input)
    dense = target.is_floating_point()
    leading = input.shape[:-1]
    hidden = input.reshape(-1, input.shape[-1])
    labels = target.reshape(-1, target.shape[-1]) if dense else target.reshape(-1)
    if dense and ignore_index not in (-100, None):
        fail_value(
            "`ignore_index` applies to class-id targets only; leave it at -100 for "
            "probability (floating) targets.",
            "ignore_index",
            ignore_index,
        )
    for name, value in (("weight", weight), ("bias", bias), ("class_weight", class_weight)):
        if isinstance(value, torch.Tensor):
            _check_same_device(name, value, input)
    _check_same_device("target", target, input)
    _, labels, spec = prepare_linear_smooth_ce(
        hidden,
        weight,
        labels,
        bias=bias,
        smoothing=smoothing,
        prior=prior,
        ignore_index=None if dense else ignore_index,
        weight=class_weight,
        where=None,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        chunk_size=chunk_size,
        projection_name="weight",
        transposed=True,
    )
    with_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias)
    )
    with _without_autocast(input.device.type):
        loss = _LinearSmoothCE.apply(hidden, weight, bias, labels, spec, chunk_size, with_grad)
    return loss.reshape(leading) if reduction == "none" else loss

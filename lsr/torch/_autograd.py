"""The autograd glue: the ``torch.autograd.Function``s that run the core's one pass.

* ``SmoothCE``: forward through ``lsr._core.smooth_ce``, backward through
  ``lsr._core.smooth_ce_grad``; keeps the logits (no copy), the integer labels, the
  class weights and one logsumexp per position. Used under ``torch.compile`` and
  ``torch.func`` (which batch its plain torch ops) and for double backward.
* ``SmoothCEWithJvp``: the same with a closed-form jvp, for forward mode in eager code.
* ``SmoothCEFused``: eager PyTorch's fast path; the forward pass computes the loss and
  the gradient together over blocks of rows (``lsr._core.blocked_loss_and_grad``) into
  one logits-sized buffer that backward scales in place.
* ``SmoothCESmall``: the same on the CPU for the options of the log-softmax form, from
  ``lsr._core.log_softmax_loss_and_grad`` (one block) or
  ``lsr._core.blocked_log_softmax_loss_and_grad`` (block by block of rows): about half
  the operations, one output. (Named when it took small inputs only.)

The loss alone on the CPU (nothing to differentiate) takes no Function: it is
``log_softmax_loss`` (``lsr._core.blocked_log_softmax_loss_and_grad`` without a
gradient, one log-softmax per block of rows).

Which one a call takes is decided in ``lsr.torch._functional.smooth_ce``; the helpers
below tell it what PyTorch is doing (autocast, forward mode, batched cotangents).
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, cast

import torch
from torch.autograd import forward_ad

from lsr import _core
from lsr.torch._namespace import NARROW_CLASSES, xp

__all__ = [
    "BLOCK_ELEMENTS",
    "SMALL_ELEMENTS",
    "SmoothCE",
    "SmoothCEFused",
    "SmoothCESmall",
    "SmoothCEWithJvp",
    "fixed_targets",
    "is_batched",
    "is_finite",
    "is_plain_eager_mode",
    "is_small",
    "log_softmax_loss",
    "needs_autograd_through_core",
    "nested_forward_mode",
    "row_blocks",
    "small_loss_and_grad",
    "takes_log_softmax_loss",
    "without_autocast",
]


def without_autocast(device_type: str) -> Any:
    """Autocast switched off, where it is on: contractions in the core (vecdot) would
    otherwise run in half precision; the core already picks float32 for half inputs."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def is_plain_eager_mode(input: torch.Tensor) -> bool:
    """Whether nothing changes the eager CPU path of a call on ``input`` but whether it
    is differentiated (grad mode and ``requires_grad``, which the callers test): no
    autocast, not under ``torch.compile`` or ``torch.jit.trace``, no ``torch.func``
    transform active or wrapping ``input``, and no forward-mode tangent on it (which
    grad mode does not switch off). The shared part of the losses' routes for repeated
    small calls (``is_plain_eager_call``, ``is_plain_eager_binary_call``)."""
    return (
        not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch._C._are_functorch_transforms_active()
        and not torch._C._functorch.is_functorch_wrapped_tensor(input)
        # (Tangents exist only inside a dual level: forward_ad's own record of the
        # level, -1 outside one, settles the usual call without unpacking the input.)
        and (
            getattr(forward_ad, "_current_level", 0) < 0
            or forward_ad.unpack_dual(input).tangent is None
        )
    )


def nested_forward_mode() -> bool:
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


def is_batched(cotangent: torch.Tensor) -> bool:
    """Whether ``cotangent`` is a batch seen one element at a time: a ``torch.func``
    tensor, or autograd's own vmap (``is_grads_batched=True``) that wraps it as a legacy
    batched tensor."""
    return torch._C._functorch.is_functorch_wrapped_tensor(
        cotangent
    ) or torch._C._functorch.is_legacy_batchedtensor(cotangent)


def _spec(static: _core.Spec, weight: Any, smoothing: Any, prior: Any) -> _core.Spec:
    """The options of a call from the hashable part kept on ``ctx`` and the tensors
    that autograd tracks (the Function's own inputs)."""
    return static.with_arrays((smoothing, prior, weight, None))


def core_grad(logits, labels, lse, denominator, cotangent, spec: _core.Spec) -> torch.Tensor:
    """``_core.smooth_ce_grad`` of the logits in the compute dtype (``lse`` None: the
    core recomputes it, differentiably), outside autocast: ``backward()`` called inside
    an autocast region runs under it too."""
    with without_autocast(logits.device.type):
        compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
        return _core.smooth_ce_grad(
            compute_logits,
            labels,
            lse,
            denominator,
            cotangent.to(compute_logits.dtype),
            spec,
            xp=xp,
        )


class SmoothCE(torch.autograd.Function):
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
        compute_logits = logits.to(_core.compute_dtype(xp, logits.dtype))
        aux = {}  # (filled by the pass)
        loss, lse, denominator = _core.smooth_ce(
            compute_logits,
            labels,
            _spec(static, weight, smoothing, prior),
            xp=xp,
            # (autograd does not record inside forward: the pass may reuse its temporaries)
            in_place=True,
            aux=aux,
        )
        # The denominator is a Python int when no position can be left out; a tensor
        # output is what setup_context can see.
        denominator = torch.as_tensor(denominator, dtype=lse.dtype, device=lse.device)
        return loss, lse, denominator, *aux_outputs(aux)

    @staticmethod
    def setup_context(ctx, inputs, output):
        SmoothCE.save(ctx, inputs, output, forward_mode=True)

    @staticmethod
    def save(ctx, inputs, output, *, forward_mode):
        """What backward (and, with ``forward_mode``, a jvp) reads, on ``ctx``."""
        logits, labels, weight, smoothing, prior, static = inputs
        _, lse, denominator, *aux = output
        ctx.mark_non_differentiable(lse, denominator, *aux)
        tensors = {"smoothing": smoothing, "prior": prior}
        ctx.tensor_options = [name for name, value in tensors.items() if torch.is_tensor(value)]
        ctx.plain_options = {
            name: value for name, value in tensors.items() if not torch.is_tensor(value)
        }
        saved = (logits, labels, weight, lse, denominator)
        saved += tuple(tensors[name] for name in ctx.tensor_options)
        ctx.save_for_backward(*saved)
        if forward_mode:
            ctx.save_for_forward(*saved)
        ctx.options = static

    @staticmethod
    def _logits_grad(ctx, cotangent, recompute_lse):
        """``_core.smooth_ce_grad`` from what ``save`` kept on ``ctx``."""
        logits, labels, weight, lse, denominator, *tensor_values = ctx.saved_tensors
        options = dict(
            ctx.plain_options, **dict(zip(ctx.tensor_options, tensor_values, strict=True))
        )
        spec = _spec(ctx.options, weight, options["smoothing"], options["prior"])
        # The saved logsumexp carries no graph: None has the core recompute it (of the
        # capped logits, with a cap) when the gradient itself is to be differentiated.
        grad = core_grad(
            logits, labels, None if recompute_lse else lse, denominator, cotangent, spec
        )
        return grad, spec.axis, spec.reduction

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_denominator, *grad_aux):
        # Grad mode is on in backward only for create_graph=True (double backward).
        grad, _, _ = SmoothCE._logits_grad(ctx, grad_loss, torch.is_grad_enabled())
        return grad.to(ctx.saved_tensors[0].dtype), None, None, None, None, None


class SmoothCEWithJvp(SmoothCE):
    """``SmoothCE`` plus forward mode, for eager use (dynamo cannot trace a custom jvp)."""

    @staticmethod
    def jvp(ctx, logits_tangent, *other_tangents):
        # The loss's tangent is <d loss / d logits, logits tangent>: the core's gradient
        # for a unit cotangent, contracted with the tangent. No transform runs inside, so
        # this also works under torch.autograd.forward_ad, which cannot nest a second
        # forward-mode level. Tangents of the target, weight, smoothing or prior never
        # reach here: smooth_ce sends those through autograd of the core's plain ops
        # (functorch may still pass zeros for them, which change nothing).
        del other_tangents
        no_aux = (None,) * (len(_core.AUX_NAMES) if ctx.options.aux else 0)
        if logits_tangent is None:
            return None, None, None, *no_aux
        axis, reduction = ctx.options.axis, ctx.options.reduction
        lse = ctx.saved_tensors[3]
        loss_shape = lse.shape[:axis] + lse.shape[axis + 1 :] if reduction == "none" else ()
        unit = torch.ones(loss_shape, dtype=lse.dtype, device=lse.device)
        # The saved logsumexp carries no graph: recomputed from the logits, the tangent
        # can itself be differentiated (a backward through it), for one more pass over
        # the logits on a path that is rare.
        grad, _, _ = SmoothCE._logits_grad(ctx, unit, recompute_lse=True)
        products = grad * logits_tangent.to(grad.dtype)
        if reduction == "none":
            return torch.sum(products, dim=axis), None, None, *no_aux
        return torch.sum(products), None, None, *no_aux


# About 4 MiB of float32 per block: a block stays in the CPU's caches between the passes
# over it, and the per-block Python overhead stays small (measured best on 2 cores).
# Logits up to this many are one block.
BLOCK_ELEMENTS = 1 << 20

# Blocks of 2-D logits (rows of classes) over ``BLOCK_ELEMENTS`` hold at most this many:
# 2 MiB of float32, a core's L2 cache on the machine measured (2 cores, AVX-512), and
# the size of the float32 block of scratch of half-precision logits. In bfloat16 the
# log-softmax form and the loss alone were faster with them than with blocks of
# ``BLOCK_ELEMENTS`` at every 2-D shape over it measured (by 2-12%); in float32, and on
# the blocked pass and the binary loss, the two were level within the machine's noise.
# Cutting logits of one block in two, or segmentation into one image per block, was
# slower or level (benchmarks/results/2026-12-07-row-blocks/blocks-rotated.txt).
ROW_BLOCK_ELEMENTS = 1 << 19


def row_blocks(logits: torch.Tensor, axis: int) -> list[Any]:
    """Indices of blocks of the batch axis (0) of about ``BLOCK_ELEMENTS`` logits each
    (``ROW_BLOCK_ELEMENTS`` for 2-D logits); ``[...]`` (everything at once) when there
    is no batch axis to split, or one block of ``BLOCK_ELEMENTS`` holds every row."""
    if logits.numel() <= BLOCK_ELEMENTS or axis == 0 or logits.ndim <= 1:
        return [...]
    size = min(BLOCK_ELEMENTS, ROW_BLOCK_ELEMENTS) if logits.ndim == 2 else BLOCK_ELEMENTS
    rows = max(1, size // max(1, math.prod(logits.shape[1:])))
    if rows >= logits.shape[0]:
        # One block: ``...`` rather than a slice of every row, so that the pass slices
        # nothing (on small inputs each view costs about as much as the arithmetic).
        return [...]
    return [slice(start, start + rows) for start in range(0, logits.shape[0], rows)]


def scratch_block(logits: torch.Tensor, blocks: list[Any]) -> torch.Tensor:
    """Room of the compute dtype for the largest (the first) of ``row_blocks``' blocks:
    the one block of scratch that half-precision logits are converted into, block after
    block, and that the loss alone writes its log-softmax into."""
    dtype = _core.compute_dtype(xp, logits.dtype)
    return torch.empty(logits[blocks[0]].shape, dtype=dtype, device=logits.device)


def aux_outputs(aux: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The core's auxiliary outputs as the Functions' extra outputs (none unless asked),
    in ``_core.AUX_NAMES`` order."""
    return tuple(aux[name] for name in _core.AUX_NAMES) if aux else ()


def _blocked_loss_and_grad(logits, labels, weight, smoothing, prior, static, with_grad, aux=None):
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
    dtype = _core.compute_dtype(xp, logits.dtype)
    blocks = row_blocks(logits, static.axis)
    # Every call allocates its own gradient: memory handed to the caller is never
    # written again (see docs/torch.md for tuning the allocator's page-fault cost).
    grad = (
        torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if with_grad else None
    )
    scratch = scratch_block(logits, blocks) if not with_grad or logits.dtype != dtype else None
    # (check_smooth_ce read and checked the labels wherever that is cheap: spec.checked.)
    spec = _spec(static, weight, smoothing, prior)
    return _core.blocked_loss_and_grad(
        logits, labels, spec, xp=xp, blocks=blocks, out=grad, scratch=scratch, aux=aux
    )


class SmoothCEFused(torch.autograd.Function):
    """Eager PyTorch's fast path: the gradient is computed in the forward pass.

    One pass over blocks of rows gives the loss and the gradient of the reduced loss
    (``_blocked_loss_and_grad``), kept on ``ctx`` until backward, which scales it by the
    incoming cotangent in place and hands it over: one logits-sized buffer in all, where
    autograd through ``F.cross_entropy`` allocates three. A second backward through the
    same graph (``retain_graph=True``) or a double backward (``create_graph=True``)
    recomputes the gradient from the saved logits as ``SmoothCE`` does. Forward mode
    goes through ``SmoothCEWithJvp`` (autograd cannot give a jvp to a function with this
    extra gradient output), and so do ``torch.func`` transforms.

    The old-style ``forward(ctx, ...)`` on purpose: for a Function with a separate
    ``setup_context``, ``apply`` binds its arguments through ``inspect.signature`` on
    every call (measured: 15-40 microseconds, comparable to ``F.cross_entropy``'s whole
    forward and backward on a 256 x 10 batch). Only eager calls outside ``torch.func``
    transforms come here, which is what the old style supports.
    """

    @staticmethod
    def forward(ctx, logits, labels, weight, smoothing, prior, static, with_grad):
        aux = {}  # (filled by the pass)
        loss, lse, denominator, grad = _blocked_loss_and_grad(
            logits, labels, weight, smoothing, prior, static, with_grad, aux
        )
        aux_values = aux_outputs(aux)
        denominator = torch.as_tensor(denominator, dtype=lse.dtype, device=lse.device)
        # (No forward mode here: dual logits take SmoothCEWithJvp.)
        SmoothCE.save(
            ctx,
            (logits, labels, weight, smoothing, prior, static),
            (loss, lse, denominator, *aux_values),
            forward_mode=False,
        )
        ctx.fused_grad = grad
        if grad is not None:
            ctx.mark_non_differentiable(grad)
        # Otherwise autograd would fill a logits-sized tensor of zeros as the (unused)
        # cotangent of that gradient output before every backward.
        ctx.set_materialize_grads(False)
        return loss, lse, denominator, grad, *aux_values

    @staticmethod
    def backward(ctx, grad_loss, grad_lse, grad_denominator, grad_grad, *grad_aux):
        grad, ctx.fused_grad = ctx.fused_grad, None
        if grad_loss is None:  # The loss took no part in what is differentiated.
            return None, None, None, None, None, None, None
        if torch.is_grad_enabled():
            return (*SmoothCE.backward(ctx, grad_loss, grad_lse, grad_denominator), None)
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
        grad = times_cotangent(grad, grad_loss, ctx.options.axis, ctx.options.reduction)
        return grad, None, None, None, None, None, None


def times_cotangent(grad: torch.Tensor, grad_loss: torch.Tensor, axis: int, reduction: str):
    """The gradient of the reduced loss (for "none", of each position's loss) times the
    loss's cotangent, in place in ``grad`` (a buffer of the fused paths, theirs to hand
    over)."""
    # Under autograd.grad(..., is_grads_batched=True) this backward runs under vmap
    # with a batch of cotangents: the gradient is then one product per cotangent, a
    # new tensor (the buffer cannot be scaled in place by a batch, nor read by .item()).
    batched = is_batched(grad_loss)
    if reduction == "none":
        scale = grad_loss.unsqueeze(axis).to(grad.dtype)
    elif batched or not grad_loss.is_cpu or grad_loss.item() != 1.0:
        # (The usual cotangent of a scalar loss is 1: reading it on the CPU is free.)
        scale = grad_loss.to(grad.dtype)
    else:
        return grad
    return grad * scale if batched else grad.mul_(scale)


# Inputs of at most this many logits take ``SmoothCESmall`` (where its spec allows):
# since the log-softmax form runs block by block of rows too
# (``_core.blocked_log_softmax_loss_and_grad``), every size. Over one block it makes
# about half the operations of the blocked pass with the same buffers (the gradient and,
# for half precision, one float32 block of scratch), and it was the faster, or level
# (within 2%), at every shape measured but one, forward + backward, 2 cores with
# AVX-512 (benchmarks/results/2026-12-07-log-softmax-blocks/paths-rotated.txt): 16384 x
# 1000 in bfloat16 took 35.4 against 31.8 ms (the rival 63.5). Segmentation gained most:
# 8 x 21 x 128 x 128 in bfloat16 0.950 of the rival's time against 1.261. Up to one
# block it was already: 1024 x 100 317 against 561 microseconds in float32 and 393
# against 620 in bfloat16; 1024 x 1000 1519 against 1934 and 1893 against 2136
# (benchmarks/results/2026-12-06-avx512/paths.txt). A module constant, so that the
# tests can send a call to the blocked pass.
SMALL_ELEMENTS = sys.maxsize


def is_small(logits: torch.Tensor, axis: int) -> bool:
    """Whether these logits take ``SmoothCESmall``, the faster path at the shapes
    measured (CPU only; at most ``SMALL_ELEMENTS`` logits: every size).

    With fewer than ``NARROW_CLASSES`` classes (16 with AVX-512, 8
    with AVX2) only up to 2048 positions take it. There its log-softmax moves the class
    axis (see ``lsr.torch._namespace``), and past a few thousand rows the blocked pass
    is faster (forward + backward, 2 cores, on the machine of 2026-12-05 whose vector
    extension was not recorded: 286 against 374 microseconds at 2048 x 10, 556 against
    480 at 4096 x 12, commit 58666e8; with AVX2, which does not move 10 or 12
    classes, the small path stays faster: 463 against 666 at 4096 x 10, in
    benchmarks/results/2026-12-06-small/small_path_rows.txt)."""
    if not logits.is_cpu or not 0 < logits.numel() <= SMALL_ELEMENTS:
        return False
    num_classes = logits.shape[axis]
    return num_classes >= NARROW_CLASSES or logits.numel() <= 2048 * num_classes


def small_loss_and_grad(
    logits: torch.Tensor,
    labels: torch.Tensor,
    spec: _core.Spec,
    fixed: _core.FixedTargets | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reduced loss and its gradient in the logits' dtype, by
    ``_core.log_softmax_loss_and_grad`` (one block of every row) or
    ``_core.blocked_log_softmax_loss_and_grad`` (more); where that loss is not finite
    (or, with positions left out, the gradient: see ``_core.log_softmax_applies``), by
    the blocked pass, which defines the values of rows with non-finite logits.
    ``fixed``: the spec's ``_core.FixedTargets`` for these labels' shape, or None."""
    blocks = row_blocks(logits, spec.axis)
    if blocks == [...]:
        loss, made = _core.log_softmax_loss_and_grad(logits, labels, spec, xp=xp, fixed=fixed)
        grad = cast(torch.Tensor, made)  # (made: the default with_grad=True)
        del made
    else:
        # The gradient written block by block into one buffer of the logits' shape (the
        # only logits-sized allocation; contiguous, as the blocked pass's), through one
        # float32 block of scratch for half-precision logits.
        dtype = _core.compute_dtype(xp, logits.dtype)
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        scratch = scratch_block(logits, blocks) if logits.dtype != dtype else None
        loss = _core.blocked_log_softmax_loss_and_grad(
            logits, labels, spec, xp=xp, blocks=blocks, scratch=scratch, out=grad, fixed=fixed
        )[0]
        del scratch
    if not is_finite(loss) or (_core.leaves_positions_out(spec) and not has_finite_sum(grad)):
        # (This form's gradient is let go first: the blocked pass allocates its own, and
        # two logits-sized gradients would be alive at once.)
        del grad
        loss, _, _, grad = _blocked_pass(logits, labels, spec, with_grad=True)
    elif blocks == [...] and (grad.dtype != logits.dtype or grad.stride() != logits.stride()):
        # In the logits' dtype and layout (the namespace's log_softmax leaves a narrow
        # class axis outermost in memory: a gradient of other strides is a surprise, and
        # ``.view`` fails on it).
        # (Contiguous, as the logits are, in one operation; else a copy of the logits'
        # own layout.)
        grad = (
            grad.contiguous()
            if grad.dtype == logits.dtype and logits.is_contiguous()
            else torch.empty_like(logits).copy_(grad)
        )
    return loss, grad


def fixed_targets(
    known: Any, labels: torch.Tensor, logits: torch.Tensor
) -> _core.FixedTargets | None:
    """``_core.fixed_targets`` of known options (``lsr._checks._KnownOptions``) for the
    spec of ids assumed in range (``known.in_range_spec()``, the spec of
    ``labels_assumed_in_range``), made of ``labels`` (of the key's shape and dtype) for
    logits like ``logits`` (their dtype and device; none of their values is read). Of
    the key's values alone, so the route makes it once per known options."""
    like = logits[:0].to(_core.compute_dtype(xp, logits.dtype))
    return _core.fixed_targets(labels, known.in_range_spec(), xp=xp, like=like)


def takes_log_softmax_loss(logits: torch.Tensor) -> bool:
    """Whether the loss alone (nothing to differentiate) is ``log_softmax_loss``'s: on
    the CPU, for every dtype and class count. (Half-precision logits over more than 8192
    classes took the blocked pass until the namespace's log-softmax converted them
    first; since then the log-softmax form is the faster one there too: bfloat16 and
    float16, 2 AVX-512 cores, 0.51-0.80 times the blocked pass's time from 64 x 10000
    to 32 x 128000, benchmarks/results/2026-12-07-half-log-softmax/half_classes.txt.)"""
    return logits.is_cpu


def log_softmax_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    spec: _core.Spec,
    fixed: _core.FixedTargets | None = None,
) -> torch.Tensor:
    """The reduced loss alone (nothing to differentiate) on the CPU, for a spec that
    ``_core.log_softmax_applies`` to and that holds no tensor: by
    ``_core.blocked_log_softmax_loss_and_grad`` (one log-softmax per block of rows, into one
    block of float32 scratch); where that loss is not finite, by the blocked pass, which
    defines the values of rows with non-finite logits. ``fixed``: as in
    ``small_loss_and_grad``."""
    blocks = row_blocks(logits, spec.axis)
    scratch = scratch_block(logits, blocks) if len(blocks) > 1 else None
    loss = _core.blocked_log_softmax_loss_and_grad(
        logits, labels, spec, xp=xp, blocks=blocks, scratch=scratch, fixed=fixed
    )[0]
    del scratch  # (the blocked pass below takes a block of its own)
    if not is_finite(loss):
        loss = _blocked_pass(logits, labels, spec, with_grad=False)[0]
    return loss


def is_finite(loss: torch.Tensor) -> bool:
    """Whether every value of a loss is finite (a 0-d one read as a number)."""
    return math.isfinite(loss.item()) if loss.ndim == 0 else bool(torch.isfinite(loss).all())


def has_finite_sum(grad: torch.Tensor) -> bool:
    """Whether every value of a gradient of the log-softmax form is finite, read in one
    pass with no temporary of its size (``torch.isfinite`` makes two, and a sum with
    ``dtype=`` converts first): its sum is finite. Each row of finite values is
    ``scale (p - q')``, which sums to 0 up to rounding (``p`` and ``q'`` are both
    distributions: the options of that form have no class weights), so a sum of finite
    values is near 0 and is not expected to overflow, in half precision either (PyTorch
    accumulates it in float32); if it did, the call would only take the blocked pass. A
    NaN or an infinity makes the sum NaN or infinite: no non-finite value passes."""
    return math.isfinite(torch.sum(grad).item())


def _blocked_pass(logits: torch.Tensor, labels: torch.Tensor, spec: _core.Spec, *, with_grad: bool):
    """``_blocked_loss_and_grad`` for a spec without tensors (its static part is all of
    it): the log-softmax forms' fallback where their loss is not finite, the pass that
    defines the values of rows with non-finite logits."""
    return _blocked_loss_and_grad(
        logits, labels, None, spec.smoothing, spec.prior, spec.static(), with_grad
    )


class SmoothCESmall(torch.autograd.Function):
    """Eager PyTorch's path on the CPU (``is_small``: every size but many rows of a few
    classes; named when it took small inputs only) for options that
    ``_core.log_softmax_applies`` to and that hold no tensor: the loss and its gradient
    from ``small_loss_and_grad``, about half the operations of the blocked pass, the gradient
    kept on ``ctx`` and handed over by backward as ``SmoothCEFused`` does. One output and
    no saved logsumexp: at 256 x 10 the per-call cost of autograd's bookkeeping is a fair
    part of the time.

    A second backward (``retain_graph=True``) recomputes the gradient the same way; a
    double backward (``create_graph=True``) takes it from ``_core.smooth_ce_grad``,
    which autograd differentiates. Old-style ``forward(ctx, ...)``, as ``SmoothCEFused``.
    ``loss_dtype``: None, or the dtype the loss is returned in (a drop-in's half
    precision), rounded here rather than by an autograd node of its own.
    """

    @staticmethod
    def forward(ctx, logits, labels, spec, loss_dtype, fixed=None):
        loss, grad = small_loss_and_grad(logits, labels, spec, fixed)
        ctx.save_for_backward(logits, labels)
        ctx.spec, ctx.fused_grad = spec, grad
        # (Rounded here for a drop-in that returns half precision: the cotangent of
        # the rounded loss is that of the loss, converted in backward as ``.to``'s
        # backward would.)
        return loss if loss_dtype is None or loss_dtype == loss.dtype else loss.to(loss_dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        grad, ctx.fused_grad = ctx.fused_grad, None
        spec = ctx.spec
        # (The saved logits and labels are read only where they are used: reading them
        # checks that nothing changed them in place since the forward pass, which the
        # usual backward, handing over the gradient made then, does not need.)
        if torch.is_grad_enabled():
            logits, labels = ctx.saved_tensors
            _, denominator, _ = _core.reduction_scale(labels, spec, xp=xp, like=logits)
            grad = core_grad(logits, labels, None, denominator, grad_loss, spec)
            return grad.to(logits.dtype), None, None, None, None
        if grad is None:
            # A second backward through a retained graph: the same computation again.
            logits, labels = ctx.saved_tensors
            _, grad = small_loss_and_grad(logits, labels, spec)
        return times_cotangent(grad, grad_loss, spec.axis, spec.reduction), None, None, None, None


def needs_autograd_through_core(target, weight, smoothing, prior) -> bool:
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

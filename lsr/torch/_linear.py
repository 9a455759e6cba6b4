"""``linear_smooth_ce``: the output layer and the loss in one pass over row blocks.

The blocked computation is ``lsr._linear`` (array-API code shared by every adapter);
here it gets PyTorch's conventions (``nn.Linear``'s (C, d) layout, class weights as
``weight``) and an autograd Function that keeps the gradients made in the forward pass.
"""

from __future__ import annotations

from typing import Any

import torch

from lsr import _core, _linear
from lsr._aux import Aux
from lsr._checks import prepare_linear_smooth_ce
from lsr._validation import fail_value
from lsr.torch._arguments import (
    check_prior_type,
    check_same_device,
    check_tensor,
    checked_smoothing,
    traced_constants,
)
from lsr.torch._autograd import is_batched, without_autocast
from lsr.torch._namespace import xp

__all__ = ["linear_smooth_ce"]


class _LinearSmoothCE(torch.autograd.Function):
    """``_linear.linear_smooth_ce`` with the gradients made in the forward pass.

    For "mean" and "sum" the forward pass computes the loss and the gradients for the
    hidden states, the projection and the bias block by block, keeps them (N x d, K x d and K:
    the size of the inputs, never N x K) and backward scales them by the cotangent. For
    "none" each position's cotangent is only known in backward, which then recomputes
    the blocks with it (one more pass of matrix products).
    """

    @staticmethod
    def forward(ctx, hidden, projection, bias, labels, spec, chunk_size, with_grad):
        grads_now = with_grad and spec.reduction != "none"
        aux = {}  # (filled by the pass with spec.aux)
        loss, grads = _linear.linear_smooth_ce(
            hidden,
            projection.mT,
            bias,
            labels,
            xp=xp,
            spec=spec,
            chunk_size=chunk_size,
            with_grad=grads_now,
            aux=aux,
        )
        ctx.grads = grads
        ctx.spec = spec
        ctx.chunk_size = chunk_size
        if with_grad and not grads_now:
            ctx.save_for_backward(hidden, projection, bias, labels)
        ctx.set_materialize_grads(False)
        if not spec.aux:
            return loss
        aux_values = tuple(aux[name] for name in _core.AUX_NAMES)
        ctx.mark_non_differentiable(*aux_values)
        return loss, *aux_values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, *grad_aux):
        if grad_loss is None:
            return (None,) * 7
        grads, ctx.grads = ctx.grads, None
        if ctx.spec.reduction == "none" and is_batched(grad_loss):
            grads = _batched_none_grads(ctx, grad_loss)
        elif ctx.spec.reduction == "none":
            hidden, projection, bias, labels = ctx.saved_tensors
            _, grads = _linear.linear_smooth_ce(
                hidden,
                projection.mT,
                bias,
                labels,
                xp=xp,
                spec=ctx.spec,
                chunk_size=ctx.chunk_size,
                with_grad=True,
                cotangent=grad_loss.to(_core.compute_dtype(xp, hidden.dtype)),
            )
        elif grads is None:
            raise RuntimeError(
                "lsr.torch.linear_smooth_ce: its gradients were already handed to a first "
                "backward pass; a second one (retain_graph=True) is not supported. Use "
                "smooth_ce(F.linear(...)) where the graph must be differentiated twice."
            )
        elif is_batched(grad_loss):
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
    hidden, projection, bias, labels = ctx.saved_tensors
    dtype = _core.compute_dtype(xp, hidden.dtype)
    inputs, matrix = hidden.to(dtype), projection.to(dtype)
    logits = inputs @ matrix.mT
    if bias is not None:
        logits = logits + bias.to(dtype)
    spec = ctx.spec
    _, lse, denominator = _core.smooth_ce(logits, labels, spec, xp=xp)
    d_logits = _core.smooth_ce_grad(
        logits, labels, lse, denominator, cotangent.to(dtype), spec, xp=xp
    )
    d_bias = None if bias is None else torch.sum(d_logits, dim=0).to(bias.dtype)
    return (
        (d_logits @ matrix).to(hidden.dtype),
        (inputs.mT @ d_logits).to(projection.dtype),
        d_bias,
    )


def linear_smooth_ce(
    input: torch.Tensor,
    projection: torch.Tensor,
    target: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    smoothing: float | torch.Tensor = 0.1,
    prior: str | torch.Tensor = "uniform",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
    chunk_size: int | None = None,
) -> Any:
    r"""``smooth_ce(F.linear(input, projection, bias), target)`` without the N x C logits.

    For large vocabularies the logits of the output layer are the largest tensors of a
    training step. This computes the same loss and its gradients for ``input``,
    ``projection`` and ``bias`` over blocks of ``chunk_size`` rows, so that at most one
    block's logits exist at any time: peak memory stays flat as N grows (Liger-Kernel's
    fused linear cross-entropy does the same on GPUs). The gradients are made during the
    forward pass and kept until backward (the inputs' sizes, not N x C).

    Args:
        input: hidden states of shape (..., d) (flattened to (N, d)).
        projection: the output layer's weight in ``nn.Linear``'s layout, (C, d)
            (``layer.weight``).
        target: class ids of shape (...) (input's leading shape), or class
            probabilities of shape (..., C).
        bias: (C,) or None.
        weight: per-class weights of shape (C,), as ``F.cross_entropy``'s ``weight``
            (in every lsr function ``weight`` means class weights).
        ignore_index, reduction, smoothing, prior, kl, z_loss: as in ``smooth_ce``.
            ``smoothing`` may be one epsilon per position of hidden's leading shape (or
            broadcastable to it); it stays with its position under ``causal_shift``, as
            ``where`` does (position t's epsilon smooths the label of t + 1).
        causal_shift: next-token prediction: the hidden state at position t is
            scored against the label at t + 1 along the labels' last axis (the
            sequence); each sequence's last position is left out, and (PyTorch) never
            projected. Only the labels are shifted: the hidden states are not copied.
            Give the (batch, sequence) layout: flattened rows are one sequence.
        chunk_size: rows per block; by default as many as make 16 Mi logits (on the
            CPU, in float32 and float64, where that is several blocks of at least 128
            rows and there are no class weights, prior vector, ``return_aux`` or
            probability targets: rounded down to a multiple of 128, in a column-major
            block, which MKL's products write faster).

    Returns:
        As ``smooth_ce``; for ``reduction="none"``, one loss per row of the input's
        leading shape. With ``return_aux=True``, ``(loss, aux)`` as ``smooth_ce``.

    Gradients flow to ``input``, ``projection`` and ``bias``; differentiating them again
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
    value: torch.Tensor | None  # (the later loops go over optional tensors too)
    for name, value in (("input", input), ("projection", projection), ("target", target)):
        check_tensor(name, value)
    for name, value in (("bias", bias), ("weight", weight)):
        if value is not None:
            check_tensor(name, value)
    check_prior_type(prior)
    smoothing = checked_smoothing("smoothing", smoothing, input)
    smoothing, z_loss, softcap, confidence_penalty = traced_constants(
        smoothing, z_loss, softcap, confidence_penalty
    )
    dense = target.is_floating_point()
    if dense and ignore_index not in (-100, None):
        fail_value(
            "`ignore_index` applies to class-id targets only; leave it at -100 for "
            "probability (floating) targets.",
            "ignore_index",
            ignore_index,
        )
    for name, value in (("projection", projection), ("bias", bias), ("weight", weight)):
        if isinstance(value, torch.Tensor):
            check_same_device(name, value, input)
    check_same_device("target", target, input)
    if torch.is_grad_enabled():
        options: tuple[tuple[str, Any], ...] = (
            ("smoothing", smoothing),
            ("prior", prior),
            ("weight", weight),
            ("target", target),
        )
        for name, option in options:
            if isinstance(option, torch.Tensor) and option.requires_grad:
                # The fused loss computes the gradients of input, projection and bias
                # only: a silent None (or zero) for this one would be wrong.
                fail_value(
                    f"linear_smooth_ce does not differentiate `{name}`: pass a tensor that "
                    "does not require grad (`.detach()`), or use "
                    f"smooth_ce(input @ projection.T, ...) for the gradient of `{name}`.",
                    f"{name}.requires_grad",
                    True,
                )
    _, hidden, labels, spec, leading = prepare_linear_smooth_ce(
        input,
        projection,
        target,
        bias=bias,
        smoothing=smoothing,
        prior=prior,
        ignore_index=None if dense else ignore_index,
        weight=weight,
        where=None,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
        causal_shift=causal_shift,
        chunk_size=chunk_size,
        projection_name="projection",
        transposed=True,
    )
    if torch.jit.is_tracing():
        # Its blocks and kept rows are chosen in Python from values, which a trace
        # would keep as constants for every later input.
        raise RuntimeError(
            "`linear_smooth_ce` cannot be traced by torch.jit.trace (deprecated in "
            "PyTorch): use torch.compile, or trace `lsr.torch.smooth_ce` of the "
            "projected logits. Received: a call under torch.jit.trace"
        )
    with_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, projection, bias)
    )
    with without_autocast(input.device.type):
        loss = _LinearSmoothCE.apply(hidden, projection, bias, labels, spec, chunk_size, with_grad)
    if not spec.aux:
        return loss.reshape(leading) if reduction == "none" else loss
    loss, *aux_values = loss
    if reduction == "none":
        loss, aux_values = loss.reshape(leading), [v.reshape(leading) for v in aux_values]
    return loss, Aux(*(value.detach() for value in aux_values))

"""The functional API: ``cross_entropy`` (``F.cross_entropy``'s drop-in), ``smooth_ce``
(lsr's keyword grammar, shared by every framework) and ``distill_loss``.

All three only translate PyTorch's conventions and hand the numbers to the core, through
the autograd Functions of ``lsr.torch._autograd``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch
from torch.autograd import forward_ad

from lsr import _core, _distill
from lsr._aux import Aux, as_aux
from lsr._checks import check_smooth_ce, known_options
from lsr._validation import check_fraction, fail_type, fail_value
from lsr.torch._arguments import (
    COMPILES_THROUGH_OPERATORS,
    check_tensor,
    check_tensors,
    checked_smoothing,
    is_int64,
    refused_while_tracing,
    traced_constants,
    warn_if_probabilities,
)
from lsr.torch._autograd import (
    SmoothCE,
    SmoothCEFused,
    SmoothCESmall,
    SmoothCEWithJvp,
    fixed_targets,
    is_plain_eager_mode,
    is_small,
    log_softmax_loss,
    needs_autograd_through_core,
    nested_forward_mode,
    row_blocks,
    takes_log_softmax_loss,
    without_autocast,
)
from lsr.torch._namespace import HALF, xp

__all__ = ["cross_entropy", "distill_loss", "smooth_ce"]


def class_axis(input: torch.Tensor, axis: int) -> int:
    # F.cross_entropy reads a 1-D input as one unbatched position of C classes.
    return 0 if input.ndim == 1 and axis == 1 else axis


def is_plain_eager_call(
    input: Any, target: Any, weight: Any, smoothing: Any, prior: Any, causal_shift: Any
) -> bool:
    """Whether ``smooth_ce`` may take its route for repeated calls: class ids on
    the CPU, nothing that could be differentiated but the input (no weight, a float
    smoothing, a named prior), no ``causal_shift``, and nothing that changes the path
    (autocast, ``torch.compile``, ``torch.jit.trace``, ``torch.func``, forward-mode AD).
    Each is a test the full path makes on its way to ``SmoothCESmall`` (a gradient for
    the input) or ``log_softmax_loss`` (none) for such a call. (Some
    are also settled by the known options' key, such as the devices and the target's
    dtype: they stay here, so that the route does not depend on how the key is made.)
    Where it holds, the target's values are cheap to read (``values_are_cheap``: on the
    CPU, not under ``torch.compile`` or ``torch.jit.trace``, not a ``torch.func``
    tensor), which the route tells the key."""
    return (
        type(smoothing) is float
        and type(prior) is str
        and weight is None
        and causal_shift is False
        and isinstance(input, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and input.is_cpu
        and target.is_cpu
        and not target.is_floating_point()
        and is_plain_eager_mode(input)
        and not torch._C._functorch.is_functorch_wrapped_tensor(target)
    )


def is_plain_compiled_call(
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    smoothing: Any,
    prior: Any,
    axis: Any,
    kl: Any,
    z_loss: Any,
    softcap: Any,
    confidence_penalty: Any,
    return_aux: Any,
    causal_shift: Any,
) -> bool:
    """Whether ``smooth_ce`` hands a call under ``torch.compile`` to ``lsr::smooth_ce``:
    every argument of a type its schema holds as it is (no conversion, such as a bool
    read as an int, that would hide a value the checks refuse, and ints in int64), no
    auxiliary output and no ``causal_shift``. Other calls are traced through the full
    path."""
    return (
        isinstance(input, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and (weight is None or isinstance(weight, torch.Tensor))
        and is_int64(ignore_index)
        and type(reduction) is str
        and type(smoothing) is float
        and type(prior) is str
        and is_int64(axis)
        and type(kl) is bool
        and type(z_loss) is float
        and (softcap is None or type(softcap) is float)
        and type(confidence_penalty) is float
        and return_aux is False
        and causal_shift is False
    )


def small_path_applies(spec: _core.Spec) -> bool:
    """Whether ``SmoothCESmall`` computes these options: ``_core.log_softmax_applies``
    to them, and no tensor is among them."""
    return _core.log_softmax_applies(spec) and not spec.has_arrays()


def takes_small_path(input: torch.Tensor, spec: _core.Spec) -> bool:
    """Whether ``smooth_ce`` gives a call whose gradient it computes (eager, on the CPU)
    to ``SmoothCESmall``: options it computes (``small_path_applies``) and logits it
    takes (``is_small``: every size, but many rows of a few classes)."""
    return small_path_applies(spec) and is_small(input, spec.axis)


def routed_call(
    input: torch.Tensor,
    labels: torch.Tensor,
    spec: _core.Spec,
    loss_dtype: torch.dtype | None,
    with_grad: bool,
    fixed: _core.FixedTargets | None = None,
) -> torch.Tensor:
    """The end of the route for repeated calls: ``SmoothCESmall`` where the input
    is differentiated, the loss alone (``log_softmax_loss``) where nothing is; both
    gather at every id, and so raise on one outside [0, C) before returning.
    ``fixed``: the spec's ``_core.FixedTargets`` for these labels' shape, or None."""
    if with_grad:
        return SmoothCESmall.apply(input, labels, spec, loss_dtype, fixed)
    return log_softmax_loss(input, labels, spec, fixed)


def function_arguments(input: torch.Tensor, labels: torch.Tensor, spec: _core.Spec) -> tuple:
    """The arguments of ``SmoothCE``'s Functions: the tensors as the Function's own inputs
    (so that autograd and torch.func see them), the rest as one hashable object."""
    return (input, labels, spec.weight, spec.smoothing, spec.prior, spec.static())


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
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
    return_aux: bool = False,
    causal_shift: bool = False,
) -> Any:
    r"""Label-smoothed cross-entropy with ``F.cross_entropy``'s conventions.

    The cross-entropy ``H(q', softmax(input))`` with ``q' = (1 - smoothing) q +
    smoothing u`` (Szegedy et al. 2016, "Rethinking the Inception Architecture for
    Computer Vision", section 7). With ``prior="uniform"`` it equals
    ``F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
    reduction=reduction, label_smoothing=smoothing)``, except that a "mean" over targets
    that are all ``ignore_index`` is 0 rather than NaN.

    This is lsr's keyword grammar, the one ``lsr.jax`` and ``lsr.tensorflow`` share
    (keyword-only options, ``smoothing``, ``axis``); ``cross_entropy`` is the drop-in
    with ``F.cross_entropy``'s own signature.

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
        smoothing: epsilon in [0, 1] (``label_smoothing`` in PyTorch); a float (a NumPy
            scalar is taken as the float it holds), a 0-d tensor, or one epsilon per
            position (a tensor of the target's shape for class ids, or broadcastable to
            it, e.g. (N, 1) per example; on the input's device).
            Not differentiated by the fused path; a gradient asked for it (its
            ``requires_grad``) goes through autograd of the core's ops.
        prior: ``"uniform"`` (PyTorch's convention: the true class gets
            ``1 - eps + eps / C``), ``"others"`` (eps spread over the C - 1 other classes,
            the true class gets ``1 - eps``: fairseq, T5X) or a (C,) tensor holding a
            class distribution (see ``lsr.estimate_prior``).
        axis: the class axis of ``input``.
        kl: return ``KL(q' || p)`` (the loss minus the target entropy), whose minimum
            is 0.
        z_loss: coefficient of an added ``z_loss * logsumexp(input)**2`` per position.
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per position
            (Pereyra et al. 2017), weighted and reduced like ``z_loss``.
        return_aux: also return ``lsr.Aux(nll, lse, entropy, correct)`` from the same pass,
            without gradient (integer labels only; see ``lsr.Aux``); False: the loss alone,
            and no extra sum.
        causal_shift: next-token prediction: the logits at position t are scored
            against the target at t + 1 along the target's last axis (the sequence),
            and each sequence's last position is left out. Only the target and a mask
            are shifted: ``input`` is never sliced or copied. Class ids only; mark
            padding with ``ignore_index``.

    Returns:
        A 0-d tensor for "mean" and "sum", else one loss per position; float32 for half
        precision inputs, else the input's dtype. With ``return_aux=True``,
        ``(loss, aux)``.

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
    return _smooth_ce(
        input,
        target,
        weight,
        ignore_index,
        reduction,
        smoothing,
        prior,
        axis,
        kl,
        z_loss,
        softcap,
        confidence_penalty,
        return_aux,
        causal_shift,
        None,
    )


def _smooth_ce(
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    smoothing: Any,
    prior: Any,
    axis: Any,
    kl: Any,
    z_loss: Any,
    softcap: Any,
    confidence_penalty: Any,
    return_aux: Any,
    causal_shift: Any,
    loss_dtype: torch.dtype | None,
) -> Any:
    """``smooth_ce``; ``loss_dtype``: a half-precision dtype that the drop-in's loss is
    rounded to, which the small path does inside its Function (no autograd node for
    the rounding; other paths return the compute dtype, and the drop-in rounds it)."""
    if torch.compiler.is_compiling():
        # The route under torch.compile: the checks and the core run inside one
        # operator's decomposition (``lsr::smooth_ce``), where dynamo guards none of
        # their Python (see ``_traced_smooth_ce``).
        smoothing, z_loss, softcap, confidence_penalty = traced_constants(
            smoothing, z_loss, softcap, confidence_penalty
        )
        if COMPILES_THROUGH_OPERATORS and is_plain_compiled_call(
            input,
            target,
            weight,
            ignore_index,
            reduction,
            smoothing,
            prior,
            axis,
            kl,
            z_loss,
            softcap,
            confidence_penalty,
            return_aux,
            causal_shift,
        ):
            return torch.ops.lsr.smooth_ce(
                input,
                target,
                weight,
                ignore_index,
                reduction,
                smoothing,
                prior,
                axis,
                kl,
                z_loss,
                softcap,
                confidence_penalty,
            )
    elif is_plain_eager_call(input, target, weight, smoothing, prior, causal_shift):
        # The route for repeated calls (above all small ones, MNIST-sized batches, where
        # Python's time is most of the call's): options an earlier call had are not
        # checked again, and the tests above stand for the full path's on its way to
        # SmoothCESmall. (check_smooth_ce's options but the tensors and causal_shift, in
        # the order of _checks.KEYED_NAMES, as the known options' key holds them.)
        known = known_options(
            input,
            target,
            (
                smoothing,
                prior,
                class_axis(input, axis),
                ignore_index,
                reduction,
                kl,
                z_loss,
                softcap,
                confidence_penalty,
                return_aux,
            ),
            namespace=xp,
            cheap=True,
        )
        # (small_path_applies reads the spec alone: decided once per known options.)
        with_grad = input.requires_grad and torch.is_grad_enabled()
        if (
            known is not None
            and known.decided(small_path_applies, known.spec)
            and is_small(input, known.spec.axis)
            and (with_grad or takes_log_softmax_loss(input))
        ):
            warn_if_probabilities(input)
            # Every id in [0, C) is the usual call: then the ids need not be read, as
            # the gather of both paths raises on any other before anything is returned
            # (ignore_index among them: labels_assumed_in_range is None where it is in
            # [0, C)). There, or after a call where it raised, the ids are read first;
            # and over one block of logits, where a gather that raises in a later block
            # would waste the blocks before it, and reading the ids is a small part of
            # the call.
            assumed = None
            if not known.outside_seen and row_blocks(input, known.spec.axis) == [...]:
                assumed = known.labels_assumed_in_range(target)
            if assumed is not None:
                labels, spec = assumed
                # (The targets' terms of these options, made once: they depend on
                # nothing but the key's values when every id is in range.)
                fixed = known.decided(fixed_targets, known, labels, input)
                try:
                    return routed_call(input, labels, spec, loss_dtype, with_grad, fixed)
                except (IndexError, RuntimeError):
                    known.outside_seen = True
            labels, spec = known.labels_and_spec(target)
            known.outside_seen = spec.ignore_index is not None
            return routed_call(input, labels, spec, loss_dtype, with_grad)
    return _checked_smooth_ce(
        input,
        target,
        weight,
        ignore_index,
        reduction,
        smoothing,
        prior,
        axis,
        kl,
        z_loss,
        softcap,
        confidence_penalty,
        return_aux,
        causal_shift,
        loss_dtype,
    )


def _checked_smooth_ce(
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    smoothing: Any,
    prior: Any,
    axis: Any,
    kl: Any,
    z_loss: Any,
    softcap: Any,
    confidence_penalty: Any,
    return_aux: Any,
    causal_shift: Any,
    loss_dtype: torch.dtype | None,
) -> Any:
    """``_smooth_ce``'s full path: every argument checked, then the path for the mode
    (eager, ``torch.compile``, ``torch.func``, ``torch.jit.trace``) and the options."""
    check_tensors(input, target, weight, prior)
    warn_if_probabilities(input)
    smoothing = checked_smoothing("smoothing", smoothing, input)
    smoothing, z_loss, softcap, confidence_penalty = traced_constants(
        smoothing, z_loss, softcap, confidence_penalty
    )
    dense = target.is_floating_point()
    if dense and ignore_index not in (-100, None):
        # As F.cross_entropy: a class id to ignore means nothing for probabilities.
        fail_value(
            "`ignore_index` applies to class-id targets only; leave it at -100 for "
            "probability (floating) targets.",
            "ignore_index",
            ignore_index,
        )
    options: dict[str, Any] = dict(
        smoothing=smoothing,
        prior=prior,
        axis=class_axis(input, axis),
        ignore_index=None if dense else ignore_index,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        softcap=softcap,
        confidence_penalty=confidence_penalty,
        return_aux=return_aux,
    )
    # (Half-precision logits are converted block by block later, never here as a whole.)
    _, labels, spec = check_smooth_ce(
        input, target, weight=weight, causal_shift=causal_shift, namespace=xp, **options
    )
    if spec.where is not None and spec.ignore_index is None and not dense and spec.checked:
        # causal_shift without an ignore_index made a mask. The ids were read
        # (check_label_range) and are in [0, C), so -1 can mark the left-out positions
        # instead: the fused Functions, which take no mask, then apply (one logits-sized
        # buffer rather than autograd through the core's ops).
        labels = torch.where(spec.where, labels.to(torch.int64), -1)
        spec = spec.replace(where=None, ignore_index=-1)
    with without_autocast(input.device.type):
        functorch_input = (
            not torch.compiler.is_compiling()
            and torch._C._functorch.is_functorch_wrapped_tensor(input)
        )
        # (A mask that is left, from causal_shift on ids that were not read, is not
        # among the Functions' inputs: such a call is differentiated through the core.)
        # (torch.jit.trace records only tensor operations: the core's plain ones, with
        # no value read, trace into a graph that is right for other inputs too.)
        if (
            needs_autograd_through_core(target, weight, smoothing, prior)
            or (functorch_input and nested_forward_mode())
            or spec.where is not None
            or torch.jit.is_tracing()
        ):
            aux: dict[str, Any] = {}
            loss, _, _ = _core.smooth_ce(
                input.to(_core.compute_dtype(xp, input.dtype)),
                labels,
                spec,
                xp=xp,
                aux=aux,
                differentiated=True,
            )
            return (loss, as_aux(aux, torch.Tensor.detach)) if spec.aux else loss
        if torch.compiler.is_compiling():
            # Dynamo cannot trace a custom jvp; forward mode is for eager torch.func use.
            loss, _, _, *aux_values = SmoothCE.apply(*function_arguments(input, labels, spec))
        elif (
            functorch_input
            or torch._C._are_functorch_transforms_active()
            or forward_ad.unpack_dual(input).tangent is not None
        ):
            # torch.func transforms: the plain forward and backward, which they can batch;
            # forward-mode dual logits: the same, with the closed-form jvp.
            loss, _, _, *aux_values = SmoothCEWithJvp.apply(
                *function_arguments(input, labels, spec)
            )
        else:
            with_grad = torch.is_grad_enabled() and input.requires_grad
            if with_grad and takes_small_path(input, spec):
                return SmoothCESmall.apply(input, labels, spec, loss_dtype)
            if _core.log_softmax_applies(spec) and not spec.has_arrays():
                # (Such a spec asks for no auxiliary output.)
                if not with_grad and takes_log_softmax_loss(input):
                    return log_softmax_loss(input, labels, spec)
            loss, _, _, _, *aux_values = SmoothCEFused.apply(
                *function_arguments(input, labels, spec), with_grad
            )
    # (Metrics: no gradient flows through them.)
    return (loss, Aux(*(value.detach() for value in aux_values))) if spec.aux else loss


def _traced_smooth_ce(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    smoothing: float,
    prior: str,
    axis: int,
    kl: bool,
    z_loss: float,
    softcap: float | None,
    confidence_penalty: float,
) -> torch.Tensor:
    """``lsr::smooth_ce``, the operator that ``smooth_ce`` calls under ``torch.compile``:
    the full path (``_checked_smooth_ce``), as its decomposition
    (CompositeImplicitAutograd).

    Dynamo records the operator and runs this function on fake tensors, without tracing
    it: the checks and the core add no guard to the compiled code (traced, they added
    over 300, and a call at 256 x 10 spent a fifth of its time testing them). AOTAutograd
    then traces it to aten operators, as it traced the full path before, and Inductor
    compiles those. Out of a compiled graph (a graph break, ``backend="eager"``) it runs
    eagerly, as ``smooth_ce`` does.

    An argument the checks refuse while dynamo runs it becomes a graph break
    (``refused_while_tracing``): with ``fullgraph=True`` the compile fails with lsr's
    message, as when dynamo traced the checks; otherwise the call runs eagerly and
    raises lsr's own error."""
    try:
        return _checked_smooth_ce(
            input,
            target,
            weight,
            ignore_index,
            reduction,
            smoothing,
            prior,
            axis,
            kl,
            z_loss,
            softcap,
            confidence_penalty,
            False,
            False,
            None,
        )
    except (TypeError, ValueError) as error:
        refused_while_tracing(error)
        raise


# (Defined once, when lsr.torch is imported.)
torch.library.define(
    "lsr::smooth_ce",
    "(Tensor input, Tensor target, Tensor? weight, int ignore_index, str reduction, "
    "float smoothing, str prior, int axis, bool kl, float z_loss, float? softcap, "
    "float confidence_penalty) -> Tensor",
)
# (``disable``: where the operator runs eagerly inside a compiled function, after a
# graph break, dynamo would otherwise compile the frames of lsr's Python one by one.)
torch.library.impl(
    "lsr::smooth_ce", "CompositeImplicitAutograd", torch.compiler.disable(_traced_smooth_ce)
)


def torch_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """The reduction PyTorch's losses compute for these arguments, warning as PyTorch does
    (at the caller of the drop-in): the deprecated ``size_average``/``reduce`` pair
    overrides ``reduction`` (None counts as True; ``reduce`` false means "none", else
    ``size_average`` chooses between "mean" and "sum"), and "elementwise_mean" is "mean"."""
    if size_average is not None or reduce is not None:
        keep_reduce = True if reduce is None else reduce
        average = True if size_average is None else size_average
        reduction = ("mean" if average else "sum") if keep_reduce else "none"
        warnings.warn(
            f"`size_average` and `reduce` are deprecated, as in PyTorch; they override "
            f"`reduction`, pass reduction={reduction!r} instead. "
            f"Received: size_average={size_average!r}, reduce={reduce!r}",
            UserWarning,
            stacklevel=3,
        )
    elif reduction == "elementwise_mean":
        warnings.warn(
            "reduction='elementwise_mean' is deprecated, as in PyTorch; pass "
            "reduction='mean' instead. Received: reduction='elementwise_mean'",
            UserWarning,
            stacklevel=3,
        )
        reduction = "mean"
    return reduction


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    prior: str | torch.Tensor = "uniform",
    kl: bool = False,
    z_loss: float = 0.0,
    softcap: float | None = None,
    confidence_penalty: float = 0.0,
) -> torch.Tensor:
    r"""``torch.nn.functional.cross_entropy``, computed by lsr: change the prefix only.

    The parameters shared with ``F.cross_entropy`` have its names, positions, kinds and
    defaults (``weight`` third and positional, ``label_smoothing=0.0``), so
    ``F.cross_entropy(...)`` becomes ``lsr.torch.cross_entropy(...)`` with nothing else
    changed; with ``prior="uniform"`` the values and gradients are ``F.cross_entropy``'s
    for every input it accepts. The keyword-only ``prior``, ``kl`` and ``z_loss`` are
    lsr's additions (see ``smooth_ce``, lsr's own keyword grammar).

    Where it differs from ``F.cross_entropy``, on purpose: a "mean" over no counted
    position (every target ``ignore_index``, or an empty batch) is 0 with a zero
    gradient, not NaN; class ids out of range raise a ``ValueError`` (eager) or make the
    loss NaN (``torch.compile``, ``torch.func``) instead of an index error.

    Args:
        input: logits of shape (C,), (N, C) or (N, C, d1, d2, ...), classes on axis 1
            (0 for a 1-D input).
        target: class ids of the input's shape without the class axis, or class
            probabilities of the input's shape and dtype.
        weight: per-class weights of shape (C,).
        size_average: deprecated, as in PyTorch: with ``reduce`` it overrides
            ``reduction`` (None counts as True; ``reduce`` false gives "none", else
            ``size_average`` chooses "mean" or "sum") and warns (``UserWarning``).
        ignore_index: class id whose targets get loss 0 and are left out of the mean.
        reduce: deprecated, as in PyTorch; see ``size_average``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"`` (PyTorch's deprecated
            ``"elementwise_mean"`` means "mean", with a warning).
        label_smoothing: epsilon in [0, 1].
        prior: ``"uniform"`` (PyTorch's convention), ``"others"`` (the true class gets
            exactly ``1 - eps``) or a (C,) tensor of class probabilities.
        kl: return ``KL(q' || p)`` (the loss minus the target entropy).
        z_loss: coefficient of an added ``z_loss * logsumexp(input)**2`` per position.
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per position
            (Pereyra et al. 2017), weighted and reduced like ``z_loss``.

    Returns:
        As ``F.cross_entropy``: a 0-d tensor for "mean" and "sum", else one loss per
        position; in the input's dtype, also for float16/bfloat16 (computed in float32
        and rounded once), and float32 under ``torch.autocast``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> import lsr.torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([0, 1])
        >>> ours = lsr.torch.cross_entropy(logits, target, None, label_smoothing=0.1)
        >>> theirs = F.cross_entropy(logits, target, None, label_smoothing=0.1)
        >>> print(f"{ours.item():.4f} {theirs.item():.4f}")
        0.5047 0.5047
    """
    reduction = torch_reduction(size_average, reduce, reduction)
    # Checked here so that errors name PyTorch's parameter, not smooth_ce's `smoothing`
    # (a float in [0, 1], the usual value, passes both checks: not made again).
    if type(label_smoothing) is not float or not 0.0 <= label_smoothing <= 1.0:
        label_smoothing = checked_smoothing("label_smoothing", label_smoothing)
        check_fraction("label_smoothing", label_smoothing)
    # F.cross_entropy returns half-precision losses in the input's dtype, and float32
    # under autocast (which runs it in float32).
    dtype = getattr(input, "dtype", None)
    if dtype not in HALF or torch.is_autocast_enabled(input.device.type):
        dtype = None
    loss = _smooth_ce(
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        prior,
        1,
        kl,
        z_loss,
        softcap,
        confidence_penalty,
        False,
        False,
        dtype,
    )
    return loss if dtype is None or loss.dtype == dtype else loss.to(dtype)


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
    check_tensor("input", input)
    check_tensor("teacher", teacher)
    if where is not None:
        check_tensor("where", where)
    if not isinstance(temperature, (numbers.Real, torch.Tensor)):
        fail_type(
            "`temperature` must be a positive number or a 0-d torch.Tensor.",
            "temperature",
            temperature,
        )
    (temperature,) = traced_constants(temperature)
    return _distill.distill_loss(
        input,
        teacher.detach(),
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=where,
        kl=kl,
    )

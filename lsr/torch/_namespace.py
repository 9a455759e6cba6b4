"""The array namespace the core runs on in PyTorch: array-api-compat's, adjusted.

Everything lsr's PyTorch adapter knows about torch as an array library is here: the
functions the core calls where array-api-compat's versions cannot be batched by
``torch.func``, and the optional extensions of ``lsr._core.EXTENSIONS`` (a fused
logsumexp and the in-place steps of the blocked and fused passes).
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import torch

from lsr._compat import get_backend

# array-api-compat's torch namespace, through the backend registry (its one importer).
_compat_xp = get_backend("torch").namespace()

__all__ = ["HALF", "NARROW_CLASSES", "xp"]

#: The half-precision dtypes, which the core computes in float32.
HALF = (torch.float16, torch.bfloat16)


def _vecdot(x1: torch.Tensor, x2: torch.Tensor, /, *, axis: int = -1) -> torch.Tensor:
    # array-api-compat's vecdot moves the axis with torch.moveaxis, which torch.func.vmap
    # cannot batch; torch.movedim is the same view and can be batched.
    x1, x2 = torch.broadcast_tensors(torch.movedim(x1, axis, -1), torch.movedim(x2, axis, -1))
    return (x1[..., None, :] @ x2[..., None])[..., 0, 0]


def _broadcast_to(x: torch.Tensor, /, shape: tuple[int, ...]) -> torch.Tensor:
    # The same view as torch.broadcast_to, which autograd's own vmap (is_grads_batched)
    # has no batching rule for; expand has one.
    return x.expand(shape)


def _squeeze(x: torch.Tensor, /, axis: int | tuple[int, ...]) -> torch.Tensor:
    # array-api-compat's squeeze normalizes the axes and loops even for one axis: the
    # core squeezes one size-1 axis several times per call, where that costs as much as
    # the op. Anything else (and its error for a size other than 1) is compat's.
    if isinstance(axis, int) and -x.ndim <= axis < x.ndim and x.shape[axis] == 1:
        return torch.squeeze(x, axis)
    return _compat_xp.squeeze(x, axis=axis)


def _sum(
    x: torch.Tensor,
    /,
    *,
    axis: int | tuple[int, ...] | None = None,
    dtype: Any = None,
    keepdims: bool = False,
) -> torch.Tensor:
    # One torch.sum for a floating tensor over everything or one axis, in its own dtype
    # (the array API's result dtype there, and the core's every sum of a small call,
    # where array-api-compat's argument handling costs as much as the op). Anything else
    # (integer promotion, several axes, keepdims over everything) is compat's.
    if dtype is None and x.is_floating_point():
        if axis is None and not keepdims:
            return torch.sum(x)
        if type(axis) is int:
            return torch.sum(x, axis, keepdim=keepdims)
    return _compat_xp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _expand_dims(x: torch.Tensor, /, *, axis: int = 0) -> torch.Tensor:
    # One unsqueeze (the class ids of every call get their class axis back this way);
    # array-api-compat's checks of the axis cost several times the op, and
    # ``torch.unsqueeze`` refuses an axis out of range itself (IndexError, as the
    # standard asks).
    return torch.unsqueeze(x, axis)


def _clip(x: torch.Tensor, /, min: Any = None, max: Any = None) -> torch.Tensor:
    # One clamp for bounds that are Python numbers the tensor's dtype holds (validation
    # clips the class ids twice per call with ignore_index); array-api-compat's clip
    # compares and selects, several passes over booleans. Anything else (tensor or
    # out-of-range bounds, bool tensors, no bound) is compat's, errors included.
    bounds = [bound for bound in (min, max) if bound is not None]
    if bounds and x.dtype != torch.bool and all(_holds(x.dtype, bound) for bound in bounds):
        return torch.clamp(x, min, max)
    return _compat_xp.clip(x, min, max)


def _holds(dtype: torch.dtype, bound: Any) -> bool:
    """Whether ``bound`` is a Python number (not a bool) inside ``dtype``'s range, of a
    kind the dtype takes (no float bound for an integer dtype)."""
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return False
    if dtype.is_floating_point:
        return True
    info = torch.iinfo(dtype)
    return isinstance(bound, int) and info.min <= bound <= info.max


def _logsumexp(x: torch.Tensor, /, *, axis: int, keepdims: bool = False) -> torch.Tensor:
    return torch.logsumexp(x, dim=axis, keepdim=keepdims)


def _narrow_classes() -> int:
    """Below this many classes, a CPU class axis that is innermost in memory is computed
    as the outermost one (see ``_log_softmax``): the float32 lanes of the vector unit
    PyTorch's CPU kernels were built for, below which its log-softmax along an innermost
    axis takes a scalar path. Measured on 2 cores, innermost against moved, microseconds
    (benchmarks/results/2026-12-06-small/log_softmax_width.txt): with AVX2, 256 x 7
    float32 18.1 against 13.6, 256 x 8 7.4 against 14.2, 2048 x 7 109 against 50, 2048 x
    12 38 against 71. 16 for AVX-512 is inferred, not measured on a CPU known to have
    it: the machine of 2026-12-05 (benchmarks.md; its vector extension was not
    recorded) took 21 against 7 at 256 x 10, the scalar path that AVX2 shows below 8.
    0 (never moved) on CPUs where this was not measured."""
    return {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), 0)


#: See ``_narrow_classes``: fixed for the process, as PyTorch's choice of kernels is.
NARROW_CLASSES = _narrow_classes()


def _log_softmax(
    x: torch.Tensor, /, *, axis: int, dtype: torch.dtype, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``torch.log_softmax`` in ``dtype`` (half-precision logits on the CPU: converted first).

    PyTorch's CPU kernel for a class axis that is innermost in memory (torch 2.13) takes
    a scalar path below the vector width (``NARROW_CLASSES``: 8 with AVX2, measured; 16
    with AVX-512, inferred): on the machine of 2026-12-05 (vector extension not
    recorded; commit f6e0cfb) 21 microseconds at 256 x 10, where 256 x 16 took 4. Its
    kernel for an outer axis runs along the contiguous positions instead. Such narrow
    logits are therefore computed with the class axis moved to the front (one copy of
    the logits, made inside the op): there 7 microseconds at 256 x 10, 36 against 156 at
    2048 x 10; with AVX2 50 against 109 at 2048 x 7 (but 71 against 38 at 2048 x 12,
    which AVX2 runs vectorized; at 2 to 4 classes the two are about level). The result
    is a view with the class axis outermost in memory; the values are the same function
    of the logits. With ``out``, the result is written there (copied, for such narrow
    logits).
    """
    num_classes = x.shape[axis] if x.ndim else 1
    if x.is_cpu and 1 < num_classes < NARROW_CLASSES and x.stride(axis) == 1:
        moved = torch.log_softmax(torch.movedim(x, axis, 0), 0, dtype=dtype)
        result = torch.movedim(moved, 0, axis)
        return result if out is None else out.copy_(result)
    if x.dtype != dtype and x.is_cpu and not _records(x):
        # PyTorch's CPU kernel converts such logits into an array of its own and then
        # writes its result into a second one (or into ``out``). Converting into the
        # result (``out``, or one new contiguous array) and taking the log-softmax there
        # in place makes one float32 array fewer per call or block (none at all with
        # ``out``), and the same bits (tests/torch/test_torch_adapter.py checks them).
        # The loss alone in bfloat16, 2 AVX-512 cores: 4096 x 1000 2469 against 3432
        # microseconds, segmentation 8 x 21 x 128 x 128 2429 against 2901
        # (benchmarks/results/2026-12-07-half-log-softmax/).
        if out is None:
            out = torch.empty(x.shape, dtype=dtype, device=x.device)
        converted = out.copy_(x)
        return torch.log_softmax(converted, axis, out=converted)
    if out is None:
        return torch.log_softmax(x, axis, dtype=dtype)
    return torch.log_softmax(x, axis, dtype=dtype, out=out)


def _records(x: torch.Tensor) -> bool:
    """Whether an operation on ``x`` would be recorded for a derivative (reverse mode,
    a forward-mode dual level, or a ``torch.func`` transform), where ``out=`` is refused."""
    return (
        (x.requires_grad and torch.is_grad_enabled())
        or _has_tangent((x,))
        or torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def _add_matmul(out: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return out.addmm_(x1, x2)


_LOG2_E = 1.0 / math.log(2.0)


def _one_op_exp() -> int:
    """Up to this many values ``_inplace_exp`` is one ``exp_`` (see there): every size on
    a CPU with AVX-512, whose ``exp`` kernel is the faster there, 32,768 elsewhere."""
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        return sys.maxsize
    return 1 << 15


#: See ``_one_op_exp``: fixed for the process, as PyTorch's choice of kernels is.
_ONE_OP_EXP = _one_op_exp()


def _inplace_exp(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` in place, where ``x = z - max z`` or ``x = log p`` (so ``x <= 0``).

    On a CPU without AVX-512, for more than ``_ONE_OP_EXP`` values, it is computed as
    ``exp2(x * log2(e))``: PyTorch's CPU ``exp2`` kernel was the faster there (2
    cores, a million values exponentiated in place, the extra multiplication included:
    on the machine of 2026-11-23, commit 10ba4b3, copied first, 0.28 ms against 0.72 ms
    in float32 and 0.77 against 1.49 in float64; with AVX2, after a log-softmax, 0.40
    against 0.58 ms in float32, in the exp_size.txt named below), and ``exp`` is the
    costliest step of the loss. The rounding of the product adds a relative error of at
    most ``|x| * 2**-24`` in float32 (``2**-53`` in float64), so it is largest for the
    classes of smallest probability: about 1e-6 for a class 16 below the largest logit
    (probability ``e**-16`` of the top one's), less for those that carry the probability.
    On GPUs ``exp`` is used as it is, and on the CPU for at most ``_ONE_OP_EXP``
    values, where the extra operation costs more than the faster kernel saves (2 AVX2
    cores, after a log-softmax, microseconds: 6.3 against 10.2 at 2560 values, 22.5
    against 33.4 at 32768; 41.1 against 36.5 at 65536;
    benchmarks/results/2026-12-06-small/exp_size.txt). With AVX-512 PyTorch's ``exp``
    is the faster above 32,768 values, and is used at every size (2 cores, after a
    log-softmax, exp against exp2 of the product: float32 93.6 against 261.6
    microseconds at a million values, float64 284.7 against 714.3; at 32,768 values the
    product's form was the faster in a micro-benchmark, 21.9 against 13.6 in float32,
    but taking it from 2,049 to 32,768 values gained no more than the noise at the loss
    level and was reverted: benchmarks/results/2026-12-07-exp-serial/; one ``exp``
    stays there, the more accurate). The loss's forward + backward against
    ``F.cross_entropy``'s time, bfloat16: 256 x 1000 1.126 -> 0.987, 4096 x 1000 1.048
    -> 0.937; faster at every row measured, by 5-28% (exp_ab-rotated.txt in
    benchmarks/results/2026-12-07-exp-avx512/).
    """
    if x.is_cpu and x.numel() > _ONE_OP_EXP:
        return x.mul_(_LOG2_E).exp2_()
    return x.exp_()


def _matmul_into(out: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return torch.mm(x1, x2, out=out)


# Blocks of logits written column-major have a multiple of this many rows.
COLUMN_MAJOR_ROWS = 128


def _matmul_out(shape: tuple[int, int], *, dtype: torch.dtype, device: Any) -> torch.Tensor | None:
    """The fused linear loss's block of logits for ``matmul_into``: on the CPU a zeroed
    column-major array of ``shape``'s rows rounded down to a multiple of 128, where
    MKL writes ``hidden @ projection`` fastest (as ``projection.T @ hidden.T``); None
    elsewhere, and for fewer than 128 rows (the caller's row-major block).

    Measured on 2 AVX2 cores (benchmarks/results/2026-12-06-linear/ab.txt), one block's
    three products and its loss: 801-819 against 860-887 microseconds per row at
    d = 512, K = 32000 and 512 rows (524 rows, the 16 Mi logits' default, row-major:
    855-857; column-major at 524 rows: 885-902); 3550-3691 against 4361-4459 at
    K = 128256, 128 rows; the same within 2% at d = 128. Not measured on accelerators.
    """
    rows, columns = shape
    device = torch.device(device)
    if device.type != "cpu" or rows < COLUMN_MAJOR_ROWS:
        return None
    rows -= rows % COLUMN_MAJOR_ROWS
    return torch.zeros((columns, rows), dtype=dtype, device=device).mT


def _subtract_into(out: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return torch.sub(x1, x2, out=out)


def _take_along_axis(x: torch.Tensor, indices: torch.Tensor, /, *, axis: int) -> torch.Tensor:
    # The core only gathers with non-negative ids, so array-api-compat's wrapping of
    # negative ones (two more ops per call) is not needed.
    return torch.gather(x, axis, indices)


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    # One kernel where isfinite and where take five (isfinite is abs, ne, eq and mul in
    # PyTorch). The core calls it only where nothing differentiates x: nan_to_num's
    # backward passes a NaN cotangent on where the select's gives exactly 0.
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _set_rows(out: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return out.index_copy_(0, indices, values)


def _add_along_axis(
    x: torch.Tensor, indices: torch.Tensor, values: torch.Tensor | float, /, *, axis: int
) -> torch.Tensor:
    if isinstance(values, float):
        # (One value for every index. ``scatter_`` of a number with reduce="add" makes
        # no such tensor, but its kernel took twice as long as ``scatter_add_`` on the
        # CPU: 100 against 49 microseconds at 4096 x 1000, 191 against 101 on a
        # 2 x 21 x 128 x 128 segmentation layout, faster only below about 1,000 ids.)
        values = torch.full(indices.shape, values, dtype=x.dtype, device=x.device)
    return x.scatter_add_(axis, indices, values)


def _has_tangent(arrays: tuple) -> bool:
    """Whether a tensor among ``arrays`` is a dual tensor of forward-mode AD
    (``torch.autograd.forward_ad``) at the current level. Tangents exist only inside a
    dual level: ``forward_ad``'s own record of the level (-1 outside) settles the usual
    call before any tensor is unpacked."""
    if getattr(torch.autograd.forward_ad, "_current_level", 0) < 0:
        return False
    unpack = torch.autograd.forward_ad.unpack_dual
    return any(isinstance(x, torch.Tensor) and unpack(x).tangent is not None for x in arrays)


def _sigmoid_cross_entropy_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    scale: Any = 1.0,
    shift: Any = 0.0,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The sigmoid cross-entropy with targets ``t = scale y + shift``, summed, for float
    ``scale`` and ``shift`` and no ``pos_weight`` (else None: the core's elementwise form
    computes it).

    Where every target is at most ``1 - 2**-5`` (``scale + shift``; smoothing towards
    1/2 gives at most 0.95), each element's ``softplus(z) - t z`` in place in one
    temporary (four passes): it cancels only where ``t`` is near 1 at a large positive
    logit, and there it keeps the loss to within about ``1.25 ulp(z) / (1 - t)``, under
    64 units in the last place of the loss. Elsewhere (a target of exactly 1, say), where that
    form would round the loss away (8% off at z = 12, 0 from z = 16 in float32), as
    PyTorch's ``(1 - t) z + softplus(-z)`` does for a target of 0 at a large negative
    logit, two sums of non-negative terms (six passes), exact where ``t`` is 0 or 1:

        sum softplus(-|z|)  +  k sum (leaky_relu(z, -shift / k) - (scale / k) y z)

    with ``k = 1 - shift``: the second term is ``max(z, 0) - t z``, and a target of 1 has
    ``scale / k = 1`` exactly, so it cancels to exactly 0 there. Either way one
    logits-sized temporary and no target array (on the CPU each fresh logits-sized
    buffer can cost as much as the loss: the allocator returns large ones to the system,
    and their pages fault again).

    Declined (None) where autograd would record it (the core's own ops then carry the
    derivatives lsr defines, and the forward-mode ones), and for half precision, which
    the core computes in float32 (its caller gives float32 logits anyway). Its value is
    NaN or inf wherever a logit is infinite: the core then recomputes the loss itself
    (``_core._binary._fused_total``)."""
    arrays = (logits, labels, scale, shift, weight, pos_weight)
    if torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in arrays
    ):
        return None
    if _has_tangent(arrays):
        return None  # (Forward mode records it too; its out= steps have no such rule.)
    if logits.dtype in HALF or pos_weight is not None:
        return None
    if not (isinstance(scale, float) and isinstance(shift, float)) or shift >= 1.0:
        return None
    if scale + shift <= 1.0 - 2.0**-5:
        # (threshold 40: above it softplus(z) = z to within exp(-40), below float64's
        # resolution of a loss of at least (1 - t) z.)
        work = torch.nn.functional.softplus(logits, threshold=40.0)
        if shift != 0.0:
            work.add_(logits, alpha=-shift)
        work.addcmul_(labels, logits, value=-scale)
        if weight is not None:
            work.mul_(weight)
        return work.sum()
    work = torch.abs(logits)
    torch.ops.aten.softplus.out(work, -1.0, 20.0, out=work)  # -softplus(-|z|), in place
    if weight is not None:
        work.mul_(weight)
    negative = work.sum()
    keep = 1.0 - shift
    torch.ops.aten.leaky_relu.out(logits, -shift / keep, out=work)
    work.addcmul_(labels, logits, value=-scale / keep)
    if weight is not None:
        work.mul_(weight)
    total = work.sum()
    # total is a sum of non-negative terms, negative one of non-positive ones (minus
    # softplus(-|z|)): no cancellation. Both are 0-d tensors of ours, updated in place.
    return (total if keep == 1.0 else total.mul_(keep)).sub_(negative)


def _add_scaled(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    return x.add_(y, alpha=alpha)


def _min_and_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.aminmax``: one pass, NaN in both where an element is NaN (values only: a
    tensor that requires grad is detached, so that reading them does not warn)."""
    low, high = torch.aminmax(x.detach() if x.requires_grad else x)
    return low, high


def _asarray(
    obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None
) -> torch.Tensor:
    """array-api-compat's ``asarray``, where a Python float of a given dtype becomes a
    0-d tensor by ``torch.scalar_tensor``, one operation with no Python object to
    convert (faster than ``torch.asarray``): every small call's reduced loss is one."""
    if type(obj) is float and dtype is not None and copy is None:
        return torch.scalar_tensor(obj, dtype=dtype, device=device)
    return _compat_xp.asarray(obj, dtype=dtype, device=device, copy=copy)


def _index_dtype(device: torch.device) -> torch.dtype:
    # PyTorch indexes with int64 on every device (array-api-compat's info object says
    # so too, built anew on each call).
    return torch.int64


# The namespace the core runs on here: array-api-compat's, with a one-op asarray of a
# float (the reduced loss of a small call), a vmap-friendly vecdot, a one-op squeeze,
# expand_dims, clip and floating sum, torch's fused logsumexp (one pass, no logits-sized temporaries
# in eager mode), and an in-place scatter-add, exp, matmul and matmul-accumulate for the
# fused and blocked passes (with the layout of the block a matmul writes into), a one-op
# finite_or_zero, and for the binary loss torch's one-kernel sigmoid (also in place), a
# fused sigmoid cross-entropy sum, a one-pass min and max, an in-place scaled add, and its
# index dtype without an info object.
xp = types.SimpleNamespace(
    **{
        **vars(_compat_xp),
        "asarray": _asarray,
        "vecdot": _vecdot,
        "broadcast_to": _broadcast_to,
        "squeeze": _squeeze,
        "expand_dims": _expand_dims,
        "clip": _clip,
        "sum": _sum,
        "logsumexp": _logsumexp,
        "log_softmax": _log_softmax,
        "add_along_axis": _add_along_axis,
        "take_along_axis": _take_along_axis,
        "inplace_exp": _inplace_exp,
        "subtract_into": _subtract_into,
        "add_matmul": _add_matmul,
        "matmul_into": _matmul_into,
        "matmul_out": _matmul_out,
        "set_rows": _set_rows,
        "finite_or_zero": _finite_or_zero,
        "sigmoid": torch.sigmoid,
        "inplace_sigmoid": torch.sigmoid_,
        "add_scaled": _add_scaled,
        "min_and_max": _min_and_max,
        "index_dtype": _index_dtype,
        "sigmoid_cross_entropy_sum": _sigmoid_cross_entropy_sum,
    }
)

"""What lsr knows about JAX arrays: the namespace the core runs on, and inputs made jax.

* ``xp``: ``jax.numpy`` plus the core's optional ``sum_and_sum_exp`` (one variadic
  reduction) and ``sum_shifted`` (see both below).
* ``lsr._core.Spec`` registered as a pytree: its arrays (an array smoothing or prior, the
  class weights, the mask) are leaves that JAX traces and differentiates; everything else
  is hashable auxiliary data, part of the compiled program. Importing this module
  registers it (``lsr.jax`` does).
* ``as_jax``, ``as_scalar``, ``as_prior``: jax array-likes in, jax arrays out, with the
  one check that cannot wait (64-bit ids that JAX without x64 would wrap).
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsr import _core
from lsr._compat import check_integers_kept

__all__ = [
    "as_jax",
    "as_prior",
    "as_scalar",
    "pass_namespace",
    "sum_and_sum_exp",
    "sum_shifted",
    "two_sums_xp",
    "xp",
]


def as_jax(x: Any, name: str = "labels") -> Any:
    """``x`` as a jax array (tracers pass through); ``None`` stays ``None``.

    Integers that JAX without x64 would wrap (2**32 + 1 becomes 1, a real class id) are
    refused first (``check_integers_kept``), here for a NumPy array or a list, which
    ``jnp.asarray`` would wrap, and in the checks of integer labels for a jax array.
    """
    if x is None or isinstance(x, jax.Array):
        return x
    if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        check_integers_kept(np.asarray(x), name, becoming_jax=True)
    return jnp.asarray(x)


def as_scalar(smoothing: Any) -> Any:
    """A Python number stays static (folded into the program); anything else is an array.

    A traced or array ``smoothing`` is a runtime input, so a schedule of epsilon runs in one
    compiled program. Booleans are left for the checks to refuse by name.
    """
    if isinstance(smoothing, numbers.Real) and not isinstance(smoothing, bool):
        return float(smoothing)
    return smoothing if isinstance(smoothing, bool) else as_jax(smoothing, "smoothing")


def as_prior(prior: Any) -> Any:
    """A prior's name as it is; anything else is an array of K probabilities."""
    return prior if isinstance(prior, str) else as_jax(prior, "prior")


def sum_and_sum_exp(x: Any, /, *, axis: int) -> tuple[Any, Any]:
    """``(sum(x), sum(exp(x)))`` over ``axis`` (the second with the axis kept), as one
    variadic reduction.

    The core sums the max-shifted logits (for large logits' accuracy). Two plain sums
    over ``x`` would make XLA's CPU backend store ``x``, a logits-sized temporary; a
    variadic reduce fuses its producer instead, and reads the logits once. The core
    takes it only beside a gradient: for the loss alone, the plain sums are XLA's
    vectorized reductions and the variadic one is not (see ``_core.logit_sums``).
    """
    zero = jnp.zeros((), x.dtype)
    total, total_exp = jax.lax.reduce(
        (x, jnp.exp(x)), (zero, zero), lambda a, b: (a[0] + b[0], a[1] + b[1]), (axis,)
    )
    return total, jnp.expand_dims(total_exp, axis)


#: Whether ``sum_shifted`` takes its shift through ``jax.lax.optimization_barrier``:
#: the barrier has a batching rule from jax 0.5.0 and differentiation rules from 0.5.3
#: (``vmap`` and ``jacfwd`` of the loss fail on 0.4.36 with it), and pyproject.toml
#: declares ``jax>=0.4.36``.
_BARRIER = jax.__version_info__ >= (0, 5, 3)


def sum_shifted(x: Any, top: Any, /, *, axis: int) -> Any:
    """``sum(x - top)`` over ``axis`` (kept), taken as ``-sum(top - x)``: the same numbers
    (``top - x`` is ``-(x - top)`` exactly), from an array of its own.

    For the loss alone the core sums ``s = x - top`` and ``exp(s)``. With the one array
    ``s`` read by both reductions, XLA's CPU backend (jaxlib 0.10, its YNNPACK fusion)
    stores ``s`` whole: a logits-sized float32 buffer allocated on every call, written and
    read again. Beside bfloat16 logits' float32 copy that makes two per call, which
    glibc, depending on its dynamic thresholds (the process's history), may trim from
    the worker thread's heap on every free and fault in again (4096 x 1000 bfloat16 on
    one core: 20-25 ms against 4-5; without the trim 5.7-6.0 against 4.1-4.9).
    ``top - x`` is another array, made in the fusion from ``x``: each reduction then
    streams its own. So is ``top``'s broadcast to the logits' shape: read by both
    reductions, XLA stores that whole as well (2048 x 32000 float32, the loss alone under
    ``jax.jit``: 113 against 50 ms, with 64,008 page faults per call against none;
    ``benchmarks/results/2026-12-06-jax-forward/``). Taken through an optimization
    barrier, the ``top`` of this sum is an array of its own, broadcast inside its own
    reduction. The barrier changes no value of the loss; JAX differentiates and batches
    it as the identity from jax 0.5.3 (``_BARRIER``), though a derivative that reaches
    it (one in ``smoothing``, ``prior`` or ``weight``, under ``jax.jit``) may round
    differently, the program being fused differently.
    """
    if _BARRIER:
        top = jax.lax.optimization_barrier(top)
    return -jnp.sum(top - x, axis=axis, keepdims=True)


class _TwoSumsNamespace:
    """``jax.numpy`` plus the core's optional ``sum_shifted``: beside a gradient the
    core's pass then takes the sums of ``s`` and of ``exp(s)`` as two plain reductions
    (see ``pass_namespace``)."""

    sum_shifted = staticmethod(sum_shifted)
    sigmoid = staticmethod(jax.nn.sigmoid)

    def __getattr__(self, name: str) -> Any:
        return getattr(jnp, name)

    def __repr__(self) -> str:
        return "<lsr JAX array namespace: jax.numpy + sum_shifted>"


class _Namespace(_TwoSumsNamespace):
    """``jax.numpy`` plus the core's optional ``sum_and_sum_exp`` and ``sum_shifted``."""

    sum_and_sum_exp = staticmethod(sum_and_sum_exp)

    def __repr__(self) -> str:
        return "<lsr JAX array namespace: jax.numpy + sum_and_sum_exp, sum_shifted>"


xp = _Namespace()
two_sums_xp = _TwoSumsNamespace()

#: The most classes for which ``pass_namespace`` takes two plain sums (see there).
TWO_SUMS_CLASSES = 32_000


def pass_namespace(dtype: Any, ndim: int, axis: int, num_classes: int) -> _TwoSumsNamespace:
    """The namespace of the core's pass for logits given in ``dtype`` (before their
    conversion to the compute dtype) with ``num_classes`` classes on ``axis`` (negative
    counts from the end): ``xp``,
    or ``two_sums_xp`` for float32 logits whose classes are the last axis, at most
    ``TWO_SUMS_CLASSES`` of them. The two differ only beside the gradient.

    Measured under ``jax.jit``, forward + backward, against the closed form
    differentiated by JAX (2 cores, jaxlib 0.10; benchmarks/results/2026-12-07-jax-sums/
    and 2026-12-07-two-sums/): in float32 the two plain sums were the faster from K = 1,000
    to 32,000 (the adapter with this rule and without: 4096 x 1000 0.99 against 1.23 of
    the closed form's time, 2048 x 32000 1.07 against 1.29; level at 256 x 10 and
    4096 x 100), and the slower above (1.66 against 1.20 at 512 x 65536, 1.82 against
    1.32 at 1024 x 128000) and on a segmentation layout, classes on axis 1
    (8 x 21 x 256 x 256: 1.33 against 0.66). In bfloat16, whose float32 copy
    the variadic reduction makes inside its loop where two sums would store it, the
    variadic one was the faster at most shapes. The two sums are also the more accurate
    from K = 8,192 up (the variadic reduction adds each row in order: relative error
    1.8e-06 against 6.6e-08 at 2048 x 32000).
    """
    last = ndim > 0 and axis % ndim == ndim - 1
    if jnp.dtype(dtype) == jnp.float32 and last and num_classes <= TWO_SUMS_CLASSES:
        return two_sums_xp
    return xp


def _flatten_spec(spec: Any) -> tuple[tuple[Any, ...], Any]:
    return spec.arrays(), spec.static()


def _unflatten_spec(static: Any, arrays: tuple[Any, ...]) -> Any:
    return static.with_arrays(tuple(arrays))


# The core's options objects (the softmax loss's and the binary loss's).
for _options in (_core.Spec, _core.BinarySpec):
    jax.tree_util.register_pytree_node(_options, _flatten_spec, _unflatten_spec)

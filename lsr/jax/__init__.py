"""JAX adapter: ``from lsr.jax import smooth_ce``.

The core's definition (``lsr._core``) as an idiomatic JAX function: jax array-likes in
(Python lists and NumPy arrays become jax arrays), jax arrays out, keyword-only options as
in optax, an optax-style ``where`` mask of positions, and optax's default reduction: every
loss here returns one value per position (``reduction="none"``) unless asked for
``"mean"`` or ``"sum"``, so a swap from ``optax.softmax_cross_entropy_with_integer_labels``
keeps the value of code that reduces with its own mask. ``docs/conventions.md`` lists
every difference from optax.

Differentiation: ``smooth_ce`` is a ``jax.custom_jvp`` whose rule is the core's closed-form
logits gradient, ``<smooth_ce_grad(z), dz>`` (``lsr._core.smooth_ce_grad``, from the logits
and one logsumexp per position). One rule serves both modes: reverse mode
(``jax.grad``, ``value_and_grad``) comes from JAX transposing that linear map, and forward
mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) uses it directly; the rule itself is
plain ``jax.numpy`` code, so it is differentiable again (Hessians). Under ``jax.jit`` the
loss and its gradient compile to one XLA computation that keeps one logits-sized array for
the backward pass, where differentiating the core's operations one by one keeps several
(measured in the README). Derivatives with respect to dense ``labels``, ``weight``, an
array ``prior`` and an array ``smoothing`` are supported too (distillation, learned
priors, sensitivity to epsilon): they are computed by differentiating the core's forward
pass in those arguments only, and only when they are asked for.

Sharding: the core uses only reductions over the class axis, an elementwise select and a
gather along it, so jitted ``smooth_ce`` on logits sharded along the batch axis, the class
axis or both (``NamedSharding``) compiles to partial reductions plus all-reduces of
per-position values, never an all-gather of the logits (checked on the compiled HLO in
``tests/distributed``). For code written per device with ``jax.shard_map``,
``vocab_parallel_smooth_ce`` does the same by hand with named-axis collectives.

Modules: ``_namespace`` (the ``jax.numpy`` overlay the core runs on, the ``Spec`` pytree
registration, input conversion), ``_functional`` (``smooth_ce``, ``smooth_labels``,
``estimate_prior``, ``distill_loss``), ``_binary`` (``smooth_bce``, the smoothed sigmoid
cross-entropy, and the ``BinarySpec`` pytree registration), ``_linear``
(``linear_smooth_ce``), ``_vocab_parallel`` (``vocab_parallel_smooth_ce``).
"""

from __future__ import annotations

from lsr.jax._binary import smooth_bce
from lsr.jax._functional import distill_loss, estimate_prior, smooth_ce, smooth_labels
from lsr.jax._linear import linear_smooth_ce
from lsr.jax._vocab_parallel import vocab_parallel_smooth_ce

__all__ = [
    "distill_loss",
    "estimate_prior",
    "linear_smooth_ce",
    "smooth_bce",
    "smooth_ce",
    "smooth_labels",
    "vocab_parallel_smooth_ce",
]

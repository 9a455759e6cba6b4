"""The array-API core: the one definition of label-smoothed targets and cross-entropy.

Every function takes the namespace ``xp`` as a keyword and the checked options as one
``Spec``; it is pure array-API code (no framework import, no value-dependent Python
branch, so it traces under ``jax.jit`` and ``tf.function``; constants made on the
input's dtype and device). Inputs are validated before they get here (``lsr._checks``).

Modules, in reading order:

* ``_spec``: ``Spec``, the options of one call.
* ``_targets``: the target algebra (what ``w * q'`` of each position is made of) and the
  positions that count.
* ``_loss``: the one pass (``logit_sums`` -> ``combine`` -> loss; ``gradient``) and its
  entry points below.
* ``_layouts``: the same pass block after block of rows, and over one shard of the
  class axis.
* ``_binary``: the smoothed sigmoid (binary, multi-label) cross-entropy: its own spec,
  targets, loss and gradient, per element.
* ``_labels``: one-hot targets and class frequencies as arrays.
* ``_ops``: safe arithmetic helpers, and the optional namespace extensions the pass uses.

The smoothing distributions (``prior``):

* ``"uniform"``: ``u_k = 1/K`` (Szegedy et al. 2016; PyTorch, Keras, optax).
* ``"others"``: ``u = (1 - q) / (K - 1)``, so a one-hot target becomes exactly ``1 - eps``
  on its class and ``eps / (K - 1)`` elsewhere (cleverhans 2017, fairseq, T5X).
* a vector ``pi`` of shape (K,): ``u = pi`` (the Inception-v3 paper's label prior).

Only the names below are for the rest of lsr; a test keeps the other modules from
importing anything else of the core.
"""

from lsr._core._binary import (
    BINARY_ARRAY_FIELDS,
    BinarySpec,
    binary_grad,
    binary_loss,
    binary_loss_and_grad,
    blocked_binary_grad,
    blocked_binary_loss,
    kernel_form_applies,
    smooth_binary_targets,
)
from lsr._core._labels import estimate_prior, nan_where_out_of_range, one_hot
from lsr._core._layouts import (
    blocked_log_softmax_loss_and_grad,
    blocked_loss_and_grad,
    sharded_loss,
)
from lsr._core._loss import (
    AUX_NAMES,
    FixedTargets,
    denominator_parts,
    fixed_targets,
    leaves_positions_out,
    log_softmax_applies,
    log_softmax_loss_and_grad,
    loss_and_grad,
    reads_rows_only,
    reduce,
    reduce_aux,
    reduce_aux_values,
    reduce_with_denominator,
    reduced_loss_and_grad,
    reduction_scale,
    smooth_ce,
    smooth_ce_grad,
)
from lsr._core._ops import EXTENSIONS, compute_dtype, index_dtype, logsumexp
from lsr._core._spec import ARRAY_FIELDS, Spec
from lsr._core._targets import kept_positions, smooth_dense_targets

__all__ = [
    "ARRAY_FIELDS",
    "AUX_NAMES",
    "BINARY_ARRAY_FIELDS",
    "EXTENSIONS",
    "BinarySpec",
    "FixedTargets",
    "Spec",
    "binary_grad",
    "binary_loss",
    "binary_loss_and_grad",
    "blocked_binary_grad",
    "blocked_binary_loss",
    "blocked_log_softmax_loss_and_grad",
    "blocked_loss_and_grad",
    "compute_dtype",
    "denominator_parts",
    "estimate_prior",
    "fixed_targets",
    "index_dtype",
    "kept_positions",
    "kernel_form_applies",
    "leaves_positions_out",
    "log_softmax_applies",
    "log_softmax_loss_and_grad",
    "logsumexp",
    "loss_and_grad",
    "nan_where_out_of_range",
    "one_hot",
    "reads_rows_only",
    "reduce",
    "reduce_aux",
    "reduce_aux_values",
    "reduce_with_denominator",
    "reduced_loss_and_grad",
    "reduction_scale",
    "sharded_loss",
    "smooth_binary_targets",
    "smooth_ce",
    "smooth_ce_grad",
    "smooth_dense_targets",
]

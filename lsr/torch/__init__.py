"""PyTorch adapter: ``F.cross_entropy`` conventions on top of lsr's one core.

* ``cross_entropy``: a drop-in for ``torch.nn.functional.cross_entropy`` (the same
  parameters, in the same positions, with the same defaults), plus lsr's keyword-only
  ``prior``, ``kl`` and ``z_loss``; swapping ``F.`` for ``lsr.torch.`` is the whole
  migration.
* ``SmoothCrossEntropyLoss``: a drop-in subclass of ``nn.CrossEntropyLoss`` (same
  constructor, same state dict) whose forward is ``cross_entropy``.
* ``smooth_ce``: lsr's keyword grammar, shared with ``lsr.jax`` and ``lsr.tensorflow``
  (keyword-only options, ``smoothing``, ``prior``, ``axis``), with PyTorch's class axis
  1 and ``ignore_index=-100`` as defaults.
* ``LabelSmoothSoftmaxCE``: the interface of the segmentation snippet with ``lb_pos`` /
  ``lb_neg`` targets, computed in closed form without its one-hot tensor.
* ``CalibrationError``: ``lsr.metrics``' streaming calibration error as a
  ``torchmetrics.Metric`` (torchmetrics, optional, is imported on first use).
* ``distill_loss``, ``linear_smooth_ce`` (the output layer and the loss without the
  N x C logits), ``vocab_parallel_smooth_ce``, ``data_parallel_smooth_ce`` and
  ``data_parallel_smooth_bce`` (``torch.distributed`` process groups).

The gradient with respect to the logits is registered as a ``torch.autograd.Function``
that calls ``lsr._core.smooth_ce_grad``: it keeps only the logits (and integer labels,
class weights and one logsumexp per position) for the backward pass, where autograd
through the core would keep several tensors of the logits' size.

Where lsr deliberately differs from ``F.cross_entropy``:

* a "mean" over no counted position (every target ignored, or an empty batch) is 0
  (gradient 0), not NaN;
* float16/bfloat16 logits are computed in float32; ``smooth_ce`` returns the loss in
  float32, ``cross_entropy`` and ``SmoothCrossEntropyLoss`` round it to the logits'
  dtype as ``F.cross_entropy`` does (the gradient keeps the logits' dtype);
* target ids out of range raise a ``ValueError`` (on concrete tensors; under
  ``torch.compile`` or ``torch.func`` the loss becomes NaN) instead of an index error.

The package, in reading order: ``_namespace`` (the array namespace the core runs on),
``_arguments`` (torch-only argument checks), ``_autograd`` (the autograd Functions),
``_functional``, ``_modules``, ``_binary`` (the sigmoid loss: its autograd Function,
functions and module), ``_linear`` and ``_distributed``.
"""

from lsr.torch._binary import (
    SmoothBCEWithLogitsLoss,
    binary_cross_entropy_with_logits,
    smooth_bce,
)
from lsr.torch._distributed import (
    data_parallel_smooth_bce,
    data_parallel_smooth_ce,
    vocab_parallel_smooth_ce,
)
from lsr.torch._functional import cross_entropy, distill_loss, smooth_ce
from lsr.torch._linear import linear_smooth_ce
from lsr.torch._modules import LabelSmoothSoftmaxCE, SmoothCrossEntropyLoss

__all__ = [
    "CalibrationError",
    "LabelSmoothSoftmaxCE",
    "SmoothBCEWithLogitsLoss",
    "SmoothCrossEntropyLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "data_parallel_smooth_bce",
    "data_parallel_smooth_ce",
    "distill_loss",
    "linear_smooth_ce",
    "smooth_bce",
    "smooth_ce",
    "vocab_parallel_smooth_ce",
]


def __getattr__(name: str) -> object:
    # torchmetrics is not one of lsr's dependencies: import it only when asked for.
    if name == "CalibrationError":
        from lsr.torch._calibration import CalibrationError

        CalibrationError.__module__ = __name__
        return CalibrationError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The ``nn.Module`` losses: ``SmoothCrossEntropyLoss`` (``nn.CrossEntropyLoss``'s
drop-in) and ``LabelSmoothSoftmaxCE`` (the segmentation snippet's interface)."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from lsr._validation import PRIOR_NAMES, check_choice, check_fraction, fail_type, fail_value
from lsr.torch._arguments import check_prior_type, check_tensor, checked_smoothing
from lsr.torch._functional import cross_entropy, smooth_ce

__all__ = ["LabelSmoothSoftmaxCE", "SmoothCrossEntropyLoss"]


class SmoothCrossEntropyLoss(nn.CrossEntropyLoss):
    r"""``nn.CrossEntropyLoss`` computed by lsr, with a choice of smoothing prior.

    Same constructor (names, positions and defaults), attributes and state dict as
    ``nn.CrossEntropyLoss`` (it is a subclass, and ``weight`` is a buffer), and its
    forward is ``lsr.torch.cross_entropy``, ``F.cross_entropy``'s drop-in: replacing the
    class name is the whole migration. The keyword-only ``prior``, ``kl`` and ``z_loss``
    are lsr's additions (see ``smooth_ce``). A "mean" over a batch whose targets are
    all ``ignore_index`` gives 0, not NaN.

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
        softcap: soft-capping: the loss is of ``softcap * tanh(logits / softcap)``
            (-inf stays -inf), as ``lsr.smooth_ce``; None: no capping.
        confidence_penalty: beta >= 0 of an added ``-beta H(softmax(logits))`` per position
            (Pereyra et al. 2017), weighted and reduced like ``z_loss``.

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
        *,
        prior: str | torch.Tensor = "uniform",
        kl: bool = False,
        z_loss: float = 0.0,
        softcap: float | None = None,
        confidence_penalty: float = 0.0,
    ) -> None:
        if weight is not None and not isinstance(weight, torch.Tensor):
            fail_type("`weight` must be a torch.Tensor or None.", "weight", weight)
        label_smoothing = checked_smoothing("label_smoothing", label_smoothing)
        check_prior_type(prior)
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        check_fraction("label_smoothing", label_smoothing)
        # (PyTorch's deprecated "elementwise_mean" is "mean", as cross_entropy reads it.)
        check_choice("reduction", self.reduction, ("none", "mean", "sum", "elementwise_mean"))
        if isinstance(prior, torch.Tensor):
            self.register_buffer("prior", prior)
        else:
            check_choice("prior", prior, PRIOR_NAMES)
            self.prior = prior
        self.kl = kl
        self.z_loss = z_loss
        self.softcap = softcap
        self.confidence_penalty = confidence_penalty

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            prior=self.prior,
            kl=self.kl,
            z_loss=self.z_loss,
            softcap=self.softcap,
            confidence_penalty=self.confidence_penalty,
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
        check_tensor("logits", logits)
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

"""``Aux``: the auxiliary outputs that ``smooth_ce`` gives with ``return_aux=True``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from lsr import _core

__all__ = ["Aux", "as_aux"]


class Aux(NamedTuple):
    """Metrics taken from the loss's own pass over the logits (no second pass), without
    gradient.

    Each is per position for ``reduction="none"`` (0 at left-out positions), else summed
    or averaged over the kept positions (``where``, ``ignore_index``); a mean is over
    the number of kept positions, unweighted by class weights (0 when none is kept). With
    ``softcap`` they are of the capped logits.

    Attributes:
        nll: the unsmoothed negative log-likelihood ``logsumexp(z) - z_y`` (its mean's
            exponential is the perplexity).
        lse: ``logsumexp(z)``, what a z-loss penalizes (for logging its drift).
        entropy: ``H(softmax(z))``, in nats.
        correct: top-1 correctness, 1.0 where ``argmax(z) = y``, else 0.0; a tie for
            the maximum goes to the first of the tied classes, as ``argmax`` and every
            framework's accuracy decide it (constant logits are correct only for class
            0). Its mean is the accuracy. A row with a NaN logit (whose loss is NaN) is
            as the framework's ``argmax`` reads it on whole logits, and 0 in the
            class-sharded forms.
    """

    nll: Any
    lse: Any
    entropy: Any
    correct: Any


def as_aux(values: dict[str, Any], detach: Callable[[Any], Any] | None = None) -> Aux:
    """The core's aux dict as an ``Aux``, each value through ``detach`` (the framework's
    stop-gradient) when given."""
    if detach is None:
        return Aux(*(values[name] for name in _core.AUX_NAMES))
    return Aux(*(detach(values[name]) for name in _core.AUX_NAMES))

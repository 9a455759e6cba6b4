"""``Spec``: the checked options of one call, the one object that carries them.

Built once by validation (``lsr._checks``) and passed to every function of the core.
Its fields are of two kinds:

* static: Python values that shape the computation (the class axis, the reduction, a
  prior's name, a smoothing given as a Python float...). They are hashable, so a spec
  without arrays (``spec.static()``) can key a compiled program, live on a PyTorch
  ``ctx`` or be the auxiliary data of a JAX pytree;
* arrays (``ARRAY_FIELDS``): a smoothing given as a 0-d array, a (K,) prior, the (K,)
  class weights and the ``where`` mask. They are the leaves that autodiff and tracing
  see; ``spec.arrays()`` lists them and ``static.with_arrays(...)`` puts them back.

A new option is one field here, its check in ``lsr._checks.check_options`` and its
arithmetic in the core's one pass (``docs/architecture.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["ARRAY_FIELDS", "Spec"]

#: The fields that may hold arrays, in the order of ``Spec.arrays``.
ARRAY_FIELDS = ("smoothing", "prior", "weight", "where")


class _ArrayPlaceholder:
    """What a static spec holds where its full spec had an array."""

    def __repr__(self) -> str:
        return "<array>"

    def __reduce__(self) -> str:
        return "_ARRAY"


_ARRAY = _ArrayPlaceholder()


def _is_static(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, _ArrayPlaceholder))


@dataclasses.dataclass(frozen=True)
class Spec:
    """The options of one smoothed cross-entropy, checked.

    Attributes:
        num_classes: K, the size of the class axis (for a class-sharded computation,
            the global K: smoothing always spreads over every class).
        axis: the class axis of the logits (non-negative).
        dense: the labels are dense targets of the logits' shape (else class ids).
        smoothing: epsilon in [0, 1], a Python float or a 0-d array of the compute dtype.
        prior: ``"uniform"``, ``"others"`` or a (K,) distribution (array).
        weight: (K,) class weights (PyTorch's semantics) or None.
        where: boolean mask of the positions to keep, or None.
        ignore_index: the class id that marks left-out positions (ids only), or None.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        kl: the KL form (the loss minus the smoothed target's entropy).
        z_loss: coefficient of ``z_loss * logsumexp(z)**2`` per position.
        logit_cap: soft-capping of the logits, ``cap * tanh(z / cap)``, or None.
        checked: the labels' values were read and found in range (the NaN guard for
            out-of-range ids, needed under tracing, can be skipped).
    """

    num_classes: int
    axis: int
    dense: bool = False
    smoothing: Any = 0.0
    prior: Any = "uniform"
    weight: Any = None
    where: Any = None
    ignore_index: int | None = None
    reduction: str = "mean"
    kl: bool = False
    z_loss: float = 0.0
    logit_cap: float | None = None
    checked: bool = False

    # A spec holding arrays is compared and hashed by identity (arrays have no hash,
    # and == on them is elementwise); its static part by value.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        if self.has_arrays() or other.has_arrays():
            return self is other
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def __hash__(self) -> int:
        if self.has_arrays():
            return id(self)
        return hash(dataclasses.astuple(self))

    @property
    def named_prior(self) -> str | None:
        """The prior's name, or None for a (K,) distribution."""
        return self.prior if isinstance(self.prior, str) else None

    def has_arrays(self) -> bool:
        return any(not _is_static(getattr(self, name)) for name in ARRAY_FIELDS)

    def arrays(self) -> tuple[Any, ...]:
        """The array fields (``ARRAY_FIELDS`` order), None where a field is static."""
        return tuple(
            None if _is_static(value) else value
            for value in (getattr(self, name) for name in ARRAY_FIELDS)
        )

    def static(self) -> Spec:
        """This spec with every array replaced by a placeholder: hashable."""
        changes: dict[str, Any] = {
            name: _ARRAY for name in ARRAY_FIELDS if not _is_static(getattr(self, name))
        }
        return dataclasses.replace(self, **changes) if changes else self

    def with_arrays(self, arrays: tuple[Any, ...]) -> Spec:
        """The inverse of ``static``: the placeholders filled from ``arrays``
        (``ARRAY_FIELDS`` order; entries for static fields are ignored)."""
        changes = {
            name: value
            for name, value in zip(ARRAY_FIELDS, arrays, strict=True)
            if getattr(self, name) is _ARRAY
        }
        return dataclasses.replace(self, **changes) if changes else self

    def replace(self, **changes: Any) -> Spec:
        return dataclasses.replace(self, **changes)

"""``Spec``: the checked options of one call, the one object that carries them.

Built once by validation (``lsr._checks``) and passed to every function of the core.
Its fields are of two kinds:

* static: Python values that shape the computation (the class axis, the reduction, a
  prior's name, a smoothing given as a Python float...). They are hashable, so a spec
  without arrays (``spec.static()``) can key a compiled program, live on a PyTorch
  ``ctx`` or be the auxiliary data of a JAX pytree;
* arrays (``ARRAY_FIELDS``): a smoothing given as an array (0-d or per position), a
  (K,) prior, the (K,) class weights and the ``where`` mask. They are the leaves that
  autodiff and tracing see; ``spec.arrays()`` lists them and
  ``static.with_arrays(...)`` puts them back.

A new option is one field here, its check in ``lsr._checks.check_options`` and its
arithmetic in the core's one pass (``docs/architecture.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from lsr._core._ops import is_number

__all__ = ["ARRAY_FIELDS", "Options", "Spec"]

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
    # (Numbers: bools, ints, floats, and symbolic ones, such as 1/K while torch.compile
    # traces dynamic shapes; see ``is_number``.)
    return value is None or isinstance(value, (str, _ArrayPlaceholder)) or is_number(value)


_O = TypeVar("_O", bound="Options")


class Options:
    """What every options object of the core shares (``Spec``, ``BinarySpec``): frozen
    dataclass fields, of which those named in ``ARRAY_FIELDS`` may hold arrays.

    ``static()`` replaces the arrays by placeholders (hashable: a compiled program's key,
    a PyTorch ``ctx`` attribute, a JAX pytree's auxiliary data), ``arrays()`` lists them
    and ``static.with_arrays(arrays)`` puts them back. An options object holding arrays is
    compared and hashed by identity, its static part by value.
    """

    ARRAY_FIELDS: ClassVar[tuple[str, ...]] = ()

    # A spec holding arrays is compared and hashed by identity (arrays have no hash,
    # and == on them is elementwise); its static part by value.
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        if self.has_arrays() or other.has_arrays():
            return self is other
        return _fields(self) == _fields(other)

    def __hash__(self) -> int:
        if self.has_arrays():
            return id(self)
        return hash(_fields(self))

    def has_arrays(self) -> bool:
        return any(not _is_static(getattr(self, name)) for name in self.ARRAY_FIELDS)

    def arrays(self) -> tuple[Any, ...]:
        """The array fields (``self.ARRAY_FIELDS`` order), None where a field is static."""
        return tuple(
            None if _is_static(value) else value
            for value in (getattr(self, name) for name in self.ARRAY_FIELDS)
        )

    def static(self: _O) -> _O:
        """This spec with every array replaced by a placeholder: hashable."""
        changes: dict[str, Any] = {
            name: _ARRAY for name in self.ARRAY_FIELDS if not _is_static(getattr(self, name))
        }
        return _replace(self, changes) if changes else self

    def with_arrays(self: _O, arrays: tuple[Any, ...]) -> _O:
        """The inverse of ``static``: the placeholders filled from ``arrays``
        (``self.ARRAY_FIELDS`` order; entries for static fields are ignored)."""
        changes = {
            name: value
            for name, value in zip(self.ARRAY_FIELDS, arrays, strict=True)
            if getattr(self, name) is _ARRAY
        }
        return _replace(self, changes) if changes else self

    def replace(self: _O, **changes: Any) -> _O:
        return _replace(self, changes)


# (Options are dataclasses only in their subclasses: typed as Any for mypy here.)
def _fields(options: Any) -> tuple[Any, ...]:
    return dataclasses.astuple(options)


def _replace(options: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(options, **changes)


@dataclasses.dataclass(frozen=True, eq=False)
class Spec(Options):
    """The options of one smoothed cross-entropy, checked.

    Attributes:
        num_classes: K, the size of the class axis (for a class-sharded computation,
            the global K: smoothing always spreads over every class).
        axis: the class axis of the logits (non-negative).
        dense: the labels are dense targets of the logits' shape (else class ids).
        smoothing: epsilon in [0, 1]: a Python float, a 0-d array of the compute dtype,
            or one epsilon per position (an array of the compute dtype and the positions'
            shape: the logits' shape without the class axis).
        prior: ``"uniform"``, ``"others"`` or a (K,) distribution (array).
        weight: (K,) class weights (PyTorch's semantics) or None.
        where: boolean mask of the positions to keep, or None.
        ignore_index: the class id that marks left-out positions (ids only), or None
            (also when validation read the ids and none of them is ``ignore_index``).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        kl: the KL form (the loss minus the smoothed target's entropy).
        z_loss: coefficient of ``z_loss * logsumexp(z)**2`` per position.
        softcap: soft-capping of the logits, ``cap * tanh(z / cap)``, or None.
        confidence_penalty: beta of ``-beta H(p)`` per position (Pereyra et al. 2017),
            ``H(p)`` the entropy of the softmax (of the capped logits, with a cap).
        aux: the pass also gives the auxiliary outputs (``_loss.aux_outputs``): the
            entropy's extra class sum is then taken, as for a confidence penalty.
        checked: the labels' values are known to be in range (the NaN guard for
            out-of-range ids, needed under tracing, can be skipped): read and found so,
            or left to a computation that raises on any other id before it returns
            (``labels_assumed_in_range`` of the known options).
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
    softcap: float | None = None
    confidence_penalty: float = 0.0
    aux: bool = False
    checked: bool = False

    ARRAY_FIELDS: ClassVar[tuple[str, ...]] = ARRAY_FIELDS

    @property
    def named_prior(self) -> str | None:
        """The prior's name, or None for a (K,) distribution."""
        return self.prior if isinstance(self.prior, str) else None

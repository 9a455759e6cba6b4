"""Validation of the smoothed binary cross-entropy's arguments (``lsr._checks`` for the
softmax loss): every check before anything is computed, the options returned as one
``lsr._core.BinarySpec``. Values are read only when they are concrete and cheap; under
tracing a bad value becomes NaN in the loss instead."""

from __future__ import annotations

import numbers
from typing import Any

from lsr import _core
from lsr._checks import (
    KnownSpecs,
    cast,
    check_ignore_index,
    check_smoothing,
    index_labels,
    is_floating_dtype,
    keyed_arguments,
    known_options_key,
    matchable_ignore_index,
    remember,
    value_range,
)
from lsr._checks import is_integer_dtype as _is_integer_dtype
from lsr._compat import array_namespace, values_are_cheap
from lsr._typing import DType, Namespace
from lsr._validation import REDUCTIONS, check_choice, fail_type, fail_value, normalize_axis

#: The smoothing value ``u`` by name.
BINARY_PRIOR_NAMES = ("uniform",)


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` (without growing it)."""
    if len(shape) > len(target):
        return False
    # (A dimension unknown inside tf.function, None, takes any size: checked when run.)
    return all(
        t is None or s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False)
    )


def _check_broadcast(name: str, value: Any, shape: tuple[int, ...], what: str) -> None:
    given = getattr(value, "shape", None)
    if given is None:
        fail_type(f"`{name}` must be an array ({what}) or None.", name, value)
    if not broadcasts_to(tuple(given), shape):
        fail_value(f"`{name}` must broadcast to the logits' shape {shape} ({what}).", name, value)


def _floating_vector(
    xp: Namespace, name: str, value: Any, shape: tuple[int, ...], dtype: DType, what: str
) -> Any:
    if value is None:
        return None
    _check_broadcast(name, value, shape, what)
    if not is_floating_dtype(xp, value.dtype):
        fail_type(f"`{name}` must have a real floating dtype.", name, value)
    return cast(xp, value, dtype)


def check_binary_prior(
    xp: Namespace, prior: Any, shape: tuple[int, ...], axis: int | None, dtype: DType
) -> Any:
    """The smoothing value ``u``: a float in [0, 1], ``"uniform"`` (1/K over the K labels
    on ``axis``), or a floating array in [0, 1] that broadcasts to ``shape``."""
    if isinstance(prior, str):
        check_choice("prior", prior, BINARY_PRIOR_NAMES)
        if axis is None:
            fail_value(
                'prior="uniform" is 1/K over the labels on `axis`; 0-d logits have none.',
                "prior",
                prior,
            )
        if shape[axis] == 0:
            fail_value(
                'prior="uniform" is 1/K over the labels on `axis`; that axis has none.',
                "prior",
                prior,
            )
        return 1.0 / shape[axis]
    if isinstance(prior, bool):
        fail_type("`prior` must be a number in [0, 1], 'uniform' or an array.", "prior", prior)
    if isinstance(prior, numbers.Real):
        if not 0.0 <= float(prior) <= 1.0:
            fail_value("`prior` (the smoothing value u) must be in [0, 1].", "prior", prior)
        return float(prior)
    prior = _floating_vector(xp, "prior", prior, shape, dtype, "one smoothing value per label")
    invalid = xp.any((prior < 0) | (prior > 1) | xp.isnan(prior))
    if not (values_are_cheap(prior) and values_are_cheap(invalid)):
        return xp.where((prior >= 0) & (prior <= 1), prior, xp.nan)
    if bool(invalid):
        fail_value("`prior` (the smoothing values u) must be in [0, 1].", "prior", prior)
    return prior


def _check_label_values(
    xp: Namespace,
    labels: Any,
    ignore_index: int | None,
    where: Any,
    name: str = "labels",
    *,
    cheap: bool = False,
) -> bool:
    """Whether the labels were read and found valid (0/1, in [0, 1], or ignore_index),
    where ``where`` keeps them (a masked element may hold anything, as when traced).
    ``name``: the labels' name in the error, as the caller's framework names them.
    ``cheap``: the caller knows that the labels' values are cheap to read
    (``values_are_cheap``), which is then not asked again."""
    if labels.dtype == xp.bool:
        return True
    if not (cheap or values_are_cheap(labels)) or 0 in tuple(labels.shape):
        return False
    if ignore_index is None and where is None and _all_in_unit_interval(xp, labels):
        return True  # (the common case: no labels-sized temporary)
    bad = (labels < 0) | (labels > 1)
    if is_floating_dtype(xp, labels.dtype):
        bad = bad | xp.isnan(labels)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    if where is not None:
        if not values_are_cheap(where):
            return False
        bad = bad & where
    any_bad = xp.any(bad)
    if not values_are_cheap(any_bad):
        return False
    if bool(any_bad):
        allowed = "0 or 1" if _is_integer_dtype(xp, labels.dtype) else "in [0, 1]"
        if ignore_index is not None:
            allowed += f" or ignore_index={ignore_index}"
        bad_values = labels[bad]
        low, high = value_range(xp, bad_values)  # (min_and_max: values only, no grad warning)
        raise ValueError(
            f"`{name}` must be {allowed} (binary or soft targets); "
            f"{int(xp.sum(xp.astype(bad, _core.index_dtype(xp, labels))))} are not. "
            f"Received: {name} with min={float(low)!r}, max={float(high)!r}"
        )
    return True


def _all_in_unit_interval(xp: Namespace, labels: Any) -> bool:
    """Whether every label is in [0, 1], without a labels-sized temporary: from their
    minimum and maximum in one pass and one read where the namespace has
    ``min_and_max`` (NaN in both for a NaN label, which then compares as out of
    range); else from ``min``, ``max`` and, for floating labels, whether their sum is NaN
    (NaN exactly when a label is NaN, or when both infinities are there, which the range
    rejects too), whichever way a library's min and max treat NaN; an isnan pass would
    write a labels-sized mask."""
    if getattr(xp, "min_and_max", None) is not None:
        low, high = value_range(xp, labels)
        return float(low) >= 0 and float(high) <= 1
    if not _is_integer_dtype(xp, labels.dtype) and bool(xp.isnan(xp.sum(labels))):
        return False
    return bool(xp.min(labels) >= 0) and bool(xp.max(labels) <= 1)


def check_binary_labels(labels: Any, *, name: str) -> None:
    """``check_smooth_bce``'s check of the label values alone, for an adapter that names
    the labels otherwise (Keras' ``y_true``) and checks them before calling
    ``smooth_bce``. Like it, reads them only when that is cheap."""
    _check_label_values(array_namespace(labels), labels, None, None, name)


def prepare_smooth_bce(
    logits: Any, labels: Any, **options: Any
) -> tuple[Any, Any, Any, _core.BinarySpec]:
    """Validate, then return ``(xp, logits in the compute dtype, labels, spec)``
    (``options``: those of ``check_smooth_bce``)."""
    xp, labels, spec = check_smooth_bce(logits, labels, **options)
    return xp, cast(xp, logits, _core.compute_dtype(xp, logits.dtype)), labels, spec


def check_smooth_bce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any,
    prior: Any,
    axis: int,
    weight: Any,
    pos_weight: Any,
    where: Any,
    ignore_index: int | None,
    reduction: str,
    logits_name: str = "logits",
    labels_name: str = "labels",
    namespace: Any = None,
) -> tuple[Any, Any, _core.BinarySpec]:
    """Validate, then return ``(xp, labels, spec)``: ``prepare_smooth_bce`` without the
    logits' conversion to the compute dtype (for an adapter that converts them itself,
    keeping only the given half-precision logits for the backward pass).
    ``logits_name``, ``labels_name``: the arrays' names in errors, as the adapter's
    framework names them (PyTorch's ``input`` and ``target``). ``namespace``: the
    namespace to check with once the arrays are known to be of one library (an adapter
    passes its overlay, whose ``min_and_max`` reads the labels' range in one pass).

    A call whose options (none of them an array) and arrays' types, shapes and dtypes an
    earlier call had checks only the labels' values (``_KnownBinaryOptions``), as
    ``check_smooth_ce`` does."""
    # Every argument, in the signature's order (``locals()`` holds just them here).
    arguments = tuple(locals().values())
    for name, value in (("weight", weight), ("pos_weight", pos_weight), ("where", where)):
        if value is not None and not hasattr(value, "shape"):
            # (Before the namespace: a list here is no array of any library.)
            fail_type(f"`{name}` must be an array or None.", name, value)
    key = None
    if weight is None and pos_weight is None and where is None:
        # (Looked up before the namespace, as in check_smooth_ce.)
        key = known_options_key(namespace, logits, labels, _keyed(arguments))
        known = _KNOWN_BINARY_OPTIONS.get(key) if key is not None else None
        if known is not None:
            return known.xp, *known.labels_and_spec(labels)
    arrays = (prior, smoothing)
    xp = array_namespace(
        logits,
        labels,
        weight,
        pos_weight,
        where,
        *(a if hasattr(a, "shape") else None for a in arrays),
    )
    if namespace is not None:
        xp = namespace
    if not is_floating_dtype(xp, logits.dtype):
        fail_type(f"`{logits_name}` must have a real floating dtype.", logits_name, logits)
    shape = tuple(logits.shape)
    check_choice("reduction", reduction, REDUCTIONS)
    check_ignore_index(ignore_index)
    dtype = _core.compute_dtype(xp, logits.dtype)
    label_axis = normalize_axis(axis, len(shape)) if shape else None
    if tuple(getattr(labels, "shape", ())) != shape or not hasattr(labels, "dtype"):
        whose = f"{logits_name}'" if logits_name.endswith("s") else f"{logits_name}'s"
        fail_value(
            f"`{labels_name}` must have the {whose} shape {shape}: one 0/1 (or soft) target "
            "per logit.",
            labels_name,
            labels,
        )
    integer = _is_integer_dtype(xp, labels.dtype)
    if not (integer or labels.dtype == xp.bool or is_floating_dtype(xp, labels.dtype)):
        fail_type(f"`{labels_name}` must be bool, integer or floating.", labels_name, labels)
    if ignore_index in (0, 1):
        fail_value(
            "`ignore_index` must not be 0 or 1, the values of binary labels (every negative "
            "or positive label would be left out). Use -1 or -100, say.",
            "ignore_index",
            ignore_index,
        )
    if ignore_index is not None and not integer:
        fail_value(
            "`ignore_index` applies to integer labels only; use `where` to leave elements "
            "of bool or floating labels out.",
            "ignore_index",
            ignore_index,
        )
    if where is not None:
        _check_broadcast("where", where, shape, "a boolean mask of the elements to keep")
        if where.dtype != xp.bool:
            fail_type("`where` must be a boolean mask.", "where", where)
    given_ignore_index = ignore_index
    if integer:
        # Widened, so that a narrow dtype compares with ignore_index by value (uint8
        # labels and ignore_index=-1 must not wrap to 255).
        labels = index_labels(xp, labels, ignore_index, labels_name)
        ignore_index = matchable_ignore_index(xp, ignore_index, labels.dtype)
    checked = _check_label_values(xp, labels, ignore_index, where, labels_name)
    spec = _core.BinarySpec(
        shape=shape,
        smoothing=check_smoothing(xp, smoothing, dtype),
        prior=check_binary_prior(xp, prior, shape, label_axis, dtype),
        weight=_floating_vector(xp, "weight", weight, shape, dtype, "a weight per element"),
        pos_weight=_floating_vector(
            xp, "pos_weight", pos_weight, shape, dtype, "a weight of the positive term per label"
        ),
        where=where,
        ignore_index=ignore_index,
        reduction=reduction,
        checked=checked,
    )
    if key is not None:
        entry = _KnownBinaryOptions(xp, spec, given_ignore_index, labels.dtype, labels_name)
        remember(_KNOWN_BINARY_OPTIONS, key, entry)
    return xp, labels, spec


class _KnownBinaryOptions(KnownSpecs):
    """The checked options of an earlier call of ``check_smooth_bce``, for a later one
    with the same key: only the labels' values are left to check (``_KnownOptions``
    does the same for ``check_smooth_ce``). The specs it returns differ only in
    ``ignore_index`` (the one the labels' index dtype can hold) and ``checked``."""

    def __init__(
        self, xp: Namespace, spec: _core.BinarySpec, ignore_index: Any, dtype: Any, name: str
    ):
        # ``ignore_index`` as passed (the key holds it); ``dtype``: that of the labels
        # as the spec was made for them (the index dtype, for integer labels).
        super().__init__(spec)
        self.xp, self.ignore_index, self.name = xp, ignore_index, name
        self.integer, self.dtype = _is_integer_dtype(xp, dtype), dtype

    def labels_and_spec(self, labels: Any) -> tuple[Any, _core.BinarySpec]:
        xp, ignore_index = self.xp, self.spec.ignore_index
        if self.integer:
            labels = index_labels(xp, labels, self.ignore_index, self.name)
            if labels.dtype != self.dtype:
                # (JAX's index dtype follows its x64 flag, which the key does not hold.)
                ignore_index = matchable_ignore_index(xp, self.ignore_index, labels.dtype)
        # (A key is made only for labels whose values are cheap to read, and so are those
        # of their copy in the index dtype.)
        checked = _check_label_values(xp, labels, ignore_index, None, self.name, cheap=True)
        return labels, self.variant(ignore_index, checked)


#: The options of recent calls of ``check_smooth_bce`` (none an array; a spec without
#: arrays each). A dict of its own: a key of the softmax checks' options never meets it.
_KNOWN_BINARY_OPTIONS: dict[tuple, _KnownBinaryOptions] = {}
# The arguments that are not options of the key: the arrays (and ``namespace``, whose
# id the key holds).
_KEYED_POSITIONS, _KEYED_NAMES = keyed_arguments(
    check_smooth_bce,
    frozenset({"logits", "labels", "weight", "pos_weight", "where", "namespace"}),
)


def known_binary_options(
    logits: Any, labels: Any, *, namespace: Any = None, **options: Any
) -> _KnownBinaryOptions | None:
    """``_checks.known_options`` for ``check_smooth_bce``: the checked options of an
    earlier call with the same arguments but the labels' values, or None. ``options``:
    every keyed argument of ``check_smooth_bce``, by name, for a call without
    ``weight``, ``pos_weight`` or ``where`` (a missing one is a KeyError)."""
    key = known_options_key(
        namespace, logits, labels, tuple([options[name] for name in _KEYED_NAMES])
    )
    return _KNOWN_BINARY_OPTIONS.get(key) if key is not None else None


def _keyed(arguments: tuple) -> tuple:
    """The keyed options' values from all of check_smooth_bce's arguments, in order. (A
    function of its own: a comprehension in check_smooth_bce would make ``arguments`` a
    cell there, which ``locals()`` under torch.compile's tracer reads unbound.)"""
    return tuple([arguments[position] for position in _KEYED_POSITIONS])

"""What the ``jax.custom_jvp`` rules of ``smooth_ce`` and ``smooth_bce`` share: the
tangent in the arguments other than the logits (soft labels, array options), from JAX's
own autodiff of the core's forward pass, asked only for the arguments that carry one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.custom_derivatives import SymbolicZero

__all__ = ["is_zero", "options_tangent"]


def is_zero(tangent: Any) -> bool:
    """Whether a tangent is JAX's symbolic zero (nothing asked for that argument)."""
    return all(isinstance(leaf, SymbolicZero) for leaf in jax.tree_util.tree_leaves(tangent))


def options_tangent(
    loss: Callable[[Any, Any], Any],
    labels: Any,
    labels_dot: Any,
    spec: Any,
    spec_dot: Any,
    *,
    names: tuple[str, ...],
    soft_labels: bool,
) -> Any | None:
    """The tangent of ``loss(labels, spec)`` in the soft labels (``soft_labels``) and in
    the options ``names`` that hold arrays, for those whose tangents are not zero; None
    when none is asked for."""
    arrays = dict(zip(spec.ARRAY_FIELDS, spec.arrays(), strict=True))
    others = {"labels": (labels, labels_dot)} if soft_labels else {}
    for name in names:
        if arrays[name] is not None:
            others[name] = (arrays[name], getattr(spec_dot, name))
    asked = {name: pair for name, pair in others.items() if not is_zero(pair[1])}
    if not asked:
        return None

    def loss_of(values: dict[str, Any]) -> Any:
        values = dict(values)
        targets = values.pop("labels", labels)
        return loss(targets, spec.replace(**values))

    _, tangent = jax.jvp(
        loss_of,
        ({name: value for name, (value, _) in asked.items()},),
        ({name: tangent for name, (_, tangent) in asked.items()},),
    )
    return tangent

"""The type aliases of lsr's annotations, defined once (as array-api-extra's
``_lib/_typing.py``).

The array API standard has no static types that every library's arrays satisfy, so the
aliases are ``Any`` under names that say what a value is; a type checker then checks
everything around the arrays (options, shapes as ints, ``None`` narrowing) and trusts
the array expressions. Adapters that deal with one framework annotate with its own
types (``torch.Tensor``, ``jax.Array``, ``tf.Tensor``) instead.
"""

from __future__ import annotations

from typing import Any, TypeAlias

#: An array of any array-API namespace, or a tensor of lsr's TensorFlow namespace.
Array: TypeAlias = Any
#: What a public function converts to an array: an array, a Python number or a nested
#: sequence of numbers.
ArrayLike: TypeAlias = Any
#: An array namespace ``xp``: a module (``array_api_compat.array_namespace``) or
#: lsr's TensorFlow namespace object.
Namespace: TypeAlias = Any
#: A dtype of some namespace (``xp.float32``).
DType: TypeAlias = Any

__all__ = ["Array", "ArrayLike", "DType", "Namespace"]

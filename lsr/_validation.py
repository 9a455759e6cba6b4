"""Argument checks, one helper per kind of check.

Every message has one grammar (as in Keras): what is wrong, what is expected, then
``Received: name=value``. Checks that need array *values* run only on concrete arrays
(see ``lsr._compat.is_concrete``); under tracing the core makes bad values visible as NaN.
"""

from __future__ import annotations

import numbers
from typing import Any, NoReturn

REDUCTIONS = ("none", "sum", "mean")
PRIOR_NAMES = ("uniform", "others")


def _show(value: Any) -> str:
    if isinstance(value, type):  # a class such as np.int32 has a `shape` descriptor
        return f"{value.__module__}.{value.__qualname__}"
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, numbers.Number):
        dtype = getattr(value, "dtype", None)
        return f"<array shape={tuple(shape)} dtype={dtype}>"
    return repr(value)


def fail_value(message: str, name: str, value: Any) -> NoReturn:
    raise ValueError(f"{message} Received: {name}={_show(value)}")


def fail_type(message: str, name: str, value: Any) -> NoReturn:
    raise TypeError(f"{message} Received: {name}={_show(value)}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        fail_value(f"`{name}` must be one of {', '.join(map(repr, choices))}.", name, value)


def check_fraction(name: str, value: Any) -> None:
    """A number in [0, 1]: a Python number, or a 0-d array checked when it is concrete."""
    if isinstance(value, bool):
        fail_type(f"`{name}` must be a real number in [0, 1], not a bool.", name, value)
    if isinstance(value, numbers.Real):
        if not 0.0 <= float(value) <= 1.0:
            fail_value(f"`{name}` must be in [0, 1].", name, value)
        return
    shape = getattr(value, "shape", None)
    if shape is None:
        fail_type(f"`{name}` must be a real number in [0, 1].", name, value)
    if tuple(shape) != ():
        fail_value(f"`{name}` must be a scalar (0-d array) in [0, 1].", name, value)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail_type(f"`{name}` must be an integer >= {minimum}.", name, value)
    if value < minimum:
        fail_value(f"`{name}` must be an integer >= {minimum}.", name, value)


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        fail_type(f"`{name}` must be an integer.", name, axis)
    index = int(axis)
    if not -ndim <= index < ndim:
        fail_value(f"`{name}` is out of range for an array with {ndim} dimensions.", name, axis)
    return index % ndim

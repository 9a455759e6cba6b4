"""Checks of the PyTorch adapter's arguments that only torch can make.

Non-tensor arguments, devices and floating dtypes get lsr's errors (what is wrong, what
is expected, ``Received: name=value``) before the core sees them, instead of a
dispatcher error from deep inside torch. The checks every backend shares live in
``lsr._checks``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch
from torch.torch_version import TorchVersion

from lsr._validation import fail_type
from lsr.torch._namespace import HALF

__all__ = [
    "COMPILES_THROUGH_OPERATORS",
    "check_floating_dtype",
    "check_prior_type",
    "check_same_device",
    "check_tensor",
    "check_tensors",
    "checked_smoothing",
    "is_int64",
    "refused_while_tracing",
    "traced_constants",
]


def check_tensor(name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        fail_type(f"`{name}` must be a torch.Tensor.", name, value)


def check_same_device(name: str, value: Any, input: torch.Tensor) -> None:
    if value.device != input.device:
        raise ValueError(
            f"`{name}` must be on the input's device ({input.device}). "
            f"Received: {name}.device={value.device}"
        )


def check_floating_dtype(name: str, value: torch.Tensor, input: torch.Tensor) -> None:
    """A floating ``value`` must have the input's dtype (float32 is fine for half inputs)."""
    if not (value.is_floating_point() and input.is_floating_point()):
        return  # The core names non-floating arrays itself.
    allowed = (input.dtype, torch.float32) if input.dtype in HALF else (input.dtype,)
    if value.dtype not in allowed:
        expected = " or ".join(str(dtype) for dtype in allowed)
        raise TypeError(
            f"`{name}` must have the input's floating dtype ({expected}); convert it "
            f"with .to(input.dtype). Received: {name}.dtype={value.dtype}"
        )


def check_tensors(input: Any, target: Any, weight: Any, prior: Any) -> None:
    check_tensor("input", input)
    check_tensor("target", target)
    check_same_device("target", target, input)
    check_floating_dtype("target", target, input)
    for name, value in (("weight", weight), ("prior", prior)):
        if isinstance(value, torch.Tensor):
            check_same_device(name, value, input)
            check_floating_dtype(name, value, input)
        elif value is not None and not isinstance(value, str):
            fail_type(f"`{name}` must be a torch.Tensor.", name, value)


def checked_smoothing(name: str, value: Any, input: torch.Tensor | None = None) -> Any:
    """``value``, a Python number or a torch tensor, checked; a NumPy scalar (such as
    ``np.float32(0.1)``, which ``F.cross_entropy``'s ``label_smoothing`` accepts) comes
    back as the Python number it holds. A NumPy array is refused: it would mix libraries.

    ``input``: given where one epsilon per position is allowed (the softmax losses); such
    a tensor must then be on the input's device (a 0-d one may stay on the CPU)."""
    # (Python numbers, tensors and torch.compile's symbolic floats are tested first: dynamo
    # cannot trace attribute tests on a symbolic float.)
    plain = isinstance(value, (torch.Tensor, torch.SymInt, torch.SymFloat))
    if not plain and type(value) not in (bool, int, float) and isinstance(value, numbers.Real):
        item = getattr(value, "item", None)
        if getattr(value, "shape", None) == () and callable(item):
            value = item()
            if not isinstance(value, (int, float)):
                value = float(value)  # (np.longdouble's item is itself)
    if not isinstance(value, (numbers.Real, torch.Tensor)):
        kind = "a 0-d torch.Tensor"
        if input is not None:
            kind = "a torch.Tensor (0-d, or one epsilon per position)"
        fail_type(f"`{name}` must be a real number in [0, 1] or {kind}.", name, value)
    if input is not None and isinstance(value, torch.Tensor) and value.ndim > 0:
        check_same_device(name, value, input)
    return value


def traced_constants(*values: Any) -> tuple[Any, ...]:
    """``values`` with each float made a constant of the graph that ``torch.compile``
    traces; as they are in eager code.

    ``torch.compile`` makes a float argument symbolic: every float, a keyword's default
    included, under ``dynamic=True``, and a float passed with a second value otherwise.
    lsr's checks read options as Python values (their range, whether an array was
    passed), which dynamo cannot trace on a symbolic float ("Unsupported hasattr call"
    under ``fullgraph=True``). Round-tripped through ``float.hex`` (exactly the same
    float), the value is read while tracing and guarded on: a new value compiles a new
    graph, as ``nn.CrossEntropyLoss(label_smoothing=...)`` does. A 0-d tensor is traced
    as an input instead, one graph for every value.
    """
    if not torch.compiler.is_compiling():
        return values
    return tuple(float.fromhex(v.hex()) if isinstance(v, float) else v for v in values)


def refused_while_tracing(error: Exception) -> None:
    """Raise lsr's ``error`` as dynamo's graph break (``Unsupported``), with its message,
    where ``torch.compile`` runs an operator's decomposition; return otherwise.

    Dynamo passes a graph break raised inside an operator's fake run on as a graph
    break; any other exception there becomes its ``TorchRuntimeError``, which would hide
    lsr's error type even where the call could run eagerly. Only lsr's own errors (each
    says what it received: ``Received:``) are made graph breaks: any other would be a
    fault of lsr's, which an eager rerun should not hide. (``unimplemented`` is a
    private API of dynamo, tested on torch 2.13; without it, or with another
    signature, ``error`` is raised as it is.)"""
    if not torch.compiler.is_compiling() or "Received:" not in str(error):
        return
    try:
        from torch._dynamo.exc import Unsupported, unimplemented
    except ImportError:
        return
    try:
        unimplemented(
            gb_type="lsr refused an argument",
            context=f"{type(error).__name__}: {error}",
            explanation=f"{type(error).__name__}: {error}",
            hints=["Fix the argument: the call raises the same error without torch.compile."],
            from_exc=error,
            log_warning=True,
        )
    except Unsupported:
        raise
    except TypeError:  # (another signature: raise ``error`` as it is)
        return


# Whether this torch runs lsr's losses under ``torch.compile`` as operators
# (``lsr::smooth_ce``, ``lsr::smooth_bce``). Their decompositions run lsr's full path on
# fake tensors, which must then see ``torch.compiler.is_compiling()`` true (or they
# would read the values): torch sets it for the whole compile in 2.13, the version
# this was tested on. An older torch traces lsr's Python, as it did before.
COMPILES_THROUGH_OPERATORS = TorchVersion(torch.__version__) >= "2.13"


def is_int64(value: Any) -> bool:
    """Whether ``value`` is a Python int (not a bool) that a schema's ``int`` (int64)
    holds: a larger one would be refused by the dispatcher with its own error."""
    return type(value) is int and -(2**63) <= value < 2**63


def check_prior_type(value: Any) -> None:
    if not isinstance(value, (str, torch.Tensor)):
        fail_type(
            "`prior` must be 'uniform', 'others' or a torch.Tensor of class probabilities.",
            "prior",
            value,
        )


def warn_if_probabilities(input: torch.Tensor, name: str = "input") -> None:
    """Warn when ``input`` is the output of a softmax (probabilities, not logits), as
    Keras does for its cross-entropies: the loss would be of softmax(softmax(z)). Read
    from the autograd graph, so it costs nothing and never reads the values."""
    grad_fn = getattr(input, "grad_fn", None)
    if grad_fn is not None and type(grad_fn).__name__ == "SoftmaxBackward0":
        warnings.warn(
            f"`{name}` comes from a softmax: it holds probabilities, but this loss takes "
            "logits (it applies the softmax itself). Pass the scores before the softmax, "
            "or torch.log of the probabilities.",
            UserWarning,
            stacklevel=3,
        )

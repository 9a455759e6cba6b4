"""The backend registry: everything lsr knows about each array library, in one place.

One small class per library that lsr supports and tests (NumPy, array-api-strict,
PyTorch, JAX, TensorFlow), holding every per-library fact: the import name, how to tell
its arrays (without importing it), its array-API namespace, whether values are concrete
(readable now) and cheap to read (host memory), devices, its half-precision dtypes, and
the pinned test environment in ``backends/``. ``BACKENDS`` lists them; the tests
(``tests/backends.py``), the noxfile and the benchmarks read it instead of restating it.

Any other library that array-api-compat supports (CuPy, Dask, ...) goes through
array-api-compat's generic path (``GENERIC``); lsr does not test those.

This module is the only one in lsr that imports array-api-compat, and it does so lazily:
at import time it needs the standard library only, so the noxfile can load it from its
file without installing anything. Resolving a namespace never imports a framework: a
backend claims an array only when its framework is already in ``sys.modules``, and only
then is its namespace imported.

The namespace-extension protocol
--------------------------------

The core runs on any array-API namespace. A namespace may offer, in addition, any of the
optional functions listed in ``lsr._core.EXTENSIONS`` (the list, with each signature);
the core looks each up with ``getattr(xp, name, None)`` and otherwise computes the same
numbers with the plain array API. An extension must:

* give the plain array-API result (to float rounding) on every input the core passes:
  float32 and float64 arrays, ``-inf`` entries (masked classes) and rows of them
  included; ``axis`` is non-negative (the core normalizes the class axis), index arrays
  have the size-1 class axis of ``take_along_axis``, and ``add_matmul`` gets matrices;
* when its description says ``-> x`` or ``-> out``, write into that argument and return
  that very object (the in-place steps of the blocked and fused passes count on it),
  also when ``out`` is ``x1`` itself (``matmul_into``'s ``out`` never overlaps its
  inputs);
* be offered only under the names of ``EXTENSIONS``: a namespace lsr ships adds nothing
  else to the array API it builds on (overriding a standard function is allowed, with the
  standard's semantics).

The namespaces lsr ships (``Backend.overlay()``: PyTorch's and JAX's overlays, and the
TensorFlow namespace) and the plain namespaces of every backend are checked against this
protocol in ``tests/test_namespaces.py``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, ClassVar

__all__ = [
    "BACKENDS",
    "GENERIC",
    "Backend",
    "array_namespace",
    "backend_of",
    "check_integers_kept",
    "device",
    "get_backend",
    "is_concrete",
    "is_host_constant",
    "is_tf_array",
    "may_carry_gradient",
    "values_are_cheap",
]


def _array_api_compat() -> ModuleType:
    # Imported on first use, not with this module: see the module docstring.
    import array_api_compat

    return array_api_compat


def _load(path: str) -> Any:
    """The object at ``"package.module:attribute"``."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Backend:
    """What lsr knows about one array library; one subclass per library.

    Attributes:
        name: the backend's name in ``LSR_BACKENDS`` and in test ids.
        label: the library's name in messages.
        module: the top-level import name; the library counts as loaded when it is in
            ``sys.modules``.
        environment: the pinned test environment, ``backends/<environment>.txt`` (also
            the nox ``tests`` session that runs this backend on its own).
        half_precision: names of the half-precision floating dtypes the library has
            (the core computes them in float32).
        writable: whether arrays take item assignment and in-place updates (the core's
            ``out=`` and in-place passes need it).
        in_array_api_compat: whether array-api-compat knows the library (if not, lsr
            ships the namespace itself).
        overlay_path: ``"module:attribute"`` of the namespace lsr's adapter runs the core
            on, where lsr ships its own (see ``overlay``).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    module: ClassVar[str]
    environment: ClassVar[str]
    half_precision: ClassVar[tuple[str, ...]] = ()
    writable: ClassVar[bool] = True
    in_array_api_compat: ClassVar[bool] = True
    overlay_path: ClassVar[str | None] = None

    def loaded(self) -> bool:
        """Whether the library has been imported (by anyone)."""
        return sys.modules.get(self.module) is not None

    def is_array(self, x: Any) -> bool:
        """Whether ``x`` is one of this library's arrays; never imports the library."""
        raise NotImplementedError

    def namespace(self) -> Any:
        """The array-API namespace of this library's arrays (imports the library)."""
        raise NotImplementedError

    def overlay(self) -> Any:
        """The namespace lsr's own adapter runs the core on: ``namespace()`` plus the
        extensions of the protocol above (imports the adapter)."""
        return self.namespace() if self.overlay_path is None else _load(self.overlay_path)

    def is_concrete(self, x: Any) -> bool:
        """Whether ``x`` holds values Python may read now (so they can be validated)."""
        return True

    def values_are_cheap(self, x: Any) -> bool:
        """Whether reading ``x``'s values now is cheap: concrete and in host memory."""
        return self.is_concrete(x)

    def may_carry_gradient(self, x: Any) -> bool:
        """Whether a derivative with respect to ``x`` may be taken from the ops applied
        to it now. True unless the library can say no (then the core may use a
        formulation whose value is exact but whose derivative in ``x`` is not needed)."""
        return True

    def is_host_constant(self, x: Any) -> bool:
        """``values_are_cheap(x) and not may_carry_gradient(x)``: a number Python may
        compute with in its place (see the module-level function)."""
        return self.values_are_cheap(x) and not self.may_carry_gradient(x)

    def device(self, x: Any) -> Any:
        """The device of ``x``, for creating constants beside it."""
        return _array_api_compat().device(x)

    def __repr__(self) -> str:
        return f"<lsr backend {self.name}>"


class NumPyBackend(Backend):
    name = "numpy"
    label = "NumPy"
    module = "numpy"
    environment = "numpy"
    half_precision = ("float16",)

    def is_array(self, x: Any) -> bool:
        return _array_api_compat().is_numpy_array(x)

    def namespace(self) -> Any:
        # NumPy 2 is close to the standard; array-api-compat fills the remaining gaps.
        import array_api_compat.numpy

        return array_api_compat.numpy

    def may_carry_gradient(self, x: Any) -> bool:
        return False  # (no autodiff)


class ArrayAPIStrictBackend(Backend):
    """The standard's reference implementation: no extras, no float16, CPU only."""

    name = "array_api_strict"
    label = "array-api-strict"
    module = "array_api_strict"
    environment = "numpy"

    def is_array(self, x: Any) -> bool:
        # Its array class is not public (array_api_strict._array_object.Array).
        cls = type(x)
        return cls.__name__ == "Array" and cls.__module__.startswith("array_api_strict.")

    def namespace(self) -> Any:
        import array_api_strict

        return array_api_strict

    def may_carry_gradient(self, x: Any) -> bool:
        return False  # (no autodiff)


class TorchBackend(Backend):
    """PyTorch. Values are not concrete while ``torch.compile`` traces, under
    ``torch.func`` transforms, or on the meta device; they are cheap on the CPU only."""

    name = "torch"
    label = "PyTorch"
    module = "torch"
    environment = "torch"
    half_precision = ("float16", "bfloat16")
    overlay_path = "lsr.torch._namespace:xp"

    def is_array(self, x: Any) -> bool:
        # Checked directly (not through array-api-compat), as the first check of every
        # lookup: this is what torch.compile's tracer reads on every call.
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)

    def namespace(self) -> Any:
        # The direct route: array-api-compat's generic dispatch is lru_cache-wrapped,
        # which torch.compile's tracer warns about on every call.
        from array_api_compat import torch as torch_namespace

        return torch_namespace

    def is_functorch_wrapped(self, x: Any) -> bool:
        """Whether ``x`` is a ``torch.func`` (functorch) wrapper, whose values are hidden.

        A private API (``torch._C._functorch``, in every torch since 2.0); a torch
        without it has no such wrappers to tell apart.
        """
        functorch = getattr(sys.modules["torch"]._C, "_functorch", None)
        return functorch is not None and functorch.is_functorch_wrapped_tensor(x)

    def is_concrete(self, x: Any) -> bool:
        torch = sys.modules["torch"]
        # (Under torch.jit.trace a value read would become a constant of the trace.)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False
        if self.is_functorch_wrapped(x):
            return False
        return x.device.type != "meta"

    def values_are_cheap(self, x: Any) -> bool:
        # On an accelerator, reading values would synchronize the device on every call.
        # (is_concrete's tests, the device's first: on every eager call of the loss.)
        # Under torch.jit.trace a value read becomes a constant of the trace, which
        # later calls would reuse whatever their inputs: not cheap there either.
        # (``is_cpu``: a fifth of the time of ``device.type``, on every eager call.)
        torch = sys.modules["torch"]
        return (
            x.is_cpu
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and not self.is_functorch_wrapped(x)
        )

    def may_carry_gradient(self, x: Any) -> bool:
        # Autograd records only tensors that require grad, with grad mode on (it is off
        # in a custom Function's forward); torch.func's transforms wrap their inputs.
        # While torch.compile traces, the wrapper test cannot run: say yes (the compiled
        # graph fuses the exact form's extra test anyway).
        torch = sys.modules["torch"]
        if torch.compiler.is_compiling() or self.is_functorch_wrapped(x):
            return True
        return bool(x.requires_grad) and torch.is_grad_enabled()

    def is_host_constant(self, x: Any) -> bool:
        # (values_are_cheap and not may_carry_gradient, each test made once.)
        torch = sys.modules["torch"]
        return (
            x.is_cpu
            and not (x.requires_grad and torch.is_grad_enabled())
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and not self.is_functorch_wrapped(x)
        )

    def device(self, x: Any) -> Any:
        return x.device


class JAXBackend(Backend):
    """JAX. Values are not concrete under tracing (``jit``, ``vmap``, ``grad``); they are
    cheap when every device holding them is a CPU."""

    name = "jax"
    label = "JAX"
    module = "jax"
    environment = "jax"
    half_precision = ("float16", "bfloat16")
    writable = False
    overlay_path = "lsr.jax._namespace:xp"

    def is_array(self, x: Any) -> bool:
        return _array_api_compat().is_jax_array(x)

    def namespace(self) -> Any:
        import jax.numpy

        return jax.numpy

    def is_concrete(self, x: Any) -> bool:
        # array-api-compat calls every JAX array lazy; only tracers really are.
        return not isinstance(x, sys.modules["jax"].core.Tracer)

    def may_carry_gradient(self, x: Any) -> bool:
        # Only a tracer can be differentiated (under jit it may be: jit inlines into
        # a caller's grad).
        return not self.is_concrete(x)

    def values_are_cheap(self, x: Any) -> bool:
        # (A NumPy array of JAX's float0 dtype, a zero gradient, counts as JAX's: it has
        # no devices, and its values are in host memory.)
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(x, numpy.ndarray):
            return True
        return self.is_concrete(x) and all(d.platform == "cpu" for d in x.devices())


class TensorFlowBackend(Backend):
    """TensorFlow (tensors and variables). array-api-compat has no TensorFlow namespace:
    lsr ships its own (``namespace_path``). Values are concrete in eager mode only."""

    name = "tensorflow"
    label = "TensorFlow"
    module = "tensorflow"
    environment = "tensorflow"
    half_precision = ("float16", "bfloat16")
    writable = False
    in_array_api_compat = False
    #: lsr's TensorFlow namespace: the only place its location is written.
    namespace_path = "lsr.tensorflow._namespace:namespace"

    def is_array(self, x: Any) -> bool:
        tf = sys.modules.get("tensorflow")
        return tf is not None and isinstance(x, (tf.Tensor, tf.Variable))

    def namespace(self) -> Any:
        return _load(self.namespace_path)

    def is_concrete(self, x: Any) -> bool:
        return sys.modules["tensorflow"].executing_eagerly()

    def device(self, x: Any) -> Any:
        # A device string, e.g. "/job:localhost/replica:0/task:0/device:CPU:0".
        return x.device


class GenericBackend(Backend):
    """Any other array-API library, through array-api-compat's generic path. Untested:
    lsr makes no promise for these."""

    name = "generic"
    label = "another array-API library"
    module = "array_api_compat"
    environment = ""

    def is_array(self, x: Any) -> bool:
        return _array_api_compat().is_array_api_obj(x)

    def namespace(self) -> Any:
        raise TypeError(
            "The generic backend has no namespace of its own; use "
            "`array_namespace(*arrays)`. Received: backend='generic'"
        )

    def is_concrete(self, x: Any) -> bool:
        return not _array_api_compat().is_lazy_array(x)


#: The backends lsr supports and tests, by name, in the order tests list them.
BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        NumPyBackend(),
        ArrayAPIStrictBackend(),
        TorchBackend(),
        JAXBackend(),
        TensorFlowBackend(),
    )
}
GENERIC = GenericBackend()

# The order in which ``backend_of`` asks (no array belongs to two): PyTorch first, so
# that under torch.compile the tracer reads only its own check.
_LOOKUP = tuple(BACKENDS[name] for name in ("torch", "jax", "tensorflow", "numpy"))
_LOOKUP += tuple(b for b in BACKENDS.values() if b not in _LOOKUP)
_OWN_NAMESPACE = tuple(b for b in BACKENDS.values() if not b.in_array_api_compat)
_TENSORFLOW = BACKENDS["tensorflow"]


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``.

    Raises:
        ValueError: when no backend has that name.
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"Unknown backend: expected one of {list(BACKENDS)}. Received: name={name!r}"
        ) from None


def backend_of(x: Any) -> Backend | None:
    """The registered backend whose array ``x`` is, or ``None`` (another library, or
    not an array)."""
    for backend in _LOOKUP:
        if backend.is_array(x):
            return backend
    return None


def _library_name(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` entries are skipped).

    Raises:
        TypeError: when the arrays come from different libraries, or one is not an array.
    """
    present = [a for a in arrays if a is not None]
    backend = backend_of(present[0]) if present else None
    if backend is not None and all(backend.is_array(a) for a in present[1:]):
        return backend.namespace()
    types = [type(a).__name__ for a in present]
    for own in _OWN_NAMESPACE:
        if any(own.is_array(a) for a in present):
            # array-api-compat does not know these arrays: its message would not say why.
            others = sorted({_library_name(a) for a in present if not own.is_array(a)})
            raise TypeError(
                "All array arguments must come from one array library, but "
                f"{own.label} tensors were mixed with arrays from {others}. Convert them "
                f"first. Received: types={types}"
            )
    try:
        return _array_api_compat().array_namespace(*present)
    except TypeError as error:
        libraries = sorted({_library_name(a) for a in present})
        tested = ", ".join(b.label for b in BACKENDS.values())
        raise TypeError(
            f"All array arguments must be arrays of one array-API library: {tested} "
            "(tested), or another that array-api-compat supports (untested). "
            f"Received: types={types} from {libraries}"
        ) from error


def _backend_or_generic(x: Any) -> Backend:
    backend = backend_of(x)
    return GENERIC if backend is None else backend


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values Python may read now (so they can be validated).

    False under ``jax.jit``/``vmap`` tracing, inside a ``tf.function`` graph, while
    ``torch.compile`` traces, and under ``torch.func`` transforms: there, validation
    that needs values is skipped and bad values show up as NaN in the result instead.
    """
    return _backend_or_generic(x).is_concrete(x)


def values_are_cheap(x: Any) -> bool:
    """Whether reading ``x``'s values now is cheap: concrete and in host memory.

    Value checks (label ranges) run only then: on an accelerator they would force a
    device synchronization on every call, so there, as under tracing, an out-of-range
    label shows up as NaN instead.
    """
    return _backend_or_generic(x).values_are_cheap(x)


def check_integers_kept(x: Any, name: str, *, becoming_jax: bool = False) -> None:
    """Raise where JAX without x64 would wrap ``x``'s integers into other values.

    Without x64, JAX computes with 32-bit integers: it converts a 64-bit NumPy array
    when it makes a jax array of it, and casts a 64-bit jax array (made while x64 was
    on) in every operation on it. Both wrap values beyond 32 bits: 2**32 + 1 becomes 1,
    a real class id. Here the values are read as they are stored, on the host (a device
    synchronization per call, in that rare state only), before any operation could wrap
    them. ``x``: a jax array, or a NumPy array that is about to become one
    (``becoming_jax``); any other passes (NumPy's own ids are never cast so). The test
    of the dtype comes first: only 64-bit integers without x64 are read.
    """
    jax = sys.modules.get("jax")
    numpy = sys.modules.get("numpy")
    if jax is None or numpy is None:
        return
    if isinstance(x, numpy.ndarray):
        if not becoming_jax:
            return
    elif not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return  # (a tracer's dtype is 32-bit already)
    dtype = x.dtype
    if dtype.kind not in ("i", "u") or dtype.itemsize <= 4 or jax.config.jax_enable_x64:
        return
    values = numpy.asarray(x)
    if not values.size:
        return
    kept = numpy.iinfo(numpy.int32 if dtype.kind == "i" else numpy.uint32)
    low, high = int(values.min()), int(values.max())
    if low < kept.min or high > kept.max:
        raise ValueError(
            f"`{name}` holds integers outside {kept.dtype}, which JAX without x64 would "
            "wrap into other values (2**32 + 1 becomes 1); enable "
            "`jax.config.update('jax_enable_x64', True)` or map the ids into "
            f"{kept.dtype} first. Received: {name} with min={low}, max={high}"
        )


def may_carry_gradient(x: Any) -> bool:
    """Whether a derivative with respect to ``x`` may be taken from the ops applied to it
    now: False for NumPy and array-api-strict (no autodiff), for a PyTorch tensor that
    autograd does not record (no ``requires_grad``, grad mode off, outside
    ``torch.func``), and for a concrete JAX array; True otherwise (TensorFlow: any
    tensor may be watched by a tape)."""
    return _backend_or_generic(x).may_carry_gradient(x)


def is_host_constant(x: Any) -> bool:
    """Whether ``x`` (a few numbers) may be read and computed with in Python floats in
    its place: its values are cheap to read (``values_are_cheap``) and nothing takes a
    derivative through it (not ``may_carry_gradient``)."""
    return _backend_or_generic(x).is_host_constant(x)


def device(x: Any) -> Any:
    """The device of ``x``, for creating constants beside it."""
    return _backend_or_generic(x).device(x)


def is_tf_array(x: Any) -> bool:
    """Whether ``x`` is a TensorFlow tensor or variable (without importing TensorFlow)."""
    return _TENSORFLOW.is_array(x)

"""The backend-independent harness: cases, timing, memory probes, the machine's bandwidth.

Timing follows the usual rules for honest micro-benchmarks (scipy's
``benchmarks/benchmarks/common.py``, asv): the first call (compilation included) is
timed and reported on its own, every step is warmed up before the clock runs, the
backend's ``sync`` waits for the result before the clock is read, each method is timed
over several repeats and the median (and spread) is kept, and the methods of one case are
timed taking turns (one repeat of each in turn, in ``round_order``) so that load from
other processes on a shared machine hits lsr and its rivals alike and cancels in their
ratio.

Peak memory is read from the process itself (``VmHWM``, the high-water mark of its
resident set, reset through ``/proc/self/clear_refs`` before the measured call), in a
fresh process per case and method, above the resident set once the inputs exist.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

MODES = ("forward", "forward+backward")
SIZES = ("smoke", "quick", "full")
# The loss families: "softmax" (lsr's smooth_ce: integer labels, one class per position)
# and "binary" (lsr's smooth_bce: sigmoid cross-entropy, one 0/1 target per logit).
LOSSES = ("softmax", "binary")
# The fraction of positive targets in the multi-label cases (a few labels per example).
POSITIVE_FRACTION = 0.1
# The binary loss's smoothing value u, y' = (1 - eps) y + eps u: towards 1/2, the
# convention of Keras' BinaryCrossentropy(label_smoothing=eps) and YOLOv5's smooth_BCE.
BINARY_PRIOR = 0.5


@dataclasses.dataclass(frozen=True)
class Case:
    """One input configuration: logits of ``shape`` and ``dtype``, and their labels.

    ``kind`` is ``"labels"`` for (N, K) logits with class ids of shape (N,);
    ``"segmentation"`` for (N, C, H, W) logits (class axis 1) with labels of shape
    (N, H, W) of which ``ignored`` (a fraction) equal ``ignore_index``; or
    ``"multilabel"`` for (N, K) logits of K independent labels with dense 0/1 targets of
    the same shape and dtype (the binary loss; ``POSITIVE_FRACTION`` of them are 1).
    """

    kind: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    smoothing: float = 0.1
    ignore_index: int | None = None
    ignored: float = 0.0

    @property
    def loss(self) -> str:
        """The loss family benchmarked on this case: "binary" or "softmax"."""
        return "binary" if self.kind == "multilabel" else "softmax"

    @property
    def axis(self) -> int:
        return 1 if self.kind == "segmentation" else len(self.shape) - 1

    @property
    def num_classes(self) -> int:
        return self.shape[self.axis]

    @property
    def label_shape(self) -> tuple[int, ...]:
        if self.kind == "multilabel":
            return self.shape
        return self.shape[: self.axis] + self.shape[self.axis + 1 :]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype in ("bfloat16", "float16") else 4

    @property
    def logits_bytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    @property
    def input_bytes(self) -> int:
        """The bytes a loss must read: the logits, and the dense targets of a multi-label
        case (integer class ids, one per position, are left out as negligible)."""
        return 2 * self.logits_bytes if self.kind == "multilabel" else self.logits_bytes

    @property
    def name(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        suffix = ""
        if self.ignore_index is not None:
            suffix = f", {self.ignored:.0%} ignored"
        axis = ", class axis 1" if self.kind == "segmentation" else ""
        if self.kind == "multilabel":
            axis = ", multi-label"
        return f"{dims}{axis}{suffix}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        return cls(**{**data, "shape": tuple(data["shape"])})


def _segmentation(shape: tuple[int, ...], dtype: str) -> Case:
    return Case("segmentation", shape, dtype, ignore_index=255, ignored=0.05)


def cases(size: str, losses: tuple[str, ...] = LOSSES) -> list[Case]:
    """The benchmark cases of a run of ``size`` ("smoke", "quick" or "full") for the loss
    families ``losses`` (``LOSSES``: "softmax", "binary"), softmax cases first."""
    found = _softmax_cases(size) if "softmax" in losses else []
    return found + (_binary_cases(size) if "binary" in losses else [])


def _binary_cases(size: str) -> list[Case]:
    """Multi-label (N, K): K = 80 (COCO's labels, as detection heads) and K = 1000 (large
    tag sets). The loss is elementwise, so its cost follows N x K: the full run measures
    a small size (per-call overhead) and a large one in both dtypes (bandwidth; logits
    large enough that the memory probe resolves an N x K buffer), and no more, since
    every case costs TensorFlow about ten fresh processes for its memory."""
    if size == "smoke":  # (the bfloat16 path is the softmax smoke's)
        return [Case("multilabel", (64, 80))]
    if size == "quick":
        float32 = [(4096, 80), (4096, 1000)]
        bfloat16 = [(4096, 1000)]
    else:
        float32 = [(4096, 80), (65536, 80)]
        bfloat16 = [(65536, 80)]
    return [Case("multilabel", shape) for shape in float32] + [
        Case("multilabel", shape, "bfloat16") for shape in bfloat16
    ]


def _softmax_cases(size: str) -> list[Case]:
    if size == "smoke":
        # Every path once (class ids, bfloat16, the class axis at 1 with ignored
        # positions), at sizes where a run takes seconds: the smoke keeps the harness
        # working, it measures nothing.
        return [
            Case("labels", (128, 1000)),
            Case("labels", (64, 10), "bfloat16"),
            _segmentation((1, 21, 16, 16), "float32"),
        ]
    if size == "quick":
        shapes = [(256, 10), (4096, 1000), (512, 32000)]
        segmentation = (2, 21, 128, 128)
    else:
        shapes = [(256, 10), (4096, 1000), (2048, 32000), (1024, 128000)]
        segmentation = (8, 21, 256, 256)
    result = []
    for dtype in ("float32", "bfloat16"):
        result += [Case("labels", shape, dtype) for shape in shapes]
        result.append(_segmentation(segmentation, dtype))
    return result


@dataclasses.dataclass(frozen=True)
class LinearCase:
    """Hidden states (rows, width) times a (width, classes) projection, float32."""

    rows: int
    width: int
    classes: int
    chunk_size: int | None = None

    @property
    def name(self) -> str:
        return f"N={self.rows}, d={self.width}, K={self.classes}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def linear_cases(size: str) -> list[LinearCase]:
    """Growing N at fixed d and K (the fused path's memory should stay flat), then the
    heads of large language models scaled to this machine: a 32k vocabulary up to 32,768
    rows, and Llama 3's 128,256 classes (its d = 4096 scaled down to 512)."""
    if size == "smoke":
        return [LinearCase(128, 16, 1000, 32)]
    if size == "quick":
        return [LinearCase(rows, 64, 8000, 128) for rows in (256, 512, 1024)] + [
            LinearCase(1024, 128, 32000)
        ]
    return [LinearCase(rows, 128, 32000, 256) for rows in (1024, 2048, 4096, 8192)] + [
        LinearCase(8192, 512, 32000),
        LinearCase(32768, 512, 32000),
        LinearCase(2048, 512, 128256),
    ]


#: The methods of the linear + loss part, per backend: lsr's fused loss, then its rivals.
#: "plain": the logits made whole, then the framework's own smoothed loss; "native_fused"
#: (PyTorch): ``F.linear_cross_entropy`` without smoothing (its chunked path, the bar lsr
#: smoothing must clear) and "native_fused_smoothing" with ``label_smoothing=0.1`` (it
#: then makes the whole logits).
LINEAR_METHODS = {
    "torch": ("lsr", "plain", "native_fused", "native_fused_smoothing"),
    "jax": ("lsr", "plain"),
    "tensorflow": ("lsr", "plain"),
}

#: The rivals that make the whole N x K logits (a few times their size at the peak) are
#: left out where the logits alone would exceed this: they would not fit this machine.
WHOLE_LOGITS_LIMIT_BYTES = 2 << 30
WHOLE_LOGITS_METHODS = ("plain", "native_fused_smoothing")


def linear_methods(backend: str, case: LinearCase) -> tuple[str, ...]:
    """The methods measured for ``case`` on ``backend``."""
    whole = case.rows * case.classes * 4 > WHOLE_LOGITS_LIMIT_BYTES
    return tuple(
        method
        for method in LINEAR_METHODS.get(backend, ("lsr", "plain"))
        if not (whole and method in WHOLE_LOGITS_METHODS)
    )


def linear_floor_bytes(case: LinearCase) -> int:
    """The least lsr's fused loss can hold above its inputs (float32): the gradients of
    the hidden states and the projection (the benchmark has no bias) and one block of
    its logits (``lsr._linear.block_rows`` rows). Rivals' rows show it for scale."""
    from lsr._linear import block_rows

    rows = block_rows(case.rows, case.classes, case.chunk_size)
    return 4 * (case.rows * case.width + case.width * case.classes + rows * case.classes)


@dataclasses.dataclass(frozen=True)
class Loss:
    """One loss to benchmark: ``fn(logits, labels)`` returns the mean loss (a scalar).

    Attributes:
        role: ``"lsr"``; ``"native"`` (the framework's own label-smoothed loss, what its
            users write today; for the binary loss, the framework's sigmoid
            cross-entropy on targets smoothed by hand, or Keras' ``label_smoothing``);
            ``"closed form"`` (the smoothed loss written in closed form with the
            framework's autodiff, compiled by the framework); or ``"bound"`` (the
            framework's unsmoothed loss: integer labels, or the binary loss on the raw
            0/1 targets; a lower bound).
        variant: the execution mode, e.g. ``"eager"``, ``"jit"``, ``"graph"``, ``"xla"``.
        compare_to: for lsr, the rivals in the same execution mode.
    """

    name: str
    role: str
    fn: Callable[[Any, Any], Any]
    variant: str
    compare_to: tuple[str, ...] = ()


@dataclasses.dataclass
class Method:
    """One loss prepared for one case and mode: ``step()`` runs it (and its gradient)."""

    loss: Loss
    step: Callable[[], Any]
    exact_peak_bytes: Callable[[], int | None] | None = None


T = TypeVar("T")


def round_order(items: Sequence[T], round_index: int) -> list[T]:
    """The order in which the timed steps take turns in round ``round_index``: rounds
    0 and 1 are the given order and its reverse, rounds 2 and 3 the same one step on
    (rotated by one), and so on. So every step comes first, and every step follows both
    of its neighbours, in turn. (The step that ends an even round also begins the next
    one: that batch follows the step itself, as every batch follows its own untimed
    call.)

    A step runs after another one: it inherits that one's caches and the allocator's
    free memory, and rotating alone keeps each step's predecessor. In the same order
    every round, without an untimed call, the eager PyTorch step right after
    ``F.cross_entropy`` ran 8-25% slower than an identical step before it from
    4096 x 1000 up; in this order, after an untimed call, 5% faster to 4% slower
    (benchmarks/results/2026-12-07-round-order/aaa.txt).
    """
    shift = (round_index // 2) % max(len(items), 1)
    order = list(items[shift:]) + list(items[:shift])
    return order[::-1] if round_index % 2 else order


def time_methods(
    methods: list[Method],
    sync: Callable[[Any], None],
    *,
    repeats: int,
    min_repeat_s: float,
    max_total_s: float,
) -> dict[str, dict[str, Any]]:
    """First-call time, then the median seconds per call, the methods taking turns.

    Each method's first call (which compiles) is timed alone, then it runs once more
    untimed. One repeat calls the step ``number`` times in a row, with ``number`` chosen
    so that a repeat lasts about ``min_repeat_s``; fewer repeats (at least 3) are made
    when ``repeats`` of them would exceed ``max_total_s`` for this group of methods.
    Each repeat follows one untimed call of its step, and the methods take turns in the
    order of ``round_order`` (a method inherits the caches and the allocator's free
    memory of the one before it). Besides wall-clock time, the process's CPU time (all
    threads) per call is recorded.
    """
    numbers, first_calls = {}, {}
    per_round = 0.0
    for method in methods:
        start = time.perf_counter()
        sync(method.step())
        first_calls[method.loss.name] = time.perf_counter() - start
        sync(method.step())
        start = time.perf_counter()
        sync(method.step())
        one_call = max(time.perf_counter() - start, 1e-7)
        numbers[method.loss.name] = max(1, int(min_repeat_s / one_call))
        per_round += numbers[method.loss.name] * one_call
    rounds = max(3, min(repeats, int(max_total_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {m.loss.name: [] for m in methods}
    cpu_times: dict[str, list[float]] = {m.loss.name: [] for m in methods}
    for round_index in range(rounds):
        for method in round_order(methods, round_index):
            name = method.loss.name
            gc.collect()
            sync(method.step())
            cpu_start = time.process_time()
            start = time.perf_counter()
            for _ in range(numbers[name]):
                # A training step consumes the previous step's gradient before it makes
                # the next one: nothing of the previous call stays alive during a call.
                result = None
                result = method.step()
            sync(result)
            times[name].append((time.perf_counter() - start) / numbers[name])
            cpu_times[name].append((time.process_time() - cpu_start) / numbers[name])
            del result
    return {
        name: {
            "first_call_s": first_calls[name],
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "iqr_s": _iqr(values),
            "cpu_median_s": statistics.median(cpu_times[name]),
            "repeats": len(values),
            "number": numbers[name],
            "times_s": values,
        }
        for name, values in times.items()
    }


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


# --- Process memory ---------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """The process's resident set now."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    """The high-water mark of the resident set since start or the last reset."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux 4.0+); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    """Return memory freed by the process to the system (glibc), so that the resident set
    counts live memory only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_rss_peaks(step: Callable[[], Any], sync: Callable[[Any], None]) -> dict[str, Any]:
    """Peak resident set above the current one, during the first call and a later one.

    The caller makes sure the inputs are computed (asynchronous frameworks) first.
    """
    gc.collect()
    release_freed_memory()
    if not reset_peak_rss():
        return {"rss_error": "cannot reset VmHWM (/proc/self/clear_refs)"}
    base = rss_bytes()
    result = step()
    sync(result)
    del result
    first = peak_rss_bytes() - base
    gc.collect()
    reset_peak_rss()
    # The baseline of the steady state is the same as the first call's: memory a
    # framework keeps cached after the first call counts against it.
    result = step()
    sync(result)
    del result
    steady = peak_rss_bytes() - base
    return {"rss_first_bytes": first, "rss_steady_bytes": steady}


# --- The machine ------------------------------------------------------------------------


def measure_bandwidth(total_bytes: int = 1 << 29, repeats: int = 7) -> dict[str, Any]:
    """Memory bandwidth with NumPy on every usable CPU: a copy (read + write) and a sum.

    Buffers are touched before timing (fresh pages fault far slower than bandwidth);
    the best of ``repeats`` is kept, as bandwidth is a ceiling.
    """
    import numpy as np

    threads = _usable_cpus()
    src = np.ones(total_bytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    parts = np.array_split(np.arange(src.size), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if p.size]

    def copy(bound):
        np.copyto(dst[bound[0] : bound[1]], src[bound[0] : bound[1]])

    def read(bound):
        return float(np.add.reduce(src[bound[0] : bound[1]]))

    best_copy = best_read = math.inf
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(copy, bounds))
            best_copy = min(best_copy, time.perf_counter() - start)
            start = time.perf_counter()
            list(pool.map(read, bounds))
            best_read = min(best_read, time.perf_counter() - start)
    return {
        "method": f"NumPy copyto and sum of {total_bytes >> 20} MiB float32 on {threads} "
        f"threads, best of {repeats}",
        "copy_read_write_bytes_per_s": 2 * src.nbytes / best_copy,
        "read_bytes_per_s": src.nbytes / best_read,
    }


def bound_seconds(case: Case, mode: str, bandwidth: dict[str, Any]) -> float:
    """The memory-bandwidth bound: read the inputs once (the logits, and a multi-label
    case's dense targets; forward), and write the gradient once too (forward+backward)."""
    if mode == "forward":
        return case.input_bytes / bandwidth["read_bytes_per_s"]
    return (case.input_bytes + case.logits_bytes) / bandwidth["copy_read_write_bytes_per_s"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def code_revision(root: str | None = None) -> dict[str, Any]:
    """The commit of the code a run measures, and whether tracked files differed from it
    (``git`` in the checkout whose root holds ``benchmarks/``); None where git cannot
    tell: no git, or not such a checkout (a copy inside another repository records
    nothing rather than that repository's commit). ``root``: that checkout's root, by
    default the parent of ``benchmarks/``."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*arguments: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", root, *arguments], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or os.path.realpath(top) != os.path.realpath(root):
        return {"revision": None, "uncommitted_changes": None}
    revision = git("rev-parse", "--short=12", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {
        "revision": revision,
        "uncommitted_changes": None if revision is None or changes is None else bool(changes),
    }


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and not cpu_model:
                    cpu_model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    # The widest x86 vector extension: machines named alike differ here, and PyTorch's
    # CPU kernels with them (see NARROW_CLASSES in lsr/torch/_namespace.py).
    vector = next(
        (name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags),
        None,
    )
    memory_bytes = None
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    thp = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
            thp = setting.read().strip()
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_model or platform.processor(),
        "vector_extension": vector,
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "memory_bytes": memory_bytes,
        "transparent_hugepage": thp,
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --- Per-call overhead ------------------------------------------------------------------

#: The tiny inputs of the overhead part: 8 x 4 float32 logits with integer labels (the
#: softmax losses), the same with 0/1 targets of one label per logit (the binary loss),
#: and 8 x 16 hidden states times a 16 x 4 projection (the fused linear + loss). At this
#: size the arithmetic is nothing and a call costs what its Python and its dispatch cost.
OVERHEAD_CASES = {
    "softmax": Case("labels", (8, 4)),
    "binary": Case("multilabel", (8, 4)),
}
OVERHEAD_LINEAR = LinearCase(8, 16, 4)
OVERHEAD_INPUT_NAMES = {
    "softmax": "8x4, integer labels",
    "binary": "8x4, multi-label",
    "linear": "8x16 @ 16x4, integer labels",
}

#: calls: the calls in a row that one repeat times (fewer, down to ``min(10, calls)``,
#: where ``repeats`` rounds of every step of a pair would take over ``max_pair_s``).
OVERHEAD_SETTINGS = {
    "smoke": {"calls": 5, "repeats": 3, "max_pair_s": 0.05},
    "quick": {"calls": 100, "repeats": 5, "max_pair_s": 0.25},
    "full": {"calls": 200, "repeats": 7, "max_pair_s": 0.5},
}


@dataclasses.dataclass(frozen=True)
class OverheadPair:
    """One public entry point of lsr beside the framework's own equivalent, on a tiny input.

    ``ours`` and ``theirs`` take ``args`` (the inputs, the ``differentiable`` ones first:
    the logits, or the hidden states and the projection) and return the mean loss;
    ``entry`` is lsr's public name (``lsr.torch.cross_entropy``), ``rival`` the
    framework's call as its users write it, ``variant`` the execution mode ("eager",
    "jit", "tf.function"), ``inputs`` a key of ``OVERHEAD_INPUT_NAMES`` and
    ``smoothing`` the label smoothing both compute with.
    """

    entry: str
    rival: str
    variant: str
    inputs: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any]
    args: tuple[Any, ...]
    differentiable: int = 1
    smoothing: float = 0.1

    @property
    def loss(self) -> str:
        """The loss family ("softmax" or "binary"; the fused linear loss is a softmax one)."""
        return "binary" if self.inputs == "binary" else "softmax"


def _flat(output: Any) -> list[Any]:
    if isinstance(output, (tuple, list)):
        return [array for item in output for array in _flat(item)]
    return [output]


def overhead_agreement(
    ours: Any, theirs: Any, to_numpy: Callable[[Any], Any], rtol: float = 2e-5, atol: float = 1e-6
) -> dict[str, Any]:
    """The loss (and gradients) of both calls of a pair: their largest differences, after
    asserting (float32 tolerances) that they are the same numbers."""
    import numpy as np

    ours_arrays = [np.asarray(to_numpy(a), dtype=np.float64) for a in _flat(ours)]
    theirs_arrays = [np.asarray(to_numpy(a), dtype=np.float64) for a in _flat(theirs)]
    assert len(ours_arrays) == len(theirs_arrays), (len(ours_arrays), len(theirs_arrays))
    pairs = list(zip(ours_arrays, theirs_arrays, strict=True))
    for index, (a, b) in enumerate(pairs):
        what = "loss" if index == 0 else f"gradient {index}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"lsr and rival: {what}")
    diffs = [float(np.max(np.abs(a - b))) for a, b in pairs]
    return {"loss_abs_diff": diffs[0], "grad_max_abs_diff": max(diffs[1:], default=None)}


def time_calls(
    steps: dict[str, Callable[[], Any]],
    sync: Callable[[Any], None],
    *,
    calls: int,
    repeats: int,
    max_pair_s: float,
) -> dict[str, dict[str, Any]]:
    """Seconds per call of each (already called once) step: the median over ``repeats``
    batches of ``calls`` calls in a row, each batch after one untimed call of its step,
    the steps taking turns in the order of ``round_order``, the clock read after the
    last call's result is ready.

    The untimed call and the order matter: a step inherits the caches and the
    allocator's free memory of the one before it. Timed right after another step, in the
    same order every round, one of two identical steps ran up to 16% faster than the
    other (CPU, eager PyTorch, 2 cores: B/A 0.843-0.933 in
    benchmarks/results/2026-12-07-call-order/aa.txt; 0.928-1.029 rotated by one step a
    round, with the untimed call), which favoured whichever step came last.

    A batch has fewer calls (down to one) where ``repeats`` rounds would take longer than
    ``max_pair_s``, estimated from one more call of each step (a slow step, such as an
    un-jitted JAX loss, is timed over few calls rather than making the part slow). The
    garbage collector is not run between batches (with a framework loaded a full
    collection takes longer than all the batches of a pair); the caller freezes what
    exists before (``gc.freeze``), and a collection that lands in one batch is left to
    the median.
    """
    per_round = 0.0
    for step in steps.values():
        start = time.perf_counter()
        sync(step())
        per_round += time.perf_counter() - start
    affordable = int(max_pair_s / (repeats * max(per_round, 1e-9)))
    # (One call of each batch is the untimed one.)
    number = max(1, min(calls, affordable - 1))
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for round_index in range(repeats):
        for name, step in round_order(order, round_index):
            sync(step())
            start = time.perf_counter()
            for _ in range(number):
                result = None
                result = step()
            sync(result)
            times[name].append((time.perf_counter() - start) / number)
            del result
    return {
        name: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "iqr_s": _iqr(values),
            "repeats": len(values),
            "calls": number,
        }
        for name, values in times.items()
    }

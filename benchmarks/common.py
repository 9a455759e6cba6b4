"""The backend-independent harness: cases, timing, memory probes, machine description.

Timing follows the usual rules for honest micro-benchmarks (scipy's
``benchmarks/benchmarks/common.py``, asv): every step is warmed up (compiled) before the
clock runs, the backend's ``sync`` waits for the result before the clock is read, each
method is timed over several repeats and the median is kept, and the methods of one case
are timed round-robin (one repeat of each in turn) so that load from other processes on a
shared machine hits lsr and its baselines alike and cancels in their ratio.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

MODES = ("forward", "forward+backward")


@dataclasses.dataclass(frozen=True)
class Case:
    """One input configuration: float32 logits of ``shape``, integer labels.

    ``kind`` is ``"labels"`` for (N, K) logits with class ids of shape (N,), or
    ``"segmentation"`` for (N, C, H, W) logits (class axis 1) with labels of shape
    (N, H, W) of which about 10% equal ``ignore_index``.
    """

    kind: str
    shape: tuple[int, ...]
    smoothing: float = 0.1
    ignore_index: int | None = None

    @property
    def axis(self) -> int:
        return 1 if self.kind == "segmentation" else len(self.shape) - 1

    @property
    def num_classes(self) -> int:
        return self.shape[self.axis]

    @property
    def name(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        suffix = f", ignore_index={self.ignore_index}" if self.ignore_index is not None else ""
        return f"{self.kind} {dims}{suffix}"


def cases(quick: bool) -> list[Case]:
    """The benchmark cases; ``quick`` picks small sizes, for a run of a few minutes."""
    if quick:
        return [
            Case("labels", (1024, 1000)),
            Case("labels", (256, 32000)),
            Case("segmentation", (2, 19, 128, 128), ignore_index=255),
        ]
    return [
        Case("labels", (4096, 1000)),
        Case("labels", (2048, 32000)),
        Case("segmentation", (8, 19, 256, 256), ignore_index=255),
    ]


@dataclasses.dataclass(frozen=True)
class Loss:
    """One loss to benchmark: ``fn(logits, labels)`` returns the mean loss (a scalar).

    ``role`` and ``compare_to`` are as in ``Method``; ``variant`` names the execution mode
    the backend compiles ``fn`` with (e.g. ``"eager"``, ``"jit"``, ``"xla"``).
    """

    name: str
    role: str
    fn: Callable[[Any, Any], Any]
    variant: str
    compare_to: str | None = None


@dataclasses.dataclass
class Method:
    """One loss implementation, prepared for one case and mode.

    Attributes:
        name: what is measured, e.g. ``"F.cross_entropy (eager)"``.
        role: ``"lsr"``; ``"baseline"`` (the framework's own label-smoothed loss); or
            ``"bound"`` (an unsmoothed integer-label loss: a lower bound, not a rival).
        step: runs the loss (and its gradient in "forward+backward" mode) on the case's
            inputs and returns what ``sync`` must wait for.
        peak_bytes: returns the peak memory the step allocates beyond its inputs
            (results included), or None when not measured.
        memory_method: how ``peak_bytes`` measures.
        compare_to: for lsr methods, the baseline in the same execution mode.
    """

    name: str
    role: str
    step: Callable[[], Any]
    peak_bytes: Callable[[], int | None] | None = None
    memory_method: str = ""
    compare_to: str | None = None


def time_methods(
    methods: list[Method],
    sync: Callable[[Any], None],
    *,
    repeats: int,
    min_repeat_s: float,
    max_total_s: float,
) -> dict[str, dict[str, Any]]:
    """Median seconds per call of each method, timed round-robin after a warm-up.

    Each method first runs twice untimed (the first call compiles). One repeat calls
    the step ``number`` times in a row, with ``number`` chosen so that a repeat lasts
    about ``min_repeat_s``; fewer repeats (at least 3) are made when ``repeats`` of them
    would exceed ``max_total_s`` for this group of methods.

    Besides wall-clock time, the process's CPU time (all threads) per call is recorded:
    on a machine shared with other work, wall-clock time also counts the waits for a
    CPU, while CPU time counts only the work done (spinning thread pools included).
    """
    numbers = {}
    per_round = 0.0
    for method in methods:
        for _ in range(2):
            sync(method.step())
        start = time.perf_counter()
        sync(method.step())
        one_call = max(time.perf_counter() - start, 1e-7)
        numbers[method.name] = max(1, int(min_repeat_s / one_call))
        per_round += numbers[method.name] * one_call
    rounds = max(3, min(repeats, int(max_total_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    cpu_times: dict[str, list[float]] = {m.name: [] for m in methods}
    for _ in range(rounds):
        for method in methods:
            number = numbers[method.name]
            gc.collect()
            cpu_start = time.process_time()
            start = time.perf_counter()
            for _ in range(number):
                result = method.step()
            sync(result)
            times[method.name].append((time.perf_counter() - start) / number)
            cpu_times[method.name].append((time.process_time() - cpu_start) / number)
            del result
    return {
        name: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "cpu_median_s": statistics.median(cpu_times[name]),
            "repeats": len(values),
            "number": numbers[name],
            "times_s": values,
            "cpu_times_s": cpu_times[name],
        }
        for name, values in times.items()
    }


# --- Machine description --------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    memory_bytes = None
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "memory_bytes": memory_bytes,
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }

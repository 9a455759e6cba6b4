"""Run the benchmarks; write their JSON and ``RESULTS.md`` into ``--out``.

Usage::

    python -m benchmarks.run [--size smoke|quick|full] [--backend torch|jax|tensorflow|all]
                             [--loss softmax|binary|all] [--out DIR]
                             [--compile/--no-compile] [--no-memory]
                             [--allocator default|glibc-raised|both] [--jobs N]

``--loss`` picks the losses: ``softmax`` (lsr's ``smooth_ce`` on integer labels, and the
fused linear + loss), ``binary`` (lsr's ``smooth_bce`` on multi-label 0/1 targets,
against each framework's sigmoid cross-entropy on targets smoothed by hand), or ``all``
(the default). For every backend, one process times every case and mode ("forward": the
loss; "forward+backward": the loss and its gradient with respect to the logits) of lsr
and of the framework's own losses, round-robin in the same process; then, for the
forward+backward mode, a fresh process per case and loss measures the peak resident set
above the inputs (``benchmarks.common.measure_rss_peaks``); then a fresh process per size
measures the fused linear + loss against its rivals (the plain path, and PyTorch's
own ``F.linear_cross_entropy``) as N grows; then one process measures the per-call
overhead of every public loss entry point of lsr's adapter beside the framework's own
equivalent on a tiny input (``benchmarks.common.OVERHEAD_CASES``: 8 x 4 logits), where
Python and dispatch are the whole cost of a call. The machine's memory
bandwidth is measured first, and every time is also reported as a multiple of the
bandwidth bound (reading the logits, and a multi-label case's targets, once, and writing
the gradient once). The run never asserts on timings; it reports them. A run of every
backend writes ``<out>/<size>.json``, a run of one backend ``<out>/<size>-<backend>.json``,
a run of one loss ``<out>/<size>[-<backend>]-<loss>.json``; ``RESULTS.md`` shows every
JSON file in ``<out>``.

``--allocator`` picks the C allocator settings of the timing and memory processes:
``default``, or ``glibc-raised`` (glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised so that large freed blocks are reused instead of being
unmapped and faulted in again), or ``both``: the default run, then every case again in
processes with the raised thresholds (eager modes only, without ``torch.compile``), its
methods named with the suffix ``" [glibc thresholds raised]"`` and compared only with
each other.

``--jobs N`` (smoke runs only, as ``nox -s bench_smoke`` does) runs N backends side by
side: each backend's processes then share the CPUs with another's, so the timings are
not comparable, which a smoke run does not need; any other run refuses it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gc
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.common import (
    LOSSES,
    MODES,
    OVERHEAD_INPUT_NAMES,
    OVERHEAD_SETTINGS,
    SIZES,
    Case,
    LinearCase,
    OverheadPair,
    cases,
    code_revision,
    linear_cases,
    linear_floor_bytes,
    linear_methods,
    machine_info,
    measure_bandwidth,
    measure_rss_peaks,
    overhead_agreement,
    time_calls,
    time_methods,
)
from lsr import _compat

# The registry's backends that have a benchmark module here (``benchmarks/<name>_backend.py``:
# the frameworks with an adapter and a native loss to compare with).
BACKENDS = tuple(
    name for name in _compat.BACKENDS if (Path(__file__).parent / f"{name}_backend.py").is_file()
)

# Environments of the measuring processes. glibc reads these at start-up: above the mmap
# threshold every allocation is a fresh mapping (unmapped when freed, page-faulted on
# first write); below the trim threshold freed memory at the top of the heap is kept.
# 4 GiB is above every allocation of the benchmarked cases.
ALLOCATORS = {
    "default": {},
    "glibc-raised": {
        "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 32),
    },
}
ALLOCATOR_SUFFIX = {"default": "", "glibc-raised": " [glibc thresholds raised]"}

# The parts of a run (``--parts``), all of them by default.
PARTS = ("timing", "memory", "linear", "overhead")
DEFAULT_PARTS = ",".join(PARTS)

SETTINGS = {
    # repeats: most timed rounds; min_repeat_s: a repeat loops the step for at least this
    # long; max_total_s: fewer rounds (at least 3) when a case's methods would take longer.
    "smoke": {"repeats": 3, "min_repeat_s": 0.0, "max_total_s": 0.5},
    "quick": {"repeats": 7, "min_repeat_s": 0.02, "max_total_s": 3.0},
    "full": {"repeats": 9, "min_repeat_s": 0.1, "max_total_s": 12.0},
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--quick", action="store_true", help="the same as --size quick")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument(
        "--loss",
        choices=(*LOSSES, "all"),
        default="all",
        help="softmax (smooth_ce, and the linear + loss part), binary (smooth_bce on "
        "multi-label targets) or all (default)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile (default: in the full run only)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure peak resident memory in a fresh process per case (default: on)",
    )
    parser.add_argument(
        "--allocator",
        choices=(*ALLOCATORS, "both"),
        default="default",
        help="C allocator settings of the measuring processes (default: the system's)",
    )
    parser.add_argument(
        "--parts",
        default=DEFAULT_PARTS,
        help="comma-separated parts to run: timing (and agreement), memory (needs timing), "
        "linear, overhead (per call, tiny inputs; default: all)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="backends run side by side (smoke runs only: backends that share the CPUs "
        "would time each other's load; default: 1)",
    )
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "quick"
    if args.jobs < 1 or (args.jobs > 1 and args.size != "smoke"):
        parser.error(
            "--jobs must be 1, or more for a smoke run only (backends run side by side "
            f"share the CPUs, and their timings would not be comparable). Received: "
            f"jobs={args.jobs}, size={args.size!r}"
        )
    return args


# --- Children: each runs in a fresh process ------------------------------------------


def _losses(loss: str) -> tuple[str, ...]:
    return LOSSES if loss == "all" else (loss,)


def _timing_child(
    name: str, size: str, losses: tuple[str, ...], compiled: bool, allocator: str
) -> dict[str, Any]:
    """Every case and mode of one backend: timings, exact allocator peaks, agreement.

    With a non-default ``allocator`` (this process's environment), the method names
    carry its suffix, and agreement (the same numbers) is not checked again.
    """
    module = importlib.import_module(f"benchmarks.{name}_backend")
    suffix = ALLOCATOR_SUFFIX[allocator]
    result: dict[str, Any] = {"versions": module.versions(), "agreement": {}, "measurements": []}
    for case in cases(size, losses):
        if case.dtype not in module.DTYPES:
            continue
        key = f"{case.name} {case.dtype}"
        try:
            if allocator == "default":
                result["agreement"][key] = module.check_agreement(case)
        except Exception as error:  # A framework that cannot run a case says so.
            result["agreement"][key] = {"error": f"{type(error).__name__}: {error}"}
        inputs = module.make_inputs(case)
        for mode in MODES:
            start = time.perf_counter()
            methods = module.methods(case, mode, compiled=compiled, inputs=inputs)
            runnable, failed = [], {}
            for method in methods:
                try:
                    module.sync(method.step())
                    runnable.append(method)
                except Exception as error:
                    failed[method.loss.name] = f"{type(error).__name__}: {str(error)[:300]}"
            timings = time_methods(runnable, module.sync, **SETTINGS[size])
            for method in methods:
                row = {
                    "backend": name,
                    "case": case.to_json(),
                    "case_name": case.name,
                    "dtype": case.dtype,
                    "mode": mode,
                    "method": method.loss.name + suffix,
                    "base_method": method.loss.name,
                    "allocator": allocator,
                    "role": method.loss.role,
                    "variant": method.loss.variant,
                    "compare_to": [rival + suffix for rival in method.loss.compare_to],
                }
                if method.loss.name in failed:
                    row["error"] = failed[method.loss.name]
                else:
                    row.update(timings[method.loss.name])
                    if method.exact_peak_bytes is not None:
                        row["exact_peak_bytes"] = method.exact_peak_bytes()
                        row["exact_memory_method"] = module.EXACT_MEMORY_METHOD
                result["measurements"].append(row)
            print(
                f"  {name:10s} {case.name:42s} {case.dtype:8s} {mode:16s} "
                f"{len(methods)} methods in {time.perf_counter() - start:5.1f} s",
                flush=True,
            )
            del methods, runnable
            gc.collect()
    return result


def _tiny(case: Case) -> Case:
    shape = tuple(min(d, 4) if i != case.axis else min(d, 16) for i, d in enumerate(case.shape))
    return Case(case.kind, shape, case.dtype, case.smoothing, case.ignore_index, case.ignored)


def _memory_child(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The peak resident set of one loss on one case, in this fresh process."""
    module = importlib.import_module(f"benchmarks.{name}_backend")
    case = Case.from_json(spec["case"])
    # Start the framework's runtime (thread pools, kernels) on a tiny input first, so
    # that the measured call pays for the case only.
    tiny = _tiny(case)
    found = {loss.name: loss for loss in module.losses(tiny, compiled=False)}
    tiny_step = module.step(found[spec["method"]], spec["mode"], module.make_inputs(tiny))
    module.sync(tiny_step())
    del tiny_step
    found = {loss.name: loss for loss in module.losses(case, compiled=False)}
    loss = found[spec["method"]]
    inputs = module.make_inputs(case)
    # JAX makes its random inputs asynchronously: their temporaries must be gone before
    # the baseline is read.
    module.sync(inputs)
    step = module.step(loss, spec["mode"], inputs)
    return measure_rss_peaks(step, module.sync)


def _linear_child(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Peak resident set and time of one method of the linear + loss part (lsr's fused
    loss or a rival: ``common.LINEAR_METHODS``)."""
    module = importlib.import_module(f"benchmarks.{name}_backend")
    case = LinearCase(**spec["case"])
    tiny = LinearCase(8, case.width, 64, 4)
    _, tiny_step = module.linear_step(tiny, spec["method_key"])
    module.sync(tiny_step())
    method, step = module.linear_step(case, spec["method_key"])
    module.sync(step.args if hasattr(step, "args") else ())
    result = {"method": method, **measure_rss_peaks(step, module.sync)}
    exact_peak = getattr(module, "exact_peak_bytes", None)
    if exact_peak is not None:
        # What the allocator itself held: the resident set also counts memory that malloc
        # keeps after freeing it, which varies with fragmentation from run to run.
        result["allocator_peak_bytes"] = exact_peak(step)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        module.sync(step())
        times.append(time.perf_counter() - start)
    result["median_s"] = statistics.median(times)
    return result


def _overhead_child(name: str, size: str, losses: tuple[str, ...]) -> dict[str, Any]:
    """Time per call of every public entry point of one backend's adapter beside the
    framework's own equivalent, on a tiny input, in each mode; each pair's numbers are
    checked to agree first (a mismatch is the row's error)."""
    module = importlib.import_module(f"benchmarks.{name}_backend")
    rows = []
    pairs = module.overhead_pairs()
    # The frameworks' objects, made once, need no collector passes during the batches.
    gc.collect()
    gc.freeze()
    try:
        rows = [
            row
            for pair in pairs
            if pair.loss in losses
            for row in _overhead_rows(module, pair, size)
        ]
    finally:
        gc.unfreeze()
    print(f"  {name:10s} per-call overhead: {len(rows)} rows", flush=True)
    return {"versions": module.versions(), "overhead": rows}


def _overhead_rows(module: Any, pair: OverheadPair, size: str) -> list[dict[str, Any]]:
    """The rows of one pair, one per mode."""
    rows = []
    for mode in MODES:
        row: dict[str, Any] = {
            "entry": pair.entry,
            "rival": pair.rival,
            "variant": pair.variant,
            "mode": mode,
            "inputs": OVERHEAD_INPUT_NAMES[pair.inputs],
            "smoothing": pair.smoothing,
        }
        try:
            steps, first, outputs = {}, {}, {}
            for role, fn in (("lsr", pair.ours), ("rival", pair.theirs)):
                steps[role] = module.overhead_step(
                    fn, pair.args, pair.differentiable, mode, pair.variant
                )
                start = time.perf_counter()
                outputs[role] = steps[role]()
                module.sync(outputs[role])
                first[role] = time.perf_counter() - start
            row["agreement"] = overhead_agreement(outputs["lsr"], outputs["rival"], module.to_numpy)
            del outputs
            timings = time_calls(steps, module.sync, **OVERHEAD_SETTINGS[size])
        except Exception as error:  # Reported in the table; the run then fails.
            row["error"] = f"{type(error).__name__}: {str(error)[:500]}"
        else:
            for role in steps:
                row[f"{role}_timing"] = {"first_call_s": first[role], **timings[role]}
            row["lsr_us"] = timings["lsr"]["median_s"] * 1e6
            row["rival_us"] = timings["rival"]["median_s"] * 1e6
            row["ratio"] = row["lsr_us"] / row["rival_us"]
        rows.append(row)
    return rows


def _child(args: argparse.Namespace) -> int:
    spec = json.loads(args.child_spec) if args.child_spec else {}
    if args.child == "timing":
        result = _timing_child(
            args.backend, args.size, _losses(args.loss), bool(args.compile), args.allocator
        )
    elif args.child == "memory":
        result = _memory_child(args.backend, spec)
    elif args.child == "overhead":
        result = _overhead_child(args.backend, args.size, _losses(args.loss))
    else:
        result = _linear_child(args.backend, spec)
    args.child_output.write_text(json.dumps(result))
    return 0


def _is_chatter(line: str) -> bool:
    """Informational lines that frameworks print on stderr at every start or profile."""
    return (
        line.startswith("USDT:")  # torch.profiler's tracer, at every start and stop
        or re.match(r"[IWE]\d{4} ", line) is not None  # absl log lines (TF, XLA)
        or line.startswith("WARNING: All log messages before absl::InitializeLog()")
    )


def _run_child(
    name: str, kind: str, args: argparse.Namespace, allocator: str = "default", **spec: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "child.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--backend",
            name,
            "--size",
            args.size,
            "--loss",
            args.loss,
            "--child",
            kind,
            "--child-output",
            str(output),
            "--compile" if args.compile and allocator == "default" else "--no-compile",
            "--allocator",
            allocator,
        ]
        if spec:
            command += ["--child-spec", json.dumps(spec)]
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            **ALLOCATORS[allocator],
        }
        start = time.perf_counter()
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as child:
            for line in child.stderr:
                if not _is_chatter(line):
                    sys.stderr.write(line)
        elapsed = time.perf_counter() - start
        if child.returncode != 0 or not output.exists():
            return {"error": f"exit status {child.returncode}", "elapsed_s": elapsed}
        result = json.loads(output.read_text())
        result["elapsed_s"] = elapsed
        return result


# The binary loss's peak memory is measured on logits of at least this size: below it the
# few MiB that a framework's resident set varies by from process to process would hide
# an N x K buffer (and each fresh process costs seconds, TensorFlow's most).
BINARY_MEMORY_MIN_BYTES = 4 << 20


def _measures_memory(size: str, row: dict[str, Any]) -> bool:
    """Which rows get a fresh process for their peak memory: forward+backward, not
    torch.compile (minutes of compiling per process); for the binary loss, lsr and the
    native losses on logits of ``BINARY_MEMORY_MIN_BYTES`` or more (the bound is for
    time); in a smoke run, the lsr and native losses of one case per loss only, in one
    mode (TensorFlow's eager; a fresh TensorFlow process costs about ten seconds)."""
    if row["mode"] != "forward+backward" or "error" in row or row["variant"] == "compile":
        return False
    case = Case.from_json(row["case"])  # (read back from JSON: its shape is a list)
    if size == "smoke":
        # The softmax case with 1000 classes, the multi-label case.
        measured = (cases(size, ("softmax",))[0], cases(size, ("binary",))[0])
        one_mode = row["variant"] in ("eager", "jit")
        return case in measured and row["role"] in ("lsr", "native") and one_mode
    if case.loss == "binary":
        return row["role"] in ("lsr", "native") and case.logits_bytes >= BINARY_MEMORY_MIN_BYTES
    return True


def _run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"{name}:", flush=True)
    start = time.perf_counter()
    parts = set(args.parts.split(","))
    allocators = list(ALLOCATORS) if args.allocator == "both" else [args.allocator]
    if "timing" in parts:
        result = _run_child(name, "timing", args, allocator=allocators[0])
        if "error" in result:
            return result
        for allocator in allocators[1:]:
            other = _run_child(name, "timing", args, allocator=allocator)
            if "error" in other:
                return other
            result["measurements"] += other["measurements"]
        result["load_average_after_timing"] = list(os.getloadavg())
    else:
        result = {"versions": {}, "agreement": {}, "measurements": []}
        if "overhead" not in parts:
            # Without the overhead child (which reports them), the versions are read here.
            module = importlib.import_module(f"benchmarks.{name}_backend")
            result["versions"] = module.versions()
    if args.memory and "memory" in parts:
        for row in result["measurements"]:
            if not _measures_memory(args.size, row):
                continue
            measured = _run_child(
                name,
                "memory",
                args,
                allocator=row.get("allocator", "default"),
                case=row["case"],
                method=row.get("base_method", row["method"]),
                mode=row["mode"],
            )
            row.update({k: v for k, v in measured.items() if k != "elapsed_s"})
        print(f"  {name:10s} peak resident memory measured", flush=True)
    result["linear"] = []
    # The fused linear + loss is a softmax loss (linear_smooth_ce).
    linear = "linear" in parts and "softmax" in _losses(args.loss)
    for case in linear_cases(args.size) if linear else []:
        for key in linear_methods(name, case):
            measured = _run_child(name, "linear", args, case=case.to_json(), method_key=key)
            result["linear"].append(
                {
                    "case": case.to_json(),
                    "method_key": key,
                    "floor_bytes": linear_floor_bytes(case),
                    **measured,
                }
            )
        print(f"  {name:10s} linear + loss, {case.name}", flush=True)
    if "overhead" in parts:
        measured = _run_child(name, "overhead", args)
        if "error" in measured:
            result["overhead_error"] = measured["error"]
        result["overhead"] = measured.get("overhead", [])
        result["versions"] = result["versions"] or measured.get("versions", {})
    result["elapsed_s"] = time.perf_counter() - start
    result["load_average_at_end"] = list(os.getloadavg())
    return result


def failures(results: dict[str, Any]) -> list[str]:
    """What fails a run: a backend that could not run, lsr failing on any case, and any
    pair of the overhead part that failed or whose numbers differ."""
    failed = [name for name, result in results["backends"].items() if "error" in result]
    # A rival that cannot run a case (a dtype its framework lacks) is reported in the
    # tables; lsr failing anywhere fails the run.
    failed += [
        f"{row['backend']}: {row['method']} on {row['case_name']} {row['dtype']} {row['mode']}"
        for result in results["backends"].values()
        for row in result.get("measurements", [])
        if row["role"] == "lsr" and "error" in row
    ]
    failed += [
        f"{name}: {row.get('method', 'linear')} {row['case']}"
        for name, result in results["backends"].items()
        for row in result.get("linear", [])
        if "error" in row and row["method_key"] == "lsr"
    ]
    # A pair whose numbers differ, or that cannot run, is a bug of the harness or of lsr.
    failed += [
        f"{name}: overhead {row['entry']} / {row['rival']} ({row['variant']}, {row['mode']})"
        for name, result in results["backends"].items()
        for row in result.get("overhead", [])
        if "error" in row
    ]
    failed += [
        f"{name}: overhead ({result['overhead_error']})"
        for name, result in results["backends"].items()
        if "overhead_error" in result
    ]
    return failed


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.compile is None:
        args.compile = args.size == "full"
    if args.child is not None:
        return _child(args)
    names = BACKENDS if args.backend == "all" else (args.backend,)
    started = datetime.datetime.now(datetime.timezone.utc)
    bandwidth = measure_bandwidth(1 << 24 if args.size == "smoke" else 1 << 29)
    results: dict[str, Any] = {
        "size": args.size,
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_revision(),
        "bandwidth": bandwidth,
        "settings": {
            **SETTINGS[args.size],
            "torch_compile": args.compile,
            "memory": args.memory,
            "parts": args.parts,
            "loss": args.loss,
            "allocator": args.allocator,
            "allocator_environments": ALLOCATORS,
            "jobs": args.jobs,
        },
        "backends": {},
    }
    print(
        f"memory bandwidth: {bandwidth['copy_read_write_bytes_per_s'] / 1e9:.1f} GB/s copy "
        f"(read + write), {bandwidth['read_bytes_per_s'] / 1e9:.1f} GB/s read",
        flush=True,
    )
    # (Side by side, --jobs > 1, in smoke runs only: each backend's parts run in child
    # processes, which the threads wait for.)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = {name: pool.submit(_run_backend, name, args) for name in names}
        for name, run in runs.items():
            results["backends"][name] = run.result()
    results["elapsed_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    report.add_ratios(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.size if args.backend == "all" else f"{args.size}-{args.backend}"
    if args.loss != "all":
        stem += f"-{args.loss}"
    if args.parts != DEFAULT_PARTS:
        stem += "-" + args.parts.replace(",", "-")
    if args.allocator != "default":
        stem += f"-allocator-{args.allocator}"
    json_path = args.out / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    markdown_path = args.out / "RESULTS.md"
    markdown_path.write_text(report.markdown(args.out))
    print(f"wrote {json_path} and {markdown_path} in {results['elapsed_s']:.0f} s")
    failed = failures(results)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

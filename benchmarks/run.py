"""Run the benchmarks and write their JSON and ``RESULTS.md`` into ``--out``.

Usage::

    python -m benchmarks.run [--quick] [--backend jax|torch|tensorflow|all] [--out DIR]

A run of every backend writes ``<out>/full.json`` (or ``quick.json``), a run of one
backend ``<out>/full-<backend>.json``; ``RESULTS.md`` shows every JSON file in ``<out>``.

Each backend runs in its own subprocess, one after the other, so that no framework's
thread pools, allocator or import side effects touch another's numbers. Inside it, for
every case and mode ("forward": the loss value; "forward+backward": the loss and its
gradient with respect to the logits), lsr and the framework's own losses are warmed up,
timed round-robin (median of several repeats), and their peak memory is measured.
Ratios lsr/baseline below 1 mean lsr is faster or leaner. The run never asserts on
timings; it reports them.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.common import MODES, cases, machine_info, time_methods

BACKENDS = ("torch", "jax", "tensorflow")

SETTINGS = {
    # repeats: most timed rounds; min_repeat_s: a repeat loops the step for at least this
    # long; max_total_s: fewer rounds (at least 3) when a case's methods would take longer.
    "quick": {"repeats": 7, "min_repeat_s": 0.02, "max_total_s": 2.0},
    "full": {"repeats": 9, "min_repeat_s": 0.1, "max_total_s": 15.0},
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes)")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile (default: in the full run only)",
    )
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_backend(
    name: str, *, quick: bool, compiled: bool, memory_only: bool = False
) -> dict[str, Any]:
    """Every case and mode of one backend, in this process.

    A backend whose memory probe needs another process environment names it in
    ``MEMORY_ENV``; the parent then runs it again with that environment and
    ``memory_only``, which skips the timings.
    """
    module = importlib.import_module(f"benchmarks.{name}_backend")
    settings = SETTINGS["quick" if quick else "full"]
    result: dict[str, Any] = {
        "versions": module.versions(),
        "memory_env": getattr(module, "MEMORY_ENV", None),
        "agreement": {},
        "measurements": [],
    }
    for case in cases(quick):
        if case.kind not in module.KINDS:
            continue
        if not memory_only:
            result["agreement"][case.name] = module.check_agreement(case)
        for mode in MODES:
            methods = module.methods(case, mode, compiled=compiled)
            if not methods:
                continue
            start = time.perf_counter()
            if memory_only:
                for method in methods:
                    for _ in range(2):  # Compile first: only the steady state counts.
                        module.sync(method.step())
                timings = {method.name: {} for method in methods}
            else:
                timings = time_methods(methods, module.sync, **settings)
            for method in methods:
                peak = method.peak_bytes() if method.peak_bytes is not None else None
                result["measurements"].append(
                    {
                        "backend": name,
                        "case": case.name,
                        "kind": case.kind,
                        "shape": list(case.shape),
                        "smoothing": case.smoothing,
                        "ignore_index": case.ignore_index,
                        "dtype": "float32",
                        "mode": mode,
                        "method": method.name,
                        "role": method.role,
                        "compare_to": method.compare_to,
                        **timings[method.name],
                        "peak_bytes": peak,
                        "memory_method": method.memory_method,
                    }
                )
            print(
                f"  {name:10s} {case.name:40s} {mode:17s} "
                f"{len(methods)} methods in {time.perf_counter() - start:5.1f} s"
                + (" (memory)" if memory_only else ""),
                flush=True,
            )
            del methods
            gc.collect()
    return result


def _child(args: argparse.Namespace) -> int:
    result = run_backend(
        args.backend, quick=args.quick, compiled=bool(args.compile), memory_only=args.memory_only
    )
    args.child_output.write_text(json.dumps(result))
    return 0


def _is_chatter(line: str) -> bool:
    """Informational lines that frameworks print on stderr at every start or profile."""
    return (
        line.startswith("USDT:")  # torch.profiler's tracer, at every start and stop
        or re.match(r"I\d{4} ", line) is not None  # absl INFO lines (TensorFlow, XLA)
        or line.startswith("WARNING: All log messages before absl::InitializeLog()")
    )


def _run_child(
    name: str, args: argparse.Namespace, compiled: bool, memory_env: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / f"{name}.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--backend",
            name,
            "--child-output",
            str(output),
            "--compile" if compiled else "--no-compile",
        ]
        if args.quick:
            command.append("--quick")
        if memory_env is not None:
            command.append("--memory-only")
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            **(memory_env or {}),
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
        result["load_average_at_end"] = list(os.getloadavg())
        return result


def _run_backend_children(name: str, args: argparse.Namespace, compiled: bool) -> dict[str, Any]:
    """Time in one process; measure memory in a second one where the backend needs it."""
    result = _run_child(name, args, compiled)
    memory_env = result.get("memory_env")
    if "error" in result or not memory_env:
        return result
    memory = _run_child(name, args, compiled, memory_env)
    if "error" in memory:
        result["memory_error"] = memory["error"]
        return result
    peaks = {(row["case"], row["mode"], row["method"]): row for row in memory["measurements"]}
    for row in result["measurements"]:
        measured = peaks.get((row["case"], row["mode"], row["method"]))
        if measured is not None:
            row["peak_bytes"] = measured["peak_bytes"]
            row["memory_method"] = measured["memory_method"]
    result["elapsed_s"] += memory["elapsed_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child_output is not None:
        return _child(args)
    run_kind = "quick" if args.quick else "full"
    compiled = (not args.quick) if args.compile is None else args.compile
    names = BACKENDS if args.backend == "all" else (args.backend,)
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, Any] = {
        "run": run_kind,
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {**SETTINGS[run_kind], "torch_compile": compiled, "dtype": "float32"},
        "cases": [case.name for case in cases(args.quick)],
        "backends": {},
    }
    for name in names:
        print(f"{name}:", flush=True)
        results["backends"][name] = _run_backend_children(name, args, compiled)
    results["elapsed_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    report.add_ratios(results)
    args.out.mkdir(parents=True, exist_ok=True)
    # A single backend's run gets its own file, so it never replaces a whole run's.
    stem = run_kind if args.backend == "all" else f"{run_kind}-{args.backend}"
    json_path = args.out / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    markdown_path = args.out / "RESULTS.md"
    markdown_path.write_text(report.markdown(args.out))
    print(f"wrote {json_path} and {markdown_path} in {results['elapsed_s']:.0f} s")
    failed = [name for name, result in results["backends"].items() if "error" in result]
    if failed:
        print(f"failed backends: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

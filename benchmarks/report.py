"""Ratios, bandwidth multiples and the markdown tables of ``RESULTS.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import BINARY_PRIOR, Case, bound_seconds


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def add_ratios(results: dict[str, Any]) -> None:
    """Give every row its multiple of the bandwidth bound, and every lsr row its ratios
    (lsr ÷ rival) against the rivals it names and the eps=0 bound of the same case."""
    for backend in results["backends"].values():
        rows = backend.get("measurements", [])
        by_key = {(r["case_name"], r["dtype"], r["mode"], r["method"]): r for r in rows}
        for row in rows:
            if "median_s" not in row:
                continue
            bound = bound_seconds(Case.from_json(row["case"]), row["mode"], results["bandwidth"])
            row["bound_s"] = bound
            row["x_bound"] = row["median_s"] / bound
        for row in rows:
            if row["role"] != "lsr" or "median_s" not in row:
                continue
            row["versus"] = {}
            rivals = list(row["compare_to"]) + [
                r["method"]
                for r in rows
                if r["role"] == "bound"
                and r["variant"] == row["variant"]
                and r.get("allocator", "default") == row.get("allocator", "default")
                and (r["case_name"], r["dtype"], r["mode"])
                == (row["case_name"], row["dtype"], row["mode"])
            ]
            for rival_name in rivals:
                rival = by_key.get((row["case_name"], row["dtype"], row["mode"], rival_name))
                if rival is None or "median_s" not in rival:
                    continue
                row["versus"][rival_name] = {
                    "time_ratio": _ratio(row["median_s"], rival["median_s"]),
                    "time_ratio_min": _ratio(row["min_s"], rival["min_s"]),
                    "rss_ratio": _ratio(row.get("rss_steady_bytes"), rival.get("rss_steady_bytes")),
                    "exact_memory_ratio": _ratio(
                        row.get("exact_peak_bytes"), rival.get("exact_peak_bytes")
                    ),
                }


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3g}"


def _mib(size: int | None) -> str:
    return "" if size is None else f"{size / 2**20:.3g}"


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.3g}"


def _per_logits(row: dict[str, Any]) -> str:
    """The peak resident set in logits-sized buffers: forward+backward needs one (the
    gradient); more is a copy or temporary of the logits' size (N x K)."""
    peak = row.get("rss_steady_bytes")
    if peak is None:
        return ""
    return f"{peak / Case.from_json(row['case']).logits_bytes:.2f}"


def _machine(results: dict[str, Any]) -> str:
    machine = results["machine"]
    memory = machine.get("memory_bytes")
    memory_text = f", {memory / 2**30:.0f} GiB RAM" if memory else ""
    load = machine.get("load_average_at_start")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    vector = machine.get("vector_extension")
    vector_text = f" with {vector}" if vector else ""
    return (
        f"{machine['processor']}{vector_text} ({machine['usable_cpus']} usable of "
        f"{machine['cpu_count']} "
        f"CPUs{memory_text}), {machine['platform']}, Python {machine['python']}, "
        f"transparent huge pages {machine.get('transparent_hugepage')}{load_text}"
    )


def revision_text(results: dict[str, Any]) -> str:
    """The text ", on <commit>" (with whether tracked files had changed) where the run
    recorded its commit (runs before 2026-12-07 did not), else nothing."""
    code = results.get("code") or {}
    if not code.get("revision"):
        return ""
    changed = {
        True: " with uncommitted changes to tracked files",
        False: "",
        None: " (whether tracked files had changed is unknown)",
    }[code.get("uncommitted_changes")]
    return f", on {code['revision']}{changed}"


def _versions(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, backend in results["backends"].items():
        if "error" in backend:
            lines.append(f"- {name}: FAILED ({backend['error']})")
            continue
        versions = ", ".join(f"{k}={v}" for k, v in backend["versions"].items())
        load = backend.get("load_average_at_end")
        load_text = f"; 1-minute load average at its end {load[0]:.2f}" if load else ""
        lines.append(f"- {name}: {versions}; took {backend['elapsed_s']:.0f} s{load_text}")
    return lines


def _versus_table(results: dict[str, Any], mode: str) -> list[str]:
    lines = [
        "| backend | logits | dtype | lsr | rival | lsr ms | rival ms | **lsr ÷ rival** "
        "| (fastest repeats) | lsr × bound | rival × bound | lsr peak MiB | rival peak MiB "
        "| **memory lsr ÷ rival** | peak ÷ logits lsr / rival |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        rows = backend.get("measurements", [])
        by_key = {(r["case_name"], r["dtype"], r["mode"], r["method"]): r for r in rows}
        for row in rows:
            if row["role"] != "lsr" or row["mode"] != mode or "versus" not in row:
                continue
            for rival_name, versus in row["versus"].items():
                rival = by_key[(row["case_name"], row["dtype"], row["mode"], rival_name)]
                pair = (_per_logits(row), _per_logits(rival))
                per_logits = " / ".join(pair) if any(pair) else ""
                lines.append(
                    f"| {name} | {row['case_name']} | {row['dtype']} | {row['method']} "
                    f"| {rival_name} | {_ms(row['median_s'])} | {_ms(rival['median_s'])} "
                    f"| **{_x(versus['time_ratio'])}** | {_x(versus['time_ratio_min'])} "
                    f"| {_x(row.get('x_bound'))} | {_x(rival.get('x_bound'))} "
                    f"| {_mib(row.get('rss_steady_bytes'))} "
                    f"| {_mib(rival.get('rss_steady_bytes'))} "
                    f"| **{_x(versus['rss_ratio'])}** | {per_logits} |"
                )
    return lines


def _all_rows(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | logits | dtype | mode | method | role | first call s | median ms "
        "| IQR ms | repeats x calls | × bound | peak RSS MiB (first call) | peak RSS MiB "
        "| allocator peak MiB |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        for row in backend.get("measurements", []):
            if "error" in row:
                lines.append(
                    f"| {name} | {row['case_name']} | {row['dtype']} | {row['mode']} "
                    f"| {row['method']} | {row['role']} | failed: {row['error'][:120]} "
                    "| | | | | | | |"
                )
                continue
            lines.append(
                f"| {name} | {row['case_name']} | {row['dtype']} | {row['mode']} "
                f"| {row['method']} | {row['role']} | {row['first_call_s']:.3g} "
                f"| {_ms(row['median_s'])} | {_ms(row['iqr_s'])} "
                f"| {row['repeats']} x {row['number']} | {_x(row.get('x_bound'))} "
                f"| {_mib(row.get('rss_first_bytes'))} | {_mib(row.get('rss_steady_bytes'))} "
                f"| {_mib(row.get('exact_peak_bytes'))} |"
            )
    return lines


def _linear(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | N | d | K | method | peak RSS MiB | allocator peak MiB | lsr's floor MiB "
        "| N x K logits MiB | seconds per step |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        for row in backend.get("linear", []):
            case = row["case"]
            logits = case["rows"] * case["classes"] * 4
            if "error" in row:
                lines.append(f"| {name} | {case['rows']} | | | failed: {row['error']} | | | | | |")
                continue
            lines.append(
                f"| {name} | {case['rows']} | {case['width']} | {case['classes']} "
                f"| {row['method']} | {_mib(row.get('rss_steady_bytes'))} "
                f"| {_mib(row.get('allocator_peak_bytes'))} | {_mib(row.get('floor_bytes'))} "
                f"| {_mib(logits)} "
                f"| {row['median_s']:.3g} |"
            )
    return lines


def _us(microseconds: float | None) -> str:
    """Three significant digits, whole microseconds above 100 (never an exponent)."""
    if microseconds is None:
        return ""
    return f"{microseconds:.0f}" if microseconds >= 100 else f"{microseconds:.3g}"


def overhead_rows(results: dict[str, Any]) -> list[str]:
    """The table of the overhead part: one line per backend, entry point, rival,
    execution mode and mode, in microseconds per call (failed pairs say why)."""
    lines = [
        "| backend | execution | lsr | rival | ε | inputs | mode | lsr µs/call "
        "| rival µs/call | **lsr ÷ rival** |",
        "|---|---|---|---|---:|---|---|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        if "overhead_error" in backend:
            lines.append(f"| {name} | | failed: {backend['overhead_error']} | | | | | | | |")
        for row in backend.get("overhead", []):
            start = (
                f"| {name} | {row['variant']} | {row['entry']} | {row['rival']} "
                f"| {row['smoothing']:g} | {row['inputs']} | {row['mode']} "
            )
            if "error" in row:
                lines.append(start + f"| failed: {row['error'][:200]} | | |")
                continue
            lines.append(
                start + f"| {_us(row['lsr_us'])} | {_us(row['rival_us'])} "
                f"| **{_x(row['ratio'])}** |"
            )
    return lines


def _overhead(results: dict[str, Any]) -> list[str]:
    if not any(
        backend.get("overhead") or "overhead_error" in backend
        for backend in results["backends"].values()
    ):
        return []
    return [
        "### Per-call overhead (tiny input)",
        "",
        "Every public loss of each adapter beside the framework's own equivalent on a tiny "
        "input (8 x 4 float32 logits; 8 x 16 hidden states and a 16 x 4 projection for the "
        "fused linear loss), where the arithmetic is nothing and a call costs its Python "
        "and its dispatch: the median time per call over repeats of calls in a row, the "
        "two taking turns; both computed the same loss and gradients first.",
        "",
        *overhead_rows(results),
        "",
    ]


def _agreement(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | case | against | loss abs diff | gradient max abs diff |",
        "|---|---|---|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        for case, diff in backend.get("agreement", {}).items():
            if "error" in diff:
                lines.append(f"| {name} | {case} | | failed: {diff['error'][:120]} | |")
                continue
            lines.append(
                f"| {name} | {case} | {diff['against']} | {diff['loss_abs_diff']:.2g} "
                f"| {diff['grad_max_abs_diff']:.2g} |"
            )
    return lines


def _memory_methods(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, backend in results["backends"].items():
        methods = sorted(
            {r.get("exact_memory_method") for r in backend.get("measurements", [])} - {None}
        )
        if methods:
            lines.append(f"- {name}: {'; '.join(methods)}")
    return lines


def section(results: dict[str, Any]) -> str:
    bandwidth = results["bandwidth"]
    lines = [
        f"## {results['size'].capitalize()} run ({', '.join(results['backends'])})",
        "",
        f"Command: `{results['command'].strip()}`, started {results['started_utc']}, "
        f"took {results['elapsed_s']:.0f} s{revision_text(results)}.",
        "",
        f"Machine: {_machine(results)}.",
        "",
        f"Memory bandwidth, measured at the start ({bandwidth['method']}): "
        f"{bandwidth['copy_read_write_bytes_per_s'] / 1e9:.1f} GB/s copying (bytes read + "
        f"written), {bandwidth['read_bytes_per_s'] / 1e9:.1f} GB/s reading. The bound of a "
        "step is reading the logits (and a multi-label case's dense targets) once "
        "(forward), plus writing their gradient once (forward+backward); × bound is the "
        "median time over that bound.",
        "",
        *_versions(results),
        "",
        f"Settings: {json.dumps(results['settings'])}. Smoothing 0.1, mean reduction "
        f"(multi-label cases: targets smoothed towards {BINARY_PRIOR}, the mean over every "
        "element); times are medians over the repeats, after a first call (compilation) "
        "and a warm-up call.",
        "",
        "### lsr against each rival, forward + backward (ratio < 1: lsr is faster / leaner)",
        "",
        "Peak MiB: the peak resident set of a fresh process during a (second, warm) call, "
        "above the resident set once its inputs existed; the gradient itself counts. "
        "Peak ÷ logits: that peak in logits-sized buffers (the gradient is one; anything "
        "above it is an extra N x K buffer, such as smoothed targets).",
        "",
        *_versus_table(results, "forward+backward"),
        "",
        "### lsr against each rival, forward only",
        "",
        *_versus_table(results, "forward"),
        "",
        "### Linear layer + loss: peak memory as N grows",
        "",
        "Loss and gradients for the hidden states and the projection, float32; peak "
        "resident set above the inputs in a fresh process; the plain path materializes "
        "the N x K logits.",
        "",
        *_linear(results),
        "",
        *_overhead(results),
        "### Every measurement",
        "",
        "Allocator peak: exact bytes the framework's allocator held beyond the inputs "
        "during a call, from:",
        "",
        *_memory_methods(results),
        "",
        *_all_rows(results),
        "",
        "### Agreement of lsr with the framework's loss on the benchmarked inputs",
        "",
        *_agreement(results),
        "",
    ]
    return "\n".join(lines)


def markdown(out: Path) -> str:
    """RESULTS.md: one section per run whose JSON is in ``out`` (full runs first)."""
    parts = [
        "# lsr benchmark results",
        "",
        "Written by `python -m benchmarks.run` (see `benchmarks/run.py`); the raw numbers "
        "are in the JSON files next to this one.",
        "",
    ]
    order = {"full": 0, "quick": 1, "smoke": 2}
    paths = sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem.split("-")[0], 3), p.stem))
    for path in paths:
        data = json.loads(path.read_text())
        if "size" not in data:  # A file of an older harness.
            continue
        parts.append(section(data))
    return "\n".join(parts)

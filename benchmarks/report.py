"""Ratios lsr/baseline and the markdown tables of ``RESULTS.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def add_ratios(results: dict[str, Any]) -> None:
    """Give every lsr measurement its time and memory ratios against its baseline."""
    for backend in results["backends"].values():
        rows = backend.get("measurements", [])
        by_key = {(r["case"], r["mode"], r["method"]): r for r in rows}
        for row in rows:
            if row["role"] != "lsr":
                continue
            baseline = by_key.get((row["case"], row["mode"], row["compare_to"]))
            if baseline is not None:
                row["time_ratio"] = _ratio(row["median_s"], baseline["median_s"])
                row["time_ratio_min"] = _ratio(row["min_s"], baseline["min_s"])
                row["cpu_time_ratio"] = _ratio(
                    row.get("cpu_median_s"), baseline.get("cpu_median_s")
                )
                row["memory_ratio"] = _ratio(row["peak_bytes"], baseline["peak_bytes"])
            bounds = [
                r
                for r in rows
                if r["role"] == "bound" and r["case"] == row["case"] and r["mode"] == row["mode"]
            ]
            if bounds:
                row["bound"] = bounds[0]["method"]
                row["time_ratio_vs_bound"] = _ratio(row["median_s"], bounds[0]["median_s"])
                row["memory_ratio_vs_bound"] = _ratio(row["peak_bytes"], bounds[0]["peak_bytes"])


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3g}"


def _mb(size: int | None) -> str:
    return "" if size is None else f"{size / 2**20:.3g}"


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.3g}"


def _machine(results: dict[str, Any]) -> str:
    machine = results["machine"]
    memory = machine.get("memory_bytes")
    memory_text = f", {memory / 2**30:.0f} GiB RAM" if memory else ""
    load = machine.get("load_average_at_start")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    return (
        f"{machine['processor']} ({machine['usable_cpus']} usable of {machine['cpu_count']} "
        f"CPUs{memory_text}), {machine['platform']}, Python {machine['python']}{load_text}"
    )


def _versions(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, backend in results["backends"].items():
        if "error" in backend:
            lines.append(f"- {name}: FAILED ({backend['error']})")
            continue
        versions = ", ".join(f"{k}={v}" for k, v in backend["versions"].items())
        load = backend.get("load_average_at_end")
        load_text = f" (1-minute load average when it finished: {load[0]:.2f})" if load else ""
        lines.append(f"- {name}: {versions}{load_text}")
    return lines


def _summary(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | case | mode | lsr | baseline | lsr ms | baseline ms | time ratio "
        "| time ratio (min) | CPU-time ratio | lsr MiB | baseline MiB | memory ratio "
        "| time ratio vs eps=0 bound |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        rows = backend.get("measurements", [])
        by_key = {(r["case"], r["mode"], r["method"]): r for r in rows}
        for row in rows:
            if row["role"] != "lsr":
                continue
            baseline = by_key.get((row["case"], row["mode"], row["compare_to"]), {})
            lines.append(
                f"| {name} | {row['case']} | {row['mode']} | {row['method']} "
                f"| {row['compare_to']} | {_ms(row['median_s'])} "
                f"| {_ms(baseline.get('median_s'))} | **{_x(row.get('time_ratio'))}** "
                f"| {_x(row.get('time_ratio_min'))} | {_x(row.get('cpu_time_ratio'))} "
                f"| {_mb(row['peak_bytes'])} | {_mb(baseline.get('peak_bytes'))} "
                f"| **{_x(row.get('memory_ratio'))}** | {_x(row.get('time_ratio_vs_bound'))} |"
            )
    return lines


def _all_rows(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | case | mode | method | role | median ms | min ms | CPU ms "
        "| repeats x calls | peak MiB |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        for row in backend.get("measurements", []):
            lines.append(
                f"| {name} | {row['case']} | {row['mode']} | {row['method']} | {row['role']} "
                f"| {_ms(row['median_s'])} | {_ms(row['min_s'])} | {_ms(row.get('cpu_median_s'))} "
                f"| {row['repeats']} x {row['number']} | {_mb(row['peak_bytes'])} |"
            )
    return lines


def _agreement(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | case | loss abs diff | gradient max abs diff |",
        "|---|---|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        for case, diff in backend.get("agreement", {}).items():
            if diff:
                lines.append(
                    f"| {name} | {case} | {diff['loss_abs_diff']:.2g} "
                    f"| {diff['grad_max_abs_diff']:.2g} |"
                )
    return lines


def _memory_methods(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, backend in results["backends"].items():
        methods = sorted({r["memory_method"] for r in backend.get("measurements", [])} - {""})
        if methods:
            lines.append(f"- {name}: {'; '.join(methods)}")
    return lines


def section(results: dict[str, Any]) -> str:
    lines = [
        f"## {results['run'].capitalize()} run ({', '.join(results['backends'])})",
        "",
        f"Command: `{results['command'].strip()}`, started {results['started_utc']}, "
        f"took {results['elapsed_s']:.0f} s.",
        "",
        f"Machine: {_machine(results)}.",
        "",
        *_versions(results),
        "",
        f"Settings: {json.dumps(results['settings'])}. float32 logits, smoothing 0.1, "
        "mean reduction; times are medians over the repeats.",
        "",
        "### lsr against the framework's own loss (ratio < 1: lsr is faster / leaner)",
        "",
        "ms: median wall-clock time of one call. time ratio: of the medians; time ratio "
        "(min): of the fastest repeats; CPU-time ratio: of the median CPU time (all threads) "
        "per call, which does not count waiting for a CPU taken by other processes.",
        "",
        *_summary(results),
        "",
        "Peak memory: what one step allocates beyond its inputs, results (the loss and "
        "the logits' gradient) included. Measured with:",
        "",
        *_memory_methods(results),
        "",
        "### Every measurement",
        "",
        *_all_rows(results),
        "",
        "### Agreement of lsr with the baseline on the benchmarked inputs",
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
    paths = sorted(out.glob("*.json"), key=lambda p: (not p.stem.startswith("full"), p.stem))
    for path in paths:
        parts.append(section(json.loads(path.read_text())))
    return "\n".join(parts)

"""The README's benchmark table, from a run's JSON file.

Usage::

    python -m benchmarks.summary benchmarks/results/full.json [more.json ...]
    python -m benchmarks.summary --matrix results.json [more.json ...]

Later files replace the measurements they repeat (the same method, case, dtype and
mode) and the linear sweep of the backends they measured; other rows are kept.

Prints the per-call overhead of every adapter entry point on a tiny input (the run's
overhead part), and, for forward + backward, lsr against the framework's own label-smoothed loss in
the same execution mode (and, under jit/XLA, against the closed form compiled by the
framework): median times, their ratio, both as multiples of the measured bandwidth bound,
and the peak resident memory of each. With ``--matrix``: lsr ÷ rival alone, one line per
execution mode and rival and one column per case and dtype, forward + backward and then
the loss alone (the README's matrix).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import overhead_rows, revision_text

# (backend, lsr method, rival method, short label) shown in the README.
ROWS = [
    (
        "torch",
        "lsr.torch.smooth_ce (eager)",
        "F.cross_entropy (eager)",
        "PyTorch eager: F.cross_entropy",
    ),
    (
        "torch",
        "lsr.torch.smooth_ce (eager) [glibc thresholds raised]",
        "F.cross_entropy (eager) [glibc thresholds raised]",
        "PyTorch eager, glibc thresholds raised: F.cross_entropy",
    ),
    (
        "torch",
        "lsr.torch.smooth_ce (torch.compile)",
        "F.cross_entropy (torch.compile)",
        "torch.compile: F.cross_entropy",
    ),
    (
        "jax",
        "lsr.jax.smooth_ce (jit)",
        "optax smooth_labels(one_hot) + softmax_cross_entropy (jit)",
        "jax.jit: optax one-hot",
    ),
    ("jax", "lsr.jax.smooth_ce (jit)", "closed form, jax autodiff (jit)", "jax.jit: closed form"),
    (
        "tensorflow",
        "lsr.tensorflow.smooth_ce (eager)",
        "keras CategoricalCrossentropy(one_hot) (eager)",
        "TF eager: Keras CCE",
    ),
    (
        "tensorflow",
        "lsr.tensorflow.smooth_ce (graph)",
        "keras CategoricalCrossentropy(one_hot) (graph)",
        "tf.function: Keras CCE",
    ),
    (
        "tensorflow",
        "lsr.tensorflow.smooth_ce (xla)",
        "keras CategoricalCrossentropy(one_hot) (xla)",
        "XLA: Keras CCE",
    ),
    (
        "tensorflow",
        "lsr.tensorflow.smooth_ce (xla)",
        "closed form, tf autodiff (xla)",
        "XLA: closed form",
    ),
    # The binary (sigmoid, multi-label) loss, against the framework's own on targets
    # smoothed by hand (and Keras' label_smoothing).
    (
        "torch",
        "lsr.torch.smooth_bce (eager)",
        "F.binary_cross_entropy_with_logits(smoothed targets) (eager)",
        "PyTorch eager: F.binary_cross_entropy_with_logits",
    ),
    (
        "torch",
        "lsr.torch.smooth_bce (torch.compile)",
        "F.binary_cross_entropy_with_logits(smoothed targets) (torch.compile)",
        "torch.compile: F.binary_cross_entropy_with_logits",
    ),
    (
        "jax",
        "lsr.jax.smooth_bce (jit)",
        "optax sigmoid_binary_cross_entropy(smoothed targets) (jit)",
        "jax.jit: optax sigmoid BCE",
    ),
    *(
        (
            "tensorflow",
            f"lsr.tensorflow.smooth_bce ({variant})",
            f"{rival} ({variant})",
            f"{execution}: {label}",
        )
        for variant, execution in (("eager", "TF eager"), ("graph", "tf.function"), ("xla", "XLA"))
        for rival, label in (
            ("keras BinaryCrossentropy(label_smoothing)", "Keras BCE"),
            ("tf.nn.sigmoid_cross_entropy_with_logits(smoothed targets)", "tf.nn sigmoid CE"),
        )
    ),
]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.0f}"


def _pairs(results: dict[str, Any], mode: str) -> Iterator[tuple[str, dict, dict, bool]]:
    """``(label, lsr's row, the rival's row, binary)`` for every line of ``ROWS`` and every
    case and dtype where both were measured in ``mode``."""
    for backend, lsr_name, rival_name, label in ROWS:
        rows = results["backends"].get(backend, {}).get("measurements", [])
        index = {(r["case_name"], r["dtype"], r["mode"], r["method"]): r for r in rows}
        for row in rows:
            if row["method"] != lsr_name or row["mode"] != mode or "median_s" not in row:
                continue
            rival = index.get((row["case_name"], row["dtype"], mode, rival_name))
            if rival is not None and "median_s" in rival:
                yield label, row, rival, "smooth_bce" in lsr_name


def table(results: dict[str, Any], mode: str = "forward+backward") -> str:
    lines = [
        "| execution: rival | logits | dtype | lsr ms | rival ms | lsr ÷ rival "
        "| lsr × bound | rival × bound | peak MiB lsr / rival |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row, rival, _ in _pairs(results, mode):
        memory = ""
        if row.get("rss_steady_bytes") is not None and rival.get("rss_steady_bytes") is not None:
            memory = f"{_mib(row['rss_steady_bytes'])} / {_mib(rival['rss_steady_bytes'])}"
        lines.append(
            f"| {label} | {row['case_name']} | {row['dtype']} "
            f"| {_fmt(row['median_s'] * 1e3)} | {_fmt(rival['median_s'] * 1e3)} "
            f"| **{row['median_s'] / rival['median_s']:.2f}** | {_fmt(row.get('x_bound'), 2)} "
            f"| {_fmt(rival.get('x_bound'), 2)} | {memory} |"
        )
    return "\n".join(lines)


def _short_case(case_name: str, dtype: str) -> str:
    """A column title: the case's shape (segmentation and multi-label cases by name) and
    its dtype, short enough for a table of every case."""
    shape = case_name.split(",")[0]
    kind = " seg" if "class axis" in case_name else (" ml" if "multi-label" in case_name else "")
    short = {"float32": "f32", "bfloat16": "bf16"}.get(dtype, dtype)
    return f"{shape}{kind} {short}"


def matrix(results: dict[str, Any], mode: str = "forward+backward") -> str:
    """lsr's time over its rival's for every row of ``ROWS`` (one line per execution
    mode and rival) and every case and dtype measured (one column each): the softmax
    rows, then the binary rows, each with the cases of their loss. Empty where a pair
    was not measured."""
    tables = []
    pairs = list(_pairs(results, mode))
    for binary in (False, True):
        labels: list[str] = []
        ratios: dict[tuple[str, str], float] = {}
        cases: dict[tuple[str, str], str] = {}
        columns: list[str] = []
        for label, row, rival, is_binary in pairs:
            if is_binary != binary:
                continue
            column = _short_case(row["case_name"], row["dtype"])
            case = f"{row['case_name']} {row['dtype']}"
            if (label, column) in ratios:
                # (Two cases with one title would share a cell: the later would hide the
                # earlier.)
                raise ValueError(
                    f"{cases[label, column]!r} and {case!r} make the same column {column!r} "
                    f"of {label!r}"
                )
            cases[label, column] = case
            if column not in columns:
                columns.append(column)
            if label not in labels:
                labels.append(label)
            ratios[label, column] = row["median_s"] / rival["median_s"]
        if not labels:
            continue
        order = {column: i for i, column in enumerate(columns)}
        columns.sort(key=lambda c: (not c.endswith("f32"), order[c]))
        lines = [
            "| execution: rival | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for label in labels:
            cells = []
            for column in columns:
                value = ratios.get((label, column))
                cells.append("" if value is None else f"{value:.2f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _peak(row: dict[str, Any]) -> str:
    """Peak resident MiB, with the allocator's own peak in parentheses where known."""
    exact = row.get("allocator_peak_bytes")
    return _mib(row.get("rss_steady_bytes")) + ("" if exact is None else f" ({_mib(exact)})")


def linear_method_key(row: dict[str, Any]) -> str:
    """A linear row's method (``common.LINEAR_METHODS``); files written before the rivals
    were added mark lsr's rows ``fused`` and the plain path's not."""
    return row.get("method_key") or ("lsr" if row.get("fused") else "plain")


def linear_table(results: dict[str, Any]) -> str:
    """One line per backend, case and method: peak and time, and lsr's time and peak
    as ratios of each rival's; lsr's floor is what its fused loss cannot go below (the
    gradients and one block of its logits)."""
    lines = [
        "| backend | N (d, K) | method | peak MiB (allocator) | lsr's floor MiB | s "
        "| lsr s ÷ this | lsr allocator peak ÷ this |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, result in results["backends"].items():
        by_case: dict[tuple[int, int, int], dict[str, Any]] = {}
        for row in result.get("linear", []):
            case = row["case"]
            key = (case["rows"], case["width"], case["classes"])
            by_case.setdefault(key, {})[linear_method_key(row)] = row
        for (rows, width, classes), methods in sorted(by_case.items()):
            ours = methods.get("lsr", {})
            for key, row in methods.items():
                peak_ratio = _ratio(
                    ours.get("allocator_peak_bytes"), row.get("allocator_peak_bytes")
                )
                lines.append(
                    f"| {backend} | {rows} ({width}, {classes}) | {row.get('method', key)} "
                    f"| {_peak(row)} | {_mib(row.get('floor_bytes'))} "
                    f"| {_fmt(row.get('median_s'))} "
                    f"| {_ratio(ours.get('median_s'), row.get('median_s'))} "
                    f"| {peak_ratio} |"
                )
    return "\n".join(lines)


def overhead_table(results: dict[str, Any]) -> str:
    """The per-call overhead on a tiny input (``benchmarks.run``'s overhead part), as in
    ``RESULTS.md``."""
    return "\n".join(overhead_rows(results))


def _ratio(ours: Any, theirs: Any) -> str:
    if not ours or not theirs:
        return ""
    return f"{ours / theirs:.2f}"


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["method"], row["case_name"], row["dtype"], row["mode"])


def _merge(paths: list[Path]) -> tuple[dict[str, Any], list[str]]:
    merged: dict[str, Any] | None = None
    sources = []
    for path in paths:
        results = json.loads(path.read_text())
        machine = results["machine"]
        bandwidth = results["bandwidth"]
        sources.append(
            f"`{results['command']}`, started {results['started_utc']}, "
            f"{results['elapsed_s']:.0f} s{revision_text(results)} ({machine['processor']}, "
            f"{machine['usable_cpus']} CPUs; measured bandwidth "
            f"{bandwidth['copy_read_write_bytes_per_s'] / 1e9:.1f} GB/s copy, "
            f"{bandwidth['read_bytes_per_s'] / 1e9:.1f} GB/s read)"
        )
        if merged is None:
            merged = results
            continue
        for name, backend in results["backends"].items():
            target = merged["backends"].setdefault(name, {"measurements": [], "linear": []})
            if backend.get("measurements"):
                newer = {_key(row): row for row in backend["measurements"]}
                kept = [row for row in target["measurements"] if _key(row) not in newer]
                target["measurements"] = kept + list(newer.values())
            if backend.get("linear"):
                target["linear"] = backend["linear"]
            if backend.get("overhead"):
                target["overhead"] = backend["overhead"]
    return merged, sources


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    if "--matrix" in argv:
        paths = [Path(a) for a in argv if a != "--matrix"]
        if not paths:
            print(
                "usage: python -m benchmarks.summary --matrix results.json [...]", file=sys.stderr
            )
            return 2
        results, sources = _merge(paths)
        for source in sources:
            print(f"- {source}")
        for mode in ("forward+backward", "forward"):
            print(f"\n{mode}, lsr ÷ rival:\n")
            print(matrix(results, mode))
        return 0
    paths = [Path(a) for a in argv] or [Path("benchmarks/results/full.json")]
    results, sources = _merge(paths)
    for source in sources:
        print(f"- {source}")
    print()
    print(table(results))
    print()
    print(linear_table(results))
    print()
    print(overhead_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two benchmark runs side by side: did any row get worse against its rival?

Usage::

    python -m benchmarks.compare --before OLD.json [OLD2.json ...] --after NEW.json [...] \\
        [--tolerance 0.15] [--out comparison.md]

Runs on one machine are noisy and differ in load, so absolute times are not compared:
for every lsr measurement (method, case, dtype, mode) and every rival it was timed
against in the same run, the ratio ``lsr time / rival time`` (the median over
round-robin repeats) before and after is compared, and likewise the ratio of peak
resident memory. A row counts as worse when its ratio grew by more than ``tolerance``
(relative) and lsr is slower (or larger) than the rival after. Several files per side
are merged as ``benchmarks.summary`` merges them (later files replace the rows they
repeat). The table of every compared row, the worse ones first, goes to stdout and,
with ``--out``, to a Markdown file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.summary import _key, _merge


def _ratios(results: dict[str, Any]) -> dict[tuple[str, ...], dict[str, float | None]]:
    """(backend, method, case, dtype, mode, rival) -> {"time": ratio, "memory": ratio}."""
    found = {}
    for backend, data in results["backends"].items():
        for row in data.get("measurements", []):
            if row.get("role") != "lsr":
                continue
            for rival, versus in (row.get("versus") or {}).items():
                key = (backend, *_key(row), rival)
                found[key] = {"time": versus.get("time_ratio"), "memory": versus.get("rss_ratio")}
    return found


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def compare(
    before: dict[str, Any], after: dict[str, Any], tolerance: float
) -> tuple[list[str], int]:
    """Markdown table lines of every row measured in both runs, and how many got worse."""
    old, new = _ratios(before), _ratios(after)
    rows = []
    worse = 0
    for key in sorted(old.keys() & new.keys()):
        verdicts = []
        for kind in ("time", "memory"):
            a, b = old[key][kind], new[key][kind]
            if a is not None and b is not None and b > a * (1 + tolerance) and b > 1.0:
                verdicts.append(f"{kind} worse")
        worse += bool(verdicts)
        backend, method, case, dtype, mode, rival = key
        rows.append(
            (
                not verdicts,
                f"| {backend} | {method} | {rival} | {case} {dtype} | {mode} | "
                f"{_fmt(old[key]['time'])} → {_fmt(new[key]['time'])} | "
                f"{_fmt(old[key]['memory'])} → {_fmt(new[key]['memory'])} | "
                f"{', '.join(verdicts) or 'not worse'} |",
            )
        )
    header = [
        "| backend | lsr | rival | case | mode | time ratio before → after | "
        "memory ratio before → after | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return header + [line for _, line in sorted(rows, key=lambda r: r[0])], worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", nargs="+", type=Path, required=True)
    parser.add_argument("--after", nargs="+", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    before, before_sources = _merge(args.before)
    after, after_sources = _merge(args.after)
    lines, worse = compare(before, after, args.tolerance)
    text = "\n".join(
        ["Before:", *(f"- {s}" for s in before_sources), "", "After:"]
        + [f"- {s}" for s in after_sources]
        + [
            "",
            f"{worse} of {len(lines) - 2} rows worse (a ratio to the rival up by more than "
            f"{args.tolerance:.0%}, and lsr slower or larger than the rival after).",
            "",
            *lines,
        ]
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``benchmarks.summary --matrix``: lsr ÷ rival per execution mode and case, and the
README's tables, which must be that command's output for the files the README names.

No framework is imported: these check the harness' bookkeeping, not timings.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from benchmarks import summary

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _row(case_name, dtype, method, seconds, mode="forward+backward"):
    return {
        "case_name": case_name,
        "dtype": dtype,
        "mode": mode,
        "method": method,
        "median_s": seconds,
    }


def test_matrix_has_a_line_per_execution_and_a_column_per_case_and_dtype():
    eager, rival = "lsr.torch.smooth_ce (eager)", "F.cross_entropy (eager)"
    bce, bce_rival = (
        "lsr.torch.smooth_bce (eager)",
        "F.binary_cross_entropy_with_logits(smoothed targets) (eager)",
    )
    rows = [
        _row("4096x1000", "bfloat16", eager, 3.0),
        _row("4096x1000", "bfloat16", rival, 4.0),
        _row("256x10", "float32", eager, 1.1),
        _row("256x10", "float32", rival, 1.0),
        _row("256x10", "float32", eager, 9.0, mode="forward"),
        _row("256x10", "float32", rival, 1.0, mode="forward"),
        # No rival measured: no cell.
        _row("8x21x256x256, class axis 1, 5% ignored", "float32", eager, 1.0),
        _row("4096x80, multi-label", "float32", bce, 1.0),
        _row("4096x80, multi-label", "float32", bce_rival, 2.0),
    ]
    results = {"backends": {"torch": {"measurements": rows}}}
    softmax, binary = summary.matrix(results).split("\n\n")
    # float32 columns first, each case once; the ratio of the mode asked for.
    assert softmax.splitlines() == [
        "| execution: rival | 256x10 f32 | 4096x1000 bf16 |",
        "|---|---:|---:|",
        "| PyTorch eager: F.cross_entropy | 1.10 | 0.75 |",
    ]
    assert binary.splitlines()[0] == "| execution: rival | 4096x80 ml f32 |"
    assert binary.splitlines()[2] == (
        "| PyTorch eager: F.binary_cross_entropy_with_logits | 0.50 |"
    )
    assert summary.matrix(results, "forward").splitlines()[2] == (
        "| PyTorch eager: F.cross_entropy | 9.00 |"
    )


def test_the_readme_tables_are_the_matrix_of_the_files_it_names():
    """Every row of the README's benchmark tables is a line of ``benchmarks.summary
    --matrix`` run on the files the README's command names (forward + backward)."""
    (pattern,) = re.findall(r"benchmarks\.summary --matrix (\S+?)`", README.replace("\n", " "))
    paths = sorted(glob.glob(str(ROOT / pattern)))
    assert paths, pattern
    results, _ = summary._merge([Path(path) for path in paths])
    printed = set(summary.matrix(results).splitlines())
    section = README[README.index("## Benchmarks") : README.index("## Scaling out")]
    quoted = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(quoted) >= 15  # (both tables: their headers and 17 lines)
    missing = [line for line in quoted if line not in printed]
    assert not missing, "README rows not printed by the command:\n" + "\n".join(missing)

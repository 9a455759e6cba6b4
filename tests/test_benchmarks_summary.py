"""``benchmarks.summary --matrix``: lsr ÷ rival per execution mode and case, and the
README's tables, which must be that command's output for the files the README names.

No framework is imported: these check the harness' bookkeeping, not timings.
"""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import common, report, summary

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


def test_two_cases_of_one_column_title_are_an_error_not_a_hidden_cell():
    eager, rival = "lsr.torch.smooth_ce (eager)", "F.cross_entropy (eager)"
    rows = [
        _row("256x10", "float32", eager, 1.0),
        _row("256x10", "float32", rival, 1.0),
        _row("256x10, other", "float32", eager, 2.0),
        _row("256x10, other", "float32", rival, 1.0),
    ]
    with pytest.raises(ValueError, match="256x10 f32"):
        summary.matrix({"backends": {"torch": {"measurements": rows}}})


def test_matrix_without_files_is_a_usage_error(capsys):
    assert summary.main(["--matrix"]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_readme_tables_are_the_matrix_of_the_files_it_names():
    """The README's benchmark tables are, line for line, ``benchmarks.summary --matrix``
    run on the files the README's command names (forward + backward): no row edited,
    dropped or added by hand."""
    (pattern,) = re.findall(r"benchmarks\.summary --matrix (\S+?)`", README.replace("\n", " "))
    paths = sorted(glob.glob(str(ROOT / pattern)))
    assert paths, pattern
    results, _ = summary._merge([Path(path) for path in paths])
    printed = [line for line in summary.matrix(results).splitlines() if line.startswith("| ")]
    section = README[README.index("## Benchmarks") : README.index("## Scaling out")]
    quoted = [line for line in section.splitlines() if line.startswith("| ")]
    assert printed and quoted == printed


def test_a_run_records_and_shows_the_commit_it_measured():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is no commit to record")
    code = common.code_revision()
    assert code["revision"] and isinstance(code["uncommitted_changes"], bool)
    shown = report.revision_text({"code": {"revision": "0123abcd", "uncommitted_changes": True}})
    assert shown == ", on 0123abcd with uncommitted changes to tracked files"
    clean = {"code": {"revision": "0123abcd", "uncommitted_changes": False}}
    assert report.revision_text(clean) == ", on 0123abcd"
    unknown = {"code": {"revision": "0123abcd", "uncommitted_changes": None}}
    assert "unknown" in report.revision_text(unknown)
    # Files written before runs recorded it show nothing.
    assert report.revision_text({}) == ""


def test_no_commit_is_recorded_where_git_cannot_tell(monkeypatch, tmp_path):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(common.subprocess, "run", no_git)
    assert common.code_revision() == {"revision": None, "uncommitted_changes": None}
    monkeypatch.undo()
    # A copy inside another repository (its root is not the copy's): not that
    # repository's commit.
    outer = tmp_path / "outer"
    (outer / "vendored").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(outer),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "outer",
        ],
        check=True,
    )
    assert common.code_revision(str(outer))["revision"]  # (the outer root itself: known)
    assert common.code_revision(str(outer / "vendored"))["revision"] is None

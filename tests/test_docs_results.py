"""The tutorial's numbers in README.md and docs/tutorial.md are those of its saved reports.

Each table the docs quote is rebuilt here from the JSON report of the run that made it
(docs/results/...), with the tutorial's own table functions, and every row must appear
in the docs as it is printed. A table edited by hand, or left behind by a newer run,
fails here. (An earlier version of docs/tutorial.md showed the over-training table with
the hard-target rows of another run; this test would have caught it.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lsr.tutorial import __main__ as command_line
from lsr.tutorial import _calibration, _distillation

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README = (ROOT / "README.md").read_text(encoding="utf-8")
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")


def _report(*parts: str) -> dict:
    return json.loads(RESULTS.joinpath(*parts).read_text(encoding="utf-8"))


def _rows(table: str) -> list[str]:
    """The body rows of a markdown table printed by the tutorial (header lines dropped)."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    return [line for line in lines[2:] if not line.startswith("| ---")]


def _normalise(row: str) -> str:
    return re.sub(r"\s+\|", " |", row)


def _assert_rows_in(rows: list[str], text: str, where: str) -> None:
    assert rows, "no rows rebuilt"
    lines = {_normalise(line) for line in text.splitlines()}
    missing = [row for row in rows if _normalise(row) not in lines]
    assert not missing, f"{where} lacks these rows of the report:\n" + "\n".join(missing)


MAIN = _report("tutorial", "tutorial_report.json")


@pytest.mark.parametrize(
    "table",
    [
        command_line.comparison_table(MAIN["reports"]),
        _calibration.calibration_table(MAIN["calibration"]),
        _distillation.distillation_table(MAIN["distillation"]),
    ],
    ids=["comparison", "calibration", "distillation"],
)
def test_tutorial_page_quotes_the_saved_report(table):
    _assert_rows_in(_rows(table), TUTORIAL, "docs/tutorial.md")


def test_readme_quotes_the_saved_report():
    # README's comparison table adds backticks and a column of cleverhans' bounds, and
    # leaves out the timings (its text quotes them).
    fields = [
        row for row in _rows(command_line.comparison_table(MAIN["reports"])) if "time" not in row
    ]
    readme_lines = [_normalise(line) for line in README.splitlines()]
    for row in fields:
        name, *values = (cell.strip() for cell in row.strip("|").split("|"))
        prefix = "| " + " | ".join([f"`{name}`", *values]) + " |"
        assert any(line.startswith(prefix) for line in readme_lines), prefix
    for section in ("calibration", "distillation"):
        table = {
            "calibration": _calibration.calibration_table,
            "distillation": _distillation.distillation_table,
        }[section](MAIN[section])
        _assert_rows_in(_rows(table), README, "README.md")
    for backend, report in MAIN["reports"].items():
        assert f"{backend} {report['timings_s']['total']:.1f} s" in README


def test_the_saved_run_is_the_documented_command():
    command = MAIN["command"]
    assert "--out_dir docs/results/tutorial" in command
    assert "--prior" not in command  # the default targets, as the pages say
    for report in MAIN["reports"].values():
        assert report["prior"] == "uniform"
        assert report["data_source"] == "mnist-t10k-split"


def test_overtraining_table_quotes_its_reports():
    """docs/tutorial.md's over-training table: the three backends at label smoothing 0.1
    (one report) and TensorFlow at 0.02 (another); the page titles the smoothed rows
    with their epsilon."""
    runs = [
        (_report("tutorial_overfit", "tutorial_report.json")["calibration"], "0.1"),
        (
            _report("tutorial_overfit", "tutorial_report_tensorflow_ls002.json")["calibration"],
            "0.02",
        ),
    ]
    rows = []
    for sections, epsilon in runs:
        for row in _rows(_calibration.calibration_table(sections)):
            if "label smoothing" in row:
                row = row.replace("label smoothing", f"label smoothing {epsilon}")
            elif epsilon != "0.1":
                continue  # (the 0.02 run's hard-target rows repeat the 0.1 run's model)
            rows.append(row)
    _assert_rows_in(rows, TUTORIAL, "docs/tutorial.md")

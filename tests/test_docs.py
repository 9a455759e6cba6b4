"""tools/check_docs.py: each check accepts good Markdown and catches the mistake it is for.

The docs themselves are checked by ``nox -s docs``; these tests only need Python, so
they run in every test session.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check_docs = _load("check_docs")

GOOD_TABLE = """\
Text.

| a | b |
| --- | ---: |
| 1 | 2 |
| `x` | y \\| z |

More text.
"""


def _errors(tmp_path: Path, text: str) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return check_docs.parse(page).errors


def test_a_well_formed_table_passes(tmp_path):
    assert _errors(tmp_path, GOOD_TABLE) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No separator row: renders as text.
        ("| a | b |\n| 1 | 2 |\n", "without a header row followed by a separator"),
        # A stray line (a log message) inside a table splits it.
        (
            "| a | b |\n|---|---|\n| 1 | 2 |\n[log] step 3\n| 3 | 4 |\n",
            "line 4 is not a table row",
        ),
        # A stray line right after a table: GitHub reads it as a row.
        ("| a | b |\n|---|---|\n| 1 | 2 |\n[log] done\n", "right after the table"),
        # A row with a cell too many.
        ("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n", "3 cells where the header"),
        # No blank line before: Python-Markdown renders it as text.
        ("Some text:\n| a | b |\n|---|---|\n| 1 | 2 |\n", "blank line before it"),
    ],
)
def test_a_broken_table_is_reported(tmp_path, text, expected):
    errors = _errors(tmp_path, text)
    assert any(expected in error for error in errors), errors


def test_tables_inside_code_blocks_are_not_tables(tmp_path):
    assert _errors(tmp_path, "```text\n| not a table\n```\n") == []


def test_fences_must_name_their_language_and_be_closed(tmp_path):
    assert "names no language" in _errors(tmp_path, "```\nprint(1)\n```\n")[0]
    assert "never closed" in _errors(tmp_path, "```python\nprint(1)\n")[0]


def test_blocks_keep_their_line_numbers_and_lose_their_list_indentation(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("* item\n\n  ```python\n  x = 1\n  ```\n", encoding="utf-8")
    (block,) = check_docs.parse(page).blocks
    assert (block.language, block.line, block.code) == ("python", 4, "x = 1\n")


def test_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- check_docs: torchrun 2 -->\n```python\npass\n```\n\n"
        "<!-- check_docs: isolated -->\n```python\npass\n```\n\n"
        "<!-- check_docs: skip needs eight GPUs -->\n```python\npass\n```\n",
        encoding="utf-8",
    )
    parsed = check_docs.parse(page)
    assert parsed.errors == []
    modes = [(block.mode, block.ranks, block.reason) for block in parsed.blocks]
    assert modes == [("torchrun", 2, ""), ("isolated", 0, ""), ("skip", 0, "needs eight GPUs")]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- check_docs: skip -->\n```python\npass\n```\n",  # a skip needs its reason
        "<!-- check_docs: sometimes -->\n```python\npass\n```\n",  # unknown
        "<!-- check_docs: isolated -->\n\n```python\npass\n```\n",  # not directly before
        "<!-- check_docs: isolated -->\n```bash\nls\n```\n",  # not a python block
    ],
)
def test_misplaced_or_malformed_markers_are_errors(tmp_path, text):
    assert _errors(tmp_path, text)


def test_broken_relative_links_are_reported(tmp_path):
    (tmp_path / "there.md").write_text("# There\n", encoding="utf-8")
    text = "[ok](there.md#part) [web](https://example.org) [gone](missing.md) `[code](x)`\n"
    errors = _errors(tmp_path, text)
    assert len(errors) == 1 and "'missing.md'" in errors[0]


@pytest.mark.parametrize(
    "line",
    [
        "LSR_MNIST_DIR=../shared/data/mnist python -m lsr.tutorial",
        "pip install lsr",
        'pip install "lsr[jax]"',
        "`pip install 'lsr[plot]'`",
    ],
)
def test_developer_paths_and_the_taken_pypi_name_are_reported(tmp_path, line):
    assert _errors(tmp_path, f"```bash\n{line}\n```\n")


def test_the_published_name_and_a_checkout_install_pass(tmp_path):
    text = '```bash\npip install "lsr-label-smoothing[jax]"\npip install -e ".[all]"\n```\n'
    assert _errors(tmp_path, text) == []


def test_a_file_runs_like_a_notebook_and_a_failure_names_its_markdown_line(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nvalue = 41\n```\n\nText.\n\n```python\nvalue += 1\nassert value == 43\n```\n",
        encoding="utf-8",
    )
    assert check_docs.main([str(page)]) == 1
    output = capsys.readouterr().out
    # The traceback names the Markdown file and the failing line within it (line 9).
    assert f'File "{page}", line 9' in output
    assert "page.md:8: the block starting at this line failed" in output

    page.write_text(page.read_text().replace("43", "42"), encoding="utf-8")
    assert check_docs.main([str(page)]) == 0


def test_isolated_blocks_share_nothing(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nshared = 1\n```\n\n"
        "<!-- check_docs: isolated -->\n```python\nassert 'shared' not in globals()\n```\n",
        encoding="utf-8",
    )
    assert check_docs.main([str(page)]) == 0


def test_files_run_side_by_side_are_reported_in_their_order(tmp_path, monkeypatch, capsys):
    """The first file's interpreter finishes last: its results, its skipped block
    included, still come first, and the second file's failure is still reported."""
    first, second = tmp_path / "first.md", tmp_path / "second.md"
    first.write_text(
        "```python\npass\n```\n\n"
        "<!-- check_docs: skip needs eight GPUs -->\n```python\npass\n```\n",
        encoding="utf-8",
    )
    second.write_text("```python\nraise ValueError\n```\n", encoding="utf-8")
    second_done = threading.Event()

    def run(job, timeout):
        page = job[0]
        if page.path == first:
            assert second_done.wait(timeout=10)  # (the two run at once)
            return True, "", 0.0
        second_done.set()
        return False, "@@check_docs failed: second.md:2\n", 0.0

    monkeypatch.setattr(check_docs, "_timed_run", run)
    pages = [check_docs.parse(first), check_docs.parse(second)]
    failures = check_docs.run_pages(pages, timeout=10.0, verbose=False, workers=2)
    output = capsys.readouterr().out
    order = ["first.md:\n", "skipped", "ok: 1 block", "second.md:\n", "FAILED: 1 block"]
    assert [output.index(text) for text in order] == sorted(output.index(t) for t in order)
    assert failures == [
        "second.md:2: the block starting at this line failed (in order, sharing state)"
    ]


def test_a_number_of_jobs_below_one_is_refused(capsys):
    with pytest.raises(SystemExit):
        check_docs.main(["--jobs", "0", "--no-run"])
    assert "Received: jobs=0" in capsys.readouterr().err

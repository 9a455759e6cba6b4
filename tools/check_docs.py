"""Check that the docs work: every ```python block runs and every table renders.

Usage (from the repository root, in an environment with lsr and its backends)::

    python tools/check_docs.py                  # README.md and docs/**/*.md
    python tools/check_docs.py docs/torch.md    # some files only
    python tools/check_docs.py --no-run         # the static checks only (fast)
    python tools/check_docs.py --list           # every Python block and how it runs

``nox -s docs`` runs it with every backend installed (``backends/all.txt``), then builds
the site.

**How blocks run.** The ```python blocks of one Markdown file run in order in one fresh
interpreter and share their variables, like the cells of a notebook: a later block may use
what an earlier block of the same file defined, never what another file defined. The
interpreter's working directory is an empty temporary directory, so files a block writes
(figures) do not land in the checkout. A block that raises stops its file: the checker
prints the traceback, whose frames name the Markdown file and its line numbers, and fails.
A block that imports a framework which is not installed fails too; nothing is skipped
because something is missing.

The interpreters (one per file, and one per marked block below) share nothing, so they
run side by side, ``--jobs`` at a time (the CPUs, at most 4); their results are printed
in the files' order.

Only fences whose language is ``python`` (or ``py``) run. Every fence must name its
language, so text meant for reading is marked as such: ``bash`` for commands, ``text``
for printed output.

**Markers.** An HTML comment (invisible once rendered) on the line directly before a
```python fence changes how that one block runs:

* ``<!-- check_docs: isolated -->``: in a fresh interpreter of its own, sharing nothing
  with the file's other blocks; for blocks that must set process-wide state before a
  framework starts (``XLA_FLAGS``, TensorFlow's logical devices).
* ``<!-- check_docs: torchrun N -->``: alone, as every rank of an N-process
  ``torch.distributed`` job on this machine (``torchrun --standalone --nproc_per_node=N``).
* ``<!-- check_docs: skip REASON -->``: not run at all; the reason is required and should
  be one a reader accepts (a multi-GPU launcher, a run of many minutes). Use it rarely.

**Static checks** (also with ``--no-run``):

* fences are closed and name their language; markers stand right before a python fence;
* every table renders: a header row, then a separator row (``|---|``), the same number of
  cells on every row, and a blank line before and after the table, so that no other line
  sits inside or against it (GitHub would read it as a row, the site's Markdown as text);
* relative links and images point at files that exist;
* nothing points at ``../shared/`` (a folder on the developers' machines only) or tells
  readers to ``pip install lsr`` (that name on PyPI is an unrelated project).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE_LANGUAGES = {"python", "py"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*check_docs:\s*(?P<body>.*?)\s*-->\s*$")
SEPARATOR_CELL = re.compile(r"^\s*:?-+:?\s*$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
# Text that misleads a reader on any machine but the developers', in prose or code alike.
MISLEADING = [
    (
        re.compile(r"\.\./shared/"),
        "points at ../shared/, which exists only on the developers' machines (say how to "
        "point the program at the files instead, e.g. $LSR_MNIST_DIR or --data_dir)",
    ),
    (
        re.compile(r"pip install\s+(?:-\S+\s+)*[\"']?lsr(?:\[|[\"'\s]|$)"),
        "installs `lsr` from PyPI, an unrelated project: install from a checkout "
        '(pip install ".[extra]") or name the distribution, lsr-label-smoothing',
    ),
]

# Run by the interpreter that executes a file's blocks (or one block, for every rank of a
# torchrun job). Each block is compiled under the Markdown file's own path with its lines
# at their place in that file, so a traceback shows the Markdown lines themselves.
DRIVER = """\
import json
import sys
import traceback

with open(sys.argv[1], encoding="utf-8") as handle:
    blocks = json.load(handle)
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
for block in blocks:
    print(f"--- running {block['where']}", flush=True)
    source = "\\n" * (block["line"] - 1) + block["code"]
    try:
        exec(compile(source, block["path"], "exec"), namespace)
    except BaseException as error:
        # Leave out this driver's own frame: the traceback starts in the Markdown file.
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"@@check_docs failed: {block['where']}", flush=True)
        sys.exit(1)
"""


@dataclasses.dataclass
class Block:
    path: Path  # the Markdown file
    line: int  # 1-based line of the block's first code line
    language: str
    code: str
    mode: str = "notebook"  # "notebook", "isolated", "torchrun", "skip"
    ranks: int = 0  # for "torchrun"
    reason: str = ""  # for "skip"

    @property
    def where(self) -> str:
        return f"{_display(self.path)}:{self.line}"

    def payload(self) -> dict[str, object]:
        return {"path": str(self.path), "line": self.line, "code": self.code, "where": self.where}


@dataclasses.dataclass
class Page:
    path: Path
    blocks: list[Block]
    errors: list[str]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _parse_marker(body: str) -> tuple[str, int, str] | str:
    """``(mode, ranks, reason)`` of a marker's text, or an error message."""
    word, _, rest = body.partition(" ")
    rest = rest.strip()
    if word == "isolated" and not rest:
        return ("isolated", 0, "")
    if word == "torchrun" and rest.isdigit() and int(rest) >= 1:
        return ("torchrun", int(rest), "")
    if word == "skip" and rest:
        return ("skip", 0, rest)
    return (
        f"unknown or incomplete marker 'check_docs: {body}' (expected 'isolated', "
        "'torchrun N' or 'skip REASON')"
    )


def parse(path: Path, text: str | None = None) -> Page:
    """Split a Markdown file into its code blocks and check its fences, tables and links."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    where = _display(path)
    errors: list[str] = []
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []  # (1-based line number, text) outside fences
    pending_marker: tuple[int, tuple[str, int, str]] | None = None

    index = 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if not opening:
            marker = MARKER.match(line)
            if pending_marker is not None:
                errors.append(
                    f"{where}:{pending_marker[0]}: a check_docs marker must stand on the line "
                    "directly before a ```python fence"
                )
                pending_marker = None
            if marker:
                parsed = _parse_marker(marker.group("body"))
                if isinstance(parsed, str):
                    errors.append(f"{where}:{index + 1}: {parsed}")
                else:
                    pending_marker = (index + 1, parsed)
            prose.append((index + 1, line))
            index += 1
            continue

        indent = len(opening.group("indent"))
        fence = opening.group("fence")
        info = opening.group("info").strip()
        language = info.split()[0].lower() if info else ""
        start = index + 1
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        index += 1
        body: list[str] = []
        while index < len(lines) and not closing.match(lines[index]):
            body.append(lines[index])
            index += 1
        if index == len(lines):
            errors.append(f"{where}:{start}: the fence opened here is never closed")
        index += 1  # past the closing fence
        if not language:
            errors.append(
                f"{where}:{start}: the fence names no language (```python runs; use "
                "```text for output, ```bash for commands)"
            )
        code = "\n".join(item[indent:] if item[:indent].strip() == "" else item for item in body)
        block = Block(path=path, line=start + 1, language=language, code=code + "\n")
        if pending_marker is not None:
            if language in RUNNABLE_LANGUAGES:
                block.mode, block.ranks, block.reason = pending_marker[1]
            else:
                errors.append(
                    f"{where}:{pending_marker[0]}: a check_docs marker must stand on the line "
                    f"directly before a ```python fence, not ```{language}"
                )
            pending_marker = None
        blocks.append(block)
        # The fence itself is a block-level element: a table cannot continue across it.
        prose.append((start, ""))
    if pending_marker is not None:
        errors.append(f"{where}:{pending_marker[0]}: a check_docs marker at the end of the file")

    for number, line in enumerate(lines, start=1):
        for pattern, message in MISLEADING:
            if pattern.search(line):
                errors.append(f"{where}:{number}: {message}")
    errors += check_tables(where, prose)
    errors += check_links(path, where, prose)
    return Page(path=path, blocks=blocks, errors=errors)


def _cells(row: str) -> list[str]:
    """A table row's cells, split on pipes that are not escaped (GitHub's rule)."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return re.split(r"(?<!\\)\|", row)


def check_tables(where: str, prose: list[tuple[int, str]]) -> list[str]:
    """Every run of lines starting with ``|`` must be one well-formed table."""
    errors: list[str] = []
    index = 0
    while index < len(prose):
        line = prose[index][1]
        if not line.lstrip().startswith("|"):
            index += 1
            continue
        rows = []
        while index < len(prose) and prose[index][1].lstrip().startswith("|"):
            rows.append(prose[index])
            index += 1
        first, last = rows[0][0], rows[-1][0]
        before = prose[index - len(rows) - 1] if index - len(rows) >= 1 else None
        after = prose[index] if index < len(prose) else None
        header = _cells(rows[0][1])
        separator = _cells(rows[1][1]) if len(rows) > 1 else []
        if len(rows) < 2 or not all(SEPARATOR_CELL.match(cell) for cell in separator):
            hint = ""
            if before is not None and before[1].strip():
                hint = (
                    f" (line {before[0]} is not a table row: if it sits inside a table, remove it)"
                )
            errors.append(
                f"{where}:{first}: table rows without a header row followed by a separator "
                f"row (|---|---|); they render as text{hint}"
            )
            continue
        if all(SEPARATOR_CELL.match(cell) for cell in header):
            errors.append(f"{where}:{first}: the table's header row is a separator row")
        for row_number, row in rows:
            if len(_cells(row)) != len(header):
                errors.append(
                    f"{where}:{row_number}: {len(_cells(row))} cells where the header "
                    f"(line {first}) has {len(header)}"
                )
        if before is not None and before[1].strip():
            errors.append(
                f"{where}:{before[0]}: a table needs a blank line before it (line {first}); "
                "this line would render it as text"
            )
        if after is not None and after[1].strip():
            errors.append(
                f"{where}:{after[0]}: a line that is not a table row right after the table "
                f"ending at line {last}: leave a blank line (or remove it if it is stray "
                "output); GitHub reads it as one more row"
            )
    return errors


def check_links(path: Path, where: str, prose: list[tuple[int, str]]) -> list[str]:
    """Relative links and images must point at files or folders that exist."""
    errors = []
    for number, line in prose:
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group("target").split("#", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # an anchor on the same page, or a URL
            if not (path.parent / target).exists():
                errors.append(f"{where}:{number}: the link target {target!r} does not exist")
    return errors


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _run(command: list[str], payload: list[dict[str, object]], timeout: float) -> tuple[bool, str]:
    """Run the driver over ``payload`` in a fresh interpreter in an empty directory."""
    with tempfile.TemporaryDirectory(prefix="check_docs-") as workdir:
        driver = Path(workdir) / "_check_docs_driver.py"
        driver.write_text(DRIVER, encoding="utf-8")
        blocks = Path(workdir) / "_check_docs_blocks.json"
        blocks.write_text(json.dumps(payload), encoding="utf-8")
        cwd = Path(workdir) / "cwd"
        cwd.mkdir()
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        try:
            completed = subprocess.run(
                [*command, str(driver), str(blocks)],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            output = error.stdout or ""
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            return False, output + f"\n@@check_docs: timed out after {timeout:.0f} s\n"
        return completed.returncode == 0, completed.stdout


Job = tuple[Page, str, list[str], list[Block]]  # (page, description, command, blocks)


def page_jobs(page: Page) -> list[Job]:
    """A page's interpreters: its notebook blocks in one, in order; each isolated or
    torchrun block in its own. (Skipped blocks: ``run_pages`` reports them.)"""
    runnable = [block for block in page.blocks if block.language in RUNNABLE_LANGUAGES]
    jobs: list[Job] = []
    notebook = [block for block in runnable if block.mode == "notebook"]
    if notebook:
        jobs.append((page, "in order, sharing state", [sys.executable], notebook))
    for block in runnable:
        if block.mode == "isolated":
            jobs.append((page, "alone", [sys.executable], [block]))
        elif block.mode == "torchrun":
            launcher = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={block.ranks}",
            ]
            jobs.append((page, f"torchrun, {block.ranks} ranks", launcher, [block]))
    return jobs


def _timed_run(job: Job, timeout: float) -> tuple[bool, str, float]:
    _, _, command, blocks = job
    started = time.perf_counter()
    ok, output = _run(command, [block.payload() for block in blocks], timeout)
    return ok, output, time.perf_counter() - started


def run_pages(pages: list[Page], timeout: float, verbose: bool, workers: int) -> list[str]:
    """Run every page's blocks, ``workers`` interpreters at a time (each job is a fresh
    interpreter that shares nothing with the others); print each job's result in the
    pages' order. The failures, one message each."""
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        runs = [
            (page, [(job, pool.submit(_timed_run, job, timeout)) for job in page_jobs(page)])
            for page in pages
        ]
        for page, page_runs in runs:
            skipped = [
                block
                for block in page.blocks
                if block.language in RUNNABLE_LANGUAGES and block.mode == "skip"
            ]
            if not page_runs and not skipped:
                continue
            print(f"{_display(page.path)}:")
            for block in skipped:
                print(f"  skipped {block.where}: {block.reason}")
            for job, run in page_runs:
                _, description, _, blocks = job
                ok, output, seconds = run.result()
                lines = ", ".join(str(block.line) for block in blocks)
                status = "ok" if ok else "FAILED"
                count, took = len(blocks), f"{seconds:.1f} s"
                print(f"  {status}: {count} block(s) at line(s) {lines}, {description} ({took})")
                if verbose or not ok:
                    print(textwrap.indent(output.rstrip(), "  | "))
                if not ok:
                    failed = re.findall(r"@@check_docs failed: (\S+)", output)
                    where = failed[0] if failed else f"{_display(page.path)}:{blocks[0].line}"
                    failures.append(
                        f"{where}: the block starting at this line failed ({description})"
                    )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: all)")
    parser.add_argument("--no-run", action="store_true", help="static checks only")
    parser.add_argument("--list", action="store_true", help="list the Python blocks and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per interpreter")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="interpreters run at once (default: the CPUs, at most 4)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show every block's output")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more. Received: jobs={args.jobs}")

    files = [path.resolve() for path in args.files] or default_files()
    pages = [parse(path) for path in files]
    if args.list:
        for page in pages:
            for block in page.blocks:
                if block.language in RUNNABLE_LANGUAGES:
                    how = {"torchrun": f"torchrun {block.ranks}", "skip": "skip"}
                    print(f"{block.where}: {how.get(block.mode, block.mode)}")
        return 0

    problems = [error for page in pages for error in page.errors]
    if not args.no_run:
        problems += run_pages(pages, args.timeout, args.verbose, args.jobs)

    blocks = sum(block.language in RUNNABLE_LANGUAGES for page in pages for block in page.blocks)
    print()
    if problems:
        print(f"check_docs: {len(problems)} problem(s) in {len(pages)} file(s):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    ran = "checked" if args.no_run else "ran"
    print(f"check_docs: {len(pages)} file(s) fine; {blocks} Python block(s) {ran}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

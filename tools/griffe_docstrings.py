"""A griffe extension for the API reference: two Google-style habits of lsr's docstrings.

mkdocs.yml loads it (``extensions`` of the mkdocstrings handler). Before griffe parses a
docstring it rewrites two things that Napoleon (Sphinx) reads as intended but griffe does
not:

* ``Example:`` starts the same section as ``Examples:``, so its ``>>>`` lines render as
  code (griffe would render them as an admonition of Markdown text, where doctest output
  such as ``[0.  0.75]`` reads as a link);
* an ``Args:`` entry that documents several parameters at once
  (``smoothing, prior, kl: as in smooth_ce.``) becomes one entry per parameter with that
  description, so each is matched against the signature (griffe would look for a single
  parameter named ``smoothing, prior, kl``).

The source files are not changed; only the text griffe parses is.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>\s*)Example:\s*$", re.MULTILINE)
_PARAMETER_SECTION = re.compile(
    r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments"
    r"|Other Parameters):\s*$"
)
_GROUPED_ENTRY = re.compile(
    r"^(?P<indent>\s*)(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)"
    r"(?P<annotation>\s*\([^)]*\))?:(?P<description>.*)$"
)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_grouped_parameters(text: str) -> str:
    """One entry per parameter where an ``Args:`` entry names several."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        section = _PARAMETER_SECTION.match(line)
        if not section:
            continue
        section_indent = len(section.group("indent"))
        entry_indent = None
        while index < len(lines):
            line = lines[index]
            if line.strip() and _indent(line) <= section_indent:
                break  # the next section, or the end of this one
            if line.strip() and entry_indent is None:
                entry_indent = _indent(line)
            grouped = _GROUPED_ENTRY.match(line) if line.strip() else None
            if grouped is None or _indent(line) != entry_indent:
                out.append(line)
                index += 1
                continue
            end = index + 1
            while end < len(lines) and (
                not lines[end].strip() or _indent(lines[end]) > entry_indent
            ):
                end += 1
            continuation = lines[index + 1 : end]
            trailing_blank = 0
            while continuation and not continuation[-1].strip():
                continuation.pop()
                trailing_blank += 1
            annotation = grouped.group("annotation") or ""
            for name in re.split(r"\s*,\s*", grouped.group("names")):
                head = f"{grouped.group('indent')}{name}{annotation}:"
                out.append(head + grouped.group("description"))
                out.extend(continuation)
            out.extend([""] * trailing_blank)
            index = end
    return "\n".join(out)


def rewrite(text: str) -> str:
    return split_grouped_parameters(_EXAMPLE.sub(r"\g<indent>Examples:", text))


class DocstringConventions(griffe.Extension):
    """Rewrite each docstring before it is parsed (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

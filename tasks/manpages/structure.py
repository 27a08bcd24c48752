"""Structure that lives in the markup: the NAME line, ERRORS entries, SYNOPSIS headers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.manpages.entities import ERRNO_NAMES
from tasks.manpages.roff import macro_args, macro_name, paragraphs, plain

_INCLUDE = re.compile(r"^\s*#\s*include\s*(<[^>]+>)\s*(.*)$")
# The declared name is the last identifier before the parameter list's "(" (for function
# pointers returned, like signal(), the first "(" opens "(*signal(", hence the optional "(*").
_PROTOTYPE = re.compile(r"^[A-Za-z_][\w\s\*]*?[\s\*]\(?\*?([A-Za-z_]\w*)\s*\(")


@dataclass(frozen=True)
class ErrorEntry:
    """One `.TP` entry of ERRORS: the errno names in its tag and the first paragraph after it.

    `function` is set when the entry follows a note like "The following additional errors can
    occur for renameat():"; otherwise the entry is about the page's first function.
    """

    errnos: tuple[str, ...]
    condition: str
    function: str | None = None


def name_line(lines: list[str]) -> tuple[list[str], str]:
    """The page's names and its one-line description from the NAME section ("open, openat - …")."""
    text = " ".join(plain(line) for line in lines if macro_name(line) is None or macro_name(line) in ("B", "BR"))
    text = re.sub(r"\s+", " ", text).strip()
    names_part, _, description = text.partition(" - ")
    names = [name.strip() for name in names_part.split(",") if name.strip()]
    return names, description.strip()


def error_entries(lines: list[str]) -> list[ErrorEntry]:
    """ERRORS entries in page order; an entry's tag may list several names ("EAGAIN or EWOULDBLOCK")."""
    entries: list[ErrorEntry] = []
    pending: tuple[str, ...] | None = None
    function = None
    for paragraph in paragraphs(_from_first_tag(lines)):
        names = tuple(dict.fromkeys(w for w in re.findall(r"E[A-Z0-9]+", paragraph.text) if w in ERRNO_NAMES))
        if pending is None and names and _is_tag(paragraph.text, names):
            pending = names
        elif pending is not None:
            entries.append(ErrorEntry(pending, paragraph.text.strip(), function))
            pending = None
        else:
            mentioned = re.search(r"\b([A-Za-z_]\w*)\(\)", paragraph.text)
            function = mentioned.group(1) if mentioned else None
    return entries


def _from_first_tag(lines: list[str]) -> list[str]:
    # The lines before the first `.TP` are an introduction ("open() can fail with …").
    for index, line in enumerate(lines):
        if macro_name(line) == "TP":
            return lines[index:]
    return []


def _is_tag(text: str, names: tuple[str, ...]) -> bool:
    # A tag is the errno names, glue words and the odd "(since Linux 4.5)" — not a sentence.
    rest = text
    for name in names:
        rest = rest.replace(name, "")
    rest = re.sub(r"\([^)]*\)", "", rest)
    return len(rest.strip(" ,.")) <= 12


def synopsis_headers(lines: list[str]) -> dict[str, list[str]]:
    """For each declared function, the headers of its include group that carry no comment.

    A group is a run of `#include` lines and the prototypes after it; an include with a comment
    ("/* Definition of AT_* constants */") only supplies constants, so it does not declare.
    """
    declared: dict[str, list[str]] = {}
    headers: list[str] = []
    seen_prototype = False
    for line in lines:
        if macro_name(line) in ("RS", "SH", "SS") or "Feature Test Macro" in line:
            break
        text = plain(" ".join(_line_words(line))) if macro_name(line) else plain(line)
        include = _INCLUDE.match(text)
        if include:
            if seen_prototype:
                headers, seen_prototype = [], False
            if not include.group(2).strip():
                headers.append(include.group(1))
            continue
        prototype = _PROTOTYPE.match(text)
        if prototype and not text.startswith((" ", "/*")):
            seen_prototype = True
            for header in headers:
                declared.setdefault(prototype.group(1), [])
                if header not in declared[prototype.group(1)]:
                    declared[prototype.group(1)].append(header)
    return declared


def _line_words(line: str) -> list[str]:
    # Font macros in the SYNOPSIS alternate quoted pieces with no space between them.
    if macro_name(line) in ("B", "I", "SM", "SB"):
        return [" ".join(macro_args(line))]
    if macro_name(line) in ("BR", "RB", "BI", "IB", "IR", "RI"):
        return ["".join(macro_args(line))]
    return [""]

"""A document's layout as extraction writes it: fenced code blocks, `#` heading lines and prose.

HTML extraction marks `<pre>` blocks with ``` fences and headings with `#` (as Markdown does), so
every later step can tell code from prose: the quality rules, boilerplate, sentences and terms read
the prose only, perplexity reads the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_FENCE = re.compile(r"\s*(```|~~~)")
_HEADING = re.compile(r"#{1,6}\s+(\S.*)")


def marked_lines(text: str) -> Iterator[tuple[str, bool]]:
    """Each line of `text` with whether it is code (inside a fenced block, or one of its fences)."""
    if not _has_fence(text):  # most documents: no per-line check needed
        yield from ((line, False) for line in text.split("\n"))
        return
    inside = False
    for line in text.split("\n"):
        fence = bool(_FENCE.match(line))
        if fence:
            inside = not inside
        yield line, inside or fence


def lines_outside_code(text: str) -> Iterator[str]:
    """The lines of `text` that are not inside (or fencing) a fenced code block."""
    if not _has_fence(text):
        return iter(text.split("\n"))
    return (line for line, code in marked_lines(text) if not code)


def prose_text(text: str) -> str:
    """`text` without its fenced code blocks (headings kept): what the prose statistics are taken on."""
    return "\n".join(lines_outside_code(text)) if _has_fence(text) else text


def _has_fence(text: str) -> bool:
    return "```" in text or "~~~" in text


def heading_of(line: str) -> str | None:
    """The heading text of a `# …` line, else None."""
    match = _HEADING.fullmatch(line.strip())
    return match.group(1).strip().rstrip("#").strip() if match else None


def headings(text: str) -> list[str]:
    """Every heading of the document (outside code), in order."""
    return [heading for line in lines_outside_code(text) if (heading := heading_of(line))]


def fenced(code: str) -> str:
    """`code` between ``` fences, its leading and trailing blank lines dropped."""
    body = code.strip("\n")
    return f"```\n{body}\n```"

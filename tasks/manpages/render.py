"""Rendering a page with groff to the plain text the corpus, summaries and excerpts are made of."""

from __future__ import annotations

import os
import re
import subprocess

from harness.errors import DomainbenchError

# A line length no paragraph reaches, so each paragraph comes out as one line (no wrapping, no
# hyphenation, left-adjusted: no padding spaces); -P-c/-b/-u turn off SGR, overstrike bold and
# underline, so the output is plain UTF-8 text. -k runs preconv for the few non-ASCII sources.
GROFF_ARGS = ["-k", "-K", "utf8", "-t", "-man", "-Tutf8", "-rLL=2000n", "-rHY=0", "-dAD=l", "-P-c", "-P-b", "-P-u"]
# Headings groff prints at column 0 (`.SH`); subsection headings (`.SS`) are indented 3.
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/()'&-]*$")
_BODY_INDENT = " " * 7


def _groff_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GROFF", "LC_", "MAN"))}
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "GROFF_NO_SGR": "1"})
    return env


def render_page(source: str) -> str:
    """The page as plain text: no running header/footer, trailing spaces and blank runs trimmed."""
    completed = subprocess.run(
        ["groff", *GROFF_ARGS], input=source.encode("utf-8"), capture_output=True, env=_groff_env(), check=False
    )
    if completed.returncode != 0:
        raise DomainbenchError(f"groff failed: {completed.stderr.decode('utf-8', 'replace')[:200]}")
    lines = [line.rstrip() for line in completed.stdout.decode("utf-8", "replace").splitlines()]
    return _tidy(_without_running_titles(lines))


def _without_running_titles(lines: list[str]) -> list[str]:
    # The first and last non-blank lines are the "rename(2) … rename(2)" header and the
    # "Linux man-pages 6.03  date  rename(2)" footer: they name the section, which the
    # section task must not see, and carry nothing else.
    nonblank = [index for index, line in enumerate(lines) if line.strip()]
    if len(nonblank) < 2:
        return lines
    return lines[nonblank[0] + 1 : nonblank[-1]]


def _tidy(lines: list[str]) -> str:
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def rendered_sections(text: str) -> dict[str, str]:
    """The rendered page's sections by heading (first occurrence), bodies dedented by 7."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if _HEADING.match(line):
            current = None if line in sections else sections.setdefault(line, [])
        elif current is not None:
            current.append(line[len(_BODY_INDENT):] if line.startswith(_BODY_INDENT) else line.strip())
    return {heading: "\n".join(body).strip("\n") for heading, body in sections.items()}


def bounded_paragraphs(body: str, max_chars: int) -> str:
    """Whole paragraphs from the start of `body` up to `max_chars` (at least one, cut at a sentence)."""
    kept: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if kept and sum(len(p) + 1 for p in kept) + len(paragraph) > max_chars:
            break
        kept.append(paragraph)
    text = "\n".join(kept)
    if len(text) <= max_chars:
        return text
    cut = max(text.rfind(". ", 0, max_chars), text.rfind(".\n", 0, max_chars))
    return text[: cut + 1] if cut > 0 else text[:max_chars]

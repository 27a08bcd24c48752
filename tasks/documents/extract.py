"""Extraction: a document's bytes → its title and plain text, Unicode repaired and normalised.

HTML goes through trafilatura (main text without navigation, headers and footers) after lxml has
marked its layout: code blocks (`<pre>`) fenced with ```, headings as `# …` lines, the lines that
documentation generators hide (mdBook's `class="boring"`, `hidden`) removed; its title is the first
heading of the main content (the `<title>` when there is none), and a meta-refresh page is a
redirect (its target kept, its text not extracted). PDF goes through pypdf (page text, pages joined
by blank lines); Markdown, reStructuredText and text are decoded
as they are. Bytes that are not UTF-8 are decoded as Windows-1252 (a superset of Latin-1 for
printable text) and counted; ftfy then repairs mojibake and normalises to NFC. A document that
cannot be read raises Unreadable with the reason, which the build reports and skips.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

import ftfy

from tasks.documents.layout import fenced

# Binary sniffing on the first bytes, as `file` and git do: a NUL byte, or many control characters.
_SNIFF_BYTES = 8192
_MAX_CONTROL_SHARE = 0.05
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Elements generators render but readers never see: mdBook's hidden code lines (`boring`), Sphinx
# and Docusaurus `hidden` classes, the HTML `hidden` attribute.
_HIDDEN = ("//*[contains(concat(' ', normalize-space(@class), ' '), ' boring ') or "
           "contains(concat(' ', normalize-space(@class), ' '), ' hidden ') or @hidden]")
_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\"\s]+)", re.IGNORECASE)
# Where a page's own heading is, most specific first (mdBook's menu bar has an <h1> of the book's name).
_MAIN_HEADINGS = ("//main//h1", "//article//h1", "//*[@role='main']//h1", "//h1")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


class Unreadable(Exception):
    """A document whose bytes give no text; the message says why."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    decoded_as: str          # utf-8, cp1252 (fallback), pdf or html (the extractor's own decoding)
    repaired: bool           # ftfy changed the text
    redirect: str = ""       # where a redirect page (meta refresh) sends the reader; '' for a real page


def extract(data: bytes, kind: str) -> Extracted:
    """Title (empty when the document has none) and normalised text of one document."""
    if kind == "pdf":
        title, text = _pdf_text(data)
        decoded_as = "pdf"
    elif kind == "html":
        _check_not_binary(data)
        tree = _html_tree(data)
        if target := _refresh_target(tree):
            return Extracted(title="", text="", decoded_as="html", repaired=False, redirect=target)
        title, text = _html_text(tree)
        decoded_as = "html"
    else:
        _check_not_binary(data)
        text, decoded_as = decode(data)
        title = _heading(text, kind)
    fixed = repair(text)
    return Extracted(title=_one_line(repair(title)), text=normalise_layout(fixed),
                     decoded_as=decoded_as, repaired=fixed != text)


def repair(text: str) -> str:
    """ftfy's repairs (mojibake, ligatures, curly quotes, NFC) on the lines that are not pure ASCII.

    ftfy works line by line anyway, in Python (~0.2 s for a 1 MB changelog); an ASCII line has
    nothing for it to repair, and skipping those makes extraction several times faster.
    """
    if text.isascii():
        return text
    return "\n".join(line if line.isascii() else ftfy.fix_text(line) for line in text.split("\n"))


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM dropped), else Windows-1252, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:  # five bytes cp1252 leaves undefined
        return data.decode("latin-1"), "latin-1"


def normalise_layout(text: str) -> str:
    """Unix line ends, no control characters, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _check_not_binary(data: bytes) -> None:
    head = data[:_SNIFF_BYTES]
    if b"\0" in head:
        raise Unreadable("binary content (NUL bytes)")
    if head and len(_CONTROL.findall(head.decode("latin-1"))) > _MAX_CONTROL_SHARE * len(head):
        raise Unreadable("binary content (control characters)")


def _html_tree(data: bytes):
    import lxml.html
    from lxml.etree import ParserError

    try:
        return lxml.html.fromstring(data)
    except (ParserError, ValueError) as exc:
        raise Unreadable(f"HTML cannot be parsed: {type(exc).__name__}: {exc}") from exc


def _refresh_target(tree) -> str:
    """The URL a `<meta http-equiv="refresh" content="0; URL=…">` sends the reader to; '' without one
    (a refresh without a URL only reloads the page itself)."""
    for meta in tree.iter("meta"):
        if (meta.get("http-equiv") or "").lower() == "refresh":
            target = _REFRESH_URL.search(meta.get("content") or "")
            if target:
                return target.group(1)
    return ""


def _html_text(tree) -> tuple[str, str]:
    import trafilatura

    title = _title(tree)
    _mark_layout(tree)
    try:
        text = trafilatura.extract(tree, include_comments=False, include_tables=True)
    except Exception as exc:  # lxml and trafilatura raise many types on broken markup; one file must not stop a build
        raise Unreadable(f"HTML cannot be parsed: {type(exc).__name__}: {exc}") from exc
    if not text:
        raise Unreadable("HTML without main text (trafilatura found none)")
    return title, text


def _title(tree) -> str:
    """The main content's first `<h1>` (the page's own heading), else the `<title>` (often "page - site")."""
    for path in _MAIN_HEADINGS:
        heading = next((h.text_content() for h in tree.xpath(path) if h.text_content().strip()), "")
        if heading:
            return heading
    title = tree.find(".//title")
    return title.text_content() if title is not None else ""


def _mark_layout(tree) -> None:
    """Hidden lines out, `<pre>` blocks fenced, headings as `#` lines: trafilatura's plain text keeps the marks."""
    for element in tree.xpath(_HIDDEN):
        element.drop_tree()
    for block in tree.iter("pre"):
        code = block.text_content()
        for child in list(block):
            block.remove(child)
        block.text = fenced(code)
    for level in range(1, 7):
        for heading in tree.iter(f"h{level}"):
            text = " ".join(heading.text_content().split())
            for child in list(heading):
                heading.remove(child)
            heading.text = f"{'#' * level} {text}" if text else ""


def _pdf_text(data: bytes) -> tuple[str, str]:
    import pypdf

    # pypdf logs every malformed object it works around; the build reports what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Unreadable("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata or {}).get("/Title") or ""
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError…) on damaged files
        raise Unreadable(f"PDF cannot be read: {type(exc).__name__}: {exc}") from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise Unreadable("PDF without a text layer (scanned? no OCR here)")
    return str(title), text


def _heading(text: str, kind: str) -> str:
    """The first heading of Markdown (`# …`, or underlined) and reStructuredText (underlined); '' for text."""
    if kind not in ("markdown", "rst"):
        return ""
    lines = text.splitlines()[:200]
    for number, line in enumerate(lines):
        if kind == "markdown" and re.match(r"#{1,3}\s+\S", line):
            return line.lstrip("#").strip().rstrip("#").strip()
        underline = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if line.strip() and len(underline) >= 3 and set(underline) <= set("=-~^*#") and len(set(underline)) == 1:
            return line.strip()
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]

"""Reading man(7) roff markup: escapes, font macros, sections and filled paragraphs.

Only what the example makers need: text with the font of every run (bold and italic carry the
entity labels), cut into the paragraphs groff would fill. Preformatted blocks and tables are
skipped, since their line structure is not prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROMAN, BOLD, ITALIC = "R", "B", "I"

# Named glyphs seen in man-pages 6.03, rendered the way `groff -Tutf8` prints them here, so that
# text from the markup matches the rendered corpus text. Unknown glyphs are dropped.
GLYPHS = {
    "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'", "em": "—", "en": "–",
    "bu": "•", "co": "©", "rg": "®", "tm": "™", "ti": "~", "ha": "^", "mu": "×", "<=": "≤",
    ">=": "≥", "rs": "\\", "ga": "`", "bv": "|", "pl": "+", "+-": "±", "->": "→", "<-": "←",
    "hy": "-", "mi": "-", "ba": "|", "sl": "/", "at": "@", "sh": "#", "Do": "$", "eq": "=",
    "ul": "_", "ob": "<", "cb": ">", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "de": "°",
    "ss": "ß", ":u": "ü", ":o": "ö", ":a": "ä", "'e": "é", "`e": "è", "12": "½", "14": "¼",
}
STRINGS = {"lq": '"', "rq": '"', "R": "®", "Tm": "™"}

FONT_MACROS = {
    "B": (BOLD,), "I": (ITALIC,), "SB": (BOLD,), "SM": (ROMAN,),
    "BR": (BOLD, ROMAN), "RB": (ROMAN, BOLD), "BI": (BOLD, ITALIC),
    "IB": (ITALIC, BOLD), "IR": (ITALIC, ROMAN), "RI": (ROMAN, ITALIC),
}
# Requests after which groff starts a new filled paragraph (or a tagged one).
PARAGRAPH_BREAKS = {"PP", "P", "LP", "TP", "IP", "HP", "TQ", "sp", "br", "SS", "SH", "RS", "RE", "in", "bp"}
# Blocks whose line layout is the content (code, tables): not prose, not sentences.
VERBATIM_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN"}

_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\[(?P<fb>[^\]]*)\]|\((?P<fp>..)|(?P<fc>.))    # font change
      | \((?P<gp>..) | \[(?P<gb>[^\]]*)\]                 # named glyph
      | \*(?:\((?P<sp>..)|\[(?P<sb>[^\]]*)\]|(?P<sc>.))   # string
      | s[-+]?(?:\d|\[[^\]]*\]|\(\d\d)                    # size change
      | n[-+]?(?:\(..|\[[^\]]*\]|.)                       # register
      | [hvwoXlLNDbxSRHZkz]'[^']*'                       # drawing/motion with quoted argument
      | (?P<other>.)
    )""",
    re.VERBOSE,
)
_SIMPLE = {"-": "-", "e": "\\", "\\": "\\", "~": " ", " ": " ", "0": " ", "'": "'", "`": "`", ".": "."}


@dataclass(frozen=True)
class Run:
    """A piece of text in one font."""

    text: str
    font: str


def _font_code(name: str) -> str:
    if name in ("B", "CB", "BI"):
        return BOLD
    if name in ("I", "CI"):
        return ITALIC
    return ROMAN


def decode_runs(text: str, font: str = ROMAN) -> list[Run]:
    """Runs of `text` with roff escapes resolved; `\\fX` changes the font of what follows."""
    runs: list[Run] = []
    previous, pieces, last = font, [], 0

    def flush() -> None:
        if pieces:
            runs.append(Run("".join(pieces), font))
            pieces.clear()

    for match in _ESCAPE.finditer(text):
        pieces.append(text[last:match.start()])
        last = match.end()
        change = match.group("fb") if match.group("fb") is not None else match.group("fp") or match.group("fc")
        if change is not None:
            flush()
            new_font = previous if change in ("P", "") else _font_code(change)
            previous, font = font, new_font
        elif match.group("gp") or match.group("gb"):
            pieces.append(GLYPHS.get(match.group("gp") or match.group("gb"), ""))
        elif match.group("sp") or match.group("sb") or match.group("sc"):
            pieces.append(STRINGS.get(match.group("sp") or match.group("sb") or match.group("sc"), ""))
        elif match.group("other") is not None:
            pieces.append(_SIMPLE.get(match.group("other"), ""))
    pieces.append(text[last:])
    flush()
    return [run for run in runs if run.text]


def plain(text: str) -> str:
    """`text` with escapes resolved and fonts dropped."""
    return "".join(run.text for run in decode_runs(text))


def strip_comment(line: str) -> str:
    """The line without a trailing `\\"` comment (a `\\\\"` is an escaped backslash, kept)."""
    match = re.search(r'(?<!\\)(?:\\\\)*\\"', line)
    return line if match is None else line[: match.start() + len(match.group()) - 2]


def macro_name(line: str) -> str | None:
    """The request or macro name of a control line (`.TP` → "TP"), None for a text line."""
    if not line or line[0] not in ".'":
        return None
    parts = line[1:].strip().split(None, 1)
    return parts[0] if parts else ""


def macro_args(line: str) -> list[str]:
    """The arguments of a control line, with roff's quoting (`""` inside quotes is a quote)."""
    rest = line[1:].strip().split(None, 1)
    rest = rest[1] if len(rest) > 1 else ""
    args, i = [], 0
    while i < len(rest):
        if rest[i] in " \t":
            i += 1
        elif rest[i] == '"':
            j, piece = i + 1, []
            while j < len(rest):
                if rest[j] == '"' and rest[j + 1 : j + 2] == '"':
                    piece.append('"')
                    j += 2
                elif rest[j] == '"':
                    break
                else:
                    piece.append(rest[j])
                    j += 1
            args.append("".join(piece))
            i = j + 1
        else:
            j = i
            while j < len(rest) and rest[j] not in " \t":
                j += 1
            args.append(rest[i:j])
            i = j
    return args


def line_runs(line: str) -> list[Run] | None:
    """Runs a text line or a font macro contributes; None for any other request."""
    name = macro_name(line)
    if name is None:
        return decode_runs(line)
    if name not in FONT_MACROS:
        return None
    fonts, args = FONT_MACROS[name], macro_args(line)
    if len(fonts) == 1:
        return decode_runs(" ".join(args), fonts[0])
    runs: list[Run] = []
    for index, arg in enumerate(args):
        runs.extend(decode_runs(arg, fonts[index % 2]))
    return runs


def raw_sections(source: str) -> dict[str, list[str]]:
    """The page's lines by `.SH` heading (first occurrence of each), comments and blanks removed."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in source.splitlines():
        line = strip_comment(raw).rstrip()
        if not line or line in (".", "'"):
            continue
        if macro_name(line) == "SH":
            heading = " ".join(plain(arg) for arg in macro_args(line)).strip().upper()
            current = None if heading in sections else sections.setdefault(heading, [])
        elif current is not None:
            current.append(line)
    return sections


def th_fields(source: str) -> list[str]:
    """The arguments of the `.TH` line (title, section, date, source, …), empty if none."""
    for raw in source.splitlines():
        if macro_name(raw) == "TH":
            return macro_args(raw)
    return []


@dataclass
class Paragraph:
    """A filled paragraph: its text and the bold/italic spans, as char offsets into it."""

    text: str
    styled: list[tuple[int, int, str]]
    line_ends: list[int]  # offsets where an input line ended (sentence boundaries lie there)


def _close(lines: list[list[Run]], joins: list[bool]) -> Paragraph | None:
    text, styled, line_ends = "", [], []
    for runs, glued in zip(lines, joins):
        if text and not glued:
            text += " "
        for run in runs:
            if run.font != ROMAN and run.text.strip():
                styled.append((len(text), len(text) + len(run.text), run.font))
            text += run.text
        line_ends.append(len(text))
    return Paragraph(text, styled, line_ends) if text.strip() else None


def paragraphs(lines: list[str], *, tags: bool = True) -> list[Paragraph]:
    """Filled paragraphs of a section, verbatim blocks skipped; a `.TP` tag is its own paragraph."""
    result: list[Paragraph] = []
    current: list[list[Run]] = []
    joins: list[bool] = []
    glue, pending_font, skip_until = False, None, None

    def end_paragraph() -> None:
        paragraph = _close(current, joins) if current else None
        if paragraph is not None:
            result.append(paragraph)
        current.clear()
        joins.clear()

    tag_next = False
    for line in lines:
        name = macro_name(line)
        if skip_until is not None:
            skip_until = None if name == skip_until else skip_until
            continue
        if name in VERBATIM_BLOCKS:
            end_paragraph()
            skip_until = VERBATIM_BLOCKS[name]
            continue
        if name in ("B", "I") and not macro_args(line):
            pending_font = BOLD if name == "B" else ITALIC
            continue
        runs = decode_runs(line, pending_font) if pending_font and name is None else line_runs(line)
        pending_font = None
        if runs is None:
            if name in PARAGRAPH_BREAKS:
                end_paragraph()
                tag_next = name == "TP"
            continue
        current.append(runs)
        joins.append(glue)
        # `\c` at the end of an input line glues the next line on without a space.
        glue = line.endswith("\\c")
        if tag_next:
            if tags:
                end_paragraph()
            else:
                current.clear()
                joins.clear()
            tag_next = False
    end_paragraph()
    return result

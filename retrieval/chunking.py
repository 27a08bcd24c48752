"""Chunking documents by section and paragraph within a token budget, with overlap.

A document splits at its headings first — man-page headings that groff prints at column 0 in
capitals (NAME, SYNOPSIS, ERRORS), or Markdown `#` headings — then each section's body is cut
into windows of at most `max_tokens` encoder tokens. A window ends at the last paragraph break
that fits, else a line break, a sentence end, a word break, and only as a last resort inside a
word. Consecutive windows of a section share about `overlap_tokens` tokens, so a fact that
straddles a cut is whole in one of them.

Tokens are counted with the encoder's own tokenizer (a fast tokenizer: its offset mapping ties
every token to characters), so a chunk never exceeds what the encoder reads, and each chunk's
`start:end` slices its exact text out of the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from harness.errors import DomainbenchError
from retrieval.corpus import Document

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 32

_MAN_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/()'&-]*[A-Z)]$", re.MULTILINE)
_MARKDOWN_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SENTENCE_END = ".?!:;"

# How good a place to cut between two tokens is; higher is better.
_INSIDE_WORD, _WORD_BREAK, _SENTENCE_BREAK, _LINE_BREAK, _PARAGRAPH_BREAK = range(5)


@dataclass(frozen=True)
class ChunkingSettings:
    """Token budget and overlap; recorded in the index manifest (a change rebuilds the index)."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise DomainbenchError(f"chunk size {self.max_tokens}: expected at least 8 tokens")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise DomainbenchError(f"chunk overlap {self.overlap_tokens}: expected 0 to half the chunk size "
                                   f"({self.max_tokens // 2})")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A window of one document section; `document.text[start:end] == text`."""

    chunk_id: str
    doc_id: str
    title: str
    section: str
    start: int
    end: int
    text: str

    def passage(self) -> str:
        """What the encoder embeds: the text, whitespace compacted, under its title and section."""
        heading = " — ".join(part for part in (self.title, self.section) if part)
        return f"{heading}\n{compact_whitespace(self.text)}" if heading else compact_whitespace(self.text)

    def as_dict(self) -> dict:
        return asdict(self)


def compact_whitespace(text: str) -> str:
    """Text without the indentation and space runs of rendered pages (they cost LLM tokens)."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()


def chunk_corpus(documents: list[Document], tokenizer, settings: ChunkingSettings) -> list[Chunk]:
    """Every document's chunks, in document order."""
    return [chunk for document in documents for chunk in chunk_document(document, tokenizer, settings)]


def chunk_document(document: Document, tokenizer, settings: ChunkingSettings) -> list[Chunk]:
    """One document's chunks, ids `<doc_id>#<n>` numbered from 0."""
    sections = list(document_sections(document))
    if not sections:
        return []
    encodings = tokenizer([document.text[start:end] for _, start, end in sections],
                          add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    chunks: list[Chunk] = []
    for (section, start, end), offsets in zip(sections, encodings["offset_mapping"]):
        spans = [(start + a, start + b) for a, b in offsets if b > a]
        for first, last in token_windows(document.text, spans, settings):
            char_start, char_end = spans[first][0], spans[last - 1][1]
            chunks.append(Chunk(chunk_id=f"{document.doc_id}#{len(chunks)}", doc_id=document.doc_id,
                                title=document.title, section=section, start=char_start, end=char_end,
                                text=document.text[char_start:char_end]))
    return chunks


def document_sections(document: Document) -> Iterator[tuple[str, int, int]]:
    """(heading, body start, body end) for each non-blank section; text before the first heading
    goes under the document's own section label."""
    text = document.text
    headings = sorted([(m.start(), m.end(), m.group(0).strip()) for m in _MAN_HEADING.finditer(text)]
                      + [(m.start(), m.end(), m.group(1).strip()) for m in _MARKDOWN_HEADING.finditer(text)])
    bounds = [(0, 0, document.section), *headings, (len(text), len(text), "")]
    for (_, body_start, name), (next_start, _, _) in zip(bounds, bounds[1:]):
        if text[body_start:next_start].strip():
            yield name, body_start, next_start


def token_windows(text: str, spans: list[tuple[int, int]], settings: ChunkingSettings) -> Iterator[tuple[int, int]]:
    """[first, last) token ranges covering `spans`, each at most max_tokens long, overlapping."""
    breaks = [_break_quality(text, spans, i) for i in range(len(spans))]
    first, n = 0, len(spans)
    while first < n:
        last = _window_end(breaks, first, min(first + settings.max_tokens, n))
        yield first, last
        if last == n:
            return
        first = _overlap_start(breaks, first, last, settings.overlap_tokens)


def _window_end(breaks: list[int], first: int, limit: int) -> int:
    """The best cut in the second half of the window (so chunks stay reasonably full)."""
    if limit == len(breaks):
        return limit
    earliest = first + max(1, (limit - first) // 2)
    for quality in (_PARAGRAPH_BREAK, _LINE_BREAK, _SENTENCE_BREAK, _WORD_BREAK):
        for cut in range(limit, earliest - 1, -1):
            if breaks[cut] >= quality:
                return cut
    return limit


def _overlap_start(breaks: list[int], first: int, last: int, overlap: int) -> int:
    """Start of the next window: the first sentence (else word) start among the last `overlap`
    tokens of this one, so the shared text reads from a natural place."""
    earliest = max(last - overlap, first + 1)
    for quality in (_SENTENCE_BREAK, _WORD_BREAK):
        for start in range(earliest, last):
            if breaks[start] >= quality:
                return start
    return last


def _break_quality(text: str, spans: list[tuple[int, int]], index: int) -> int:
    """How good a cut just before token `index` is, judged from the characters between tokens."""
    if index == 0:
        return _PARAGRAPH_BREAK
    previous_end, start = spans[index - 1][1], spans[index][0]
    gap = text[previous_end:start]
    if not gap:
        return _INSIDE_WORD
    newlines = gap.count("\n")
    if newlines >= 2:
        return _PARAGRAPH_BREAK
    if newlines == 1:
        return _LINE_BREAK
    if text[previous_end - 1] in _SENTENCE_END:
        return _SENTENCE_BREAK
    return _WORD_BREAK

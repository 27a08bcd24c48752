"""Boilerplate: prose lines that many documents share (navigation, help overlays, footers, licences).

As CCNet does (Wenzek et al. 2020), every line is normalised (lower case, spacing folded; digits
kept, unlike CCNet, since `# E0001` and `# E0002` are different pages) and hashed;
a line whose hash is in at least `min_share` of all documents (and at least `min_documents` of
them) is boilerplate and is removed from every document before the quality filters run. Code blocks are left alone — `}` in every example is code, not boilerplate —
and so is a line that holds no letters (it says nothing either way).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from tasks.documents.layout import lines_outside_code, marked_lines

_LETTER = re.compile(r"[^\W\d_]")


def line_key(line: str) -> int | None:
    """A stable 64-bit hash of the normalised line; None for a line without letters."""
    if not _LETTER.search(line):
        return None
    # str methods, not a regex: this runs on every line of every document, twice.
    folded = " ".join(line.lower().split())
    return int.from_bytes(hashlib.blake2b(folded.encode("utf-8"), digest_size=8).digest(), "big")


def line_keys(text: str) -> frozenset[int]:
    """The distinct prose-line keys of one document (each document counts a line once)."""
    return frozenset(key for line in set(lines_outside_code(text)) if (key := line_key(line)) is not None)


@dataclass
class LineFrequency:
    """How many documents hold each prose line, accumulated one document at a time."""

    documents: int = 0
    counts: Counter = field(default_factory=Counter)

    def add(self, keys: frozenset[int]) -> None:
        self.documents += 1
        self.counts.update(keys)

    def boilerplate(self, *, min_share: float, min_documents: int) -> frozenset[int]:
        floor = max(min_documents, min_share * self.documents)
        return frozenset(key for key, n in self.counts.items() if n >= floor)


def remove_boilerplate(text: str, boilerplate: frozenset[int]) -> tuple[str, list[str]]:
    """(`text` without its boilerplate prose lines, the lines removed); code blocks are kept whole."""
    if not boilerplate:
        return text, []
    kept, removed = [], []
    for line, code in marked_lines(text):
        if not code and line_key(line) in boilerplate:
            removed.append(line.strip())
        else:
            kept.append(line)
    return "\n".join(kept).strip(), removed

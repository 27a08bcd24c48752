"""Whole-word matching of normalised text: the one rule the leakage check and retrieval filters share.

Two texts match when one holds the other as a run of whole words, case, Unicode compatibility
forms and punctuation ignored — so "tune kernel clock" is found in "adjtimex - tune kernel clock."
and not in "fine-tune kernel clocks".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

_NON_WORD = re.compile(r"[^\w]+")


def normalized(text: str) -> str:
    """Lower case, Unicode-compatible forms folded, every run of non-word characters one space.

    The result starts and ends with a space, so `normalized(a) in normalized(b)` is a
    whole-word containment test.
    """
    return " " + _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip() + " "


def contains_phrase(haystack: str, phrase: str) -> bool:
    """Whether `haystack` holds `phrase` as whole words (both raw text); an empty phrase matches nothing."""
    key = normalized(phrase)
    return key.strip() != "" and key in normalized(haystack)


class Passage(Protocol):
    """What a retrieved chunk shows (retrieval.retriever.Hit)."""

    doc_id: str
    title: str
    section: str
    text: str


@dataclass(frozen=True)
class Exclusion:
    """Chunks one query may not retrieve: every chunk of `doc_ids`, and any chunk holding one of `phrases`.

    This is how retrieval keeps a test label away from the model: the example's own source
    document is skipped, and so is any other passage that quotes its reference text word for
    word (whole words, case and punctuation ignored).
    """

    doc_ids: frozenset[str] = frozenset()
    phrases: tuple[str, ...] = ()

    def excludes(self, hit: Passage) -> bool:
        return hit.doc_id in self.doc_ids or any(contains_phrase(passage_text(hit), p) for p in self.phrases)


def passage_text(hit: Passage) -> str:
    """Everything of a chunk that a RAG prompt can show: its heading and its text."""
    return f"{hit.title} {hit.section}\n{hit.text}"

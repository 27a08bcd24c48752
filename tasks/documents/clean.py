"""Cleaning: the quality filters a document must pass, each drop counted by its reason.

The checks run in this order and a document is dropped by the first it fails: empty, redirect
(a meta-refresh page, or a short page that says it has moved), too short, too long, symbol share,
alphabetic words, repeated lines, top bigram, duplicated 5-grams, language. The repetition and
word checks are the Gopher rules (Rae et al. 2021, as FineWeb's pipelines run them), taken on the
prose only: fenced code blocks (layout.py) repeat `}` and are mostly symbols by nature, and a
code-heavy reference page must not be dropped for it. Thresholds are loosened where technical
prose is not web prose (option tables and paths are symbols and non-words). Every threshold is a
`suite new` flag. A drop carries the value it measured, so audit/dropped.jsonl shows how far over
the threshold a document was.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tasks.documents.layout import prose_text

# The reasons a document is dropped, in the order they are checked.
DROP_REASONS = ("empty", "redirect", "too_short", "too_long", "symbols", "non_words", "repeated_lines", "top_bigram",
                "duplicated_5grams", "language")
# Lingua's low-accuracy mode: ~8 ms a document and ~120 MB (the high-accuracy mode: ~45 ms, ~0.9 GB).
LANGUAGE_SAMPLE_CHARS = 2000

_SPACE = re.compile(r"\s")
_SYMBOL = re.compile(r"[^\w\s]")
_WORD_WITH_LETTER = re.compile(r"\S*[^\W\d_]\S*")  # one match per whitespace-separated word holding a letter
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# International (+44 20 7946 0958) and North-American ((555) 123-4567, 555.123.4567) numbers:
# digit groups with separators, so versions (2.38.1), dates (2024-01-31) and plain integers stay.
# A stub says the page moved; only a short page can be one (a long page mentioning a redirect is not).
_STUB = re.compile(r"\b(?:redirect(?:ing|ed)? to|(?:page|document|content) (?:has|have) (?:been )?moved|"
                   r"this is an old link|(?:has|have) moved to|moved permanently)\b", re.IGNORECASE)
STUB_MAX_WORDS = 150
_PHONE = re.compile(r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w.-])")


@dataclass(frozen=True)
class CleaningConfig:
    """Thresholds of the filters (defaults documented in README.md and `suite new --help`)."""

    min_words: int = 30
    max_chars: int = 1_000_000
    max_symbol_share: float = 0.3           # non-alphanumeric, non-space characters / non-space characters
    min_word_share: float = 0.6             # words holding a letter / words (Gopher: 0.8)
    max_repeated_line_share: float = 0.3    # lines equal to an earlier line / lines (Gopher: 0.3)
    max_top_bigram_share: float = 0.2       # characters of the most frequent word bigram / all (Gopher: 0.2)
    max_duplicated_5gram_share: float = 0.15  # characters in repeated word 5-grams / all (Gopher: 0.15)
    languages: tuple[str, ...] = ("en",)    # ISO 639-1 codes kept; () keeps every language
    boilerplate_share: float = 0.2          # a prose line in at least this share of documents is removed…
    boilerplate_min_documents: int = 5      # …when that is at least this many documents (boilerplate.py)
    scrub_pii: bool = False


@dataclass(frozen=True)
class Drop:
    """Why a document was dropped: the rule (one of DROP_REASONS) and the value it measured."""

    reason: str
    value: float | str


def drop_reason(text: str, config: CleaningConfig) -> Drop | None:
    """The first filter `text` fails, with its measured value; None when it passes them all."""
    words = text.split()
    if not words:
        return Drop("empty", 0)
    if len(words) <= STUB_MAX_WORDS and (stub := _STUB.search(text)):
        return Drop("redirect", stub.group())
    if len(words) < config.min_words:
        return Drop("too_short", len(words))
    if len(text) > config.max_chars:
        return Drop("too_long", len(text))
    return _prose_drop(prose_text(text), config)


def _prose_drop(prose: str, config: CleaningConfig) -> Drop | None:
    """The Gopher rules on the prose (code blocks left out); a page of code alone passes them."""
    words = prose.split()
    if not words:
        return None
    measures = (
        ("symbols", lambda: symbol_share(prose), lambda v: v > config.max_symbol_share),
        ("non_words", lambda: len(_WORD_WITH_LETTER.findall(prose)) / len(words), lambda v: v < config.min_word_share),
        ("repeated_lines", lambda: repeated_line_share(prose), lambda v: v > config.max_repeated_line_share),
        ("top_bigram", lambda: top_ngram_share(words, 2), lambda v: v > config.max_top_bigram_share),
        ("duplicated_5grams", lambda: duplicated_ngram_share(words, 5), lambda v: v > config.max_duplicated_5gram_share),
    )
    for reason, measure, fails in measures:
        if fails(value := measure()):
            return Drop(reason, round(value, 3))
    return None


def symbol_share(text: str) -> float:
    """Characters that are neither letters, digits, `_` nor space / characters that are not space."""
    visible = len(_SPACE.sub("", text))
    return (len(text) - len(_SYMBOL.sub("", text))) / visible if visible else 0.0


def repeated_line_share(text: str) -> float:
    """Share of non-blank lines that repeat an earlier line (compared without surrounding spaces)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def top_ngram_share(words: list[str], n: int) -> float:
    """Characters covered by the most frequent word n-gram's occurrences / characters of all words."""
    total = sum(len(word) for word in words)
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams or not total:
        return 0.0
    gram, count = grams.most_common(1)[0]
    return count * sum(len(word) for word in gram) / total if count > 1 else 0.0


def duplicated_ngram_share(words: list[str], n: int) -> float:
    """Characters of the words inside a repeat of an earlier word n-gram / characters of all words."""
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    if len(words) < n or not lengths.sum():
        return 0.0
    # Vectorised: an n-gram (by its tuple's hash) is a repeat unless it is its hash's first occurrence;
    # a repeat starting at i covers words i..i+n-1 (+1 at i, -1 at i+n, running sum > 0).
    hashes = np.fromiter(map(hash, zip(*(words[i:] for i in range(n)))), dtype=np.int64)
    first = np.zeros(len(hashes), dtype=bool)
    first[np.unique(hashes, return_index=True)[1]] = True
    starts = np.flatnonzero(~first)
    marks = np.zeros(len(words) + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, starts + n, -1)
    covered = np.cumsum(marks[:-1]) > 0
    return float(lengths[covered].sum() / lengths.sum())


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """E-mail addresses → `<email>`, phone numbers → `<phone>`; with how many of each were replaced."""
    text, emails = _EMAIL.subn("<email>", text)
    text, phones = _PHONE.subn("<phone>", text)
    return text, {"email": emails, "phone": phones}


_detector = None


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language by lingua (offline), or "unknown"."""
    global _detector
    if _detector is None:  # one per worker process, built on first use (the models load lazily)
        from lingua import LanguageDetectorBuilder

        _detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    language = _detector.detect_language_of(text[:LANGUAGE_SAMPLE_CHARS])
    return language.iso_code_639_1.name.lower() if language is not None else "unknown"

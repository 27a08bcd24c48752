"""Cleaning: the quality filters a document must pass, each drop counted by its reason.

The checks run in this order and a document is dropped by the first it fails: empty, too short,
too long, symbol share, alphabetic words, repeated lines, top bigram, duplicated 5-grams,
language. The repetition and word checks are the Gopher rules (Rae et al. 2021, as FineWeb's
pipelines run them) with thresholds loosened where technical documentation is not web prose:
code, option tables and paths are symbols and non-words. Every threshold is a `suite new` flag.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

# The reasons a document is dropped, in the order they are checked.
DROP_REASONS = ("empty", "too_short", "too_long", "symbols", "non_words", "repeated_lines", "top_bigram",
                "duplicated_5grams", "language")
# Lingua's low-accuracy mode: ~8 ms a document and ~120 MB (the high-accuracy mode: ~45 ms, ~0.9 GB).
LANGUAGE_SAMPLE_CHARS = 2000

_SPACE = re.compile(r"\s")
_SYMBOL = re.compile(r"[^\w\s]")
_WORD_WITH_LETTER = re.compile(r"\S*[^\W\d_]\S*")  # one match per whitespace-separated word holding a letter
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# International (+44 20 7946 0958) and North-American ((555) 123-4567, 555.123.4567) numbers:
# digit groups with separators, so versions (2.38.1), dates (2024-01-31) and plain integers stay.
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
    scrub_pii: bool = False


def drop_reason(text: str, config: CleaningConfig) -> str | None:
    """The first filter `text` fails (one of DROP_REASONS), or None when it passes them all."""
    words = text.split()
    if not words:
        return "empty"
    if len(words) < config.min_words:
        return "too_short"
    if len(text) > config.max_chars:
        return "too_long"
    if symbol_share(text) > config.max_symbol_share:
        return "symbols"
    if len(_WORD_WITH_LETTER.findall(text)) / len(words) < config.min_word_share:
        return "non_words"
    if repeated_line_share(text) > config.max_repeated_line_share:
        return "repeated_lines"
    if top_ngram_share(words, 2) > config.max_top_bigram_share:
        return "top_bigram"
    if duplicated_ngram_share(words, 5) > config.max_duplicated_5gram_share:
        return "duplicated_5grams"
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

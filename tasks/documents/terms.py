"""Domain terms: words and two-word phrases far more frequent in the training documents than in general English.

Method (keyness against a reference corpus, as in corpus linguistics; Kilgarriff 2009):

- candidates are words of 3 to 30 characters that start with a letter (letters, digits, `-`, `_`),
  in the prose (not in code blocks, e-mail addresses, URLs or paths like `src/main.rs`, and not
  in template sentences that many documents share), counted case-insensitively over the
  *training* documents only, so test documents add nothing to the term list;
- two-word candidates ("borrow checker", "trait object") are adjacent words of one sentence, each
  of 3 or more letters and neither among English's 400 most frequent words (wordfreq's top list:
  "the compiler" is no term); they compete with single words on the same keyness, their English
  frequency being wordfreq's estimate for the phrase — an upper bound, so a phrase must be
  plainly domain-specific to pass; a word met mostly (SUBSUMED_SHARE) inside a chosen phrase
  gives way to that phrase (`checker` to `borrow checker`);
- placeholder names of examples (`foo`, `bar`, `baz`…, the metasyntactic variables) are never
  terms, however often the examples use them;
- the reference is wordfreq's large English list (wordfreq 3.x: Wikipedia, subtitles, news, books,
  web text, Reddit and Twitter, shipped offline in the wheel), a word's frequency floored at 1e-8
  (the list's smallest) so words it has never seen are finite;
- a term must be in at least `min_docs` documents (not one document's private identifier) and at
  least `min_ratio` times as frequent here as in English: p_domain / p_english ≥ min_ratio;
- terms are ranked by keyness = documents × ln(p_domain / p_english), which favours words that are
  rare in general text and spread over many documents — weighting by documents rather than
  occurrences keeps one long changelog's contributor names off the list — and the top `count`
  are kept. Each keeps its most frequent spelling (`systemd`, `GnuTLS`).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from tasks.documents.examples import SENTENCE_CHARS, sentence_key, split_sentences
from tasks.documents.layout import lines_outside_code

# A word is not part of a longer one: "doesn't" gives no "doesn", "foo-bar" is one word.
WORD = re.compile(r"(?<![\w'’-])[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*(?![\w'’-])")
# Two words one space apart (the second in a lookahead, so pairs overlap: "a b c" gives a b, b c);
# a period or a line end between them breaks the pair.
_PAIR = re.compile(rf"({WORD.pattern}) (?=({WORD.pattern}))")
# Addresses are not terms: their parts (com, org, gmail, a maintainer's login) would top the list.
_ADDRESS = re.compile(r"\S+@\S+|\b(?:https?|ftp)://\S+|\bwww\.\S+")
# Paths (src/main.rs, /usr/lib, ../book): their parts are where files sit, not what the domain says.
_PATH = re.compile(r"(?<!\S)[~.]{0,2}/?(?:[\w.-]+/)+[\w.-]*")
# The metasyntactic variables of examples (RFC 3092 and the usual followers, Japanese hoge/fuga/piyo).
PLACEHOLDERS = frozenset({"foo", "bar", "baz", "qux", "quux", "quuz", "corge", "grault", "garply", "waldo", "fred",
                          "plugh", "xyzzy", "thud", "foobar", "foobaz", "hoge", "fuga", "piyo", "spam", "eggs"})
MIN_LENGTH, MAX_LENGTH = 3, 30
ENGLISH_FLOOR = 1e-8
COMMON_WORDS = 400
SUBSUMED_SHARE = 0.8


@dataclass(frozen=True)
class Term:
    term: str            # most frequent spelling
    count: int           # occurrences in the training documents
    documents: int       # training documents holding it
    domain_per_million: float
    english_per_million: float
    keyness: float


def document_words(text: str, templates: frozenset[int] = frozenset()) -> Counter:
    """Occurrences of each candidate word (as spelled) in one document's own prose: code blocks, template
    sentences (their keys in `templates`), e-mail addresses, URLs and paths left out."""
    lines = (_without_templates(line, templates) for line in lines_outside_code(text))
    prose = _PATH.sub(" ", _ADDRESS.sub(" ", "\n".join(lines)))
    words = Counter(word for word in WORD.findall(prose) if MIN_LENGTH <= len(word) <= MAX_LENGTH)
    excluded = _excluded_words()
    words.update(f"{first} {second}" for first, second in _PAIR.findall(prose)
                 if len(first) >= MIN_LENGTH and len(second) >= MIN_LENGTH
                 and first.lower() not in excluded and second.lower() not in excluded)
    return words


def _without_templates(line: str, templates: frozenset[int]) -> str:
    """The line less its template sentences (a line shorter than any sentence holds none)."""
    if not templates or len(line) < SENTENCE_CHARS[0]:
        return line
    return " ".join(sentence for sentence in split_sentences(line) if sentence_key(sentence) not in templates)


@functools.cache
def _excluded_words() -> frozenset[str]:
    """English's most frequent words and the placeholders: no part of a two-word term."""
    from wordfreq import top_n_list

    return frozenset(top_n_list("en", COMMON_WORDS)) | PLACEHOLDERS


@dataclass
class TermCounts:
    """Counts accumulated one training document at a time."""

    spellings: Counter = field(default_factory=Counter)   # spelling -> occurrences
    documents: Counter = field(default_factory=Counter)   # lower case -> documents
    words: int = 0                                         # all words of the training documents

    def add(self, words: Counter, n_words: int) -> None:
        self.spellings.update(words)
        self.documents.update({word.lower() for word in words})
        self.words += n_words


def select_terms(counts: TermCounts, *, count: int, min_docs: int, min_ratio: float) -> list[Term]:
    """The `count` terms of highest keyness that pass the document and ratio thresholds."""
    from wordfreq import word_frequency

    totals: Counter = Counter()
    spelling: dict[str, tuple[int, str]] = {}
    for word, n in counts.spellings.items():
        lower = word.lower()
        totals[lower] += n
        # The most frequent spelling; ties broken by the spelling itself, so the choice is stable.
        spelling[lower] = max(spelling.get(lower, (0, "")), (n, word), key=lambda pair: (pair[0], pair[1]))
    terms = []
    for lower, n in totals.items():
        if counts.documents[lower] < min_docs or not counts.words or lower in PLACEHOLDERS:
            continue
        domain = n / counts.words
        english = max(word_frequency(lower, "en", wordlist="large"), ENGLISH_FLOOR)
        if domain / english < min_ratio:
            continue
        documents = counts.documents[lower]
        terms.append(Term(spelling[lower][1], n, documents, round(domain * 1e6, 2), round(english * 1e6, 4),
                          round(documents * math.log(domain / english), 1)))
    terms.sort(key=lambda term: (-term.keyness, term.term))
    return _without_subsumed(terms, totals)[:count]


def _without_subsumed(terms: list[Term], totals: Counter) -> list[Term]:
    """The terms less the words that occur mostly inside a chosen phrase (`checker` in `borrow checker`)."""
    inside: Counter = Counter()   # word -> occurrences inside the one phrase that holds it most
    for term in terms:
        if " " in term.term:
            for word in set(term.term.lower().split()):
                inside[word] = max(inside[word], term.count)
    return [term for term in terms
            if " " in term.term or inside[term.term.lower()] < SUBSUMED_SHARE * totals[term.term.lower()]]

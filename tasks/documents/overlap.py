"""Finding test examples' texts in other documents: the leakage guard, one streaming pass over the corpus.

A test example's key text (a perplexity excerpt, a cloze sentence with its term, a known-item
query) must not appear — as whole words, case and punctuation ignored (retrieval.matching, the
rule `suite check-leakage` applies) — in any document other than its own: not in training text,
and not in a knowledge-base document that retrieval could show beside it. Each key is indexed by
its first eight words; each document is scanned once, and only anchor hits are checked in full.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from retrieval.matching import normalized

ANCHOR_WORDS = 8


class PhraseFinder:
    """Which of many phrases a document holds, in time linear in the document."""

    def __init__(self, phrases: dict[Hashable, str]):
        """`phrases`: a name (an example id) → its text."""
        self._keys = {name: normalized(text) for name, text in phrases.items() if normalized(text).strip()}
        self._anchors: dict[int, dict[tuple[str, ...], list[Hashable]]] = {}
        for name, key in self._keys.items():
            words = tuple(key.split()[:ANCHOR_WORDS])
            self._anchors.setdefault(len(words), {}).setdefault(words, []).append(name)

    def found_in(self, text: str) -> set[Hashable]:
        """Names of the phrases `text` holds."""
        haystack = normalized(text)
        words = haystack.split()
        found = set()
        for n, anchors in self._anchors.items():
            for start in range(len(words) - n + 1):
                for name in anchors.get(tuple(words[start:start + n]), ()):
                    if name not in found and self._keys[name] in haystack:
                        found.add(name)
        return found


def find_leaks(examples: dict[Hashable, tuple[str, str]], documents: Iterable[dict]) -> dict[Hashable, str]:
    """Examples (key → (text, source document id)) whose text a document other than their source holds,
    mapped to the first such document; `documents` (corpus records: id, title, text) are read once."""
    finder = PhraseFinder({key: text for key, (text, _) in examples.items()})
    leaking: dict[Hashable, str] = {}
    for document in documents:
        for key in finder.found_in(f"{document['title']}\n{document['text']}"):
            if examples[key][1] != document["id"]:
                leaking.setdefault(key, document["id"])
    return leaking

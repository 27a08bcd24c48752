"""The test-split guard: generated text sharing a run of words with a test example is dropped.

This is the only code of tuning/augment that reads the test split, and it only reads it to refuse
text. The rule extends `suite check-leakage`'s (whole words, case and punctuation ignored,
retrieval.matching) from whole-text containment to n-gram overlap: a generated piece overlaps a
test example when both hold the same run of `words` words, or when it holds the whole of a test
string shorter than that. The strings checked are every string of a test example (tasks.leakage's
`example_strings`) of at least MIN_KEY_WORDS words; shorter ones — errno names, class labels,
choices — are a closed vocabulary that any domain text mentions (tasks/leakage.py says the same
of QA answers). The matching is tasks/documents/overlap.py's PhraseFinder, with each window of
a long test string as one phrase.
"""

from __future__ import annotations

from retrieval.matching import normalized
from tasks.documents.overlap import PhraseFinder
from tasks.leakage import example_strings

MIN_KEY_WORDS = 4


class TestOverlap:
    """Which test example, if any, a piece of generated text overlaps."""

    __test__ = False  # a class named Test* that pytest must not collect

    def __init__(self, test_texts: dict[str, list[str]], words: int):
        """`test_texts`: a test example's name ("task/id") -> its strings; `words`: the n of the n-grams."""
        phrases = {}
        for name, texts in test_texts.items():
            for index, text in enumerate(texts):
                tokens = normalized(text).split()
                if len(tokens) < MIN_KEY_WORDS:
                    continue
                for start in range(max(1, len(tokens) - words + 1)):
                    phrases[(name, index, start)] = " ".join(tokens[start:start + words])
        self._finder = PhraseFinder(phrases)

    def overlapping(self, text: str) -> str | None:
        """The name of the first test example `text` overlaps (in name order), or None."""
        found = self._finder.found_in(text)
        return min(name for name, _, _ in found) if found else None


def suite_test_overlap(suite, words: int) -> TestOverlap:
    """The guard over every test example of a loaded Suite."""
    return TestOverlap({f"{task.name}/{example['id']}": example_strings(example)
                        for task in suite.tasks for example in task.examples.get("test", [])}, words)

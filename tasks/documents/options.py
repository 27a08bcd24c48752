"""What `suite new` is asked to build (SuiteOptions) and what it counted on the way (BuildStats).

The builder (build.py) fills them in and the data card (card.py) reports them; both import them from
here, so neither imports the other's module back.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tasks.documents.clean import CleaningConfig
from tasks.documents.collect import Collection
from tasks.documents.terms import Term


@dataclass(frozen=True)
class SuiteOptions:
    """Everything `suite new` takes; defaults are the command's."""

    name: str
    docs: tuple[Path, ...]
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    near_duplicate_threshold: float = 0.8
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 1234
    terms: int = 200
    min_term_documents: int = 3
    min_term_ratio: float = 100.0
    test_examples: int = 500
    choices: int = 4
    perplexity_chars: int = 4000
    text_field: str = "text"
    exclude: tuple[str, ...] = ()
    workers: int = 1

    def cap(self, task: str, split: str) -> int:
        return {"test": self.test_examples, "dev": max(1, self.test_examples // 4)}.get(split, 2 * self.test_examples)


@dataclass
class BuildStats:
    """Counts after each step, for the data card and the command's summary."""

    collection: Collection = field(default_factory=Collection)
    documents: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    decoded_as: Counter = field(default_factory=Counter)
    repaired: int = 0
    dropped: Counter = field(default_factory=Counter)
    folders: Counter = field(default_factory=Counter)             # folder -> documents read and extracted
    folder_drops: Counter = field(default_factory=Counter)        # (folder, reason) -> documents dropped
    drop_values: dict[str, list] = field(default_factory=dict)    # reason -> what its rule measured, per drop
    boilerplate_lines: Counter = field(default_factory=Counter)   # line removed as boilerplate -> documents
    boilerplate_documents: int = 0
    templates: int = 0                                            # sentences held by two or more documents
    languages: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    clusters: int = 0
    split_documents: Counter = field(default_factory=Counter)
    split_characters: Counter = field(default_factory=Counter)
    bytes_in: int = 0
    terms: list[Term] = field(default_factory=list)
    examples: dict[str, dict[str, int]] = field(default_factory=dict)
    leaks: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str):
        started = time.perf_counter()
        yield
        self.step_seconds[step] = time.perf_counter() - started

    @property
    def kept(self) -> int:
        return sum(self.split_documents.values())

    @property
    def cleaned(self) -> int:
        return self.documents - len(self.unreadable) - sum(self.dropped.values())

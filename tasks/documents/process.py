"""One document's way through extraction and cleaning, run in a worker process: Source → Outcome.

Everything here depends on the document alone (never on the others), so documents go through a
process pool in any grouping and come back in walk order; what needs all documents at once —
de-duplication, the term list, the examples — happens in the main process, one outcome at a time.
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tasks.documents.clean import (
    CleaningConfig,
    detect_language,
    drop_reason,
    scrub_pii,
)
from tasks.documents.collect import Source
from tasks.documents.dedup import exact_key, minhash_signature
from tasks.documents.extract import Unreadable, extract
from tasks.documents.splits import split_of
from tasks.documents.terms import document_words


@dataclass(frozen=True)
class ProcessSettings:
    cleaning: CleaningConfig
    seed: int
    fractions: tuple[float, float, float]


@dataclass
class Outcome:
    """What became of one document: kept (with its text, split and signatures), dropped, or unreadable."""

    doc_id: str
    kind: str
    status: str                 # kept | dropped | unreadable
    reason: str = ""            # the drop reason (clean.DROP_REASONS) or why it could not be read
    bytes_in: int = 0
    title: str = ""
    text: str = ""
    language: str = ""
    decoded_as: str = ""
    repaired: bool = False
    pii: dict[str, int] = field(default_factory=dict)
    split: str = ""
    key: str = ""
    signature: np.ndarray | None = None
    words: Counter | None = None  # candidate term words, for training documents only
    n_words: int = 0


def process_source(source: Source, settings: ProcessSettings) -> Outcome:
    """Read, extract, scrub and filter one document; a kept one gets its split and dedup signatures."""
    try:
        data = source.read()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return Outcome(source.doc_id, source.kind, "unreadable", f"cannot be read: {exc}")
    try:
        extracted = extract(data, source.kind)
    except Unreadable as exc:
        return Outcome(source.doc_id, source.kind, "unreadable", str(exc), bytes_in=len(data))
    outcome = Outcome(source.doc_id, source.kind, "kept", bytes_in=len(data), title=extracted.title,
                      decoded_as=extracted.decoded_as, repaired=extracted.repaired)
    text = extracted.text
    if settings.cleaning.scrub_pii:
        text, outcome.pii = scrub_pii(text)
    reason = drop_reason(text, settings.cleaning)
    if reason is None:
        outcome.language = detect_language(text)
        if settings.cleaning.languages and outcome.language not in settings.cleaning.languages:
            reason = "language"
    if reason is not None:
        outcome.status, outcome.reason = "dropped", reason
        return outcome
    outcome.text = text
    outcome.split = split_of(source.doc_id, settings.seed, settings.fractions)
    outcome.key = exact_key(text)
    outcome.signature = minhash_signature(text)
    outcome.n_words = len(text.split())
    if outcome.split == "train":
        outcome.words = document_words(text)
    return outcome


def ordered_map(function: Callable, items: Iterable, *, workers: int, window: int = 64) -> Iterator:
    """`map(function, items)` over a process pool, in order, with at most `window` items in flight.

    The window bounds memory (a plain `pool.map` reads the whole input first); `workers == 1`
    runs in this process, which tests and debuggers prefer.
    """
    if workers == 1:
        yield from map(function, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        for future in pending:
            yield future.result()

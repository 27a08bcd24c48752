"""One document's way through extraction and cleaning, run in worker processes, in two passes:
Source → Extraction (pass 1), then Extraction → Outcome (pass 2).

Everything here depends on the document alone, given what pass 1 learnt of all documents (which
prose lines are boilerplate), so documents go through a process pool in any grouping and come back
in walk order; what needs all documents at once — the line frequencies, de-duplication, template
sentences, the term list, the examples — happens in the main process, one document at a time.
"""

from __future__ import annotations

import gzip
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tasks.documents.boilerplate import line_keys, remove_boilerplate
from tasks.documents.clean import (
    CleaningConfig,
    Drop,
    detect_language,
    drop_reason,
    scrub_pii,
)
from tasks.documents.collect import Source
from tasks.documents.dedup import exact_key, minhash_signature
from tasks.documents.examples import sentence_key, sentences
from tasks.documents.extract import Unreadable, extract
from tasks.documents.splits import split_of


@dataclass(frozen=True)
class ProcessSettings:
    cleaning: CleaningConfig
    seed: int
    fractions: tuple[float, float, float]
    boilerplate: frozenset[int] = frozenset()   # line keys found in too many documents (boilerplate.py)


@dataclass
class Extraction:
    """One document's extracted text (or why it has none), and its prose-line keys for the boilerplate count."""

    doc_id: str
    kind: str
    status: str                 # extracted | unreadable
    reason: str = ""            # why it could not be read
    bytes_in: int = 0
    title: str = ""
    text: str = ""
    decoded_as: str = ""
    repaired: bool = False
    redirect: str = ""
    line_keys: frozenset[int] = frozenset()

    def record(self) -> dict:
        """What pass 2 needs again (the line keys are counted in pass 1 and not stored)."""
        return {key: value for key, value in vars(self).items() if key != "line_keys"}


@dataclass
class Outcome:
    """What became of one document: kept (with its text, split and signatures), dropped, or unreadable."""

    doc_id: str
    kind: str
    status: str                 # kept | dropped | unreadable
    reason: str = ""            # the drop reason (clean.DROP_REASONS) or why it could not be read
    value: float | str = ""     # what the failed rule measured
    bytes_in: int = 0
    title: str = ""
    text: str = ""
    language: str = ""
    decoded_as: str = ""
    repaired: bool = False
    pii: dict[str, int] = field(default_factory=dict)
    boilerplate: list[str] = field(default_factory=list)  # the lines removed as boilerplate
    split: str = ""
    key: str = ""
    signature: np.ndarray | None = None
    sentence_keys: frozenset[int] = frozenset()


def extract_source(source: Source) -> Extraction:
    """Pass 1: read and extract one document; its prose-line keys feed the boilerplate count."""
    try:
        data = source.read()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return Extraction(source.doc_id, source.kind, "unreadable", f"cannot be read: {exc}")
    try:
        extracted = extract(data, source.kind)
    except Unreadable as exc:
        return Extraction(source.doc_id, source.kind, "unreadable", str(exc), bytes_in=len(data))
    return Extraction(source.doc_id, source.kind, "extracted", bytes_in=len(data), title=extracted.title,
                      text=extracted.text, decoded_as=extracted.decoded_as, repaired=extracted.repaired,
                      redirect=extracted.redirect, line_keys=line_keys(extracted.text))


def clean_extraction(record: dict, settings: ProcessSettings) -> Outcome:
    """Pass 2: boilerplate out, scrub and filter one extracted document; a kept one gets its split and signatures."""
    extraction = Extraction(**record)
    outcome = Outcome(extraction.doc_id, extraction.kind, "kept", bytes_in=extraction.bytes_in,
                      title=extraction.title, decoded_as=extraction.decoded_as, repaired=extraction.repaired)
    text, outcome.boilerplate = remove_boilerplate(extraction.text, settings.boilerplate)
    if settings.cleaning.scrub_pii:
        text, outcome.pii = scrub_pii(text)
    drop = Drop("redirect", extraction.redirect) if extraction.redirect else drop_reason(text, settings.cleaning)
    if drop is None:
        outcome.language = detect_language(text)
        if settings.cleaning.languages and outcome.language not in settings.cleaning.languages:
            drop = Drop("language", outcome.language)
    if drop is not None:
        outcome.status, outcome.reason, outcome.value = "dropped", drop.reason, drop.value
        return outcome
    outcome.text = text
    outcome.split = split_of(extraction.doc_id, settings.seed, settings.fractions)
    outcome.key = exact_key(text)
    outcome.signature = minhash_signature(text)
    outcome.sentence_keys = frozenset(map(sentence_key, sentences(text)))
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

"""Splits by document: each kept document's split is drawn from a seeded hash of its id.

A document's split depends on nothing but the seed, its id and the fractions, so it is decided
the moment the document is kept (streaming), does not change when other documents are added or
removed, and every example made from a document lands in that document's split. Near duplicates
cannot straddle splits because only one document of each duplicate cluster is kept.
"""

from __future__ import annotations

import hashlib

from harness.errors import DomainbenchError

SPLITS = ("train", "dev", "test")


def parse_fractions(value: str) -> tuple[float, float, float]:
    """`0.8,0.1,0.1` → (train, dev, test); each in (0, 1), summing to 1."""
    try:
        fractions = tuple(float(part) for part in value.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3 or not all(0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DomainbenchError(f"--split {value}: expected three fractions train,dev,test, each between 0 and 1, "
                               "summing to 1 (e.g. 0.8,0.1,0.1)")
    return fractions


def split_of(doc_id: str, seed: int, fractions: tuple[float, float, float]) -> str:
    draw = int(hashlib.sha256(f"{seed}:{doc_id}".encode("utf-8")).hexdigest()[:16], 16) / 2**64
    train, dev, _ = fractions
    return "train" if draw < train else "dev" if draw < train + dev else "test"

"""De-duplication at document level: exact (hash of the normalised text), then near (MinHash LSH).

A document's normalised text is retrieval.matching's (lower case, NFKC, punctuation runs as one
space), so two copies of a licence that differ in case, spacing or punctuation are exact
duplicates. Near duplicates are found by MinHash over word 5-gram shingles (datasketch; 128
permutations), LSH banding tuned to the Jaccard threshold, and every LSH candidate verified against
the estimated Jaccard similarity before a document is dropped. The first document of a cluster (in
the walk's sorted order) is kept; the others are recorded with their similarity so a person can
check the cluster (audit/duplicates.jsonl).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash, MinHashLSH

from retrieval.matching import normalized

NUM_PERM = 128
SHINGLE_WORDS = 5
MINHASH_SEED = 1
SCHEME = "affine32"  # datasketch 2.x: stated, since hash values carry no trace of their scheme


def exact_key(text: str) -> str:
    return hashlib.sha1(normalized(text).encode("utf-8")).hexdigest()


def minhash_signature(text: str) -> np.ndarray:
    """The MinHash hash values of the text's word 5-gram shingles (texts shorter than 5 words: one shingle)."""
    words = normalized(text).split()
    n = min(SHINGLE_WORDS, len(words)) or 1
    shingles = {" ".join(words[i:i + n]).encode("utf-8") for i in range(max(1, len(words) - n + 1))}
    # crc32 is a C call (sha1, datasketch's default, costs most of the time); the affine32 scheme
    # mixes it with murmur's finaliser before the permutations, so its linearity does not matter.
    minhash = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=SCHEME, hashfunc=zlib.crc32)
    minhash.update_batch(list(shingles))
    return minhash.hashvalues


@dataclass
class Duplicate:
    doc_id: str
    match: str          # exact | near
    similarity: float   # 1.0 for exact; estimated Jaccard of the shingle sets for near


@dataclass
class Deduplicator:
    """Streams documents in order; `check` says whether each is new or a duplicate of a kept one."""

    threshold: float = 0.8
    clusters: dict[str, list[Duplicate]] = field(default_factory=dict)  # kept id -> its duplicates

    def __post_init__(self) -> None:
        self._lsh = MinHashLSH(threshold=self.threshold, num_perm=NUM_PERM)
        self._exact: dict[str, str] = {}
        self._signatures: dict[str, np.ndarray] = {}

    def check(self, doc_id: str, key: str, signature: np.ndarray) -> Duplicate | None:
        """None (and the document is kept) when it is new; else the Duplicate, filed under its kept twin."""
        twin = self._exact.get(key)
        if twin is not None:
            return self._file(twin, Duplicate(doc_id, "exact", 1.0))
        minhash = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=SCHEME, hashvalues=signature)
        candidates = [(float(np.mean(self._signatures[other] == signature)), other)
                      for other in self._lsh.query(minhash)]
        similarity, twin = max(candidates, default=(0.0, None))
        if twin is not None and similarity >= self.threshold:
            return self._file(twin, Duplicate(doc_id, "near", round(similarity, 3)))
        self._exact[key] = doc_id
        self._signatures[doc_id] = signature
        self._lsh.insert(doc_id, minhash)
        return None

    def _file(self, twin: str, duplicate: Duplicate) -> Duplicate:
        self.clusters.setdefault(twin, []).append(duplicate)
        return duplicate

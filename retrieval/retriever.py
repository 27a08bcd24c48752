"""The dense retriever: an index directory plus the encoder it was built with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError
from harness.manifest import MANIFEST_FILE
from retrieval.embedding import Encoder, encoder_fingerprint, load_encoder
from retrieval.index import LoadedIndex, load_index
from retrieval.matching import Exclusion


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, best first in a result list; `score` is cosine similarity."""

    chunk_id: str
    doc_id: str
    section: str
    score: float
    text: str
    title: str = ""

    def record(self) -> dict:
        """What a result file keeps per retrieved chunk (no text: the index has it)."""
        return {"chunk_id": self.chunk_id, "doc_id": self.doc_id, "section": self.section,
                "score": round(self.score, 6)}


class Retriever:
    """Search an index with text queries: `Retriever.load(dir).search("query", k=5)`."""

    def __init__(self, index: LoadedIndex, encoder: Encoder):
        self.index = index
        self.encoder = encoder

    @classmethod
    def load(cls, index_dir: str | Path, *, encoder: str | Encoder | None = None,
             device: str | None = None) -> Retriever:
        """Load an index and its encoder; an `encoder` other than the index's is an error.

        Query vectors from another encoder live in another space: their nearest chunks would be
        noise, so the mismatch is refused rather than searched.
        """
        index = load_index(index_dir)
        built_with = index.manifest["encoder"]
        if isinstance(encoder, Encoder):
            spec, fingerprint = encoder.spec, encoder.fingerprint
        else:
            spec = encoder or built_with["spec"]
            fingerprint = encoder_fingerprint(spec) if spec == built_with["spec"] else None
        if spec != built_with["spec"]:
            raise DomainbenchError(_mismatch(index.path, built_with, f"encoder {spec}"))
        if fingerprint != built_with["fingerprint"]:
            raise DomainbenchError(_mismatch(index.path, built_with, f"this machine's {spec} (other weights)"))
        if not isinstance(encoder, Encoder):
            # Queries in the dtype the chunks were embedded in (indexes built before it was recorded: fp32).
            encoder = load_encoder(spec, device=device, dtype=built_with.get("dtype", "float32"))
        return cls(index, encoder)

    def search(self, query: str, k: int = 5, *, exclude: Exclusion | None = None) -> list[Hit]:
        """The k chunks most similar to `query`, best first, none of them excluded by `exclude`.

        With an exclusion the index is asked for more neighbours until k allowed chunks are
        found (or the index is exhausted), so the k passages are the best *allowed* ones.
        """
        if exclude is None:
            return self.search_many([query], k)[0]
        vector = self.encoder.encode([query])
        fetch = k
        while True:
            ranked = self.index.search_vectors(vector, fetch)[0]
            allowed = [hit for hit in (self.hit(row, score) for row, score in ranked) if not exclude.excludes(hit)]
            if len(allowed) >= k or len(ranked) < fetch:
                return allowed[:k]
            fetch *= 4

    def search_many(self, queries: list[str], k: int = 5, *, batch_size: int = 64) -> list[list[Hit]]:
        """search() for many queries with batched encoding and one FAISS call."""
        return [[self.hit(row, score) for row, score in ranked]
                for ranked in self.search_rows(queries, k, batch_size=batch_size)]

    def search_rows(self, queries: list[str], k: int, *, batch_size: int = 64) -> list[list[tuple[int, float]]]:
        """Per query, up to k (chunk row, cosine similarity) pairs, best first."""
        if not queries:
            return []
        return self.index.search_vectors(self.encoder.encode(list(queries), batch_size=batch_size), k)

    def hit(self, row: int, score: float) -> Hit:
        chunk = self.index.chunks[row]
        return Hit(chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, section=chunk.section, score=score,
                   text=chunk.text, title=chunk.title)


def _mismatch(index_dir: Path, built_with: dict, asked: str) -> str:
    return (f"{index_dir / MANIFEST_FILE}: encoder: the index was built with {built_with['spec']} "
            f"(fingerprint {built_with['fingerprint'][:12]}), not {asked}; rebuild it with that encoder")

"""RAG prompt assembly: passages before the prompt, within the budget, the prompt never cut."""

from __future__ import annotations

import pytest
from retrieval_fakes import fake_encoder, minilm_tokenizer, sample_documents

from harness.errors import DomainbenchError
from retrieval.index import build_index
from retrieval.rag import RagAugmenter
from retrieval.retriever import Hit, Retriever

QUESTION = "Question: Which error does rename() return when oldpath and newpath are on different filesystems?\nAnswer:"


class StubRetriever:
    """Returns fixed hits, so the tests control passage lengths exactly."""

    def __init__(self, hits):
        self.hits = hits

    def search(self, query, k, exclude=None):
        return [hit for hit in self.hits if not (exclude and exclude.excludes(hit))][:k]

    def search_many(self, queries, k):
        return [self.hits[:k] for _ in queries]


def _hits(n: int = 4, words: int = 60) -> list[Hit]:
    return [Hit(chunk_id=f"doc{i}.2#0", doc_id=f"doc{i}.2", section="ERRORS", score=1.0 - i / 10,
                text=" ".join(f"passage{i} sentence word{j}." for j in range(words)), title=f"doc{i}(2)")
            for i in range(n)]


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("budget", [120, 300, 700, 2000])
def test_augmented_prompt_fits_the_budget_and_ends_with_the_whole_prompt(tiny_tokenizer, budget):
    augmenter = RagAugmenter(StubRetriever(_hits()), tiny_tokenizer, k=4, context_budget_tokens=budget)
    augmented, records = augmenter.augment("rename EXDEV", QUESTION)
    assert augmented.endswith(QUESTION)
    assert _count(tiny_tokenizer, augmented) <= max(budget, _count(tiny_tokenizer, QUESTION))
    assert [r["chunk_id"] for r in records] == [f"doc{i}.2#0" for i in range(4)]


def test_a_short_budget_is_shared_so_every_passage_reaches_the_prompt(tiny_tokenizer):
    """2.5 passages' worth of room for 4 equal passages: each gets a quarter, none gets 0 tokens (today's rank 4)."""
    hits = _hits(words=10)
    one_passage = _count(tiny_tokenizer, hits[0].text)
    budget = _count(tiny_tokenizer, QUESTION) + int(2.5 * one_passage) + 60
    augmented, records = RagAugmenter(StubRetriever(hits), tiny_tokenizer, context_budget_tokens=budget).augment(
        "q", QUESTION)
    placed = [r["prompt_tokens"] for r in records]
    assert all(0 < tokens < one_passage for tokens in placed) and max(placed) - min(placed) <= 2
    assert augmented.index("[1] doc0(2) — ERRORS") < augmented.index("[2] doc1(2)") < augmented.index("[4] doc3(2)")


def test_short_passages_go_in_whole_and_the_long_ones_share_the_rest():
    from retrieval.rag import water_fill

    assert water_fill([10, 200, 200, 30], 240) == [10, 100, 100, 30]
    assert water_fill([10, 20], 100) == [10, 20]
    assert water_fill([50, 50, 50], 30) == [10, 10, 10]
    assert water_fill([50], -5) == [0]


def test_passages_are_dropped_from_the_lowest_rank_only_when_a_share_would_be_too_small(tiny_tokenizer):
    hits = _hits(words=10)
    budget = _count(tiny_tokenizer, QUESTION) + 60
    _, records = RagAugmenter(StubRetriever(hits), tiny_tokenizer, context_budget_tokens=budget).augment("q", QUESTION)
    placed = [r["prompt_tokens"] for r in records]
    kept = [tokens for tokens in placed if tokens]
    assert placed[:len(kept)] == kept and 0 < len(kept) < 4  # a prefix of the ranking survives
    assert all(tokens >= 16 for tokens in kept)


def test_a_prompt_longer_than_the_budget_is_returned_whole_without_passages(tiny_tokenizer):
    augmenter = RagAugmenter(StubRetriever(_hits()), tiny_tokenizer, context_budget_tokens=10)
    augmented, records = augmenter.augment("q", QUESTION)
    assert augmented == QUESTION
    assert len(records) == 4 and all(r["prompt_tokens"] == 0 for r in records)


def test_records_carry_ids_section_and_score(tiny_tokenizer):
    _, records = RagAugmenter(StubRetriever(_hits(2, words=3)), tiny_tokenizer, k=2).augment("q", QUESTION)
    assert records[0] == {"chunk_id": "doc0.2#0", "doc_id": "doc0.2", "section": "ERRORS", "score": 1.0,
                          "prompt_tokens": _count(tiny_tokenizer, _hits(2, words=3)[0].text)}


def test_custom_template_is_used_and_validated(tiny_tokenizer):
    template = "Docs:\n{passages}\n---\n{prompt}"
    augmented, _ = RagAugmenter(StubRetriever(_hits(1, words=3)), tiny_tokenizer, template=template).augment(
        "q", QUESTION)
    assert augmented.startswith("Docs:\n[1] doc0(2) — ERRORS\n") and augmented.endswith("---\n" + QUESTION)
    with pytest.raises(DomainbenchError, match="needs both"):
        RagAugmenter(StubRetriever([]), tiny_tokenizer, template="{prompt} only")


def test_rag_over_a_real_index_puts_the_gold_page_first(tmp_path, tiny_tokenizer):
    encoder = fake_encoder(minilm_tokenizer())
    build_index(sample_documents(), tmp_path / "index", encoder=encoder)
    augmenter = RagAugmenter(Retriever.load(tmp_path / "index", encoder=encoder), tiny_tokenizer, k=2,
                             context_budget_tokens=1500)
    augmented, records = augmenter.augment("EXDEV oldpath newpath same mounted filesystem", QUESTION)
    assert records[0]["doc_id"] == "rename.2" and records[0]["section"] == "ERRORS"
    assert "[1] rename(2) — ERRORS\nEXDEV oldpath and newpath" in augmented
    assert augmenter.settings()["k"] == 2

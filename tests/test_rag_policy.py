"""The leakage rule for retrieval: no test label reaches the model through a retrieved passage.

Through the real evaluation loop, a real FAISS index over the man-pages test pages and the real
RAG prompt assembly (the encoder is the bag-of-words fake, under which an example's own page is
its nearest neighbour — the worst case for leakage).
"""

from __future__ import annotations

import dataclasses

import pytest
from retrieval_fakes import fake_encoder, minilm_tokenizer

from harness.errors import DomainbenchError
from retrieval.corpus import load_corpus
from retrieval.index import build_index
from retrieval.matching import contains_phrase, passage_text
from retrieval.rag import RagAugmenter
from retrieval.retriever import Retriever
from tasks.evaluate import evaluate_task
from tasks.suite import load_suite

EXAMPLES_PER_TASK = 12


class PromptEngine:
    """Records the prompts it is sent; answers nothing worth scoring."""

    max_batch_tokens, max_length = 4096, 2048

    def __init__(self):
        self.prompts = []

    def generate(self, requests):
        self.prompts += [r.prompt for r in requests]
        return ["" for _ in requests]

    def loglikelihood(self, requests):
        from harness.requests import Loglikelihood

        self.prompts += [r.context for r in requests]
        return [Loglikelihood(-1.0, False, 1) for _ in requests]

    def chat_prompt(self, text):
        return text


@pytest.fixture(scope="module")
def manpages():
    return load_suite("manpages")


@pytest.fixture(scope="module")
def retriever(manpages, tmp_path_factory):
    """An index over the pages the sampled examples come from, plus as many other pages."""
    sampled = {example["source"]["doc_id"] for task in manpages.tasks if task.rag != "off"
               for example in _sample(task)}
    corpus = load_corpus(manpages.corpus)
    documents = [d for d in corpus if d.doc_id in sampled]
    documents += [d for d in corpus if d.doc_id not in sampled][:len(documents)]
    encoder = fake_encoder(minilm_tokenizer())
    out = tmp_path_factory.mktemp("kb") / "index"
    build_index(documents, out, encoder=encoder)
    return Retriever.load(out, encoder=encoder)


def _sample(task):
    return task.examples["test"][:EXAMPLES_PER_TASK]


def _evaluate(task, retriever, tokenizer):
    task = dataclasses.replace(task, examples={**task.examples, "test": _sample(task)})
    rag = RagAugmenter(retriever, tokenizer, k=4, context_budget_tokens=1024)
    return evaluate_task(task, PromptEngine(), rag=rag, progress=False), task


def test_no_retrieved_passage_carries_the_example_label(manpages, retriever, tiny_tokenizer):
    chunks = {chunk.chunk_id: chunk for chunk in retriever.index.chunks}
    checked = 0
    for task in manpages.tasks:
        if task.rag != "exclude-source":
            continue
        result, task = _evaluate(task, retriever, tiny_tokenizer)
        for example, record in zip(task.examples["test"], result.records):
            assert record.retrieved, (task.name, example["id"])
            passages = [chunks[hit["chunk_id"]] for hit in record.retrieved]
            assert example["source"]["doc_id"] not in {p.doc_id for p in passages}, (task.name, example["id"])
            if task.type == "summarization":
                assert not any(contains_phrase(passage_text(p), example["summary"]) for p in passages)
            checked += 1
        assert result.settings["rag"]["mode"] == "exclude-source"
        assert "recall@4" not in result.metrics  # the source is excluded by construction: nothing to judge
    assert checked == 3 * EXAMPLES_PER_TASK


def test_without_the_rule_the_example_page_would_be_retrieved(manpages, retriever):
    """What the rule prevents: the example's own page is the nearest passage for most examples."""
    task = next(task for task in manpages.tasks if task.name == "section")
    own_page_first = [retriever.search(example["text"], k=1)[0].doc_id == example["source"]["doc_id"]
                      for example in _sample(task)]
    assert sum(own_page_first) > len(own_page_first) / 2


def test_knowledge_qa_retrieves_its_source_and_is_judged_on_it(manpages, retriever, tiny_tokenizer):
    task = next(task for task in manpages.tasks if task.name == "errno-qa")
    assert task.rag == "on"
    result, _ = _evaluate(task, retriever, tiny_tokenizer)
    assert result.metrics["recall@4"].value > 0.5


def test_rag_off_evaluates_without_retrieval(manpages, retriever, tiny_tokenizer):
    task = dataclasses.replace(next(t for t in manpages.tasks if t.name == "section"), rag="off")
    result, _ = _evaluate(task, retriever, tiny_tokenizer)
    assert all(record.retrieved is None for record in result.records)
    assert result.settings["rag"] == {"mode": "off"}


def test_exclude_source_refuses_examples_that_name_no_source(manpages, retriever, tiny_tokenizer):
    task = next(task for task in manpages.tasks if task.name == "section")
    unsourced = [{key: value for key, value in example.items() if key != "source"} for example in _sample(task)]
    task = dataclasses.replace(task, examples={**task.examples, "test": unsourced})
    with pytest.raises(DomainbenchError, match="exclude-source needs source.doc_id"):
        _evaluate(task, retriever, tiny_tokenizer)

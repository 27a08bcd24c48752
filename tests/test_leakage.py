"""The suite-generic leakage check: what counts as a leak per task type, and the shipped suite."""

from __future__ import annotations

from click.testing import CliRunner

from harness.cli import cli
from tasks.leakage import KnowledgeBase, retrieval_leaks, task_leaks

CORPUS = [
    {"id": "read.2", "title": "read(2)", "section": "2", "split": "train", "text": "read - Read from a file descriptor."},
    {"id": "open.2", "title": "open(2)", "section": "2", "split": "test", "text": "open and possibly create a file"},
]


def test_a_test_summary_found_in_the_train_corpus_is_a_leak():
    splits = {"train": [], "test": [{"id": "t1", "document": "…", "summary": "read from a file descriptor"},
                                    {"id": "t2", "document": "…", "summary": "open and possibly create a file"}]}
    assert [leak.example_id for leak in task_leaks("summarize", "summarization", splits, CORPUS)] == ["t1"]


def test_matching_is_on_whole_words():
    splits = {"test": [{"id": "t1", "text": "file desc"}]}
    assert task_leaks("ner", "perplexity", splits, CORPUS) == []


def test_a_test_text_found_in_train_or_dev_examples_is_a_leak():
    splits = {"dev": [{"id": "d1", "text": "The fd is closed.", "label": "2"}],
              "test": [{"id": "t1", "text": "the FD is closed", "label": "3"}]}
    assert [leak.example_id for leak in task_leaks("section", "classification", splits, [])] == ["t1"]


def test_qa_leaks_are_repeated_question_answer_pairs_and_train_source_pages():
    train = [{"id": "a", "question": "Which header declares read()?", "answers": ["<unistd.h>"]}]
    test = [
        {"id": "same", "question": "Which header declares read()?", "answers": ["<unistd.h>"]},
        {"id": "answer-only", "question": "Which header declares close()?", "answers": ["<unistd.h>"],
         "source": {"doc_id": "open.2", "section": "SYNOPSIS"}},
        {"id": "train-page", "question": "Which error …?", "answers": ["EBADF"],
         "source": {"doc_id": "read.2", "section": "ERRORS"}},
    ]
    leaks = task_leaks("errno-qa", "qa", {"train": train, "test": test}, CORPUS)
    assert [leak.example_id for leak in leaks] == ["same", "train-page"]


def test_shipped_manpages_suite_has_no_leakage():
    result = CliRunner().invoke(cli, ["suite", "check-leakage", "manpages"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no leakage" in result.output


def test_retrieval_leaks_follow_each_task_rag_mode():
    knowledge_base = KnowledgeBase(CORPUS + [
        {"id": "copy.2", "title": "copy(2)", "section": "2", "split": "test", "text": "The fd is closed. More."}])
    excerpt = {"id": "t1", "text": "the FD is closed", "label": "2", "source": {"doc_id": "open.2"}}
    unsourced = {"id": "t2", "text": "something else", "label": "2"}
    elsewhere = {"id": "t3", "text": "something", "label": "2", "source": {"doc_id": "gone.2"}}
    leaks = retrieval_leaks("section", "classification", "exclude-source", [excerpt, unsourced, elsewhere],
                            knowledge_base)
    assert [(leak.example_id, leak.reason.split(",")[0]) for leak in leaks] == [
        ("t1", "its text is also in knowledge-base document 'copy.2'"),
        ("t2", "names no source document"),
        ("t3", "its source document 'gone.2' is not in the knowledge base under that id")]
    assert retrieval_leaks("section", "classification", "off", [unsourced], knowledge_base) == []
    verbatim = {"id": "q1", "question": "open and possibly create a file", "answers": ["x"]}
    assert [leak.example_id for leak in retrieval_leaks("qa", "qa", "on", [verbatim], knowledge_base)] == ["q1"]

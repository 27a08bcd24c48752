"""The suite-generic leakage check: what counts as a leak per task type, and the shipped suite."""

from __future__ import annotations

import gzip
import json
import textwrap

import pytest
from click.testing import CliRunner

from cli.main import cli, main
from tasks.leakage import KnowledgeBase, retrieval_leaks, task_leaks, unknown_sources

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
        ("t2", "names no source document")]
    assert [str(leak) for leak in unknown_sources("section", {"test": [excerpt, unsourced, elsewhere]},
                                                   knowledge_base.documents.keys())] == [
        "section: test example 't3': its source document 'gone.2' is not in the corpus"]
    assert retrieval_leaks("section", "classification", "off", [unsourced], knowledge_base) == []
    verbatim = {"id": "q1", "question": "open and possibly create a file", "answers": ["x"]}
    assert [leak.example_id for leak in retrieval_leaks("qa", "qa", "on", [verbatim], knowledge_base)] == ["q1"]


@pytest.fixture
def qa_suite(tmp_path):
    """A knowledge-QA suite whose 25 test questions are all asked in train too, and two of whose sources are unknown."""
    corpus = [{"id": f"page{n}", "title": f"page {n}", "split": "test", "text": f"Page {n} says {n}."} for n in range(25)]
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as out:
        out.writelines(json.dumps(record) + "\n" for record in corpus)
    rows = [{"id": f"q{n}", "question": f"What does page {n} say?", "answers": [str(n)],
             "source": {"doc_id": f"page{n}" if n < 23 else f"typo{n}"}} for n in range(25)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""\
        name: docs-qa
        corpus: corpus.jsonl.gz
        tasks:
          - name: qa
            type: qa
            data: {train: train.jsonl, test: test.jsonl}
        """))
    return tmp_path


def exit_message(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_check_leakage_all_lists_every_leak(qa_suite, capsys):
    # 25 questions repeated in train, 2 unknown sources in each of train and test: 29 in all.
    short = exit_message(["suite", "check-leakage", str(qa_suite)], capsys)
    assert "29 leak(s)" in short and "… and 9 more (--all lists every one)" in short
    full = exit_message(["suite", "check-leakage", str(qa_suite), "--all"], capsys)
    assert sum(line.startswith(("qa: test example", "qa: train example")) for line in full.splitlines()) == 29
    assert "qa: train example 'q24': its source document 'typo24' is not in the corpus" in full


def test_validate_refuses_sources_that_are_not_in_the_corpus_naming_them(qa_suite, capsys):
    message = exit_message(["suite", "validate", str(qa_suite)], capsys)
    assert "4 example(s) name a source document that is not in the corpus" in message
    for split in ("train", "test"):
        for n in (23, 24):
            assert f"qa: {split} example 'q{n}': its source document 'typo{n}' is not in the corpus" in message

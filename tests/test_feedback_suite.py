"""`suite add-from-feedback`: answers rated down with a correction become test examples — of a QA, NER,
classification or summarization task, the gold in the type's own terms — with their provenance, never twice,
never a leak, and the grown suite validates, checks clean and has a new fingerprint."""

from __future__ import annotations

import json
import shutil

import pytest

from cli.main import main
from harness.errors import DomainbenchError
from serve.traces import Trace, TraceStore, corrected_answers
from tasks.feedback import CorrectedAnswer, add_from_feedback, input_from_prompt
from tasks.suite import load_suite
from tasks.suite_files import SUITES_DIR

TEMPLATE = "Question: {question}\nAnswer:"


@pytest.fixture
def suite_dir(tmp_path):
    copied = shutil.copytree(SUITES_DIR / "tiny", tmp_path / "tiny")
    return copied


def _answer(trace_id: str, prompt: str, correction: str = "EIO") -> CorrectedAnswer:
    return CorrectedAnswer(trace_id=trace_id, rated_at=1_767_225_600.0, prompt=prompt, answer="ENOENT",
                           correction=correction, comment="wrong errno", configuration_fingerprint="abc")


def _test_rows(suite_dir) -> list[dict]:
    return [json.loads(line) for line in (suite_dir / "qa-test.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("prompt", "question"), [
    ("Question: Which errno means I/O error?\nAnswer:", "Which errno means I/O error?"),
    ("Question: a?\nAnswer: EIO\n\nQuestion: Which errno means I/O error?\nAnswer:", "Which errno means I/O error?"),
    ("Which errno means I/O error?", "Which errno means I/O error?"),
])
def test_the_question_is_taken_out_of_the_tasks_template_when_the_prompt_has_its_form(prompt, question):
    assert input_from_prompt(TEMPLATE, "question", prompt) == question


def test_corrections_become_test_examples_with_provenance_and_a_new_fingerprint(suite_dir, capsys):
    before = load_suite(suite_dir)
    outcome = add_from_feedback(suite_dir, "errno-qa", [
        _answer("cmpl-1", "Question: Which errno means I/O error?\nAnswer:"),
        _answer("cmpl-2", "Which errno means permission denied?", "EACCES"),  # already a test question
        _answer("cmpl-3", "which errno means I/O error"),  # the same question again, punctuation aside
        _answer("cmpl-4", "What does fsync() do?", "   "),
    ])
    assert [example["id"] for example in outcome.added] == ["feedback-cmpl-1"]
    assert dict(outcome.skipped) == {"cmpl-2": "the question is already in the suite",
                                     "cmpl-3": "the question is already in the suite", "cmpl-4": "an empty correction"}
    added = _test_rows(suite_dir)[-1]
    assert added == {"id": "feedback-cmpl-1", "question": "Which errno means I/O error?", "answers": ["EIO"],
                     "feedback": {"trace_id": "cmpl-1", "rated": "2026-01-01", "rated_answer": "ENOENT",
                                  "configuration_fingerprint": "abc", "comment": "wrong errno"}}
    grown = load_suite(suite_dir)
    assert grown.version == before.version + 1 == outcome.version
    assert grown.fingerprint == outcome.fingerprint_after != before.fingerprint
    assert len(grown.select(["errno-qa"])[0].examples["test"]) == len(before.select(["errno-qa"])[0].examples["test"]) + 1
    main(["suite", "validate", str(suite_dir)])
    main(["suite", "check-leakage", str(suite_dir)])
    assert "no leakage" in capsys.readouterr().out
    again = add_from_feedback(suite_dir, "errno-qa", [_answer("cmpl-1", "Which errno means I/O error?")])
    assert again.added == [] and again.fingerprint_after == grown.fingerprint  # nothing added twice


def test_a_correction_the_suites_leakage_rules_refuse_is_skipped(suite_dir):
    """Knowledge QA retrieves from the corpus: a question standing word for word in it would be found there."""
    (suite_dir / "corpus.jsonl").write_text(json.dumps({
        "id": "io", "title": "errno", "section": "3", "split": "test",
        "text": "Which errno means I/O error? EIO, of course."}) + "\n")
    (suite_dir / "suite.yaml").write_text((suite_dir / "suite.yaml").read_text() + "corpus: corpus.jsonl\n")
    outcome = add_from_feedback(suite_dir, "errno-qa", [_answer("cmpl-1", "Which errno means I/O error?"),
                                                        _answer("cmpl-2", "Which errno means no space left?", "ENOSPC")])
    assert [example["id"] for example in outcome.added] == ["feedback-cmpl-2"]
    assert outcome.skipped[0][0] == "cmpl-1" and "knowledge-base document 'io'" in outcome.skipped[0][1]


def test_builtin_suites_and_types_without_a_gold_from_a_correction_are_refused(suite_dir):
    with pytest.raises(DomainbenchError, match="builtin"):
        add_from_feedback("tiny", "errno-qa", [])
    with pytest.raises(DomainbenchError, match="a perplexity task; .* of a qa, .*ner.* task"):
        add_from_feedback(suite_dir, "manpage-perplexity", [])


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_ner_correction_is_the_entity_lines_the_model_answers_in_located_in_the_text(suite_dir):
    prompt = "Text: unlink() fails with ENOENT.\nEntities:"
    outcome = add_from_feedback(suite_dir, "manpage-ner", [
        _answer("n-1", prompt, "FUNCTION: unlink()\nERRNO: ENOENT"),
        _answer("n-2", "Text: close() may fail.\nEntities:", "FUNCTION: fclose()"),  # not in the text
        _answer("n-3", "Text: open() needs <fcntl.h>.\nEntities:", "SIGNAL: SIGKILL"),  # no such span or type
        _answer("n-4", "Text: Nothing here to find.\nEntities:", "none"),
    ])
    assert [example["id"] for example in outcome.added] == ["feedback-n-1", "feedback-n-4"]
    skipped = dict(outcome.skipped)
    assert skipped["n-2"] == "the correction: 'fclose()' is not in the text"
    assert skipped["n-3"].startswith("the correction: ")
    added = _rows(suite_dir / "ner-test.jsonl")[-2:]
    assert added[0]["text"] == "unlink() fails with ENOENT." and added[0]["entities"] == [
        {"type": "FUNCTION", "start": 0, "end": 8}, {"type": "ERRNO", "start": 20, "end": 26}]
    assert added[1]["entities"] == []
    main(["suite", "validate", str(suite_dir)])


def test_a_classification_correction_names_a_label_by_its_key_or_verbaliser(suite_dir):
    csv_file = suite_dir / "classification-test.csv"
    header, *lines = csv_file.read_text().splitlines()
    (suite_dir / "classification-test.jsonl").write_text("".join(
        json.dumps({"id": i, "text": text, "label": label}) + "\n"
        for i, text, label in (line.split(",") for line in lines)))
    csv_file.unlink()
    yaml_file = suite_dir / "suite.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("classification-test.csv", "classification-test.jsonl"))
    outcome = add_from_feedback(suite_dir, "section-classification", [
        _answer("c-1", "chmod - change permissions of a file\nSection:", "2"),
        _answer("c-2", "strcpy - copy a string\nSection:", "Library Function"),
        _answer("c-3", "ls - list directory contents\nSection:", "user command"),
    ])
    assert [(example["text"], example["label"]) for example in outcome.added] == [
        ("chmod - change permissions of a file", "2"), ("strcpy - copy a string", "3")]
    assert dict(outcome.skipped) == {
        "c-3": "the correction: 'user command' is not one of the task's labels (2, 3)"}
    main(["suite", "validate", str(suite_dir)])


def test_a_summarization_correction_is_the_summary_of_the_document(suite_dir):
    document = "The unlink() call deletes a name from the filesystem."
    outcome = add_from_feedback(suite_dir, "name-summarization", [
        _answer("s-1", f"{document}\nSummary:", "delete a name and possibly the file it refers to")])
    assert _rows(suite_dir / "summarization-test.jsonl")[-1] == {
        "id": "feedback-s-1", "document": document, "summary": "delete a name and possibly the file it refers to",
        "feedback": outcome.added[0]["feedback"]}
    main(["suite", "validate", str(suite_dir)])


def test_the_command_reads_the_corrections_from_the_trace_store(suite_dir, tmp_path, capsys):
    store = TraceStore(tmp_path / "traces.sqlite", keep_text=True)
    said = {"cmpl-a": ("completions", "Question: Which errno means I/O error?\nAnswer:"),
            "chat-b": ("chat_completions", [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Which errno means no space left?"}]),
            "cmpl-c": ("completions", ["two", "prompts"])}
    for trace_id, (route, prompt) in said.items():
        store.record(Trace(trace_id, route, "tiny", "fp", 0.1, 3, 2, ["stop"], False, prompt, ["ENOENT"]))
    store.add_feedback("cmpl-a", "down", correction="EIO")
    store.add_feedback("chat-b", "down", correction="ENOSPC")
    store.add_feedback("cmpl-c", "down", correction="x")
    answers, without_text = corrected_answers(store.path)
    assert [a.prompt for a in answers] == ["Question: Which errno means I/O error?\nAnswer:",
                                           "Which errno means no space left?"] and without_text == 1
    main(["suite", "add-from-feedback", str(store.path), "--suite", str(suite_dir), "--task", "errno-qa"])
    out = capsys.readouterr()
    assert "added 2 example(s) to errno-qa" in out.out and "skipped 1 corrected answer(s)" in out.err
    assert [row["answers"] for row in _test_rows(suite_dir)[-2:]] == [["EIO"], ["ENOSPC"]]

"""Synthetic QA: the prompt, the parsing of "Q: … A: …" and the filters, with a fake and a real (tiny) generator."""

from __future__ import annotations

from augment_suites import page_text

from tuning.augment.overlap import TestOverlap
from tuning.augment.report import AugmentReport
from tuning.augment.settings import SyntheticQASettings
from tuning.augment.synthetic_qa import parse_pairs, passages, qa_prompt, synthetic_qa_pairs

SETTINGS = SyntheticQASettings(passages=4, passage_chars=1200, pairs_per_passage=5, max_new_tokens=32,
                               question_words=(3, 12), answer_words=(1, 4))
RECORDS = [{"id": "fsyncat.2", "title": "fsyncat(2)", "text": page_text("fsyncat")}]
NO_TEST = TestOverlap({}, 13)


def run(output: str, records=RECORDS, guard=NO_TEST):
    report = AugmentReport("synthetic-qa", {})
    pairs = synthetic_qa_pairs(records, lambda prompts: [output] * len(prompts), SETTINGS, seed=0, guard=guard,
                               report=report)
    return pairs, report


def test_the_prompt_holds_the_passage_and_ends_where_the_first_question_begins():
    prompt = qa_prompt("The kernel flushes the data.", 3)
    assert "Passage:\nThe kernel flushes the data.\n" in prompt and "write 3 questions" in prompt
    assert prompt.endswith("\n\nQ:")


def test_pairs_are_parsed_from_the_continuation_of_the_prompt():
    output = " What does fsyncat flush?\nA: buffered descriptor data\n\nQ: Who waits?\nA:  the kernel \nQ: dangling"
    assert parse_pairs(output) == [("What does fsyncat flush?", "buffered descriptor data"),
                                   ("Who waits?", "the kernel")]


def test_each_filter_drops_with_its_reason_and_keeps_the_rest():
    output = ("What does fsyncat flush to the device?\nA: buffered descriptor data\n"
              "Q: What does fsyncat flush to the device?\nA: buffered descriptor data\n"      # asked before
              "Q: Who reads the data back later?\nA: the userspace daemon\n"                  # not in the passage
              "Q: Why?\nA: because\n"                                                          # question too short
              "Q: What happens when the call blocks?\nA: the kernel waits for the write barrier\n")  # answer too long
    pairs, report = run(output)
    assert pairs == [("Question: What does fsyncat flush to the device?\nAnswer:", " buffered descriptor data")]
    assert report.kept == {"question-answer pair": 1}
    assert report.dropped == {"duplicate question": 1, "answer not in the passage": 1, "question not 3-12 words": 1,
                              "answer not 1-4 words": 1}


def test_passages_are_cut_at_blank_lines_within_the_length():
    cut = passages(RECORDS, 400)
    assert len(cut) >= 2 and all(200 <= len(passage) <= 400 for passage in cut)
    folded = " ".join(RECORDS[0]["text"].split())
    assert all(" ".join(passage.split()) in folded for passage in cut)


def test_a_pair_overlapping_a_test_question_is_dropped_and_names_the_example():
    question = "What does fsyncat flush to the storage device?"
    guard = TestOverlap({"errno-qa/test-3": [f"Tell me: {question}"]}, 8)
    pairs, report = run(f" {question}\nA: buffered descriptor data\n", guard=guard)
    assert pairs == [] and report.dropped == {"overlaps the test split": 1}
    assert "(test example errno-qa/test-3)" in report.dropped_examples["overlaps the test split"][0]


def test_junk_from_the_tiny_random_model_is_counted_not_crashed_on():
    from engines.hf import HFEngine
    from harness.models import load_model
    from tuning.augment.synthetic_qa import engine_generate

    loaded = load_model("tiny-random-llama", device="cpu", dtype="float32")
    engine = HFEngine(loaded.model, loaded.tokenizer, device="cpu", progress=False)
    records = [{"id": f"{name}.2", "title": name, "text": page_text(name)} for name in ("fsyncat", "readvex")]
    report = AugmentReport("synthetic-qa", {})
    pairs = synthetic_qa_pairs(records, engine_generate(engine, SETTINGS), SETTINGS, seed=0, guard=NO_TEST,
                               report=report)
    assert report.read == 2
    assert sum(report.dropped.values()) >= 1 and len(pairs) == report.kept["question-answer pair"]

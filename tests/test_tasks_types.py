"""Each task type from examples to requests to records to metrics, through a scripted fake engine."""

import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from harness.errors import DomainbenchError
from harness.requests import (
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    RollingRequest,
)
from tasks import ner
from tasks.evaluate import build_requests, evaluate_task, rescore
from tasks.prompts import fewshot_exemplars
from tasks.records import ExampleRecord
from tasks.registry import TASK_TYPES
from tasks.suite import load_suite
from tasks.training import training_pairs


class FakeEngine:
    """Answers generation from a function of the prompt; log-likelihoods from a function of the request."""

    max_batch_tokens = 4096
    max_length = 256

    def __init__(self, generate=lambda prompt: "", loglikelihood=None, rolling=None):
        self._generate, self._loglikelihood, self._rolling = generate, loglikelihood, rolling
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [self._generate(r.prompt) for r in requests]

    def loglikelihood(self, requests):
        self.requests.extend(requests)
        return [self._loglikelihood(r) for r in requests]

    def loglikelihood_rolling(self, requests):
        self.requests.extend(requests)
        return [self._rolling(r) for r in requests]

    def chat_prompt(self, text):
        return f"<|user|>\n{text}\n<|assistant|>\n"


@pytest.fixture(scope="module")
def tiny():
    return {task.name: task for task in load_suite("tiny").tasks}


def answer_from_last_question(task, answers_by_question):
    def generate(prompt):
        return answers_by_question.get(prompt.rsplit("Question: ", 1)[-1].split("\n")[0], "no idea")
    return generate


def test_every_type_provides_the_task_interface():
    for module in TASK_TYPES.values():
        for name in ("check_example", "rag_query", "target", "training_pair", "requests_for_prompt",
                     "score", "metric_statistics", "aggregate", "rescore_record", "scoring_settings"):
            assert callable(getattr(module, name)), (module.__name__, name)


# ----- QA ----------------------------------------------------------------------------------------

def test_qa_scores_generations_against_all_references(tiny):
    task = tiny["errno-qa"]
    engine = FakeEngine(answer_from_last_question(task, {
        "Which errno means permission denied?": " EACCES",                      # exact
        "What does rename() do?": "It renames a file.",                         # second reference
        "What is a file descriptor?": "a small integer",                        # partial
    }))
    result = evaluate_task(task, engine, progress=False)
    scores = {r.id: r.scores for r in result.records}
    assert scores["qa-te-1"] == {"exact_match": 1.0, "f1": 1.0, "answer_containment": 1.0}
    assert scores["qa-te-2"] == {"exact_match": 1.0, "f1": 1.0, "answer_containment": 1.0}
    assert scores["qa-te-3"]["exact_match"] == 0.0
    assert scores["qa-te-4"]["f1"] == pytest.approx(2 * (2 / 2) * (2 / 3) / (1 + 2 / 3))  # "small integer"
    assert result.metrics["exact_match"].value == 0.5
    assert result.metrics["exact_match"].n == 4
    assert all(isinstance(r, GenerationRequest) and r.stop == ("\n",) and r.max_new_tokens == 12
               for r in engine.requests)


def test_fewshot_exemplars_come_from_train_never_test_and_are_seeded(tiny):
    task = tiny["errno-qa"]
    train_ids = {ex["id"] for ex in task.examples["train"]}
    for example in task.examples["test"]:
        shots = fewshot_exemplars(task, example, 2, seed=1234)
        assert len(shots) == 2 and {s["id"] for s in shots} <= train_ids
        assert shots == fewshot_exemplars(task, example, 2, seed=1234)
    draws = {tuple(s["id"] for s in fewshot_exemplars(task, task.examples["test"][0], 2, seed=s)) for s in range(20)}
    assert len(draws) > 1  # the seed matters
    for example in task.examples["train"]:  # evaluating on train never shows an example its own answer
        assert example["id"] not in {s["id"] for s in fewshot_exemplars(task, example, 2, seed=0)}


def test_prompt_is_exemplars_then_query_and_independent_of_limit(tiny):
    task = tiny["errno-qa"]
    full, limited = FakeEngine(), FakeEngine()
    evaluate_task(task, full, progress=False)
    evaluate_task(task, limited, limit=2, progress=False)
    assert [r.prompt for r in limited.requests] == [r.prompt for r in full.requests[:2]]
    prompt = full.requests[0].prompt
    blocks = prompt.split("\n\n")
    assert len(blocks) == 3 and blocks[-1] == "Question: Which errno means permission denied?\nAnswer:"
    train_questions = {ex["question"]: ex["answers"][0] for ex in task.examples["train"]}
    for block in blocks[:2]:
        question, answer = block.removeprefix("Question: ").split("\nAnswer: ")
        assert train_questions[question] == answer


def test_too_many_fewshot_exemplars_is_a_user_error(tiny):
    with pytest.raises(DomainbenchError, match="few-shot"):
        evaluate_task(tiny["errno-qa"], FakeEngine(), num_fewshot=10, progress=False)


# ----- NER ---------------------------------------------------------------------------------------

TEXT = "rename() fails with EEXIST or EACCES."
LABELS = ("FUNCTION", "ERRNO", "HEADER")


@pytest.mark.parametrize("output, expected", [
    ("\nFUNCTION: rename()\nERRNO: EEXIST\nERRNO: EACCES",
     [("FUNCTION", 0, 8), ("ERRNO", 20, 26), ("ERRNO", 30, 36)]),
    (" - function: rename()\n* errno = EEXIST\n2. Errno: \"EACCES\"",
     [("FUNCTION", 0, 8), ("ERRNO", 20, 26), ("ERRNO", 30, 36)]),
    ("ERRNO: EEXIST, EACCES", [("ERRNO", 20, 26), ("ERRNO", 30, 36)]),
    ("ERRNO: EEXIST.", [("ERRNO", 20, 26)]),         # trailing punctuation not in the text is dropped
    (" none", []),
    ("I cannot tell.", []),
    ("", []),
    ("ERRNO: ENOENT", [("ERRNO", None, None)]),      # not in the text: kept, to count as a false positive
    ("COLOUR: rename()", [("COLOUR", 0, 8)]),        # an undeclared type is kept as written
])
def test_ner_output_parsing_is_robust(output, expected):
    parsed = ner.parse_entities(output, TEXT, LABELS)
    assert [(e["type"], e["start"], e["end"]) for e in parsed] == expected


def test_ner_repeated_mentions_claim_successive_occurrences():
    text = "read() then read() again"
    parsed = ner.parse_entities("FUNCTION: read()\nFUNCTION: read()\nFUNCTION: read()", text, LABELS)
    assert [(e["start"], e["end"]) for e in parsed] == [(0, 6), (12, 18), (None, None)]


def test_ner_strict_match_counts_per_type(tiny):
    task = tiny["manpage-ner"]
    example = task.examples["test"][0]  # rename() fails with EEXIST or EACCES.
    record = ner.score(task, example, ["\nFUNCTION: rename\nERRNO: EEXIST\nHEADER: EACCES\nERRNO: ENOENT"])
    # "rename" is a wrong span (fp+fn), EEXIST right, EACCES wrong type, ENOENT not in the text.
    assert record.scores["counts"] == {"FUNCTION": [0, 1, 1], "ERRNO": [1, 1, 1], "HEADER": [0, 1, 0]}
    assert record.prediction["output"].startswith("\nFUNCTION")


def test_ner_perfect_output_scores_one(tiny):
    task = tiny["manpage-ner"]
    gold = {ex["text"]: ner.target(task, ex) for ex in task.examples["test"]}
    engine = FakeEngine(lambda prompt: gold[prompt.rsplit("Text: ", 1)[-1].split("\nEntities:")[0]])
    result = evaluate_task(task, engine, progress=False)
    assert {name: m.value for name, m in result.metrics.items()} == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "f1_FUNCTION": 1.0, "f1_ERRNO": 1.0, "f1_HEADER": 1.0}


# ----- classification ----------------------------------------------------------------------------

def test_classification_scores_each_verbaliser_and_normalises_by_length(tiny):
    task = tiny["section-classification"]
    # " system call" (12 chars) at -6 vs " library function" (17 chars) at -7.5: the raw argmax picks
    # "2", per character (-0.5 vs -0.44) picks "3".
    engine = FakeEngine(loglikelihood=lambda r: Loglikelihood(-6.0 if "system" in r.continuation else -7.5, False, 3))
    result = evaluate_task(task, engine, progress=False)
    assert all(isinstance(r, LoglikelihoodRequest) for r in engine.requests)
    assert len(engine.requests) == 2 * len(task.examples["test"])
    golds = [r.reference for r in result.records]
    assert [r.prediction for r in result.records] == ["2"] * 5
    assert [r.scores["predicted_norm"] for r in result.records] == ["3"] * 5
    assert result.metrics["accuracy"].value == golds.count("2") / 5
    assert result.metrics["accuracy_norm"].value == golds.count("3") / 5


def test_macro_f1_equals_scikit_learn(tiny):
    task = tiny["section-classification"]
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        gold = rng.choice(["2", "3"])
        logprobs = {"2": float(rng.normal()), "3": float(rng.normal())}
        records.append(ExampleRecord(f"x{i}", None, gold, {"logprobs": logprobs}))
    rescored, metrics = rescore(task, records)
    expected = f1_score([r.reference for r in rescored], [r.prediction for r in rescored], average="macro")
    assert metrics["macro_f1"].value == pytest.approx(expected)


# ----- summarization -----------------------------------------------------------------------------

def test_summarization_perfect_summaries_score_full_marks(tiny):
    task = tiny["name-summarization"]
    summaries = {ex["document"]: ex["summary"] for ex in task.examples["test"]}
    engine = FakeEngine(lambda prompt: " " + summaries[prompt.rsplit("\n\n", 1)[-1].removesuffix("\nSummary:")])
    result = evaluate_task(task, engine, progress=False)
    assert {name: round(m.value, 6) for name, m in result.metrics.items()} == {
        "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0, "bleu": 100.0}
    assert result.settings["scoring"]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


# ----- perplexity --------------------------------------------------------------------------------

def test_perplexity_is_corpus_weighted_not_a_mean_of_documents(tiny):
    task = tiny["manpage-perplexity"]
    # Each text gets log-likelihood -1 per character and one token per 3 characters.
    engine = FakeEngine(rolling=lambda r: Loglikelihood(-float(len(r.text)), False, len(r.text) // 3))
    result = evaluate_task(task, engine, num_fewshot=5, progress=False)  # few-shot does not apply
    texts = [ex["text"] for ex in task.examples["test"]]
    assert [r.text for r in engine.requests] == texts  # the text itself, nothing before it
    total = -sum(len(t) for t in texts)
    assert result.metrics["token_perplexity"].value == pytest.approx(math.exp(-total / sum(len(t) // 3 for t in texts)))
    assert result.metrics["word_perplexity"].value == pytest.approx(
        math.exp(-total / sum(len(t.split()) for t in texts)))
    assert result.metrics["bits_per_byte"].value == pytest.approx(
        -total / sum(len(t.encode()) for t in texts) / math.log(2))
    assert result.settings["num_fewshot"] == 0
    metric = result.metrics["token_perplexity"]
    assert metric.ci_low <= metric.value <= metric.ci_high


# ----- shared behaviour --------------------------------------------------------------------------

def test_rescore_from_a_stored_result_reproduces_the_metrics(tiny):
    fake = {"errno-qa": FakeEngine(lambda p: " EACCES"),
            "manpage-ner": FakeEngine(lambda p: "\nFUNCTION: rename()\nERRNO: EEXIST"),
            "section-classification": FakeEngine(loglikelihood=lambda r: Loglikelihood(-len(r.context) % 7, False, 1)),
            "name-summarization": FakeEngine(lambda p: " close a file"),
            "manpage-perplexity": FakeEngine(rolling=lambda r: Loglikelihood(-2.0 * len(r.text), False, len(r.text)))}
    for name, engine in fake.items():
        result = evaluate_task(tiny[name], engine, progress=False)
        stored = json.loads(json.dumps([r.as_dict() for r in result.records]))
        records, metrics = rescore(tiny[name], stored)
        assert metrics == result.metrics, name
        assert [r.as_dict() for r in records] == stored


class RecordingRetriever:
    k = 1

    def __init__(self):
        self.queries = []

    def settings(self):
        return {"k": self.k}

    def augment(self, query, prompt, exclude=None):
        self.queries.append(query)
        return f"Context: about {query}\n\n{prompt}", [{"chunk_id": f"c-{len(self.queries)}", "score": 0.5}]


def test_rag_augments_prompts_with_the_query_and_records_the_chunks(tiny):
    task = tiny["errno-qa"]
    rag, engine = RecordingRetriever(), FakeEngine()
    result = evaluate_task(task, engine, rag=rag, progress=False)
    assert rag.queries == [ex["question"] for ex in task.examples["test"]]
    assert engine.requests[0].prompt.startswith(f"Context: about {rag.queries[0]}\n\n")
    assert result.records[0].retrieved == [{"chunk_id": "c-1", "score": 0.5}]
    assert result.records[0].as_dict()["retrieved"] and result.settings["rag"] == {"k": 1, "mode": "on"}
    ppl = evaluate_task(tiny["manpage-perplexity"], FakeEngine(rolling=lambda r: Loglikelihood(-1.0, False, 1)),
                        rag=RecordingRetriever(), progress=False)
    assert all(r.retrieved is None for r in ppl.records)


def test_chat_tasks_wrap_the_whole_prompt_in_the_chat_template(tiny):
    task = dataclasses.replace(tiny["section-classification"], chat=True)
    engine = FakeEngine(loglikelihood=lambda r: Loglikelihood(-1.0, False, 1))
    evaluate_task(task, engine, progress=False)
    assert all(r.context.startswith("<|user|>\n") and r.context.endswith("<|assistant|>\n") for r in engine.requests)


def test_build_requests_matches_what_the_loop_sends(tiny):
    for task in tiny.values():
        example = task.examples["test"][0]
        shots = fewshot_exemplars(task, example, task.num_fewshot, seed=1234)
        engine = FakeEngine(loglikelihood=lambda r: Loglikelihood(-1.0, False, 1),
                            rolling=lambda r: Loglikelihood(-1.0, False, 1))
        evaluate_task(task, engine, progress=False)
        expected = build_requests(task, example, shots)
        assert expected == engine.requests[:len(expected)]
        assert {type(r) for r in engine.requests} <= {GenerationRequest, LoglikelihoodRequest, RollingRequest}


def test_training_pairs_use_the_evaluation_template_and_refuse_the_test_split(tiny):
    task = tiny["errno-qa"]
    pairs = training_pairs(task, "train")
    assert pairs[0] == ("Question: Which header declares open()?\nAnswer:", " <fcntl.h>")
    engine = FakeEngine()
    evaluate_task(task, engine, split="train", num_fewshot=0, progress=False)
    assert engine.requests[0].prompt == pairs[0][0]
    ppl = tiny["manpage-perplexity"]
    corpus = dataclasses.replace(ppl, examples={"train": ppl.examples["test"]})
    assert training_pairs(corpus, "train")[0] == ("", ppl.examples["test"][0]["text"])  # the text is the target
    with pytest.raises(DomainbenchError, match="leak"):
        training_pairs(task, "test")
    chat_pairs = training_pairs(dataclasses.replace(task, chat=True), "train", chat_prompt=FakeEngine().chat_prompt)
    assert chat_pairs[0][0].startswith("<|user|>\n")


def test_limit_draws_a_seeded_sample_in_split_order(tiny):
    task = tiny["errno-qa"]
    ids = [example["id"] for example in task.examples["test"]]
    first = evaluate_task(task, FakeEngine(), limit=2, seed=1, progress=False)
    again = evaluate_task(task, FakeEngine(), limit=2, seed=1, progress=False)
    chosen = [record.id for record in first.records]
    assert chosen == [record.id for record in again.records]
    assert chosen == [i for i in ids if i in chosen]
    larger = [record.id for record in evaluate_task(task, FakeEngine(), limit=3, seed=1, progress=False).records]
    assert set(chosen) <= set(larger)


def test_every_task_type_implements_the_protocol():
    import types

    from tasks.registry import TASK_TYPES
    from tasks.task_type import missing_members

    assert {name: missing_members(module) for name, module in TASK_TYPES.items()} == {name: [] for name in TASK_TYPES}
    assert missing_members(types.SimpleNamespace(METRICS=(), check_example=1)) != []
    declarations = ("METRICS", "HEADLINE_METRICS", "DEFAULT_RAG", "QUOTABLE_REFERENCE")
    undeclared = types.SimpleNamespace(**{name: member for name, member in vars(ner).items() if name not in declarations})
    assert sorted(missing_members(undeclared)) == sorted(declarations)


@pytest.mark.parametrize("type_name", sorted(TASK_TYPES))
def test_every_task_type_declares_its_defaults_and_what_its_metrics_mean(type_name):
    from tasks.rag_policy import RAG_MODES
    from tasks.task_type import MetricSense

    module = TASK_TYPES[type_name]
    assert module.DEFAULT_RAG in RAG_MODES
    assert module.QUOTABLE_REFERENCE is None or module.QUOTABLE_REFERENCE in module.REQUIRED_FIELDS
    assert module.METRICS and all(isinstance(sense, MetricSense) for sense in module.METRICS.values())
    assert module.HEADLINE_METRICS and set(module.HEADLINE_METRICS) <= set(module.METRICS)


def test_a_metric_name_means_the_same_in_every_type_that_computes_it():
    declared = {}  # metric -> {type: its sense there}
    for type_name, module in TASK_TYPES.items():
        for name, sense in module.METRICS.items():
            declared.setdefault(name, {})[type_name] = sense
    shared = {name: by_type for name, by_type in declared.items() if len(by_type) > 1}
    assert {"f1", "accuracy"} <= shared.keys()
    assert {name: by_type for name, by_type in shared.items() if len(set(by_type.values())) > 1} == {}

"""Leakage check for any suite: no test answer may be found in what a suite offers the model.

Two channels are checked.

Training: "offered for training" for a task is every string of its train and dev examples plus
the corpus' train view (records with `split: train`), which continued pre-training reads.
What counts as a test example's answer depends on the task type:

- summarization: the summary; classification, ner and perplexity: the example text (its label
  comes with it); multiple_choice: the text completed with the right choice and the suffix (a
  cloze sentence with its term) — found as a whole-word substring, case and punctuation ignored.
- qa: answers come from a closed vocabulary (EXDEV, <fcntl.h>) that any domain text mentions, so
  the leak is the pair: the same question with the same answer in train/dev, or a source page
  that the corpus offers in its train view.

Retrieval: the knowledge base is the whole corpus, test documents included, and each task's
`rag` mode (tasks.rag_policy) says what a query may retrieve. Under `exclude-source` an example
must name its source document (else nothing can be excluded); a classification example's text
found in another document would show that document's label beside it. Under `on` the test item
itself (its question or text) must not sit in the knowledge base word for word.

Sources: in a suite with a corpus, every `source.doc_id` an example names (any task, any split)
must be a corpus id — an exclusion by an unknown id excludes nothing, and the train-view and
recall checks would silently pass. `unknown_sources` names each one; `suite validate` refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import DomainbenchError
from retrieval.matching import normalized
from retrieval.metrics import gold_documents
from tasks.datafiles import read_rows
from tasks.multiple_choice import completed_text
from tasks.rag_policy import rag_mode
from tasks.suite_files import suite_file

TRAINING_SPLITS = ("train", "dev")
_ANSWER_FIELD = {"summarization": "summary", "classification": "text", "ner": "text", "perplexity": "text",
                 "multiple_choice": "completed text"}


@dataclass(frozen=True)
class Leak:
    """One example (a test one, unless `split` says otherwise) that leaks or cannot be checked, and why."""

    task: str
    example_id: str
    reason: str
    split: str = "test"

    def __str__(self) -> str:
        return f"{self.task}: {self.split} example {self.example_id!r}: {self.reason}"


class TrainingText:
    """The normalized training text of one task, searchable for whole-word substrings."""

    def __init__(self, texts: list[str], train_view: str = ""):
        # Newline-joined: a key never holds a newline, so no match spans two documents.
        self._haystack = "\n".join([train_view, *(normalized(text) for text in texts)])

    def contains(self, text: str) -> bool:
        key = normalized(text)
        return key.strip() != "" and key in self._haystack


def example_strings(example: dict) -> list[str]:
    """Every string an example offers a model (its id aside), nested lists and objects included."""
    strings: list[str] = []

    def walk(value) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk({key: value for key, value in example.items() if key != "id"})
    return strings


def corpus_train_view(corpus: list[dict]) -> str:
    """The corpus' train records, normalized and joined: shared by every task's check."""
    return "\n".join(normalized(record.get("text", "")) for record in corpus if record.get("split") == "train")


def task_leaks(task: str, task_type: str, splits: dict[str, list[dict]], corpus: list[dict],
               train_view: str | None = None) -> list[Leak]:
    """The test examples of one task whose answer the task's training text contains.

    `train_view` is `corpus_train_view(corpus)`, passed in when several tasks share it.
    """
    training = [example for split in TRAINING_SPLITS for example in splits.get(split, [])]
    if task_type == "qa":
        return _qa_leaks(task, splits.get("test", []), training, corpus)
    field = _ANSWER_FIELD.get(task_type)
    if field is None:
        raise DomainbenchError(f"{task}: no leakage rule for task type {task_type!r}")
    texts = [text for example in training for text in example_strings(example)]
    haystack = TrainingText(texts, corpus_train_view(corpus) if train_view is None else train_view)
    return [
        Leak(task, example["id"], f"its {field} appears in the training text: {answer_text(task_type, example)[:60]!r}")
        for example in splits.get("test", [])
        if haystack.contains(answer_text(task_type, example))
    ]


def answer_text(task_type: str, example: dict) -> str:
    """The text of a test example that no training text may contain (see the module docstring)."""
    if task_type == "multiple_choice":
        return completed_text(example)
    return example[_ANSWER_FIELD[task_type]]


def _qa_leaks(task: str, test: list[dict], training: list[dict], corpus: list[dict]) -> list[Leak]:
    trained_pairs = {(normalized(e["question"]), normalized(a)) for e in training for a in e["answers"]}
    train_pages = {record["id"] for record in corpus if record.get("split") == "train"}
    leaks = []
    for example in test:
        question = normalized(example["question"])
        if any((question, normalized(answer)) in trained_pairs for answer in example["answers"]):
            leaks.append(Leak(task, example["id"], "the same question with the same answer is in train/dev"))
        source = (example.get("source") or {}).get("doc_id")
        if source in train_pages:
            leaks.append(Leak(task, example["id"], f"its source page {source!r} is in the corpus' train view"))
    return leaks


def check_leakage(name_or_path: str | Path) -> list[Leak]:
    """Every leak in a suite (empty when clean); reads suite.yaml, the task data and the corpus."""
    corpus, tasks = _suite_data(name_or_path)
    train_view = corpus_train_view(corpus)
    knowledge_base = KnowledgeBase(corpus)
    leaks: list[Leak] = []
    for task, splits in tasks:
        leaks.extend(task_leaks(task["name"], task["type"], splits, corpus, train_view))
        if corpus:
            leaks.extend(unknown_sources(task["name"], splits, knowledge_base.documents.keys()))
            mode = rag_mode(task.get("rag"), task["type"])
            leaks.extend(retrieval_leaks(task["name"], task["type"], mode, splits.get("test", []), knowledge_base))
    return leaks


def new_example_leaks(name_or_path: str | Path, task_name: str, examples: list[dict]) -> list[Leak]:
    """The leaks `examples` would bring as new test examples of one task of a suite, by the suite's own rules."""
    corpus, tasks = _suite_data(name_or_path)
    task, splits = next((task, splits) for task, splits in tasks if task.get("name") == task_name)
    leaks = task_leaks(task_name, task["type"], {**splits, "test": examples}, corpus)
    if corpus:
        knowledge_base = KnowledgeBase(corpus)
        leaks.extend(retrieval_leaks(task_name, task["type"], rag_mode(task.get("rag"), task["type"]), examples,
                                     knowledge_base))
    return leaks


def check_sources(name_or_path: str | Path) -> list[Leak]:
    """Every example of a suite naming a source document its corpus does not hold (none without a corpus)."""
    corpus, tasks = _suite_data(name_or_path)
    if not corpus:
        return []
    ids = {str(record["id"]) for record in corpus}
    return [leak for task, splits in tasks for leak in unknown_sources(task["name"], splits, ids)]


def unknown_sources(task: str, splits: dict[str, list[dict]], corpus_ids) -> list[Leak]:
    """The examples (every split) whose `source` names a document id that is not in `corpus_ids`, each named."""
    return [Leak(task, example["id"], f"its source document {doc_id!r} is not in the corpus", split)
            for split, examples in splits.items() for example in examples
            for doc_id in sorted(gold_documents(example.get("source")) - set(corpus_ids))]


def _suite_data(name_or_path: str | Path) -> tuple[list[dict], Iterator[tuple[dict, dict[str, list[dict]]]]]:
    """The corpus records, and each task's entry with its splits' rows (read one task at a time)."""
    path = suite_file(name_or_path)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    corpus = _read_records(path.parent / document["corpus"]) if document.get("corpus") else []
    tasks = ((task, {split: _read_records(path.parent / relative) for split, relative in task.get("data", {}).items()})
             for task in document.get("tasks", []))
    return corpus, tasks


class KnowledgeBase:
    """The corpus as retrieval sees it: normalized documents by id, searchable for whole-word substrings."""

    def __init__(self, corpus: list[dict]):
        self.documents = {str(record["id"]): normalized(f"{record.get('title', '')}\n{record.get('text', '')}")
                          for record in corpus}
        self._haystack = "\n".join(self.documents.values())

    def holding(self, text: str) -> list[str]:
        """Ids of the documents that hold `text` as whole words (fast path: one search of the whole)."""
        key = normalized(text)
        if not key.strip() or key not in self._haystack:
            return []
        return [doc_id for doc_id, document in self.documents.items() if key in document]


# The example field a query is made of, by task type (the task modules' rag_query).
_QUERY_FIELD = {"qa": "question", "summarization": "document", "classification": "text", "ner": "text",
                "multiple_choice": "completed text"}


def retrieval_leaks(task: str, task_type: str, mode: str, test: list[dict], knowledge_base: KnowledgeBase) -> list[Leak]:
    """The test examples whose label retrieval could show under the task's `rag` mode."""
    if mode == "off" or task_type not in _QUERY_FIELD:
        return []
    field = _QUERY_FIELD[task_type]
    if mode == "on":
        return [Leak(task, example["id"], f"its {field} is in knowledge-base document {holders[0]!r} word for word")
                for example in test if (holders := knowledge_base.holding(_query_text(task_type, example)))]
    leaks = []
    for example in test:
        sources = gold_documents(example.get("source"))
        if not sources:
            leaks.append(Leak(task, example["id"], "names no source document, so retrieval cannot exclude it"))
            continue
        if task_type in ("classification", "multiple_choice"):
            others = [doc for doc in knowledge_base.holding(_query_text(task_type, example)) if doc not in sources]
            if others:
                leaks.append(Leak(task, example["id"], f"its text is also in knowledge-base document {others[0]!r}, "
                                                       "which retrieval does not exclude"))
    return leaks


def _query_text(task_type: str, example: dict) -> str:
    return completed_text(example) if task_type == "multiple_choice" else example[_QUERY_FIELD[task_type]]


def _read_records(path: Path) -> list[dict]:
    rows, problems = read_rows(path)
    if problems:
        raise DomainbenchError(f"{problems[0]} (run `domainbench suite validate` for all problems)")
    return [row.fields for row in rows]

"""Named-entity recognition as generation: the model writes `TYPE: span` lines.

Each emitted span is located in the example text to get character offsets, then matched strictly
(same type, same start and end) against the gold entities — the entity-level precision, recall and
F1 that seqeval computes on BIO tags, micro-averaged and per type.
"""

from __future__ import annotations

import re

import numpy as np

from stats.statistic import Statistic, SumStatistic
from tasks.metrics import entity_counts, precision_recall_f1_arrays
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import (
    SHARE,
    bootstrap_aggregate,
    generation_requests,
    rescore_from_prediction,
    template_training_pair,
)

REQUIRED_FIELDS = ("text", "entities")
DEFAULT_TEMPLATE = "Text: {text}\nEntities:"
DEFAULT_GENERATION = {"max_new_tokens": 64, "stop": ["\n\n"]}
TAKES_FEWSHOT = True
METRICS = {"precision": SHARE, "recall": SHARE, "f1": SHARE, "f1_per_type": SHARE}  # f1_per_type: f1_<TYPE> of each type
HEADLINE_METRICS = ("f1",)
DEFAULT_RAG = "exclude-source"  # the entities come with the source page
QUOTABLE_REFERENCE = None
FEEDBACK_INPUT = "text"
NO_ENTITIES = "none"


# "TYPE: span", tolerating list bullets ("- ", "* ", "1. ") and "=" or "-" for the colon.
_ENTITY_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])?\s*([A-Za-z][\w .-]*?)\s*(?::|=|\s-\s)\s*(.*?)\s*$")
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
    text, entities = example.get("text"), example.get("entities")
    if not isinstance(text, str):
        return [("text", "expected a string")]
    if not isinstance(entities, list):
        return [("entities", "expected a list of {type, start, end} objects")]
    problems = []
    for index, entity in enumerate(entities):
        problems.extend((f"entities[{index}].{field}", message)
                        for field, message in _entity_problems(task, text, entity))
    return problems


def _entity_problems(task: TaskSpec, text: str, entity) -> list[tuple[str, str]]:
    if not isinstance(entity, dict) or not {"type", "start", "end"} <= entity.keys():
        return [("", "expected an object with type, start and end")]
    problems = []
    if entity["type"] not in task.labels:
        problems.append(("type", f"{entity['type']!r} is not in the label set ({', '.join(task.labels)})"))
    start, end = entity["start"], entity["end"]
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        problems.append(("start", f"offsets {start!r}..{end!r} are not a non-empty span of the "
                                  f"{len(text)}-character text"))
    elif "text" in entity and entity["text"] != text[start:end]:
        problems.append(("text", f"{entity['text']!r} does not match text[{start}:{end}] = {text[start:end]!r}"))
    return problems


def rag_query(example: dict) -> str:
    return example["text"]


def target(task: TaskSpec, example: dict) -> str:
    lines = [f"{e['type']}: {example['text'][e['start']:e['end']]}" for e in _in_order(example["entities"])]
    return "\n" + "\n".join(lines) if lines else " " + NO_ENTITIES


training_pair = template_training_pair(target)
requests_for_prompt = generation_requests


def parse_entities(output: str, text: str, labels) -> list[dict]:
    """Entities named in a model's output, each located in `text` (start/end None if absent).

    The k-th mention of the same (type, span) claims the k-th occurrence of the span in the text;
    a type is matched to the label set case-insensitively. A span not found whole is tried as a
    comma/semicolon-separated list, then without trailing punctuation.
    """
    canonical = {label.lower(): label for label in labels}
    claimed: dict[tuple[str, str], int] = {}
    entities = []
    for line in output.splitlines():
        match = _ENTITY_LINE.match(line)
        if not match:
            continue
        raw_type, raw_span = match.groups()
        entity_type = canonical.get(raw_type.strip().lower(), raw_type.strip())
        for span in _candidate_spans(raw_span.strip(_QUOTES + " "), text):
            entities.append(_locate(entity_type, span, text, claimed))
    return entities


def _candidate_spans(span: str, text: str) -> list[str]:
    if not span or span.lower() == NO_ENTITIES:
        return []
    if span in text:
        return [span]
    parts = [part.strip(_QUOTES + " ") for part in re.split(r"[,;]", span)]
    if len(parts) > 1 and all(part in text for part in parts if part):
        return [part for part in parts if part]
    trimmed = span.rstrip(".,;:")
    return [trimmed if trimmed in text else span]


def _locate(entity_type: str, span: str, text: str, claimed: dict) -> dict:
    nth = claimed.get((entity_type, span), 0)
    claimed[(entity_type, span)] = nth + 1
    start = -1
    for _ in range(nth + 1):
        start = text.find(span, start + 1)
        if start == -1:
            return {"type": entity_type, "text": span, "start": None, "end": None}
    return {"type": entity_type, "text": span, "start": start, "end": start + len(span)}


def score(task: TaskSpec, example: dict, responses: list[str]) -> ExampleRecord:
    prediction = {"output": responses[0],
                  "entities": parse_entities(responses[0], example["text"], task.labels)}
    reference = [{"type": e["type"], "text": example["text"][e["start"]:e["end"]], "start": e["start"],
                  "end": e["end"]} for e in _in_order(example["entities"])]
    return score_prediction(example["id"], prediction, reference)


def score_prediction(example_id: str, prediction: dict, reference: list[dict]) -> ExampleRecord:
    """Per-type [tp, fp, fn]; a predicted span not found in the text is a false positive.

    `prediction` is {"output": the model's text, "entities": located entities}.
    """
    predicted = prediction["entities"]
    located = [(e["type"], e["start"], e["end"]) for e in predicted if e["start"] is not None]
    counts = entity_counts([(e["type"], e["start"], e["end"]) for e in reference], located)
    for entity in predicted:
        if entity["start"] is None:
            counts.setdefault(entity["type"], [0, 0, 0])[1] += 1
    return ExampleRecord(example_id, prediction, reference, {"counts": counts})


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [tp, fp, fn of each type in turn] per example; micro P/R/F1 over all entities (undeclared
    predicted types count as false positives) and F1 per declared type, from summed counts."""
    types = sorted(set(task.labels).union(*(r.scores["counts"] for r in records)))
    rows = np.array([[count for t in types for count in r.scores["counts"].get(t, [0, 0, 0])] for r in records],
                    dtype=float).reshape(len(records), len(types) * 3)
    statistics = {}
    for position, name in enumerate(("precision", "recall", "f1")):
        if name in task.metrics:
            statistics[name] = _micro(position)
    if "f1_per_type" in task.metrics:
        for label in task.labels:
            statistics[f"f1_{label}"] = _per_type_f1(types.index(label))
    return rows, statistics


aggregate = bootstrap_aggregate(metric_statistics)


def _by_type(sums: np.ndarray) -> np.ndarray:
    """Summed rows (..., types * 3) as (..., types, [tp, fp, fn])."""
    return sums.reshape(*sums.shape[:-1], -1, 3)


def _micro(position: int) -> SumStatistic:
    def of_sums(sums: np.ndarray, n: int) -> np.ndarray:
        counts = _by_type(sums).sum(axis=-2)
        return precision_recall_f1_arrays(counts[..., 0], counts[..., 1], counts[..., 2])[position]
    return SumStatistic(of_sums)


def _per_type_f1(type_index: int) -> SumStatistic:
    def of_sums(sums: np.ndarray, n: int) -> np.ndarray:
        counts = _by_type(sums)[..., type_index, :]
        return precision_recall_f1_arrays(counts[..., 0], counts[..., 1], counts[..., 2])[2]
    return SumStatistic(of_sums)


rescore_record = rescore_from_prediction(score_prediction)


def scoring_settings(task: TaskSpec) -> dict:
    return {"output_format": "TYPE: span lines", "match": "strict span and type (seqeval entity level)",
            "average": "micro, and per type"}


def _in_order(entities: list[dict]) -> list[dict]:
    return sorted(entities, key=lambda e: (e["start"], e["end"]))


def example_from_correction(task: TaskSpec, text: str, correction: str) -> dict:
    """The entities a correction names as `TYPE: span` lines (the form the model answers in), each found in `text`."""
    entities = parse_entities(correction, text, task.labels)
    if not entities and correction.strip().lower() != NO_ENTITIES:
        raise ValueError(f"no `TYPE: span` line (or {NO_ENTITIES!r}) in the correction")
    for entity in entities:
        if entity["type"] not in task.labels:
            raise ValueError(f"{entity['type']!r} is not in the label set ({', '.join(task.labels)})")
        if entity["start"] is None:
            raise ValueError(f"{entity['text']!r} is not in the text")
    return {"text": text, "entities": [{key: entity[key] for key in ("type", "start", "end")} for entity in entities]}

"""Perplexity on held-out domain text through rolling log-likelihood.

Every token of a text is scored once, the first conditioned on the BOS (else EOS) token, as
lm-evaluation-harness does. Figures are corpus-weighted — total log-likelihood over total tokens,
words or UTF-8 bytes — not means of per-document figures. Word perplexity and bits per byte do not
depend on the tokenizer, so they compare models with different vocabularies.
"""

from __future__ import annotations

import math
import re

import numpy as np

from harness.requests import RollingRequest
from stats.statistic import Statistic, SumStatistic
from tasks.prompts import render
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import LOSS, bootstrap_aggregate, nonempty_string_problems, takes_no_corrections

REQUIRED_FIELDS = ("text",)
DEFAULT_TEMPLATE = "{text}"
DEFAULT_GENERATION = None
TAKES_FEWSHOT = False  # the text is scored as it is, with nothing before it
METRICS = {"token_perplexity": LOSS, "word_perplexity": LOSS, "bits_per_byte": LOSS}
HEADLINE_METRICS = ("word_perplexity", "token_perplexity", "bits_per_byte")
DEFAULT_RAG = "off"  # the text is scored as it is: retrieval does not apply
QUOTABLE_REFERENCE = None
FEEDBACK_INPUT = None
STATISTICS = ("logprob", "n_tokens", "n_words", "n_bytes")

_LOGPROB, _TOKENS, _WORDS, _BYTES = range(4)


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
    return nonempty_string_problems(example, REQUIRED_FIELDS)


def rag_query(example: dict) -> None:
    """Perplexity scores the text itself: retrieval does not apply."""
    return None


def target(task: TaskSpec, example: dict) -> str:
    """The whole rendered text is what the model is scored (and trained) on."""
    return render(task.template, example)


def training_pair(task: TaskSpec, example: dict) -> tuple[str, str]:
    return "", target(task, example)


def requests_for_prompt(task: TaskSpec, example: dict, prompt: str) -> list[RollingRequest]:
    return [RollingRequest(prompt)]


def count_words(text: str) -> int:
    # lm-evaluation-harness's word count (wikitext): re.split on whitespace, empty ends included.
    return len(re.split(r"\s+", text))


def score(task: TaskSpec, example: dict, responses) -> ExampleRecord:
    text = render(task.template, example)
    scores = {"logprob": responses[0].logprob, "n_tokens": responses[0].n_tokens,
              "n_words": count_words(text), "n_bytes": len(text.encode("utf-8"))}
    return ExampleRecord(example["id"], None, None, scores)


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [logprob, n_tokens, n_words, n_bytes] per document; figures are corpus-weighted ratios,
    so the bootstrap resamples documents and recomputes the ratio."""
    rows = np.array([[r.scores[name] for name in STATISTICS] for r in records], dtype=float)
    statistics = {"token_perplexity": _perplexity_per(_TOKENS), "word_perplexity": _perplexity_per(_WORDS),
                  "bits_per_byte": SumStatistic(_bits_per_byte)}
    return rows, {name: statistics[name] for name in task.metrics}


aggregate = bootstrap_aggregate(metric_statistics)


def _perplexity_per(unit: int) -> SumStatistic:
    return SumStatistic(lambda sums, n: np.exp(-sums[..., _LOGPROB] / sums[..., unit]))


def _bits_per_byte(sums: np.ndarray, n: int) -> np.ndarray:
    return -sums[..., _LOGPROB] / sums[..., _BYTES] / math.log(2)


def rescore_record(task: TaskSpec, record: ExampleRecord) -> ExampleRecord:
    """The stored log-likelihood and counts are the whole outcome: nothing to recompute."""
    return ExampleRecord(record.id, None, None, {name: record.scores[name] for name in STATISTICS})


def scoring_settings(task: TaskSpec) -> dict:
    return {"loglikelihood": "rolling, every token once, first token conditioned on BOS (else EOS)",
            "weighting": "corpus: total log-likelihood / total tokens, words or UTF-8 bytes",
            "words": r"len(re.split(r'\s+', text))"}


example_from_correction = takes_no_corrections  # a user's text alone is not an example of this type

"""Synthetic question–answer pairs: a generator reads train-split passages and writes "Q: … A: …".

As in Instruction Pre-Training (Cheng et al. 2024), the pairs are written from the domain's own
text; unlike it, nothing here trusts the generator. A pair is kept when it parses, its question
and answer have lengths within the recipe's bounds, its answer occurs in the passage (whole
words, retrieval.matching), its question was not asked before (normalised), and it overlaps no
test example (tuning/augment/overlap.py). Everything else is counted with its reason. The
generator is one callable, `generate(prompts) -> outputs` (same order), so any engine — the
builtin model, a local dir, an `openai+http` endpoint — can be behind it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.tokens import count_tokens
from harness.atomic import write_atomic
from harness.requests import GenerationRequest
from retrieval.matching import contains_phrase, normalized
from tuning.augment.overlap import TestOverlap
from tuning.augment.report import AugmentReport
from tuning.augment.settings import SyntheticQASettings

Generate = Callable[[list[str]], list[str]]


@dataclass
class Generator:
    """A synthetic-qa generator: what writes the pairs, what it is, where it runs, and what it has spent.

    `fingerprint` enters the tuned artifact's cache key (another generator writes other pairs);
    `tokenizer` (the generator model's; None for an endpoint given none) meters the tokens it writes.
    `outputs_dir`, when given, keeps what it wrote for each list of prompts: the training data is
    built before the artifact's cache key is known, so without it every rerun would generate again
    (minutes on a CPU), and an endpoint that samples would write other pairs and retrain the artifact.
    The directory must be one per generator and generation setting.
    """

    generate: Generate
    fingerprint: str
    device: str | None = None
    tokenizer: object | None = None
    outputs_dir: Path | None = None
    usage: dict = field(default_factory=lambda: {"generation_seconds": 0.0, "prompts": 0, "generated_tokens": 0,
                                                 "reused_outputs": 0})

    def metered(self, prompts: list[str]) -> list[str]:
        """`generate(prompts)` (or what it wrote for them before), its time and the tokens it wrote added to `usage`."""
        kept = self.outputs_dir / f"{hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:32]}.json" \
            if self.outputs_dir else None
        if kept is not None and kept.is_file():
            self.usage["reused_outputs"] += len(prompts)
            return json.loads(kept.read_text(encoding="utf-8"))
        start = time.perf_counter()
        outputs = self.generate(prompts)
        self.usage["generation_seconds"] += time.perf_counter() - start
        self.usage["prompts"] += len(prompts)
        if self.tokenizer is None:
            self.usage["generated_tokens"] = None
        elif self.usage["generated_tokens"] is not None:
            self.usage["generated_tokens"] += count_tokens(self.tokenizer, outputs)
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(kept, json.dumps(outputs))
        return outputs

# The training layout of a synthetic pair: the builtin suites' QA template (Question: …\nAnswer:).
TEMPLATE = "Question: {question}\nAnswer:"
MIN_PASSAGE_CHARS = 200
_PAIR = re.compile(r"^\s*Q\s*:\s*(?P<question>.+?)\s*\n\s*A\s*:\s*(?P<answer>.+?)\s*$", re.MULTILINE)
_BLOCKS = re.compile(r"\n\s*\n")


def qa_prompt(passage: str, pairs: int) -> str:
    """The instruction a generator completes; it ends with "Q:" so the first question follows at once."""
    return (f"Read the passage, then write {pairs} questions a reader can answer from it. Each answer is a "
            "short phrase copied from the passage.\n\n"
            f"Passage:\n{passage}\n\n"
            "Write each question on a line starting with \"Q:\" and its answer on the next line starting with "
            "\"A:\".\n\nQ:")


def parse_pairs(output: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of a generator's output (which continues the prompt's final "Q:")."""
    return [(match["question"], match["answer"]) for match in _PAIR.finditer("Q:" + output)]


def passages(records: list[dict], max_chars: int) -> list[str]:
    """Each text's blocks (cut at blank lines) joined into passages of at most `max_chars`.

    A block longer than that is wrapped into pieces at word boundaries (its spacing folded).
    """
    found = []
    for record in records:
        passage = ""
        for block in _BLOCKS.split(record["text"]):
            block = block.strip()
            for piece in [block] if len(block) <= max_chars else textwrap.wrap(block, max_chars):
                if passage and len(passage) + 2 + len(piece) > max_chars:
                    found.append(passage)
                    passage = ""
                passage = f"{passage}\n\n{piece}" if passage else piece
        found.append(passage)
    return [passage for passage in found if len(passage) >= MIN_PASSAGE_CHARS]


def synthetic_qa_pairs(records: list[dict], generate: Generate, settings: SyntheticQASettings, *, seed: int,
                       guard: TestOverlap, report: AugmentReport) -> list[tuple[str, str]]:
    """Training (prompt, completion) pairs from a generator's questions on `records` (train corpus records)."""
    pool = passages(records, settings.passage_chars)
    chosen = random.Random(seed).sample(pool, min(settings.passages, len(pool)))
    report.read += len(chosen)
    outputs = generate([qa_prompt(passage, settings.pairs_per_passage) for passage in chosen])
    if len(outputs) != len(chosen):
        raise ValueError(f"synthetic-qa: the generator answered {len(outputs)} of {len(chosen)} prompts")
    seen: set[str] = set()
    pairs = []
    for passage, output in zip(chosen, outputs):
        parsed = parse_pairs(output)
        if not parsed:
            report.drop("no Q:/A: pair in the output", output)
        for question, answer in parsed[:settings.pairs_per_passage]:
            shown = f"Q: {question}\nA: {answer}"
            reason = _rejection(question, answer, passage, settings, seen)
            if reason is None and (test_example := guard.overlapping(f"{question}\n{answer}")) is not None:
                reason, shown = "overlaps the test split", f"{shown}\n(test example {test_example})"
            if reason is not None:
                report.drop(reason, shown)
                continue
            seen.add(normalized(question))
            report.keep("question-answer pair", shown)
            pairs.append((TEMPLATE.format(question=question), " " + answer))
    return pairs


def _rejection(question: str, answer: str, passage: str, settings: SyntheticQASettings,
               seen: set[str]) -> str | None:
    """Why a parsed pair is not kept, the test split aside (None: it is)."""
    low, high = settings.question_words
    if not low <= len(question.split()) <= high:
        return f"question not {low}-{high} words"
    low, high = settings.answer_words
    if not low <= len(answer.split()) <= high:
        return f"answer not {low}-{high} words"
    if not contains_phrase(passage, answer):
        return "answer not in the passage"
    if normalized(question) in seen:
        return "duplicate question"
    return None


def engine_generate(engine, settings: SyntheticQASettings) -> Generate:
    """`generate` over any engine (engines/base.py): its generate(list[GenerationRequest]) -> list[str]."""
    def generate(prompts: list[str]) -> list[str]:
        return engine.generate([GenerationRequest(prompt, max_new_tokens=settings.max_new_tokens)
                                for prompt in prompts])
    return generate

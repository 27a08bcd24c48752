"""Reading comprehension (AdaptLLM, Cheng et al., ICLR 2024): raw text with exercises mined from it.

Continued pre-training on raw domain text teaches the domain but can cost prompting ability;
the same text followed by questions about it, answered from the text, keeps both. The exercises
are mined with regular expressions, no model (the paper's six kinds, our own patterns):

- title: "What is the title of this text?" answered by the record's title (their summarization);
- keywords: three domain terms of a sentence (tasks/documents/terms.py's keyness against general
  English) → the sentence (their word-to-text);
- inference: a sentence and the next one opened by a connective — "Therefore," (entailment),
  "However," (contradiction), "Moreover," (neutral) → yes / no / maybe (their NLI);
- cause: the sentence before "Therefore," → the one after; "X because Y" → Y (their commonsense);
- paraphrase: a sentence and the next one opened by "In other words," or "That is," → the
  restatement (their paraphrase);
- completion: the first part of a long sentence → the rest (their text completion).

Sentences are tasks/documents/examples.py's prose sentences (code blocks and headings left out).
Each text keeps its words and gains at most `per_kind` exercises of each kind, chosen with a
generator seeded by the augmentation seed and the text itself, so a text's exercises do not
depend on which other texts are augmented. An exercise overlapping the test split is dropped.
"""

from __future__ import annotations

import random
import re

from tasks.documents.examples import sentences
from tasks.documents.terms import TermCounts, document_words, select_terms
from tuning.augment.overlap import TestOverlap
from tuning.augment.report import AugmentReport
from tuning.augment.settings import ReadingSettings

_ENTAIL = ("Therefore", "Thus", "Hence", "Accordingly", "Consequently", "As a result")
_CONTRADICT = ("However", "But", "In contrast", "On the other hand", "Conversely")
_NEUTRAL = ("Moreover", "Furthermore", "In addition", "Additionally", "Also")
_RESTATE = ("In other words", "That is", "That is to say", "Namely", "Put differently")
_OPENER = re.compile(r"^(?P<connective>{})\s*,\s*(?P<rest>\S.*)$".format(
    "|".join(sorted((re.escape(word) for word in (*_ENTAIL, *_CONTRADICT, *_NEUTRAL, *_RESTATE)),
                    key=len, reverse=True))))
_BECAUSE = re.compile(r"^(?P<effect>.{30,}?),?\s+(?:because of|because|due to|owing to)\s+(?P<cause>.{15,}?)[.!?]$")
_VERDICT = {**dict.fromkeys(_ENTAIL, "Yes"), **dict.fromkeys(_CONTRADICT, "No"), **dict.fromkeys(_NEUTRAL, "Maybe")}
KEYWORDS_PER_SENTENCE = 3
COMPLETION_MIN_WORDS = 12
# Domain terms as `suite new` selects them (tasks/documents/build.py's defaults).
TERMS, TERM_MIN_DOCUMENTS, TERM_MIN_RATIO = 200, 3, 100.0
_INTROS = ("Answer these questions about the text above.", "Questions on the text:",
           "Now answer the following questions based on the text.")


def domain_terms(texts: list[str]) -> dict[str, str]:
    """Lower case -> spelling of the domain terms of these (train) texts."""
    counts = TermCounts()
    for text in texts:
        counts.add(document_words(text), len(text.split()))
    terms = select_terms(counts, count=TERMS, min_docs=TERM_MIN_DOCUMENTS, min_ratio=TERM_MIN_RATIO)
    return {term.term.lower(): term.term for term in terms}


def reading_comprehension(records: list[dict], settings: ReadingSettings, *, seed: int, guard: TestOverlap,
                          report: AugmentReport) -> list[str]:
    """Each record's text (train-split corpus records: title, text) followed by its exercises."""
    terms = domain_terms([record["text"] for record in records])
    augmented = []
    for record in records:
        report.read += 1
        rng = random.Random(f"{seed}\n{record['text']}")
        exercises = []
        for kind, mined in mined_exercises(record, terms, rng).items():
            for question, answer, source in rng.sample(mined, min(settings.per_kind, len(mined))):
                exercise = f"{question}\nAnswer: {answer}"
                # The source too: an exercise that cuts a test sentence in two holds no long run of it.
                test_example = guard.overlapping(f"{source}\n{exercise}")
                if test_example is None:
                    report.keep(kind, exercise)
                    exercises.append(exercise)
                else:
                    report.drop("overlaps the test split", f"{exercise}\n(test example {test_example})")
        rng.shuffle(exercises)
        augmented.append(_with_exercises(record["text"], exercises, rng))
    return augmented


def _with_exercises(text: str, exercises: list[str], rng: random.Random) -> str:
    if not exercises:
        return text
    return "\n\n".join([text.rstrip(), rng.choice(_INTROS), *exercises])


def mined_exercises(record: dict, terms: dict[str, str], rng: random.Random) -> dict[str, list[tuple[str, str, str]]]:
    """(question, answer, the text they were made from) of each kind found in one record."""
    prose = sentences(record["text"])
    found: dict[str, list[tuple[str, str, str]]] = {
        kind: [] for kind in ("title", "keywords", "inference", "cause", "paraphrase", "completion")}
    if record.get("title"):
        found["title"].append(("What is the title of this text?", record["title"], record["title"]))
    for first, second in zip(prose, prose[1:]):
        _connective_exercises(first, second, found)
    for sentence in prose:
        _sentence_exercises(sentence, terms, rng, found)
    return {kind: pairs for kind, pairs in found.items() if pairs}


def _connective_exercises(first: str, second: str, found: dict) -> None:
    match = _OPENER.match(second)
    if match is None:
        return
    connective, rest, source = match["connective"], _capitalized(match["rest"]), f"{first} {second}"
    if connective in _VERDICT:
        found["inference"].append((f'Premise: "{first}"\nHypothesis: "{rest}"\n'
                                   "Does the premise entail the hypothesis? Yes, no or maybe?", _VERDICT[connective],
                                   source))
    if connective in _ENTAIL:
        found["cause"].append((f'What follows from this? "{first}"', rest, source))
    elif connective in _RESTATE:
        found["paraphrase"].append((f'Say this in other words: "{first}"', rest, source))
    elif connective in _CONTRADICT:
        found["paraphrase"].append((f'Write a sentence that qualifies or contrasts with this one: "{first}"', rest,
                                    source))


def _sentence_exercises(sentence: str, terms: dict[str, str], rng: random.Random, found: dict) -> None:
    because = _BECAUSE.match(sentence)
    if because is not None:
        found["cause"].append((f'What is the cause? "{because["effect"]}."', _capitalized(because["cause"]) + ".",
                               sentence))
    held = sorted({terms[word.lower()] for word in document_words(sentence) if word.lower() in terms})
    if len(held) >= KEYWORDS_PER_SENTENCE:
        keywords = ", ".join(rng.sample(held, KEYWORDS_PER_SENTENCE))
        found["keywords"].append((f"Which sentence of the text uses all of these terms: {keywords}?", sentence,
                                  sentence))
    words = sentence.split()
    if len(words) >= COMPLETION_MIN_WORDS:
        cut = rng.randint(len(words) // 3, 2 * len(words) // 3)
        found["completion"].append((f'How does this sentence of the text continue? "{" ".join(words[:cut])} …"',
                                    " ".join(words[cut:]), sentence))


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]

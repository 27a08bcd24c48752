"""The label-free tasks' examples, made from one kept document at a time.

- perplexity: the document's first characters (cut at a line end), for dev and test documents;
- term-cloze: a sentence holding exactly one domain term (a word, or a two-word phrase masked
  whole), the term masked: the text before it is the context, the rest the suffix; choices are
  the term and distractor terms from the same list that the document never uses (so a distractor
  cannot also be right);
- known-item: the document's first sentence that holds neither its title nor any of its headings,
  and the question which document it is from, answered by its title among other documents'
  titles; with retrieval, the same sentence is the query that must find its own document
  (recall@k, MRR). A query naming its document would test string matching, not knowledge.

Sentences are taken from the prose (code blocks and heading lines left out). A template sentence
— one that several documents hold word for word ("This error code is no longer emitted by the
compiler.") — is neither a query nor a cloze item: it says nothing about its own document.

Every example carries `source.doc_id`. Draws (which sentences, which distractors, the order of
choices) are seeded by the suite seed and the document id, so a document's examples do not depend
on the other documents.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
from dataclasses import dataclass, field

from retrieval.matching import contains_phrase
from tasks.documents.layout import heading_of, headings, lines_outside_code

# Blocks end at blank lines and at line ends after . ! ? : (a list item, a line of code); lines
# inside a block are one wrapped paragraph.
_BLOCK_END = re.compile(r"\n\s*\n|(?<=[.!?:])\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")
SENTENCE_WORDS = (8, 60)
SENTENCE_CHARS = (40, 400)
MAX_SENTENCE_SYMBOL_SHARE = 0.12
CLOZE_PER_DOCUMENT = 2
MIN_CONTEXT_WORDS = 3


@dataclass(frozen=True)
class ExampleSettings:
    seed: int
    choices: int = 4
    perplexity_chars: int = 4000


def sentences(text: str) -> list[str]:
    """Prose sentences of a document: code blocks and headings left out, blocks joined into lines,
    split after . ! ?, kept when 8–60 words, 40–400 characters, ending in . ! ? and mostly letters
    (not code or tables)."""
    prose = "\n".join("" if heading_of(line) is not None else line for line in lines_outside_code(text))
    found = []
    for block in _BLOCK_END.split(prose):
        for sentence in split_sentences(" ".join(block.split())):
            n_words = len(sentence.split())
            if not (SENTENCE_WORDS[0] <= n_words <= SENTENCE_WORDS[1]
                    and SENTENCE_CHARS[0] <= len(sentence) <= SENTENCE_CHARS[1] and sentence[-1] in ".!?"):
                continue
            visible = sentence.replace(" ", "")
            if sum(1 for c in visible if not c.isalnum()) / len(visible) <= MAX_SENTENCE_SYMBOL_SHARE:
                found.append(sentence)
    return found


def split_sentences(line: str) -> list[str]:
    """One line of prose cut after . ! ? where the next sentence starts with a capital."""
    return _SENTENCE_END.split(line)


def sentence_key(sentence: str) -> int:
    """A stable 64-bit hash of the sentence in lower case, spacing folded, to count templates.

    (str methods, not retrieval.matching's normalisation: this runs on every sentence three times.)
    """
    folded = " ".join(sentence.lower().split())
    return int.from_bytes(hashlib.blake2b(folded.encode("utf-8"), digest_size=8).digest(), "big")


def own_sentences(doc_sentences: list[str], templates: frozenset[int]) -> list[str]:
    """The sentences that are not templates shared with other documents."""
    return [sentence for sentence in doc_sentences if sentence_key(sentence) not in templates]


def perplexity_example(doc: dict, settings: ExampleSettings) -> dict:
    text = doc["text"]
    if len(text) > settings.perplexity_chars:
        cut = text.rfind("\n", 0, settings.perplexity_chars)
        text = text[:cut if cut > settings.perplexity_chars // 2 else settings.perplexity_chars].rstrip()
    return {"id": doc["id"], "text": text, "source": {"doc_id": doc["id"]}}


def cloze_examples(doc: dict, doc_sentences: list[str], terms: dict[str, str], settings: ExampleSettings) -> list[dict]:
    """Up to two cloze examples; `terms` maps a term in lower case to its spelling in the choices."""
    rng = random.Random(f"{settings.seed}:cloze:{doc['id']}")
    used = {word.lower() for word in re.findall(r"[\w-]+", doc["text"])}
    # A two-word term counts as used when the document has both its words (cheap, and errs towards safety).
    distractor_pool = sorted(spelling for lower, spelling in terms.items() if not set(lower.split()) <= used)
    if len(distractor_pool) < settings.choices - 1:
        return []
    candidates = [cloze for sentence in doc_sentences if (cloze := _masked(sentence, terms))]
    examples = []
    for number, (prefix, term, suffix) in enumerate(rng.sample(candidates, min(CLOZE_PER_DOCUMENT, len(candidates)))):
        # Every choice carries the space the masked term had: a choice must not stand out by its form.
        choices, answer = _shuffled(term, [" " + d for d in rng.sample(distractor_pool, settings.choices - 1)], rng)
        examples.append({"id": f"{doc['id']}#cloze-{number}", "text": prefix, "choices": choices,
                         "answer": answer, "suffix": suffix, "source": {"doc_id": doc["id"]}})
    return examples


def path_title(doc_id: str) -> str:
    """The title of a document that names none: its path under the root, without `.gz`."""
    return doc_id.split("/", 1)[-1].removesuffix(".gz")


def title_form(doc: dict) -> str:
    """`path` for a title made from the path, `heading` for the document's own (HTML title, first heading)."""
    return "path" if doc["title"] == path_title(doc["id"]) else "heading"


def known_item_example(doc: dict, doc_sentences: list[str], titles: dict[str, list[str]],
                       settings: ExampleSettings) -> dict | None:
    """The document's first sentence holding neither its title nor a heading, and its title among others;
    None if neither fits. `doc_sentences` are the document's own (templates already left out).

    Other titles are drawn from those of the same form (`titles`: form → titles), so the right
    choice never stands out as the one path among headings, or the reverse.
    """
    title = doc["title"]
    names = [title, *headings(doc["text"])]
    query = next((s for s in doc_sentences if not any(contains_phrase(s, name) for name in names)), None)
    rng = random.Random(f"{settings.seed}:known-item:{doc['id']}")
    pool = titles.get(title_form(doc), [])
    others = {other for other in rng.sample(pool, min(len(pool), 4 * settings.choices))
              if other.lower() != title.lower()}
    if query is None or len(others) < settings.choices - 1:
        return None
    choices, answer = _shuffled(title, sorted(others)[:settings.choices - 1], rng)
    return {"id": f"{doc['id']}#known-item", "text": query, "choices": [" " + c for c in choices],
            "answer": answer, "source": {"doc_id": doc["id"]}}


def _masked(sentence: str, terms: dict[str, str]) -> tuple[str, str, str] | None:
    """(text before, the term as written, text after) for the first term the sentence holds once,
    a two-word term before the single word it starts with."""
    words = list(re.finditer(r"(?<![\w-])[A-Za-z][\w-]*(?![\w-])", sentence))
    for position, match in enumerate(words):
        if position < MIN_CONTEXT_WORDS or not sentence[:match.start()].endswith(" "):
            continue
        pair = words[position + 1] if position + 1 < len(words) else None
        spans = ([(match.start(), pair.end())] if pair and sentence[match.end():pair.start()] == " " else []) \
            + [(match.start(), match.end())]
        for start, end in spans:
            term = sentence[start:end]
            if term.lower() in terms and _occurrences(sentence, term) == 1:
                # the choice carries its space, as classification verbalisers do
                return sentence[:start].rstrip(), " " + term, sentence[end:]
    return None


def _occurrences(text: str, term: str) -> int:
    return len(re.findall(rf"(?<![\w-]){re.escape(term.lower())}(?![\w-])", text.lower()))


def _shuffled(right: str, wrong: list[str], rng: random.Random) -> tuple[list[str], int]:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return choices, choices.index(right)


@dataclass
class CappedSelection:
    """At most `cap` examples, chosen by sha256 of their id (a stable sample), kept in arrival order.

    Holds at most `cap` examples at any time, so a large corpus never sits in memory as examples.
    """

    cap: int
    _heap: list = field(default_factory=list)   # (-rank, arrival, example): the worst-ranked on top
    _arrivals: int = 0

    def add(self, example: dict) -> None:
        rank = int(hashlib.sha256(example["id"].encode("utf-8")).hexdigest()[:16], 16)
        item = (-rank, self._arrivals, example)  # min-heap on -rank: the largest rank is on top
        self._arrivals += 1
        if len(self._heap) < self.cap:
            heapq.heappush(self._heap, item)
        elif item[0] > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)

    def examples(self) -> list[dict]:
        return [example for _, _, example in sorted(self._heap, key=lambda item: item[1])]

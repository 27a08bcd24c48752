"""`domainbench suite new`: a team's documents → a suite directory, streaming, in passes over the data.

1. walk → extract (a process pool) → a temporary file, counting in how many documents each prose
   line occurs; the lines in too many are boilerplate;
2. extracted texts → boilerplate out, clean (a process pool) → de-duplicate → corpus.jsonl.gz, each
   kept document with its split, counting the documents each sentence occurs in (a sentence in two
   or more is a template);
2b. the training documents' own prose → the domain-term list;
3. corpus → each task's candidate examples (capped, stable samples);
4. corpus → test examples whose text another document holds are dropped (the leakage guard).
Then the data files, suite.yaml, the audit files and the data card are published together: a
failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from harness.atomic import staged_dir
from harness.errors import DomainbenchError
from harness.progress import progress_bar
from tasks.documents.audit import (
    write_boilerplate,
    write_duplicates,
    write_leaks,
    write_terms,
    write_unreadable,
)
from tasks.documents.boilerplate import LineFrequency
from tasks.documents.card import data_card, suite_yaml
from tasks.documents.collect import check_roots, walk_sources
from tasks.documents.dedup import Deduplicator
from tasks.documents.examples import (
    CappedSelection,
    ExampleSettings,
    cloze_examples,
    known_item_example,
    own_sentences,
    path_title,
    perplexity_example,
    sentences,
    title_form,
)
from tasks.documents.options import BuildStats, SuiteOptions
from tasks.documents.overlap import find_leaks
from tasks.documents.process import (
    Outcome,
    ProcessSettings,
    clean_extraction,
    extract_source,
    ordered_map,
)
from tasks.documents.splits import SPLITS
from tasks.documents.terms import TermCounts, document_words, select_terms
from tasks.multiple_choice import completed_text

CORPUS_FILE = "corpus.jsonl.gz"
# task -> its splits; perplexity needs no train split (the corpus' train view is that).
TASK_SPLITS = {"perplexity": ("dev", "test"), "term-cloze": SPLITS, "known-item": SPLITS}
# Test examples are drawn with this much spare, so the leakage guard's drops rarely leave fewer than the cap.
TEST_SPARE = 1.5


def build_documents_suite(options: SuiteOptions, out_dir: Path) -> BuildStats:
    """Build the suite `options` describes into `out_dir` (replaced whole, only when the build succeeds)."""
    check_roots(list(options.docs))
    started = time.perf_counter()
    stats = BuildStats()
    with staged_dir(out_dir) as staging:
        staging.chmod(0o755)  # mkdtemp's 0700 would keep a suite meant for the team from the team
        corpus = staging / CORPUS_FILE
        with stats.timed("extract, clean, de-duplicate"):
            titles, templates = _write_corpus(options, stats, corpus, staging / "audit")
        with stats.timed("terms"):
            stats.terms = select_terms(_term_counts(corpus, templates), count=options.terms,
                                       min_docs=options.min_term_documents, min_ratio=options.min_term_ratio)
            write_terms(staging / "audit" / "terms.tsv", stats.terms)
        with stats.timed("examples"):
            selections = _candidate_examples(options, stats, corpus, titles, templates)
        with stats.timed("leakage guard"):
            tasks = _guarded_examples(options, stats, corpus, selections, staging / "audit")
        for task, splits in tasks.items():
            for split, examples in splits.items():
                _write_jsonl_gz(staging / task / f"{split}.jsonl.gz", examples)
        stats.seconds = time.perf_counter() - started
        (staging / "suite.yaml").write_text(suite_yaml(options, stats), encoding="utf-8")
        (staging / "README.md").write_text(data_card(options, stats), encoding="utf-8")
    return stats


def _write_corpus(options: SuiteOptions, stats: BuildStats, corpus: Path,
                  audit: Path) -> tuple[dict[str, list[str]], frozenset[int]]:
    """Passes 1 and 2: every document extracted, then cleaned and de-duplicated, kept ones written with their split.

    Returns the titles by form and the template sentences' keys.
    """
    audit.mkdir()
    with tempfile.TemporaryDirectory(prefix="domainbench-extracted-") as scratch:
        extracted = Path(scratch) / "extracted.jsonl"   # not compressed: written once, read once, deleted
        frequency = _extract_all(options, stats, extracted)
        boilerplate = frequency.boilerplate(min_share=options.cleaning.boilerplate_share,
                                            min_documents=options.cleaning.boilerplate_min_documents)
        settings = ProcessSettings(options.cleaning, options.seed, options.fractions, boilerplate)
        titles, sentence_documents = _clean_all(settings, options, stats, extracted, corpus, audit)
    templates = frozenset(key for key, n in sentence_documents.items() if n > 1)
    stats.templates = len(templates)
    stats.unreadable = [*stats.collection.unreadable, *stats.unreadable]
    write_unreadable(audit / "unreadable.jsonl", stats.unreadable)
    write_boilerplate(audit / "boilerplate.tsv", stats.boilerplate_lines)
    _check_enough(options, stats)
    return titles, templates


def _extract_all(options: SuiteOptions, stats: BuildStats, extracted: Path) -> LineFrequency:
    """Pass 1: every document through the pool; extracted texts to `extracted`, their prose lines counted."""
    sources = walk_sources(list(options.docs), stats.collection, text_field=options.text_field,
                           exclude=options.exclude)
    frequency = LineFrequency()
    with extracted.open("w", encoding="utf-8") as out, progress_bar() as progress:
        bar = progress.add_task("extracting", total=None, info="")
        for extraction in ordered_map(extract_source, sources, workers=options.workers):
            progress.update(bar, advance=1, info=extraction.doc_id[-60:])
            stats.documents += 1
            stats.bytes_in += extraction.bytes_in
            if extraction.status == "unreadable":
                stats.unreadable.append((extraction.doc_id, extraction.reason))
                continue
            frequency.add(extraction.line_keys)
            out.write(_jsonl_line(extraction.record()))
    return frequency


def _clean_all(settings: ProcessSettings, options: SuiteOptions, stats: BuildStats, extracted: Path, corpus: Path,
               audit: Path) -> tuple[dict[str, list[str]], Counter]:
    """Pass 2: boilerplate out, filters, de-duplication; kept documents to the corpus, their sentences counted."""
    dedup = Deduplicator(options.near_duplicate_threshold)
    titles: dict[str, list[str]] = {"path": [], "heading": []}
    sentence_documents: Counter = Counter()
    with _gzip_writer(corpus) as out, (audit / "dropped.jsonl").open("w", encoding="utf-8") as dropped, \
            progress_bar() as progress:
        bar = progress.add_task("cleaning", total=stats.documents - len(stats.unreadable), info="")
        for outcome in ordered_map(partial(clean_extraction, settings=settings), _read_jsonl(extracted),
                                   workers=options.workers):
            progress.update(bar, advance=1, info=outcome.doc_id[-60:])
            _count_extraction(stats, outcome)
            if outcome.status == "dropped":
                stats.dropped[outcome.reason] += 1
                stats.folder_drops[_section(outcome.doc_id), outcome.reason] += 1
                stats.drop_values.setdefault(outcome.reason, []).append(outcome.value)
                dropped.write(json.dumps({"id": outcome.doc_id, "folder": _section(outcome.doc_id),
                                          "reason": outcome.reason, "value": outcome.value,
                                          "language": outcome.language}, ensure_ascii=False) + "\n")
                continue
            duplicate = dedup.check(outcome.doc_id, outcome.key, outcome.signature)
            if duplicate is not None:
                stats.exact_duplicates += duplicate.match == "exact"
                stats.near_duplicates += duplicate.match == "near"
                continue
            record = {"id": outcome.doc_id, "title": outcome.title or path_title(outcome.doc_id),
                      "section": _section(outcome.doc_id), "split": outcome.split, "text": outcome.text}
            titles[title_form(record)].append(record["title"])
            stats.split_documents[outcome.split] += 1
            stats.split_characters[outcome.split] += len(outcome.text)
            sentence_documents.update(outcome.sentence_keys)
            out.write(_jsonl_line(record).encode("utf-8"))
    stats.clusters = len(dedup.clusters)
    write_duplicates(audit / "duplicates.jsonl", dedup.clusters)
    return titles, sentence_documents


def _term_counts(corpus: Path, templates: frozenset[int]) -> TermCounts:
    """Pass 2b: the candidate words of the training documents' own prose."""
    counts = TermCounts()
    for doc in _read_corpus(corpus):
        if doc["split"] == "train":
            counts.add(document_words(doc["text"], templates), len(doc["text"].split()))
    return counts


def _count_extraction(stats: BuildStats, outcome: Outcome) -> None:
    stats.folders[_section(outcome.doc_id)] += 1
    stats.boilerplate_lines.update(set(outcome.boilerplate))
    stats.boilerplate_documents += bool(outcome.boilerplate)
    stats.decoded_as[outcome.decoded_as] += 1
    stats.repaired += outcome.repaired
    stats.pii.update(outcome.pii)
    if outcome.language:
        stats.languages[outcome.language] += 1


def _check_enough(options: SuiteOptions, stats: BuildStats) -> None:
    docs = " ".join(map(str, options.docs))
    readable = stats.documents - (len(stats.unreadable) - len(stats.collection.unreadable))
    if readable == 0:
        raise DomainbenchError(
            f"--docs {docs}: no readable documents ({stats.collection.files} files: {stats.documents} "
            f".txt/.md/.rst/.html/.pdf/.jsonl or archived ones, {len(stats.unreadable)} of them unreadable)")
    empty = [split for split in SPLITS if not stats.split_documents[split]]
    if empty:
        raise DomainbenchError(
            f"--docs {docs}: {stats.kept} documents left after cleaning and "
            f"de-duplication (of {stats.documents}), and none in the {', '.join(empty)} split; a suite needs "
            "documents in every split (more documents, a different --split, or looser filters)")


def _candidate_examples(options: SuiteOptions, stats: BuildStats, corpus: Path, titles: dict[str, list[str]],
                        templates: frozenset[int]) -> dict[str, dict[str, CappedSelection]]:
    """Pass 3: each document's examples (from its own sentences, templates left out), into capped samples."""
    settings = ExampleSettings(seed=options.seed, choices=options.choices, perplexity_chars=options.perplexity_chars)
    terms = {term.term.lower(): term.term for term in stats.terms}
    selections = {task: {split: CappedSelection(int(options.cap(task, split) * (TEST_SPARE if split == "test" else 1)))
                         for split in splits} for task, splits in TASK_SPLITS.items()}
    for doc in _read_corpus(corpus):
        split = doc["split"]
        doc_sentences = own_sentences(sentences(doc["text"]), templates)
        if split in selections["perplexity"]:
            selections["perplexity"][split].add(perplexity_example(doc, settings))
        for example in cloze_examples(doc, doc_sentences, terms, settings) if terms else ():
            selections["term-cloze"][split].add(example)
        if (example := known_item_example(doc, doc_sentences, titles, settings)) is not None:
            selections["known-item"][split].add(example)
    return selections


def _guarded_examples(options: SuiteOptions, stats: BuildStats, corpus: Path,
                      selections: dict[str, dict[str, CappedSelection]], audit: Path) -> dict[str, dict[str, list[dict]]]:
    """Pass 4: drop test examples whose key text is in a document other than their own; cap the rest."""
    test = {(task, example["id"]): (_key_text(task, example), example["source"]["doc_id"])
            for task, splits in selections.items() for example in splits["test"].examples()}
    leaking = find_leaks(test, _read_corpus(corpus))
    write_leaks(audit / "leaks.jsonl", leaking)
    stats.leaks.update(task for task, _ in leaking)
    tasks = {}
    for task, splits in selections.items():
        examples = {split: selection.examples() for split, selection in splits.items()}
        kept = CappedSelection(options.cap(task, "test"))
        for example in examples["test"]:
            if (task, example["id"]) not in leaking:
                kept.add(example)
        examples["test"] = kept.examples()
        stats.examples[task] = {split: len(rows) for split, rows in examples.items()}
        if examples["test"]:  # a task without test examples is left out (the data card says so)
            tasks[task] = {split: rows for split, rows in examples.items() if rows}
    if not tasks:
        raise DomainbenchError(f"--docs {' '.join(map(str, options.docs))}: {stats.kept} documents kept, "
                               "too few to make any task's test examples")
    return tasks


def _key_text(task: str, example: dict) -> str:
    """The text of a test example no other document may hold (a known-item query: the query itself)."""
    if task == "perplexity" or task == "known-item":
        return example["text"]
    return completed_text(example)


def _section(doc_id: str) -> str:
    """The folder under the root a document sits in (a package under /usr/share/doc); '' at the top."""
    parts = doc_id.split("/")
    return parts[1] if len(parts) > 2 else ""


def _jsonl_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


@contextlib.contextmanager
def _gzip_writer(path: Path):
    # No name or time in the gzip header: the bytes depend only on the records.
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        yield out


def _read_corpus(path: Path) -> Iterator[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _write_jsonl_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _gzip_writer(path) as out:
        for record in records:
            out.write(_jsonl_line(record).encode("utf-8"))

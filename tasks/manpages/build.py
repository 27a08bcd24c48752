"""`domainbench suite build manpages`: pages → example records → gzipped JSONL, byte-reproducible.

The path of one page: load_page (groff + markup) → the per-page makers → its split → the
task's file. Only the last steps look at all pages at once: capping the largest splits and
dropping the test examples the leakage check flags.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DomainbenchError
from harness.progress import progress_bar
from tasks.leakage import corpus_train_view, task_leaks
from tasks.manpages.examples import (
    corpus_record,
    ner_examples,
    perplexity_examples,
    section_examples,
    summarize_examples,
)
from tasks.manpages.pages import MAN_PAGES_SOURCE, Page, candidate_paths, load_page
from tasks.manpages.questions import errno_qa_examples

SUITE_DIR = Path(__file__).resolve().parent.parent / "suites" / "manpages"
DEFAULT_SOURCE = Path("/usr/share/man")
CORPUS_FILE = "corpus.jsonl.gz"

# (task, task type, maker, splits it has): perplexity needs no train split, the corpus is that.
TASKS = (
    ("summarize", "summarization", summarize_examples, ("train", "dev", "test")),
    ("section", "classification", section_examples, ("train", "dev", "test")),
    ("errno-qa", "qa", errno_qa_examples, ("train", "dev", "test")),
    ("ner", "ner", ner_examples, ("train", "dev", "test")),
    ("perplexity", "perplexity", perplexity_examples, ("dev", "test")),
)
# Largest splits are capped (by a hash of the example id, so the choice is stable): test sets of
# about a thousand keep CPU evaluations short, and the committed data well under 20 MB.
SPLIT_CAPS = {("errno-qa", "test"): 1000, ("errno-qa", "dev"): 300, ("ner", "test"): 1000, ("ner", "dev"): 300}


@dataclass
class BuildResult:
    """What a build wrote: counts per task and split, dropped leaks, bytes on disk, seconds."""

    pages: int
    counts: dict[str, dict[str, int]]
    dropped_leaks: dict[str, int]
    bytes_written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def load_pages(source: Path, workers: int = 2) -> list[Page]:
    """Every man-pages 6.03 page under `source`, in path order, rendered over a process pool."""
    paths = candidate_paths(source)
    if not paths:
        raise DomainbenchError(f"{source}: no man2/man3/man4/man5/man7 page files (is the manpages package installed?)")
    pages: list[Page] = []
    with progress_bar() as progress, ProcessPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task("rendering pages", total=len(paths), info="")
        # map keeps the input order, so the result does not depend on which worker finishes first.
        for page in pool.map(load_page, paths, chunksize=16):
            progress.advance(task)
            if page is not None:
                pages.append(page)
                progress.update(task, info=page.id)
    if not pages:
        raise DomainbenchError(f"{source}: no page says {MAN_PAGES_SOURCE!r} on its .TH line")
    return pages


def task_records(pages: list[Page], maker, splits: tuple[str, ...]) -> dict[str, list[dict]]:
    """A task's records by split, in page order, before capping and leak removal."""
    records: dict[str, list[dict]] = {split: [] for split in splits}
    for page in pages:
        if page.split in records:
            records[page.split].extend(maker(page))
    return records


def capped(records: list[dict], cap: int | None) -> list[dict]:
    """At most `cap` records, chosen by sha256 of their id, kept in their original order."""
    if cap is None or len(records) <= cap:
        return records
    chosen = set(sorted((r["id"] for r in records), key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:cap])
    return [record for record in records if record["id"] in chosen]


def build_suite(source: Path = DEFAULT_SOURCE, out_dir: Path = SUITE_DIR, workers: int = 2) -> BuildResult:
    """Build every task's data and the corpus from the pages under `source` into `out_dir`."""
    started = time.perf_counter()
    pages = load_pages(source, workers)
    corpus = [corpus_record(page) for page in pages]
    result = BuildResult(pages=len(pages), counts={}, dropped_leaks={})
    train_view = corpus_train_view(corpus)
    files = {CORPUS_FILE: corpus}
    for name, task_type, maker, splits in TASKS:
        records = task_records(pages, maker, splits)
        records = {split: capped(rows, SPLIT_CAPS.get((name, split))) for split, rows in records.items()}
        leaking = {leak.example_id for leak in task_leaks(name, task_type, records, corpus, train_view)}
        records["test"] = [record for record in records["test"] if record["id"] not in leaking]
        result.dropped_leaks[name] = len(leaking)
        result.counts[name] = {split: len(rows) for split, rows in records.items()}
        files.update({f"{name}/{split}.jsonl.gz": rows for split, rows in records.items()})
    result.counts["corpus"] = {split: sum(r["split"] == split for r in corpus) for split in ("train", "dev", "test")}
    for relative, rows in files.items():
        result.bytes_written[relative] = write_jsonl_gz(out_dir / relative, rows)
    result.seconds = time.perf_counter() - started
    return result


def jsonl_line(record: dict) -> str:
    """One record as the committed files hold it: key order as made, UTF-8, no spaces after separators."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl_gz(path: Path, records: list[dict]) -> int:
    """Write gzipped JSONL whose bytes depend only on the records (no name or time in the header)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        for record in records:
            handle.write(jsonl_line(record).encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())

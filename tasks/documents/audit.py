"""What a person checks after a build, under the suite's audit/: duplicate clusters, unreadable
files, the lines removed as boilerplate, the term list with its counts, and the test examples the
leakage guard dropped. (Dropped documents are written as the build goes, to audit/dropped.jsonl,
each with its folder, the rule and the value that rule measured.)"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable
from pathlib import Path

from tasks.documents.dedup import Duplicate
from tasks.documents.terms import Term


def write_duplicates(path: Path, clusters: dict[str, list[Duplicate]]) -> None:
    """One line per cluster, largest first: the kept document and each duplicate with its similarity."""
    with path.open("w", encoding="utf-8") as out:
        for kept, duplicates in sorted(clusters.items(), key=lambda item: (-len(item[1]), item[0])):
            out.write(_line({"kept": kept, "duplicates": [vars(duplicate) for duplicate in duplicates]}))


def write_unreadable(path: Path, unreadable: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for doc_id, reason in unreadable:
            out.write(_line({"id": doc_id, "reason": reason}))


def write_boilerplate(path: Path, lines: Counter) -> None:
    """Each line removed as boilerplate with the documents it was removed from, most frequent first."""
    with path.open("w", encoding="utf-8") as out:
        out.write("documents\tline\n")
        for line, documents in sorted(lines.items(), key=lambda item: (-item[1], item[0])):
            out.write(f"{documents}\t{line}\n")


def write_terms(path: Path, terms: list[Term]) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("term\tcount\tdocuments\tdomain_per_million\tenglish_per_million\tkeyness\n")
        for term in terms:
            out.write(f"{term.term}\t{term.count}\t{term.documents}\t{term.domain_per_million}\t"
                      f"{term.english_per_million}\t{term.keyness}\n")


def write_leaks(path: Path, leaking: dict[Hashable, str]) -> None:
    """`leaking`: (task, example id) → the other document holding the example's text."""
    with path.open("w", encoding="utf-8") as out:
        for (task, example_id), holder in sorted(leaking.items()):
            out.write(_line({"task": task, "id": example_id, "also_in": holder}))


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"

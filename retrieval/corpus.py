"""Reading a document collection: a suite's corpus, a folder of .txt/.md files, or a JSONL file.

Every problem a user can cause — an empty collection, a file that is not UTF-8, a JSONL row
without `id` or `text` — is a DomainbenchError naming the file (and line, for JSONL).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Document:
    """One document of the knowledge base; `doc_id` is what retrieval metrics judge against.

    `section` is the document's own label (a JSONL field); chunks take it as their section where
    the text has no headings of its own.
    """

    doc_id: str
    text: str
    title: str = ""
    section: str = ""


def load_corpus(path: str | Path) -> list[Document]:
    """Documents from a folder of .txt/.md files (recursively) or a .jsonl/.jsonl.gz file.

    JSONL records need `id` and `text`; `title` and `section` are kept when present. Documents
    whose text is blank are skipped; a collection with none left is an error.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        documents = _folder_documents(path)
    elif path.name.endswith(JSONL_SUFFIXES):
        documents = _jsonl_documents(path)
    elif path.exists():
        raise DomainbenchError(f"{path}: expected a folder of {'/'.join(TEXT_SUFFIXES)} files "
                               f"or a {' / '.join(JSONL_SUFFIXES)} file")
    else:
        raise DomainbenchError(f"{path}: no such file or directory")
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        raise DomainbenchError(f"{path}: the corpus is empty (no document with text)")
    return documents


def corpus_fingerprint(documents: list[Document]) -> str:
    """sha256 over every document's id, title, section and text: the corpus as the index saw it."""
    digest = hashlib.sha256()
    for document in documents:
        for part in (document.doc_id, document.title, document.section, document.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()


def _folder_documents(root: Path) -> list[Document]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    documents = []
    for file in files:
        doc_id = file.relative_to(root).as_posix()
        documents.append(Document(doc_id=doc_id, text=_utf8(file.read_bytes(), file), title=file.stem))
    return documents


def _jsonl_documents(path: Path) -> list[Document]:
    opener = gzip.open if path.name.endswith(".gz") else open
    documents, seen = [], set()
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = _utf8(raw, path, number)
                if line.strip():
                    document = _record_document(json_record(line, path, number), path, number)
                    if document.doc_id in seen:
                        raise DomainbenchError(f"{path}:{number}: id: duplicate document id {document.doc_id!r}")
                    seen.add(document.doc_id)
                    documents.append(document)
    except (OSError, EOFError) as exc:  # gzip raises BadGzipFile (an OSError) or EOFError on a cut file
        raise DomainbenchError(f"{path}: cannot read: {exc}") from exc
    return documents


def json_record(line: str, path: Path, number: int) -> dict:
    """One JSON object from a JSONL line, or a DomainbenchError at `path:number`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DomainbenchError(f"{path}:{number}: json: malformed JSON: {exc.msg}") from exc
    if not isinstance(record, dict):
        raise DomainbenchError(f"{path}:{number}: json: expected an object, got {type(record).__name__}")
    return record


def _record_document(record: dict, path: Path, number: int) -> Document:
    for field in ("id", "text"):
        if not isinstance(record.get(field), str):
            raise DomainbenchError(f"{path}:{number}: {field}: expected a string")
    return Document(doc_id=record["id"], text=record["text"], title=str(record.get("title") or ""),
                    section=str(record.get("section") or ""))


def _utf8(raw: bytes, path: Path, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"{path}:{line}" if line is not None else str(path)
        raise DomainbenchError(f"{where}: not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from exc

"""Collection: walk folders and archives for document files, in a stable (sorted) order.

Kinds are chosen by name: `.txt`/`.text`/names without a suffix (README, copyright) are text,
`.md`/`.markdown` Markdown, `.rst` reStructuredText, `.html`/`.htm`/`.xhtml` HTML, `.pdf` PDF,
`.jsonl` one document per record; any of these may be gzipped (`.gz`). `.zip`, `.tar`, `.tar.gz`
and `.tgz` archives are walked like folders. Everything else is counted as unsupported by suffix
and passed over. Reading and decompressing a file happens later, in a worker (`Source.read`);
archive members are read here, one at a time, since an archive is a single stream.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DomainbenchError

KINDS = {".txt": "text", ".text": "text", "": "text", ".md": "markdown", ".markdown": "markdown",
         ".rst": "rst", ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf", ".jsonl": "jsonl"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# A member larger than this is not read out of an archive (it would sit whole in memory).
MAX_MEMBER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One document to extract: a file on disk (`path`), or bytes already read (archive member, JSONL record)."""

    doc_id: str
    kind: str
    path: str | None = None
    data: bytes | None = None
    gzipped: bool = False

    def read(self) -> bytes:
        raw = self.data if self.data is not None else Path(self.path).read_bytes()
        return gzip.decompress(raw) if self.gzipped else raw


@dataclass
class Collection:
    """What the walk found besides documents: files passed over, and files that could not be read."""

    files: int = 0
    unsupported: Counter = field(default_factory=Counter)  # suffix -> files
    excluded: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


def kind_of(name: str) -> tuple[str | None, bool]:
    """(kind, gzipped) of a file name; kind None when the name is not a supported document."""
    gzipped = name.endswith(".gz") and not name.endswith((".tar.gz",))
    base = name[:-3] if gzipped else name
    suffix = Path(base).suffix.lower() if "." in base.lstrip(".") else ""
    return KINDS.get(suffix), gzipped


def walk_sources(roots: list[Path], collection: Collection, *, text_field: str = "text",
                 exclude: tuple[str, ...] = ()) -> Iterator[Source]:
    """Every document under `roots` (folders, archives or single files), ids `<root name>/<relative path>`."""
    for prefix, root in _root_prefixes(roots).items():
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            relative = file.relative_to(root).as_posix() if root.is_dir() else file.name
            doc_id = f"{prefix}/{relative}" if root.is_dir() else prefix
            if any(fnmatch.fnmatch(relative, pattern) for pattern in exclude):
                collection.excluded += 1
                continue
            collection.files += 1
            yield from _file_sources(doc_id, file, collection, text_field)


def _suffix(name: str) -> str:
    """How an unsupported file is counted: its suffix, with `.gz` kept (`.debian.gz`, `.png`)."""
    base = name[:-3] if name.endswith(".gz") else name
    return (Path(base).suffix or "(no suffix)") + (".gz" if name.endswith(".gz") else "")


def _root_prefixes(roots: list[Path]) -> dict[str, Path]:
    """A unique id prefix per root: its name, numbered when two roots share one."""
    prefixes: dict[str, Path] = {}
    for root in roots:
        name, n = root.resolve().name or "root", 1
        while name in prefixes:
            n += 1
            name = f"{root.resolve().name}-{n}"
        prefixes[name] = root
    return prefixes


def _file_sources(doc_id: str, file: Path, collection: Collection, text_field: str) -> Iterator[Source]:
    name = file.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        yield from _archive_sources(doc_id, file, collection, text_field)
        return
    kind, gzipped = kind_of(name)
    if kind is None:
        collection.unsupported[_suffix(name)] += 1
    elif kind == "jsonl":
        yield from _jsonl_sources(doc_id, lambda: file.open("rb") if not gzipped else gzip.open(file, "rb"),
                                  collection, text_field)
    else:
        yield Source(doc_id, kind, path=str(file), gzipped=gzipped)


def _archive_sources(doc_id: str, file: Path, collection: Collection, text_field: str) -> Iterator[Source]:
    """The archive's members as Sources; a damaged archive is reported and the members read so far kept."""
    try:
        for member, data in _archive_members(file):
            member_id = f"{doc_id}!/{member}"
            kind, gzipped = kind_of(member.rsplit("/", 1)[-1].lower())
            collection.files += 1
            if kind is None:
                collection.unsupported[_suffix(member.rsplit("/", 1)[-1].lower())] += 1
            elif data is None:
                collection.unreadable.append((member_id, f"over {MAX_MEMBER_BYTES // 2**20} MiB inside an archive"))
            elif kind == "jsonl":
                raw = gzip.decompress(data) if gzipped else data
                yield from _jsonl_sources(member_id, lambda raw=raw: io.BytesIO(raw), collection, text_field)
            else:
                yield Source(member_id, kind, data=data, gzipped=gzipped)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        collection.unreadable.append((doc_id, f"archive cannot be read: {exc}"))


def _archive_members(file: Path) -> Iterator[tuple[str, bytes | None]]:
    """(name, bytes) of a zip's (name order) or a tar's (archive order) regular files; None when too large."""
    if file.name.lower().endswith(".zip"):
        with zipfile.ZipFile(file) as archive:
            for info in sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename):
                yield info.filename, archive.read(info) if info.file_size <= MAX_MEMBER_BYTES else None
        return
    # Streaming mode ("r|*"): members are read in archive order without seeking back.
    with tarfile.open(file, "r|*") as archive:
        for info in archive:
            if info.isfile():
                yield info.name, archive.extractfile(info).read() if info.size <= MAX_MEMBER_BYTES else None


def _jsonl_sources(doc_id: str, opener, collection: Collection, text_field: str) -> Iterator[Source]:
    """One text Source per JSONL record with a string `text_field`; others are reported by line."""
    try:
        with opener() as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    collection.unreadable.append((f"{doc_id}:{number}", f"malformed JSON: {exc}"))
                    continue
                text = record.get(text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    collection.unreadable.append((f"{doc_id}:{number}", f"no string field {text_field!r}"))
                    continue
                record_id = record.get("id")
                suffix = f"#{record_id}" if isinstance(record_id, (str, int)) else f":{number}"
                yield Source(f"{doc_id}{suffix}", "text", data=text.encode("utf-8"))
    except (OSError, EOFError) as exc:
        collection.unreadable.append((doc_id, f"cannot be read: {exc}"))


def check_roots(roots: list[Path]) -> None:
    """Refuse a --docs path that does not exist, before any work starts."""
    if not roots:
        raise DomainbenchError("--docs: give at least one folder, archive or file")
    for root in roots:
        if not root.exists():
            raise DomainbenchError(f"--docs {root}: no such file or directory")

"""The manifest every cached artifact carries: tuned weights, adapters, forms, indexes and converted models.

`domainbench_manifest.json` in the artifact's directory describes how it was made and loads; its
`input_hash` is `input_hash(inputs)` over everything the artifact was made from, and `files` holds
the size and sha256 of every other file in the directory. A rerun hashes its own inputs and
reuses the directory whose manifest holds the same hash and whose files still match it; anything
else — a different hash, no manifest, one that does not read, a truncated or altered file — means
build it again. The code is one of those inputs: `code_versions` names the versions of domainbench
and of the libraries that compute the artifact, so an upgrade builds it again rather than reusing
what older code made.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from harness.errors import DomainbenchError

# The prefix keeps it apart from the files `save_pretrained` writes into the same directory.
MANIFEST_FILE = "domainbench_manifest.json"


def input_hash(inputs: dict) -> str:
    """sha256 of the canonical JSON of everything an artifact is made from."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def code_versions(*distributions: str) -> dict[str, str | None]:
    """domainbench's version and each installed distribution's (None where it is not installed)."""
    from harness import __version__

    return {"domainbench": __version__, **{name: installed_version(name) for name in distributions}}


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def read_manifest(directory: str | Path) -> dict:
    """The manifest in `directory`; a DomainbenchError naming the file when it is missing or unreadable."""
    path = Path(directory) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DomainbenchError(f"{path}: missing") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainbenchError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise DomainbenchError(f"{path}: expected a JSON object")
    return manifest


def reusable(directory: str | Path, key: str) -> dict | None:
    """The manifest of an existing, intact artifact made from exactly the inputs hashed to `key`, else None."""
    try:
        manifest = read_manifest(directory)
    except (DomainbenchError, OSError):
        return None
    if manifest.get("input_hash") != key:
        return None
    damage = damaged_files(directory, manifest)
    if damage:
        click.echo(f"{directory}: {damage[0]}; building it again", err=True)
        return None
    return manifest


def damaged_files(directory: str | Path, manifest: dict) -> list[str]:
    """What differs between `directory` and the files its manifest lists ([] when intact)."""
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return [f"{MANIFEST_FILE}: lists no file hashes (made by an older domainbench)"]
    problems = []
    for name, expected in listed.items():
        path = Path(directory) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected.get("bytes"):
            problems.append(f"{name}: corrupted ({path.stat().st_size} bytes, its manifest says {expected.get('bytes')})")
        elif file_sha256(path) != expected.get("sha256"):
            problems.append(f"{name}: corrupted (its checksum differs from its manifest's)")
    return problems


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write the manifest, with every file's size and hash, into `directory` (a staging dir: published whole)."""
    directory = Path(directory)
    files = {path.relative_to(directory).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
             for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST_FILE}
    manifest["files"] = files
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def check_replaceable(path: str | Path, *, force: bool, option: str) -> None:
    """Refuse to let a command replace `path` unless it is empty, one of our artifacts, or `force` is given.

    What is there may be the user's own files: a command that publishes a directory over them
    would delete them without a word.
    """
    path = Path(path)
    if force or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and ((path / MANIFEST_FILE).is_file() or not any(path.iterdir())):
        return
    what = "a directory of other files" if path.is_dir() else "a file"
    raise DomainbenchError(f"{option} {path}: already exists and is {what}, not a domainbench artifact "
                           f"(no {MANIFEST_FILE}); choose another path or pass --force to replace it")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, computed once per version of the file in this process."""
    stat = Path(path).stat()
    # Any write changes mtime and ctime (and ctime cannot be set back), so a changed file is hashed again.
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, *_version) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()

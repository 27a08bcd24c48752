"""Publishing files and directories atomically: a reader sees the old whole thing or the new one, never half.

Every result, report, manifest, checkpoint, tuned artifact, index and converted model is written
through these: into a temporary sibling first, then renamed into place (a rename within one
directory is atomic on POSIX), so an interrupted run leaves nothing half-written behind.

A temporary sibling is named `.<target>.staging-<pid>-<random>` (a replaced directory waits as
`.<target>.retired-<pid>-<random>`): a process killed mid-publish leaves it behind, and the next
publish of the same target removes it once its owner process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from harness.errors import DomainbenchError

_LEFTOVER_KINDS = ("staging", "retired")
# A set of files published together (`publish_files`) is listed here before the first one moves.
JOURNAL = ".publish-journal.json"


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """An open handle on a temporary sibling of `path`, renamed over `path` when the block succeeds."""
    path = Path(path)
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        with _writing(path):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` atomically (text as UTF-8)."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """An empty staging directory beside `target`, put in its place when the block succeeds."""
    target = Path(target)
    _prepare_parent(target)
    with _writing(target.parent):
        staging = Path(tempfile.mkdtemp(prefix=_leftover_prefix(target.name, "staging"), dir=target.parent))
    try:
        yield staging
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, target: Path) -> None:
    """Put the complete directory `staging` at `target`, whatever was there.

    A directory cannot be renamed over a non-empty one: the old one is moved aside first, so at
    every moment `target` is the old complete directory, absent, or the new complete one — never
    deleted before its replacement is in place.
    """
    retired = None
    with _writing(target):
        if target.exists() or target.is_symlink():
            retired = Path(tempfile.mkdtemp(prefix=_leftover_prefix(target.name, "retired"), dir=target.parent))
            target.rename(retired / target.name)
        staging.rename(target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def publish_files(directory: str | Path, files: dict[str, bytes]) -> None:
    """Put several files of `directory` in place as one set (a report and its summaries agree).

    Every file is written to its temporary sibling first; then a journal lists the renames, and
    only then do they happen. A kill before the journal exists leaves the old set; a kill after
    it is rolled forward by the next `publish_files` in the directory, so no reader of a
    finished publish sees files of two different renders.
    """
    # Absolute: the temporary siblings come back absolute (tempfile makes them so), and the journal
    # stores them relative to the directory, which a relative `runs/demo` would not match.
    directory = Path(directory).absolute()
    roll_forward(directory)
    moves = []
    try:
        for name, data in files.items():
            target = directory / name
            tmp = _temporary_sibling(target)
            tmp.write_bytes(data)
            moves.append((str(tmp.relative_to(directory)), name))
        write_atomic(directory / JOURNAL, json.dumps(moves))
    except BaseException:
        for tmp, _ in moves:
            (directory / tmp).unlink(missing_ok=True)
        raise
    roll_forward(directory)


def roll_forward(directory: str | Path) -> None:
    """Finish the renames of a `publish_files` that was interrupted after its journal was written."""
    journal = Path(directory) / JOURNAL
    try:
        moves = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:  # not one of ours (ours are written atomically): nothing to finish
        moves = []
    for tmp, name in moves:
        if (Path(directory) / tmp).exists():
            with _writing(Path(directory) / name):
                os.replace(Path(directory) / tmp, Path(directory) / name)
    journal.unlink(missing_ok=True)


def check_writable(directory: str | Path, *, label: str) -> None:
    """Refuse up front a directory this process cannot create or write in, before any work is spent on its contents.

    `label` names what the user asked for (`--out idx`) at the start of the message.
    """
    directory = Path(directory)
    existing = directory
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DomainbenchError(f"{label}: cannot write here: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DomainbenchError(f"{label}: cannot write here: {existing} is not writable by this user")


def remove_leftovers(target: str | Path) -> None:
    """Delete the staging and retired siblings of `target` whose owner process is gone."""
    target = Path(target)
    for kind in _LEFTOVER_KINDS:
        head = f".{target.name}.{kind}-"
        for entry in target.parent.glob(glob.escape(head) + "*"):
            if not _orphaned(entry, owner=entry.name[len(head):].split("-", 1)[0]):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)  # another run may be sweeping it too
            else:
                entry.unlink(missing_ok=True)


def _orphaned(entry: Path, owner: str) -> bool:
    """Whether the process that made `entry` (its pid is `owner`) is gone.

    A live process with that pid that started after the entry was last written is a later
    process that reused the pid, not the owner.
    """
    if not owner.isdigit():
        return False
    try:
        started = psutil.Process(int(owner)).create_time()
        written = entry.lstat().st_mtime
    except (psutil.NoSuchProcess, FileNotFoundError):
        return True
    except psutil.Error:
        return False  # another user's process: not ours to judge
    return started > written + 1  # create_time is rounded to clock ticks


def _temporary_sibling(path: Path) -> Path:
    _prepare_parent(path)
    with _writing(path.parent):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_leftover_prefix(path.name, "staging"), suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _prepare_parent(target: Path) -> None:
    with _writing(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)


def _leftover_prefix(name: str, kind: str) -> str:
    return f".{name}.{kind}-{os.getpid()}-"


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """The OS refusing a write (read-only dir, a file where a directory must be) as one user-facing line."""
    try:
        yield
    except OSError as exc:  # named by `path`, not exc.filename: that may be a hidden temporary name
        raise DomainbenchError(f"{path}: cannot write here: {exc.strerror or exc}") from exc

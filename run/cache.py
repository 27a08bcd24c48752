"""What the cache holds, and what of it no run of this installation will reuse.

Tuned weights and adapters (`cache/artifacts`), forms (`cache/forms`) and indexes (`cache/indexes`)
are kept by the hash of their inputs, and the code that made them is one of those inputs
(`harness.manifest.code_versions`, `tuning.artifact.TRAINING_CODE`). After an upgrade, or a change to
what training does, an entry made by other code is never reused: its key comes round again only if
the old versions are installed again. Those entries, and directories whose manifest is missing or
unreadable, are what `domainbench cache prune` removes — except the ones a run dir links to
(`runs/<name>/artifacts/<name>`): a release that was evaluated, and may be served, keeps its weights
whatever code made them.

Not entries: a tuning run's checkpoints (`<artifact>.work`, kept so an interrupted run resumes) and
the converted builtin models (`cache/models`, `domainbench models list`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError
from harness.manifest import installed_version, read_manifest
from harness.models import cache_dir
from tuning.artifact import directory_bytes

CACHED_KINDS = ("artifacts", "forms", "indexes")


@dataclass(frozen=True)
class CacheEntry:
    """One cached artifact, form or index: its size, and why no run here will reuse it (None: one may)."""

    kind: str
    path: Path
    bytes: int
    created: str | None
    stale: str | None
    linked_from: tuple[Path, ...] = ()  # the run dirs whose artifacts/ link to it

    @property
    def removable(self) -> bool:
        return self.stale is not None and not self.linked_from


def cache_entries(runs_roots: list[Path], root: Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache (`cache_dir()` unless `root`), with the run dirs under `runs_roots` linking to it."""
    root = Path(root) if root is not None else cache_dir()
    links = run_links(runs_roots)
    entries = []
    for kind in CACHED_KINDS:
        folder = root / kind
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if not path.is_dir() or path.is_symlink() or path.name.endswith(".work") or path.name.startswith("."):
                continue  # checkpoints to resume from, and staging dirs a build is writing
            manifest = _manifest(path)
            entries.append(CacheEntry(kind, path, directory_bytes(path), manifest.get("created") if manifest else None,
                                      why_stale(manifest), tuple(links.get(path.resolve(), ()))))
    return entries


def why_stale(manifest: dict | None) -> str | None:
    """Why an entry with this manifest cannot be reused by the code installed here; None when it can."""
    if manifest is None:
        return "no readable manifest"
    code = manifest.get("inputs", {}).get("code") or manifest.get("code")
    if not isinstance(code, dict):
        return "made before cache keys held the code"
    changed = [f"{name} {made} (now {now})" for name, made in code.items()
               if made != (now := current_version(name))]
    return f"made with {', '.join(changed)}" if changed else None


def current_version(name: str) -> str | int | None:
    """The version of `name` a new key holds: domainbench's, tuning's TRAINING_CODE, or a distribution's."""
    from harness import __version__
    from tuning.artifact import TRAINING_CODE  # read at each call: a change to it makes entries stale

    if name == "domainbench":
        return __version__
    if name == "training":
        return TRAINING_CODE
    return installed_version(name)


def run_links(runs_roots: list[Path]) -> dict[Path, list[Path]]:
    """Cache directory -> the run dirs (directly under each of `runs_roots`) whose artifacts/ link to it."""
    links: dict[Path, list[Path]] = {}
    for runs_root in runs_roots:
        for link in sorted(Path(runs_root).glob("*/artifacts/*")):
            if link.is_symlink():
                links.setdefault(link.resolve(), []).append(link.parent.parent)
    return links


def remove_entries(entries: list[CacheEntry]) -> int:
    """Delete the removable entries; the bytes freed."""
    freed = 0
    for entry in entries:
        if not entry.removable:
            raise DomainbenchError(f"{entry.path}: not removable ({entry.stale or 'reusable'})")
        shutil.rmtree(entry.path)
        freed += entry.bytes
    return freed


def _manifest(path: Path) -> dict | None:
    try:
        return read_manifest(path)
    except (DomainbenchError, OSError):
        return None


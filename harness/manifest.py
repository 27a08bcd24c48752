"""The manifest every cached artifact carries: tuned weights, adapters, forms and indexes alike.

`domainbench_manifest.json` in the artifact's directory describes how it was made and loads; its
`input_hash` is `input_hash(inputs)` over everything the artifact was made from. A rerun hashes
its own inputs and reuses the directory whose manifest holds the same hash; anything else — a
different hash, no manifest, one that does not read — means build it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.errors import DomainbenchError

# The prefix keeps it apart from the files `save_pretrained` writes into the same directory.
MANIFEST_FILE = "domainbench_manifest.json"


def input_hash(inputs: dict) -> str:
    """sha256 of the canonical JSON of everything an artifact is made from."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


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
    """The manifest of an existing artifact made from exactly the inputs hashed to `key`, else None."""
    try:
        manifest = read_manifest(directory)
    except (DomainbenchError, OSError):
        return None
    return manifest if manifest.get("input_hash") == key else None


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write the manifest into `directory` (a staging dir: the artifact is published with it, whole)."""
    (Path(directory) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n",
                                                 encoding="utf-8")

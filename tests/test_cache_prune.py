"""`domainbench cache`: entries made by other code are listed as such and pruned — unless a run dir links
to them — while what a run here may reuse, and checkpoints a run resumes from, stay."""

from __future__ import annotations

import json
import os

import pytest

from cli.main import main
from harness.manifest import MANIFEST_FILE, code_versions
from run.cache import cache_entries, why_stale
from tuning.artifact import training_code


def _entry(root, kind: str, name: str, manifest: dict | None):
    path = root / kind / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 1000)
    if manifest is not None:
        (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(root))
    old_torch = {**code_versions("torch", "transformers"), "torch": "1.0.0"}
    paths = {
        "current": _entry(root, "artifacts", "full-aaaa", {"inputs": {"code": training_code()}}),
        "older torch": _entry(root, "forms", "int8-bbbb", {"inputs": {"code": old_torch}}),
        "no code": _entry(root, "artifacts", "lora-cccc", {"inputs": {"recipe": {}}}),
        "no manifest": _entry(root, "artifacts", "lora-dddd", None),
        "linked": _entry(root, "artifacts", "full-eeee", {"inputs": {"recipe": {}}}),
        "index": _entry(root, "indexes", "suite-minilm-flat", {"code": code_versions("faiss-cpu")}),
        "checkpoints": _entry(root, "artifacts", "full-ffff.work", None),
    }
    link = tmp_path / "runs" / "release-1" / "artifacts" / "finetuned"
    link.parent.mkdir(parents=True)
    os.symlink(paths["linked"], link, target_is_directory=True)
    return root, tmp_path / "runs", paths


def test_each_entry_says_whether_a_run_here_can_reuse_it(cache):
    root, runs, paths = cache
    entries = {entry.path: entry for entry in cache_entries([runs], root)}
    assert paths["checkpoints"] not in entries  # a run resumes from them: not the cache's to prune
    assert entries[paths["current"]].stale is None and entries[paths["index"]].stale is None
    assert entries[paths["older torch"]].stale.startswith("made with torch 1.0.0 (now ")
    assert entries[paths["no code"]].stale == "made before cache keys held the code"
    assert entries[paths["no manifest"]].stale == "no readable manifest"
    assert entries[paths["linked"]].linked_from == (runs / "release-1",) and not entries[paths["linked"]].removable


def test_a_change_to_what_training_does_makes_every_trained_entry_stale(monkeypatch):
    import tuning.artifact

    manifest = {"inputs": {"code": training_code("peft")}}
    assert why_stale(manifest) is None
    monkeypatch.setattr(tuning.artifact, "TRAINING_CODE", tuning.artifact.TRAINING_CODE + 1)
    assert why_stale(manifest) == (f"made with training {tuning.artifact.TRAINING_CODE - 1} "
                                   f"(now {tuning.artifact.TRAINING_CODE})")


def test_prune_says_what_would_go_then_removes_only_that_with_yes(cache, capsys):
    root, runs, paths = cache
    main(["cache", "prune", "--runs", str(runs)])
    out = capsys.readouterr()
    assert all(path.is_dir() for path in paths.values())  # without --yes nothing goes
    assert out.out.count("would remove") == 3 and "run again with --yes" in out.err
    assert f"kept {paths['linked']}" in out.err
    main(["cache", "prune", "--runs", str(runs), "--yes"])
    gone = {name for name, path in paths.items() if not path.exists()}
    assert gone == {"older torch", "no code", "no manifest"}
    assert "removed 3 entries" in capsys.readouterr().err
    main(["cache", "list", "--runs", str(runs)])
    listed = capsys.readouterr()
    assert "full-aaaa" in listed.out and "release-1" in listed.out and "would remove 0" in listed.err

"""The one manifest convention: an artifact is reused only when its manifest holds the same input hash."""

from __future__ import annotations

import pytest

from harness.errors import DomainbenchError
from harness.manifest import (
    MANIFEST_FILE,
    input_hash,
    read_manifest,
    reusable,
    write_manifest,
)


def test_input_hash_ignores_key_order():
    assert input_hash({"a": 1, "b": {"c": 2, "d": 3}}) == input_hash({"b": {"d": 3, "c": 2}, "a": 1})


def test_an_artifact_is_reused_only_with_the_same_input_hash(tmp_path):
    key = input_hash({"recipe": "full"})
    write_manifest(tmp_path, {"input_hash": key, "kind": "model"})
    assert reusable(tmp_path, key) == read_manifest(tmp_path) == {"input_hash": key, "kind": "model", "files": {}}
    assert reusable(tmp_path, input_hash({"recipe": "lora"})) is None


def test_a_missing_or_broken_manifest_means_build_again(tmp_path):
    assert reusable(tmp_path / "nowhere", "0" * 64) is None
    (tmp_path / MANIFEST_FILE).write_text("{ not json")
    assert reusable(tmp_path, "0" * 64) is None
    with pytest.raises(DomainbenchError, match=rf"{MANIFEST_FILE}: not valid JSON"):
        read_manifest(tmp_path)

"""Atomic publishing: a reader sees the old whole file or directory, or the new one, never half of either."""

from __future__ import annotations

import pytest

from harness.atomic import atomic_file, staged_dir, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "result.json"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_failed_directory_build_keeps_the_old_directory(tmp_path):
    target = tmp_path / "artifact"
    with staged_dir(target) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(RuntimeError), staged_dir(target) as staging:
        (staging / "weights").write_text("v2, half")
        raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    with staged_dir(target) as staging:
        (staging / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]

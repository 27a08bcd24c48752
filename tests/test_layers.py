"""The rooms' import contracts (pyproject.toml [tool.importlinter]) catch a wrong arrow.

A copy of the packages with one planted import that points up a layer must fail `lint-imports`,
naming the contract it breaks; the untouched copy must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "retrieval", "tasks", "tuning", "reports")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def tree(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.jsonl.gz", "*.gz"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed beside this Python")
def test_a_planted_upward_import_breaks_its_contract(tree):
    assert _lint(tree).returncode == 0
    planted = tree / "retrieval" / "planted.py"
    planted.write_text("from reports.formatting import slug  # a wrong arrow: retrieval may not use reports\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "retrieval uses only the harness ground BROKEN" in result.stdout
    assert "retrieval.planted -> reports.formatting" in result.stdout

"""docs/map.md stays true: every path it names exists, and every package the layers contract knows is on it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = (ROOT / "docs" / "map.md").read_text()


def test_every_path_the_map_names_exists():
    named = set(re.findall(r"`([a-z_]+/(?:[a-z_/]+(?:\.py)?)?)`", MAP))
    assert named, "the map names no paths"
    assert sorted(path for path in named if not (ROOT / path).exists()) == []


def test_every_package_of_the_layers_contract_is_on_the_map():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    rows = set(re.findall(r"^\| `([a-z_]+)/` \|", MAP, flags=re.MULTILINE))
    assert rows == set(packages)

"""The rooms' import contracts (pyproject.toml [tool.importlinter]) catch a wrong arrow.

The contracts are over whole packages, so a module is constrained the day it is added: a copy of
the packages with one new module that imports against the direction must fail `lint-imports`,
naming the contract it breaks and the arrow; the untouched copy must pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "rooms by role: each package imports only the packages below it"
CLI_ON_TOP = "nothing imports the CLI"

# (new module, what it imports, a contract it must break)
PLANTED = [
    ("harness/planted.py", "from engines.stops import cut_at_stop", LAYERS),           # the ground imports no room
    ("engines/planted.py", "from run.spec import load_spec", LAYERS),               # an engine reaching the runner
    ("retrieval/planted.py", "from reports.formatting import slug", LAYERS),
    ("tuning/planted.py", "from run.runner import run", LAYERS),                    # tuning <-> run, no round trips
    ("serve/planted.py", "from cli.eval import eval_command", CLI_ON_TOP),
    ("stats/planted.py", "from harness.errors import DomainbenchError",
     "stats imports no other room: inference sits below everything that calls it"),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    for package in SETTINGS["root_packages"]:
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.jsonl.gz", "*.gz", "builtin"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)


pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed beside this Python")


def test_the_packages_as_they_are_keep_every_contract(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_new_module_with_a_wrong_arrow_breaks_its_contract(tree, module, line, contract):
    planted = tree / module
    planted.write_text(f"{line}  # planted: a wrong arrow\n")
    try:
        result = _lint(tree)
    finally:
        planted.unlink()
    assert result.returncode != 0
    assert re.search(re.escape(contract) + r"\s*BROKEN", result.stdout), result.stdout
    source, target = module.removesuffix(".py").replace("/", "."), line.split()[1]
    assert f"{source} -> {target}" in result.stdout


# (an existing module, an import appended to it that closes a circle, the contract that must break)
CIRCLES = [
    ("reports/tables.py", "from reports.summary import RunSummary", "the modules of reports form no import circle"),
    ("tasks/spec.py", "from tasks.suite import Suite", "the modules of tasks form no import circle"),
    ("serve/model.py", "from serve.api import create_app", "the modules of serve form no import circle"),
]


@pytest.mark.parametrize(("module", "line", "contract"), CIRCLES, ids=[c[0] for c in CIRCLES])
def test_an_import_that_closes_a_circle_among_siblings_breaks_its_contract(tree, module, line, contract):
    path = tree / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}  # planted: closes a circle\n")
    try:
        result = _lint(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    assert re.search(re.escape(contract) + r"\s*BROKEN", result.stdout), result.stdout

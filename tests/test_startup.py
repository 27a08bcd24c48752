"""Start-up: the commands that only read files must not pay for torch, transformers or matplotlib."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "matplotlib", "faiss", "sentence_transformers")


@pytest.mark.parametrize("argv", [["--help"], ["suite", "validate", "tiny"], ["suite", "show", "tiny"]])
def test_light_commands_import_no_heavy_library(argv):
    probe = ("import sys\nfrom harness.cli import main\n"
             f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

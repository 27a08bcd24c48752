"""Start-up: the commands that only read files must not pay for torch, transformers or matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "matplotlib", "faiss", "sentence_transformers")


@pytest.mark.parametrize("argv", [["--help"], ["suite", "validate", "tiny"], ["suite", "show", "tiny"]])
def test_light_commands_import_no_heavy_library(argv):
    probe = ("import sys\nfrom cli.main import main\n"
             f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_library_progress_bars_show_only_with_verbose(tmp_path):
    def stderr(*flags: str) -> str:
        argv = [sys.executable, "-m", "cli", *flags, "eval", "--model", "tiny-random-llama", "--suite", "tiny",
                "--tasks", "manpage-perplexity", "--limit", "2", "--output", str(tmp_path / "-".join(flags or ("q",)))]
        # Without the switches an in-process CLI test may have left in this process's environment.
        env = {key: value for key, value in os.environ.items()
               if key not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "TQDM_DISABLE")}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              env={**env, "DOMAINBENCH_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "Loading weights" not in stderr()
    assert "Loading weights" in stderr("--verbose")

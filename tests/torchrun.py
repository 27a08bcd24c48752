"""Launching test commands under torchrun on a shared machine.

`--standalone` lets torchrun pick a free rendezvous port: a fixed `--master-port` collides with
any other torchrun on the machine (another engineer's CI, a second pytest) and fails the test for
a reason that has nothing to do with the code under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_checked(command: list[str], *, env: dict, cwd: Path | None = None, timeout: int = 300):
    """Run a command; on failure say what it printed, not only its exit status."""
    completed = subprocess.run(command, env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True)
    assert completed.returncode == 0, (f"{' '.join(command)} exited {completed.returncode}\n"
                                       f"{completed.stderr[-4000:]}")
    return completed


def torchrun(arguments: list[str], *, nproc: int, env: dict, cwd: Path | None = None, timeout: int = 300):
    """`torchrun --standalone --nproc-per-node N <arguments>`, checked."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               *arguments]
    return run_checked(command, env=env, cwd=cwd, timeout=timeout)

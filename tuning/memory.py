"""Peak memory of one strategy, measured in a window of its own even when several train in one process."""

from __future__ import annotations

import ctypes
import gc
import re
import resource
from pathlib import Path

import torch

_CLEAR_REFS, _STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")
_peak_window = {"reset": False}


def reset_peak_memory() -> None:
    """Open a fresh peak-memory window, so each strategy trained in one process reports its own peak.

    CUDA: torch's peak counter. CPU (Linux): freed heap is handed back to the OS first, then the
    kernel's resident high-water mark (VmHWM) is reset to the current resident set by writing
    "5" to /proc/self/clear_refs (Linux >= 4.0). Where that is refused, `peak_memory` falls back
    to the process's lifetime peak and says so in its kind.
    """
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    gc.collect()
    _return_freed_heap()
    try:
        _CLEAR_REFS.write_text("5")
        _peak_window["reset"] = True
    except OSError:
        _peak_window["reset"] = False


def peak_memory() -> tuple[int, str]:
    """Peak memory since `reset_peak_memory`, in bytes, and what was measured."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    if _peak_window["reset"]:
        match = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
        if match:
            return int(match[1]) * 1024, "cpu_peak_rss"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_process_max_rss"


def _return_freed_heap() -> None:
    # glibc keeps freed small allocations in its arenas; malloc_trim hands them back, so the
    # next window starts from what is really in use.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

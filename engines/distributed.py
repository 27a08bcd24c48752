"""Evaluation under `torchrun` / `accelerate launch`: which process this is, and gathering.

The launcher starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK; we only join the
process group it describes (NCCL on GPUs, gloo on CPUs) and gather results. The engine shards
requests across ranks after sorting them, so every rank gets a similar mix of lengths, and the
gathered results equal a single-process run.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_launcher() -> None:
    """Join the launcher's process group once (no-op for a plain single-process run)."""
    if launched_world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def leave_launcher_group() -> None:
    """Wait for every rank, then leave the launcher's process group (no-op outside one).

    A rank that exits with the group still open can die at interpreter exit while the backend's
    threads run ("terminate called without an active exception", SIGABRT), failing the whole launch
    after its work was done; the barrier also keeps the other ranks until the main one has written.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def local_device() -> str:
    """This rank's device: its own GPU under a launcher, else cuda or cpu."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def gather_indexed(pairs: list[tuple[int, object]], world: int) -> list[tuple[int, object]]:
    """Every rank's (index, result) pairs, on every rank."""
    if world == 1:
        return pairs
    gathered: list = [None] * world
    dist.all_gather_object(gathered, pairs)
    return [pair for rank_pairs in gathered for pair in rank_pairs]

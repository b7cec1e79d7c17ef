"""Splitting a benchmark across processes with accelerate's own process-splitting.

``accelerate launch [--multi_gpu] --num_processes N -m vlmteach_fast.cli bench ...`` starts N processes (one GPU each);
each one calls ``process_state()``, takes its contiguous slice of the *pending* instances with
``PartialState.split_between_processes`` and writes its own shard file (``records.shard_path``). After a barrier the
main process merges the shards and writes the reports.

Multi-node: the same command on every node with accelerate's usual config (``accelerate config`` or
``--num_machines M --machine_rank R --main_process_ip IP --main_process_port P``); ``--out`` must be on a file system
all nodes share, because resuming and merging read every shard.

CPU processes (tests, laptops): accelerate only forms a CPU process group when ``PartialState(cpu=True)``, and its
``--cpu`` launcher starts a single process; use ``--multi_gpu --num_processes 2`` (torchrun underneath) on a machine
without GPUs, or ``python -m torch.distributed.run --nproc_per_node 2``. ``process_state`` passes ``cpu=True`` when
CUDA is not available or ``--device cpu`` was asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["ProcessInfo", "process_state", "split_pending", "launched_distributed"]


def launched_distributed() -> bool:
    """True when a launcher (accelerate / torchrun / MPI) started several processes."""
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(var, "1") or 1) > 1:
            return True
    return False


@dataclass
class ProcessInfo:
    """This process's place in the run. ``state`` is accelerate's ``PartialState`` (None for a plain single process,
    or a stand-in with the same ``split_between_processes`` / ``wait_for_everyone`` in tests)."""

    rank: int = 0
    world: int = 1
    state: object = None

    def __post_init__(self):
        if not (isinstance(self.world, int) and self.world >= 1 and 0 <= self.rank < self.world):
            raise ValueError(f"need 0 <= rank < world, got rank={self.rank!r}, world={self.world!r}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.state is not None and self.world > 1:
            self.state.wait_for_everyone()

    def device(self, requested: str | None) -> torch.device:
        """The device this process runs models on: ``requested`` if given, else accelerate's (one GPU per process),
        else cuda/cpu."""
        if requested:
            dev = torch.device(requested)
            # "--device cuda" under a launcher means this process's GPU, not cuda:0 for all of them
            if self.state is not None and dev.index is None and dev.type == torch.device(self.state.device).type:
                return torch.device(self.state.device)
            return dev
        if self.state is not None:
            return torch.device(self.state.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def process_state(device: str | None = None) -> ProcessInfo:
    """This process's ``ProcessInfo``; forms accelerate's process group when launched with several processes."""
    if not launched_distributed():
        return ProcessInfo()
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or (device is not None and torch.device(device).type == "cpu")
    state = PartialState(cpu=cpu)
    return ProcessInfo(rank=state.process_index, world=state.num_processes, state=state)


def split_pending(items: list, info: ProcessInfo) -> list:
    """This process's share of ``items`` (contiguous slices, the first ranks get one more when it does not divide).

    Every process must pass the same list in the same order: it is computed from the records on disk *before* the
    barrier that precedes any writing (see ``runner.run_bench``).
    """
    if info.world == 1:
        return list(items)
    if info.state is not None and hasattr(info.state, "split_between_processes"):
        with info.state.split_between_processes(list(items)) as part:
            return list(part)
    raise RuntimeError("several processes but no accelerate state to split with")

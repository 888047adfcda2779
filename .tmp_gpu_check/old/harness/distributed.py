"""Data parallelism across processes launched by `torchrun` (or `accelerate launch`, or Slurm's `srun`).

Work is sharded by video, so each video is decoded and its features computed by one rank only: the videos still
to do, in order of first appearance, are dealt round-robin (video i to rank i mod world). Every rank computes the
same list, because each reads the run's finished rows before any rank writes (a barrier). Ranks append their rows
to their own files; rank 0 merges them when all are done. A single process is world 1, rank 0: nothing to set up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from harness.errors import HarnessError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This rank's share: items[rank::size] (round-robin keeps shares within one item of each other)."""
        return items[self.rank::self.size]

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist
            dist.barrier()

    def gather(self, obj) -> list | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name, "").strip():
            try:
                return int(os.environ[name])
            except ValueError:
                raise HarnessError(f"environment variable {name}={os.environ[name]!r} is not a number") from None
    return None


def world_from_env() -> World:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `srun` sets SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID."""
    size = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    rank = _env_int("RANK", "SLURM_PROCID") or 0
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0
    if not 0 <= rank < size:
        raise HarnessError(f"rank {rank} outside a world of {size} processes")
    return World(rank, size, local)


_WORLD: World | None = None


def init(device: str = "cpu", gpus_per_replica: int = 1) -> World:
    """The process group of this launch (once per process); gloo for CPU runs, nccl when `device` is CUDA. With
    CUDA and several processes per node, each rank takes its first GPU (`replica_devices`) unless `device` names
    one."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    world = world_from_env()
    if world.size > 1:
        import torch
        import torch.distributed as dist

        cuda = device.startswith("cuda")
        if not dist.is_initialized():
            if "MASTER_ADDR" not in os.environ:  # srun without torchrun: the rendezvous must be given
                raise HarnessError("several ranks but no MASTER_ADDR/MASTER_PORT: launch with torchrun, or export "
                                   "them in the Slurm script (see docs/distributed.md)")
            dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size,
                                    timeout=timedelta(hours=2))
        if cuda and device == "cuda":
            torch.cuda.set_device(world.local_rank * gpus_per_replica)
    _WORLD = world
    return world


def rank_device(device: str, world: World) -> str:
    """`cuda` means this rank's GPU (cuda:LOCAL_RANK) when several ranks share a node; anything else is kept."""
    return f"cuda:{world.local_rank}" if device == "cuda" and world.size > 1 else device


def replica_devices(device: str, world: World, gpus_per_replica: int = 1,
                    gpus_on_node: int | None = None) -> list[str]:
    """The devices of this rank's backbone replica: [`rank_device`] for one GPU per replica; for G > 1 the node's
    GPUs are dealt in blocks of G by local rank (local rank r: cuda:rG .. cuda:rG+G-1), which needs `--device cuda`
    and G x (ranks on the node) GPUs. `gpus_on_node`: default what torch sees."""
    g = int(gpus_per_replica)
    if g < 1:
        raise HarnessError(f"--gpus-per-replica must be at least 1, got {gpus_per_replica}")
    if g == 1:
        return [rank_device(device, world)]
    if device != "cuda":
        raise HarnessError(f"--gpus-per-replica {g} needs --device cuda (the GPUs are dealt to ranks), not {device!r}")
    if gpus_on_node is None:
        import torch

        gpus_on_node = torch.cuda.device_count()
    first = world.local_rank * g
    if first + g > gpus_on_node:
        raise HarnessError(f"rank {world.rank} (local rank {world.local_rank}) needs GPUs {first}..{first + g - 1} for "
                           f"--gpus-per-replica {g}, but this node has {gpus_on_node}: launch at most "
                           f"{gpus_on_node // g} processes per node")
    return [f"cuda:{first + j}" for j in range(g)]

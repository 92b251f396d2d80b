"""Device choice and multi-process data-parallel training through ``torchrun``.

A run launched as ``torchrun --nproc_per_node N -m hlsm train sft --config FILE`` gets the
environment variables ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` then joins the process group (``nccl`` on CUDA, ``gloo`` on CPU) and
:func:`wrap_model` wraps the model in ``DistributedDataParallel``, which averages gradients across
ranks. Without ``WORLD_SIZE > 1`` everything is a single process and these helpers do nothing.

Conventions: every rank builds the same global batch from (seed, step) and trains on its own
slice (rows ``rank::world_size``); only rank 0 logs, evaluates and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hlsm.errors import HLSMError


class DistributedError(HLSMError):
    """A device or launch environment that cannot be used (CUDA asked for but absent, partial env)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.

    Under ``torchrun`` on CUDA, ``"auto"`` and ``"cuda"`` select GPU ``local_rank``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DistributedError(f"device '{name}' was asked for but CUDA is not available; use device = 'cpu'")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    raise DistributedError(f"unknown device '{name}'; use 'auto', 'cpu', 'cuda' or 'cuda:K'")


def init_distributed(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1`` (idempotent); pick the device.

    Raises
    ------
    DistributedError
        If ``WORLD_SIZE > 1`` but ``RANK``/``MASTER_ADDR``/``MASTER_PORT`` are missing (launch with
        ``torchrun``), or the device is unavailable.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world} but {missing} are not set; launch the run with torchrun")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, dev, owns)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else the model itself."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """The element-wise sum of every rank's ``values`` (float64), on every rank."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def all_reduce_grads(ctx: DistContext, params: list[nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over every rank, in place, as one flat buffer.

    For loops whose ranks do different amounts of work per step (so that ``DistributedDataParallel``'s
    per-backward hooks do not fit): a parameter without a gradient counts as zero.
    """
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not ctx.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()

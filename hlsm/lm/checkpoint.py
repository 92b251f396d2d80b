"""Training checkpoints: everything a killed run needs to continue exactly, written atomically.

A checkpoint holds the model, optimizer and LR-scheduler states, the number of completed steps,
the random-number-generator states of every process (torch CPU, CUDA when present, Python's
``random``; numpy's generator is not used by ``hlsm.lm`` and is not saved) and the run's configs
as plain dicts. Data batches are a function of (seed, step) (:func:`hlsm.lm.dataset.derive_seed`),
so no data-loader or ``torch.Generator`` state needs saving: the generators ``hlsm.lm`` creates are
seeded afresh from (seed, step) each time.

The file is written to a temporary name in the same folder and renamed into place, so a kill
during the write leaves the previous checkpoint intact and no partial file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hlsm.errors import HLSMError
from hlsm.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(HLSMError):
    """A checkpoint that is missing, unreadable, or from an incompatible run."""


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states: ``torch`` (CPU), ``cuda`` (every device, if available), ``python``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, nn.Module)
    return inner


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the fields)."""

    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]
    config: dict[str, Any]
    extra: dict[str, Any]


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module | dict[str, Any],
    optimizer: torch.optim.Optimizer | dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler | dict[str, Any],
    step: int,
    rng: list[dict[str, Any]],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    model, optimizer, scheduler
        The objects, or their ``state_dict()`` (a member of a stack: :mod:`hlsm.lm.engine`).
    step
        Number of completed optimisation steps.
    rng
        One :func:`capture_rng_state` per process, indexed by rank.
    config
        The run's configs as JSON-ready dicts (checked on resume).
    extra
        Any other loop state (plain Python values and tensors), e.g. running sums of the metrics.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": FORMAT_VERSION,
        "step": step,
        "model": model if isinstance(model, dict) else unwrap(model).state_dict(),
        "optimizer": optimizer if isinstance(optimizer, dict) else optimizer.state_dict(),
        "scheduler": scheduler if isinstance(scheduler, dict) else scheduler.state_dict(),
        "rng": rng,
        "config": config,
        "extra": {} if extra is None else extra,
    }
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb", durable=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors moved to ``map_location``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at '{path}'; start the run without --resume")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, not the unpickler's internals
        raise CheckpointError(f"cannot read checkpoint '{path}' ({type(err).__name__}); delete it or restart") from None
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' is not an hlsm.lm checkpoint of format version {FORMAT_VERSION}")
    keys = ("step", "model", "optimizer", "scheduler", "rng", "config", "extra")
    return Checkpoint(*(raw[k] for k in keys))

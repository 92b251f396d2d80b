"""Fit checkpoints: what a resumable :func:`hlsm.infer.fitting.fit` saves, and the check that it may resume.

A checkpoint holds the finished restarts and the running one (its logits, Adam state and loss
history), under a key made of the fit's configuration (all but ``progress``) and a digest of the
corpus and support; a checkpoint with another key is refused rather than silently reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hlsm.errors import HLSMError
from hlsm.io import atomic_write
from hlsm.programs import Program
from hlsm.simulate import Corpus

if TYPE_CHECKING:  # the config's type only: fitting imports this module, never the reverse
    from hlsm.infer.fitting import FitConfig


class FitError(HLSMError):
    """A fit configuration, input or checkpoint that cannot be used; the message names the fix."""


def state_key(config: FitConfig, corpus: Corpus, support: Sequence[Program]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config (not ``progress``, ``workers``) and the data."""
    digest = hashlib.blake2b(digest_size=16)
    for t in (corpus.states, corpus.mask, corpus.programs.routing, corpus.programs.skill, corpus.programs.depth):
        digest.update(t.contiguous().numpy().tobytes())
    digest.update(repr([p.steps for p in support]).encode())
    settings = {k: v for k, v in asdict(config).items() if k not in ("progress", "workers")}
    return {"config": settings, "data": digest.hexdigest()}


def load_state(path: str | Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and matches ``key``; None if there is none.

    Raises :class:`FitError` for an unreadable file or a checkpoint of another fit.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)  # tensors, numbers, strings and containers only
    except Exception as err:  # a truncated or foreign file
        raise FitError(f"cannot read the fit checkpoint '{path}' ({err}); delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("key") != key:
        raise FitError(
            f"the fit checkpoint '{path}' was written for another configuration or corpus; "
            "delete it, or write this fit elsewhere"
        )
    return state


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (no partial checkpoint)."""
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")

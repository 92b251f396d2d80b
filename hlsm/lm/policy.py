"""A trained transformer and its task, loaded from any ``hlsm.lm`` checkpoint (SFT or REINFORCE).

An SFT checkpoint's config record is :meth:`hlsm.lm.SFTConfig.to_dict`; a REINFORCE checkpoint's
record (:mod:`hlsm.lm.reinforce`) holds its own sections plus, under ``"sft"``, the record of the
SFT run it started from and, under ``"gpt"``, the model sizes. Either way the *task* is the SFT
run's: its library (``spec``), its support design (the evaluation splits) and its trace format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hlsm.config import ConfigError
from hlsm.design import DesignConfig
from hlsm.errors import HLSMError
from hlsm.lm.checkpoint import CHECKPOINT_NAME, Checkpoint, CheckpointError, load_checkpoint
from hlsm.lm.data import TaskFormat, make_tokenizer
from hlsm.lm.dataset import resolve_source
from hlsm.lm.model import GPT, GPTConfig
from hlsm.programs import Program
from hlsm.spec import Spec
from hlsm.traces import Tokenizer


@dataclass
class Policy:
    """A model with everything needed to prompt it and score it.

    Attributes
    ----------
    model : GPT
        In eval mode, on the requested device.
    spec, design, format, tokenizer
        The SFT run's task (``design``: the config of its support design).
    kind : {"sft", "rl"}
        Which stage wrote the checkpoint.
    step : int
        Completed optimisation steps (SFT) or updates (RL).
    record : dict
        The checkpoint's config record; ``sft_record`` is the SFT run's (the same dict for SFT).
    """

    model: GPT
    spec: Spec
    design: DesignConfig
    format: TaskFormat
    tokenizer: Tokenizer
    kind: str
    step: int
    record: dict[str, Any]
    sft_record: dict[str, Any]

    def sft_programs(self) -> list[Program]:
        """The programs the SFT run trained on: the union of its ``[[data]]`` sources."""
        from hlsm.design import make_design
        from hlsm.lm.sft_config import SFTConfig

        config = SFTConfig.from_dict(self.sft_record)
        design = make_design(self.spec, config.design)
        out: dict[Program, None] = {}
        for source in config.data:
            out |= dict.fromkeys(resolve_source(design, source).programs)
        return list(out)


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> Checkpoint:
    """Load a checkpoint given as a file or a run folder, with an error naming ``what`` it was for.

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable or not an ``hlsm.lm`` checkpoint.
    """
    file = checkpoint_path(path)
    if not file.exists():
        raise CheckpointError(
            f"no {what} at '{file}'; give the checkpoint.pt (or the folder) of a finished `hlsm train` run"
        )
    try:
        return load_checkpoint(file)
    except CheckpointError:
        raise CheckpointError(
            f"'{file}' is not a readable hlsm.lm checkpoint (truncated or another file); give the checkpoint.pt of "
            "a finished `hlsm train` run"
        ) from None


def sft_record_of(record: dict[str, Any]) -> dict[str, Any]:
    """The SFT run's config record inside an SFT or RL checkpoint's record."""
    sft = record.get("sft", record)
    if not isinstance(sft, dict) or not all(k in sft for k in ("spec", "design", "format", "model", "data")):
        raise CheckpointError("the checkpoint's config is not an hlsm.lm SFT or RL record (no spec/design/format)")
    return sft


def gpt_config_of(record: dict[str, Any]) -> GPTConfig:
    """The model sizes of a checkpoint: stored (RL), or recomputed from the SFT config's data."""
    if "gpt" in record:
        return GPTConfig.from_dict(record["gpt"])
    from hlsm.lm.sft import sft_gpt_config
    from hlsm.lm.sft_config import SFTConfig

    return sft_gpt_config(SFTConfig.from_dict(record))


def load_policy(
    path: str | Path, *, device: str | torch.device = "cpu", max_len: int | None = None, what: str = "checkpoint"
) -> Policy:
    """Rebuild the model of a checkpoint and its task.

    Parameters
    ----------
    path
        ``checkpoint.pt`` or the run folder holding it.
    max_len
        Build the model for sequences up to this length if longer than it was trained for (RoPE
        positions are computed, not learned, so the weights are unchanged; whether the model
        generalises to the longer positions is what an evaluation measures).
    what
        What the checkpoint was given as, for error messages (e.g. ``"--init checkpoint"``).

    Raises
    ------
    CheckpointError
        A missing, unreadable or foreign checkpoint, or one whose weights do not fit its config.
    """
    ckpt = read_checkpoint(path, what)
    record = ckpt.config
    sft = sft_record_of(record)
    try:
        spec = Spec.from_dict(dict(sft["spec"]))
        design = DesignConfig.from_dict(sft["design"])
        fmt = TaskFormat(**sft["format"])
        gpt = gpt_config_of(record)
    except (HLSMError, TypeError) as err:
        raise CheckpointError(f"the config stored in '{checkpoint_path(path)}' is invalid: {err}") from None
    if max_len is not None and max_len > gpt.max_len:
        gpt = GPTConfig.from_dict({**gpt.to_dict(), "max_len": max_len})
    model = GPT(gpt)
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError:
        raise CheckpointError(
            f"the weights in '{checkpoint_path(path)}' do not fit the model its config describes"
        ) from None
    model.to(device).eval()
    tokenizer = make_tokenizer(spec)
    if len(tokenizer) != gpt.vocab_size:
        raise ConfigError(f"the checkpoint's vocabulary ({gpt.vocab_size}) does not fit its spec ({len(tokenizer)})")
    kind = "rl" if "rl" in record else "sft"
    return Policy(model, spec, design, fmt, tokenizer, kind, ckpt.step, record, sft)

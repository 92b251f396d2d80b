"""A trained transformer and its task, loaded from any ``hlsm.lm`` checkpoint (SFT or REINFORCE).

An SFT checkpoint's config record is :meth:`hlsm.lm.SFTConfig.to_dict`; a REINFORCE checkpoint's
record (:mod:`hlsm.lm.reinforce`) holds its own sections plus, under ``"sft"``, the record of the
SFT run it started from and, under ``"gpt"``, the model sizes. Either way the *task* is the SFT
run's: its library (``spec``), its support design (the evaluation splits) and its trace format.

:func:`widen_policy` lengthens a model's positions so programs deeper than its training fit;
:func:`evaluate_checkpoint` scores a checkpoint on every split of a design with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hlsm.config import ConfigError
from hlsm.design import DesignConfig, SupportDesign, make_design
from hlsm.errors import HLSMError
from hlsm.lm.checkpoint import CHECKPOINT_NAME, Checkpoint, CheckpointError, load_checkpoint
from hlsm.lm.data import TaskFormat, make_tokenizer
from hlsm.lm.dataset import Source, max_sequence_length, resolve_source
from hlsm.lm.evaluate import DesignEvaluation, design_splits, evaluate_design
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


def load_policy(path: str | Path, *, device: str | torch.device = "cpu", what: str = "checkpoint") -> Policy:
    """Rebuild the model of a checkpoint and its task.

    Parameters
    ----------
    path
        ``checkpoint.pt`` or the run folder holding it.
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


def widen_policy(policy: Policy, sources: Sequence[Source]) -> Policy:
    """``policy`` with a model long enough for every program of ``sources`` (itself if it already is).

    The widened model has the same weights and ``max_len`` the longest prompt plus golden trace
    (:func:`hlsm.lm.dataset.max_sequence_length`), so deeper programs than the run trained on fit.
    RoPE positions are computed, not learned; whether the model generalises to the longer
    positions is what an evaluation measures.
    """
    needed = max_sequence_length(policy.spec, policy.format, sources)
    config = policy.model.config
    if needed <= config.max_len:
        return policy
    model = GPT(GPTConfig.from_dict({**config.to_dict(), "max_len": needed}))
    model.load_state_dict(policy.model.state_dict())
    device = next(policy.model.parameters()).device
    return replace(policy, model=model.to(device).eval())


def evaluate_checkpoint(
    checkpoint: Policy | str | Path,
    design: SupportDesign | None = None,
    *,
    examples: int = 512,
    seed: int = 0,
    checker: bool = True,
    device: str | torch.device = "cpu",
    what: str = "checkpoint",
) -> DesignEvaluation:
    """:func:`hlsm.lm.evaluate.evaluate_design` of a checkpoint's model, widened to fit every split.

    Parameters
    ----------
    checkpoint
        A loaded policy, or the ``checkpoint.pt`` (or run folder) to load on ``device`` (``what``
        names it in errors, as in :func:`load_policy`).
    design
        The support design whose splits (:func:`hlsm.lm.evaluate.design_splits`) are scored;
        default the checkpoint's own, with the programs its SFT run trained on as the SFT regime
        (:meth:`Policy.sft_programs`). A given design's ``sft`` split is its regime.
    examples, seed, checker
        Examples per split, the seed they are drawn from, and whether to add the checker strata.

    Returns
    -------
    DesignEvaluation

    Raises
    ------
    FormatError
        When a program of the design does not fit the checkpoint's format.
    """
    policy = checkpoint if isinstance(checkpoint, Policy) else load_policy(checkpoint, device=device, what=what)
    sft_programs = None
    if design is None:
        design, sft_programs = make_design(policy.spec, policy.design), policy.sft_programs()
    sources = [Source(name, programs) for name, programs in design_splits(design).items()]
    for p in (p for s in sources for p in s.programs):
        policy.format.check(p)
    policy = widen_policy(policy, sources)
    return evaluate_design(
        policy.model,
        policy.spec,
        policy.format,
        policy.tokenizer,
        design,
        examples_per_split=examples,
        seed=seed,
        checker=checker,
        sft_programs=sft_programs,
    )

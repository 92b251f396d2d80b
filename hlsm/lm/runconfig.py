"""The ``[training]`` keys that SFT and RL share, in a module of its own (cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass

from hlsm.config import ConfigError


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The ``[training]`` keys every stage shares: seeding, logging, evaluation, checkpoints, device.

    Each stage extends it (:class:`hlsm.lm.TrainingConfig`, :class:`hlsm.lm.RLTrainingConfig`) with
    its own keys and its own defaults for the intervals and the output folder; an interval counts
    the stage's steps (SFT optimisation steps, RL updates).

    Parameters
    ----------
    seed
        Seeds the model init and every draw of the run (batches, prompts, samples, evaluation sets).
    log_every, eval_every, checkpoint_every
        Intervals (``eval_every = 0``: evaluate at the end only).
    eval_examples, eval_batch_size
        Held-out examples per evaluation set; prompts per generation call.
    device, bf16, threads
        ``auto`` | ``cpu`` | ``cuda``; bf16 autocast on CUDA; CPU threads during the run (None:
        torch's setting).
    out
        Output folder (``--out`` overrides it).
    """

    seed: int = 0
    log_every: int = 1
    eval_every: int = 0
    eval_examples: int = 512
    eval_batch_size: int = 512
    checkpoint_every: int = 1
    device: str = "auto"
    bf16: bool = True
    threads: int | None = None
    out: str = "runs/run"

    def __post_init__(self) -> None:
        for name in ("log_every", "eval_examples", "eval_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be non-negative, got {self.eval_every}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")

"""The SFT run's configuration: one TOML file, typed sections, one clear error per mistake.

TOML layout (every section and key optional; defaults shown)::

    [spec]                      # hlsm.Spec: alphabet, length, skills, routings
    alphabet = 8
    length = 6

    [design]                    # hlsm.DesignConfig: the support design (splits sft/rl/unseen/deeper)
    train_depth = 3
    holdout = "pairs"

    [format]                    # hlsm.lm.TaskFormat
    slots = 4                   # fixed-width program slots (plain = true: variable-length program)
    echo = false                # show each step's skill symbol before its state

    [model]                     # ModelConfig -> hlsm.lm.GPTConfig (vocab_size from the tokenizer)
    n_layer = 3
    n_head = 4
    d_model = 128
    # d_ff = 512                # default 4 * d_model
    dropout = 0.0
    rope_base = 10000.0
    sdpa = true
    # max_len = 64              # default: the longest sequence of the data and eval sources

    [training]                  # TrainingConfig
    steps = 1600
    batch_size = 64             # global batch (split across torchrun ranks)
    lr = 2e-3
    min_lr_ratio = 0.1          # cosine decay to lr * min_lr_ratio
    warmup_steps = 100
    weight_decay = 0.1
    betas = [0.9, 0.95]
    grad_clip = 1.0             # 0: no clipping
    seed = 0
    log_every = 50
    eval_every = 400            # 0: at the end only
    eval_examples = 512         # held-out examples per evaluation set
    eval_batch_size = 512
    checkpoint_every = 200
    device = "auto"             # auto | cpu | cuda
    bf16 = true                 # autocast to bfloat16 on CUDA
    # threads = 2               # torch CPU threads
    out = "runs/sft"

    [gate]                      # GateConfig: the calibration gate (leave the section out: no gate)
    seen = 0.95                 # greedy accuracy on seen depth-L compositions (the sft split at train_depth)
    atomic = 0.98               # ... and on the atomic programs
    every = 200                 # check every this many steps; stop when both are met (0: at the end only)
    examples = 256              # held-out examples per gate set

    [[data]]                    # training mixture: one table per source (hlsm.lm.SourceConfig)
    name = "atomic"
    programs = "atomic"         # split | atomic | seen_pairs | all
    weight = 0.2

    [[data]]
    name = "depth3"
    programs = "split"
    split = "sft"
    depth = 3
    weight = 0.4

    [[eval]]                    # evaluation sets, same keys (weight ignored); default: the [[data]] sources
    name = "unseen"
    split = "unseen"

TOML has no null: leave a key out to keep a ``None`` default; ``[format] plain = true`` selects the
plain variable-length program (``TaskFormat(slots=None)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hlsm.config import ConfigError, build_dataclass, check_sections, load_config
from hlsm.design import DesignConfig
from hlsm.lm.data import TaskFormat
from hlsm.lm.dataset import SourceConfig
from hlsm.lm.model import GPTConfig
from hlsm.lm.runconfig import RunConfig
from hlsm.spec import Spec

SECTIONS = ("spec", "design", "format", "model", "training", "gate", "data", "eval")


@dataclass(frozen=True)
class ModelConfig:
    """The ``[model]`` section: :class:`GPTConfig` without the sizes the data fixes.

    ``max_len`` None means the longest sequence of the run's data and evaluation sources.
    """

    n_layer: int = 3
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None
    dropout: float = 0.0
    rope_base: float = 10000.0
    sdpa: bool = True
    max_len: int | None = None

    def __post_init__(self) -> None:
        self.gpt(vocab_size=1, max_len=self.max_len or 1)  # validate the shared fields now

    def gpt(self, vocab_size: int, max_len: int) -> GPTConfig:
        """The :class:`GPTConfig` for a tokenizer of ``vocab_size`` and sequences of ``max_len``."""
        kwargs = {k: v for k, v in asdict(self).items() if k != "max_len"}
        return GPTConfig(vocab_size=vocab_size, max_len=max_len, **kwargs)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(RunConfig):
    """The ``[training]`` section: :class:`hlsm.lm.runconfig.RunConfig` plus the optimisation.

    Parameters
    ----------
    steps, batch_size
        Optimisation steps; examples per step over all ranks (divisible by the number of ranks).
    lr, min_lr_ratio, warmup_steps
        AdamW peak learning rate; linear warm-up over ``warmup_steps``, then cosine decay to
        ``min_lr_ratio * lr`` at ``steps``.
    weight_decay, betas, grad_clip
        AdamW decay (on matrices and the embedding only), betas, gradient-norm clip (0: none).

    Intervals count steps (step ``t``'s batch is a function of ``seed`` and ``t``); the last step
    always evaluates and checkpoints.
    """

    steps: int = 1600
    batch_size: int = 64
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 1.0
    log_every: int = 50
    eval_every: int = 400
    checkpoint_every: int = 200
    out: str = "runs/sft"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                f"need lr > 0 and 0 <= min_lr_ratio <= 1, got lr={self.lr}, min_lr_ratio={self.min_lr_ratio}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be non-negative")


@dataclass(frozen=True)
class GateConfig:
    """The ``[gate]`` section: the calibration an SFT checkpoint must pass before RL is spent on it.

    Every ``every`` steps (and at the last) the run scores greedy exact match on ``examples`` fresh
    inputs of the seen depth-L compositions (the design's ``sft`` split at ``train_depth``) and of
    the atomic programs; once both reach their threshold the run stops there (``[training] steps``
    is then a cap, and the schedule spans it). ``every = 0`` checks only at the end. The outcome is
    saved as ``calibration`` in ``summary.json`` (:class:`hlsm.lm.sft.Calibration`).
    """

    seen: float = 0.95
    atomic: float = 0.98
    every: int = 200
    examples: int = 256

    def __post_init__(self) -> None:
        for name in ("seen", "atomic"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"[gate] {name} is an accuracy in [0, 1], got {getattr(self, name)}")
        if self.every < 0 or self.examples < 1:
            raise ConfigError(f"[gate] needs every >= 0 and examples >= 1, got {self.every}, {self.examples}")


def parse_sources(raw: Any, what: str) -> tuple[SourceConfig, ...]:
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise ConfigError(f"[[{what}]] must be an array of tables (write each source as a [[{what}]] table)")
    out = tuple(build_dataclass(SourceConfig, t, f"{what} #{i + 1}") for i, t in enumerate(raw))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"[[{what}]] names must be unique; repeated: {dup}")
    return out


@dataclass(frozen=True)
class SFTConfig:
    """Everything an SFT run needs; see the module docstring for the TOML layout."""

    spec: Spec = field(default_factory=Spec)
    design: DesignConfig = field(default_factory=DesignConfig)
    format: TaskFormat = field(default_factory=TaskFormat)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: tuple[SourceConfig, ...] = (SourceConfig("sft"),)
    eval: tuple[SourceConfig, ...] = ()
    gate: GateConfig | None = None

    @property
    def eval_sets(self) -> tuple[SourceConfig, ...]:
        """The evaluation sets: ``eval``, or the training sources when it is empty."""
        return self.eval or self.data

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SFTConfig:
        """Build from a parsed TOML mapping; unknown sections/keys and wrong types raise ConfigError."""
        if isinstance(raw, Mapping) and "gate" in raw and raw["gate"] is None:  # to_dict of a config without a gate
            raw = {k: v for k, v in raw.items() if k != "gate"}
        check_sections(raw, SECTIONS, tables=("spec", "design", "format", "model", "training", "gate"))
        fmt = dict(raw.get("format", {}))
        if fmt.pop("plain", False) is True:
            if "slots" in fmt:
                raise ConfigError("[format]: give either plain = true or slots, not both")
            fmt["slots"] = None
        kwargs: dict[str, Any] = {
            "spec": Spec.from_dict(dict(raw.get("spec", {}))),
            "design": DesignConfig.from_dict(raw.get("design", {})),
            "format": build_dataclass(TaskFormat, fmt, "format"),
            "model": build_dataclass(ModelConfig, raw.get("model", {}), "model"),
            "training": build_dataclass(TrainingConfig, raw.get("training", {}), "training"),
        }
        if raw.get("gate") is not None:
            kwargs["gate"] = build_dataclass(GateConfig, raw["gate"], "gate")
        if "data" in raw:
            kwargs["data"] = parse_sources(raw["data"], "data")
            if not kwargs["data"]:
                raise ConfigError("[[data]] lists no source; give at least one")
        if "eval" in raw:
            kwargs["eval"] = parse_sources(raw["eval"], "eval")
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> SFTConfig:
        """Read a TOML file, with ``overrides`` (``{"training.steps": 100}``) set first (errors name the file)."""
        return load_config(path, cls.from_dict, overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict; ``SFTConfig.from_dict`` of it (TOML nulls aside) rebuilds the config."""
        return {
            "spec": self.spec.to_dict(),
            "design": self.design.to_dict(),
            "format": self.format.to_dict(),
            "model": asdict(self.model),
            "training": asdict(self.training),
            "data": [s.to_dict() for s in self.data],
            "eval": [s.to_dict() for s in self.eval],
            "gate": None if self.gate is None else asdict(self.gate),
        }

    def with_out(self, out: str | Path) -> SFTConfig:
        return replace(self, training=replace(self.training, out=str(out)))

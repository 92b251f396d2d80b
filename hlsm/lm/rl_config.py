"""The REINFORCE run's configuration: one TOML file, typed sections, checked against the SFT checkpoint.

TOML layout (every section and key optional; defaults shown)::

    [spec]                      # optional: must match the SFT checkpoint's [spec]
    [format]                    # optional: must match the SFT checkpoint's [format]
    [design]                    # optional: must match the SFT checkpoint's [design], except
    rl_kind = "compound"        #   rl_kind ("compound" | "atomic") and rl_inside, which choose
    rl_inside = false           #   the RL arm (the design's `rl` split)

    [rl]                        # RLSettings: the algorithm (the default recipe)
    programs = "rl"             # prompts from the design's split: rl | sft
    group_size = 16             # traces sampled per prompt (G)
    prompts_per_round = 32      # prompts per sampling round (over all ranks)
    min_mixed_groups = 8        # update once this many groups have mixed rewards
    budget_traces = 480000      # total sampled traces (the budget that arms are compared at)
    temperature = 1.0
    kl_coef = 0.05              # k3 KL penalty to the frozen SFT policy
    lr = 5e-5                   # AdamW, constant
    weight_decay = 0.0
    betas = [0.9, 0.95]
    grad_clip = 1.0             # 0: no clipping
    curriculum_fraction = 0.0   # > 0: this share of the budget on depth-2 programs of RL pairs first
    curriculum_mix = [0.3, 0.7] # after it: weights of those depth-2 programs and the RL programs

    [training]                  # RLTrainingConfig: the run
    seed = 0
    log_every = 1               # updates
    eval_every = 0              # updates; 0: at the end only
    eval_examples = 512
    eval_batch_size = 512
    checkpoint_every = 10       # updates
    device = "auto"
    bf16 = true
    # threads = 1
    out = "runs/rl"

    [[eval]]                    # evaluation sets (hlsm.lm.SourceConfig); default: the rl and unseen splits
    name = "unseen"
    split = "unseen"

RL must run on the SFT run's task: the same library, format and evaluation splits. Sections that
are left out are taken from the checkpoint; a key that is given must equal the checkpoint's value
(:func:`resolve_task`), except the two design keys that pick the RL arm. The evaluation splits
always come from the checkpoint's own design, so every arm is scored on the same programs.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from hlsm.config import ConfigError, build_dataclass, check_choices, check_keys, check_sections, load_config
from hlsm.design import DesignConfig
from hlsm.lm.data import TaskFormat
from hlsm.lm.dataset import SourceConfig
from hlsm.lm.runconfig import RunConfig
from hlsm.lm.sft_config import parse_sources
from hlsm.spec import Spec

SECTIONS = ("spec", "design", "format", "rl", "training", "eval")
RL_ARM_KEYS = ("rl_kind", "rl_inside")
"""Design keys an RL config may set differently from the SFT checkpoint: they choose the RL split."""

ProgramSet = Literal["rl", "sft"]
Reward = Literal["exact", "letters"]
RL_PROGRAM_SETS: tuple[str, ...] = typing.get_args(ProgramSet)
REWARDS: tuple[str, ...] = typing.get_args(Reward)
"""``[rl] reward``: 1 for the exact answer, or partial credit per correct letter (:func:`hlsm.lm.rollout.score`)."""


@dataclass(frozen=True)
class RLSettings:
    """The ``[rl]`` section: REINFORCE with a leave-one-out baseline and dynamic sampling.

    Parameters
    ----------
    programs : {"rl", "sft"}
        Prompts are drawn uniformly from this split of the design (``rl``: the RL split chosen by
        ``[design] rl_kind / rl_inside``; ``sft``: the SFT support itself), with uniform ``x_0``.
    group_size : int
        ``G >= 2`` traces per prompt; the baseline of trace ``i`` is the mean reward of the other
        ``G - 1``.
    prompts_per_round, min_mixed_groups : int
        A round samples ``prompts_per_round`` groups; groups whose ``G`` rewards are all equal are
        dropped; rounds continue until ``min_mixed_groups`` mixed groups are held, then one update.
    budget_traces : int
        The run stops when the next round would exceed this many sampled traces (all rounds count,
        dropped groups included).
    temperature : float
        Sampling temperature ``tau``; the policy optimised is ``softmax(logits / tau)``.
    kl_coef : float
        Weight ``beta`` of the k3 KL estimate to the frozen SFT policy (its value estimates
        ``KL(pi || pi_ref)``, its gradient that of ``KL(pi_ref || pi)``: :mod:`hlsm.lm.pg`).
    lr, weight_decay, betas, grad_clip
        AdamW at a constant learning rate; gradient-norm clip (0: none).
    curriculum_fraction : float
        In ``[0, 1)``; the first ``curriculum_fraction * budget_traces`` traces are drawn from the
        depth-2 programs made of the pairs the RL programs practise (:func:`hlsm.lm.rollout.curriculum_programs`).
    curriculum_mix : tuple of float
        After the curriculum: weights of (those depth-2 programs, the RL programs).
    curve : tuple of float
        The learning curve: fractions of ``budget_traces`` in ``[0, 1]`` at which the evaluation
        sets are scored (0: the SFT policy before any update; 1: the end of the budget), logged as
        ``eval`` records with ``traces`` and ``curve`` (:func:`hlsm.lm.records.read_curve`).
    allow_uncalibrated : bool
        Run from an SFT checkpoint that failed its calibration gate (``[gate]``); refused by default.
    late_excluded : tuple of str
        Skill names: RL programs that use one of them after step 1 are dropped from the RL split
        (what remains is a subset of the design's RL programs, so the evaluation splits are
        unchanged). A designed test of transfer: RL then practises those skills only as a first
        step (``hlsm.sims.probe_transformer``).
    reward : {"exact", "letters"}
        ``exact``: 1 when the final state is the answer, else 0. ``letters``: the fraction of the
        answer's positions the final state gets right (partial credit, so a skill no sample gets
        wholly right can still be learnt; evaluation stays exact match). Malformed traces score 0.
    """

    programs: ProgramSet = "rl"
    group_size: int = 16
    prompts_per_round: int = 32
    min_mixed_groups: int = 8
    budget_traces: int = 480_000
    temperature: float = 1.0
    kl_coef: float = 0.05
    lr: float = 5e-5
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 1.0
    curriculum_fraction: float = 0.0
    curriculum_mix: tuple[float, ...] = (0.3, 0.7)
    curve: tuple[float, ...] = ()
    allow_uncalibrated: bool = False
    reward: Reward = "exact"
    late_excluded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "late_excluded", tuple(self.late_excluded))
        check_choices(self, ConfigError)
        object.__setattr__(self, "curve", tuple(sorted(set(self.curve))))
        if any(not 0 <= p <= 1 for p in self.curve):
            raise ConfigError(f"curve lists fractions of the budget in [0, 1], got {list(self.curve)}")
        object.__setattr__(self, "curriculum_mix", tuple(self.curriculum_mix))
        if self.group_size < 2:
            raise ConfigError(f"group_size must be at least 2 (the leave-one-out baseline), got {self.group_size}")
        for name in ("prompts_per_round", "min_mixed_groups", "budget_traces"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.budget_traces < self.prompts_per_round * self.group_size:
            raise ConfigError(
                f"budget_traces={self.budget_traces} is less than one round (prompts_per_round * group_size = "
                f"{self.prompts_per_round * self.group_size}); raise the budget"
            )
        if not self.temperature > 0 or not self.lr > 0:
            raise ConfigError(f"temperature and lr must be positive, got {self.temperature} and {self.lr}")
        if self.kl_coef < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("kl_coef, weight_decay and grad_clip must be non-negative")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not 0 <= self.curriculum_fraction < 1:
            raise ConfigError(f"curriculum_fraction must be in [0, 1), got {self.curriculum_fraction}")
        mix = self.curriculum_mix
        if len(mix) != 2 or min(mix) < 0 or sum(mix) <= 0:
            raise ConfigError(f"curriculum_mix must be two non-negative weights, not both 0, got {list(mix)}")


@dataclass(frozen=True, kw_only=True)
class RLTrainingConfig(RunConfig):
    """The ``[training]`` section: :class:`hlsm.lm.runconfig.RunConfig` with RL's defaults.

    Intervals count updates. Randomness: every round's prompts and samples are drawn from
    generators seeded by ``(seed, update, round[, rank])``, so a resumed run repeats exactly.
    """

    log_every: int = 1
    eval_every: int = 0
    checkpoint_every: int = 10
    out: str = "runs/rl"


DEFAULT_EVAL = (SourceConfig("rl", split="rl"), SourceConfig("unseen", split="unseen"))


@dataclass(frozen=True)
class RLConfig:
    """Everything a REINFORCE run needs besides the SFT checkpoint; see the module docstring.

    ``spec``, ``design`` and ``format`` hold the keys the file gave (possibly none); the run takes
    the rest from the checkpoint (:func:`resolve_task`).
    """

    rl: RLSettings = RLSettings()
    training: RLTrainingConfig = RLTrainingConfig()
    eval: tuple[SourceConfig, ...] = DEFAULT_EVAL
    spec: Mapping[str, Any] | None = None
    design: Mapping[str, Any] | None = None
    format: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RLConfig:
        """Build from a parsed TOML mapping; unknown sections/keys and wrong types raise ConfigError."""
        check_sections(raw, SECTIONS, tables=("spec", "design", "format", "rl", "training"))
        kwargs: dict[str, Any] = {
            "rl": build_dataclass(RLSettings, raw.get("rl", {}), "rl"),
            "training": build_dataclass(RLTrainingConfig, raw.get("training", {}), "training"),
        }
        # the task sections: keys and types now, values against the checkpoint (resolve_task)
        for name, kind in (("spec", Spec), ("design", DesignConfig), ("format", TaskFormat)):
            if name in raw:
                section = dict(raw[name])
                if name == "format" and not isinstance(section.pop("plain", False), bool):
                    raise ConfigError("[format] key 'plain' must be true or false")
                check_keys(kind, section, name)
                kwargs[name] = dict(raw[name])
        if "eval" in raw:
            kwargs["eval"] = parse_sources(raw["eval"], "eval")
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> RLConfig:
        """Read a TOML file, with ``overrides`` (``{"training.steps": 100}``) set first (errors name the file)."""
        return load_config(path, cls.from_dict, overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (task sections only where the file gave them)."""
        out: dict[str, Any] = {
            "rl": asdict(self.rl),
            "training": asdict(self.training),
            "eval": [s.to_dict() for s in self.eval],
        }
        for name in ("spec", "design", "format"):
            if getattr(self, name) is not None:
                out[name] = dict(getattr(self, name))
        return out

    def with_out(self, out: str | Path) -> RLConfig:
        return replace(self, training=replace(self.training, out=str(out)))


@dataclass(frozen=True)
class Task:
    """The SFT run's task as RL uses it: library, evaluation design, RL design, format."""

    spec: Spec
    design: DesignConfig
    rl_design: DesignConfig
    format: TaskFormat


def resolve_task(config: RLConfig, sft: Mapping[str, Any]) -> Task:
    """The checkpoint's spec, design and format, with the RL arm keys of ``config`` applied.

    Parameters
    ----------
    sft
        The SFT checkpoint's config record (``spec``, ``design``, ``format`` as JSON dicts).

    Raises
    ------
    ConfigError
        When a key that ``config`` gives differs from the checkpoint's value (other than
        ``[design] rl_kind / rl_inside``), naming the key, both values and the fix.
    """
    spec_raw, design_raw, format_raw = (dict(sft[k]) for k in ("spec", "design", "format"))
    _match("spec", config.spec, spec_raw, lambda d: Spec.from_dict(d).to_dict(), ())
    _match("format", _format_keys(config.format), format_raw, lambda d: TaskFormat(**d).to_dict(), ())
    _match("design", config.design, design_raw, lambda d: DesignConfig.from_dict(d).to_dict(), RL_ARM_KEYS)
    design = DesignConfig.from_dict(design_raw)
    arm = {k: v for k, v in (config.design or {}).items() if k in RL_ARM_KEYS}
    rl_design = DesignConfig.from_dict({**design_raw, **arm})
    return Task(Spec.from_dict(spec_raw), design, rl_design, TaskFormat(**format_raw))


def _format_keys(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    out = dict(raw)
    if out.pop("plain", False) is True:
        if "slots" in out:
            raise ConfigError("[format]: give either plain = true or slots, not both")
        out["slots"] = None
    return out


def _match(
    section: str, given: Mapping[str, Any] | None, ckpt: dict[str, Any], normal: Any, free: tuple[str, ...]
) -> None:
    """Raise unless every key of ``given`` (outside ``free``) has the checkpoint's value."""
    if not given:
        return
    merged, reference = normal({**ckpt, **given}), normal(ckpt)
    for key in given:
        if key in free or merged[key] == reference[key]:
            continue
        raise ConfigError(
            f"[{section}] {key} = {_show(merged[key])} does not match the SFT checkpoint's {_show(reference[key])}; "
            f"RL runs on the SFT run's task: remove the key or set it to {_show(reference[key])}"
        )


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)

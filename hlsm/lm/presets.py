"""Experiment scales: the ``tiny`` / ``cpu`` / ``gpu`` presets of :mod:`hlsm.lm.experiment`.

An :class:`ExperimentScale` holds everything about an experiment's size: the base SFT and RL
configs every arm starts from, the seeds, the examples per evaluation split, the workers.
:func:`scale_preset` gives the ``tiny`` (tests), ``cpu`` (``hlsm reproduce --scale cpu``) and
``gpu`` settings; :func:`held_out_design` the design keys of an arm whose
SFT support leaves some skills out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hlsm.errors import HLSMError
from hlsm.lm.rl_config import RLConfig
from hlsm.lm.sft_config import SFTConfig
from hlsm.scales import SCALES as SCALES  # re-exported: the names live in hlsm.scales

GATE = {"seen": 0.95, "atomic": 0.98, "every": 200, "examples": 256}
"""The calibration gate of the cpu and gpu scales (:class:`hlsm.lm.sft_config.GateConfig`)."""

CURVE = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
"""The learning-curve points of every RL arm, as fractions of the budget."""


class ExperimentError(HLSMError):
    """An arm or scale that cannot be run as asked."""


@dataclass(frozen=True)
class ExperimentScale:
    """Everything about an experiment's size: base SFT and RL configs, seeds, evaluation.

    ``sft`` and ``rl`` are the configs every arm starts from (arms override design keys only);
    ``eval_examples`` examples per split; ``checker`` adds the identified / not-identified strata;
    ``workers`` processes run a stage's jobs in parallel (1: in this process); ``stack`` runs of one
    shape are trained as one computation in each job (:func:`hlsm.lm.sft.train_sft_many`; None:
    every run of the stage that shares a shape); ``backend`` ``local`` runs the jobs on ``workers``
    processes here, ``ray`` sends each as a Ray task to the cluster at ``address`` (:mod:`hlsm.parallel`).
    """

    name: str
    sft: SFTConfig
    rl: RLConfig
    seeds: tuple[int, ...]
    eval_examples: int
    checker: bool = False
    workers: int = 1
    stack: int | None = 1
    backend: str = "local"
    address: str = ""


SCALE_SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"seeds": (0,), "eval_examples": 32, "workers": 1, "stack": 1},
    "cpu": {"seeds": (0, 1, 2, 3, 4), "eval_examples": 512, "workers": 2, "stack": 1},
    "gpu": {"seeds": (0, 1, 2, 3, 4), "eval_examples": 2048, "checker": True, "workers": 1, "stack": None},
}
"""What a scale adds to its configs: seeds, evaluation examples per split, the checker strata, the
worker processes of a stage and the models per stack (:class:`ExperimentScale`). cpu: 2 workers of
one thread, one model each: on 2 CPU cores a stack of 8 ran the SFT step at 0.89-0.92x and a RL round
at 0.88-0.93x the rate of the same 8 models one at a time (``hlsm bench train|rl --models 8``; a 0.2M
model's activations fit the caches one model at a time, not eight). gpu: every seed and arm of a
stage that shares a shape in one stack (one model alone uses a GPU at well under 1% of its peak)."""


def scale_preset(name: str) -> ExperimentScale:
    """The ``tiny`` / ``cpu`` / ``gpu`` experiment scale: the shipped configs plus :data:`SCALE_SETTINGS`.

    The scale's SFT and RL configs are the example configs ``example:sft_NAME`` and
    ``example:rl_NAME`` (``hlsm/examples/configs/``; ``hlsm examples show sft_cpu``), so that a scale
    and the example of its name are one thing. tiny: seconds, for tests (1 seed, a gate that always
    passes). cpu: the default task with a 2-layer d = 96 model (0.23M parameters) trained to
    the calibration gate (:data:`GATE`), RL 150k sampled traces a run, 512 examples per split, seeds
    0-4 on 2 worker processes. gpu: the 0.6M model, 2.4M traces at lr 5e-5, 2,048 examples per
    split, the checker strata, 5 seeds, every run of a stage in one stack.
    """
    from hlsm.examples import example_path

    if name not in SCALES:
        raise ExperimentError(f"unknown scale {name!r}; choose one of {list(SCALES)}")
    sft = SFTConfig.from_toml(example_path(f"sft_{name}"))
    rl = RLConfig.from_toml(example_path(f"rl_{name}"))
    return ExperimentScale(name, sft, rl, **SCALE_SETTINGS[name])


MODEL_LADDER: dict[str, dict[str, int]] = {
    "0.2M": {"n_layer": 2, "n_head": 4, "d_model": 96},
    "0.6M": {"n_layer": 3, "n_head": 4, "d_model": 128},
    "1.2M": {"n_layer": 4, "n_head": 4, "d_model": 160},
    "5M": {"n_layer": 6, "n_head": 8, "d_model": 256},
    "25M": {"n_layer": 8, "n_head": 8, "d_model": 512},
}
"""Model sizes to put a result on a size axis (``[model]`` keys; the name is the parameter count on the
cpu task): 0.2M is the cpu scale's model, 0.6M the gpu scale's, 1.2M the
largest of the CPU size study (docs/howto/experiments.md), 5M and 25M the steps a GPU makes
affordable (``--size`` of the experiments and of ``hlsm bench train|rl``)."""


def with_size(scale: ExperimentScale, size: str | None) -> ExperimentScale:
    """``scale`` with the model of :data:`MODEL_LADDER` ``[size]`` (itself when ``size`` is None)."""
    if size is None:
        return scale
    if size not in MODEL_LADDER:
        raise ExperimentError(f"unknown model size {size!r}; choose one of {list(MODEL_LADDER)}")
    sizes = MODEL_LADDER[size]
    model = replace(scale.sft.model, n_layer=sizes["n_layer"], n_head=sizes["n_head"], d_model=sizes["d_model"])
    return replace(scale, sft=replace(scale.sft, model=model))


def held_out_design(scale: ExperimentScale, skills: Sequence[str], **extra: Any) -> dict[str, Any]:
    """Design overrides that hold ``skills`` out of SFT (``held_out_skills``), plus ``extra`` keys.

    With ``holdout = "pairs"`` the seen-pair SFT programs number ``(K - h) s^(L - 1)`` (``h``
    held-out skills, ``s`` successors): ``n_sft`` is lowered to that when the scale asks for more.
    """
    design = scale.sft.design
    out = {"held_out_skills": list(skills), **extra}
    if design.holdout == "pairs":
        available = (scale.sft.spec.num_skills - len(set(skills))) * design.successors ** (design.train_depth - 1)
        if design.n_sft > available:
            out["n_sft"] = available
    return out

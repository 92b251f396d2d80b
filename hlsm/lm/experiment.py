"""Transformer experiments: SFT per seed, RL arms from it, a design evaluation, cached and resumable.

An *experiment* compares *arms* over seeds. An :class:`Arm` names an SFT support (overrides of
the ``[design]`` section, e.g. ``held_out_skills``) and optionally an RL arm (the design keys
``rl_kind`` / ``rl_inside`` of :mod:`hlsm.lm.rl_config`); an arm without RL is SFT alone. For each
seed, :func:`run_arm` trains SFT (:func:`hlsm.lm.sft.train_sft`), then REINFORCE from that
checkpoint (:func:`hlsm.lm.reinforce.train_rl`), then scores the final model with
:func:`hlsm.lm.evaluate.evaluate_design` on the SFT design's splits. The seed sets the model init,
the batches and the design draw (``[design] seed``), so seeds differ in SFT support too.

Cache: every run lives in ``cache/sft-<hash>/`` or ``cache/rl-<hash>/``, the hash being that of the
resolved config (the output path and thread count left out; an RL hash includes its SFT's). Two
arms, or two experiments, that ask for the same run share it; a finished run (``summary.json``) is
reused, a killed one resumed from its checkpoint. Evaluations are cached beside the run as
``evaluation-<hash>.json``. All arms of one SFT design and seed are evaluated on the same
examples, so :func:`hlsm.lm.records.paired_examples` applies.

:func:`run_and_summarise` runs the arms and turns the per-seed evaluations into an
:class:`hlsm.lm.summary.ExperimentSummary` (per-seed accuracy +- binomial SE and, across seeds,
mean +- a Student-t 95% interval; paired differences between arms likewise), which
:func:`save_results` writes. The scales (``tiny``, ``cpu``, ``gpu``) are in :mod:`hlsm.lm.presets`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hlsm.io import write_json
from hlsm.lm.distributed import resolve_device
from hlsm.lm.policy import evaluate_checkpoint
from hlsm.lm.presets import ExperimentError, ExperimentScale
from hlsm.lm.reinforce import train_rl
from hlsm.lm.rl_config import RL_ARM_KEYS, RLConfig
from hlsm.lm.sft import train_sft
from hlsm.lm.sft_config import SFTConfig
from hlsm.lm.summary import ExperimentSummary, Keep, summarise
from hlsm.runtime import torch_threads


@dataclass(frozen=True)
class Arm:
    """One arm: an SFT support (``design`` overrides) and an RL arm (``rl``: keys of ``RL_ARM_KEYS``) or None."""

    name: str
    design: Mapping[str, Any] = field(default_factory=dict)
    rl: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        bad = sorted(set(self.rl or {}) - set(RL_ARM_KEYS))
        if bad:
            raise ExperimentError(f"arm '{self.name}': RL keys {bad} are not arm keys; use {list(RL_ARM_KEYS)}")


def _hash(record: Any) -> str:
    return hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=5).hexdigest()


def _key(record: dict[str, Any]) -> dict[str, Any]:
    """A config record without what does not change the result (output path, threads)."""
    record = json.loads(json.dumps(record))
    record["training"].pop("out", None)
    record["training"].pop("threads", None)
    return record


def arm_sft_config(scale: ExperimentScale, arm: Arm, seed: int) -> SFTConfig:
    """The SFT config of ``arm`` at ``seed``: the scale's, with the arm's design keys and the seed."""
    base = scale.sft.to_dict()
    design = {**base["design"], **dict(arm.design), "seed": seed}
    return SFTConfig.from_dict(base | {"design": design, "training": base["training"] | {"seed": seed}})


def _finished(run: Path) -> bool:
    return (run / "summary.json").exists()


def run_sft(config: SFTConfig, cache: str | Path, *, progress: bool = False) -> Path:
    """Train (or reuse, or resume) the SFT run of ``config`` in ``cache/sft-<hash>/``; its folder."""
    run = Path(cache) / f"sft-{_hash(_key(config.to_dict()))}"
    if not _finished(run):
        train_sft(config, run, resume=(run / "checkpoint.pt").exists(), progress=progress)
    return run


def run_rl(config: RLConfig, init: Path, cache: str | Path, *, progress: bool = False) -> Path:
    """Train (or reuse, or resume) REINFORCE from the SFT run ``init`` in ``cache/rl-<hash>/``; its folder."""
    run = Path(cache) / f"rl-{_hash({'init': init.name, **_key(config.to_dict())})}"
    if not _finished(run):
        train_rl(config, init, run, resume=(run / "checkpoint.pt").exists(), progress=progress)
    return run


def evaluate_run(run: Path, examples: int, seed: int, *, checker: bool = False, device: str = "cpu") -> dict[str, Any]:
    """:func:`hlsm.lm.policy.evaluate_checkpoint` of a run's final model on its SFT design, cached in the run folder."""
    path = run / f"evaluation-{_hash([examples, seed, checker])}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    result = evaluate_checkpoint(run, examples=examples, seed=seed, checker=checker, device=resolve_device(device))
    result.save(path)
    return dict(json.loads(path.read_text()))


def run_arm(arm: Arm, scale: ExperimentScale, seed: int, cache: str | Path) -> dict[str, Any]:
    """SFT, then RL if the arm has one, then the evaluation; returns :meth:`DesignEvaluation.to_dict` + ``run``.

    Torch runs on the SFT config's ``threads`` throughout (restored on return; None: left alone).
    """
    with torch_threads(scale.sft.training.threads):
        run = run_sft(arm_sft_config(scale, arm, seed), cache)
        if arm.rl is not None:
            rl = scale.rl
            config = replace(rl, design=dict(arm.rl), training=replace(rl.training, seed=seed))
            run = run_rl(config, run, cache)
        device = scale.sft.training.device
        return evaluate_run(run, scale.eval_examples, seed, checker=scale.checker, device=device) | {"run": str(run)}


def _run_seed(arms: Sequence[Arm], scale: ExperimentScale, seed: int, cache: str) -> dict[str, dict[str, Any]]:
    return {arm.name: run_arm(arm, scale, seed, cache) for arm in arms}


def run_experiment(
    arms: Sequence[Arm], scale: ExperimentScale, cache: str | Path
) -> dict[str, dict[int, dict[str, Any]]]:
    """Every arm at every seed of ``scale``: ``{arm name: {seed: evaluation dict}}``.

    Seeds run in ``scale.workers`` processes (one seed per task: its runs never collide with another
    seed's); arms of one seed run in order, so an SFT run shared by arms is trained once.
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be unique, got {names}")
    if scale.workers > 1 and len(scale.seeds) > 1:
        spawn = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
        with ProcessPoolExecutor(min(scale.workers, len(scale.seeds)), mp_context=spawn) as pool:
            futures = [pool.submit(_run_seed, arms, scale, s, str(cache)) for s in scale.seeds]
            by_seed = [f.result() for f in futures]
    else:
        by_seed = [_run_seed(arms, scale, s, str(cache)) for s in scale.seeds]
    return {a: {s: r[a] for s, r in zip(scale.seeds, by_seed, strict=True)} for a in names}


def run_and_summarise(
    arms: Sequence[Arm],
    scale: ExperimentScale,
    cache: str | Path,
    splits: Mapping[str, tuple[str, Keep | None]],
    contrasts: Sequence[tuple[str, str]] = (),
) -> ExperimentSummary:
    """:func:`run_experiment` then :func:`hlsm.lm.summary.summarise`, with the wall time and the scale's settings."""
    t0 = time.perf_counter()
    results = run_experiment(arms, scale, cache)
    out = summarise(results, splits, contrasts)
    settings = {
        "scale": scale.name,
        "seeds": list(scale.seeds),
        "eval_examples": scale.eval_examples,
        "arms": [{"name": a.name, "design": dict(a.design), "rl": None if a.rl is None else dict(a.rl)} for a in arms],
        "sft": scale.sft.to_dict(),
        "rl": scale.rl.to_dict(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    return replace(out, settings=settings)


def save_results(out: str | Path, config: Mapping[str, Any], results: ExperimentSummary) -> Path:
    """Write ``out/config.json`` and ``out/results.json`` (:meth:`ExperimentSummary.to_dict`) atomically;
    the results path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config, default=str)
    write_json(out / "results.json", results.to_dict(), default=str)
    return out / "results.json"

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
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hlsm.io import write_json
from hlsm.lm.distributed import resolve_device
from hlsm.lm.policy import evaluate_checkpoint
from hlsm.lm.presets import ExperimentError, ExperimentScale
from hlsm.lm.records import read_calibration, read_curve
from hlsm.lm.reinforce import rl_stack_key, train_rl_many
from hlsm.lm.rl_config import RL_ARM_KEYS, RLConfig
from hlsm.lm.rundir import without_added_defaults
from hlsm.lm.sft import stack_key, train_sft_many
from hlsm.lm.sft_config import SFTConfig
from hlsm.lm.summary import ExperimentSummary, Keep, summarise
from hlsm.lock import writing_all
from hlsm.parallel import Backend, Runner
from hlsm.runfolder import TRAINING, RunFolder
from hlsm.runtime import torch_threads

RL_ARM_SETTINGS = ("reward", "late_excluded")
"""``[rl]`` settings an arm may set (:class:`hlsm.lm.rl_config.RLSettings`): the reward, the skills RL
practises only as a first step."""


@dataclass(frozen=True)
class Arm:
    """One arm: an SFT support (``design`` overrides), other SFT settings (``sft``: ``{section: {key:
    value}}`` overrides of the scale's SFT config, e.g. ``{"gate": {"atomic": 0.8}}``), and an RL arm
    (``rl``: design keys of ``RL_ARM_KEYS`` and ``[rl]`` settings of :data:`RL_ARM_SETTINGS`) or None."""

    name: str
    design: Mapping[str, Any] = field(default_factory=dict)
    rl: Mapping[str, Any] | None = None
    sft: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = sorted(set(self.rl or {}) - {*RL_ARM_KEYS, *RL_ARM_SETTINGS})
        if bad:
            raise ExperimentError(
                f"arm '{self.name}': RL keys {bad} are not arm keys; use {[*RL_ARM_KEYS, *RL_ARM_SETTINGS]}"
            )
        sections = sorted(set(self.sft) - {"gate", "training", "model"})
        if sections:
            raise ExperimentError(
                f"arm '{self.name}': SFT sections {sections} cannot be set per arm (gate, training, model)"
            )


def _hash(record: Any) -> str:
    return hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=5).hexdigest()


def _key(record: dict[str, Any]) -> dict[str, Any]:
    """A config record without what does not change the result (output path, threads) and without the
    later settings at their defaults (:data:`hlsm.lm.rundir.ADDED_AT_DEFAULT`)."""
    record = without_added_defaults(record)
    record["training"].pop("out", None)
    record["training"].pop("threads", None)
    return record


def arm_sft_config(scale: ExperimentScale, arm: Arm, seed: int) -> SFTConfig:
    """The SFT config of ``arm`` at ``seed``: the scale's, with the arm's design keys and the seed."""
    base = scale.sft.to_dict()
    for section, values in arm.sft.items():
        base[section] = {**(base.get(section) or {}), **dict(values)}
    design = {**base["design"], **dict(arm.design), "seed": seed}
    return SFTConfig.from_dict(base | {"design": design, "training": base["training"] | {"seed": seed}})


def _finished(run: Path) -> bool:
    return RunFolder(run, TRAINING).finished()


def _resumable(run: Path) -> bool:
    return RunFolder(run, TRAINING).resumable()


def sft_run_path(config: SFTConfig, cache: str | Path) -> Path:
    """The cache folder of the SFT run of ``config``: ``cache/sft-<hash>/``."""
    return Path(cache) / f"sft-{_hash(_key(config.to_dict()))}"


def rl_run_path(config: RLConfig, init: Path, cache: str | Path) -> Path:
    """The cache folder of the RL run of ``config`` from the SFT run ``init``: ``cache/rl-<hash>/``."""
    return Path(cache) / f"rl-{_hash({'init': init.name, **_key(config.to_dict())})}"


def run_sft(config: SFTConfig, cache: str | Path, *, progress: bool = False) -> Path:
    """Train (or reuse, or resume) the SFT run of ``config`` in ``cache/sft-<hash>/``; its folder."""
    return run_sft_many([config], cache, progress=progress)[0]


def run_sft_many(configs: Sequence[SFTConfig], cache: str | Path, *, progress: bool = False) -> list[Path]:
    """:func:`run_sft` of every config, the unfinished ones trained as one stack (:func:`train_sft_many`)."""
    runs = [sft_run_path(c, cache) for c in configs]
    # another experiment sharing the cache may be training one of them: wait for it, then look again
    with writing_all([r for r in runs if not _finished(r)], "cached run folder", wait=True):
        todo = [(c, r) for c, r in zip(configs, runs, strict=True) if not _finished(r)]
        if todo:
            train_sft_many(
                [c for c, _ in todo], [r for _, r in todo], resume=[_resumable(r) for _, r in todo],
                progress=progress,
            )  # fmt: skip
    return runs


def run_rl(config: RLConfig, init: Path, cache: str | Path, *, progress: bool = False) -> Path:
    """Train (or reuse, or resume) REINFORCE from the SFT run ``init`` in ``cache/rl-<hash>/``; its folder."""
    return run_rl_many([(config, init)], cache, progress=progress)[0]


def run_rl_many(jobs: Sequence[tuple[RLConfig, Path]], cache: str | Path, *, progress: bool = False) -> list[Path]:
    """:func:`run_rl` of every ``(config, init)``, the unfinished ones trained as one stack (:func:`train_rl_many`)."""
    runs = [rl_run_path(c, i, cache) for c, i in jobs]
    with writing_all([r for r in runs if not _finished(r)], "cached run folder", wait=True):  # as run_sft_many
        todo = [(c, i, r) for (c, i), r in zip(jobs, runs, strict=True) if not _finished(r)]
        if todo:
            train_rl_many(
                [c for c, _, _ in todo], [i for _, i, _ in todo], [r for _, _, r in todo],
                resume=[_resumable(r) for _, _, r in todo], progress=progress,
            )  # fmt: skip
    return runs


def evaluate_run(run: Path, examples: int, seed: int, *, checker: bool = False, device: str = "cpu") -> dict[str, Any]:
    """:func:`hlsm.lm.policy.evaluate_checkpoint` of a run's final model on its SFT design, cached in the run folder."""
    path = run / f"evaluation-{_hash([examples, seed, checker])}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    result = evaluate_checkpoint(run, examples=examples, seed=seed, checker=checker, device=resolve_device(device))
    result.save(path)
    return dict(json.loads(path.read_text()))


def _rl_key(job: tuple[RLConfig, Path]) -> str:
    """Which RL runs to send to one stack: their SFT runs' model and task sections agree (read from
    ``config.json``); :func:`train_rl_many` splits a group whose widened policies still differ."""
    config, init = job
    sft = json.loads((init / "config.json").read_text())
    return rl_stack_key(config, {k: sft.get(k) for k in ("model", "spec", "format")})


class CalibrationError(ExperimentError):
    """An SFT checkpoint below its calibration gate: the seed stops before any RL or table."""


def arm_rl_config(scale: ExperimentScale, arm: Arm, seed: int) -> RLConfig | None:
    """The RL config of ``arm`` at ``seed`` (the scale's, with the arm's RL keys and the seed); None without RL."""
    if arm.rl is None:
        return None
    rl = scale.rl
    keys = {k: v for k, v in arm.rl.items() if k in RL_ARM_KEYS}
    settings = replace(rl.rl, **{k: v for k, v in arm.rl.items() if k in RL_ARM_SETTINGS})
    return replace(rl, design=keys, rl=settings, training=replace(rl.training, seed=seed))


def _refusal(arm: Arm, seed: int, sft_run: Path) -> str | None:
    calibration = read_calibration(sft_run)
    if calibration is not None and not calibration.passed:
        return f"arm '{arm.name}', seed {seed}: {calibration.refusal(str(sft_run))}"
    return None


def _result(arm: Arm, sft_run: Path, run: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    calibration = read_calibration(sft_run)
    curve = [p.to_dict() for p in read_curve(run)] if arm.rl is not None else []
    extra = {"calibration": None if calibration is None else calibration.to_dict(), "curve": curve}
    return evaluation | {"run": str(run)} | extra


def run_arm(arm: Arm, scale: ExperimentScale, seed: int, cache: str | Path) -> dict[str, Any]:
    """SFT, then RL if the arm has one, then the evaluation, in this process (:func:`run_experiment`
    of the one arm and seed).

    Returns :meth:`DesignEvaluation.to_dict` plus ``run`` (the final run folder), ``calibration``
    (the SFT run's :class:`hlsm.lm.records.Calibration` dict, or None without a gate) and ``curve``
    (the RL run's learning curve, :func:`hlsm.lm.records.read_curve`; empty without RL). Torch runs
    on the SFT config's ``threads`` throughout (restored on return; None: left alone).

    Raises
    ------
    CalibrationError
        When the SFT run has a gate and did not pass it (no RL is run, nothing is evaluated).
    """
    return run_experiment([arm], replace(scale, seeds=(seed,), workers=1), cache)[arm.name][seed]


def _job(kind: str, args: tuple[Any, ...], threads: int | None) -> Any:
    """One stack of a stage (in a worker process or in this one), on ``threads`` torch threads."""
    with torch_threads(threads):
        if kind == "sft":
            configs, cache = args
            return run_sft_many(configs, cache)
        if kind == "rl":
            jobs, cache = args
            return run_rl_many(jobs, cache)
        run, examples, seed, checker, device = args
        return evaluate_run(run, examples, seed, checker=checker, device=device)


def stacks(items: Sequence[Any], key: Any, size: int | None) -> list[list[Any]]:
    """``items`` in groups that share ``key(item)``, at most ``size`` each (None: no limit), in order."""
    if size == 1:  # one model a job: no key to compute (an SFT run's key resolves its whole design)
        return [[item] for item in items]
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    limit = size or max(1, len(items))
    return [group[i : i + limit] for group in groups.values() for i in range(0, len(group), limit)]


def _stage(runner: Runner, kind: str, jobs: Sequence[tuple[Any, ...]], scale: ExperimentScale) -> list[Any]:
    """Run ``jobs`` (distinct stacks of runs, or evaluations) of one stage on the runner.

    With fewer jobs than local workers, each job gets ``workers // jobs`` torch threads (when the
    scale sets a thread count), so that a lone SFT run still uses the machine.
    """
    threads = scale.sft.training.threads
    if threads is not None and jobs and runner.parallel > len(jobs):
        threads *= runner.parallel // len(jobs)
    where = f"{runner.parallel} worker(s)" if runner.parallel else "the Ray cluster"
    print(f"[experiment] {kind}: {len(jobs)} job(s) on {where} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = runner.map(_job, [(kind, args, threads) for args in jobs])
    print(f"[experiment] {kind}: done in {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr, flush=True)
    return out


def _backend(scale: ExperimentScale) -> Backend:
    """The scale's backend; a Ray task asks for one GPU when the runs are on CUDA (``auto``: when this
    machine sees one)."""
    if scale.backend == "local":
        return Backend("local", scale.workers)
    device = scale.sft.training.device
    cuda = device.startswith("cuda") or (device == "auto" and _cuda_available())
    return Backend("ray", 1, scale.address, num_gpus=1.0 if cuda else 0.0)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def run_experiment(
    arms: Sequence[Arm], scale: ExperimentScale, cache: str | Path
) -> dict[str, dict[int, dict[str, Any]]]:
    """Every arm at every seed of ``scale``: ``{arm name: {seed: evaluation dict}}`` (:func:`run_arm`).

    Three stages, each over the distinct runs it needs (arms that share a run share it): every SFT
    run, then every RL run from them, then every evaluation. The runs of a stage that share a shape
    are trained as stacks of up to ``scale.stack`` models (:func:`hlsm.lm.sft.train_sft_many`,
    :func:`hlsm.lm.reinforce.train_rl_many`), one job each; the jobs run on ``scale.workers``
    processes, or as Ray tasks with ``scale.backend = "ray"`` (the cache folder must be on a file
    system every node sees). After the SFT stage the calibration gates are read: a seed whose SFT failed its gate
    stops there, and a :class:`CalibrationError` names every refused seed and arm before any RL
    compute is spent (no results are returned).
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be unique, got {names}")
    cache = Path(cache)
    plans = [
        (arm, seed, arm_sft_config(scale, arm, seed), arm_rl_config(scale, arm, seed))
        for seed in scale.seeds
        for arm in arms
    ]
    sft_configs = list({sft_run_path(c, cache): c for _, _, c, _ in plans}.values())
    sft_jobs = [(group, str(cache)) for group in stacks(sft_configs, stack_key, scale.stack)]
    device = scale.sft.training.device
    with Runner(_backend(scale)) as runner:
        _stage(runner, "sft", sft_jobs, scale)
        sft_runs = [sft_run_path(c, cache) for _, _, c, _ in plans]
        refused = [r for (arm, seed, _, _), run in zip(plans, sft_runs, strict=True) if (r := _refusal(arm, seed, run))]
        if refused:
            raise CalibrationError("\n".join(refused))
        rl_runs = list(
            {rl_run_path(r, s, cache): (r, s) for (_, _, _, r), s in zip(plans, sft_runs, strict=True) if r}.values()
        )
        rl_jobs = [(group, str(cache)) for group in stacks(rl_runs, _rl_key, scale.stack)]
        _stage(runner, "rl", rl_jobs, scale)
        runs = [s if r is None else rl_run_path(r, s, cache) for (_, _, _, r), s in zip(plans, sft_runs, strict=True)]
        evaluations = {
            (run, seed): (run, scale.eval_examples, seed, scale.checker, device)
            for (_, seed, _, _), run in zip(plans, runs, strict=True)
        }
        done = dict(zip(evaluations, _stage(runner, "evaluate", list(evaluations.values()), scale), strict=True))
    out: dict[str, dict[int, dict[str, Any]]] = {a.name: {} for a in arms}
    for (arm, seed, _, _), sft_run, run in zip(plans, sft_runs, runs, strict=True):
        out[arm.name][seed] = _result(arm, sft_run, run, done[(run, seed)])
    for arm in arms:
        print(f"[experiment] {arm_line(arm.name, out[arm.name])}", file=sys.stderr, flush=True)
    return out


def arm_line(name: str, by_seed: Mapping[int, Mapping[str, Any]]) -> str:
    """One line for a finished arm: its seeds and its mean accuracy per split over them."""
    splits: dict[str, list[float]] = {}
    for evaluation in by_seed.values():
        for split, record in evaluation.get("splits", {}).items():
            if record.get("accuracy") is not None:
                splits.setdefault(split, []).append(float(record["accuracy"]))
    means = ", ".join(f"{split} {100 * sum(v) / len(v):.1f}%" for split, v in splits.items())
    return f"arm '{name}' done: {len(by_seed)} seed(s); mean accuracy {means or 'not measured'}"


def run_and_summarise(
    arms: Sequence[Arm],
    scale: ExperimentScale,
    cache: str | Path,
    splits: Mapping[str, tuple[str, Keep | None]],
    contrasts: Sequence[tuple[Any, Any]] = (),
) -> ExperimentSummary:
    """:func:`run_experiment` then :func:`hlsm.lm.summary.summarise`, with the wall time and the scale's settings."""
    t0 = time.perf_counter()
    results = run_experiment(arms, scale, cache)
    out = summarise(results, splits, contrasts)
    settings = {
        "scale": scale.name,
        "seeds": list(scale.seeds),
        "eval_examples": scale.eval_examples,
        "arms": [
            {"name": a.name, "design": dict(a.design), "rl": None if a.rl is None else dict(a.rl)}
            | ({"sft": {k: dict(v) for k, v in a.sft.items()}} if a.sft else {})
            for a in arms
        ],
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

"""The run folder shared by every training stage: its settings, guards, metrics log and optimiser.

A training run's folder (:data:`hlsm.runfolder.TRAINING`) holds ``config.json``, ``metrics.jsonl``
(one JSON object a line, each with a ``step``), ``checkpoint.pt`` (:mod:`hlsm.lm.checkpoint`) and
``summary.json``. These helpers are the
parts that SFT (:mod:`hlsm.lm.sft`) and REINFORCE (:mod:`hlsm.lm.reinforce`) share: the
``[training]`` keys of every run (:class:`RunConfig`), refusing to overwrite a run or to resume a
missing one, starting or resuming a run (:func:`start_or_resume`), the periodic evaluation on
held-out sets (:func:`make_evaluator`), appending to and truncating the metrics log, comparing
configs without the output path, AdamW with decay on matrices only, bf16
autocast on CUDA.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hlsm.errors import HLSMError
from hlsm.io import write_text
from hlsm.lm.checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint, restore_rng_state
from hlsm.lm.data import TaskFormat
from hlsm.lm.dataset import Examples, Source, derive_seed, sample_examples
from hlsm.lm.distributed import DistContext, barrier
from hlsm.lm.evaluate import greedy_exact_match
from hlsm.lm.model import GPT
from hlsm.lm.runconfig import RunConfig
from hlsm.lock import writing_all
from hlsm.runfolder import METRICS_NAME, TRAINING, RunFolder
from hlsm.spec import Spec
from hlsm.traces import Tokenizer
from hlsm.tracking import log_record, resumed


class TrainingError(HLSMError):
    """A run that cannot start or resume as asked (existing output, mismatched checkpoint)."""


def check_out(out: Path, resume: bool) -> None:
    """Refuse to resume a folder without a checkpoint, or to start over a folder that has one
    (:meth:`hlsm.runfolder.RunFolder.check_resume`).

    Raises
    ------
    TrainingError
        Naming the folder and the fix (``--resume`` or another ``--out``).
    """
    RunFolder(out, TRAINING).check_resume(resume, TrainingError)


def lock_runs(paths: Sequence[Path]) -> AbstractContextManager[None]:
    """Hold every run folder's lock (:func:`hlsm.lock.writing`) on the main rank, for a whole run: a
    second process writing one of them is refused at once (the other ranks of a torchrun job write
    the same folders under rank 0's lock)."""
    if os.environ.get("RANK", "0") != "0":
        return nullcontext()
    return writing_all(paths, TRAINING.what)


def stack_runs(
    configs: Sequence[Any], outs: Sequence[str | Path | None] | None, resume: bool | Sequence[bool]
) -> tuple[list[Any], list[Path], list[bool]]:
    """The runs of one stacked call: configs with their output folders, the folders, the resume flags.

    ``configs`` are :class:`hlsm.lm.SFTConfig` or :class:`hlsm.lm.RLConfig` (``training.out``,
    ``with_out``); ``outs`` default to each config's ``training.out``; ``resume`` is one flag for all
    or one per run. Nothing is written.

    Raises
    ------
    TrainingError
        When the numbers differ, two runs share a folder, or the runs differ in device or threads.
    """
    outs = [None] * len(configs) if outs is None else list(outs)
    if len(outs) != len(configs):
        raise TrainingError(f"{len(outs)} output folders for {len(configs)} runs")
    paths = [Path(c.training.out if o is None else o) for c, o in zip(configs, outs, strict=True)]
    if len({p.resolve() for p in paths}) != len(paths):
        raise TrainingError("two runs of one stack write the same output folder; give each its own")
    resumes = [resume] * len(configs) if isinstance(resume, bool) else list(resume)
    if len(resumes) != len(configs):
        raise TrainingError(f"{len(resumes)} resume flags for {len(configs)} runs")
    if len({(c.training.device, c.training.threads) for c in configs}) != 1:
        raise TrainingError("the runs of one call must share [training] device and threads; call once per setting")
    return [c.with_out(p) for c, p in zip(configs, paths, strict=True)], paths, resumes


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line of a run's metrics log (and mirror it to TensorBoard while
    :func:`hlsm.tracking.tensorboard` is open)."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    log_record(path.parent, record)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint being resumed (they will be logged again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in keep))


ADDED_AT_DEFAULT: dict[tuple[str, str], Any] = {
    ("design", "held_out_atomic"): False,
    ("design", "held_out_pairs"): [],
    ("design", "held_out_programs"): [],
    ("rl", "reward"): "exact",
    ("rl", "late_excluded"): [],
}
"""Run settings added after runs were first saved: a record that leaves one out, and one that holds it
at this default, are the same run (a cache folder keeps its name, a checkpoint resumes). Add each
new setting of ``[design]``, ``[rl]``, ... here with its default."""


def without_added_defaults(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON copy of a config record without the :data:`ADDED_AT_DEFAULT` settings at their defaults."""
    record = json.loads(json.dumps(record))
    for (section, name), default in ADDED_AT_DEFAULT.items():
        if isinstance(record.get(section), dict) and record[section].get(name, default) == default:
            record[section].pop(name, None)
    return record


def comparable(record: dict[str, Any], ignore: Sequence[tuple[str, str]] = (("training", "out"),)) -> dict[str, Any]:
    """A JSON copy of a config record without the ``(section, key)`` entries in ``ignore`` and the
    later settings at their defaults (:func:`without_added_defaults`).

    By default the output path is dropped: a run may be resumed from a moved folder.
    """
    record = without_added_defaults(record)
    for section, key in ignore:
        if isinstance(record.get(section), dict):
            record[section].pop(key, None)
    return record


def start_or_resume(
    out: Path,
    ctx: DistContext,
    resume: bool,
    record: dict[str, Any],
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    *,
    config_json: dict[str, Any] | None = None,
    ignore: Sequence[tuple[str, str]] = (("training", "out"),),
    differs: str = "config",
) -> Checkpoint | None:
    """Start a fresh run folder, or restore the run in ``out`` into ``model``, ``optimizer``, ``scheduler``.

    Fresh (rank 0): create ``out``, drop a stale metrics log, write ``config.json`` (``config_json``,
    default ``record``). Resume: load ``out/checkpoint.pt``; its config record must equal
    ``record`` up to the ``ignore`` entries (:func:`comparable`) and it must have been written by
    as many ranks as this run has; then the states and this rank's RNG state are restored and
    rank 0 drops the metrics logged after the checkpoint. Every rank waits for the others before
    returning.

    Parameters
    ----------
    record
        The run's JSON-ready config record, as saved in its checkpoints.
    model, optimizer, scheduler
        Restored from the checkpoint; None: the caller restores them from the returned checkpoint
        (a member of a stack, :mod:`hlsm.lm.engine`).
    differs
        What a mismatched record is called in the error (``"config"``, ``"config or --init"``).

    Returns
    -------
    Checkpoint or None
        The checkpoint resumed from (its ``step`` and ``extra`` hold the trainer's loop state), or
        None for a fresh start.

    Raises
    ------
    TrainingError
        When the checkpoint's config or number of ranks differs from this run's.
    """
    metrics_path = out / METRICS_NAME
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT_NAME)
        if comparable(ckpt.config, ignore) != comparable(record, ignore):
            raise TrainingError(
                f"the checkpoint in '{out}' was written with a different {differs}; resume with the same"
            )
        if len(ckpt.rng) != ctx.world_size:
            raise TrainingError(f"the checkpoint was written by {len(ckpt.rng)} rank(s); resume with as many")
        if model is not None:
            model.load_state_dict(ckpt.model)
        if optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(ckpt.scheduler)
        restore_rng_state(ckpt.rng[ctx.rank])
        if ctx.is_main:
            truncate_metrics(metrics_path, ckpt.step)
            resumed(out, ckpt.step)
    elif ctx.is_main:
        RunFolder(out, TRAINING).start(record if config_json is None else config_json)
    barrier(ctx)
    return ckpt


def make_evaluator(
    ctx: DistContext,
    model: GPT | None,
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    sources: Sequence[Source],
    cfg: RunConfig,
    metrics_path: Path,
    *,
    kind: str = "eval",
    examples: int | None = None,
) -> Callable[..., dict[str, dict[str, Any]]]:
    """The run's evaluation: ``evaluate(step, **fields)`` scores ``model`` on fixed held-out sets and logs it.

    ``evaluate(step, model=other, **fields)`` scores ``other`` instead (a member taken out of a
    stack, :meth:`hlsm.lm.stacked.StackedGPT.member`); ``model`` may then be None.

    Rank 0 draws ``examples`` (default ``cfg.eval_examples``) examples from each source once, from
    ``(cfg.seed, kind, name)``, so every evaluation of a run (resumed or not) sees the same
    examples. Each call (on every rank) has rank 0 score greedy exact match
    (:func:`hlsm.lm.evaluate.greedy_exact_match`) per set and append ``{"kind": kind, "step",
    **fields, "splits": {name: accuracy dict}}`` to the metrics log; every rank waits for it and
    gets the splits (empty off rank 0).
    """
    sets: dict[str, Examples] = {}
    if ctx.is_main:
        for s in sources:
            seed = derive_seed(cfg.seed, kind, s.name)
            sets[s.name] = sample_examples(spec, fmt, tokenizer, [s], examples or cfg.eval_examples, seed)

    def evaluate(step: int, model: GPT | None = model, **fields: Any) -> dict[str, dict[str, Any]]:
        results = {}
        if ctx.is_main:
            if model is None:
                raise ValueError("make_evaluator was given no model: pass evaluate(step, model=...)")
            for name, examples in sets.items():
                autocast = autocast_for(ctx.device, cfg.bf16)
                acc = greedy_exact_match(
                    model, spec, fmt, tokenizer, examples, name=name, batch_size=cfg.eval_batch_size, autocast=autocast
                )
                results[name] = acc.to_dict()
            append_jsonl(metrics_path, {"kind": kind, "step": step, **fields, "splits": results})
        barrier(ctx)
        return results

    return evaluate


def make_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: Sequence[float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of two or more dimensions only (fused on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]), fused=device.type == "cuda")


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a CUDA device that supports it (and ``bf16`` asked for); else a no-op."""
    if device.type == "cuda" and bf16 and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

"""Supervised fine-tuning (here: training from scratch) on golden traces, resumable and DDP-ready.

Objective: next-token cross-entropy on the trace tokens of each example (the prompt is masked;
EOS is included), averaged over the trace tokens of the global batch:
``loss = sum_{b,t} m_{b,t} CE(logits_{b,t-1}, y_{b,t}) / sum_{b,t} m_{b,t}``. Each torchrun rank
computes its slice's share (scaled by the number of ranks, since DDP averages gradients), so the
gradient equals the single-process gradient of the same global batch.

Optimiser: AdamW (decay on weight matrices and the embedding, none on LayerNorm), linear warm-up
then cosine decay, gradient-norm clipping. Step ``t``'s batch is drawn from (seed, t) alone, so a
run resumed from a checkpoint continues exactly as the uninterrupted run (same final parameters).

Files in the output folder (rank 0 only): ``config.json``; ``metrics.jsonl``, one JSON object a
line — ``{"kind": "train", "step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}`` every
``log_every`` steps and ``{"kind": "eval", "step", "splits": {name: {"n", "accuracy", "se",
"malformed"}}}`` every ``eval_every`` steps and at the end; ``{"kind": "gate", "step", "splits"}``
at every gate check; ``checkpoint.pt`` (latest, see
:mod:`hlsm.lm.checkpoint`); ``summary.json`` at the end (with the ``calibration`` record,
:class:`hlsm.lm.records.Calibration`, when the config has a gate).

Calibration gate (``[gate]``): every ``gate.every`` steps and at the last, greedy accuracy on the seen
depth-L compositions and on the atomic programs; the run stops at the first check where both meet
their thresholds (``training.steps`` is then a cap), and the RL stage refuses a checkpoint that
never met them (:func:`hlsm.lm.records.read_calibration`).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from hlsm.design import SupportDesign, make_design
from hlsm.io import write_json
from hlsm.lm.checkpoint import CHECKPOINT_NAME, capture_rng_state, restore_rng_state, save_checkpoint
from hlsm.lm.data import make_tokenizer
from hlsm.lm.dataset import Source, SourceConfig, derive_seed, max_sequence_length, resolve_source, sample_examples
from hlsm.lm.distributed import DistContext, barrier, gather_objects, init_distributed, shutdown, wrap_model
from hlsm.lm.engine import StackedAdamW, sft_step
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.records import Calibration
from hlsm.lm.rundir import (
    METRICS_NAME,
    TrainingError,
    append_jsonl,
    autocast_for,
    check_out,
    lock_runs,
    make_evaluator,
    stack_runs,
    start_or_resume,
)
from hlsm.lm.sft_config import GateConfig, SFTConfig, TrainingConfig
from hlsm.lm.stacked import StackedGPT, gpt_from_state
from hlsm.runtime import progress_bar, torch_threads
from hlsm.traces import Tokenizer


@dataclass
class SFTResult:
    """What :func:`train_sft` returns: the trained model (unwrapped) and the last evaluation."""

    model: GPT
    step: int
    out: Path
    evaluation: dict[str, dict[str, Any]]
    rank: int = 0
    calibration: Calibration | None = None


def lm_loss(model: nn.Module, ids: Tensor, loss_mask: Tensor, denominator: float | Tensor | None = None) -> Tensor:
    """Masked next-token cross-entropy.

    Parameters
    ----------
    ids, loss_mask
        ``(B, T)`` token ids and bool mask (True on the tokens to predict).
    denominator
        Divide the summed loss by this (default: the number of masked targets).

    Returns
    -------
    Tensor
        Scalar ``sum_{b, t >= 1} m_{b,t} CE(logits_{b,t-1}, ids_{b,t}) / denominator``.
    """
    logits = model(ids[:, :-1])
    targets, mask = ids[:, 1:], loss_mask[:, 1:]
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    total = (ce * mask.reshape(-1)).sum()
    return total / (mask.sum() if denominator is None else denominator)


def lr_factor(step: int, cfg: TrainingConfig) -> float:
    """Multiplier of the peak LR after ``step`` completed steps: linear warm-up, then cosine."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def gate_sources(design: SupportDesign) -> list[Source]:
    """The calibration gate's sets: ``seen`` (the ``sft`` split at the training depth) and ``atomic``."""
    depth = design.config.train_depth if design.config is not None else max(p.depth for p in design.programs("sft"))
    seen = SourceConfig("seen", programs="split", split="sft", depth=depth)
    return [resolve_source(design, seen), resolve_source(design, SourceConfig("atomic", programs="atomic"))]


def _resolve(config: SFTConfig) -> tuple[list[Source], list[Source], list[Source], int, GPTConfig]:
    """The run's training, evaluation and gate sources (none without a gate), batch width and model sizes."""
    spec = config.spec
    design = make_design(spec, config.design)
    sources = [resolve_source(design, s) for s in config.data]
    eval_sources = [resolve_source(design, s) for s in config.eval_sets]
    gate_sets = gate_sources(design) if config.gate is not None else []
    for s in [*sources, *eval_sources, *gate_sets]:
        for p in s.programs:
            config.format.check(p)
    width = max_sequence_length(spec, config.format, sources)
    needed = max(width, max_sequence_length(spec, config.format, [*eval_sources, *gate_sets]))
    max_len = config.model.max_len or needed
    if max_len < needed:
        raise TrainingError(f"[model] max_len={max_len} is shorter than the longest sequence ({needed} tokens)")
    return sources, eval_sources, gate_sets, width, config.model.gpt(len(make_tokenizer(spec)), max_len)


def sft_gpt_config(config: SFTConfig) -> GPTConfig:
    """The :class:`GPTConfig` an SFT run with ``config`` builds (vocabulary and ``max_len`` from the data)."""
    return _resolve(config)[4]


def train_sft(
    config: SFTConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> SFTResult:
    """Run (or resume) SFT as configured; see the module docstring.

    A run alone is a stack of one model (:func:`train_sft_many`).

    Parameters
    ----------
    out
        Output folder (default ``config.training.out``).
    resume
        Continue from ``out/checkpoint.pt``; the config must equal the checkpoint's.
    progress
        Show a tqdm bar (rank 0).
    stop_at
        Stop after this many completed steps, writing a checkpoint there, as if the run were killed
        just after a save (the schedule still spans ``training.steps``).

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank calls this; see :mod:`hlsm.lm.distributed`.
    """
    return train_sft_many([config], [out], resume=resume, progress=progress, stop_at=stop_at)[0]


STACK_KEYS = ("device", "bf16", "threads", "batch_size", "betas")
"""The ``[training]`` keys that every model of one stack must share (with the model's sizes)."""


def stack_key(config: SFTConfig) -> str:
    """What runs must share to be trained as one stack: model sizes, batch width and :data:`STACK_KEYS`.

    Seeds, designs, data mixtures, learning rates and schedules, step caps, clipping, weight
    decay, gates and evaluation sets may differ between the members. The batch width (the longest
    training sequence) is part of the key, so that no member's batch is padded beyond its own (a
    longer reduction in the weight gradients would round differently from the run alone). A run
    with dropout gets a stack of its own: its masks come from the process's random stream, which
    members would share.
    """
    _, _, _, width, gpt = _resolve(config)
    return _stack_key(config.training, gpt, width)


def _stack_key(training: TrainingConfig, gpt: GPTConfig, width: int) -> str:
    """:func:`stack_key` of a run already resolved (its model sizes and batch width)."""
    record: dict[str, Any] = {"gpt": gpt.to_dict(), "width": width}
    record |= {k: getattr(training, k) for k in STACK_KEYS} | {"betas": list(training.betas)}
    if gpt.dropout > 0:
        record["alone"] = training.out
    return json.dumps(record, sort_keys=True)


def train_sft_many(
    configs: Sequence[SFTConfig],
    outs: Sequence[str | Path | None] | None = None,
    *,
    resume: bool | Sequence[bool] = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> list[SFTResult]:
    """Train ``K`` SFT runs as one stacked computation (:mod:`hlsm.lm.engine`); one result per run.

    Each run keeps its own folder, data stream (batches from its ``(seed, step)``), initial weights
    (from its seed), optimiser state, clipping, learning-rate schedule, gate and evaluations, and
    its files are those of the run alone (:func:`train_sft`): a member that passes its gate is
    saved and leaves the stack at that step while the others go on; a member whose step cap is
    reached leaves likewise. Runs that differ in :func:`stack_key` (model sizes, batch size...),
    or were resumed from checkpoints at different steps, are trained as separate stacks, one
    after the other.

    Parameters
    ----------
    configs
        The runs (one ``[training] device`` and ``threads`` for all).
    outs
        Their output folders (default: each config's ``training.out``); distinct.
    resume
        For all runs, or one flag per run.

    Raises
    ------
    TrainingError
        When two runs share an output folder or differ in device or threads.
    """
    if not configs:
        return []
    configs, paths, resumes = stack_runs(configs, outs, resume)
    with lock_runs(paths):
        for p, r in zip(paths, resumes, strict=True):
            check_out(p, r)
        cfg = configs[0].training
        ctx = init_distributed(cfg.device)
        try:
            with torch_threads(cfg.threads):
                return _train(configs, paths, resumes, ctx, progress, stop_at)
        finally:
            shutdown(ctx)


@dataclass
class _Run:
    """One member's configuration, files and loop state."""

    config: SFTConfig
    out: Path
    sources: list[Source]
    width: int
    record: dict[str, Any]
    evaluate: Any
    check_gate: Any
    tokenizer: Tokenizer
    state: dict[str, Tensor]
    optimizer: dict[str, Any] | None
    start: int
    window: list[float]
    gpt: GPTConfig  # the model's sizes (resolved once)
    key: str  # its stack key
    end: int = 0
    tokens: int = 0
    clock: float = 0.0
    t0: float = 0.0
    last_eval: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: Calibration | None = None
    stopped: bool = False
    model: GPT | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    alone: bool = False  # trained in a stack of one: the process's random stream is this run's


def _member(config: SFTConfig, out: Path, resume: bool, ctx: DistContext, stop_at: int | None) -> _Run:
    """Resolve one run, build its initial model (from its seed) and start or resume its folder."""
    cfg = config.training
    if cfg.batch_size % ctx.world_size:
        raise TrainingError(f"batch_size={cfg.batch_size} must be divisible by the {ctx.world_size} ranks")
    spec = config.spec
    sources, eval_sources, gate_sets, width, gpt = _resolve(config)
    tokenizer = make_tokenizer(spec)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = GPT(gpt).to(ctx.device)
    record = json.loads(json.dumps(config.to_dict()))
    metrics_path = out / METRICS_NAME
    ckpt = start_or_resume(
        out, ctx, resume, record, None, None, None, config_json={**record, "num_params": model.num_params()}
    )
    start, window, optimizer = 0, [0.0, 0.0], None
    if ckpt is not None:
        model.load_state_dict(ckpt.model)
        start, window, optimizer = ckpt.step, ckpt.extra["loss_window"][ctx.rank], ckpt.optimizer
    evaluate = make_evaluator(ctx, None, spec, config.format, tokenizer, eval_sources, cfg, metrics_path)
    check_gate = None
    if config.gate is not None:
        check_gate = make_evaluator(
            ctx, None, spec, config.format, tokenizer, gate_sets, cfg, metrics_path, kind="gate",
            examples=config.gate.examples,
        )  # fmt: skip
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    state = model.state_dict()
    key = _stack_key(cfg, gpt, width)
    run = _Run(
        config, out, sources, width, record, evaluate, check_gate, tokenizer, state, optimizer, start, window, gpt,
        key, end,
    )  # fmt: skip
    run.rng = capture_rng_state()  # this run's random state after its init (or restore), as it would be alone
    return run


def _train(
    configs: list[SFTConfig],
    outs: list[Path],
    resumes: list[bool],
    ctx: DistContext,
    progress: bool,
    stop_at: int | None,
) -> list[SFTResult]:
    runs = [_member(c, o, r, ctx, stop_at) for c, o, r in zip(configs, outs, resumes, strict=True)]
    bar = progress_bar(
        total=sum(r.config.training.steps for r in runs),
        initial=sum(r.start for r in runs),
        desc="sft" if len(runs) == 1 else f"sft x{len(runs)}",
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
    )
    for key in dict.fromkeys((r.key, r.start) for r in runs):  # one stack per shape and step
        _train_stack([r for r in runs if (r.key, r.start) == key and r.start < r.end], ctx, bar)
    bar.close()
    results = []
    for r in runs:
        model = r.model if r.model is not None else gpt_from_state(r.gpt, r.state).to(ctx.device)
        results.append(SFTResult(model, max(r.end, r.start), r.out, r.last_eval, ctx.rank, r.calibration))
    return results


def _train_stack(runs: list[_Run], ctx: DistContext, bar: Any) -> None:
    """Train ``runs`` (all at one start step) as one stack until each has reached its end."""
    if not runs:
        return
    if len(runs) == 1:  # alone: the process's random stream is this run's (dropout draws from it)
        restore_rng_state(runs[0].rng)
        runs[0].alone = True
    first, gpt = runs[0].config, runs[0].gpt
    stack = StackedGPT.from_states(gpt, [r.state for r in runs]).to(ctx.device)
    optimizer = StackedAdamW(stack, [r.config.training.weight_decay for r in runs], first.training.betas)
    if runs[0].optimizer is not None:
        optimizer.load_member_states([r.optimizer for r in runs if r.optimizer is not None])
    net = wrap_model(stack, ctx)
    autocast = autocast_for(ctx.device, first.training.bf16)
    width = max(r.width for r in runs)
    rows = slice(ctx.rank, None, ctx.world_size)
    step, t0 = runs[0].start, time.perf_counter()
    windows = [torch.tensor(r.window, dtype=torch.float64, device=ctx.device) for r in runs]
    for r in runs:
        r.clock = r.t0 = t0
    stack.train()
    while runs:
        ids, masks, shares = [], [], []
        for r in runs:
            c = r.config
            seed = derive_seed(c.training.seed, "train", step)
            batch = sample_examples(c.spec, c.format, r.tokenizer, r.sources, c.training.batch_size, seed, width=width)
            ids.append(batch.ids[rows])
            masks.append(batch.loss_mask[rows])
            shares.append(float(batch.loss_mask[:, 1:].sum()) / ctx.world_size)  # this rank's share
            r.tokens += batch.ids.shape[0] * (batch.ids.shape[1] - 1)
        lrs = [r.config.training.lr * lr_factor(step, r.config.training) for r in runs]
        clips = [r.config.training.grad_clip for r in runs]
        losses, norms = sft_step(
            net,
            stack,
            optimizer,
            torch.stack(ids).to(ctx.device),
            torch.stack(masks).to(ctx.device),
            torch.tensor(shares, dtype=torch.float64, device=ctx.device),
            lrs,
            clips,
            autocast,
        )
        done = step + 1
        bar.update(len(runs))
        paused = time.perf_counter()
        leaving = []
        for k, (r, window) in enumerate(zip(runs, windows, strict=True)):
            window[0] += losses[k].double() * shares[k]
            window[1] += shares[k]
            if _after_step(r, k, done, window, float(norms[k]), lrs[k], stack, optimizer, ctx, paused, bar):
                leaving.append(k)
        if leaving:
            keep = [k for k in range(len(runs)) if k not in leaving]
            for k in leaving:
                runs[k].state = stack.member_state(k)
            runs, windows = [runs[k] for k in keep], [windows[k] for k in keep]
            if runs:
                smaller = stack.select(keep)
                optimizer, stack = optimizer.select(smaller, keep), smaller
                net = wrap_model(stack, ctx)
                stack.train()
        step = done
        spent = time.perf_counter() - paused  # throughput excludes evaluation and checkpoints
        for r in runs:
            r.clock += spent


def _after_step(
    r: _Run,
    k: int,
    done: int,
    window: Tensor,
    grad_norm: float,
    lr: float,
    stack: StackedGPT,
    optimizer: StackedAdamW,
    ctx: DistContext,
    now: float,
    bar: Any,
) -> bool:
    """Member ``k``'s log, gate, evaluation and checkpoint after step ``done``; True when it leaves the stack."""
    c = r.config
    cfg, gate = c.training, c.gate
    if done % cfg.log_every == 0 or done == cfg.steps:
        if ctx.distributed:
            dist.all_reduce(window)
        mean = float(window[0] / window[1])
        if ctx.is_main:
            entry = {"kind": "train", "step": done, "loss": round(mean, 6), "lr": lr}
            entry |= {"grad_norm": round(grad_norm, 6), "tokens_per_s": round(r.tokens / (now - r.clock))}
            append_jsonl(r.out / METRICS_NAME, entry | {"elapsed_s": round(now - r.t0, 3)})
        bar.set_postfix(loss=f"{mean:.4f}")
        window.zero_()
        r.tokens, r.clock = 0, now
    member: GPT | None = None
    if gate is not None and r.check_gate is not None and (done == cfg.steps or (gate.every and done % gate.every == 0)):
        member = stack.member(k).eval()
        r.calibration = _check(r.check_gate, gate, done, cfg.steps, ctx, member)
        r.stopped = r.calibration.passed  # calibrated: stop here
    if done == cfg.steps or r.stopped or (cfg.eval_every and done % cfg.eval_every == 0):
        member = member or stack.member(k).eval()
        r.last_eval = r.evaluate(done, model=member)
        if ctx.is_main:
            bar.set_postfix(acc=" ".join(f"{n}={v['accuracy']:.2f}" for n, v in r.last_eval.items()))
    leaves = done == r.end or r.stopped
    if done % cfg.checkpoint_every == 0 or leaves:
        # alone, the process's random state; in a stack (no dropout, so training draws nothing from it) the
        # member's own state after its init, which is what its run alone would hold here
        rng = capture_rng_state() if r.alone else r.rng
        states = gather_objects(ctx, (rng, window.tolist()))
        if ctx.is_main:
            save_checkpoint(
                r.out / CHECKPOINT_NAME,
                model=stack.member_state(k),
                optimizer=optimizer.member_state(k, lr),
                scheduler={"last_epoch": done},
                step=done,
                rng=[s[0] for s in states],
                config=r.record,
                extra={"loss_window": [s[1] for s in states]},
            )
        barrier(ctx)
    if leaves:
        r.end = done
        if ctx.is_main and (done == cfg.steps or r.stopped):
            summary = {"step": done, "num_params": stack.num_params(), "evaluation": r.last_eval}
            if r.calibration is not None:
                summary["calibration"] = r.calibration.to_dict()
            write_json(r.out / "summary.json", summary)
        r.model = member.train() if member is not None else None
    return leaves


def _check(check_gate: Any, gate: GateConfig, step: int, cap: int, ctx: DistContext, model: GPT) -> Calibration:
    """One gate check of ``model`` (every rank calls it; rank 0 scores, the verdict is shared)."""
    splits = check_gate(step, model=model)
    scores = [splits[name]["accuracy"] if name in splits else math.nan for name in ("seen", "atomic")]
    if ctx.distributed:
        dist.broadcast_object_list(scores, src=0)  # off rank 0 the splits are empty (nan: never passes)
    seen, atomic = scores
    passed = seen >= gate.seen and atomic >= gate.atomic
    return Calibration(passed, step, cap, seen, atomic, gate.seen, gate.atomic, gate.examples)

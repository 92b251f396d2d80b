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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from hlsm.design import SupportDesign, make_design
from hlsm.io import write_json
from hlsm.lm.checkpoint import CHECKPOINT_NAME, capture_rng_state, save_checkpoint
from hlsm.lm.data import make_tokenizer
from hlsm.lm.dataset import Source, SourceConfig, derive_seed, max_sequence_length, resolve_source, sample_examples
from hlsm.lm.distributed import DistContext, barrier, gather_objects, init_distributed, shutdown, wrap_model
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.records import Calibration
from hlsm.lm.rundir import (
    METRICS_NAME,
    TrainingError,
    append_jsonl,
    autocast_for,
    check_out,
    make_adamw,
    make_evaluator,
    start_or_resume,
)
from hlsm.lm.sft_config import GateConfig, SFTConfig, TrainingConfig
from hlsm.runtime import torch_threads


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


def make_optimizer(model: nn.Module, cfg: TrainingConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of two or more dimensions only."""
    return make_adamw(model, cfg.lr, cfg.weight_decay, cfg.betas, device)


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
    cfg = config.training
    out = Path(cfg.out if out is None else out)
    config = config.with_out(out)
    check_out(out, resume)
    ctx = init_distributed(cfg.device)
    try:
        with torch_threads(cfg.threads):
            return _train(config, out, ctx, resume, progress, stop_at)
    finally:
        shutdown(ctx)


def _train(
    config: SFTConfig, out: Path, ctx: DistContext, resume: bool, progress: bool, stop_at: int | None
) -> SFTResult:
    cfg = config.training
    if cfg.batch_size % ctx.world_size:
        raise TrainingError(f"batch_size={cfg.batch_size} must be divisible by the {ctx.world_size} ranks")
    spec = config.spec
    sources, eval_sources, gate_sets, width, gpt = _resolve(config)
    gate = config.gate
    tokenizer = make_tokenizer(spec)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = GPT(gpt).to(ctx.device)
    optimizer = make_optimizer(model, cfg, ctx.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    record = json.loads(json.dumps(config.to_dict()))
    metrics_path, ckpt_path = out / METRICS_NAME, out / CHECKPOINT_NAME
    ckpt = start_or_resume(
        out, ctx, resume, record, model, optimizer, scheduler, config_json={**record, "num_params": model.num_params()}
    )
    start, resumed_window = 0, [0.0, 0.0]
    if ckpt is not None:
        start, resumed_window = ckpt.step, ckpt.extra["loss_window"][ctx.rank]
    net = wrap_model(model, ctx)
    autocast = autocast_for(ctx.device, cfg.bf16)
    evaluate = make_evaluator(ctx, model, spec, config.format, tokenizer, eval_sources, cfg, metrics_path)
    check_gate = None
    if gate is not None:
        check_gate = make_evaluator(
            ctx,
            model,
            spec,
            config.format,
            tokenizer,
            gate_sets,
            cfg,
            metrics_path,
            kind="gate",
            examples=gate.examples,
        )
    calibration: Calibration | None = None
    stopped = False

    last_eval: dict[str, dict[str, Any]] = {}
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    bar = tqdm(total=cfg.steps, initial=start, desc="sft", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    # summed loss and target tokens since the last log (checkpointed: a resumed run logs the same values)
    window = torch.tensor(resumed_window, dtype=torch.float64, device=ctx.device)
    tokens, clock, t0 = 0, time.perf_counter(), time.perf_counter()
    model.train()
    for step in range(start, end):
        seed = derive_seed(cfg.seed, "train", step)
        batch = sample_examples(spec, config.format, tokenizer, sources, cfg.batch_size, seed, width=width)
        rows = slice(ctx.rank, None, ctx.world_size)
        ids, mask = batch.ids[rows].to(ctx.device), batch.loss_mask[rows].to(ctx.device)
        share = float(batch.loss_mask[:, 1:].sum()) / ctx.world_size  # this rank's share of the denominator
        with autocast:
            loss = lm_loss(net, ids, mask, share)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        done = step + 1
        window[0] += loss.detach().double() * share
        window[1] += share
        tokens += batch.ids.shape[0] * (batch.ids.shape[1] - 1)
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            if ctx.distributed:
                dist.all_reduce(window)
            now = time.perf_counter()
            mean = float(window[0] / window[1])
            if ctx.is_main:
                entry = {"kind": "train", "step": done, "loss": round(mean, 6), "lr": cfg.lr * lr_factor(step, cfg)}
                entry |= {"grad_norm": round(float(grad_norm), 6), "tokens_per_s": round(tokens / (now - clock))}
                append_jsonl(metrics_path, entry | {"elapsed_s": round(now - t0, 3)})
            bar.set_postfix(loss=f"{mean:.4f}")
            window.zero_()
            tokens, clock = 0, now
        paused = time.perf_counter()
        if (
            gate is not None
            and check_gate is not None
            and (done == cfg.steps or (gate.every and done % gate.every == 0))
        ):
            calibration = _check(check_gate, gate, done, cfg.steps, ctx)
            stopped = calibration.passed  # calibrated: stop here
        if done == cfg.steps or stopped or (cfg.eval_every and done % cfg.eval_every == 0):
            last_eval = evaluate(done)
            if ctx.is_main:
                bar.set_postfix(acc=" ".join(f"{k}={v['accuracy']:.2f}" for k, v in last_eval.items()))
        if done % cfg.checkpoint_every == 0 or done == end or stopped:
            states = gather_objects(ctx, (capture_rng_state(), window.tolist()))
            if ctx.is_main:
                save_checkpoint(
                    ckpt_path,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    step=done,
                    rng=[s[0] for s in states],
                    config=record,
                    extra={"loss_window": [s[1] for s in states]},
                )
            barrier(ctx)
        clock += time.perf_counter() - paused  # throughput excludes evaluation and checkpoints
        if stopped:
            end = done
            break
    bar.close()
    if ctx.is_main and (end == cfg.steps or stopped):
        summary = {"step": end, "num_params": model.num_params(), "evaluation": last_eval}
        if calibration is not None:
            summary["calibration"] = calibration.to_dict()
        write_json(out / "summary.json", summary)
    return SFTResult(model, max(end, start), out, last_eval, ctx.rank, calibration)


def _check(check_gate: Any, gate: GateConfig, step: int, cap: int, ctx: DistContext) -> Calibration:
    """One gate check (every rank calls it; rank 0 scores, the verdict is shared)."""
    splits = check_gate(step)
    scores = [splits[name]["accuracy"] if name in splits else math.nan for name in ("seen", "atomic")]
    if ctx.distributed:
        dist.broadcast_object_list(scores, src=0)  # off rank 0 the splits are empty (nan: never passes)
    seen, atomic = scores
    passed = seen >= gate.seen and atomic >= gate.atomic
    return Calibration(passed, step, cap, seen, atomic, gate.seen, gate.atomic, gate.examples)

"""REINFORCE from an SFT checkpoint: the DESIGN section 6 recipe, resumable and torchrun-ready.

One *update*: sampling rounds of ``prompts_per_round`` prompts x ``group_size`` traces
(:mod:`hlsm.lm.rollout`) until at least ``min_mixed_groups`` groups have mixed rewards (groups with
all-equal rewards are dropped), then one AdamW step on :func:`hlsm.lm.pg.reinforce_loss` with
leave-one-out advantages and the k3 KL penalty to the frozen SFT policy, normalised by the number
of traces in the update; gradient-norm clip. The run ends when the next round would exceed
``budget_traces`` sampled traces (every round counts, dropped groups included), after a last
update on whatever mixed groups it holds. The policy runs in eval mode throughout (no dropout):
the traces are sampled from, and the gradient taken of, one and the same distribution.

Prompts come from the RL split of the design (``[design] rl_kind / rl_inside`` choose the arm;
:mod:`hlsm.lm.rl_config`), optionally after a compound curriculum. Evaluation sets named after
the ``rl`` split use the RL arm's programs; every other set, and everything
:func:`hlsm.lm.evaluate.evaluate_design` reports, uses the SFT checkpoint's design.

Exact resume: round ``r`` of update ``u`` draws its prompts from ``(seed, u, r)`` and its samples
from ``(seed, u, r, rank)``; checkpoints hold the model, optimiser, the update count and the traces
used, so a killed run continues to the same final parameters. Under torchrun each rank samples
rows ``rank::world_size`` of every round's prompts and the gradients are summed across ranks.

Files in the output folder (rank 0): ``config.json``; ``metrics.jsonl`` with ``{"kind": "train",
"step", "traces", "rounds", "reward", "adv_std", "entropy", "kl", "kl_per_token", "malformed",
"mixed_fraction", "groups", "loss", "grad_norm", "lr", "traces_per_s", "elapsed_s"}`` every
``log_every`` updates (means over the updates since the last record; ``step`` counts updates) and
``{"kind": "eval", "step", "traces", "splits"}`` (with ``"curve": [fractions]`` at the learning-curve
points of ``[rl] curve``); ``checkpoint.pt``; ``summary.json`` at the end.

A checkpoint whose SFT run failed its calibration gate (:class:`hlsm.lm.records.Calibration`) is
refused unless ``[rl] allow_uncalibrated = true``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from hlsm.io import write_json
from hlsm.lm.checkpoint import CHECKPOINT_NAME, capture_rng_state, save_checkpoint
from hlsm.lm.dataset import derive_seed, resolve_source, sample_examples
from hlsm.lm.distributed import (
    DistContext,
    all_reduce_grads,
    all_reduce_sum,
    barrier,
    gather_objects,
    init_distributed,
    shutdown,
)
from hlsm.lm.model import GPT
from hlsm.lm.pg import loo_advantages, reinforce_loss
from hlsm.lm.policy import Policy, load_policy, widen_policy
from hlsm.lm.records import curve_checkpoint, read_calibration
from hlsm.lm.rl_config import RLConfig, RLSettings, Task, resolve_task
from hlsm.lm.rollout import GroupBuffer, rl_sources, round_sources, sample_groups
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
from hlsm.runtime import torch_threads

# per-update sums logged as means; order of the stats vector
_STATS = (
    *("traces", "rounds", "reward", "malformed", "groups", "mixed", "adv_sum", "adv_sq", "adv_n"),
    *("entropy", "tokens", "kl", "pg", "grad_norm", "updates"),
)


@dataclass
class RLResult:
    """What :func:`train_rl` returns: the trained model (on its device), counts, the last evaluation."""

    model: GPT
    updates: int
    traces: int
    out: Path
    evaluation: dict[str, dict[str, Any]]
    rank: int = 0


def train_rl(
    config: RLConfig,
    init: str | Path,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> RLResult:
    """Run (or resume) REINFORCE from the checkpoint ``init``; see the module docstring.

    Parameters
    ----------
    init
        The SFT checkpoint (``checkpoint.pt`` or its run folder): the initial and reference policy.
    out
        Output folder (default ``config.training.out``).
    resume
        Continue from ``out/checkpoint.pt``; config and ``init`` must be those of the run.
    stop_at
        Stop after this many updates, writing a checkpoint there, as if killed just after a save.
    """
    out = Path(config.training.out if out is None else out)
    config = config.with_out(out)
    check_out(out, resume)
    calibration = read_calibration(Path(init).parent if Path(init).is_file() else init)
    if calibration is not None and not calibration.passed and not config.rl.allow_uncalibrated:
        raise TrainingError(calibration.refusal(str(init)))
    policy = load_policy(init, what="--init checkpoint")
    task = resolve_task(config, policy.sft_record)
    ctx = init_distributed(config.training.device)
    try:
        with torch_threads(config.training.threads):
            return _train(config, policy, task, Path(init), out, ctx, resume, progress, stop_at)
    finally:
        shutdown(ctx)


def _record(config: RLConfig, task: Task, policy: Policy, init: Path) -> dict[str, Any]:
    record = {
        **config.to_dict(),
        "spec": task.spec.to_dict(),
        "design": task.design.to_dict(),
        "rl_design": task.rl_design.to_dict(),
        "format": task.format.to_dict(),
        "gpt": policy.model.config.to_dict(),
        "init": {"path": str(init), "kind": policy.kind, "step": policy.step},
        "sft": policy.sft_record,
    }
    return json.loads(json.dumps(record))


def _train(
    config: RLConfig,
    policy: Policy,
    task: Task,
    init: Path,
    out: Path,
    ctx: DistContext,
    resume: bool,
    progress: bool,
    stop_at: int | None,
) -> RLResult:
    cfg, rl = config.training, config.rl
    if rl.prompts_per_round % ctx.world_size:
        raise TrainingError(f"prompts_per_round={rl.prompts_per_round} must be divisible by the {ctx.world_size} ranks")
    spec, fmt, tokenizer = task.spec, task.format, policy.tokenizer
    design, rl_design, rl_source, curriculum = rl_sources(task, rl.programs, rl.curriculum_fraction > 0)
    eval_sources = [resolve_source(rl_design if s.split == "rl" else design, s) for s in config.eval]
    policy = widen_policy(policy, eval_sources)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = policy.model.to(ctx.device).eval()
    reference = copy.deepcopy(model).requires_grad_(False)
    optimizer = make_adamw(model, rl.lr, rl.weight_decay, rl.betas, ctx.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    record = _record(config, task, policy, init)
    metrics_path, ckpt_path = out / METRICS_NAME, out / CHECKPOINT_NAME
    ignore = (("training", "out"), ("init", "path"))  # a run folder and its --init may move
    ckpt = start_or_resume(
        out, ctx, resume, record, model, optimizer, scheduler, ignore=ignore, differs="config or --init"
    )
    update, traces, window = 0, 0, [0.0] * len(_STATS)
    if ckpt is not None:
        update, traces, window = ckpt.step, ckpt.extra["traces"], ckpt.extra["window"]
    autocast = autocast_for(ctx.device, cfg.bf16)
    evaluate = make_evaluator(ctx, model, spec, fmt, tokenizer, eval_sources, cfg, metrics_path)

    round_traces = rl.prompts_per_round * rl.group_size
    share = slice(ctx.rank, None, ctx.world_size)
    bar = tqdm(
        total=rl.budget_traces,
        initial=traces,
        desc="rl",
        unit="trace",
        unit_scale=True,
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
    )
    last_eval: dict[str, dict[str, Any]] = {}
    clock = t0 = time.perf_counter()
    window_traces = 0

    def save(path: Path = ckpt_path) -> None:
        states = gather_objects(ctx, capture_rng_state())
        if ctx.is_main:
            save_checkpoint(
                path,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                step=update,
                rng=states,
                config=record,
                extra={"traces": traces, "window": window},
            )
        barrier(ctx)

    exhausted = traces + round_traces > rl.budget_traces
    ran = evaluated = False
    # learning-curve points still to score; those at or below the traces already used were scored
    curve = [p for p in rl.curve if p * rl.budget_traces > traces or (p == 0 and update == 0)]

    def due() -> dict[str, Any]:
        points = [p for p in curve if p * rl.budget_traces <= traces or exhausted]
        del curve[: len(points)]
        return {"traces": traces} | ({"curve": points} if points else {})

    def score(at: int, fields: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Evaluate; at a learning-curve point also keep the model as it is (``curve/<traces>/``)."""
        scored = evaluate(at, **fields)
        if "curve" in fields:
            save(curve_checkpoint(out, traces))
        return scored

    if curve and curve[0] == 0 and update == 0:
        score(0, due())
    while not exhausted and (stop_at is None or update < stop_at):
        ran = True
        buffer = GroupBuffer(rl.group_size, tokenizer.pad)
        mixed, rounds = 0, 0
        while mixed < rl.min_mixed_groups and traces + round_traces <= rl.budget_traces:
            sources = round_sources(
                rl_source, curriculum, traces, rl.budget_traces, rl.curriculum_fraction, rl.curriculum_mix
            )
            prompts = sample_examples(
                spec, fmt, tokenizer, sources, rl.prompts_per_round, derive_seed(cfg.seed, "prompts", update, rounds)
            )
            generator = torch.Generator(ctx.device)
            generator.manual_seed(derive_seed(cfg.seed, "sample", update, rounds, ctx.rank))
            mine = prompts.index(torch.arange(rl.prompts_per_round)[share])
            for rollout in sample_groups(
                model,
                spec,
                fmt,
                tokenizer,
                mine,
                rl.group_size,
                temperature=rl.temperature,
                generator=generator,
                autocast=autocast,
            ):
                buffer.add(rollout)
            mixed = int(all_reduce_sum(ctx, [buffer.mixed])[0])
            traces += round_traces
            rounds += 1
            bar.update(round_traces)
        exhausted = traces + round_traces > rl.budget_traces
        if mixed == 0:
            break  # the budget ran out before any group had mixed rewards
        stats = _update(model, reference, optimizer, buffer, mixed, rl, ctx, autocast)
        scheduler.step()
        update += 1
        stats |= {"traces": float(buffer.sampled_traces), "rounds": float(rounds), "updates": 1.0}
        stats |= {"reward": buffer.reward_sum, "malformed": float(buffer.malformed_sum)}
        stats |= {"groups": float(buffer.sampled_groups), "mixed": float(buffer.mixed)}
        totals = _global_stats(ctx, stats)
        window = [w + totals[k] for w, k in zip(window, _STATS, strict=True)]
        window_traces += int(totals["traces"])
        last = exhausted or (stop_at is not None and update >= stop_at)
        if update % cfg.log_every == 0 or last:
            now = time.perf_counter()
            entry = _log_entry(dict(zip(_STATS, window, strict=True)), update, traces, rl)
            entry |= {"traces_per_s": round(window_traces / max(now - clock, 1e-9)), "elapsed_s": round(now - t0, 3)}
            if ctx.is_main:
                append_jsonl(metrics_path, entry)
            bar.set_postfix(reward=f"{entry['reward']:.3f}", mixed=f"{entry['mixed_fraction']:.2f}")
            window, window_traces, clock = [0.0] * len(_STATS), 0, now
        paused = time.perf_counter()
        fields = due()
        if exhausted or "curve" in fields or (cfg.eval_every and update % cfg.eval_every == 0):
            last_eval, evaluated = score(update, fields), exhausted
        if update % cfg.checkpoint_every == 0 or last:
            save()
        clock += time.perf_counter() - paused
    bar.close()
    if exhausted and ran:
        if not evaluated:  # the budget ran out without a last update
            last_eval = score(update, due())
            save()
        if ctx.is_main:
            summary = {"updates": update, "traces": traces, "num_params": model.num_params(), "evaluation": last_eval}
            write_json(out / "summary.json", summary)
    return RLResult(model, update, traces, out, last_eval, ctx.rank)


def _global_stats(ctx: DistContext, stats: dict[str, float]) -> dict[str, float]:
    """Sum the per-rank stats over ranks (``grad_norm``, ``rounds``, ``updates`` are already global)."""
    keys = [k for k in _STATS if k not in ("grad_norm", "rounds", "updates")]
    return stats | dict(zip(keys, all_reduce_sum(ctx, [stats[k] for k in keys]), strict=True))


def _update(
    model: GPT,
    reference: GPT,
    optimizer: torch.optim.Optimizer,
    buffer: GroupBuffer,
    mixed: int,
    rl: RLSettings,
    ctx: DistContext,
    autocast: contextlib.AbstractContextManager[Any],
) -> dict[str, float]:
    """One AdamW step on the buffer's mixed groups (``mixed``: their number over all ranks)."""
    denominator = float(mixed * rl.group_size)
    optimizer.zero_grad(set_to_none=True)
    sums = dict.fromkeys(("adv_sum", "adv_sq", "adv_n", "entropy", "tokens", "kl", "pg"), 0.0)
    for batch in buffer.batches():
        advantages = loo_advantages(batch.rewards).reshape(-1)
        with autocast:
            loss, parts = reinforce_loss(
                model,
                batch.tokens,
                batch.prompt_len,
                batch.mask,
                advantages,
                ref_model=reference,
                kl_coef=rl.kl_coef,
                temperature=rl.temperature,
                denominator=denominator,
            )
        loss.backward()
        sums["adv_sum"] += float(advantages.sum())
        sums["adv_sq"] += float((advantages**2).sum())
        sums["adv_n"] += float(advantages.numel())
        for key in ("entropy", "tokens", "kl", "pg"):
            sums[key] += getattr(parts, key)
    params = [p for p in model.parameters() if p.requires_grad]
    all_reduce_grads(ctx, params)
    grad_norm = nn.utils.clip_grad_norm_(params, rl.grad_clip if rl.grad_clip > 0 else math.inf)
    optimizer.step()
    return sums | {"grad_norm": float(grad_norm)}


def _log_entry(w: dict[str, float], update: int, traces: int, rl: RLSettings) -> dict[str, Any]:
    """Means over the window's updates (see the module docstring for the keys).

    ``reward`` and ``malformed`` are over every sampled trace; ``adv_std``, ``entropy`` (per
    token), ``kl`` (per trace: the summed k3 of its tokens), ``kl_per_token`` and ``loss`` are over
    the traces of the mixed groups the updates used.
    """

    def ratio(a: float, b: float) -> float:
        return round(a / b, 6) if b > 0 else float("nan")

    n = w["adv_n"]
    adv_var = w["adv_sq"] / n - (w["adv_sum"] / n) ** 2 if n > 0 else float("nan")
    return {
        "kind": "train",
        "step": update,
        "traces": traces,
        "rounds": int(w["rounds"]),
        "reward": ratio(w["reward"], w["traces"]),
        "adv_std": round(math.sqrt(max(adv_var, 0.0)), 6) if n > 0 else float("nan"),
        "entropy": ratio(w["entropy"], w["tokens"]),
        "kl": ratio(w["kl"], n),
        "kl_per_token": ratio(w["kl"], w["tokens"]),
        "malformed": ratio(w["malformed"], w["traces"]),
        "mixed_fraction": ratio(w["mixed"], w["groups"]),
        "groups": int(w["groups"]),
        "loss": ratio(w["pg"] + rl.kl_coef * w["kl"], n),
        "grad_norm": ratio(w["grad_norm"], w["updates"]),
        "lr": rl.lr,
    }

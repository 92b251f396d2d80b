"""REINFORCE from an SFT checkpoint: the default recipe, resumable and torchrun-ready.

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
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hlsm.io import write_json
from hlsm.lm.checkpoint import CHECKPOINT_NAME, capture_rng_state, restore_rng_state, save_checkpoint
from hlsm.lm.dataset import Source, derive_seed, resolve_source, sample_examples
from hlsm.lm.distributed import (
    DistContext,
    all_reduce_grads,
    all_reduce_sum,
    barrier,
    gather_objects,
    init_distributed,
    shutdown,
)
from hlsm.lm.engine import StackedAdamW, clip_grad_norms
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.pg import loo_advantages, reinforce_losses
from hlsm.lm.policy import Policy, load_policy, widen_policy
from hlsm.lm.records import curve_checkpoint, read_calibration
from hlsm.lm.rl_config import RLConfig, RLSettings, Task, resolve_task
from hlsm.lm.rollout import GroupBuffer, rl_sources, round_sources, sample_groups_stacked
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
from hlsm.lm.stacked import StackedGPT, gpt_from_state
from hlsm.runtime import progress_bar, torch_threads
from hlsm.traces import Tokenizer

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

    A run alone is a stack of one model (:func:`train_rl_many`).

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
    return train_rl_many([config], [init], [out], resume=resume, progress=progress, stop_at=stop_at)[0]


RL_STACK_KEYS = ("group_size", "prompts_per_round", "temperature", "betas")
"""The ``[rl]`` keys every model of one stack must share (with the model's sizes and the device,
bf16 and thread settings of ``[training]``)."""


def rl_stack_key(config: RLConfig, gpt: dict[str, Any]) -> str:
    """What RL runs must share to be trained as one stack (``gpt``: the policy's widened sizes).

    A policy with dropout gets a stack of its own (its masks would come from a shared random stream).
    """
    training = config.training
    record = {"gpt": gpt} | {k: getattr(config.rl, k) for k in RL_STACK_KEYS}
    record |= {"device": training.device, "bf16": training.bf16, "threads": training.threads}
    record["betas"] = list(record["betas"])
    if float(gpt.get("dropout") or 0.0) > 0:
        record["alone"] = training.out
    return json.dumps(record, sort_keys=True)


def train_rl_many(
    configs: Sequence[RLConfig],
    inits: Sequence[str | Path],
    outs: Sequence[str | Path | None] | None = None,
    *,
    resume: bool | Sequence[bool] = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> list[RLResult]:
    """``K`` REINFORCE runs as one stacked computation (:mod:`hlsm.lm.engine`); one result per run.

    Each run keeps its own folder, SFT checkpoint (initial and reference policy), prompts and
    samples (from its seed), dynamic sampling (its own rounds until its own ``min_mixed_groups``),
    groups, rewards and advantages, optimiser state, clipping, budget, learning curve and
    evaluations; its files are those of the run alone. Per update, the members that still need a
    sampling round decode together; then every member takes its update in one stacked backward
    pass. A member whose budget is spent (or whose budget ran out before any mixed group) leaves the
    stack. Runs that differ in :func:`rl_stack_key` (policy sizes, group shapes), or were resumed
    at different updates, are trained as separate stacks, one after the other.

    Equality with the runs alone: sampling draws from each member's own generator over the same
    logits, bit for bit. An update pads the members' traces to one shape with rows that add exact
    zeros to every loss and count; where the members hold batches of one shape it is bit for bit,
    and where their shapes differ the longer weight-gradient sums round differently (float32: at the
    cpu scale's model size the weights differed by at most 8e-6 after 15 updates at lr 1e-3, counts
    and evaluations identical; ``tests/lm/test_lm_engine.py``).

    Raises
    ------
    TrainingError
        A refused checkpoint, two runs writing one folder, runs of different devices or threads.
    """
    if not configs:
        return []
    if len(inits) != len(configs):
        raise TrainingError(f"{len(inits)} --init checkpoints for {len(configs)} runs")
    configs, paths, resumes = stack_runs(configs, outs, resume)
    with lock_runs(paths):
        loaded = []
        for config, init, out, again in zip(configs, inits, paths, resumes, strict=True):
            check_out(out, again)
            calibration = read_calibration(Path(init).parent if Path(init).is_file() else init)
            if calibration is not None and not calibration.passed and not config.rl.allow_uncalibrated:
                raise TrainingError(calibration.refusal(str(init)))
            policy = load_policy(init, what="--init checkpoint")
            loaded.append((policy, resolve_task(config, policy.sft_record)))
        first = configs[0].training
        ctx = init_distributed(first.device)
        try:
            with torch_threads(first.threads):
                runs = [
                    _member(c, p, t, Path(i), o, r, ctx, stop_at)
                    for c, (p, t), i, o, r in zip(configs, loaded, inits, paths, resumes, strict=True)
                ]
                return _train(runs, ctx, progress, stop_at)
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


@dataclass
class _Run:
    """One member's configuration, files and loop state (see :func:`_train`)."""

    config: RLConfig
    task: Task
    tokenizer: Tokenizer
    out: Path
    rl_source: Source
    curriculum: Source | None
    gpt: GPTConfig
    key: str
    record: dict[str, Any]
    evaluate: Any
    state: dict[str, Tensor]
    reference: dict[str, Tensor]
    optimizer: dict[str, Any] | None
    update: int
    traces: int
    window: list[float]
    curve: list[float]
    stop_at: int | None
    exhausted: bool = False
    ran: bool = False
    evaluated: bool = False
    last_eval: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_traces: int = 0
    clock: float = 0.0
    t0: float = 0.0
    buffer: GroupBuffer | None = None
    mixed: int = 0
    rounds: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    alone: bool = False  # trained in a stack of one: the process's random stream is this run's

    @property
    def round_traces(self) -> int:
        return self.config.rl.prompts_per_round * self.config.rl.group_size

    def reached(self) -> list[float]:
        """The learning-curve points still to score that the traces used have reached (all, once spent)."""
        budget = self.config.rl.budget_traces
        return [p for p in self.curve if p * budget <= self.traces or self.exhausted]

    def due(self) -> dict[str, Any]:
        """The learning-curve points reached (removed from the list) and the traces used."""
        points = self.reached()
        del self.curve[: len(points)]
        return {"traces": self.traces} | ({"curve": points} if points else {})

    def wants_round(self) -> bool:
        rl = self.config.rl
        return self.mixed < rl.min_mixed_groups and self.traces + self.round_traces <= rl.budget_traces

    def going(self) -> bool:
        return not self.exhausted and (self.stop_at is None or self.update < self.stop_at)


def _member(
    config: RLConfig,
    policy: Policy,
    task: Task,
    init: Path,
    out: Path,
    resume: bool,
    ctx: DistContext,
    stop_at: int | None,
) -> _Run:
    """Resolve one run: its prompts, evaluation sets, widened policy, and its folder started or resumed."""
    cfg, rl = config.training, config.rl
    if rl.prompts_per_round % ctx.world_size:
        raise TrainingError(f"prompts_per_round={rl.prompts_per_round} must be divisible by the {ctx.world_size} ranks")
    design, rl_design, rl_source, curriculum = rl_sources(
        task, rl.programs, rl.curriculum_fraction > 0, rl.late_excluded
    )
    eval_sources = [resolve_source(rl_design if s.split == "rl" else design, s) for s in config.eval]
    policy = widen_policy(policy, eval_sources)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = policy.model.to(ctx.device).eval()
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    record = _record(config, task, policy, init)
    ignore = (("training", "out"), ("init", "path"))  # a run folder and its --init may move
    ckpt = start_or_resume(out, ctx, resume, record, None, None, None, ignore=ignore, differs="config or --init")
    update, traces, window, optimizer = 0, 0, [0.0] * len(_STATS), None
    if ckpt is not None:
        model.load_state_dict(ckpt.model)
        update, traces, window, optimizer = ckpt.step, ckpt.extra["traces"], ckpt.extra["window"], ckpt.optimizer
    evaluate = make_evaluator(
        ctx, None, task.spec, task.format, policy.tokenizer, eval_sources, cfg, out / METRICS_NAME
    )
    curve = [p for p in rl.curve if p * rl.budget_traces > traces or (p == 0 and update == 0)]
    gpt = model.config
    run = _Run(
        config, task, policy.tokenizer, out, rl_source, curriculum, gpt, rl_stack_key(config, gpt.to_dict()), record,
        evaluate, model.state_dict(), reference, optimizer, update, traces, window, curve, stop_at,
    )  # fmt: skip
    run.exhausted = traces + run.round_traces > rl.budget_traces
    run.rng = capture_rng_state()  # this run's random state after its set-up (or restore), as alone
    return run


def _train(runs: list[_Run], ctx: DistContext, progress: bool, stop_at: int | None) -> list[RLResult]:
    bar = progress_bar(
        total=sum(r.config.rl.budget_traces for r in runs),
        initial=sum(r.traces for r in runs),
        desc="rl" if len(runs) == 1 else f"rl x{len(runs)}",
        unit="trace",
        unit_scale=True,
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
    )
    for key in dict.fromkeys((r.key, r.update) for r in runs):  # one stack per shape and update count
        _train_stack([r for r in runs if (r.key, r.update) == key], ctx, bar)
    bar.close()
    results = []
    for r in runs:
        model = gpt_from_state(r.gpt, r.state).to(ctx.device)
        results.append(RLResult(model.eval(), r.update, r.traces, r.out, r.last_eval, ctx.rank))
    return results


def _save(
    r: _Run, stack: StackedGPT, k: int, optimizer: StackedAdamW, ctx: DistContext, path: Path | None = None
) -> None:
    """Member ``k``'s checkpoint (``path``: a learning-curve copy; default the run's checkpoint)."""
    # alone, the process's random state; in a stack (no dropout: RL draws from its own generators only)
    # the member's own state after its set-up, which is what its run alone would hold here
    states = gather_objects(ctx, capture_rng_state() if r.alone else r.rng)
    if ctx.is_main:
        save_checkpoint(
            r.out / CHECKPOINT_NAME if path is None else path,
            model=stack.member_state(k),
            optimizer=optimizer.member_state(k, r.config.rl.lr),
            scheduler={"last_epoch": r.update},
            step=r.update,
            rng=states,
            config=r.record,
            extra={"traces": r.traces, "window": r.window},
        )
    barrier(ctx)


def _score(r: _Run, stack: StackedGPT, k: int, optimizer: StackedAdamW, ctx: DistContext, at: int) -> None:
    """Evaluate member ``k``; at a learning-curve point also keep it as it is (``curve/<traces>/``)."""
    fields = r.due()
    r.last_eval = r.evaluate(at, model=stack.member(k).eval(), **fields)
    if "curve" in fields:
        _save(r, stack, k, optimizer, ctx, curve_checkpoint(r.out, r.traces))


def _finish(r: _Run, stack: StackedGPT, k: int, optimizer: StackedAdamW, ctx: DistContext) -> None:
    """Member ``k`` leaves the stack: a last evaluation if the budget ran out without one, the summary."""
    if r.exhausted and r.ran:
        if not r.evaluated:  # the budget ran out without a last update
            _score(r, stack, k, optimizer, ctx, r.update)
            _save(r, stack, k, optimizer, ctx)
        if ctx.is_main:
            summary = {"updates": r.update, "traces": r.traces, "num_params": stack.num_params()}
            write_json(r.out / "summary.json", summary | {"evaluation": r.last_eval})
    r.state = stack.member_state(k)


def _train_stack(runs: list[_Run], ctx: DistContext, bar: Any) -> None:
    """Train ``runs`` (all at one update count) as one stack until each has left it."""
    if not runs:
        return
    if len(runs) == 1:  # alone: the process's random stream is this run's
        restore_rng_state(runs[0].rng)
        runs[0].alone = True
    first = runs[0]
    stack = StackedGPT.from_states(first.gpt, [r.state for r in runs]).to(ctx.device).eval()
    reference = StackedGPT.from_states(first.gpt, [r.reference for r in runs]).to(ctx.device).eval()
    reference.requires_grad_(False)
    rl0 = first.config.rl
    optimizer = StackedAdamW(stack, [r.config.rl.weight_decay for r in runs], rl0.betas)
    if first.optimizer is not None:
        optimizer.load_member_states([r.optimizer for r in runs if r.optimizer is not None])
    autocast = autocast_for(ctx.device, first.config.training.bf16)
    t0 = time.perf_counter()
    for k, r in enumerate(runs):
        r.clock = r.t0 = t0
        if r.curve and r.curve[0] == 0 and r.update == 0:
            _score(r, stack, k, optimizer, ctx, 0)

    def leave(gone: list[int]) -> None:
        nonlocal runs, stack, reference, optimizer
        for k in gone:
            _finish(runs[k], stack, k, optimizer, ctx)
        keep = [k for k in range(len(runs)) if k not in gone]
        if gone and keep:
            smaller = stack.select(keep).eval()
            optimizer, stack = optimizer.select(smaller, keep), smaller
            reference = reference.select(keep).eval().requires_grad_(False)
        runs = [runs[k] for k in keep]

    leave([k for k, r in enumerate(runs) if not r.going()])
    share = slice(ctx.rank, None, ctx.world_size)
    while runs:
        for r in runs:
            r.ran, r.buffer, r.mixed, r.rounds = True, GroupBuffer(r.config.rl.group_size, r.tokenizer.pad), 0, 0
        while need := [k for k, r in enumerate(runs) if r.wants_round()]:
            tasks, generators = [], []
            for k in need:
                r = runs[k]
                cfg, rl = r.config.training, r.config.rl
                sources = round_sources(
                    r.rl_source, r.curriculum, r.traces, rl.budget_traces, rl.curriculum_fraction, rl.curriculum_mix
                )
                spec, fmt = r.task.spec, r.task.format
                seed = derive_seed(cfg.seed, "prompts", r.update, r.rounds)
                prompts = sample_examples(spec, fmt, r.tokenizer, sources, rl.prompts_per_round, seed)
                generator = torch.Generator(ctx.device)
                generator.manual_seed(derive_seed(cfg.seed, "sample", r.update, r.rounds, ctx.rank))
                tasks.append((spec, fmt, r.tokenizer, prompts.index(torch.arange(rl.prompts_per_round)[share])))
                generators.append(generator)
            sampler = stack if len(need) == len(runs) else stack.select(need).eval()
            rollouts = sample_groups_stacked(
                sampler, tasks, rl0.group_size, temperature=rl0.temperature, generators=generators, autocast=autocast,
                rewards=[runs[k].config.rl.reward for k in need],
            )  # fmt: skip
            for k, made in zip(need, rollouts, strict=True):
                r = runs[k]
                assert r.buffer is not None
                for rollout in made:
                    r.buffer.add(rollout)
            counts = all_reduce_sum(ctx, [float(runs[k].buffer.mixed) for k in need])  # type: ignore[union-attr]
            for k, count in zip(need, counts, strict=True):
                r = runs[k]
                r.mixed, r.traces, r.rounds = int(count), r.traces + r.round_traces, r.rounds + 1
                bar.update(r.round_traces)
        for r in runs:
            r.exhausted = r.traces + r.round_traces > r.config.rl.budget_traces
        leave([k for k, r in enumerate(runs) if r.mixed == 0])  # the budget ran out before any group had mixed rewards
        if not runs:
            break
        buffers = [r.buffer for r in runs if r.buffer is not None]
        pad = runs[0].tokenizer.pad
        settings = [r.config.rl for r in runs]
        stats = rl_update(stack, reference, optimizer, buffers, [r.mixed for r in runs], settings, pad, ctx, autocast)
        now = time.perf_counter()
        for k, (r, st) in enumerate(zip(runs, stats, strict=True)):
            _after_update(r, k, st, stack, optimizer, ctx, now, bar)
        leave([k for k, r in enumerate(runs) if not r.going()])


def _after_update(
    r: _Run,
    k: int,
    stats: dict[str, float],
    stack: StackedGPT,
    optimizer: StackedAdamW,
    ctx: DistContext,
    now: float,
    bar: Any,
) -> None:
    """Member ``k``'s counts, log, evaluation, learning-curve point and checkpoint after an update."""
    rl, cfg, buffer = r.config.rl, r.config.training, r.buffer
    assert buffer is not None
    r.update += 1
    stats |= {"traces": float(buffer.sampled_traces), "rounds": float(r.rounds), "updates": 1.0}
    stats |= {"reward": buffer.reward_sum, "malformed": float(buffer.malformed_sum)}
    stats |= {"groups": float(buffer.sampled_groups), "mixed": float(buffer.mixed)}
    totals = _global_stats(ctx, stats)
    r.window = [w + totals[key] for w, key in zip(r.window, _STATS, strict=True)]
    r.window_traces += int(totals["traces"])
    last = r.exhausted or (r.stop_at is not None and r.update >= r.stop_at)
    if r.update % cfg.log_every == 0 or r.exhausted:  # a stop_at saves as a kill would: without a log
        entry = _log_entry(dict(zip(_STATS, r.window, strict=True)), r.update, r.traces, rl)
        entry |= {"traces_per_s": round(r.window_traces / max(now - r.clock, 1e-9)), "elapsed_s": round(now - r.t0, 3)}
        if ctx.is_main:
            append_jsonl(r.out / METRICS_NAME, entry)
        bar.set_postfix(reward=f"{entry['reward']:.3f}", mixed=f"{entry['mixed_fraction']:.2f}")
        r.window, r.window_traces, r.clock = [0.0] * len(_STATS), 0, now
    paused = time.perf_counter()
    if r.exhausted or r.reached() or (cfg.eval_every and r.update % cfg.eval_every == 0):
        _score(r, stack, k, optimizer, ctx, r.update)
        r.evaluated = r.exhausted
    if r.update % cfg.checkpoint_every == 0 or last:
        _save(r, stack, k, optimizer, ctx)
    r.clock += time.perf_counter() - paused  # throughput excludes evaluation and checkpoints


def _global_stats(ctx: DistContext, stats: dict[str, float]) -> dict[str, float]:
    """Sum the per-rank stats over ranks (``grad_norm``, ``rounds``, ``updates`` are already global)."""
    keys = [k for k in _STATS if k not in ("grad_norm", "rounds", "updates")]
    return stats | dict(zip(keys, all_reduce_sum(ctx, [stats[k] for k in keys]), strict=True))


def rl_update(
    stack: StackedGPT,
    reference: StackedGPT,
    optimizer: StackedAdamW,
    buffers: Sequence[GroupBuffer],
    mixed: Sequence[int],
    settings: Sequence[RLSettings],
    pad: int,
    ctx: DistContext,
    autocast: contextlib.AbstractContextManager[Any],
) -> list[dict[str, float]]:
    """One AdamW step of every member of ``stack`` on its buffer's mixed groups: the RL update.

    Member ``k`` learns from ``buffers[k]`` (its kept groups), normalised by ``mixed[k]`` (its mixed
    groups over all ranks) times its group size, with its own ``settings[k]`` (KL coefficient,
    clipping, learning rate). Per prompt length, the members' kept traces are padded to one
    ``(K, rows, P + N)`` batch (padding rows: zero advantage, empty mask) and
    :func:`hlsm.lm.pg.reinforce_losses` of all members is back-propagated at once; then each
    member's gradient is summed over ranks, clipped to its own bound and applied at its own rate.
    Returns each member's sums for the log (``adv_*``, ``entropy``, ``tokens``, ``kl``, ``pg``,
    ``grad_norm``).
    """
    K, rls = len(buffers), list(settings)
    optimizer.zero_grad()
    sums = [dict.fromkeys(("adv_sum", "adv_sq", "adv_n", "entropy", "tokens", "kl", "pg"), 0.0) for _ in rls]
    per_member = [{b.prompt_len: b for b in buffer.batches()} for buffer in buffers]
    device = next(stack.parameters()).device
    denominators = [float(m * rl.group_size) for m, rl in zip(mixed, rls, strict=True)]
    for P in sorted({P for batches in per_member for P in batches}):
        batches = [m.get(P) for m in per_member]
        rows = max(b.tokens.shape[0] for b in batches if b is not None)
        N = max(b.mask.shape[1] for b in batches if b is not None)
        tokens = torch.full((K, rows, P + N), pad, dtype=torch.long, device=device)
        mask = torch.zeros((K, rows, N), dtype=torch.bool, device=device)
        advantages = torch.zeros((K, rows), dtype=torch.float32, device=device)
        for k, b in enumerate(batches):
            if b is None:
                continue
            R, T = b.tokens.shape
            tokens[k, :R, :T] = b.tokens
            mask[k, :R, : b.mask.shape[1]] = b.mask
            adv = loo_advantages(b.rewards).reshape(-1)
            advantages[k, :R] = adv
            sums[k]["adv_sum"] += float(adv.sum())
            sums[k]["adv_sq"] += float((adv**2).sum())
            sums[k]["adv_n"] += float(adv.numel())
        with autocast:
            losses, parts = reinforce_losses(
                stack, tokens, P, mask, advantages, ref_model=reference, kl_coefs=[rl.kl_coef for rl in rls],
                temperature=rls[0].temperature, denominators=denominators,
            )  # fmt: skip
        losses.sum().backward()
        for k, b in enumerate(batches):
            if b is not None:
                for key in ("entropy", "tokens", "kl", "pg"):
                    sums[k][key] += getattr(parts[k], key)
    all_reduce_grads(ctx, [p for p in stack.parameters() if p.requires_grad])
    norms = clip_grad_norms(stack, [rl.grad_clip for rl in rls])
    optimizer.step([rl.lr for rl in rls])
    return [s | {"grad_norm": float(n)} for s, n in zip(sums, norms.tolist(), strict=True)]


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

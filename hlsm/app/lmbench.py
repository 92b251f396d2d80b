"""The transformer's benchmarks (``hlsm bench sample | train | rl``; :mod:`hlsm.app.bench` runs them):
the engine's own sampling, SFT step and RL update, timed against their reference paths, with the
matmul peak measured in the same run and the model's FLOPs as a fraction of it."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from hlsm.design import make_design
from hlsm.errors import HLSMError
from hlsm.limits import check_memory, decoding_bytes
from hlsm.runtime import seconds


def _lm_setup(device: str) -> tuple[torch.device, Callable[[], None]]:
    """The device of an ``hlsm.lm`` benchmark and a function that waits for its queued work."""
    from hlsm.lm.distributed import resolve_device

    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return dev, sync


def _matmul_peak(dev: torch.device, sync: Callable[[], None], dtype: torch.dtype = torch.float32) -> float:
    """This machine's achievable matmul rate in GFLOP/s, measured now with the current thread count.

    Square products (``1024`` on CPU, ``8192`` on CUDA) in ``dtype``; the best of 5 timed runs after a
    warm-up, ``2 size**3`` FLOPs each. Measured in the same run as the rate it is compared with, so
    that a background load affects both.
    """
    size = 8192 if dev.type == "cuda" else 1024
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_sample(
    n: int = 64, new_tokens: int = 64, device: str = "cpu", seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """KV-cache sampling against full recomputation, same model and prompts, side by side.

    The default GPT (0.6M parameters: 3 layers, d = 128, 4 heads) continues ``n`` random prompts of
    16 tokens (the fixed-width prompt of ``n = 6``, ``W = 4``) by ``new_tokens`` sampled tokens
    (EOS disabled so that both paths generate exactly as many). Each path: one warm-up, then the best
    of 3 runs alternating with the other path's.
    """
    from hlsm.lm.model import GPT, GPTConfig
    from hlsm.lm.sampling import generate

    vocab, prompt_len = 48, 16
    config = GPTConfig(vocab_size=vocab, max_len=prompt_len + new_tokens)
    need = decoding_bytes(n, prompt_len + new_tokens, config.n_layer, config.d_model)
    check_memory(f"sampling --n {n:,} prompts", need, "use a smaller --n")
    dev, sync = _lm_setup(device)
    torch.manual_seed(seed)
    model = GPT(config).to(dev)
    prompts = torch.randint(vocab, (n, prompt_len), device=dev)

    def once(use_cache: bool) -> None:
        gen = torch.Generator(device=dev).manual_seed(seed)
        generate(model, prompts, new_tokens, eos_id=vocab, generator=gen, use_cache=use_cache)
        sync()

    once(True)
    once(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):  # alternate, so that a background load slows both alike
        for use_cache in (True, False):
            times[use_cache].append(seconds(lambda: once(use_cache)))  # noqa: B023
    cached, full = min(times[True]), min(times[False])
    peak = _matmul_peak(dev, sync)
    achieved = 2 * model.num_params() * n * new_tokens / cached / 1e9  # forward pass: 2 FLOPs per parameter
    return {
        "benchmark": "sample",
        "device": str(dev),
        "prompts": n,
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "params": model.num_params(),
        "cache_s": round(cached, 4),
        "no_cache_s": round(full, 4),
        "cache_tokens_per_s": round(n * new_tokens / cached),
        "no_cache_tokens_per_s": round(n * new_tokens / full),
        "ratio": round(full / cached, 2),
        "achieved_gflops": round(achieved, 3),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 5),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


def _sft_task(scale: str, size: str | None = None) -> tuple[Any, Any, Any, list[Any], int, Any]:
    """The ``scale`` preset's SFT config (model of ladder ``size``), tokenizer, format, sources, width, GPT sizes."""
    from hlsm.lm.data import make_tokenizer
    from hlsm.lm.presets import scale_preset, with_size
    from hlsm.lm.sft import _resolve

    config = with_size(scale_preset(scale), size).sft
    sources, _, _, width, gpt = _resolve(config)
    return config, make_tokenizer(config.spec), config.format, sources, width, gpt


def bench_train(
    n: int | None = None,
    steps: int = 20,
    device: str = "cpu",
    peak_tflops: float | None = None,
    seed: int = 0,
    progress: bool = True,
    scale: str = "cpu",
    models: int = 1,
    size: str | None = None,
) -> dict[str, Any]:
    """Training tokens/s of the engine's SFT step for ``models`` models, stacked against one at a time.

    The step of :func:`hlsm.lm.sft.train_sft` (:func:`hlsm.lm.engine.sft_step`: a batch of ``n``
    golden traces per model from the ``scale`` preset's task and mixture, masked cross-entropy,
    per-model clipping, AdamW) for ``K = models`` models of the preset's size (default: the cpu
    preset's 2-layer d = 96 model, batch 64). Stacked: the ``K`` models as one
    :class:`hlsm.lm.stacked.StackedGPT`. Alone: ``K`` stacks of one, stepped in turn (what ``K``
    runs in one process cost). ``ratio`` = stacked / alone tokens/s (1 for ``K = 1``). Each variant:
    3 warm-up steps, then ``steps`` timed in 4 rounds alternating with the other's; the best round's
    rate is reported. bf16 autocast on CUDA.

    ``fraction_of_peak`` = model FLOPs (6 per parameter per token: parameters' products only, not
    attention scores) over the matmul rate measured in the same run (fp32 on CPU, bf16 on CUDA:
    :func:`_matmul_peak`), for the faster variant; ``mfu`` the same over ``peak_tflops`` when given.
    """
    from hlsm.lm.dataset import derive_seed, sample_examples
    from hlsm.lm.engine import StackedAdamW, sft_step
    from hlsm.lm.model import GPT
    from hlsm.lm.rundir import autocast_for
    from hlsm.lm.stacked import StackedGPT

    if models < 1:
        raise HLSMError(f"--models must be at least 1, got {models}")
    dev, sync = _lm_setup(device)
    config, tokenizer, fmt, sources, width, gpt = _sft_task(scale, size)
    batch_size = n or config.training.batch_size
    autocast = autocast_for(dev, True)
    torch.manual_seed(seed)
    members = [GPT(gpt) for _ in range(models)]
    spec = config.spec

    def batch(k: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = sample_examples(spec, fmt, tokenizer, sources, batch_size, derive_seed(seed, k, t), width=width)
        return b.ids, b.loss_mask

    def stepper(stack: StackedGPT, ks: list[int]) -> Callable[[int], int]:
        optimizer = StackedAdamW(stack, 0.1, (0.9, 0.95))

        def step(t: int) -> int:
            pairs = [batch(k, t) for k in ks]
            ids = torch.stack([p[0] for p in pairs]).to(dev)
            mask = torch.stack([p[1] for p in pairs]).to(dev)
            denominators = mask[:, :, 1:].sum((1, 2)).double()
            lrs, clips = [1e-3] * len(ks), [1.0] * len(ks)
            sft_step(stack, stack, optimizer, ids, mask, denominators, lrs, clips, autocast)
            return int(ids.shape[0] * ids.shape[1] * (ids.shape[2] - 1))

        return step

    stacked = stepper(StackedGPT.from_models(members).to(dev), list(range(models)))
    alone_steps = [stepper(StackedGPT.from_models([m]).to(dev), [k]) for k, m in enumerate(members)]

    def alone(t: int) -> int:
        return sum(s(t) for s in alone_steps)

    variants = {"stacked": stacked} | ({"alone": alone} if models > 1 else {})
    best = dict.fromkeys(variants, 0.0)
    for t in range(3):
        for fn in variants.values():
            fn(t)
    per_round = max(1, steps // 4)
    for r in range(4):  # alternate, so that a background load slows both alike; the best round wins
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            tokens = sum(fn(3 + r * per_round + i) for i in range(per_round))
            sync()
            best[name] = max(best[name], tokens / (time.perf_counter() - start))
    params = members[0].num_params()
    alone_tps = best.get("alone", best["stacked"])
    fast_tps = max(best["stacked"], alone_tps)
    flops = 6 * params * fast_tps
    peak = _matmul_peak(dev, sync, torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return {
        "benchmark": "train",
        "device": str(dev),
        "scale": scale,
        "size": size,
        "models": models,
        "batch": batch_size,
        "seq_len": width,
        "steps": steps,
        "params": params,
        "tokens_per_s": round(best["stacked"]),
        "alone_tokens_per_s": round(alone_tps),
        "ratio": round(best["stacked"] / alone_tps, 3),
        "faster": "stacked" if best["stacked"] >= alone_tps else "alone",
        "stacked_fraction_of_peak": round(6 * params * best["stacked"] / 1e9 / peak, 5),
        "alone_fraction_of_peak": round(6 * params * alone_tps / 1e9 / peak, 5),
        "peak_tflops": peak_tflops,
        "mfu": None if peak_tflops is None else round(flops / (peak_tflops * 1e12), 5),
        "achieved_gflops": round(flops / 1e9, 3),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(flops / 1e9 / peak, 5),
        "torch_threads": torch.get_num_threads(),
        "machine": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
    }


def bench_rl(
    n: int = 32,
    group_size: int = 16,
    rounds: int = 3,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    scale: str = "cpu",
    models: int = 1,
    size: str | None = None,
) -> dict[str, Any]:
    """Throughput of a REINFORCE round for ``models`` models at the ``scale`` preset, stacked against alone.

    A round, as :func:`hlsm.lm.reinforce.train_rl_many` runs it: sampling ``n`` RL prompts (the
    design's ``rl`` split, each model its own) x ``group_size`` traces at temperature 1 with the KV
    cache and scoring them (:func:`hlsm.lm.rollout.sample_groups_stacked`), then the engine's update
    (:func:`hlsm.lm.reinforce.rl_update`: policy forward and backward, frozen reference forward for
    the KL, per-model clipping, AdamW) on a quarter of the groups (the mixed share seen in practice),
    their rewards forced mixed. Stacked: the ``K = models`` models as one stack. Alone: ``K`` stacks
    of one in turn. ``ratio`` = stacked / alone traces/s (1 for ``K = 1``). Random-init weights: the
    shapes, not the answers, set the cost. Best of ``rounds``, the variants alternating.

    ``fraction_of_peak``: model FLOPs (2 per parameter per token sampled or forwarded, 6 per token
    trained, so 8 per update token with the reference) over the matmul rate measured in the same
    run, for the faster variant; ``sample_fraction_of_peak`` and ``update_fraction_of_peak`` split it.
    """
    from hlsm.lm.data import make_tokenizer
    from hlsm.lm.dataset import SourceConfig, resolve_source, sample_examples
    from hlsm.lm.distributed import DistContext
    from hlsm.lm.engine import StackedAdamW
    from hlsm.lm.model import GPT
    from hlsm.lm.presets import scale_preset, with_size
    from hlsm.lm.reinforce import rl_update
    from hlsm.lm.rollout import GroupBuffer, Rollout, sample_groups_stacked
    from hlsm.lm.rundir import autocast_for
    from hlsm.lm.sft import sft_gpt_config
    from hlsm.lm.stacked import StackedGPT

    if models < 1:
        raise HLSMError(f"--models must be at least 1, got {models}")
    dev, sync = _lm_setup(device)
    preset = with_size(scale_preset(scale), size)
    config = preset.sft
    settings = preset.rl.rl
    spec, fmt = config.spec, config.format
    tokenizer = make_tokenizer(spec)
    source = resolve_source(make_design(spec, config.design), SourceConfig("rl", split="rl"))
    torch.manual_seed(seed)
    members = [GPT(sft_gpt_config(config)) for _ in range(models)]
    prompts = [sample_examples(spec, fmt, tokenizer, [source], n, seed + k) for k in range(models)]
    ctx = DistContext(device=dev)
    autocast = autocast_for(dev, True)
    keep_groups = max(1, n // 4)

    def variant(ks: list[int]) -> Callable[[], tuple[float, float, int, int]]:
        stack = StackedGPT.from_models([members[k] for k in ks]).to(dev).eval()
        reference = StackedGPT.from_models([members[k] for k in ks]).to(dev).eval().requires_grad_(False)
        optimizer = StackedAdamW(stack, 0.0, settings.betas)

        def forced(r: Rollout, m: int) -> Rollout:
            rewards = (torch.arange(m * group_size) % 2).float().reshape(m, group_size).to(r.rewards.device)
            return Rollout(r.tokens[: m * group_size], r.mask[: m * group_size], rewards, r.malformed[:m],
                           r.prompt_len, r.programs[:m])  # fmt: skip

        def run() -> tuple[float, float, int, int]:
            gens = [torch.Generator(device=dev).manual_seed(seed + k) for k in ks]
            sync()
            start = time.perf_counter()
            made = sample_groups_stacked(
                stack, [(spec, fmt, tokenizer, prompts[k]) for k in ks], group_size, generators=gens, autocast=autocast
            )
            sync()
            sampled = time.perf_counter() - start
            buffers = []
            for rollouts in made:
                buffer, left = GroupBuffer(group_size, tokenizer.pad), keep_groups
                for r in rollouts:
                    m = min(left, r.rewards.shape[0])
                    if m:
                        buffer.add(forced(r, m))
                        left -= m
                buffers.append(buffer)
            sync()
            start = time.perf_counter()
            rl_update(stack, reference, optimizer, buffers, [b.mixed for b in buffers], [settings] * len(ks),
                      tokenizer.pad, ctx, autocast)  # fmt: skip
            sync()
            sampled_tokens = sum(int(r.tokens.numel()) for rollouts in made for r in rollouts)
            update_tokens = sum(int(r.tokens.numel()) for b in buffers for r in b.kept)
            return sampled, time.perf_counter() - start, sampled_tokens, update_tokens

        return run

    stacked = variant(list(range(models)))
    alone_runs = [variant([k]) for k in range(models)]

    def alone() -> tuple[float, float, int, int]:
        parts = [r() for r in alone_runs]
        return tuple(sum(p[i] for p in parts) for i in range(4))  # type: ignore[return-value]

    variants = {"stacked": stacked} | ({"alone": alone} if models > 1 else {})
    best: dict[str, tuple[float, float, int, int]] = {}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in variants.items():
            result = fn()
            if name not in best or sum(result[:2]) < sum(best[name][:2]):
                best[name] = result
    params = members[0].num_params()
    peak = _matmul_peak(dev, sync)
    traces = models * n * group_size

    def rates(r: tuple[float, float, int, int]) -> dict[str, float]:
        sample_s, update_s, sampled_tokens, update_tokens = r
        flops = 2 * params * sampled_tokens + 8 * params * update_tokens
        return {
            "traces_per_s": traces / (sample_s + update_s),
            "sample_traces_per_s": traces / sample_s,
            "update_s": update_s,
            "fraction": flops / (sample_s + update_s) / 1e9 / peak,
            "sample_fraction": 2 * params * sampled_tokens / sample_s / 1e9 / peak,
            "update_fraction": 8 * params * update_tokens / update_s / 1e9 / peak,
            "gflops": flops / (sample_s + update_s) / 1e9,
        }

    fast = rates(best["stacked"])
    slow = rates(best.get("alone", best["stacked"]))
    top = fast if fast["traces_per_s"] >= slow["traces_per_s"] else slow
    return {
        "benchmark": "rl",
        "device": str(dev),
        "scale": scale,
        "size": size,
        "models": models,
        "params": params,
        "prompts": n,
        "group_size": group_size,
        "rl_traces_per_s": round(fast["traces_per_s"]),
        "alone_rl_traces_per_s": round(slow["traces_per_s"]),
        "ratio": round(fast["traces_per_s"] / slow["traces_per_s"], 3),
        "faster": "stacked" if top is fast else "alone",
        "sample_traces_per_s": round(fast["sample_traces_per_s"]),
        "alone_sample_traces_per_s": round(slow["sample_traces_per_s"]),
        "update_s": round(fast["update_s"], 4),
        "alone_update_s": round(slow["update_s"], 4),
        "stacked_fraction_of_peak": round(fast["fraction"], 5),
        "alone_fraction_of_peak": round(slow["fraction"], 5),
        "sample_fraction_of_peak": round(top["sample_fraction"], 5),
        "update_fraction_of_peak": round(top["update_fraction"], 5),
        "achieved_gflops": round(top["gflops"], 3),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(top["fraction"], 5),
        "torch_threads": torch.get_num_threads(),
        "machine": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
    }

"""Benchmarks, run by ``hlsm bench NAME``: speed measured side by side in one run.

Each benchmark returns a JSON-ready dict with a ``ratio`` field (fast path over reference path) so
that results compare across noisy machines.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from hlsm.design import DesignConfig, make_design
from hlsm.errors import HLSMError
from hlsm.simulate import simulate, simulate_naive
from hlsm.spec import Spec


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_simulate(n: int = 100_000, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Vectorised sampler against the naive per-example sampler on the default design.

    Both draw ``n`` traces from the default design's SFT support (atomic and depth-3 programs,
    full exposure, ``epsilon = 0.05``); the vectorised sampler is timed as the best of 3 runs
    after a warm-up, the naive one once.
    """
    spec = Spec()
    programs = make_design(spec, DesignConfig(seed=seed)).programs("sft")
    kwargs: dict[str, Any] = {"exposure": "full", "epsilon": 0.05}
    simulate(spec, programs, 1000, seed, **kwargs)  # warm-up
    fast = min(_timed(lambda: simulate(spec, programs, n, seed, **kwargs)) for _ in range(3))
    slow = _timed(lambda: simulate_naive(spec, programs, n, seed, progress=progress, **kwargs))
    return {
        "benchmark": "simulate",
        "n": n,
        "programs": len(programs),
        "vectorised_s": round(fast, 4),
        "naive_s": round(slow, 4),
        "vectorised_traces_per_s": round(n / fast),
        "naive_traces_per_s": round(n / slow),
        "ratio": round(slow / fast, 2),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"simulate": bench_simulate}


def run_benchmark(name: str, **kwargs: Any) -> dict[str, Any]:
    try:
        fn = BENCHMARKS[name]
    except KeyError:
        raise HLSMError(f"unknown benchmark '{name}'; available: {', '.join(BENCHMARKS)}") from None
    return fn(**kwargs)

"""Benchmarks, run by ``hlsm bench NAME``: speed measured side by side in one run.

Each benchmark returns a JSON-ready dict with a ``ratio`` field (fast path over reference path) so
that results compare across noisy machines: ``simulate`` (vectorised vs naive sampler), ``sample``
(KV-cache vs no-cache generation), ``rl`` (REINFORCE's sampling and update at the experiment's
model: batched vs per-prompt sampling, fraction of the matmul peak), ``train`` (SFT step with vs
without the fused paths; on CUDA also the model FLOPs utilisation) and ``fit`` (fast exact
likelihood vs Pyro's ``TraceEnum_ELBO``, loss + backward). ``sample``, ``train`` and ``rl`` take
``device = "cpu" | "cuda"``.
"""

from __future__ import annotations

import inspect
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from hlsm.app.lmbench import bench_rl, bench_sample, bench_train
from hlsm.design import DesignConfig, make_design
from hlsm.errors import HLSMError
from hlsm.examples import example_path
from hlsm.parallel import in_fresh_process
from hlsm.runtime import seconds
from hlsm.simulate import simulate, simulate_naive
from hlsm.spec import Spec


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
    fast = min(seconds(lambda: simulate(spec, programs, n, seed, **kwargs)) for _ in range(3))
    slow = seconds(lambda: simulate_naive(spec, programs, n, seed, progress=progress, **kwargs))
    return {
        "benchmark": "simulate",
        "n": n,
        "programs": len(programs),
        "vectorised_s": round(fast, 6),
        "naive_s": round(slow, 6),
        "vectorised_traces_per_s": round(n / fast),
        "naive_traces_per_s": round(n / slow),
        "ratio": round(slow / fast, 2),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


def bench_identify(n: int = 20, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The H-lib checker against the brute-force oracle on ``n`` random tiny designs, and the
    checker's wall time on the default library: every atom plus 200 depth-3 SFT programs and 100 RL
    programs (answer-only) on 256 inputs each, and 2,500 candidates (1,500 unseen depth-3 programs,
    500 each at depths 4 and 5).

    ``ratio`` = oracle time / checker time on the tiny designs (both must agree; checked here).
    """
    from hlsm.identify.checker import identify
    from hlsm.identify.claims import random_design
    from hlsm.runtime import progress_bar
    from hlsm.simulate import concat, population_corpus

    fast = slow = 0.0
    for i in progress_bar(iterable=range(n), disable=not progress, desc="tiny designs"):
        tiny = random_design(seed + i, n_rl=1)
        corpus = tiny.corpus()
        start = time.perf_counter()
        ours = identify(tiny.spec, corpus, tiny.candidates, "lib")
        fast += time.perf_counter() - start
        start = time.perf_counter()
        oracle = tiny.oracle("lib")
        slow += time.perf_counter() - start
        if set(ours.generalisation_set) != oracle.generalisation_set:
            raise HLSMError(f"checker and oracle disagree on random design {seed + i}: please report this")
    spec = Spec()
    design = make_design(spec, DesignConfig(seed=seed, n_sft=200, n_rl=100, n_unseen=1500, n_deeper=500))
    inputs = torch.randint(spec.alphabet, (256, spec.length), generator=torch.Generator().manual_seed(seed))
    corpus = concat(
        [
            population_corpus(spec, design.programs("sft"), "full", inputs=inputs),
            population_corpus(spec, design.programs("rl"), "answer", "rl", inputs=inputs),
        ]
    )
    candidates = list(design.programs("unseen")) + list(design.programs("deeper"))
    times = {}
    for hc in ("lib", "tab"):
        start = time.perf_counter()
        identify(spec, corpus, candidates, hc)
        times[hc] = time.perf_counter() - start
    return {
        "benchmark": "identify",
        "tiny_designs": n,
        "checker_s": round(fast, 3),
        "oracle_s": round(slow, 3),
        "ratio": round(slow / fast, 1),
        "default_library_traces": len(corpus),
        "default_library_candidates": len(candidates),
        "default_library_lib_s": round(times["lib"], 2),
        "default_library_tab_s": round(times["tab"], 2),
    }


def _loss_step(logits: Sequence[torch.Tensor], loss_fn: Callable[[], torch.Tensor]) -> float:
    """One loss + backward at the leaf ``logits`` (gradients reset first); the loss value."""
    for v in logits:
        v.grad = None
    loss = loss_fn()
    loss.backward()
    return float(loss.detach())


def _best_rates(
    logits: Sequence[torch.Tensor], paths: dict[str, Callable[[], torch.Tensor]], steps: int
) -> tuple[dict[str, float], int]:
    """Steps/s of each loss path: 4 rounds of ``steps // 4`` steps, alternating paths; the best round each."""
    best = dict.fromkeys(paths, 0.0)
    per_round = max(1, steps // 4)
    for _ in range(4):
        for name, fn in paths.items():
            start = time.perf_counter()
            for _ in range(per_round):
                _loss_step(logits, fn)
            best[name] = max(best[name], per_round / (time.perf_counter() - start))
    return best, 4 * per_round


def bench_fit(
    n: int | None = None, steps: int = 20, seed: int = 0, progress: bool = True, scale: str = "tiny"
) -> dict[str, Any]:
    """Loss + backward of the fast exact likelihood against Pyro's ``TraceEnum_ELBO``, side by side.

    ``scale="default"`` runs :func:`bench_fit_default` instead (the default library, ``|X| = 262,144``).

    A tiny instance (A = 3, n = 2: |X| = 9; 4 skills, 3 routings), 6 programs of depths 1-3 and a
    corpus of ``n`` traces, half full and half answer-only exposure, ``epsilon = 0.1`` in the
    simulator. Both paths take the same float64 leaf logits: ``alpha = softmax(a)``,
    ``beta = softmax(b)``, ``tables = softmax(t)``; their loss values must agree to 1e-6 relative
    (``equal``). Each path: 2 warm-up steps, then ``steps`` timed in 4 rounds alternating with the
    other path's; the best round's rate is reported. ``ratio`` = fast / pyro steps per second.
    """
    if scale == "default":
        return bench_fit_default(1024 if n is None else n, steps=steps, seed=seed, progress=progress)
    if scale != "tiny":
        raise HLSMError(f"bench fit has scales 'tiny' and 'default', got {scale!r}")
    n = 300 if n is None else n
    from pyro.infer import TraceEnum_ELBO

    from hlsm.infer.likelihood import CorpusLikelihood
    from hlsm.infer.model import HLSMParams, hlsm
    from hlsm.programs import Program
    from hlsm.simulate import concat

    spec = Spec(
        alphabet=3,
        length=2,
        skills=("reverse", "shift_up", "sort", "fill_first"),
        routings=("chain", "restart", "add_first"),
    )
    support = [
        Program.atomic(0),
        Program.atomic(2),
        Program(((0, 1), (2, 3))),
        Program(((1, 0), (0, 2))),
        Program(((0, 1), (2, 2), (1, 3))),
        Program(((2, 3), (1, 0), (0, 1))),
    ]
    corpus = concat(
        [
            simulate(spec, support, n - n // 2, seed, exposure="full", epsilon=0.1),
            simulate(spec, support, n // 2, seed + 1, exposure="answer", epsilon=0.1),
        ]
    )
    gen = torch.Generator().manual_seed(seed)
    k, m, x = spec.num_skills, spec.num_routings, spec.num_states
    logits = [
        torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()
        for shape in ((k, k), (m, m), (k, x, x))
    ]
    fast_lik = CorpusLikelihood(spec, support, corpus)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)

    def loss_fast() -> torch.Tensor:
        a, b, t = (torch.softmax(v, -1) for v in logits)
        return -fast_lik(a, b, tables=t)

    def loss_pyro() -> torch.Tensor:
        a, b, t = (torch.softmax(v, -1) for v in logits)
        params = HLSMParams(a, b, 0.1, t)
        return elbo.differentiable_loss(lambda: hlsm(spec, params, support, data=corpus), lambda: None)

    values = {"fast": _loss_step(logits, loss_fast), "pyro": _loss_step(logits, loss_pyro)}
    _loss_step(logits, loss_fast), _loss_step(logits, loss_pyro)
    best, timed = _best_rates(logits, {"fast": loss_fast, "pyro": loss_pyro}, steps)
    equal = abs(values["fast"] - values["pyro"]) <= 1e-6 * abs(values["pyro"])
    if not equal:
        raise HLSMError(f"fast and Pyro losses disagree ({values['fast']} vs {values['pyro']}): please report this")
    return {
        "benchmark": "fit",
        "traces": len(corpus),
        "programs": len(support),
        "num_states": x,
        "steps": timed,
        "loss_fast": values["fast"],
        "loss_pyro": values["pyro"],
        "equal": equal,
        "fast_steps_per_s": round(best["fast"], 2),
        "pyro_steps_per_s": round(best["pyro"], 2),
        "ratio": round(best["fast"] / best["pyro"], 2),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


DEFAULT_DESIGN = example_path("default_library")


def _peak_fit(spec: Spec, corpus: Any, support: list[Any], steps: int) -> dict[str, float]:
    """A one-restart scalable fit of ``steps`` steps in this (fresh) process: wall time and peak memory."""
    import resource

    from hlsm.infer.fitting import FitConfig, fit

    start = time.perf_counter()
    config = FitConfig(steps=steps, restarts=1, tables="library", objective="scalable", tol=0.0, progress=False)
    result = fit(spec, corpus, support, config)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "interval_width": float(result.restarts[0].interval_width or 0.0),
    }


def bench_fit_default(n: int = 1024, steps: int = 20, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The scalable likelihood on the default library (``|X| = 262,144``) against the best feasible Pyro path.

    Data from ``example:default_library``: ``n`` golden SFT traces and ``n // 16``
    answer-only RL traces, ``epsilon = 0.05``. Pyro's enumerated model cannot hide a state of this
    ``|X|``, so the feasible Pyro path is ``TraceEnum_ELBO`` on the golden traces alone (library
    tables, ``epsilon`` fixed): both are timed there side by side (loss + backward in alternating
    rounds, best round; losses must agree to 1e-6 relative), and the scalable likelihood alone on
    the whole corpus. ``peak_rss_mb`` is the peak memory of a separate process that builds the whole
    corpus's likelihood and runs a ``steps``-step fit (``fit_seconds``), with nothing else in it.
    """
    from pyro.infer import TraceEnum_ELBO

    from hlsm.app.designfile import load_design
    from hlsm.infer.model import HLSMParams, hlsm
    from hlsm.infer.scalable import ScalableLikelihood
    from hlsm.simulate import concat

    design = load_design(DEFAULT_DESIGN)
    spec, support = design.spec, list(design.sft) + list(design.rl)
    golden = simulate(spec, list(design.sft), n, seed, epsilon=0.05, exposure=design.sft_exposure, split="sft")
    answers = simulate(spec, list(design.rl), max(1, n // 16), seed + 1, epsilon=0.05, exposure=design.rl_exposure)
    corpus = concat([golden, answers])
    gen = torch.Generator().manual_seed(seed)
    k, m = spec.num_skills, spec.num_routings
    logits = [torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_() for shape in ((k, k), (m, m))]
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ours = ScalableLikelihood(spec, support, golden)
    timings["build_golden_s"] = time.perf_counter() - start
    start = time.perf_counter()
    whole = ScalableLikelihood(spec, support, corpus)
    timings["build_all_s"] = time.perf_counter() - start
    elbo = TraceEnum_ELBO(max_plate_nesting=1)

    def loss_ours() -> torch.Tensor:
        return -ours(torch.softmax(logits[0], -1), torch.softmax(logits[1], -1), 0.05)

    def loss_all() -> torch.Tensor:
        return -whole(torch.softmax(logits[0], -1), torch.softmax(logits[1], -1), 0.05)

    def loss_pyro() -> torch.Tensor:
        params = HLSMParams(torch.softmax(logits[0], -1), torch.softmax(logits[1], -1), 0.05, None)
        return elbo.differentiable_loss(lambda: hlsm(spec, params, support, data=golden), lambda: None)

    values = {"scalable": _loss_step(logits, loss_ours), "pyro": _loss_step(logits, loss_pyro)}
    _loss_step(logits, loss_all)
    paths = {"scalable": loss_ours, "pyro": loss_pyro, "scalable_all": loss_all}
    best, _ = _best_rates(logits, paths, steps)
    if abs(values["scalable"] - values["pyro"]) > 1e-6 * abs(values["pyro"]):
        raise HLSMError(
            f"scalable and Pyro losses disagree ({values['scalable']} vs {values['pyro']}): please report this"
        )
    peak = in_fresh_process(_peak_fit, spec, corpus, support, steps)
    return {
        "benchmark": "fit",
        "scale": "default",
        "num_states": spec.num_states,
        "golden_traces": len(golden),
        "answer_only_traces": len(answers),
        "build_golden_s": round(timings["build_golden_s"], 2),
        "build_all_s": round(timings["build_all_s"], 2),
        "loss_scalable": values["scalable"],
        "loss_pyro": values["pyro"],
        "equal": True,
        "scalable_steps_per_s": round(best["scalable"], 2),
        "pyro_steps_per_s": round(best["pyro"], 2),
        "ratio": round(best["scalable"] / best["pyro"], 2),
        "scalable_all_steps_per_s": round(best["scalable_all"], 2),
        "pyro_all": "infeasible: the enumerated model cannot hide a state of |X| = 262,144",
        "fit_steps": steps,
        "fit_seconds": round(peak["seconds"], 2),
        "fit_interval_width": round(peak["interval_width"], 3),
        "peak_rss_mb": round(peak["peak_rss_mb"], 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "simulate": bench_simulate,
    "identify": bench_identify,
    "sample": bench_sample,
    "train": bench_train,
    "rl": bench_rl,
    "fit": bench_fit,
}


def run_benchmark(name: str, **kwargs: Any) -> dict[str, Any]:
    try:
        fn = BENCHMARKS[name]
    except KeyError:
        raise HLSMError(f"unknown benchmark '{name}'; available: {', '.join(BENCHMARKS)}") from None
    accepted = inspect.signature(fn).parameters
    unsupported = sorted(k.replace("_", "-") for k in kwargs if k not in accepted)
    if unsupported:
        raise HLSMError(f"benchmark '{name}' has no option(s) {', '.join('--' + k for k in unsupported)}")
    return fn(**kwargs)

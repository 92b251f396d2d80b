"""The Bayesian view of identifiability: is a fitted model's answer on an unseen program determined?

For every candidate program, the fitted restarts' posterior predictive answers
(:func:`hlsm.infer.predictive.answer_distribution`, on every input state) are summarised as

- ``confidence``: the smallest, over inputs, probability of the best restart's modal answer;
- ``accuracy``: the fraction of inputs whose modal answer is the true (noiseless) answer;
- ``agreement``: the fraction of inputs on which every *near-best* restart (final objective within
  ``near`` nats of the best) gives the same modal answer.

Library tables fitted at scale (no tables built, :func:`hlsm.infer.fitting.uses_scalable`) use
:func:`hlsm.infer.predictive.answer_bounds` on given inputs instead: the modal answer of the
heaviest corruption-free paths, and as ``confidence`` a certified lower bound on its probability
(so a ``confident`` threshold above 0.5 makes it the predictive mode for certain).

The verdict ``identified`` is "confident (``confidence >= confident``), correct on every input, the
near-best restarts agree, and no binding row the program uses is left open by the data". An answer
left free by the data sits on a flat ridge of the likelihood: restarts land on different points of
it, and a Dirichlet prior with concentration > 1 pulls a free binding row toward uniform, so the
predictive spreads over the competing answers. Neither is guaranteed: without a prior, Adam (which
moves by the sign of the gradient, not its size) can push a row whose likelihood varies by a
thousandth of a nat onto skills that happen to agree on a candidate, in every restart alike. So,
given the corpus likelihood, the view also tests each row (:func:`open_rows`): a skill or routing
is *open* for a symbol when the data hold less than ``evidence`` nats against it (the gradient of
``log p(corpus)`` in that binding, against the row's best); a program is identified only if its
answer is the same whichever open binding each of its symbols takes. The verdict is compared with
the exact checker's generalisation set (:func:`hlsm.identify.checker.identify`) in a confusion
table (``theory/identifiability.md``; the first two of the three views of docs/index.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.identify.checker import identify
from hlsm.infer.fitting import FitConfig, FitResult, fit, likelihood_for
from hlsm.infer.model import HLSMParams
from hlsm.infer.predictive import answer_bounds, answer_distribution, true_answers
from hlsm.programs import NO_ROUTING, Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

DEFAULT_CONFIDENT = 0.9
"""Default confidence threshold: above a 3-of-4 majority of competing answers (0.75). With noisy
data it must stay below the noise-limited confidence, about ``(1 - eps)^L`` at depth ``L``."""

DEFAULT_EVIDENCE = 1.0
"""A binding is open for a symbol while pinning the symbol's row wholly on it costs the corpus less
than this many nats of log-likelihood (:func:`open_rows`). A trace that the binding fails to explain
costs about ``-log(eps / |X|)`` nats (7 at ``eps = 0.1`` and ``|X| = 9``, far more at scale), so 1.0
means "no trace rules it out"; a row the data determine as a mixture loses more than that when
pinned on any one of its skills."""

SCREEN = 3.0
"""Bindings whose gradient of ``log p(corpus)`` lies more than this below the row's largest are closed
without being pinned: near a fit that puts a row's mass ``a`` on one skill, the gap is about
``n / a`` for a binding ``n`` traces rule out, so this screens out two or more."""

DEFAULT_NEAR = 1.0
"""Default width of the band of near-best restarts whose predictions must agree, in nats of
``objective / data_weight`` (the log-likelihood scale of the corpus as given)."""


class ViewError(HLSMError):
    """Inputs the Bayesian view cannot use; the message names the fix."""


@dataclass(frozen=True)
class ProgramView:
    """The fitted model's view of one program (see the module docstring)."""

    program: str
    depth: int
    confidence: float
    accuracy: float
    agreement: float
    identified: bool
    open_symbols: tuple[str, ...] = ()  # symbols whose open bindings change the answer (:func:`open_rows`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"open_symbols": list(self.open_symbols)}


Likelihood = Any
"""A :class:`hlsm.infer.likelihood.CorpusLikelihood` or :class:`hlsm.infer.scalable.ScalableLikelihood`."""


def _loglik(spec: Spec, lik: Likelihood, alpha: Tensor, beta: Tensor, params: HLSMParams) -> Tensor:
    from hlsm.infer.likelihood import library_tables
    from hlsm.infer.scalable import ScalableLikelihood

    if isinstance(lik, ScalableLikelihood):
        return lik(alpha, beta, params.epsilon)
    tables = params.tables if params.tables is not None else library_tables(spec, params.epsilon)
    return lik(alpha, beta, tables=tables.to(alpha.dtype))


def open_rows(
    spec: Spec, lik: Likelihood, params: HLSMParams, evidence: float = DEFAULT_EVIDENCE
) -> tuple[Tensor, Tensor]:
    """``(alpha_open, beta_open)``: boolean ``(symbols, K)`` and ``(routing symbols, M)`` masks of the
    bindings the data leave open for each symbol at ``params`` (module docstring).

    A binding is open when the row put wholly on it loses less than ``evidence`` nats of
    ``log p(corpus)`` against ``params`` (the other rows as fitted). Only the bindings whose gradient
    lies within :data:`SCREEN` of the row's largest are pinned and scored; a row with one such
    binding has just that one open. A row no trace reads has zero gradient: every binding is open.
    One row is pinned at a time, so bindings open only jointly (two rows that change the answer only
    together) are not found. With a :class:`~hlsm.infer.scalable.ScalableLikelihood` that is not
    exact, the scores are its certified lower bounds, not the likelihood itself.
    """
    if not evidence >= 0.0:
        raise ViewError(f"evidence must be >= 0 nats, got {evidence}")
    alpha = params.alpha.detach().clone().requires_grad_()
    beta = params.beta.detach().clone().requires_grad_()
    ll = _loglik(spec, lik, alpha, beta, params)
    grads = torch.autograd.grad(ll, (alpha, beta), allow_unused=True)
    base = float(ll.detach())
    out = []
    for which, table, grad in (("alpha", params.alpha, grads[0]), ("beta", params.beta, grads[1])):
        g = torch.zeros_like(table) if grad is None else grad
        band = g >= g.max(-1, keepdim=True).values - SCREEN
        opened = band.clone()
        with torch.no_grad():
            for row in range(table.shape[0]):
                columns = band[row].nonzero().flatten().tolist()
                if len(columns) < 2 or not bool(g[row].any()):
                    continue  # one candidate binding, or a row no trace reads (all open)
                for column in columns:
                    pinned = _pinned(params, which, row, column)
                    score = float(_loglik(spec, lik, pinned.alpha, pinned.beta, params)) - base
                    opened[row, column] = score > -evidence
        out.append(opened)
    return out[0], out[1]


def _modal(spec: Spec, params: HLSMParams, program: Program, inputs: Tensor | None, bounded: bool) -> Tensor:
    if bounded and inputs is not None:
        return answer_bounds(spec, params, program, inputs)[0]
    return answer_distribution(spec, params, program, inputs).argmax(-1)


def _pinned(params: HLSMParams, which: str, row: int, column: int) -> HLSMParams:
    """``params`` with binding row ``row`` of ``which`` (alpha or beta) put wholly on ``column``."""
    table = getattr(params, which).clone()
    table[row] = 0.0
    table[row, column] = 1.0
    return replace(params, **{which: table})


def _open_symbols(
    spec: Spec,
    params: HLSMParams,
    program: Program,
    inputs: Tensor | None,
    bounded: bool,
    rows: tuple[Tensor, Tensor],
    modal: Tensor,
) -> tuple[str, ...]:
    """The symbols of ``program`` with an open binding under which some input's answer is not ``modal``."""
    out = []
    uses = [("alpha", k, spec.skill_symbols[k]) for k in sorted(set(program.skills))]
    uses += [("beta", m, spec.routing_symbols[m]) for m in sorted(set(program.routings)) if m != NO_ROUTING]
    for which, row, name in uses:
        mask = rows[0 if which == "alpha" else 1][row]
        if int(mask.sum()) < 2:
            continue
        for column in mask.nonzero().flatten().tolist():
            if not torch.equal(_modal(spec, _pinned(params, which, row, column), program, inputs, bounded), modal):
                out.append(name)
                break
    return tuple(out)


def near_best(result: FitResult, near: float = DEFAULT_NEAR) -> list[int]:
    """Indices of the restarts whose ``objective / data_weight`` is within ``near`` nats of the best."""
    scale = result.config.data_weight
    best = result.restarts[result.best].objective / scale
    return [i for i, r in enumerate(result.restarts) if r.objective / scale >= best - near]


def bayesian_view(
    spec: Spec,
    result: FitResult,
    candidates: Sequence[Program],
    *,
    confident: float = DEFAULT_CONFIDENT,
    near: float = DEFAULT_NEAR,
    inputs: Tensor | None = None,
    opened: tuple[Tensor, Tensor] | None = None,
) -> list[ProgramView]:
    """One :class:`ProgramView` per candidate, on every input state (default) or ``inputs`` ``(B, n)``.

    With ``opened`` (:func:`open_rows` of the corpus likelihood at the best restart's parameters), a
    candidate is identified only if no binding that the data leave open changes its answer; without
    it the view trusts the fit's rows (flat ones included)."""
    if not 0.0 < confident <= 1.0:
        raise ViewError(f"confident must be in (0, 1], got {confident}")
    if not near >= 0.0:
        raise ViewError(f"near must be >= 0 nats, got {near}")
    band = near_best(result, near)
    params = [result.params(i) for i in band]
    bounded = params[0].tables is None and result.restarts[result.best].interval_width is not None
    if bounded and inputs is None:
        raise ViewError("a fit at scale (no tables built) is viewed on given inputs; pass inputs=(B, n) states")
    if bounded and confident <= 0.5:
        raise ViewError(f"at scale confidence is a lower bound, so confident must exceed 0.5, got {confident}")
    fitted = params[band.index(result.best)]
    out = []
    for program in candidates:
        truth = true_answers(spec, program, inputs)
        if bounded and inputs is not None:
            answers = [answer_bounds(spec, p, program, inputs) for p in params]
            modal, lower = answers[band.index(result.best)]
            confidence = float(lower.min())
            modes = torch.stack([m for m, _ in answers])
        else:
            probs = [answer_distribution(spec, p, program, inputs) for p in params]
            best = probs[band.index(result.best)]
            modal = best.argmax(-1)
            confidence = float(best.max(-1).values.min())
            modes = torch.stack([p.argmax(-1) for p in probs])  # (R, B)
        accuracy = float((modal == truth).double().mean())
        agreement = float((modes == modes[0]).all(0).double().mean())
        free = () if opened is None else _open_symbols(spec, fitted, program, inputs, bounded, opened, modal)
        identified = confidence >= confident and accuracy == 1.0 and agreement == 1.0 and not free
        view = ProgramView(program.names(spec), program.depth, confidence, accuracy, agreement, identified, free)
        out.append(view)
    return out


def corpus_likelihood(spec: Spec, support: Sequence[Program], corpus: Corpus, config: FitConfig) -> Likelihood:
    """The likelihood a fit of ``config`` maximises (for a Pyro fit, the fast objective's: the same function)."""
    fast = config if config.objective == "scalable" else replace(config, objective="fast")
    return likelihood_for(spec, support, corpus, fast)


def confusion(views: Sequence[ProgramView], in_checker_set: Sequence[bool]) -> dict[str, Any]:
    """The 2 x 2 table (checker identified / not) x (VI identified / not), with the agreement rate.

    ``in_checker_set[i]`` says whether candidate ``i`` is in the exact checker's generalisation set.
    Keys: ``both``, ``checker_only``, ``vi_only``, ``neither``, ``total``, ``agreement``.
    """
    if len(views) != len(in_checker_set):
        raise ViewError(f"{len(views)} views but {len(in_checker_set)} checker verdicts; give one per candidate")
    table = {"both": 0, "checker_only": 0, "vi_only": 0, "neither": 0}
    for view, exact in zip(views, in_checker_set, strict=True):
        key = (
            ("both" if view.identified else "checker_only") if exact else ("vi_only" if view.identified else "neither")
        )
        table[key] += 1
    total = len(views)
    agree = table["both"] + table["neither"]
    return {**table, "total": total, "agreement": agree / total if total else float("nan")}


def add_confusions(tables: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum confusion tables (of several designs) and recompute the agreement rate."""
    keys = ("both", "checker_only", "vi_only", "neither", "total")
    out: dict[str, Any] = {k: sum(int(t[k]) for t in tables) for k in keys}
    out["agreement"] = (out["both"] + out["neither"]) / out["total"] if out["total"] else float("nan")
    return out


@dataclass(frozen=True, eq=False)
class Comparison:
    """The Bayesian and exact views of one design: per-candidate views, checker verdicts, confusion."""

    views: tuple[ProgramView, ...]
    checker: tuple[bool, ...]
    table: dict[str, Any]
    result: FitResult

    def rows(self) -> list[dict[str, Any]]:
        return [{**v.to_dict(), "checker": c} for v, c in zip(self.views, self.checker, strict=True)]


def compare_with_checker(
    spec: Spec,
    corpus: Corpus,
    support: Sequence[Program],
    candidates: Sequence[Program],
    config: FitConfig,
    *,
    confident: float = DEFAULT_CONFIDENT,
    near: float = DEFAULT_NEAR,
) -> Comparison:
    """Fit ``corpus``, take the Bayesian view of ``candidates`` and compare with the exact checker.

    The checker's hypothesis class follows the fitted table class: library tables <-> H-lib, dense
    tables <-> H-tab. The checker reads the corpus's states as noiseless observations.
    """
    result = fit(spec, corpus, support, config)
    opened = open_rows(spec, corpus_likelihood(spec, support, corpus, config), result.params())
    views = bayesian_view(spec, result, candidates, confident=confident, near=near, opened=opened)
    ident = identify(spec, corpus, candidates, "lib" if config.tables == "library" else "tab")
    in_set = tuple(v.identified for v in ident.verdicts)
    return Comparison(tuple(views), in_set, confusion(views, in_set), result)

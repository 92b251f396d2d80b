"""Context-dependent bindings: which library skill does each symbol execute, after which predecessor?

The probe of a transformer (``hlsm probe``) reads traces in which every intermediate state is
written, so each step is a *record*: the step's skill symbol ``s``, its routing symbol ``t``, its
*context* ``c`` (the previous step's skill symbol, or ``start`` at step 1), the history ``H`` the
step reads (the writer's own previous states) and the state it wrote, ``y``. The model of one
record is the H-lib step with bindings that may depend on the context::

    p(y | H) = (1 - eps[s, c]) sum_{m, k} beta[t, m] alpha[s, c, k] [y == f_k(rho_m(H))] + eps[s, c] / |X|.

``alpha[s, c]`` is the binding of symbol ``s`` in context ``c`` (a distribution over library skills),
``eps[s, c]`` the share of outputs that no library module explains (*unexplained*), and ``beta`` the
routing bindings (not context-dependent). With every state shown the selections are the only
latent variables, so the MAP estimate is found exactly by EM: the E step gives each record's
posterior over ``(m, k)`` and the unexplained component, the M step renormalises expected counts
(plus ``concentration - 1`` pseudo-counts per row). :func:`fit_context` returns it;
:func:`entanglement` summarises how far the steps move off each symbol's own skill (the task's, or
its context-free majority binding; ties with another skill count as the own skill),
and :func:`bootstrap_context` gives standard errors by resampling traces.

What the probe cannot identify (``theory/identifiability.md``, C3): when several library skills give
the same output on a record (a many-to-one skill, or an input on which two skills agree), the
record does not say which ran; EM splits its mass between them in proportion to the other records.
:attr:`ContextFit.ambiguous` counts the records with more than one explaining module.

:func:`simulate_planted` draws records from planted context-dependent bindings (the instrument's
validation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.programs import NO_ROUTING, Program
from hlsm.spec import Spec


class ContextError(HLSMError):
    """Records or settings the context model cannot use; the message names the fix."""


@dataclass(frozen=True)
class StepRecords:
    """Steps of golden-format traces, one row per step.

    Attributes
    ----------
    symbol : Tensor
        ``(R,)`` skill symbol of the step.
    context : Tensor
        ``(R,)`` previous step's skill symbol, or ``K_sym`` (``start``) at step 1.
    routing : Tensor
        ``(R,)`` routing symbol (``M_sym`` for an atomic program's step).
    hits : Tensor
        ``(R, M + 1, K)`` bool: ``hits[r, m, k]`` iff library skill ``k`` on routing ``m``'s view of the
        record's history gives the written state (column ``M`` is an atomic step's own input).
    trace : Tensor
        ``(R,)`` index of the trace the step belongs to (bootstrap resamples traces).
    step : Tensor
        ``(R,)`` 1-based position of the step in its program.
    """

    symbol: Tensor
    context: Tensor
    routing: Tensor
    hits: Tensor
    trace: Tensor
    step: Tensor

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    def index(self, rows: Tensor) -> StepRecords:
        return StepRecords(*(getattr(self, f)[rows] for f in _FIELDS))

    @staticmethod
    def from_states(spec: Spec, programs: Sequence[Program], states: Sequence[Sequence[Sequence[int]]]) -> StepRecords:
        """Records of traces given as states: ``states[i]`` is ``[x_0, x_1, ...]`` as written for ``programs[i]``.

        A trace may stop early (fewer states than its depth: the writer's output became unreadable);
        its written steps are kept. Each step reads the trace's own previous states.
        """
        if len(programs) != len(states):
            raise ContextError(f"{len(programs)} programs but {len(states)} traces; give one per trace")
        rows: dict[str, list[Any]] = {f: [] for f in ("symbol", "context", "routing", "trace", "step", "hist", "y")}
        for i, (program, written) in enumerate(zip(programs, states, strict=True)):
            written = [tuple(int(v) for v in x) for x in written]
            for l in range(1, min(len(written), program.depth + 1)):
                m, k = program.steps[l - 1]
                rows["symbol"].append(k)
                rows["context"].append(program.steps[l - 2][1] if l > 1 else spec.num_skills)
                rows["routing"].append(spec.num_routings if m == NO_ROUTING else m)
                rows["trace"].append(i)
                rows["step"].append(l)
                rows["hist"].append(written[:l])
                rows["y"].append(written[l])
        routing = torch.tensor(rows["routing"], dtype=torch.long)
        hits = _hits(spec, rows["hist"], rows["y"])
        atomic = routing == spec.num_routings  # an atomic step reads x_0 itself; a compound one, a routing
        hits[atomic, :-1] = False
        hits[~atomic, -1] = False
        return StepRecords(
            torch.tensor(rows["symbol"], dtype=torch.long),
            torch.tensor(rows["context"], dtype=torch.long),
            routing,
            hits,
            torch.tensor(rows["trace"], dtype=torch.long),
            torch.tensor(rows["step"], dtype=torch.long),
        )


_FIELDS = ("symbol", "context", "routing", "hits", "trace", "step")


def _hits(spec: Spec, histories: list[list[tuple[int, ...]]], outputs: list[tuple[int, ...]]) -> Tensor:
    """``(R, M + 1, K)``: which (routing, skill) reproduces each written state from its history."""
    r, m_all, k_all = len(outputs), spec.num_routings, spec.num_skills
    out = torch.zeros(r, m_all + 1, k_all, dtype=torch.bool)
    if r == 0:
        return out
    y = spec.encode(torch.tensor(outputs, dtype=torch.long))
    by_length: dict[int, list[int]] = {}
    for i, h in enumerate(histories):
        by_length.setdefault(len(h), []).append(i)
    for rows in by_length.values():
        idx = torch.tensor(rows)
        hist = torch.tensor([histories[i] for i in rows], dtype=torch.long)  # (B, length, n)
        views = [spec.apply_routing(m, hist) for m in range(m_all)] + [hist[:, 0]]
        for m, view in enumerate(views):
            for k in range(k_all):
                out[idx, m, k] = spec.encode(spec.apply_skill(k, view)) == y[idx]
    return out


@dataclass(frozen=True)
class ContextFit:
    """MAP context-dependent bindings (module docstring).

    Attributes
    ----------
    alpha : Tensor
        ``(K_sym, K_sym + 1, K)``: skill binding of each symbol in each context (last: ``start``).
    epsilon : Tensor
        ``(K_sym, K_sym + 1)``: unexplained share per symbol and context.
    beta : Tensor
        ``(M_sym + 1, M + 1)``: routing bindings (last row and column: atomic steps).
    counts : Tensor
        ``(K_sym, K_sym + 1)``: records per symbol and context (0: the context was never observed,
        its row is the prior's).
    ambiguous : int
        Records explained by more than one (routing, skill).
    log_likelihood : float
        ``log p(records)`` at the estimate (``-log|X|`` per unexplained record included).
    iterations : int
    """

    alpha: Tensor
    epsilon: Tensor
    beta: Tensor
    counts: Tensor
    ambiguous: int
    log_likelihood: float
    iterations: int

    def binding(self, symbol: int, context: int) -> int:
        """The most probable library skill of ``symbol`` in ``context``."""
        return int(self.alpha[symbol, context].argmax())


def fit_context(
    spec: Spec,
    records: StepRecords,
    *,
    contexts: bool = True,
    concentration: float = 1.0,
    iterations: int = 500,
    tol: float = 1e-10,
    beta: Tensor | None = None,
) -> ContextFit:
    """EM for the MAP bindings of :class:`ContextFit` (``contexts=False``: one context for every step).

    ``beta`` fixes the routing bindings (e.g. the identity of a task with known routings); default
    they are fitted too. ``concentration >= 1`` is a symmetric Dirichlet on every binding row and a
    Beta(c, c) on every ``eps``; 1 is maximum likelihood.
    """
    if not math.isfinite(concentration) or concentration < 1:
        raise ContextError(f"concentration must be a finite number >= 1, got {concentration}")
    if iterations < 1:
        raise ContextError(f"iterations must be >= 1, got {iterations}")
    if len(records) == 0:
        raise ContextError("no step records: every trace was unreadable from its first step")
    s_all, k_all, m_all = spec.num_skills, spec.num_skills, spec.num_routings
    c_all = s_all + 1
    ctx = records.context if contexts else torch.full_like(records.context, s_all)
    hits = records.hits.to(torch.float64)  # (R, M + 1, K)
    route = records.routing
    alpha = torch.full((s_all, c_all, k_all), 1.0 / k_all, dtype=torch.float64)
    eps = torch.full((s_all, c_all), 0.1, dtype=torch.float64)
    fixed = beta is not None
    b = torch.full((m_all + 1, m_all + 1), 1.0 / m_all, dtype=torch.float64)
    b[:, -1], b[-1] = 0.0, 0.0
    b[-1, -1] = 1.0
    if beta is not None:
        b[: beta.shape[0], : beta.shape[1]] = beta.to(torch.float64)
    prior = concentration - 1.0
    last = -math.inf
    size = float(spec.num_states)
    iteration = 0

    def e_step(alpha: Tensor, eps: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each record's weight per (routing, skill), its noise term and its total probability."""
        a = alpha[records.symbol, ctx]  # (R, K)
        e = eps[records.symbol, ctx]  # (R,)
        w = (1 - e)[:, None, None] * b[route][:, :, None] * a[:, None, :] * hits  # (R, M + 1, K)
        noise = e / size
        return w, noise, w.sum((1, 2)) + noise

    for iteration in range(1, iterations + 1):  # noqa: B007 (the count is reported)
        w, noise, total = e_step(alpha, eps, b)
        loglik = float(total.log().sum())
        resp = w / total[:, None, None]
        u = noise / total
        # M step: expected counts plus pseudo-counts
        ak = torch.zeros(s_all, c_all, k_all, dtype=torch.float64)
        ak.index_put_((records.symbol, ctx), resp.sum(1), accumulate=True)
        mass = (ak + prior).sum(-1, keepdim=True)
        alpha = torch.where(mass > 0, (ak + prior) / mass.clamp(min=1e-300), torch.full_like(ak, 1.0 / k_all))
        where = (records.symbol, ctx)
        n_sc = torch.zeros(s_all, c_all, dtype=torch.float64).index_put_(where, torch.ones_like(u), accumulate=True)
        u_sc = torch.zeros(s_all, c_all, dtype=torch.float64).index_put_(where, u, accumulate=True)
        eps = (u_sc + prior) / (n_sc + 2 * prior).clamp(min=1e-300)
        eps = torch.where(n_sc + 2 * prior > 0, eps, torch.full_like(eps, 0.5))
        if not fixed:
            bm = torch.zeros_like(b).index_add_(0, route, resp.sum(2))
            rows = bm[:-1, :-1] + prior
            b[:-1, :-1] = rows / rows.sum(-1, keepdim=True).clamp(min=1e-300)
        if abs(loglik - last) <= tol * max(1.0, abs(loglik)):
            break
        last = loglik
    counts = torch.zeros(s_all, c_all, dtype=torch.long).index_put_(
        (records.symbol, ctx), torch.ones_like(records.symbol), accumulate=True
    )
    ambiguous = int((records.hits.sum((1, 2)) > 1).sum())
    final = float(e_step(alpha, eps, b)[2].log().sum())  # at the returned estimate, after the last M step
    return ContextFit(alpha, eps, b, counts, ambiguous, final, iteration)


REFERENCES = ("true", "majority")
"""What a symbol's own skill is in :func:`entanglement`: the task's (symbol ``s`` is skill ``s``),
or the skill the context-free fit binds it to (its majority behaviour, for traces whose truth is
unknown). With ``majority``, a context that holds most of a symbol's records can flip the
reference, and the real substitution then looks like the own skill."""


@dataclass(frozen=True)
class Entanglement:
    """How far bindings move off each symbol's own skill (:func:`entanglement`).

    ``index[g]`` for a group of contexts ``g`` (``seen``, ``unseen``, ``first``) is the share of its
    explained steps that the symbol's own skill ``k*(s)`` does not reproduce: each record weighted by
    its posterior explained share ``1 - u_r``, and counted as off only when no routing of the step
    applies ``k*(s)`` to give the written state. A step on which another skill agrees with the own
    skill (a *tie*: ``sort`` then ``running_max``) counts as the own skill, so the index is exactly 0
    when every explained step is the own skill's. ``ties[g]`` is the share of explained steps that
    another skill also reproduces (what a mass-based index would count against the own skill:
    EM splits a tied step's mass). ``unexplained[g]`` is the mean over the same records of each one's
    posterior probability of being unexplained (at EM's fixed point without a prior, the
    records-weighted mean of ``eps[s, c]``; unlike it, right for groups that cut across cells too,
    such as the sampling mode);
    ``per_symbol[s][g]`` the index restricted to symbol ``s``; ``reference_kind`` one of
    :data:`REFERENCES`.
    """

    reference: list[int]
    index: dict[str, float]
    unexplained: dict[str, float]
    records: dict[str, int]
    per_symbol: dict[int, dict[str, float]]
    ties: dict[str, float]
    reference_kind: str = "majority"


def entanglement(
    spec: Spec,
    fit: ContextFit,
    free: ContextFit,
    records: StepRecords,
    groups: Sequence[str],
    *,
    reference: str = "true",
) -> Entanglement:
    """The entanglement of ``fit``; ``groups[r]`` labels each record. ``reference``: :data:`REFERENCES`
    (``majority`` reads each symbol's own skill from the context-free ``free`` fit)."""
    if len(groups) != len(records):
        raise ContextError(f"{len(groups)} group labels for {len(records)} records")
    if reference not in REFERENCES:
        raise ContextError(f"reference must be one of {list(REFERENCES)}, got {reference!r}")
    s_all = fit.alpha.shape[0]
    if reference == "true":
        own = list(range(s_all))
    else:
        own = [int(free.alpha[s, -1].argmax()) for s in range(s_all)]
    ref = torch.tensor(own)[records.symbol]
    routes = fit.beta[records.routing]  # (R, M + 1): the routings the fit gives each step's symbol
    usable = routes > 1e-3 * routes.amax(-1, keepdim=True)
    rows_ = torch.arange(len(records))
    by_own = (records.hits[rows_, :, ref] & usable).any(1)  # the own skill reproduces the step
    others = records.hits & usable[:, :, None]
    others[rows_, :, ref] = False
    by_other = others.any((1, 2))
    posterior = unexplained_posterior(spec, fit, records)  # (R,): each record's own unexplained share
    weight = 1 - posterior
    off = (~by_own).to(weight.dtype)
    tied = (by_own & by_other).to(weight.dtype)
    unexpl = posterior

    def mean(values: Tensor, rows: Tensor) -> float:
        total = float(weight[rows].sum())
        return float((weight[rows] * values[rows]).sum()) / total if total > 0 else math.nan

    names = sorted(set(groups))
    label = torch.tensor([names.index(g) for g in groups])
    index, unexplained, count, ties = {}, {}, {}, {}
    per_symbol: dict[int, dict[str, float]] = {}
    for j, g in enumerate(names):
        rows = label == j
        count[g] = int(rows.sum())
        index[g] = mean(off, rows) if count[g] else math.nan
        ties[g] = mean(tied, rows) if count[g] else math.nan
        unexplained[g] = float(unexpl[rows].mean()) if count[g] else math.nan
        for s in records.symbol[rows].unique().tolist():
            sel = rows & (records.symbol == s)
            per_symbol.setdefault(s, {})[g] = mean(off, sel)
    return Entanglement(own, index, unexplained, count, per_symbol, ties, reference)


@dataclass(frozen=True)
class BootstrapErrors:
    """Standard errors over trace resamples: per context group (``index_se``, ``unexplained_se``) and per
    observed ``(symbol, context)`` cell (``own_se``: binding mass on the symbol's own skill;
    ``unexplained_se``). Replicates where a quantity is undefined are skipped."""

    groups: dict[str, dict[str, float]]
    cells: dict[tuple[int, int], dict[str, float]]


def _sd(values: list[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return float(torch.tensor(kept, dtype=torch.float64).std()) if len(kept) >= 2 else math.nan


def bootstrap_context(
    spec: Spec,
    records: StepRecords,
    groups: Sequence[str],
    *,
    replicates: int = 50,
    seed: int = 0,
    concentration: float = 1.0,
    beta: Tensor | None = None,
    reference: str = "true",
) -> BootstrapErrors:
    """Standard errors of the entanglement index, the unexplained share and every cell's binding, resampling traces."""
    if replicates < 2:
        raise ContextError(f"replicates must be >= 2, got {replicates}")
    gen = torch.Generator().manual_seed(seed)
    traces = records.trace.unique()
    by_trace = {int(t): (records.trace == t).nonzero(as_tuple=True)[0] for t in traces}
    draws: dict[str, dict[str, list[float]]] = {}
    cells: dict[tuple[int, int], dict[str, list[float]]] = {}
    for _ in range(replicates):
        pick = traces[torch.randint(len(traces), (len(traces),), generator=gen)]
        rows = torch.cat([by_trace[int(t)] for t in pick])
        sample = records.index(rows)
        labels = [groups[i] for i in rows.tolist()]
        fit = fit_context(spec, sample, concentration=concentration, beta=beta)
        free = fit_context(spec, sample, contexts=False, concentration=concentration, beta=beta)
        ent = entanglement(spec, fit, free, sample, labels, reference=reference)
        for g in ent.index:
            d = draws.setdefault(g, {"index": [], "unexplained": []})
            d["index"].append(ent.index[g])
            d["unexplained"].append(ent.unexplained[g])
        for s_, c_ in (fit.counts > 0).nonzero().tolist():
            cell = cells.setdefault((s_, c_), {"own": [], "unexplained": []})
            cell["own"].append(float(fit.alpha[s_, c_, ent.reference[s_]]))
            cell["unexplained"].append(float(fit.epsilon[s_, c_]))
    return BootstrapErrors(
        {g: {f"{k}_se": _sd(v) for k, v in d.items()} for g, d in draws.items()},
        {key: {f"{k}_se": _sd(v) for k, v in d.items()} for key, d in cells.items()},
    )


def simulate_planted(
    spec: Spec,
    programs: Sequence[Program],
    n: int,
    seed: int,
    *,
    planted: dict[tuple[int, int], int] | None = None,
    epsilon: float = 0.0,
) -> tuple[list[Program], list[list[list[int]]]]:
    """Traces written by a planted context-dependent binding: ``planted[(s, c)] = k`` makes symbol ``s``
    execute skill ``k`` after predecessor ``c`` (``K_sym`` for step 1); every other step executes
    the symbol's own skill. Each written state is replaced by a uniform one with probability
    ``epsilon``; later steps read the written states. Returns the drawn programs and their states.
    """
    planted = planted or {}
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randint(len(programs), (n,), generator=gen).tolist()
    out_programs, out_states = [], []
    for i in chosen:
        program = programs[i]
        states = [torch.randint(spec.alphabet, (spec.length,), generator=gen)]
        for l, (m, s) in enumerate(program.steps):
            c = program.steps[l - 1][1] if l > 0 else spec.num_skills
            k = planted.get((s, c), s)
            hist = torch.stack(states).unsqueeze(0)
            view = hist[:, 0] if m == NO_ROUTING else spec.apply_routing(m, hist)
            y = spec.apply_skill(k, view)[0]
            if float(torch.rand((), generator=gen)) < epsilon:
                y = torch.randint(spec.alphabet, (spec.length,), generator=gen)
            states.append(y)
        out_programs.append(program)
        out_states.append([x.tolist() for x in states])
    return out_programs, out_states


def unexplained_posterior(spec: Spec, fit: ContextFit, records: StepRecords) -> Tensor:
    """``(R,)`` posterior probability that each record's output is unexplained (no library module gave it)."""
    a = fit.alpha[records.symbol, records.context]
    e = fit.epsilon[records.symbol, records.context]
    explained = (1 - e) * (fit.beta[records.routing][:, :, None] * a[:, None, :] * records.hits.to(a.dtype)).sum((1, 2))
    noise = e / spec.num_states
    return noise / (explained + noise)

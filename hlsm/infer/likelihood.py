"""A fast exact marginal log-likelihood of the HLSM as a plain torch contraction (no Pyro).

The same quantity as :func:`hlsm.infer.model.log_likelihood` (``theory/model.md``, DESIGN section 2),
differentiable in ``alpha``, ``beta``, the dense ``tables`` and ``epsilon`` (library tables), so
that it can be a training objective. For one step with skill symbol ``sigma`` and routing symbol
``tau``::

    p(x_l | H) = sum_m beta[tau, m] sum_k alpha[sigma, k] T_k[rho_m(H), x_l]
               = sum_m beta[tau, m] Tmix[sigma][rho_m(H), x_l],   Tmix[sigma] = sum_k alpha[sigma, k] T_k

(an atomic step reads ``x_0`` and has no routing factor). Traces are grouped by (depth, atomic,
exposure mask) as in the model. Hidden intermediate states are summed out exactly by carrying the
*joint* message ``phi[g, x_h1, ..., x_hj]`` over every hidden state so far (a custom routing may
read any history item), multiplied by each step's factor and summed at the end; hidden steps after
the last shown step contribute 1 and are skipped, and so are hidden steps of atomic programs.

Cost per evaluation: ``O(S K |X|^2)`` for ``Tmix`` plus, per trace and step, ``O(M |X|^(j+1))``
with ``j`` the number of hidden states before the step (``j <= 2`` for depth 3: ``M |X|^3``, about
800k for ``|X| = 64``). Everything that does not depend on the parameters (routing outputs on the
enumerated histories, skill tables of the library) is computed once by :class:`CorpusLikelihood`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.infer.model import HLSMParams, _observed_programs, _route_all, _support
from hlsm.programs import Program, ProgramBatch
from hlsm.simulate import Corpus
from hlsm.spec import Spec

MAX_DENSE_STATES = 4096
"""Largest ``|X|`` for which the dense ``(K, |X|, |X|)`` skill tables are built."""

MAX_JOINT_STATES = 4096
"""Largest number ``|X|^j`` of joint hidden-state values carried per trace (``|X| = 64``, ``j = 2``)."""


class LikelihoodError(HLSMError):
    """A corpus or parameters that the fast likelihood cannot score; the message names the fix."""


@dataclass(frozen=True)
class _Step:
    """One scored step of a group: symbols ``(G,)``, routed inputs and the shown value (or None)."""

    skill: Tensor  # (G,) skill symbols
    routing: Tensor | None  # (G,) routing symbols; None for atomic steps
    inputs: Tensor  # (G, X^j..., M) routed input codes, or (G,) = x_0 for atomic steps
    shown: Tensor | None  # (G,) observed code, None when hidden (then it is carried in the message)


def library_tables(spec: Spec, epsilon: float | Tensor, *, onehot: Tensor | None = None) -> Tensor:
    """``(K, |X|, |X|)`` tables ``T_k = (1 - eps) onehot(f_k) + eps / |X|`` of the library skills.

    ``epsilon`` may be a 0-dim tensor (then the tables are differentiable in it); ``onehot`` is the
    precomputed ``(K, |X|, |X|)`` indicator ``[x == f_k(u)]``.
    """
    if onehot is None:
        onehot = _skill_onehot(spec, torch.float64)
    return (1.0 - epsilon) * onehot + epsilon / spec.num_states


def _skill_onehot(spec: Spec, dtype: torch.dtype) -> Tensor:
    x = spec.num_states
    if x > MAX_DENSE_STATES:
        raise LikelihoodError(
            f"the fast likelihood builds dense (K, |X|, |X|) tables, but |X| = {x} exceeds {MAX_DENSE_STATES}; "
            "use a smaller spec, or hlsm.infer.model.log_likelihood for fully observed traces"
        )
    states = spec.all_states()
    out = torch.stack([spec.encode(spec.apply_skill(k, states)) for k in range(spec.num_skills)])
    return torch.nn.functional.one_hot(out, x).to(dtype)


class CorpusLikelihood:
    """``log p(corpus)`` as a function of the parameters, with the data-only work done once.

    Parameters
    ----------
    spec, support, corpus, weights
        As in :func:`hlsm.infer.model.log_likelihood`: every trace's program must lie in ``support``.
    task_terms
        Include the task level ``sum_i log w(pi_i) - log |X|`` (default True, as the model does).
    dtype
        Floating dtype of the precomputed tables (use float64 for precise values).

    Raises
    ------
    LikelihoodError
        If ``|X| > MAX_DENSE_STATES``, or a group hides more states than ``MAX_JOINT_STATES`` allows.
    """

    def __init__(
        self,
        spec: Spec,
        support: Sequence[Program],
        corpus: Corpus,
        weights: Sequence[float] | Tensor | None = None,
        *,
        task_terms: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        programs, prior = _support(spec, support, weights, dtype)
        self.spec, self.num_traces = spec, len(corpus)
        self._onehot = _skill_onehot(spec, dtype)
        self._groups: list[list[_Step]] = []
        self._rows: list[Tensor] = []
        self._task = torch.zeros((), dtype=dtype)
        self._task_per_trace = torch.zeros(len(corpus), dtype=dtype)
        if len(corpus) == 0:
            return
        prog = _observed_programs(spec, corpus, programs)
        if task_terms:
            self._task_per_trace = prior[prog].log() - math.log(spec.num_states)
            self._task = self._task_per_trace.sum()
        table = ProgramBatch.from_programs(programs)
        depth = table.depth[prog].tolist()
        codes = spec.encode(corpus.states)  # (N, L_max + 1)
        keys = [
            (d, programs[p].is_atomic, tuple(corpus.mask[i, :d].tolist()))
            for i, (p, d) in enumerate(zip(prog.tolist(), depth, strict=True))
        ]
        for key in sorted(set(keys)):
            rows = torch.tensor([i for i, k in enumerate(keys) if k == key])
            self._groups.append(self._group(table.index(prog[rows]), codes[rows], key))
            self._rows.append(rows)

    def _group(self, steps: ProgramBatch, codes: Tensor, key: tuple[int, bool, tuple[bool, ...]]) -> list[_Step]:
        """Precompute the scored steps of one group of ``G`` traces (``codes`` is ``(G, L_max + 1)``)."""
        _, atomic, mask = key
        last = max((l for l, shown in enumerate(mask) if shown), default=-1)
        out: list[_Step] = []
        history = [codes[:, 0]]  # items broadcastable to (G, X^j...): hidden ones are aranges on their dim
        hidden = 0
        for l in range(last + 1):
            shown = codes[:, l + 1] if mask[l] else None
            if atomic:
                if shown is not None:
                    out.append(_Step(steps.skill[:, l], None, codes[:, 0], shown))
                continue
            size = self.spec.num_states**hidden
            if size > MAX_JOINT_STATES:
                raise LikelihoodError(
                    f"a depth-{len(mask)} group with exposure {mask} hides {hidden} states before step {l + 1}: "
                    f"|X|^{hidden} = {size} joint values exceed {MAX_JOINT_STATES}; show more states or use a "
                    "smaller spec"
                )
            g = codes.shape[0]
            full = [h.reshape(g, *([1] * hidden)) if h.dim() == 1 else h for h in history]
            out.append(_Step(steps.skill[:, l], steps.routing[:, l], _route_all(self.spec, full), shown))
            if shown is None:
                hidden += 1
                history = [h.unsqueeze(-1) if h.dim() > 1 else h for h in history]
                history.append(torch.arange(self.spec.num_states).reshape(1, *([1] * (hidden - 1)), -1))
            else:
                history.append(shown)
        return out

    def __call__(
        self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor = 0.1, tables: Tensor | None = None
    ) -> Tensor:
        """The 0-dim ``log p(corpus)`` for raw parameters (differentiable; no stochasticity check).

        Parameters
        ----------
        alpha : Tensor
            ``(S, K)`` skill bindings, rows summing to 1.
        beta : Tensor
            ``(R, M)`` routing bindings, rows summing to 1.
        epsilon : float or Tensor
            Corruption rate of the library tables (ignored when ``tables`` is given).
        tables : Tensor or None
            ``(K, |X|, |X|)`` dense skill tables, or None for the library tables.
        """
        mixed = self._mixed(alpha, epsilon, tables)
        total = self._task.to(alpha.dtype)
        for steps in self._groups:
            total = total + self._group_log_prob(steps, mixed, beta).sum()
        return total

    def per_trace(
        self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor = 0.1, tables: Tensor | None = None
    ) -> Tensor:
        """``(N,)`` log-likelihood of each trace, in corpus order (same arguments as calling the object)."""
        mixed = self._mixed(alpha, epsilon, tables)
        out = self._task_per_trace.to(alpha.dtype).clone()
        for rows, steps in zip(self._rows, self._groups, strict=True):
            out[rows] = out[rows] + self._group_log_prob(steps, mixed, beta)
        return out

    def _mixed(self, alpha: Tensor, epsilon: float | Tensor, tables: Tensor | None) -> Tensor:
        """``(S, X, X)``: the skill-symbol tables ``sum_k alpha[s, k] T_k``."""
        if tables is None:
            tables = library_tables(self.spec, epsilon, onehot=self._onehot.to(alpha.dtype))
        return torch.einsum("sk,kux->sux", alpha, tables)

    def score(self, params: HLSMParams) -> Tensor:
        """``self(params.alpha, params.beta, params.epsilon, params.tables)`` after a shape check."""
        params.check(self.spec)
        return self(params.alpha, params.beta, params.epsilon, params.tables)

    @staticmethod
    def _group_log_prob(steps: list[_Step], mixed: Tensor, beta: Tensor) -> Tensor:
        """``(G,)``: ``log P(shown states | program, x_0)`` of each of one group's traces."""
        phi: Tensor | None = None  # (G, X^j...) joint message over hidden states, None = all ones
        logp = mixed.new_zeros(steps[0].skill.shape[0]) if steps else mixed.new_zeros(())
        for step in steps:
            if step.routing is None:  # atomic: factor Tmix[sigma][x_0, x_l], no hidden state is ever read
                assert step.shown is not None
                logp = logp + mixed[step.skill, step.inputs, step.shown].log()
                continue
            g, u = step.skill.shape[0], step.inputs
            lead = (g,) + (1,) * (u.dim() - 1)
            sigma = step.skill.reshape(lead)
            b = beta[step.routing].reshape((g,) + (1,) * (u.dim() - 2) + (-1,))  # (G, 1..., M)
            if step.shown is not None:
                x = step.shown.reshape(lead)
                factor = (b * mixed[sigma, u, x]).sum(-1)  # (G, X^j...)
                phi = factor if phi is None else phi * factor
            else:
                factor = (b.unsqueeze(-1) * mixed[sigma, u]).sum(-2)  # (G, X^j..., X)
                phi = factor if phi is None else phi.unsqueeze(-1) * factor
        if phi is not None:
            logp = logp + phi.reshape(phi.shape[0], -1).sum(-1).log()
        return logp


def log_likelihood(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    corpus: Corpus,
    weights: Sequence[float] | Tensor | None = None,
    *,
    task_terms: bool = True,
) -> Tensor:
    """``log p(corpus)`` as a 0-dim tensor: :func:`hlsm.infer.model.log_likelihood` without Pyro.

    Differentiable in ``params.alpha``, ``params.beta`` and ``params.tables``; build a
    :class:`CorpusLikelihood` once and call it with raw tensors to train (and to differentiate in
    ``epsilon``). ``task_terms=False`` drops the program prior and ``x_0`` terms.
    """
    lik = CorpusLikelihood(spec, support, corpus, weights, task_terms=task_terms, dtype=params.alpha.dtype)
    return lik.score(params)

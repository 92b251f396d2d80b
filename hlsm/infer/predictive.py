"""Posterior predictive answers of a fitted HLSM on any program.

``p(x_L = a | pi, x_0, theta)`` sums over every selection and hidden intermediate state of the
cascade. It is computed with the same tensor contraction as the likelihood
(:class:`hlsm.infer.likelihood.CorpusLikelihood`): an answer-only trace ``(pi, x_0, a)`` has likelihood
exactly ``p(a | pi, x_0)`` once the task terms are dropped, so the predictive table is the likelihood
of the ``|X|`` answer-only traces per input. Tiny instances only (dense tables, ``|X| <= 4096``).

At any size, :func:`answer_bounds` follows the heaviest corruption-free paths of library tables
forward and returns each input's modal answer with a certified lower bound on its probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hlsm.infer.likelihood import CorpusLikelihood
from hlsm.infer.model import HLSMParams
from hlsm.programs import NO_ROUTING, Program, ProgramBatch, answer_codes, execute
from hlsm.simulate import Corpus
from hlsm.spec import Spec


def _answer_corpus(spec: Spec, program: Program, inputs: Tensor) -> Corpus:
    """Every ``(x_0, a)`` pair as an answer-only trace: ``B * |X|`` traces, input-major."""
    b, x = inputs.shape[0], spec.num_states
    starts = inputs.repeat_interleave(x, dim=0)  # (B * X, n)
    batch = ProgramBatch.from_programs([program]).index(torch.zeros(b * x, dtype=torch.long))
    states = execute(spec, batch, starts)  # (B * X, L + 1, n); the hidden middle states are never read
    states[:, -1] = spec.all_states().repeat(b, 1)
    mask = torch.zeros(b * x, program.depth, dtype=torch.bool)
    mask[:, -1] = True
    return Corpus(spec, batch, states, mask, ("predictive",) * (b * x))


def answer_distribution(spec: Spec, params: HLSMParams, program: Program, inputs: Tensor | None = None) -> Tensor:
    """``(B, |X|)`` predictive distribution of the answer code for each input state.

    Parameters
    ----------
    spec, params
        The instance and fitted parameters (library tables with ``epsilon``, or dense ``tables``).
    program
        Any program of the spec (seen or not).
    inputs
        ``(B, n)`` input states; default every state of ``X`` in code order.

    Returns
    -------
    Tensor
        Rows sum to 1 (float64 for float64 parameters); column ``a`` is the answer with code ``a``.
    """
    params.check(spec)
    inputs = spec.all_states() if inputs is None else inputs
    lik = answer_likelihood(spec, program, inputs, dtype=params.alpha.dtype)
    logp = lik.per_trace(params.alpha, params.beta, params.epsilon, params.tables)
    return logp.exp().reshape(inputs.shape[0], spec.num_states)


def answer_likelihood(
    spec: Spec, program: Program, inputs: Tensor, dtype: torch.dtype = torch.float64
) -> CorpusLikelihood:
    """The likelihood of every ``(x_0, a)`` answer-only trace of ``program`` (input-major), task
    terms dropped: ``per_trace(...).exp()`` reshaped to ``(B, |X|)`` is the predictive table. Build
    it once to evaluate many parameter draws."""
    program.check(spec)
    return CorpusLikelihood(spec, [program], _answer_corpus(spec, program, inputs), task_terms=False, dtype=dtype)


def answer_distributions(
    spec: Spec, params: HLSMParams, programs: Sequence[Program], inputs: Tensor | None = None
) -> Tensor:
    """``(P, B, |X|)``: :func:`answer_distribution` for each program."""
    return torch.stack([answer_distribution(spec, params, p, inputs) for p in programs])


def true_answers(spec: Spec, program: Program, inputs: Tensor | None = None) -> Tensor:
    """``(B,)`` codes of the noiseless answers of ``program`` (the library's own execution)."""
    return answer_codes(spec, program, spec.all_states() if inputs is None else inputs)


PATH_FLOOR = 1e-4
"""Paths lighter than this are not followed by :func:`answer_bounds` (their weight is only lost)."""

MAX_PATHS = 64
"""Most paths :func:`answer_bounds` follows per input (the heaviest)."""


def answer_bounds(
    spec: Spec, params: HLSMParams, program: Program, inputs: Tensor, *, floor: float = PATH_FLOOR
) -> tuple[Tensor, Tensor]:
    """``(B,)`` modal answer codes and a certified lower bound on each one's predictive probability.

    For library tables (``params.tables`` None) at any ``|X|``: the predictive answer is a mixture of
    point masses, one per corruption-free (routing, skill) path with weight
    ``prod (1 - eps) beta alpha``, plus corrupted paths. The heaviest paths (at least ``floor``, at
    most :data:`MAX_PATHS` per input) are followed forward and their weights summed per answer; every
    path left out only lowers the sum, so ``lower <= P(x_L = modal | program, x_0)``. When
    ``lower > 0.5`` the modal answer is the predictive mode for certain.
    """
    if params.tables is not None:
        raise ValueError("answer_bounds reads library tables (params.tables is None); use answer_distribution")
    params.check(spec)
    program.check(spec)
    b = inputs.shape[0]
    eps = float(params.epsilon)
    hist = inputs.unsqueeze(1)  # (P, 1, n) histories of the followed paths
    weight = torch.ones(b, dtype=params.alpha.dtype)
    owner = torch.arange(b)
    for m_sym, k_sym in program.steps:
        route = torch.ones(1, dtype=weight.dtype) if m_sym == NO_ROUTING else params.beta[m_sym]
        table = (1 - eps) * route.unsqueeze(-1) * params.alpha[k_sym].unsqueeze(0)  # (M or 1, K)
        parts = []
        for m, k in (table >= floor).nonzero().tolist():
            u = hist[:, 0] if m_sym == NO_ROUTING else spec.apply_routing(m, hist)
            parts.append((spec.apply_skill(k, u), weight * table[m, k]))
        if not parts:
            return torch.full((b,), -1, dtype=torch.long), torch.zeros(b, dtype=weight.dtype)
        n_parts = len(parts)
        states = torch.cat([x for x, _ in parts])
        weight = torch.cat([w for _, w in parts])
        hist = torch.cat([hist.repeat(n_parts, 1, 1), states.unsqueeze(1)], 1)
        owner = owner.repeat(n_parts)
        keep = weight >= floor
        hist, weight, owner = hist[keep], weight[keep], owner[keep]
        order = torch.argsort(weight, descending=True, stable=True)
        order = order[torch.argsort(owner[order], stable=True)]  # by input, heaviest first
        grouped = owner[order]
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order)) - torch.searchsorted(grouped, grouped)
        keep = rank < MAX_PATHS
        hist, weight, owner = hist[keep], weight[keep], owner[keep]
    codes = spec.encode(hist[:, -1])
    key, inverse = torch.unique(owner * spec.num_states + codes, return_inverse=True)
    mass = torch.zeros(len(key), dtype=weight.dtype).index_add(0, inverse, weight)
    lower = torch.zeros(b, dtype=weight.dtype)
    modal = torch.full((b,), -1, dtype=torch.long)
    for i in torch.argsort(mass).tolist():  # increasing: the last write per input is its largest mass
        lower[key[i] // spec.num_states] = mass[i]
        modal[key[i] // spec.num_states] = key[i] % spec.num_states
    return modal, lower

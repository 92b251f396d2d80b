"""Posterior predictive answers of a fitted HLSM on any program.

``p(x_L = a | pi, x_0, theta)`` sums over every selection and hidden intermediate state of the
cascade. It is computed with the same tensor contraction as the likelihood
(:class:`hlsm.infer.likelihood.CorpusLikelihood`): an answer-only trace ``(pi, x_0, a)`` has likelihood
exactly ``p(a | pi, x_0)`` once the task terms are dropped, so the predictive table is the likelihood
of the ``|X|`` answer-only traces per input. Tiny instances only (dense tables, ``|X| <= 4096``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hlsm.infer.likelihood import CorpusLikelihood
from hlsm.infer.model import HLSMParams
from hlsm.programs import Program, ProgramBatch, answer_codes, execute
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

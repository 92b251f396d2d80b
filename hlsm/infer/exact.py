"""Brute-force enumeration on tiny instances: the oracle the Pyro model and the checkers are tested against.

Everything here is plain Python over float64 numbers and follows the definitions of
``theory/model.md`` literally, with no Pyro and no vectorisation, so that it is
obviously correct and independent of :mod:`hlsm.infer.model`. The probability of one trace, given its
program ``pi = ((m_1, k_1), ..., (m_L, k_L))`` and input ``x_0``, is the sum over every selection
sequence ``(R_1, K_1, ..., R_L, K_L)`` and every value of the hidden states of::

    prod_l  beta[m_l, R_l] * alpha[k_l, K_l] * T_{K_l}(x_l | rho_{R_l}(x_0, ..., x_{l-1}))

(an atomic step has no routing factor and feeds ``x_0``), where ``T_k(x | u)`` is
``(1 - eps) [x == f_k(u)] + eps / |X|`` or ``tables[k, u, x]``. A corpus's log-likelihood adds the
task level: ``log w(pi) - log |X|`` per trace. The cost is ``(M K)^L |X|^hidden`` per trace: keep to
tiny instances.

Version-space and identifiability brute force (``theory/``, claims C1-C5) lives beside it, in
:mod:`hlsm.identify.oracle`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from hlsm.programs import NO_ROUTING, Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

if TYPE_CHECKING:
    from hlsm.infer.model import HLSMParams

Codes = tuple[int, ...]


class _Tables:
    """Memoised ``f_k(u)``, ``rho_m(H)`` on state codes, and ``T_k(x | u)``, one state at a time."""

    def __init__(self, spec: Spec, params: HLSMParams) -> None:
        params.check(spec)
        self.spec, self.params = spec, params
        self.alpha = params.alpha.tolist()
        self.beta = params.beta.tolist()
        self.tables = None if params.tables is None else params.tables.tolist()
        self._skill: dict[tuple[int, int], int] = {}
        self._routing: dict[tuple[int, Codes], int] = {}

    def skill(self, k: int, u: int) -> int:
        if (k, u) not in self._skill:
            x = self.spec.decode(torch.tensor([u]))
            self._skill[k, u] = int(self.spec.encode(self.spec.apply_skill(k, x))[0])
        return self._skill[k, u]

    def routing(self, m: int, history: Codes) -> int:
        if (m, history) not in self._routing:
            h = self.spec.decode(torch.tensor([list(history)]))  # (1, l, n)
            self._routing[m, history] = int(self.spec.encode(self.spec.apply_routing(m, h))[0])
        return self._routing[m, history]

    def transition(self, k: int, u: int, x: int) -> float:
        """``T_k(x | u)``: probability that skill ``k`` on input ``u`` writes ``x``."""
        if self.tables is not None:
            return self.tables[k][u][x]
        eps, size = self.params.epsilon, self.spec.num_states
        return (1.0 - eps) * (x == self.skill(k, u)) + eps / size


def _assignments(
    tab: _Tables, program: Program, x0: int, states: Sequence[int | None]
) -> Iterator[tuple[tuple[tuple[int, int], ...], list[int], float]]:
    """Every joint assignment ``(selection, states, probability)`` consistent with the shown states.

    ``states`` are the codes of ``x_1 .. x_L``, ``None`` where hidden; ``selection`` lists ``(R_l, K_l)``
    (``R_l = NO_ROUTING`` on atomic steps) and the probability is the joint one, with the shown states.
    """
    spec = tab.spec
    hidden = [l for l, s in enumerate(states) if s is None]
    step_choices = [
        [
            (r, k)
            for r in ([NO_ROUTING] if m == NO_ROUTING else range(spec.num_routings))
            for k in range(spec.num_skills)
        ]
        for m, _ in program.steps
    ]
    for selection in itertools.product(*step_choices):
        p_select = 1.0
        for (m, k_symbol), (r, k) in zip(program.steps, selection, strict=True):
            p_select *= tab.alpha[k_symbol][k] * (1.0 if m == NO_ROUTING else tab.beta[m][r])
        if p_select == 0.0:
            continue
        for values in itertools.product(range(spec.num_states), repeat=len(hidden)):
            filled = dict(zip(hidden, values, strict=True))
            xs = [filled[l] if s is None else s for l, s in enumerate(states)]
            p = p_select
            history = [x0]
            for (r, k), x in zip(selection, xs, strict=True):
                u = x0 if r == NO_ROUTING else tab.routing(r, tuple(history))
                p *= tab.transition(k, u, x)
                history.append(x)
            yield selection, xs, p


def _trace_probability(tab: _Tables, program: Program, x0: int, states: Sequence[int | None]) -> float:
    """``P(shown states | program, x_0)``: the literal sum over selections and hidden states."""
    return sum((p for _, _, p in _assignments(tab, program, x0, states)), 0.0)


def map_assignment(
    spec: Spec, params: HLSMParams, program: Program, x0: int, states: Sequence[int | None]
) -> tuple[tuple[tuple[int, int], ...], list[int], float]:
    """The most probable joint ``(selection, states, probability)`` of one trace, by enumeration."""
    if len(states) != program.depth:
        raise ValueError(f"a depth-{program.depth} program needs {program.depth} states, got {len(states)}")
    return max(_assignments(_Tables(spec, params), program.check(spec), x0, states), key=lambda a: a[2])


def transition_prob(spec: Spec, params: HLSMParams, skill: int, u: int, x: int) -> float:
    """``T_k(x | u)`` for one skill index and state codes ``u``, ``x``."""
    return _Tables(spec, params).transition(skill, u, x)


def trace_probability(spec: Spec, params: HLSMParams, program: Program, x0: int, states: Sequence[int | None]) -> float:
    """``P(x_1 .. x_L | program, x_0)`` for state codes ``states`` (``None`` entries are summed out)."""
    if len(states) != program.depth:
        raise ValueError(f"a depth-{program.depth} program needs {program.depth} states, got {len(states)}")
    return _trace_probability(_Tables(spec, params), program.check(spec), x0, states)


def trace_distribution(spec: Spec, params: HLSMParams, program: Program, x0: int) -> dict[Codes, float]:
    """The exact distribution of full traces: ``{(x_1, ..., x_L) codes: P(. | program, x_0)}``.

    Every one of the ``|X|^L`` traces is listed (corruption gives each positive mass); the values
    sum to 1.
    """
    tab = _Tables(spec, params)
    program.check(spec)
    return {
        xs: _trace_probability(tab, program, x0, xs)
        for xs in itertools.product(range(spec.num_states), repeat=program.depth)
    }


def answer_distribution(spec: Spec, params: HLSMParams, program: Program, x0: int) -> dict[int, float]:
    """``{answer code: P(x_L = answer | program, x_0)}``, intermediate states summed out."""
    tab = _Tables(spec, params)
    program.check(spec)
    hidden: list[int | None] = [None] * (program.depth - 1)
    return {x: _trace_probability(tab, program, x0, [*hidden, x]) for x in range(spec.num_states)}


def log_likelihood(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    corpus: Corpus,
    weights: Sequence[float] | None = None,
) -> float:
    """``log p(corpus)`` by brute force; the same quantity as :func:`hlsm.infer.model.log_likelihood`.

    Each trace contributes ``log(w(pi) / sum(w)) - log |X| + log P(shown states | pi, x_0)``, where
    ``w(pi)`` adds the weights of the support entries equal to ``pi`` (uniform weights by default).
    """
    w = [1.0] * len(support) if weights is None else [float(v) for v in weights]
    if len(w) != len(support) or any(v < 0 for v in w) or sum(w) <= 0:
        raise ValueError("support weights must be non-negative, one per program, and not all zero")
    tab = _Tables(spec, params)
    counts: Counter[tuple[Program, int, tuple[int | None, ...]]] = Counter()
    for i in range(len(corpus)):
        program = corpus.program(i).check(spec)
        d = program.depth
        codes = spec.encode(corpus.states[i]).tolist()
        shown = corpus.mask[i, :d].tolist()
        counts[program, codes[0], tuple(c if s else None for c, s in zip(codes[1 : d + 1], shown, strict=True))] += 1
    total = []
    for (program, x0, states), count in counts.items():
        prior = sum(v for p, v in zip(support, w, strict=True) if p == program) / sum(w)
        p = _trace_probability(tab, program, x0, states)
        total.append(count * (_log(prior) - math.log(spec.num_states) + _log(p)))
    return math.fsum(total)


def _log(p: float) -> float:
    return math.log(p) if p > 0.0 else -math.inf

"""Brute-force identifiability oracle on tiny instances: version spaces of H-lib and H-tab.

This module follows the definitions of ``theory/`` literally
and is deliberately independent of the fast checker :mod:`hlsm.identify.checker`, which it is used to verify.

Hypothesis classes (symbol ``i`` truly denotes module ``i``):

- **H-lib**: every skill symbol binds to any library skill and every routing symbol to any library
  routing, *not necessarily injectively*: ``K**K * M**M`` hypotheses, all enumerated.
- **H-tab**: every routing symbol binds to a library routing (``M**M`` bindings, all enumerated);
  every skill symbol is any table ``X -> X`` (searched exhaustively, see :mod:`hlsm.identify.oracle.tab`).

A hypothesis is *consistent* with a noiseless corpus if executing each trace's program under it from
the trace's ``x_0`` reproduces every shown state. A quantity is *identified* if every consistent
hypothesis gives it the same value. Modules are compared extensionally: skills as maps on ``X``,
routings as maps on histories of every length ``1..L*``, the horizon fixed by the question (by
default ``max(3, deepest candidate)``, never by the data: :mod:`hlsm.identify.horizon`), so two library
modules that coincide there count as one value. An unseen program
``p`` is in the generalisation set ``G`` iff every consistent hypothesis gives it the same answer
``x_L`` for every ``x_0`` in ``X``.

Everything is exhaustive: H-lib (:mod:`hlsm.identify.oracle.lib`) enumerates every binding, vectorised with
numpy; H-tab (:mod:`hlsm.identify.oracle.tab`) enumerates every routing binding and searches the table
entries depth-first. This module holds the shared pieces: result types, the population corpus, the
corpus's distinct records and the library as integer tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hlsm.errors import HLSMError
from hlsm.identify.horizon import resolve_horizon
from hlsm.programs import Program
from hlsm.simulate import Corpus, concat
from hlsm.simulate import population_corpus as simulate_population
from hlsm.spec import Spec

MAX_LIB_HYPOTHESES = 2_000_000
"""Largest ``K**K * M**M`` that :func:`lib_version_space` agrees to enumerate."""

MAX_HISTORIES = 1_000_000
"""Largest ``|X|**L_max`` (histories a routing is tabulated on) that the oracle agrees to build."""


class OracleError(HLSMError):
    """An oracle question too large to answer exhaustively, or a corpus that does not fit the spec."""


class InconsistentDataError(OracleError):
    """No hypothesis of the class reproduces the corpus (noisy or contradictory traces)."""


class SearchBudgetError(OracleError):
    """The exhaustive H-tab search needed more work than its budget allows."""


@dataclass(frozen=True)
class LibHypothesis:
    """An H-lib hypothesis: library skill index per skill symbol, library routing per routing symbol."""

    skills: tuple[int, ...]
    routings: tuple[int, ...]


@dataclass(frozen=True)
class TabHypothesis:
    """An H-tab hypothesis branch: a routing binding and the skill-table entries that matter.

    ``entries`` lists ``(skill symbol, input code, output code)``; every entry not listed is free
    (any value gives a hypothesis with the same behaviour on the corpus and the candidate).
    """

    routings: tuple[int, ...]
    entries: tuple[tuple[int, int, int], ...]

    def table(self) -> dict[tuple[int, int], int]:
        """``{(skill symbol, input): output}`` for the listed entries."""
        return {(s, u): x for s, u, x in self.entries}


Hypothesis = LibHypothesis | TabHypothesis


@dataclass(frozen=True)
class Witness:
    """Two consistent hypotheses under which a candidate gives different answers at ``x0``."""

    x0: int
    answers: tuple[int, int]
    hypotheses: tuple[Hypothesis, Hypothesis]


@dataclass(frozen=True)
class OracleResult:
    """What a regime identifies, by exhaustive enumeration (state codes as in :meth:`Spec.encode`).

    Attributes
    ----------
    hypothesis_class : {"lib", "tab"}
    skill_identified, routing_identified : tuple of bool
        Per symbol: every consistent hypothesis gives it the same function (H-tab skills: the whole
        table is pinned).
    identified_domain : tuple of frozenset of int
        Per skill symbol, the inputs ``u`` on which all consistent hypotheses agree on its output
        (H-lib: all of ``X`` when the symbol is identified, empty otherwise).
    identified_values : tuple of dict
        Per skill symbol, ``{u: output}`` on its identified domain.
    generalisation : dict of Program to bool
        Per candidate: in ``G`` (identified answer at every ``x_0``).
    answers : dict of Program to tuple
        Per candidate, the identified answer code for each ``x_0`` code, ``None`` where not identified.
    witnesses : dict of Program to Witness
        For each candidate not in ``G``: two consistent hypotheses that disagree, and where.
    num_consistent : int
        H-lib: number of consistent bindings; H-tab: number of consistent routing bindings.
    consistent_routings : frozenset of tuple of int
        The routing bindings that belong to at least one consistent hypothesis.
    """

    hypothesis_class: str
    skill_identified: tuple[bool, ...]
    routing_identified: tuple[bool, ...]
    identified_domain: tuple[frozenset[int], ...]
    identified_values: tuple[dict[int, int], ...]
    generalisation: dict[Program, bool]
    answers: dict[Program, tuple[int | None, ...]]
    witnesses: dict[Program, Witness]
    num_consistent: int
    consistent_routings: frozenset[tuple[int, ...]]

    @property
    def generalisation_set(self) -> frozenset[Program]:
        """The candidates in ``G``."""
        return frozenset(p for p, ok in self.generalisation.items() if ok)


# -- data -----------------------------------------------------------------------------------------


def regime_population(spec: Spec, programs: Sequence[tuple[Program, str]] | Mapping[Program, str]) -> Corpus:
    """The population limit of a regime: every program run on every ``x_0`` in ``X``, noiselessly.

    Parameters
    ----------
    programs
        ``(program, exposure)`` pairs (or a mapping): ``"full"`` for SFT golden traces,
        ``"answer"`` for RL (answer-only) records, ``"steps:1,3"`` for a partial trace. Split labels
        are ``"sft"``, ``"rl"`` and ``"partial"`` respectively.

    Returns
    -------
    Corpus
        ``len(programs) * |X|`` traces, grouped by program, ``x_0`` in code order.
    """
    pairs: list[tuple[Program, str]] = list(programs.items()) if isinstance(programs, Mapping) else list(programs)
    if not pairs:
        raise OracleError("regime_population needs at least one (program, exposure) pair")
    labels = {"full": "sft", "answer": "rl"}
    return concat([simulate_population(spec, [p], e, labels.get(e, "partial")) for p, e in pairs])


@dataclass(frozen=True)
class DistinctRecord:
    """One distinct trace: program, ``x_0`` code and shown codes of ``x_1..x_L`` (``None``: hidden)."""

    program: Program
    x0: int
    shown: tuple[int | None, ...]


def distinct_records(spec: Spec, corpus: Corpus) -> list[DistinctRecord]:
    """The corpus's distinct records, in order of first appearance."""
    if corpus.spec != spec:
        raise OracleError("the corpus was built for another spec; pass the spec it was simulated with")
    codes = spec.encode(corpus.states).tolist()
    mask = corpus.mask.tolist()
    out: dict[DistinctRecord, None] = {}
    for i in range(len(corpus)):
        program = corpus.program(i).check(spec)
        d = program.depth
        shown = tuple(c if s else None for c, s in zip(codes[i][1 : d + 1], mask[i][:d], strict=True))
        out[DistinctRecord(program, codes[i][0], shown)] = None
    return list(out)


class LibraryTables:
    """The library as integer tables on state codes.

    ``skill[k, u] = f_k(u)`` with shape ``(K, |X|)``; ``routing[l][m, h]`` is ``rho_m`` on the history
    of length ``l`` whose code is ``h = ((x_0 |X| + x_1) |X| + ...) + x_{l-1}``, shape ``(M, |X|**l)``.
    ``skill_class`` / ``routing_class`` give equal ids to extensionally equal modules.
    """

    def __init__(self, spec: Spec, max_depth: int) -> None:
        size = spec.num_states
        if size**max_depth > MAX_HISTORIES:
            raise OracleError(
                f"tabulating routings on |X|**L = {size}**{max_depth} histories exceeds the oracle's limit "
                f"of {MAX_HISTORIES}; use a smaller alphabet, length or depth"
            )
        states = spec.all_states()
        self.size = size
        self.skill = np.stack([spec.encode(spec.apply_skill(k, states)).numpy() for k in range(spec.num_skills)])
        self.routing: dict[int, np.ndarray] = {}
        for length in range(1, max_depth + 1):
            codes = torch.arange(size**length)
            digits = (codes[:, None] // size ** torch.arange(length - 1, -1, -1)) % size  # x_0 most significant
            history = spec.decode(digits)  # (|X|**l, l, n)
            self.routing[length] = np.stack(
                [spec.encode(spec.apply_routing(m, history)).numpy() for m in range(spec.num_routings)]
            )
        self.skill_class = np.unique(self.skill, axis=0, return_inverse=True)[1].reshape(-1)
        every = np.concatenate([self.routing[length] for length in sorted(self.routing)], axis=1)
        self.routing_class = np.unique(every, axis=0, return_inverse=True)[1].reshape(-1)

    def route(self, m: int, history: Sequence[int]) -> int:
        """``rho_m(history)`` for one history of state codes."""
        code = 0
        for x in history:
            code = code * self.size + x
        return int(self.routing[len(history)][m, code])


def oracle_horizon(records: Sequence[DistinctRecord], candidates: Sequence[Program], horizon: int | None) -> int:
    """``L*`` for the oracle: the same rule as the checkers (:func:`hlsm.identify.horizon.resolve_horizon`)."""
    return resolve_horizon([p.depth for p in candidates], [r.program.depth for r in records], horizon)


def max_depth_of(records: Sequence[DistinctRecord], candidates: Sequence[Program]) -> int:
    """``L_max``: the largest depth among the records and the candidates (routings are compared up to it)."""
    return max([r.program.depth for r in records] + [p.depth for p in candidates], default=1)


def check_candidates(spec: Spec, candidates: Sequence[Program]) -> list[Program]:
    """The candidates checked against ``spec``, duplicates dropped, order kept."""
    return list(dict.fromkeys(p.check(spec) for p in candidates))

"""The identifiability checker: which bindings, table entries and unseen programs a corpus determines.

:func:`identify` takes a spec, a noiseless corpus (a regime's data: :func:`hlsm.simulate.population_corpus`
gives the population limit) and candidate unseen programs, and answers for one hypothesis class
(``theory/identifiability.md``):

``"lib"`` (H-lib)
    symbols bind to library modules; exact within the search budget (constraint propagation plus
    search, :mod:`hlsm.identify.hlib`);
``"tab"`` (H-tab)
    skill symbols are arbitrary tables; on golden data exact for the routings, the identified domains
    and the candidates (free entries branched over for ``|X| <= 729``, within the budget); when the
    data hide states, the symbols and the generalisation set are sound lower bounds
    (:mod:`hlsm.identify.htab`).

Functions are compared extensionally on :func:`hlsm.identify.observations.probe_states` (all of ``X`` for
instances up to 4096 states), routings on histories up to the horizon ``L*``
(:mod:`hlsm.identify.horizon`; every history when ``|X|**L* <= 10**6``, else random ones). Every
candidate outside the generalisation set carries a reason: the symbols whose alternatives fit the
data equally well and an input where the answers differ; every verdict carries a status
(:data:`STATUSES`) saying how far it can be trusted.

The result type, the statuses and both classes' candidate verdicts with their reasons are read
together.
"""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.identify.hlib import LibCSP, Var, _BudgetExceeded
from hlsm.identify.horizon import resolve_horizon
from hlsm.identify.htab import MAX_INVERT_STATES, UNKNOWN, TabProblem
from hlsm.identify.observations import (
    comparisons_exact,
    live_steps,
    probe_states,
    routing_classes,
    skill_classes,
    split_corpus,
)
from hlsm.programs import Program, answer_codes
from hlsm.runtime import torch_threads
from hlsm.simulate import Corpus
from hlsm.spec import Spec

HypothesisClass = Literal["lib", "tab"]
HYPOTHESIS_CLASSES: tuple[str, ...] = typing.get_args(HypothesisClass)
SEARCH_BUDGET = 20_000
"""Joint assignments of a candidate's symbols tried before it is reported undecided (not in G)."""


Status = Literal["exact", "lower_bound", "undecided", "probes"]
STATUSES: tuple[str, ...] = typing.get_args(Status)
"""How far a verdict can be trusted: ``exact`` (certain); ``lower_bound`` (not in G by the H-tab
approximation of answer-only records: the truth may be in G); ``undecided`` (the search budget ran
out, or H-tab met a free live entry on ``|X| > 729`` where it does not branch: counted outside G, the
truth may be in G); ``probes`` (states or histories compared on a probe set, ``|X| > 4096`` or
``|X|**L* > 10**6``: neither exact nor a bound)."""


@dataclass(frozen=True)
class Verdict:
    """Whether one candidate program's answer is identified, and if not, why; ``status`` in :data:`STATUSES`."""

    program: Program
    identified: bool
    reason: str = ""
    witness: dict[str, Any] = field(default_factory=dict)
    status: Status = "exact"


@dataclass(frozen=True)
class Identification:
    """The checker's answer for one hypothesis class.

    Attributes
    ----------
    skill_identified, routing_identified : tuple of bool
        Per skill / routing symbol (index = symbol index).
    skill_values, routing_values : tuple of tuple of int
        Library modules (one per extensional class) that some consistent hypothesis binds each
        symbol to; in H-tab ``skill_values`` is empty.
    identified_domain : tuple of int
        Per skill symbol, the number of inputs ``u`` in ``X`` on which its map is identified
        (H-lib: all of ``X`` or nothing).
    identified_inputs : tuple of Tensor
        Per skill symbol, those inputs as sorted state codes (H-tab; empty tensors for H-lib).
    verdicts : tuple of Verdict
        One per candidate program.
    lower_bound : bool
        True when some verdict is ``lower_bound`` or ``undecided``: the generalisation set may miss
        identified programs (it never holds an unidentified one, unless comparisons are on probes).
    horizon : int
        ``L*``: routings are compared as maps on histories of lengths ``1..horizon``
        (:mod:`hlsm.identify.horizon`).
    exact_comparisons : bool
        Whether modules were compared on all of ``X`` and every history up to the horizon; if not,
        every answer rests on probe states (status ``probes``).
    symbols_lower_bound : bool
        H-tab with answer-only records: the identified routings and domains come from the sound
        approximation, so they may miss what the data identify (never claim more).
    """

    hypothesis_class: HypothesisClass
    spec: Spec
    skill_identified: tuple[bool, ...]
    routing_identified: tuple[bool, ...]
    skill_values: tuple[tuple[int, ...], ...]
    routing_values: tuple[tuple[int, ...], ...]
    identified_domain: tuple[int, ...]
    domain_size: int
    identified_inputs: tuple[Tensor, ...]
    verdicts: tuple[Verdict, ...]
    lower_bound: bool
    num_hypotheses: int
    horizon: int
    exact_comparisons: bool
    symbols_lower_bound: bool = False

    @property
    def exact(self) -> bool:
        """Whether every verdict and every symbol's status is certain."""
        return (
            all(v.status == "exact" for v in self.verdicts) and self.exact_comparisons and not self.symbols_lower_bound
        )

    def _input_states(self, i: int) -> dict[str, list[str]]:
        """The identified inputs of skill symbol ``i`` as letters, for small instances (H-tab)."""
        codes = self.identified_inputs[i] if self.identified_inputs else None
        if codes is None or self.spec.num_states > 729 or len(codes) in (0, self.spec.num_states):
            return {}
        return {"identified_on": [self.spec.render_state(s) for s in self.spec.decode(codes)]}

    @property
    def generalisation_set(self) -> list[Program]:
        return [v.program for v in self.verdicts if v.identified]

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec

        def names(values: tuple[int, ...], table: tuple[str, ...]) -> list[str]:
            return [table[v] for v in values]

        return {
            "hypothesis_class": self.hypothesis_class,
            "skills": {
                spec.skill_symbols[i]: {
                    "identified": self.skill_identified[i],
                    "fits": names(self.skill_values[i], spec.skills) if self.skill_values else None,
                    "identified_inputs": self.identified_domain[i],
                    "inputs_total": self.domain_size,
                    **self._input_states(i),
                }
                for i in range(spec.num_skills)
            },
            "routings": {
                spec.routing_symbols[j]: {
                    "identified": self.routing_identified[j],
                    "fits": names(self.routing_values[j], spec.routings),
                }
                for j in range(spec.num_routings)
            },
            "generalisation_set_size": len(self.generalisation_set),
            "unseen_total": len(self.verdicts),
            "lower_bound": self.lower_bound,
            "symbols_lower_bound": self.symbols_lower_bound,
            "exact": self.exact,
            "horizon": self.horizon,
            "consistent_hypotheses": self.num_hypotheses,
            "candidates": [
                {
                    "program": v.program.names(spec),
                    "symbols": " ".join(v.program.symbols(spec)),
                    "identified": v.identified,
                    "reason": v.reason,
                    "witness": v.witness,
                    "status": v.status,
                }
                for v in self.verdicts
            ],
        }


def identify(
    spec: Spec,
    corpus: Corpus,
    candidates: Sequence[Program],
    hypothesis_class: str = "lib",
    *,
    budget: int = SEARCH_BUDGET,
    horizon: int | None = None,
) -> Identification:
    """Run the checker for one hypothesis class (``"lib"`` or ``"tab"``); see the module docstring.

    ``horizon`` is ``L*`` (:func:`hlsm.identify.horizon.resolve_horizon`: by default
    ``max(3, deepest candidate)``); pass the same value to compare data sets. ``budget`` bounds the
    joint bindings (H-lib) or branched execution steps (H-tab) tried per candidate; a candidate that
    exceeds it is reported ``undecided``.

    Raises
    ------
    hlsm.identify.hlib.ContradictionError
        When no hypothesis of the class explains the data.
    hlsm.identify.horizon.HorizonError
        When a data or candidate program is deeper than the horizon.
    """
    if hypothesis_class not in HYPOTHESIS_CLASSES:
        raise HLSMError(f"hypothesis class must be one of {HYPOTHESIS_CLASSES}, got {hypothesis_class!r}")
    if corpus.spec != spec:
        raise HLSMError("the corpus was made for another spec; identify it with the spec it was simulated with")
    for p in candidates:
        p.check(spec)
    depths = corpus.programs.depth.tolist() if len(corpus) else []
    horizon = resolve_horizon([p.depth for p in candidates], depths, horizon)
    with torch_threads(1):
        steps, records = split_corpus(corpus)
        probes = probe_states(spec)
        if hypothesis_class == "lib":
            return _identify_lib(spec, LibCSP.build(spec, steps, records), candidates, probes, budget, horizon)
        return _identify_tab(spec, TabProblem.build(spec, steps, records), candidates, probes, budget, horizon)


def _symbol_name(spec: Spec, var: Var) -> str:
    kind, i = var
    return spec.skill_symbols[i] if kind == "s" else spec.routing_symbols[i]


def _identify_lib(
    spec: Spec, csp: LibCSP, candidates: Sequence[Program], probes: Tensor, budget: int, horizon: int
) -> Identification:
    sclass, rclass = skill_classes(spec, probes), routing_classes(spec, horizon)
    exact = comparisons_exact(spec, horizon)
    values = csp.surviving_values()

    def reps(var: Var) -> tuple[int, ...]:
        labels = sclass if var[0] == "s" else rclass
        return tuple(sorted({labels[v] for v in values[var]}))

    # one surviving module per extensional class: class members satisfy the same constraints (data and
    # candidates are no deeper than the horizon), so searching one of each loses nothing
    def one_per_class(var: Var) -> set[int]:
        labels = sclass if var[0] == "s" else rclass
        return {min(v for v in values[var] if labels[v] == c) for c in {labels[v] for v in values[var]}}

    class_values = {var: one_per_class(var) for var in values}
    skill_reps = tuple(reps(("s", i)) for i in range(spec.num_skills))
    routing_reps = tuple(reps(("r", j)) for j in range(spec.num_routings))
    cache: dict[tuple[tuple[int, int], ...], Tensor] = {}
    verdicts = []
    status: Status = "exact" if exact else "probes"
    for program in candidates:
        symbols: list[Var] = []
        for m, k in program.steps:
            symbols += [v for v in ((("r", m),) if m >= 0 else ()) + (("s", k),) if v not in symbols]
        if all(len(class_values[v]) == 1 for v in symbols):
            verdicts.append(Verdict(program, True, status=status))
            continue
        routing_vars = [v for v in symbols if v[0] == "r"]
        seen: dict[bytes, tuple[dict[Var, int], Tensor]] = {}
        verdict = None
        try:
            for routing in csp.joint_values(routing_vars, class_values, budget):
                # skill symbols that sit only at dead steps under this routing binding cannot change the answer
                live = live_steps(spec, program, {m: routing["r", m] for _, m in routing_vars})
                skill_vars = list(dict.fromkeys(("s", k) for (m, k), on in zip(program.steps, live, strict=True) if on))
                fixed = {**class_values, **{v: {routing[v]} for v in routing_vars}}
                for assign in csp.joint_values(routing_vars + skill_vars, fixed, budget):
                    # a dead step's skill is never read: any value (0) executes the same answer
                    steps = tuple(
                        (m if m < 0 else assign["r", m], assign["s", k] if on else 0)
                        for (m, k), on in zip(program.steps, live, strict=True)
                    )
                    bound = Program(steps)
                    key = tuple(
                        (m if m < 0 else rclass[m], sclass[k] if on else -1)
                        for (m, k), on in zip(steps, live, strict=True)
                    )
                    if key not in cache:
                        cache[key] = answer_codes(spec, bound, probes)
                    digest = cache[key].numpy().tobytes()
                    if seen and digest not in seen:
                        first_assign, first_answers = next(iter(seen.values()))
                        verdict = _lib_reason(spec, program, first_assign, assign, first_answers, cache[key], probes)
                        verdict = replace(verdict, status=status)
                        break
                    seen.setdefault(digest, (assign, cache[key]))
                if verdict is not None:
                    break
        except _BudgetExceeded:
            verdict = Verdict(
                program, False, f"undecided: more than {budget} joint bindings to compare", status="undecided"
            )
        verdicts.append(verdict or Verdict(program, True, status=status))
    skill_ok = tuple(len(r) == 1 for r in skill_reps)
    size = spec.num_states
    return Identification(
        "lib",
        spec,
        skill_ok,
        tuple(len(r) == 1 for r in routing_reps),
        skill_reps,
        routing_reps,
        tuple(size if ok else 0 for ok in skill_ok),
        size,
        (),
        tuple(verdicts),
        any(v.status == "undecided" for v in verdicts),
        math.prod(len(v) for v in values.values()),
        horizon,
        exact,
    )


def _lib_reason(
    spec: Spec,
    program: Program,
    first: dict[Var, int],
    second: dict[Var, int],
    first_answers: Tensor,
    second_answers: Tensor,
    probes: Tensor,
) -> Verdict:
    """The symbols whose two fitting bindings change the answer, and an input that shows it."""
    where = int((first_answers != second_answers).nonzero()[0, 0])
    differs = [v for v in dict.fromkeys([*first, *second]) if first.get(v) != second.get(v)]

    def name(v: Var, value: int | None) -> str:
        return "any (its step is dead)" if value is None else (spec.skills if v[0] == "s" else spec.routings)[value]

    alternatives = {_symbol_name(spec, v): [name(v, first.get(v)), name(v, second.get(v))] for v in differs}
    contexts = []
    for step, (m, k) in enumerate(program.steps, start=1):
        if ("s", k) in differs or ("r", m) in differs:
            contexts.append(step)
    reason = (
        "symbol(s) "
        + ", ".join(f"{name} ({' or '.join(alts)})" for name, alts in alternatives.items())
        + f" at step(s) {contexts} fit the data equally well and change the answer"
    )
    witness = {
        "alternatives": alternatives,
        "x0": spec.render_state(probes[where]),
        "answers": [
            spec.render_state(spec.decode(first_answers[where])),
            spec.render_state(spec.decode(second_answers[where])),
        ],
    }
    return Verdict(program, False, reason, witness)


def _identify_tab(
    spec: Spec, problem: TabProblem, candidates: Sequence[Program], probes: Tensor, budget: int, horizon: int
) -> Identification:
    rclass = routing_classes(spec, horizon)
    exact = comparisons_exact(spec, horizon)
    bindings, tables = problem.bindings, problem.tables
    routing_values: list[tuple[int, ...]] = []
    for j in range(spec.num_routings):
        if j in problem.constrained:
            routing_values.append(tuple(sorted({rclass[b[j]] for b in bindings})))
        else:
            routing_values.append(tuple(sorted(set(rclass))))
    stacked = torch.stack(tables)  # (B, K, |X|)
    agreed = (stacked != UNKNOWN).all(dim=0) & (stacked == stacked[0:1]).all(dim=0)
    identified_inputs = tuple(agreed[i].nonzero(as_tuple=True)[0] for i in range(spec.num_skills))
    domain = tuple(len(codes) for codes in identified_inputs)
    # not in G: certain on golden data, a lower bound when answer-only records were approximated
    missed: Status = "probes" if not exact else "lower_bound" if problem.approximate else "exact"
    verdicts = []
    for program in candidates:
        verdicts.append(_tab_verdict(spec, problem, program, probes, rclass, budget, exact, missed))
    return Identification(
        "tab",
        spec,
        tuple(d == spec.num_states for d in domain),
        tuple(len(v) == 1 for v in routing_values),
        (),
        tuple(routing_values),
        domain,
        spec.num_states,
        identified_inputs,
        tuple(verdicts),
        any(v.status in ("lower_bound", "undecided") for v in verdicts),
        len(bindings),
        horizon,
        exact,
        problem.approximate,
    )


def _tab_verdict(
    spec: Spec,
    problem: TabProblem,
    program: Program,
    probes: Tensor,
    rclass: tuple[int, ...],
    budget: int,
    exact: bool,
    missed: Status,
) -> Verdict:
    """One candidate in H-tab: the answer under every consistent routing binding (free routing
    symbols: every class), with free table entries branched over where a live step reads them."""
    free = sorted({m for m, _ in program.steps if m >= 0 and m not in problem.constrained})
    free_values = sorted(set(rclass))
    first: tuple[Tensor, dict[int, int]] | None = None
    for b, table in zip(problem.bindings, problem.tables, strict=True):
        for combo in itertools.product(free_values, repeat=len(free)):
            full = {**b, **dict(zip(free, combo, strict=True))}
            answers = problem.answers(program, probes, full, table).clone()
            for where in (answers == UNKNOWN).nonzero(as_tuple=True)[0].tolist():
                x0 = int(spec.encode(probes[where : where + 1])[0])
                witness = {"x0": spec.render_state(probes[where]), "binding": _binding_names(spec, full)}
                unobserved = f" (unobserved routing symbols {[spec.routing_symbols[m] for m in free]})" if free else ""
                if spec.num_states > MAX_INVERT_STATES:
                    # branching over |X| values per free entry is for small X only; above that a free
                    # live entry leaves the answer undecided (a later step may still absorb it)
                    reason = "undecided: a live step reads a table entry that the data leave free" + unobserved
                    return Verdict(program, False, reason, witness, "undecided" if exact else "probes")
                found = problem.answer_set(program, x0, full, table, budget)
                if found is None:
                    return Verdict(
                        program,
                        False,
                        f"undecided: a live step reads free table entries and branching over them needs more "
                        f"than {budget} steps",
                        witness,
                        "undecided",
                    )
                if len(found) > 1:
                    outs = sorted(found)[:2]
                    witness["answers"] = [spec.render_state(spec.decode(torch.tensor(o))) for o in outs]
                    reason = (
                        "a live step reads a table entry that the data leave free, and its value changes the answer"
                        + unobserved
                    )
                    return Verdict(program, False, reason, witness, missed)
                answers[where] = next(iter(found))
            if first is None:
                first = (answers, full)
            elif not torch.equal(first[0], answers):
                where = int((first[0] != answers).nonzero()[0, 0])
                return Verdict(
                    program,
                    False,
                    "two consistent routing bindings give different answers",
                    {
                        "bindings": [_binding_names(spec, first[1]), _binding_names(spec, full)],
                        "x0": spec.render_state(probes[where]),
                    },
                    missed,
                )
    return Verdict(program, True, status="exact" if exact else "probes")


def _binding_names(spec: Spec, binding: dict[int, int]) -> dict[str, str]:
    return {spec.routing_symbols[t]: spec.routings[m] for t, m in sorted(binding.items())}

"""The identifiability checker: which bindings, table entries and unseen programs a corpus determines.

:func:`identify` takes a spec, a noiseless corpus (a regime's data: :func:`hlsm.simulate.population_corpus`
gives the population limit) and candidate unseen programs, and answers for one hypothesis class
(``theory/identifiability.md``):

``"lib"`` (H-lib)
    symbols bind to library modules; exact (constraint propagation plus search, :mod:`hlsm.identify.hlib`);
``"tab"`` (H-tab)
    skill symbols are arbitrary tables; exact for the routings and the identified domains; the
    generalisation set is a sound lower bound when the data hide states (:mod:`hlsm.identify.htab`).

Functions are compared extensionally on :func:`hlsm.identify.observations.probe_states` (all of ``X`` for
instances up to 4096 states). Every candidate outside the generalisation set carries a reason: the
symbols whose alternatives fit the data equally well and an input where the answers differ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.identify.hlib import LibCSP, Var, _BudgetExceeded
from hlsm.identify.htab import UNKNOWN, TabProblem
from hlsm.identify.observations import probe_states, routing_classes, skill_classes, split_corpus
from hlsm.programs import Program, answer_codes
from hlsm.runtime import torch_threads
from hlsm.simulate import Corpus
from hlsm.spec import Spec

HYPOTHESIS_CLASSES = ("lib", "tab")
SEARCH_BUDGET = 20_000
"""Joint assignments of a candidate's symbols tried before it is reported undecided (not in G)."""


@dataclass(frozen=True)
class Verdict:
    """Whether one candidate program's answer is identified, and if not, why."""

    program: Program
    identified: bool
    reason: str = ""
    witness: dict[str, Any] = field(default_factory=dict)


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
        True when the generalisation set is a sound lower bound rather than exact.
    """

    hypothesis_class: str
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
            "consistent_hypotheses": self.num_hypotheses,
            "candidates": [
                {
                    "program": v.program.names(spec),
                    "symbols": " ".join(v.program.symbols(spec)),
                    "identified": v.identified,
                    "reason": v.reason,
                    "witness": v.witness,
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
) -> Identification:
    """Run the checker for one hypothesis class (``"lib"`` or ``"tab"``); see the module docstring.

    Raises
    ------
    hlsm.identify.hlib.ContradictionError
        When no hypothesis of the class explains the data.
    """
    if hypothesis_class not in HYPOTHESIS_CLASSES:
        raise HLSMError(f"hypothesis class must be one of {HYPOTHESIS_CLASSES}, got {hypothesis_class!r}")
    if corpus.spec != spec:
        raise HLSMError("the corpus was made for another spec; identify it with the spec it was simulated with")
    for p in candidates:
        p.check(spec)
    with torch_threads(1):
        steps, records = split_corpus(corpus)
        probes = probe_states(spec)
        if hypothesis_class == "lib":
            return _identify_lib(spec, LibCSP.build(spec, steps, records), candidates, probes, budget)
        return _identify_tab(spec, TabProblem.build(spec, steps, records), candidates, probes)


def _symbol_name(spec: Spec, var: Var) -> str:
    kind, i = var
    return spec.skill_symbols[i] if kind == "s" else spec.routing_symbols[i]


def _identify_lib(
    spec: Spec, csp: LibCSP, candidates: Sequence[Program], probes: Tensor, budget: int
) -> Identification:
    max_depth = max([p.depth for p in candidates] + [r.program.depth for r in csp.records] + [3])
    sclass, rclass = skill_classes(spec, probes), routing_classes(spec, max_depth)
    values = csp.surviving_values()

    def reps(var: Var) -> tuple[int, ...]:
        labels = sclass if var[0] == "s" else rclass
        return tuple(sorted({labels[v] for v in values[var]}))

    skill_reps = tuple(reps(("s", i)) for i in range(spec.num_skills))
    routing_reps = tuple(reps(("r", j)) for j in range(spec.num_routings))
    cache: dict[tuple[tuple[int, int], ...], Tensor] = {}
    verdicts = []
    for program in candidates:
        symbols: list[Var] = []
        for m, k in program.steps:
            symbols += [v for v in ((("r", m),) if m >= 0 else ()) + (("s", k),) if v not in symbols]
        if all(len(skill_reps[i] if kind == "s" else routing_reps[i]) == 1 for kind, i in symbols):
            verdicts.append(Verdict(program, True))
            continue
        # distinct extensional classes only; a representative stands for its class
        class_values = {
            v: {(sclass if v[0] == "s" else rclass)[x] for x in values[v]} if v not in csp.constrained else values[v]
            for v in symbols
        }
        seen: dict[bytes, tuple[dict[Var, int], Tensor]] = {}
        verdict = None
        try:
            for assign in csp.joint_values(symbols, class_values, budget):
                bound = Program(tuple((m if m < 0 else assign["r", m], assign["s", k]) for m, k in program.steps))
                key = tuple((m if m < 0 else rclass[m], sclass[k]) for m, k in bound.steps)
                if key not in cache:
                    cache[key] = answer_codes(spec, bound, probes)
                digest = cache[key].numpy().tobytes()
                if seen and digest not in seen:
                    first_assign, first_answers = next(iter(seen.values()))
                    verdict = _lib_reason(spec, program, first_assign, assign, first_answers, cache[key], probes)
                    break
                seen.setdefault(digest, (assign, cache[key]))
        except _BudgetExceeded:
            verdict = Verdict(program, False, f"undecided: more than {budget} joint bindings to compare")
        verdicts.append(verdict or Verdict(program, True))
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
        False,
        math.prod(len(v) for v in values.values()),
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
    differs = [v for v in first if first[v] != second[v]]
    alternatives = {
        _symbol_name(spec, v): [
            (spec.skills if v[0] == "s" else spec.routings)[first[v]],
            (spec.skills if v[0] == "s" else spec.routings)[second[v]],
        ]
        for v in differs
    }
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


def _identify_tab(spec: Spec, problem: TabProblem, candidates: Sequence[Program], probes: Tensor) -> Identification:
    max_depth = max([p.depth for p in candidates] + [3])
    rclass = routing_classes(spec, max_depth)
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
    verdicts = []
    for program in candidates:
        free = sorted({m for m, _ in program.steps if m >= 0 and m not in problem.constrained})
        free_values = sorted({rclass[m] for m in range(spec.num_routings)})
        first: tuple[Tensor, dict[int, int]] | None = None
        verdict = None
        for b, table in zip(bindings, tables, strict=True):
            for combo in itertools.product(free_values, repeat=len(free)):
                full = {**b, **dict(zip(free, combo, strict=True))}
                answers = problem.answers(program, probes, full, table)
                unknown = answers == UNKNOWN
                if bool(unknown.any()):
                    where = int(unknown.nonzero()[0, 0])
                    verdict = Verdict(
                        program,
                        False,
                        "a live step reads a table entry that the data leave free"
                        + (f" (unobserved routing symbols {[spec.routing_symbols[m] for m in free]})" if free else ""),
                        {"x0": spec.render_state(probes[where]), "binding": _binding_names(spec, full)},
                    )
                    break
                if first is None:
                    first = (answers, full)
                elif not torch.equal(first[0], answers):
                    where = int((first[0] != answers).nonzero()[0, 0])
                    verdict = Verdict(
                        program,
                        False,
                        "two consistent routing bindings give different answers",
                        {
                            "bindings": [_binding_names(spec, first[1]), _binding_names(spec, full)],
                            "x0": spec.render_state(probes[where]),
                        },
                    )
                    break
            if verdict is not None:
                break
        verdicts.append(verdict or Verdict(program, True))
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
        problem.approximate,
        len(bindings),
    )


def _binding_names(spec: Spec, binding: dict[int, int]) -> dict[str, str]:
    return {spec.routing_symbols[t]: spec.routings[m] for t, m in sorted(binding.items())}

"""Identification in H-lib: symbols bind to library modules (not necessarily injectively).

A hypothesis is a pair of maps (skill symbol -> library skill, routing symbol -> library routing).
The consistent hypotheses form the solution set of a constraint-satisfaction problem
(``theory/identifiability.md``, section 3):

* a shown step with a shown history constrains only its ``(routing symbol, skill symbol)`` pair —
  a binary constraint (unary for an atomic step) computed once from all such steps;
* a trace that hides a state is one constraint over all symbols of its program (a *record*); its
  allowed tuples are enumerated by depth-first execution inside the current domains.

Arc consistency and generalised arc consistency shrink the domains; then a backtracking search
decides, for each surviving value, whether some full consistent hypothesis uses it. That makes the
result exact: a symbol is identified iff all its surviving values compute the same function.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.identify.observations import Record, StepObservations
from hlsm.spec import Spec

Var = tuple[str, int]
"""A symbol: ``("s", i)`` for skill symbol ``i``, ``("r", j)`` for routing symbol ``j``."""

_CHUNK = 32


class ContradictionError(HLSMError):
    """No hypothesis of the class explains the data (noisy or contradictory traces)."""


def _allowed_pairs(spec: Spec, steps: StepObservations) -> tuple[dict[tuple[int, int], Tensor], Tensor]:
    """Allowed module pairs per observed symbol pair, and allowed skills per atomic skill symbol.

    Returns ``pair[(tau, sigma)]`` a ``(M, K)`` bool tensor (``[m, k]`` True iff
    ``f_k(rho_m(H)) == x`` on every observation of that pair) and ``atomic`` a ``(K_sym, K)`` bool
    tensor (True where no atomic observation refutes it). Every ``(m, k)`` is first screened on the
    first ``_CHUNK`` observations of every pair at once; each surviving ``(m, k)`` is then checked
    on all observations of the pairs that kept it.
    """
    M, K = spec.num_routings, spec.num_skills
    # pair id: (tau + 1) * K + sigma, tau = -1 (atomic) first; ok[pid, m, k]
    ok = torch.ones((M + 1) * K, M, K, dtype=torch.bool)
    seen = torch.zeros((M + 1) * K, dtype=torch.bool)
    rows_of: dict[int, dict[int, Tensor]] = {}  # history length -> pair id -> rows
    for l in steps.lengths():
        pid = (steps.routing_symbol[l] + 1) * K + steps.skill_symbol[l]
        seen[pid] = True
        order = torch.argsort(pid, stable=True)
        values, counts = torch.unique_consecutive(pid[order], return_counts=True)
        rows_of[l] = dict(zip(values.tolist(), torch.split(order, counts.tolist()), strict=True))

    def check(l: int, m: int, rows: Tensor, skills: range | list[int]) -> None:
        pid = (steps.routing_symbol[l][rows] + 1) * K + steps.skill_symbol[l][rows]
        history, output = steps.history[l][rows], steps.output[l][rows]
        u = torch.where((pid < K).unsqueeze(-1), history[:, 0], spec.apply_routing(m, history))
        for k in skills:
            live = ok[pid, m, k]
            if bool(live.any()):
                bad = live & ~(spec.apply_skill(k, u) == output).all(dim=-1)
                ok[pid[bad], m, k] = False

    for l in steps.lengths():  # screen: every (m, k) on a few observations of every pair
        sample = torch.cat([rows[:_CHUNK] for rows in rows_of[l].values()])
        for m in range(M):
            check(l, m, sample if m == 0 else sample[steps.routing_symbol[l][sample] >= 0], range(K))
    survivors: dict[tuple[int, int], list[int]] = {}
    seen_ids = seen.nonzero(as_tuple=True)[0].tolist()
    for row, m, k in ok[seen].nonzero().tolist():
        if seen_ids[row] >= K or m == 0:
            survivors.setdefault((m, k), []).append(seen_ids[row])
    for l in steps.lengths():  # confirm: each surviving (m, k) on every observation of its pairs
        for (m, k), pids in survivors.items():
            parts = [rows_of[l][p] for p in pids if p in rows_of[l]]
            if parts:
                check(l, m, torch.cat(parts), [k])
    atomic_ok = torch.ones(K, K, dtype=torch.bool)
    # an atomic step has no routing: a skill fits iff it fits under the (irrelevant) routing index 0
    atomic_ok[seen[:K]] = ok[:K][seen[:K], 0]
    pair = {(pid // K - 1, pid % K): ok[pid] for pid in seen.nonzero(as_tuple=True)[0].tolist() if pid >= K}
    return pair, atomic_ok


@dataclass
class LibCSP:
    """The H-lib constraint problem of one corpus; see the module docstring."""

    spec: Spec
    domains: dict[Var, set[int]]
    pairs: dict[tuple[int, int], Tensor]
    records: list[Record]
    record_tuples: list[set[tuple[int, ...]]]
    constrained: set[Var]

    @classmethod
    def build(cls, spec: Spec, steps: StepObservations, records: list[Record]) -> LibCSP:
        pairs, atomic_ok = _allowed_pairs(spec, steps)
        domains: dict[Var, set[int]] = {("s", i): set(range(spec.num_skills)) for i in range(spec.num_skills)}
        domains |= {("r", j): set(range(spec.num_routings)) for j in range(spec.num_routings)}
        constrained: set[Var] = set()
        for i in range(spec.num_skills):
            if not bool(atomic_ok[i].all()):
                domains["s", i] = set(atomic_ok[i].nonzero(as_tuple=True)[0].tolist())
                constrained.add(("s", i))
        for tau, sigma in pairs:
            constrained |= {("r", tau), ("s", sigma)}
        for rec in records:
            constrained |= set(rec.symbols())
        csp = cls(spec, domains, pairs, records, [set() for _ in records], constrained)
        csp.propagate()
        return csp

    # -- propagation -----------------------------------------------------------------------

    def propagate(self) -> None:
        """Arc consistency on pair constraints and generalised arc consistency on records, to a fixpoint."""
        changed = True
        while changed:
            changed = self._arc_consistency()
            for i, rec in enumerate(self.records):
                tuples = set(self.record_solutions(rec))
                self.record_tuples[i] = tuples
                for pos, var in enumerate(rec.symbols()):
                    supported = {t[pos] for t in tuples}
                    if supported != self.domains[var]:
                        self.domains[var] &= supported
                        changed = True
            if any(not d for d in self.domains.values()):
                empty = [v for v, d in self.domains.items() if not d]
                raise ContradictionError(_contradiction_message(self.spec, empty))

    def _arc_consistency(self) -> bool:
        changed_any = False
        changed = True
        while changed:
            changed = False
            for (tau, sigma), allowed in self.pairs.items():
                dr, ds = self.domains["r", tau], self.domains["s", sigma]
                new_r = {m for m in dr if any(bool(allowed[m, k]) for k in ds)}
                new_s = {k for k in ds if any(bool(allowed[m, k]) for m in new_r)}
                if new_r != dr or new_s != ds:
                    self.domains["r", tau], self.domains["s", sigma] = new_r, new_s
                    changed = changed_any = True
        return changed_any

    def record_solutions(self, rec: Record, fixed: dict[Var, int] | None = None) -> Iterator[tuple[int, ...]]:
        """Assignments of ``rec.symbols()`` (inside the domains) that reproduce every shown state."""
        symbols = rec.symbols()
        domains = {v: ([fixed[v]] if fixed and v in fixed else sorted(self.domains[v])) for v in symbols}
        steps = rec.program.steps

        def dfs(step: int, assign: dict[Var, int], states: list[Tensor]) -> Iterator[dict[Var, int]]:
            if step == len(steps):
                yield assign
                return
            m_sym, k_sym = steps[step]
            r_var, s_var = ("r", m_sym), ("s", k_sym)
            routing_values = [None] if m_sym < 0 else ([assign[r_var]] if r_var in assign else domains[r_var])
            history = torch.stack(states, dim=1)
            for m in routing_values:
                u = states[0] if m is None else self.spec.apply_routing(m, history)
                a1 = assign if m is None else {**assign, r_var: m}
                for k in [a1[s_var]] if s_var in a1 else domains[s_var]:
                    x = self.spec.apply_skill(k, u)
                    if rec.mask[step] and not torch.equal(x, rec.states[:, step]):
                        continue
                    yield from dfs(step + 1, {**a1, s_var: k}, [*states, x])

        for assign in dfs(0, {}, [rec.x0]):
            yield tuple(assign[v] for v in symbols)

    # -- search ----------------------------------------------------------------------------

    def _consistent(self, assign: dict[Var, int]) -> bool:
        for (tau, sigma), allowed in self.pairs.items():
            m, k = assign.get(("r", tau)), assign.get(("s", sigma))
            if m is not None and k is not None and not bool(allowed[m, k]):
                return False
        for rec, tuples in zip(self.records, self.record_tuples, strict=True):
            symbols = rec.symbols()
            fixed = [(pos, assign[v]) for pos, v in enumerate(symbols) if v in assign]
            if fixed and not any(all(t[p] == val for p, val in fixed) for t in tuples):
                return False
        return True

    def solvable(self, fixed: dict[Var, int]) -> bool:
        """Whether a full consistent hypothesis extends ``fixed`` (backtracking over constrained symbols)."""
        if any(val not in self.domains[var] for var, val in fixed.items()):
            return False
        if not self._consistent(fixed):
            return False
        free = sorted((v for v in self.constrained if v not in fixed), key=lambda v: len(self.domains[v]))

        def backtrack(i: int, assign: dict[Var, int]) -> bool:
            if i == len(free):
                return True
            var = free[i]
            for value in sorted(self.domains[var]):
                assign[var] = value
                if self._consistent(assign) and backtrack(i + 1, assign):
                    return True
                del assign[var]
            return False

        return backtrack(0, dict(fixed))

    def surviving_values(self) -> dict[Var, set[int]]:
        """For each symbol, the values that some full consistent hypothesis gives it."""
        if not self.solvable({}):
            raise ContradictionError("the data admit no H-lib hypothesis: the constraints have no joint solution")
        out: dict[Var, set[int]] = {}
        for var, domain in self.domains.items():
            if var not in self.constrained or len(domain) == 1:
                out[var] = set(domain)
            else:
                out[var] = {v for v in domain if self.solvable({var: v})}
        return out

    def joint_values(self, variables: list[Var], values: dict[Var, set[int]], budget: int) -> Iterator[dict[Var, int]]:
        """Assignments of ``variables`` that extend to a full consistent hypothesis (at most ``budget`` tried)."""
        choices = [sorted(values[v]) for v in variables]
        # a symbol whose propagated domain is one value is forced; any two others must be checked
        # jointly, even when the caller narrowed them to one value each (a fixed routing and a skill
        # may each extend alone and still contradict one another)
        needs_search = [v for v in variables if v in self.constrained and len(self.domains[v]) > 1]
        for tried, combo in enumerate(itertools.product(*choices)):
            if tried >= budget:
                raise _BudgetExceeded
            assign = dict(zip(variables, combo, strict=True))
            if len(needs_search) >= 2:  # one such symbol alone: its surviving values already extend
                if not self.solvable(assign):
                    continue
            yield assign


class _BudgetExceeded(Exception):
    """Internal: a candidate's joint assignments exceed the search budget."""


def _contradiction_message(spec: Spec, empty: list[Var]) -> str:
    names = [spec.skill_symbols[i] if kind == "s" else spec.routing_symbols[i] for kind, i in empty]
    return (
        f"no library module fits every observation of symbol(s) {', '.join(names)}: the data contradict "
        "H-lib (noisy traces, or a module missing from the library); check the corpus and its spec"
    )

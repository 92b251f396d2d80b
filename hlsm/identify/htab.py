"""Identification in H-tab: a skill symbol may be any map ``X -> X``; routing symbols bind to library routings.

Given a routing binding ``b``, a shown step pins one table entry: ``t_sigma(rho_{b(tau)}(H)) = x``.
So a routing binding is refuted exactly when two facts about one skill symbol give the same input
two outputs — detected by scattering facts into a dense table per skill symbol. Facts involve at
most two routing symbols, so the consistent routing bindings are the solutions of a binary
constraint problem, enumerated by backtracking (``theory/identifiability.md``, section 4).

Under each consistent ``b`` the known entries are the pinned ones; every other entry is free.
Traces that hide states (answer-only RL records) are used by a sound approximation:
forward propagation of known states, then, when a record has exactly one unknown entry on
its path, every value of that entry is tried (``|X| <= MAX_INVERT_STATES``) and the entry is pinned
if exactly one value reproduces the shown states; repeated to a fixpoint. Unseen programs are
evaluated with *unknown* propagated through the routings that read it; an answer is identified iff it
is known and equal under every consistent ``b``. With records the generalisation set is a lower bound.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.identify.hlib import ContradictionError
from hlsm.identify.observations import Record, StepObservations, routing_reads
from hlsm.programs import Program
from hlsm.spec import Spec

MAX_INVERT_STATES = 729
"""Largest ``|X|`` for which RL records are inverted to pin table entries."""

MAX_BINDINGS = 20_000
"""Largest number of consistent routing bindings enumerated."""

UNKNOWN = -1


@dataclass(frozen=True)
class _Facts:
    """``(input-history, output)`` facts of one skill symbol under one routing symbol (``-1``: atomic)."""

    histories: list[Tensor]
    outputs: Tensor


def _collect(spec: Spec, steps: StepObservations) -> dict[int, dict[int, _Facts]]:
    """Group the step observations by skill symbol, then routing symbol (``-1``: atomic)."""
    K = spec.num_skills
    by: dict[int, dict[int, tuple[list[Tensor], list[Tensor]]]] = {}
    for l in steps.lengths():
        pid = (steps.routing_symbol[l] + 1) * K + steps.skill_symbol[l]
        order = torch.argsort(pid, stable=True)
        values, counts = torch.unique_consecutive(pid[order], return_counts=True)
        for code, rows in zip(values.tolist(), torch.split(order, counts.tolist()), strict=True):
            entry = by.setdefault(code % K, {}).setdefault(code // K - 1, ([], []))
            entry[0].append(steps.history[l][rows])
            entry[1].append(spec.encode(steps.output[l][rows]))
    return {s: {t: _Facts(h, torch.cat(o)) for t, (h, o) in d.items()} for s, d in by.items()}


def _inputs(spec: Spec, facts: _Facts, m: int | None) -> Tensor:
    """Input codes of the facts under routing ``m`` (``None``: atomic, the input is ``x_0``)."""
    parts = [h[:, 0] if m is None else spec.apply_routing(m, h) for h in facts.histories]
    return spec.encode(torch.cat(parts))


def _distinct(u: Tensor, x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The distinct ``(input, output)`` facts."""
    pairs = torch.unique(u * size + x)
    return pairs // size, pairs % size


def _clash(size: int, *facts: tuple[Tensor, Tensor]) -> bool:
    """Whether the facts give some input two different outputs."""
    u, x = _distinct(torch.cat([f[0] for f in facts]), torch.cat([f[1] for f in facts]), size)
    return len(torch.unique(u)) < len(u)


def _scatter(table: Tensor, u: Tensor, x: Tensor) -> bool:
    """Write facts ``table[u] = x`` in place; False if they contradict each other or the table."""
    known = table[u]
    if bool(((known != UNKNOWN) & (known != x)).any()):
        return False
    table[u] = x
    return bool((table[u] == x).all())


@dataclass
class TabProblem:
    """Consistent routing bindings and, under each, the pinned table entries."""

    spec: Spec
    facts: dict[int, dict[int, _Facts]]
    bindings: list[dict[int, int]]
    tables: list[Tensor]
    constrained: list[int]
    approximate: bool

    @classmethod
    def build(cls, spec: Spec, steps: StepObservations, records: list[Record]) -> TabProblem:
        facts = _collect(spec, steps)
        size, M = spec.num_states, spec.num_routings
        empty = torch.zeros(0, dtype=torch.long)
        base: dict[int, tuple[Tensor, Tensor]] = {}
        for s, by_tau in facts.items():
            base[s] = (empty, empty)
            if -1 in by_tau:
                base[s] = _distinct(_inputs(spec, by_tau[-1], None), by_tau[-1].outputs, size)
                if _clash(size, base[s]):
                    raise ContradictionError(
                        f"atomic traces give skill symbol {spec.skill_symbols[s]} two outputs for one input: "
                        "the data contradict H-tab (noisy traces?)"
                    )
        constrained = sorted({t for by_tau in facts.values() for t in by_tau if t >= 0})
        domain: dict[int, list[int]] = {t: [] for t in constrained}
        known: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
        for t in constrained:
            for m in range(M):
                ok = True
                for s, by_tau in facts.items():
                    if t not in by_tau:
                        continue
                    known[s, t, m] = _distinct(_inputs(spec, by_tau[t], m), by_tau[t].outputs, size)
                    if _clash(size, base[s], known[s, t, m]):
                        ok = False
                        break
                if ok:
                    domain[t].append(m)
        bindings = _enumerate_bindings(spec, facts, base, domain, known, constrained)
        tables = []
        for b in bindings:
            table = torch.full((spec.num_skills, size), UNKNOWN, dtype=torch.long)
            for s, by_tau in facts.items():
                for u, x in [base[s]] + [known[s, t, b[t]] for t in by_tau if t >= 0]:
                    table[s, u] = x
            tables.append(table)
        # routing symbols met only in records: enumerate them too, so that records can refute values
        extra = sorted({m for rec in records for m in rec.program.routings} - set(constrained))
        if extra:
            combos = list(itertools.product(range(M), repeat=len(extra)))
            if len(bindings) * len(combos) > MAX_BINDINGS:
                raise ContradictionError(
                    f"more than {MAX_BINDINGS} routing bindings to check under H-tab; add golden traces "
                    "for the routing symbols that only RL records use"
                )
            bindings = [{**b, **dict(zip(extra, c, strict=True))} for b in bindings for c in combos]
            tables = [t.clone() for t in tables for _ in combos]
            constrained = sorted(set(constrained) | set(extra))
        problem = cls(spec, facts, bindings, tables, constrained, approximate=bool(records))
        if records:
            problem._use_records(records)
        if not problem.bindings:
            raise ContradictionError("no routing binding explains the data under H-tab")
        return problem

    # -- records -------------------------------------------------------------------------

    def _use_records(self, records: list[Record]) -> None:
        kept_b, kept_t = [], []
        for b, table in zip(self.bindings, self.tables, strict=True):
            refuted = False
            changed = True
            while changed and not refuted:
                changed = False
                for rec in records:
                    pins, bad = _pin_record(self.spec, rec, b, table)
                    changed |= pins > 0
                    refuted |= bad
            if not refuted:
                kept_b.append(b)
                kept_t.append(table)
        self.bindings, self.tables = kept_b, kept_t

    # -- queries ---------------------------------------------------------------------------

    def answers(self, program: Program, inputs: Tensor, b: dict[int, int], table: Tensor) -> Tensor:
        """``(B,)`` answer codes under binding ``b`` (``UNKNOWN`` where an unknown entry is live)."""
        states = [self.spec.encode(inputs)]
        for m_sym, k_sym in program.steps:
            u = _route(self.spec, None if m_sym < 0 else b[m_sym], states)
            states.append(_lookup(table[k_sym], u))
        return states[-1]

    def answer_set(
        self, program: Program, x0: int, b: dict[int, int], table: Tensor, budget: int
    ) -> frozenset[int] | None:
        """Every answer at input code ``x0`` over the completions of the free table entries under ``b``.

        Execution branches over every value of each free entry it reads; an entry read twice in one
        execution keeps its value. The answer is determined at ``x0`` iff the set has one element —
        a later many-to-one step can absorb a free entry (``count`` after ``count`` at ``n = 2``).
        Branching stops at the second distinct answer. Returns None when more than ``budget``
        execution steps would be needed. Every entry not pinned counts as free, so a single answer
        is sound whether or not records constrain the other entries.
        """
        spec, size, steps = self.spec, self.spec.num_states, program.steps
        answers: set[int] = set()
        work = [0]

        def run(step: int, states: list[int], chosen: dict[tuple[int, int], int]) -> None:
            work[0] += 1
            if work[0] > budget:
                raise _BranchBudget
            if step == len(steps):
                answers.add(states[-1])
                return
            m_sym, k_sym = steps[step]
            if m_sym < 0:
                u = states[0]
            else:
                history = spec.decode(torch.tensor(states)).unsqueeze(0)
                u = int(spec.encode(spec.apply_routing(b[m_sym], history))[0])
            known = int(table[k_sym, u])
            if known != UNKNOWN or (k_sym, u) in chosen:
                run(step + 1, [*states, known if known != UNKNOWN else chosen[k_sym, u]], chosen)
                return
            for value in range(size):
                run(step + 1, [*states, value], {**chosen, (k_sym, u): value})
                if len(answers) > 1:
                    return

        try:
            run(0, [x0], {})
        except _BranchBudget:
            return None
        return frozenset(answers)


class _BranchBudget(Exception):
    """Internal: :meth:`TabProblem.answer_set` ran out of budget."""


def _route(spec: Spec, m: int | None, states: list[Tensor]) -> Tensor:
    """Input codes of a step; ``UNKNOWN`` where the routing reads an unknown history item.

    Only the items the routing reads are decoded; the others are left as zeros, which it ignores.
    """
    if m is None:
        return states[0]
    reads = routing_reads(spec, m, len(states))
    batch = states[0].shape[0]
    history = torch.zeros(batch, len(states), spec.length, dtype=torch.long)
    unknown = torch.zeros(batch, dtype=torch.bool)
    for j, read in enumerate(reads):
        if read:
            unknown |= states[j] == UNKNOWN
            history[:, j] = spec.decode(states[j].clamp(min=0))
    u = spec.encode(spec.apply_routing(m, history))
    return torch.where(unknown, torch.full_like(u, UNKNOWN), u)


def _lookup(row: Tensor, u: Tensor) -> Tensor:
    out = row[u.clamp(min=0)]
    return torch.where(u == UNKNOWN, torch.full_like(out, UNKNOWN), out)


def _pin_record(spec: Spec, rec: Record, b: dict[int, int], table: Tensor) -> tuple[int, bool]:
    """Pin entries implied by one record under ``b``; returns (entries pinned, record contradicted)."""
    pins = 0
    states = [spec.encode(rec.x0)]
    shown = spec.encode(rec.states)
    path: list[tuple[int, Tensor]] = []
    for l, (m_sym, k_sym) in enumerate(rec.program.steps):
        if m_sym >= 0 and m_sym not in b:  # an unconstrained routing symbol: nothing is known past here
            return pins, False
        u = _route(spec, None if m_sym < 0 else b[m_sym], states)
        x = _lookup(table[k_sym], u)
        if rec.mask[l]:
            target = shown[:, l]
            known_u = u != UNKNOWN
            if bool((known_u & (x != UNKNOWN) & (x != target)).any()):
                return pins, True
            new = known_u & (x == UNKNOWN)
            if bool(new.any()):
                if not _scatter(table[k_sym], u[new], target[new]):
                    return pins, True
                pins += int(new.sum())
            x = target
        path.append((k_sym, u))
        states.append(x)
    if spec.num_states > MAX_INVERT_STATES:
        return pins, False
    return pins + _invert(spec, rec, b, table, states, path), False


def _invert(
    spec: Spec, rec: Record, b: dict[int, int], table: Tensor, states: list[Tensor], path: list[tuple[int, Tensor]]
) -> int:
    """Try every value of the first unknown state of each row; pin it where exactly one value fits."""
    L, size = rec.program.depth, spec.num_states
    shown = spec.encode(rec.states)
    pinned = 0
    for l in range(L):
        if rec.mask[l]:
            continue
        k_sym, u = path[l]
        rows = (u != UNKNOWN) & (states[l + 1] == UNKNOWN)
        for j in range(l):  # earlier hidden states must be known
            rows &= states[j + 1] != UNKNOWN
        if not bool(rows.any()):
            continue
        idx = rows.nonzero(as_tuple=True)[0]
        values = torch.arange(size)
        trial = [s[idx].repeat_interleave(size) for s in states[: l + 1]] + [values.repeat(len(idx))]
        ok = torch.ones(len(idx) * size, dtype=torch.bool)
        determinable = torch.ones(len(idx) * size, dtype=torch.bool)
        for step in range(l + 1, L):
            m_sym, s_sym = rec.program.steps[step]
            if m_sym >= 0 and m_sym not in b:
                return pinned
            x = _lookup(table[s_sym], _route(spec, None if m_sym < 0 else b[m_sym], trial))
            determinable &= x != UNKNOWN
            if rec.mask[step]:
                ok &= x == shown[idx, step].repeat_interleave(size)
            trial.append(x)
        ok = ok.reshape(len(idx), size)
        determinable = determinable.reshape(len(idx), size).all(dim=1)
        unique = determinable & (ok.sum(dim=1) == 1)
        if bool(unique.any()):
            value = ok[unique].float().argmax(dim=1)
            if _scatter(table[k_sym], u[idx[unique]], value):
                pinned += int(unique.sum())
    return pinned


def _enumerate_bindings(
    spec: Spec,
    facts: dict[int, dict[int, _Facts]],
    base: dict[int, tuple[Tensor, Tensor]],
    domain: dict[int, list[int]],
    known: dict[tuple[int, int, int], tuple[Tensor, Tensor]],
    constrained: list[int],
) -> list[dict[int, int]]:
    """Every assignment of the constrained routing symbols whose facts agree pairwise (backtracking)."""
    order = sorted(constrained, key=lambda t: len(domain[t]))
    shared: dict[tuple[int, int], list[int]] = {}
    for s, by_tau in facts.items():
        taus = [t for t in by_tau if t >= 0]
        for i, t1 in enumerate(taus):
            for t2 in taus[i + 1 :]:
                shared.setdefault((min(t1, t2), max(t1, t2)), []).append(s)
    memo: dict[tuple[int, int, int, int], bool] = {}

    def agree(t1: int, m1: int, t2: int, m2: int) -> bool:
        key = (t1, m1, t2, m2) if t1 < t2 else (t2, m2, t1, m1)
        if key not in memo:
            memo[key] = not any(
                _clash(spec.num_states, base[s], known[s, key[0], key[1]], known[s, key[2], key[3]])
                for s in shared.get((key[0], key[2]), [])
            )
        return memo[key]

    out: list[dict[int, int]] = []

    def backtrack(i: int, assign: dict[int, int]) -> None:
        if len(out) > MAX_BINDINGS:
            raise ContradictionError(
                f"more than {MAX_BINDINGS} routing bindings fit the data under H-tab; add compound traces "
                "that tell the routings apart, or use H-lib"
            )
        if i == len(order):
            out.append(dict(assign))
            return
        t = order[i]
        for m in domain[t]:
            if all(agree(t, m, t2, m2) for t2, m2 in assign.items()):
                assign[t] = m
                backtrack(i + 1, assign)
                del assign[t]

    backtrack(0, {})
    return out

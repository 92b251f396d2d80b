"""H-tab by exhaustive search: routing symbols bind to library routings, skill symbols to any table.

Every one of the ``M**M`` routing bindings is tried. Under a binding, the skill tables are searched
depth first over the records of the corpus, running each record step by step:

- a step reads the entry ``T_s(u)`` at its input ``u = rho(x_0, ..., x_{l-1})``. If the entry is
  assigned, its value is the step's state, and the branch dies if it contradicts a shown state;
- if the entry is unassigned, the step's state stays *pending* (it is "the value of ``T_s(u)``").
  A pending state gets values only when the run needs them: when the step's state is shown (the
  entry is assigned the shown value — every other value would die at once), when a later input
  ``rho(H)`` is not the same for every value of the pending states in ``H`` (the first pending
  entry is assigned each of the ``|X|`` values in turn), or when a candidate's answer is pending
  (each of the ``|X|`` values). A pending entry never assigned is one the run's outcome does not
  depend on — the dead step of claim C1 costs no branching.

A leaf — all records run — is a partial assignment. The consistent hypotheses under the binding are
exactly the tables that extend one of the leaves (the corpus's outcome does not depend on the
entries a leaf leaves out), and leaves are disjoint, so:

- an entry ``(s, u)`` is identified iff every leaf of every consistent binding assigns it, with one
  value;
- a candidate's answer at ``x_0`` is identified iff running it from every leaf, branching in the
  same way, always gives one answer. A candidate reads only its own symbols, so a leaf that equals
  an earlier one on them (and on the candidate's routing symbols) is skipped for that candidate.

No propagation: only this enumeration, with fully shown records run first (the order changes the
running time, not the result), and a budget on the work (:class:`~hlsm.identify.oracle.base.SearchBudgetError`
when exceeded). Answer-only records through several unseen skills multiply the leaves: exact search
is for tiny instances (``|X| <= 9``, a few answer-only programs).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator, Sequence

from hlsm.identify.oracle.base import (
    DistinctRecord,
    InconsistentDataError,
    LibraryTables,
    OracleResult,
    SearchBudgetError,
    TabHypothesis,
    Witness,
    check_candidates,
    distinct_records,
    oracle_horizon,
)
from hlsm.programs import NO_ROUTING, Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

TAB_BUDGET = 10_000_000
"""Default cap on work units of the H-tab search (routing evaluations and entry assignments;
about 2.5 CPU-seconds per million)."""

Table = dict[tuple[int, int], int]
"""A partial assignment of skill tables: ``{(skill symbol, input code): output code}``."""


State = int | tuple[int, int]
"""A history item: a state code, or the key of the still unassigned entry whose value it is."""


class _Search:
    """The depth-first search of one :func:`tab_identify` call, with its work counter."""

    def __init__(self, lib: LibraryTables, budget: int) -> None:
        self.lib, self.budget, self.work = lib, budget, 0

    def _tick(self) -> None:
        self.work += 1
        if self.work > self.budget:
            raise SearchBudgetError(
                f"the exhaustive H-tab search passed its budget of {self.budget} work units; "
                "answer-only records through unseen skills multiply the branches. Use fewer or "
                "shallower answer-only programs, a smaller X, or raise budget knowingly"
            )

    def executions(
        self,
        binding: Sequence[int],
        table: Table,
        program: Program,
        x0: int,
        shown: Sequence[int | None],
        need_answer: bool,
    ) -> Generator[State, None, None]:
        """Every run of ``program`` from ``x0`` under ``binding`` that extends ``table`` and fits ``shown``.

        Yields each run's answer (a code when ``need_answer``, else possibly a pending key) while
        ``table`` holds the entries the run assigned; they are removed when the generator resumes
        or is closed (close it when stopping early).
        """
        return self._steps(binding, table, program.steps, shown, [x0], need_answer)

    def _steps(
        self,
        binding: Sequence[int],
        table: Table,
        steps: Sequence[tuple[int, int]],
        shown: Sequence[int | None],
        history: list[State],
        need_answer: bool,
    ) -> Generator[State, None, None]:
        l = len(history) - 1
        if l == len(steps):
            last = history[-1]
            if isinstance(last, tuple) and need_answer:
                yield from self._branch(table, history, last, range(self.lib.size), binding, steps, shown, need_answer)
            else:
                yield last
            return
        m, s = steps[l]
        u = history[0] if m == NO_ROUTING else self._route(binding[m], history)
        if u is None or isinstance(u, tuple):  # the input depends on a pending state: assign the first
            first = next(h for h in history if isinstance(h, tuple))
            yield from self._branch(table, history, first, range(self.lib.size), binding, steps, shown, need_answer)
            return
        x: State = table.get((s, u), (s, u))  # an unassigned entry stays pending until it matters
        target = shown[l]
        history.append(x)
        try:
            if target is None or x == target:
                yield from self._steps(binding, table, steps, shown, history, need_answer)
            elif isinstance(x, tuple):  # a shown state pins its pending entry
                yield from self._branch(table, history, x, (target,), binding, steps, shown, need_answer)
        finally:
            history.pop()

    def _branch(
        self,
        table: Table,
        history: list[State],
        key: tuple[int, int],
        values: Sequence[int],
        binding: Sequence[int],
        steps: Sequence[tuple[int, int]],
        shown: Sequence[int | None],
        need_answer: bool,
    ) -> Generator[State, None, None]:
        """Assign each of ``values`` to the pending entry ``key`` in turn, then continue the run."""
        where = [i for i, h in enumerate(history) if h == key]
        for v in values:
            self._tick()
            table[key] = v
            for i in where:
                history[i] = v
            try:
                yield from self._steps(binding, table, steps, shown, history, need_answer)
            finally:
                del table[key]
                for i in where:
                    history[i] = key

    def _route(self, m: int, history: Sequence[State]) -> int | None:
        """``rho_m(history)`` if it is the same for every value of the pending items, else None."""
        keys = list(dict.fromkeys(h for h in history if isinstance(h, tuple)))
        out: int | None = None
        for values in itertools.product(range(self.lib.size), repeat=len(keys)):
            self._tick()
            value = dict(zip(keys, values, strict=True))
            u = self.lib.route(m, [value[h] if isinstance(h, tuple) else h for h in history])
            if out is not None and u != out:
                return None
            out = u
        return out

    def leaves(self, binding: Sequence[int], records: Sequence[DistinctRecord], table: Table) -> Iterator[None]:
        """Yield once per leaf: ``table`` then holds one consistent assignment of the entries read.

        An explicit stack of per-record generators (no recursion over records).
        """
        if not records:
            yield
            return
        stack = [self.executions(binding, table, records[0].program, records[0].x0, records[0].shown, False)]
        while stack:
            if next(stack[-1], None) is None:
                stack.pop()
            elif len(stack) == len(records):
                yield
            else:
                r = records[len(stack)]
                stack.append(self.executions(binding, table, r.program, r.x0, r.shown, False))


def _per_symbol(table: Table, num_skills: int) -> list[frozenset[tuple[int, int]]]:
    """The assigned ``(input, output)`` entries of each skill symbol's table."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(num_skills)]
    for (s, u), x in table.items():
        out[s].append((u, x))
    return [frozenset(entries) for entries in out]


def _snapshot(binding: Sequence[int], table: Table) -> TabHypothesis:
    return TabHypothesis(tuple(binding), tuple(sorted((s, u, x) for (s, u), x in table.items())))


def tab_identify(
    spec: Spec,
    corpus: Corpus,
    candidates: Sequence[Program] = (),
    *,
    budget: int = TAB_BUDGET,
    horizon: int | None = None,
) -> OracleResult:
    """What the corpus identifies in H-tab, by exhaustive search (tiny ``X`` only, say ``|X| <= 9``).

    ``num_consistent`` counts the consistent routing bindings; an H-tab skill symbol counts as
    identified when its whole table is (``identified_domain == X``). Routings are compared on
    histories up to the horizon ``L*`` (:func:`hlsm.identify.horizon.resolve_horizon`). Witnesses are
    :class:`~hlsm.identify.oracle.base.TabHypothesis` branches: the entries listed reproduce the corpus and
    give the stated answer; every other entry is free.

    Raises
    ------
    InconsistentDataError
        If no routing binding admits tables that reproduce the corpus.
    SearchBudgetError
        If the search needs more than ``budget`` work units (routing evaluations and entry
        assignments).
    """
    records = sorted(distinct_records(spec, corpus), key=lambda r: any(v is None for v in r.shown))
    cands = check_candidates(spec, candidates)
    lib = LibraryTables(spec, oracle_horizon(records, cands, horizon))
    search = _Search(lib, budget)
    agreed: Table | None = None
    consistent: list[tuple[int, ...]] = []
    first: dict[tuple[Program, int], tuple[int, TabHypothesis]] = {}
    differ: set[tuple[Program, int]] = set()
    witnesses: dict[Program, Witness] = {}
    done: set[tuple[Program, tuple[int, ...], tuple[frozenset[tuple[int, int]], ...]]] = set()
    settled: set[Program] = set()
    for binding in itertools.product(range(spec.num_routings), repeat=spec.num_routings):
        table: Table = {}
        for _ in search.leaves(binding, records, table):
            if not consistent or consistent[-1] != binding:
                consistent.append(binding)
            agreed = dict(table) if agreed is None else {k: v for k, v in agreed.items() if table.get(k) == v}
            per_symbol = _per_symbol(table, spec.num_skills)
            for p in cands:
                # p reads only its own symbols: a leaf equal to an earlier one on them adds nothing new
                seen = (p, tuple(binding[m] for m in p.routings), tuple(per_symbol[k] for k in p.skills))
                if p in settled or seen in done:
                    continue
                done.add(seen)
                for x0 in range(lib.size):
                    if (p, x0) not in differ:
                        _compare_answers(search, binding, table, p, x0, first, differ, witnesses)
                if all((p, x0) in differ for x0 in range(lib.size)):
                    settled.add(p)  # no answer of p is identified: nothing more to learn about it
    if agreed is None:
        raise InconsistentDataError(
            "no H-tab hypothesis (routing binding and skill tables) reproduces the corpus: the traces "
            "contradict each other; the oracle needs noiseless (epsilon = 0) traces of this spec"
        )
    values = tuple({u: x for (s2, u), x in sorted(agreed.items()) if s2 == s} for s in range(spec.num_skills))
    answers = {p: tuple(None if (p, x0) in differ else first[p, x0][0] for x0 in range(lib.size)) for p in cands}
    return OracleResult(
        hypothesis_class="tab",
        skill_identified=tuple(len(v) == lib.size for v in values),
        routing_identified=tuple(
            len({int(lib.routing_class[b[m]]) for b in consistent}) == 1 for m in range(spec.num_routings)
        ),
        identified_domain=tuple(frozenset(v) for v in values),
        identified_values=values,
        generalisation={p: all(a is not None for a in answers[p]) for p in cands},
        answers=answers,
        witnesses=witnesses,
        num_consistent=len(consistent),
        consistent_routings=frozenset(consistent),
    )


def _compare_answers(
    search: _Search,
    binding: tuple[int, ...],
    table: Table,
    program: Program,
    x0: int,
    first: dict[tuple[Program, int], tuple[int, TabHypothesis]],
    differ: set[tuple[Program, int]],
    witnesses: dict[Program, Witness],
) -> None:
    """Run ``program`` from ``x0`` on every extension of a leaf; record a second answer if one appears."""
    runs = search.executions(binding, table, program, x0, (None,) * program.depth, True)
    try:
        for answer in runs:
            assert isinstance(answer, int)
            seen = first.get((program, x0))
            if seen is None:
                first[program, x0] = (answer, _snapshot(binding, table))
            elif seen[0] != answer:
                differ.add((program, x0))
                if program not in witnesses:
                    witnesses[program] = Witness(x0, (seen[0], answer), (seen[1], _snapshot(binding, table)))
                return
    finally:
        runs.close()

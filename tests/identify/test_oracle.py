"""The brute-force identifiability oracle on hand-built designs with known answers, and against literal enumeration.

Every design is checked in both hypothesis classes. Witnesses are re-checked here by running programs
with :func:`hlsm.programs.execute_one` and :meth:`Spec.apply_routing`, independently of the oracle's
integer tables.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from hlsm.identify.oracle import (
    InconsistentDataError,
    LibHypothesis,
    OracleError,
    OracleResult,
    SearchBudgetError,
    TabHypothesis,
    Witness,
    lib_identify,
    lib_version_space,
    regime_population,
    tab_identify,
)
from hlsm.programs import NO_ROUTING, Program, ProgramBatch, execute_one
from hlsm.simulate import Corpus, concat
from hlsm.spec import Spec

# A = 3, n = 2: |X| = 9. No two of these skills (or routings) coincide on X (on depth-2 histories).
SPEC = Spec(
    alphabet=3,
    length=2,
    skills=("reverse", "shift_up", "sort", "complement", "running_max"),
    routings=("chain", "restart", "add_first"),
)
REVERSE, SHIFT_UP, SORT, COMPLEMENT, RUNNING_MAX = range(5)
CHAIN, RESTART, ADD_FIRST = range(3)
ATOMIC = [Program.atomic(k) for k in range(SPEC.num_skills)]
STATES = SPEC.all_states().tolist()


def P(text: str, spec: Spec = SPEC) -> Program:
    return Program.from_names(spec, text)


def _code(spec: Spec, state: list[int]) -> int:
    return int(spec.encode(torch.tensor(state)))


def _truth(spec: Spec, program: Program, x0: int) -> list[int]:
    """Codes of ``x_0 .. x_L`` under the true binding."""
    return [_code(spec, s) for s in execute_one(spec, program, spec.decode(torch.tensor(x0)).tolist())]


def _population(sft: list[Program], rl: list[Program] = (), spec: Spec = SPEC) -> Corpus:  # type: ignore[assignment]
    return regime_population(spec, [(p, "full") for p in sft] + [(p, "answer") for p in rl])


def _rows(corpus: Corpus) -> list[tuple[Program, list[int], list[bool]]]:
    """``(program, [x_0 .. x_L] codes, mask)`` per trace."""
    out = []
    for i in range(len(corpus)):
        p = corpus.program(i)
        codes = corpus.spec.encode(corpus.states[i, : p.depth + 1]).tolist()
        out.append((p, codes, corpus.mask[i, : p.depth].tolist()))
    return out


def _corpus(spec: Spec, rows: list[tuple[Program, list[int], list[bool]]]) -> Corpus:
    batch = ProgramBatch.from_programs([p for p, _, _ in rows])
    width = batch.max_depth
    codes = torch.tensor([c + [c[-1]] * (width + 1 - len(c)) for _, c, _ in rows])
    mask = torch.tensor([m + [False] * (width - len(m)) for _, _, m in rows])
    return Corpus(spec, batch, spec.decode(codes), mask, ("test",) * len(rows))


def _run_with(spec: Spec, binding: tuple[int, ...], table: dict[tuple[int, int], int], program: Program, x0: int):
    """Codes of ``x_1 .. x_L`` with routing symbols bound by ``binding`` and skill symbols by ``table``."""
    history = [x0]
    for m, s in program.steps:
        if m == NO_ROUTING:
            u = x0
        else:
            h = spec.decode(torch.tensor([history]))  # (1, l, n)
            u = _code(spec, spec.apply_routing(binding[m], h)[0].tolist())
        history.append(table[s, u])
    return history[1:]


def _relabel(hyp: LibHypothesis, program: Program) -> Program:
    """The program that runs ``program`` under ``hyp`` with the true binding (symbol i -> module i)."""
    return Program(tuple((m if m == NO_ROUTING else hyp.routings[m], hyp.skills[k]) for m, k in program.steps))


def _check_witness(spec: Spec, corpus: Corpus, program: Program, w: Witness) -> None:
    """Both hypotheses reproduce the corpus and give the stated, different answers at ``w.x0``."""
    assert w.answers[0] != w.answers[1]
    for hyp, answer in zip(w.hypotheses, w.answers, strict=True):
        if isinstance(hyp, LibHypothesis):
            for p, codes, mask in _rows(corpus):
                run = _truth(spec, _relabel(hyp, p), codes[0])[1:]
                assert all(r == c for r, c, shown in zip(run, codes[1:], mask, strict=True) if shown)
            assert _truth(spec, _relabel(hyp, program), w.x0)[-1] == answer
        else:  # entries not listed are free: fill them two ways
            assert isinstance(hyp, TabHypothesis)
            for fill in (lambda s, u: 0, lambda s, u: _truth(spec, Program.atomic(s), u)[1]):
                table = {
                    (s, u): hyp.table().get((s, u), fill(s, u))
                    for s in range(spec.num_skills)
                    for u in range(spec.num_states)
                }
                for p, codes, mask in _rows(corpus):
                    run = _run_with(spec, hyp.routings, table, p, codes[0])
                    assert all(r == c for r, c, shown in zip(run, codes[1:], mask, strict=True) if shown)
                assert _run_with(spec, hyp.routings, table, program, w.x0)[-1] == answer


def _both(corpus: Corpus, candidates: list[Program], spec: Spec = SPEC) -> tuple[OracleResult, OracleResult]:
    lib, tab = lib_identify(spec, corpus, candidates), tab_identify(spec, corpus, candidates)
    for result in (lib, tab):
        for p, ok in result.generalisation.items():
            assert ok == (p not in result.witnesses)
            if not ok:
                _check_witness(spec, corpus, p, result.witnesses[p])
    return lib, tab


# -- hand-built designs ------------------------------------------------------------------------------

# every atom, and every (routing symbol, skill symbol) after shift_up, whose output never equals x_0
FULL_SFT = ATOMIC + [Program(((CHAIN, SHIFT_UP), (m, k))) for m in range(3) for k in range(5)]


def test_full_sft_identifies_everything() -> None:
    unseen = [P("restart:sort > add_first:reverse"), P("add_first:complement > chain:running_max > restart:shift_up")]
    lib, tab = _both(_population(FULL_SFT), unseen)
    for result in (lib, tab):
        assert all(result.skill_identified) and all(result.routing_identified)
        assert result.generalisation_set == frozenset(unseen)
        assert result.num_consistent == 1 and result.consistent_routings == {(0, 1, 2)}
        for p in unseen:
            assert result.answers[p] == tuple(_truth(SPEC, p, x)[-1] for x in range(9))
    assert tab.identified_domain == (frozenset(range(9)),) * 5
    assert tab.identified_values[SORT] == {x: _truth(SPEC, ATOMIC[SORT], x)[1] for x in range(9)}


def test_absent_symbol_is_free_unless_its_step_is_dead() -> None:
    """C1: running_max appears nowhere; a program using it is in G iff its output never reaches the answer."""
    sft = [p for p in FULL_SFT if RUNNING_MAX not in p.skills]
    live, dead = P("chain:running_max > chain:reverse"), P("chain:running_max > restart:reverse")
    last = P("chain:reverse > chain:running_max")
    lib, tab = _both(_population(sft), [live, dead, last])
    for result in (lib, tab):
        assert not result.skill_identified[RUNNING_MAX]
        assert result.skill_identified[:RUNNING_MAX] == (True,) * 4 and all(result.routing_identified)
        assert result.generalisation == {live: False, dead: True, last: False}
        assert result.answers[dead] == tuple(_truth(SPEC, dead, x)[-1] for x in range(9))
    assert lib.num_consistent == 5  # the absent symbol may bind to any of the 5 skills
    assert tab.identified_domain[RUNNING_MAX] == frozenset()


def test_dead_step_in_answer_only_data_adds_no_branching() -> None:
    """An RL record through an absent skill whose output is discarded leaves that skill free, cheaply."""
    sft = [p for p in FULL_SFT if RUNNING_MAX not in p.skills]
    rl = [P("chain:running_max > restart:sort")]
    tab = tab_identify(SPEC, _population(sft, rl), [P("chain:running_max > chain:reverse")], budget=20_000)
    assert tab.identified_domain[RUNNING_MAX] == frozenset() and not any(tab.generalisation.values())


def test_atomic_data_identifies_no_routing() -> None:
    """C3: atoms use no routing symbol; chain, restart, add_first differ on depth-2 histories (and
    add_first = 2 x_0 differs from the other two already at depth 1)."""
    lib, tab = _both(_population(ATOMIC), [P("chain:reverse > restart:sort"), P("restart:sort")])
    for result in (lib, tab):
        assert all(result.skill_identified) and not any(result.routing_identified)
        assert not any(result.generalisation.values())
        assert result.num_consistent == 27 and len(result.consistent_routings) == 27


@pytest.mark.parametrize("second, identified", [("sort", False), ("shift_up", True)])
def test_many_to_one_skill_masks_a_routing(second: str, identified: bool) -> None:
    """C3: sort(chain) = sort(reverse(x_0)) = sort(x_0) = sort(restart): the routing is not identified."""
    corpus = _population([*ATOMIC, P(f"chain:reverse > chain:{second}")])
    candidate = P("chain:shift_up > chain:reverse")
    lib, tab = _both(corpus, [candidate])
    for result in (lib, tab):
        assert result.routing_identified == (identified, False, False)
        assert result.generalisation[candidate] is identified
    if not identified:
        assert {b[CHAIN] for b in lib.consistent_routings} == {CHAIN, RESTART}


def test_skill_seen_only_after_a_many_to_one_skill() -> None:
    """C2: running_max only sees sorted inputs. H-tab pins it exactly there (the observed inputs);
    H-lib cannot tell it from sort, which agrees with it on sorted strings; reverse after sort is
    identified in H-lib (no other skill fits) but still only on the image in H-tab."""
    sft = [ATOMIC[k] for k in (SHIFT_UP, SORT, COMPLEMENT)]
    sft += [P("chain:shift_up > chain:shift_up"), P("chain:sort > chain:running_max"), P("chain:sort > chain:reverse")]
    lib, tab = _both(_population(sft), [P("chain:shift_up > chain:running_max")])
    observed = {_truth(SPEC, ATOMIC[SORT], x)[1] for x in range(9)}
    assert len(observed) == 6
    assert tab.routing_identified[CHAIN]
    assert tab.identified_domain[RUNNING_MAX] == observed == tab.identified_domain[REVERSE]
    assert tab.identified_values[RUNNING_MAX] == {u: _truth(SPEC, ATOMIC[RUNNING_MAX], u)[1] for u in observed}
    assert not tab.skill_identified[RUNNING_MAX] and not tab.skill_identified[REVERSE]
    assert not lib.skill_identified[RUNNING_MAX] and lib.skill_identified[REVERSE]
    assert {h.skills[RUNNING_MAX] for h in lib_version_space(SPEC, _population(sft))} == {SORT, RUNNING_MAX}
    assert lib.identified_domain[REVERSE] == frozenset(range(9)) and lib.identified_domain[RUNNING_MAX] == frozenset()


def test_contradictory_data_raises() -> None:
    rows = [(ATOMIC[REVERSE], [1, 3], [True]), (ATOMIC[REVERSE], [1, 4], [True])]
    corpus = _corpus(SPEC, rows)
    assert lib_version_space(SPEC, corpus) == []
    with pytest.raises(InconsistentDataError, match="H-lib"):
        lib_identify(SPEC, corpus)
    with pytest.raises(InconsistentDataError, match="H-tab"):
        tab_identify(SPEC, corpus)


def test_limits_raise_clear_errors() -> None:
    corpus = _population(ATOMIC)
    with pytest.raises(OracleError, match="hypotheses, above the limit"):
        lib_identify(SPEC, corpus, max_hypotheses=1000)
    with pytest.raises(SearchBudgetError, match="budget of 50"):
        tab_identify(SPEC, corpus, budget=50)
    with pytest.raises(OracleError, match="another spec"):
        lib_identify(Spec(alphabet=3, length=2, skills=("reverse",), routings=("chain",)), corpus)


def test_regime_population() -> None:
    p, q = P("chain:shift_up > restart:sort"), ATOMIC[REVERSE]
    corpus = regime_population(SPEC, {p: "full", q: "answer"})
    assert len(corpus) == 18 and corpus.split == ("sft",) * 9 + ("rl",) * 9
    for program, codes, mask in _rows(corpus):
        assert codes == _truth(SPEC, program, codes[0])
        assert mask == ([True, True] if program == p else [True])
    assert sorted(c[0] for _, c, _ in _rows(corpus)[:9]) == list(range(9))


# -- against literal enumeration ---------------------------------------------------------------------

MICRO = Spec(alphabet=2, length=2, skills=("sort", "shift_up"), routings=("chain", "restart"))
"""|X| = 4: every pair of skill tables (4**4 squared = 65536) times 4 routing bindings is enumerable."""


def _micro_brute_force(corpus: Corpus, candidates: list[Program]) -> tuple[set, dict, dict]:
    """H-tab by enumerating every full table pair: consistent bindings, identified entries, answers."""
    size = MICRO.num_states
    one = np.array(list(itertools.product(range(size), repeat=size)))  # (256, |X|)
    tables = np.stack([np.repeat(one, len(one), axis=0), np.tile(one, (len(one), 1))], axis=1)  # (65536, 2, |X|)
    route = {}  # (library routing, history length) -> rho on every history code (x_0 most significant)
    for length in (1, 2, 3):
        hists = list(itertools.product(range(size), repeat=length))
        h = MICRO.decode(torch.tensor(hists))  # (size**length, length, n)
        for m in range(2):
            route[m, length] = MICRO.encode(MICRO.apply_routing(m, h)).numpy()

    def run(binding, program, x0, rows):
        history = [np.full(len(rows), x0)]
        code = history[0]
        for m, s in program.steps:
            u = history[0] if m == NO_ROUTING else route[binding[m], len(history)][code]
            history.append(tables[rows, s, u])
            code = code * size + history[-1]
        return history[1:]

    bindings, values, answers = set(), {}, {}
    for binding in itertools.product(range(2), repeat=2):
        ok = np.arange(len(tables))
        for p, codes, mask in _rows(corpus):
            states = run(binding, p, codes[0], ok)
            keep = np.ones(len(ok), dtype=bool)
            for x, c, shown in zip(states, codes[1:], mask, strict=True):
                keep &= (x == c) | (not shown)
            ok = ok[keep]
        if len(ok):
            bindings.add(binding)
            for s, u in itertools.product(range(2), range(size)):
                values.setdefault((s, u), set()).update(tables[ok, s, u].tolist())
            for p in candidates:
                for x0 in range(size):
                    answers.setdefault((p, x0), set()).update(run(binding, p, x0, ok)[-1].tolist())
    return bindings, values, answers


@pytest.mark.parametrize("seed", range(12))
def test_tab_search_equals_enumerating_every_table(seed: int) -> None:
    rng = random.Random(seed)
    steps = [(m, k) for m in range(2) for k in range(2)]
    rows = []
    for _ in range(rng.randint(3, 7)):
        depth = rng.choice([1, 2, 2, 3])
        program = (
            Program.atomic(rng.randrange(2))
            if depth == 1 and rng.random() < 0.5
            else Program(tuple(rng.choice(steps) for _ in range(depth)))
        )
        mask = [rng.random() < 0.5 for _ in range(depth - 1)] + [rng.random() < 0.9]
        rows.append((program, _truth(MICRO, program, rng.randrange(4)), mask))
    corpus = _corpus(MICRO, rows)
    candidates = [Program(s) for s in itertools.product(steps, repeat=2)] + [Program.atomic(0), Program.atomic(1)]
    bindings, values, answers = _micro_brute_force(corpus, candidates)
    tab = tab_identify(MICRO, corpus, candidates)
    assert tab.consistent_routings == bindings
    for s in range(2):
        assert tab.identified_values[s] == {u: v.pop() for (s2, u), v in values.items() if s2 == s and len(v) == 1}
    for p in candidates:
        assert tab.answers[p] == tuple(a.pop() if len(a) == 1 else None for a in (answers[p, x] for x in range(4)))
        if p in tab.witnesses:
            _check_witness(MICRO, corpus, p, tab.witnesses[p])


def test_lib_version_space_equals_plain_enumeration() -> None:
    spec = Spec(alphabet=3, length=2, skills=("reverse", "sort", "running_max"), routings=("chain", "restart"))
    rows = [
        (p, _truth(spec, p, x), m)
        for p, x, m in [
            (P("chain:sort > restart:reverse", spec), 5, [False, True]),
            (P("chain:reverse > chain:running_max", spec), 7, [False, True]),
            (Program.atomic(1), 5, [True]),
        ]
    ]
    corpus = _corpus(spec, rows)
    expected = []
    for skills in itertools.product(range(3), repeat=3):
        for routings in itertools.product(range(2), repeat=2):
            h = LibHypothesis(skills, routings)
            if all(_truth(spec, _relabel(h, p), c[0])[-1] == c[-1] for p, c, _ in rows):
                expected.append(h)
    assert sorted(lib_version_space(spec, corpus), key=str) == sorted(expected, key=str)
    candidates = [P("chain:sort > chain:running_max", spec), P("restart:reverse > chain:sort", spec)]
    result = lib_identify(spec, corpus, candidates)
    assert result.num_consistent == len(expected)
    for p in candidates:
        relabelled = [_relabel(h, p) for h in expected]
        answers = [{_truth(spec, q, x)[-1] for q in relabelled} for x in range(9)]
        assert result.answers[p] == tuple(a.pop() if len(a) == 1 else None for a in answers)


# -- properties on random designs --------------------------------------------------------------------


def _random_design(seed: int) -> tuple[list[Program], list[Program], list[Program]]:
    """SFT (atoms and depth-2 full traces), RL (depth-2 answer-only on SFT skills), candidates."""
    rng = random.Random(seed)
    steps = [(m, k) for m in range(3) for k in range(5)]
    sft = rng.sample(ATOMIC, 3) + [Program(tuple(rng.sample(steps, 2))) for _ in range(4)]
    seen = {k for p in sft for k in p.skills}
    rl = [Program(tuple(rng.choice([s for s in steps if s[1] in seen]) for _ in range(2))) for _ in range(2)]
    candidates = [Program(tuple(rng.choice(steps) for _ in range(rng.choice([2, 3])))) for _ in range(12)]
    return sft, rl, candidates


@pytest.mark.parametrize("seed", range(3))
def test_truth_is_consistent_and_adding_data_never_grows_the_version_space(seed: int) -> None:
    sft, rl, candidates = _random_design(seed)
    small = _population(sft[:5])
    large = concat([small, _population(sft[5:], rl)])
    results = {name: _both(c, candidates) for name, c in (("small", small), ("large", large))}
    for lib, tab in results.values():
        assert (0, 1, 2) in lib.consistent_routings and (0, 1, 2) in tab.consistent_routings
        assert lib.consistent_routings <= tab.consistent_routings  # H-lib is inside H-tab
        assert tab.generalisation_set <= lib.generalisation_set
        for s, values in enumerate(tab.identified_values):
            assert values == {u: _truth(SPEC, ATOMIC[s], u)[1] for u in values}
        for result in (lib, tab):
            for p, answers in result.answers.items():
                assert all(a is None or a == _truth(SPEC, p, x)[-1] for x, a in enumerate(answers))
    assert LibHypothesis((0, 1, 2, 3, 4), (0, 1, 2)) in lib_version_space(SPEC, large)
    assert set(lib_version_space(SPEC, large)) <= set(lib_version_space(SPEC, small))
    for before, after in zip(results["small"], results["large"], strict=True):
        assert after.consistent_routings <= before.consistent_routings
        assert after.generalisation_set >= before.generalisation_set
        for b, a in zip(before.identified_values, after.identified_values, strict=True):
            assert b.items() <= a.items()


def test_modules_are_compared_extensionally() -> None:
    """On n = 2, rotate_left is reverse; skip (x_{l-2}, else x_0) is restart on histories of length <= 2."""
    spec = Spec(
        alphabet=3, length=2, skills=("reverse", "rotate_left", "shift_up"), routings=("chain", "restart", "skip")
    )
    sft = [Program.atomic(k) for k in range(3)] + [
        P(f"chain:shift_up > {r}:reverse", spec) for r in ("chain", "restart")
    ]
    corpus = _population(sft, spec=spec)
    shallow, deep = (
        P("restart:shift_up > restart:reverse", spec),
        P("chain:shift_up > chain:shift_up > restart:reverse", spec),
    )
    for identify in (lib_identify, tab_identify):
        two = identify(spec, corpus, [shallow], horizon=2)  # compared on histories of length <= 2
        assert all(two.skill_identified) and two.routing_identified == (True, True, False)
        assert two.generalisation[shallow]
        three = identify(spec, corpus, [shallow, deep])  # default horizon L* = 3: skip and restart differ
        assert three.routing_identified == (True, False, False) and not three.generalisation[deep]
        assert {b[1] for b in three.consistent_routings} == {1, 2}
    assert lib_identify(spec, corpus).num_consistent == 2 * 2 * 1 * 2 * 3  # reverse/rotate_left twice, restart/skip

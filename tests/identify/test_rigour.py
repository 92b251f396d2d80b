"""Regression tests for the answers that used to depend on the data's depth or be flagged exact wrongly.

Each test keeps the counterexample that forced a correction (``theory/identifiability.md``): one
horizon for every data set (Lemma 0), verdict statuses that never claim more than they know, the
search over extensional classes with dead steps pruned, and the H-tab absorption case.
"""

from __future__ import annotations

import pytest
import torch

from hlsm.identify.checker import identify
from hlsm.identify.claims import TinyDesign, check_c4b, stress_design
from hlsm.identify.horizon import HorizonError
from hlsm.identify.oracle import lib_identify, lib_version_space, tab_identify
from hlsm.programs import Program
from hlsm.simulate import concat, population_corpus
from hlsm.spec import Spec


def P(text: str, spec: Spec) -> Program:
    return Program.from_names(spec, text)


def test_more_data_never_loses_identification_at_a_fixed_horizon() -> None:
    """Lemma 0. With the horizon taken from the data, the oracle identified R0 (chain) from depth-2
    data, where chain and reuse_first agree, and lost it when a depth-3 trace was added."""
    spec = Spec(alphabet=3, length=2, skills=("reverse", "shift_up"), routings=("chain", "reuse_first", "restart"))
    sft = [Program.atomic(0), Program.atomic(1), P("chain:shift_up > chain:reverse", spec)]
    more = [*sft, P("restart:shift_up > restart:shift_up > restart:reverse", spec)]
    small, large = population_corpus(spec, sft), population_corpus(spec, more)
    for horizon in (3, 4):
        for run in (
            lambda c, h=horizon: lib_identify(spec, c, horizon=h),
            lambda c, h=horizon: tab_identify(spec, c, horizon=h),
            lambda c, h=horizon: identify(spec, c, [], "lib", horizon=h),
            lambda c, h=horizon: identify(spec, c, [], "tab", horizon=h),
        ):
            before, after = run(small), run(large)
            assert all(a or not b for a, b in zip(after.routing_identified, before.routing_identified, strict=True))
            assert all(a or not b for a, b in zip(after.skill_identified, before.skill_identified, strict=True))
            assert not before.routing_identified[0]  # chain vs reuse_first: told apart only at length 3
    # at horizon 2 the small data identify R0; the large data are deeper than that horizon: refused
    assert lib_identify(spec, small, horizon=2).routing_identified[0]
    with pytest.raises(HorizonError, match="at least 3"):
        lib_identify(spec, large, horizon=2)
    with pytest.raises(HorizonError, match="at least 3"):
        identify(spec, large, [], "lib", horizon=2)


def test_a_candidate_deeper_than_the_horizon_is_refused() -> None:
    spec = Spec(alphabet=3, length=2, skills=("reverse", "shift_up"), routings=("chain",))
    corpus = population_corpus(spec, [Program.atomic(0)])
    deep = P("chain:reverse > chain:reverse > chain:reverse > chain:reverse", spec)
    with pytest.raises(HorizonError, match="candidate program has depth 4"):
        identify(spec, corpus, [deep], "lib", horizon=3)
    assert identify(spec, corpus, [deep], "lib").horizon == 4  # default: max(3, deepest candidate)


def test_htab_absorbs_a_free_entry_read_before_a_constant_composite() -> None:
    """count after count is constant for n = 2: the free entries of reverse never change the answer.
    The H-tab checker said "not in G" with lower_bound false; the oracle and H-lib say in G."""
    spec = Spec(alphabet=3, length=2, skills=("reverse", "count"), routings=("chain",))
    corpus = population_corpus(spec, [Program.atomic(1)])
    candidate = P("chain:reverse > chain:count > chain:count", spec)
    tab = identify(spec, corpus, [candidate], "tab")
    assert tab.generalisation_set == [candidate] and tab.verdicts[0].status == "exact" and not tab.lower_bound
    assert identify(spec, corpus, [candidate], "lib").generalisation_set == [candidate]
    assert tab_identify(spec, corpus, [candidate]).generalisation[candidate]
    # the other direction: a live free entry that matters is still reported, exactly
    reads = P("chain:count > chain:reverse", spec)
    tab2 = identify(spec, corpus, [reads], "tab")
    assert tab2.generalisation_set == [] and tab2.verdicts[0].status == "exact"
    assert not tab_identify(spec, corpus, [reads]).generalisation[reads]


def test_dead_steps_do_not_exhaust_the_hlib_search() -> None:
    """Default library: steps 1-3 of the candidate are dead (restart reads x_0 only). The checker
    used to try every joint binding of the three absent skills, run out of budget and report
    "undecided" outside G with lower_bound false, while H-tab put the candidate in G."""
    spec = Spec()
    absent = {"shift_down", "complement", "prefix_sum"}
    atoms = [Program.atomic(k) for k, name in enumerate(spec.skills) if name not in absent]
    sft = [*atoms, P("chain:shift_up > chain:shift_up > chain:reverse > restart:reverse", spec)]
    inputs = torch.randint(spec.alphabet, (32, spec.length), generator=torch.Generator().manual_seed(0))
    corpus = population_corpus(spec, sft, inputs=inputs)
    candidate = P("zip:shift_down > chain:complement > chain:prefix_sum > restart:reverse", spec)
    lib = identify(spec, corpus, [candidate], "lib")
    assert lib.generalisation_set == [candidate]
    # |X| = 262,144: compared on probe states, so the verdict is not flagged exact
    assert lib.verdicts[0].status == "probes" and not lib.exact and not lib.lower_bound
    # H-tab (weaker: 32 inputs leave restart's binding open there) never claims more than H-lib
    tab = identify(spec, corpus, [candidate], "tab")
    assert set(tab.generalisation_set) <= set(lib.generalisation_set) and tab.verdicts[0].status == "probes"


def test_an_exhausted_budget_is_flagged_undecided_and_a_lower_bound() -> None:
    """The candidate is in G (count after count is constant at n = 2) but its free first skill has four
    classes to try: with a budget of two the verdict must say undecided, not "not in G" as if exact."""
    spec = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort", "count"), routings=("chain",))
    corpus = population_corpus(spec, [Program.atomic(3), P("chain:count > chain:count", spec)])
    candidate = P("chain:shift_up > chain:count > chain:count", spec)
    assert identify(spec, corpus, [candidate], "lib").generalisation_set == [candidate]
    result = identify(spec, corpus, [candidate], "lib", budget=2)
    verdict = result.verdicts[0]
    assert not verdict.identified and verdict.status == "undecided" and result.lower_bound and not result.exact
    assert result.to_dict()["candidates"][0]["status"] == "undecided"


def test_golden_data_verdicts_are_exact_and_records_make_htab_a_lower_bound() -> None:
    spec = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort"), routings=("chain", "restart"))
    sft = [Program.atomic(k) for k in range(3)] + [P("chain:shift_up > restart:reverse", spec)]
    rl = [P("chain:sort > chain:shift_up", spec)]
    candidates = [P("restart:sort > chain:reverse", spec), P("chain:reverse > chain:sort", spec)]
    golden = population_corpus(spec, sft)
    both = concat([golden, population_corpus(spec, rl, "answer", "rl")])
    for cls, oracle in (("lib", lib_identify), ("tab", tab_identify)):
        exact = identify(spec, golden, candidates, cls)
        assert exact.exact and all(v.status == "exact" for v in exact.verdicts)
        truth = oracle(spec, golden, candidates)
        assert [v.identified for v in exact.verdicts] == [truth.generalisation[p] for p in candidates]
    tab = identify(spec, both, candidates, "tab")
    assert all(v.status == ("exact" if v.identified else "lower_bound") for v in tab.verdicts)


def test_one_answer_record_is_one_step_fact_not_a_golden_trace() -> None:
    """Proposition 4(b). The first wording said an answer-only record whose earlier states and
    composite map x_l -> x_L are determined is as good as its golden trace. Here skip at step 3
    reads x_1, so x_3 = shift_up(x_1) whatever R0 (chain) is: the golden trace pins R0 through x_2,
    the answer-only record does not. The corrected statement: the record adds one step fact only."""
    spec = Spec(
        alphabet=3,
        length=2,
        skills=("shift_down", "sort", "shift_up", "reverse"),
        routings=("chain", "skip", "restart"),
    )
    sft = [Program.atomic(k) for k in range(4)] + [P("restart:reverse > restart:sort > skip:shift_up", spec)]
    record = [P("chain:shift_down > chain:sort > skip:shift_up", spec)]
    golden_sft = population_corpus(spec, sft)
    answer = concat([golden_sft, population_corpus(spec, record, "answer", "rl")])
    golden = concat([golden_sft, population_corpus(spec, record, "full", "rl")])
    assert lib_identify(spec, golden).routing_identified[0]
    assert not lib_identify(spec, answer).routing_identified[0]
    # the step fact (shift_down's symbol at x_0) is already known from the atoms: nothing is added
    before, after = lib_identify(spec, golden_sft), lib_identify(spec, answer)
    assert after.num_consistent == before.num_consistent
    assert identify(spec, answer, [], "lib").routing_identified == after.routing_identified


def test_a_fixed_routing_and_a_skill_are_checked_jointly() -> None:
    """fill_first after reverse is fill_last at n = 2: only (R0, S15) = (chain, fill_first) or
    (restart, fill_last) fit. Each value extends alone; the search once paired them freely and put the
    data's own program outside G, flagged exact."""
    spec = Spec(alphabet=3, length=2, skills=("reverse", "fill_first", "fill_last"), routings=("chain", "restart"))
    corpus = population_corpus(spec, [Program.atomic(0), P("restart:reverse > chain:fill_first", spec)])
    cands = [P("chain:reverse > chain:fill_first", spec), P("restart:reverse > chain:fill_first", spec)]
    truth = lib_identify(spec, corpus, cands)
    for cls in ("lib", "tab"):
        ours = identify(spec, corpus, cands, cls)
        assert ours.generalisation_set == cands == [p for p in cands if truth.generalisation[p]]


def test_htab_without_branching_says_undecided_not_exact() -> None:
    """|X| = 1000 > 729: H-tab does not branch over free entries. splice reads position 0 of x1 only
    and fill_last then copies x0's last symbol, so the answer ignores reverse's free table: in G in
    H-lib; H-tab must not call its "not in G" exact."""
    spec = Spec(alphabet=10, length=3, skills=("reverse", "fill_last", "shift_up"), routings=("chain", "splice"))
    sft = [Program.atomic(1), Program.atomic(2)] + [
        P(t, spec) for t in ("chain:shift_up > chain:shift_up", "chain:shift_up > splice:shift_up")
    ]
    corpus = population_corpus(spec, sft)
    candidate = P("chain:reverse > splice:fill_last", spec)
    assert identify(spec, corpus, [candidate], "lib", horizon=2).generalisation_set == [candidate]
    tab = identify(spec, corpus, [candidate], "tab", horizon=2)
    assert tab.exact_comparisons and tab.verdicts[0].status == "undecided" and tab.lower_bound and not tab.exact


def test_htab_symbols_from_records_are_flagged_a_lower_bound() -> None:
    design = stress_design(1014, "hidden_states")
    tab = identify(design.spec, design.corpus(), [], "tab")
    oracle = tab_identify(design.spec, design.corpus(), horizon=tab.horizon)
    assert tab.symbols_lower_bound and not tab.exact
    assert all(mine <= len(true) for mine, true in zip(tab.identified_domain, oracle.identified_domain, strict=True))
    assert tab.to_dict()["symbols_lower_bound"] is True


def test_one_answer_record_removes_exactly_the_hypotheses_its_step_fact_removes() -> None:
    """Proposition 4(b) where the record adds something: shift_down's atom is left out, so the
    record pins its symbol at one input through the injective tail x_1 -> shift_up(x_1)."""
    skills = ("shift_down", "sort", "shift_up", "reverse")
    spec = Spec(alphabet=3, length=2, skills=skills, routings=("chain", "skip", "restart"))
    sft = (
        Program.atomic(1),
        Program.atomic(2),
        Program.atomic(3),
        P("restart:reverse > restart:sort > skip:shift_up", spec),
    )
    design = TinyDesign(spec, sft, (), (P("chain:shift_down > chain:sort > skip:shift_up", spec),))
    rows = check_c4b(design, seed=1)
    assert rows and all(r.agrees for r in rows)
    space = lib_version_space(spec, design.corpus())
    x0 = spec.all_states()[:1]
    record = population_corpus(spec, list(design.candidates), "answer", "rl", inputs=x0)
    assert len(lib_version_space(spec, concat([design.corpus(), record]))) < len(space)

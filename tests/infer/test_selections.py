"""MAP selections (hlsm.infer.selections) and the posterior predictive (hlsm.infer.predictive) against brute force."""

from __future__ import annotations

import pytest
import torch

from hlsm.infer import exact
from hlsm.infer.model import HLSMParams, ModelError
from hlsm.infer.predictive import answer_distribution, answer_distributions, true_answers
from hlsm.infer.selections import map_selections, selection_recovery
from hlsm.programs import Program
from hlsm.simulate import concat, simulate
from hlsm.spec import Spec

SPEC = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort"), routings=("chain", "restart"))
SFT = [Program.atomic(k) for k in range(3)] + [Program(((0, 0), (1, 1))), Program(((1, 2), (0, 0)))]
RL = [Program(((0, 1), (1, 2))), Program(((1, 2), (0, 0), (0, 1)))]


def _random_params(seed: int, dense: bool) -> HLSMParams:
    gen = torch.Generator().manual_seed(seed)
    soft = lambda *shape: torch.softmax(2 * torch.randn(*shape, generator=gen, dtype=torch.float64), -1)
    x = SPEC.num_states
    return HLSMParams(soft(3, 3), soft(2, 2), 0.2, soft(3, x, x) if dense else None)


def _corpus() -> object:
    return concat(
        [
            simulate(SPEC, SFT, 12, 0, epsilon=0.2),
            simulate(SPEC, RL, 8, 1, epsilon=0.2, exposure="answer"),
            simulate(SPEC, RL, 6, 2, epsilon=0.2, exposure="steps:1"),
        ]
    )


@pytest.mark.parametrize("dense", [False, True])
def test_map_selections_equal_brute_force(dense: bool) -> None:
    params, corpus = _random_params(3, dense), _corpus()
    sel = map_selections(SPEC, params, SFT + RL, corpus)
    codes = SPEC.encode(corpus.states)
    tab = exact._Tables(SPEC, params)
    ties = 0
    for i in range(len(corpus)):
        program, x0 = corpus.program(i), int(codes[i, 0])
        shown = [int(codes[i, l + 1]) if corpus.mask[i, l] else None for l in range(program.depth)]
        everything = list(exact._assignments(tab, program, x0, shown))
        best = max(p for _, _, p in everything)
        d = program.depth
        got = (sel.routing[i, :d].tolist(), sel.skill[i, :d].tolist(), sel.states[i, :d].tolist())
        match = [p for sel_, xs, p in everything if ([r for r, _ in sel_], [k for _, k in sel_], xs) == got]
        # the returned assignment is consistent with the data and attains the maximum joint probability
        assert len(match) == 1 and match[0] == pytest.approx(best, rel=1e-9)
        # library tables give every corrupted state the same eps / |X|: ties are real; where the
        # maximum is unique it must be the one returned
        if sum(p >= best * (1 - 1e-9) for _, _, p in everything) == 1:
            assert exact.map_assignment(SPEC, params, program, x0, shown)[2] == match[0]
        else:
            ties += 1
        assert (sel.skill[i, d:] == -1).all() and (sel.states[i, d:] == -1).all()
    assert ties < len(corpus)  # the comparison is not vacuous


def test_selection_recovery_of_truth() -> None:
    corpus = simulate(SPEC, SFT + RL, 200, 0, epsilon=0.02)
    sel = map_selections(SPEC, HLSMParams.truth(SPEC, 0.02), SFT + RL, corpus)
    scores = selection_recovery(corpus, sel)
    # a corrupted step (2%) can make another skill the MAP explanation; most steps are recovered
    assert scores["skill_ari"] > 0.9 and scores["routing_ari"] > 0.9 and scores["skill_nmi"] > 0.9
    # relabelled modules score the same: swap skills 0 and 1 in alpha and read the labels back
    perm = torch.tensor([1, 0, 2])
    swapped = HLSMParams(torch.eye(3, dtype=torch.float64)[perm], torch.eye(2, dtype=torch.float64), 0.02)
    other = map_selections(SPEC, swapped, SFT + RL, corpus)
    assert torch.equal(other.skill[other.skill >= 0], perm[sel.skill[sel.skill >= 0]])


def test_map_selections_rejects_foreign_trace() -> None:
    with pytest.raises(ModelError, match="not in the support"):
        map_selections(SPEC, HLSMParams.truth(SPEC, 0.1), SFT, simulate(SPEC, RL, 3, 0))


@pytest.mark.parametrize("dense", [False, True])
def test_answer_distribution_equals_brute_force(dense: bool) -> None:
    params = _random_params(5, dense)
    inputs = SPEC.all_states()
    for program in [Program.atomic(2), RL[0], RL[1]]:
        got = answer_distribution(SPEC, params, program, inputs)
        assert got.shape == (SPEC.num_states, SPEC.num_states)
        for x0 in range(SPEC.num_states):
            want = exact.answer_distribution(SPEC, params, program, x0)
            assert got[x0].tolist() == pytest.approx([want[a] for a in range(SPEC.num_states)], abs=1e-12)
    both = answer_distributions(SPEC, params, RL)
    assert both.shape == (2, SPEC.num_states, SPEC.num_states)
    assert torch.allclose(both.sum(-1), torch.ones(2, SPEC.num_states, dtype=torch.float64))


def test_true_answers_are_the_noiseless_mode() -> None:
    truth = HLSMParams.truth(SPEC, 0.05)
    for program in RL:
        probs = answer_distribution(SPEC, truth, program)
        assert torch.equal(probs.argmax(-1), true_answers(SPEC, program))

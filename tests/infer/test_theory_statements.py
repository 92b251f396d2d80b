"""The statements of theory/identifiability.md sections 6 and 7 on the smallest cases that decide them, both ways."""

from __future__ import annotations

import torch

from hlsm.infer.context import StepRecords, fit_context, simulate_planted
from hlsm.infer.likelihood import CorpusLikelihood
from hlsm.programs import Program
from hlsm.simulate import population_corpus
from hlsm.spec import Spec

SPEC = Spec(
    alphabet=3, length=2, skills=("reverse", "shift_up", "sort", "running_max", "complement"), routings=("chain",)
)
SORT, RMAX, REVERSE, COMPLEMENT = 2, 3, 0, 4
BETA = torch.ones(1, 1, dtype=torch.float64)


def _loglik(program: Program, exposure: str, row: dict[int, float], symbol: int, epsilon: float) -> float:
    """log p(population corpus of ``program``), ``symbol`` bound to the mixture ``row``, the others to their own."""
    corpus = population_corpus(SPEC, [program], exposure, "sft" if exposure == "full" else "rl")
    alpha = torch.eye(SPEC.num_skills, dtype=torch.float64)
    alpha[symbol] = 0.0
    for skill, weight in row.items():
        alpha[symbol, skill] = weight
    return float(CorpusLikelihood(SPEC, [program], corpus)(alpha, BETA, epsilon))


def test_two_consistent_bindings_tie_at_any_eps_on_golden_traces_but_only_at_zero_with_hidden_states() -> None:
    # running_max after sort sees sorted states only, where it and sort are the identity: both bindings
    # of the running_max symbol reproduce every record
    program = Program(((0, SORT), (0, RMAX)))
    for epsilon in (0.01, 0.1):  # golden traces: every state shown, the likelihood cannot tell them apart
        assert (
            abs(
                _loglik(program, "full", {RMAX: 1.0}, RMAX, epsilon)
                - _loglik(program, "full", {SORT: 1.0}, RMAX, epsilon)
            )
            < 1e-12
        )
    tiny = abs(
        _loglik(program, "answer", {RMAX: 1.0}, RMAX, 1e-9) - _loglik(program, "answer", {SORT: 1.0}, RMAX, 1e-9)
    )
    assert tiny < 1e-6  # hidden state, eps -> 0: consistent bindings have the data's maximal likelihood
    gap = abs(_loglik(program, "answer", {RMAX: 1.0}, RMAX, 0.01) - _loglik(program, "answer", {SORT: 1.0}, RMAX, 0.01))
    assert gap > 1e-3  # hidden state, eps > 0: a corrupted x_1 is mapped differently by the two (9 records)


def test_mixed_assignments_fit_golden_traces_and_not_hidden_ones() -> None:
    # golden: running_max twice after sort; a row split between sort and running_max is as good as either
    twice = Program(((0, SORT), (0, RMAX), (0, RMAX)))
    for epsilon in (1e-9, 0.1):
        pure = _loglik(twice, "full", {RMAX: 1.0}, RMAX, epsilon)
        mixed = _loglik(twice, "full", {RMAX: 0.5, SORT: 0.5}, RMAX, epsilon)
        assert abs(pure - mixed) < 1e-9
    # hidden: reverse twice and complement twice both give x_0 back, so either pure binding of the
    # reverse symbol fits; per-step selections mix them (reverse then complement), which fits nothing
    involution = Program(((0, REVERSE), (0, REVERSE)))
    reverse = _loglik(involution, "answer", {REVERSE: 1.0}, REVERSE, 1e-9)
    complement = _loglik(involution, "answer", {COMPLEMENT: 1.0}, REVERSE, 1e-9)
    mixed = _loglik(involution, "answer", {REVERSE: 0.5, COMPLEMENT: 0.5}, REVERSE, 1e-9)
    assert abs(reverse - complement) < 1e-6 and mixed < reverse - 1.0


def test_the_probe_can_determine_a_binding_that_no_one_skill_explains() -> None:
    # after shift_up, the reverse symbol acts as complement in 30% of the traces and as itself in the
    # rest: no single class reproduces its records, yet the mixture is determined (EM recovers it)
    programs = [Program(((0, 1), (0, REVERSE)))]
    planted = simulate_planted(SPEC, programs, 1400, 0, planted={(REVERSE, 1): COMPLEMENT})
    clean = simulate_planted(SPEC, programs, 3266, 1)
    records = StepRecords.from_states(SPEC, planted[0] + clean[0], planted[1] + clean[1])
    fit = fit_context(SPEC, records)
    row = fit.alpha[REVERSE, 1]
    share = 1400 / (1400 + 3266)
    se = (share * (1 - share) / (1400 + 3266)) ** 0.5
    # states on which reverse and complement agree (ties) are split in proportion: the estimate is unbiased
    assert abs(float(row[COMPLEMENT]) - share) < 4 * se + 0.01
    assert abs(float(row[REVERSE]) - (1 - share)) < 4 * se + 0.01
    assert float(row.sum() - row[COMPLEMENT] - row[REVERSE]) < 1e-6

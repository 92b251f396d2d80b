"""The brute-force oracle against probabilities computed by hand, and its internal consistency."""

from __future__ import annotations

import math

import pytest
import torch

from hlsm.infer import exact
from hlsm.infer.model import HLSMParams
from hlsm.programs import Program, ProgramBatch
from hlsm.simulate import Corpus
from hlsm.spec import Spec

# A = 2, n = 2: codes 0 = aa, 1 = ab, 2 = ba, 3 = bb; |X| = 4.
SPEC = Spec(alphabet=2, length=2, skills=("reverse", "shift_up"), routings=("chain", "restart"))
ALPHA = torch.tensor([[0.7, 0.3], [0.4, 0.6]], dtype=torch.float64)
BETA = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
PARAMS = HLSMParams(ALPHA, BETA, 0.2)
HIT, MISS = 0.8 + 0.05, 0.05  # (1 - eps) + eps/|X| and eps/|X|

# chain:shift_up > restart:reverse
COMPOUND = Program(((0, 1), (1, 0)))


def _corpus(spec: Spec, rows: list[tuple[Program, list[int], list[bool]]]) -> Corpus:
    """A corpus from (program, [x_0 .. x_L] codes, mask) rows."""
    batch = ProgramBatch.from_programs([p for p, _, _ in rows])
    width = batch.max_depth
    codes = torch.tensor([c + [c[-1]] * (width + 1 - len(c)) for _, c, _ in rows])
    mask = torch.tensor([m + [False] * (width - len(m)) for _, _, m in rows])
    return Corpus(spec, batch, spec.decode(codes), mask, ("test",) * len(rows))


def test_atomic_step_by_hand() -> None:
    # symbol 0 (reverse) on x_0 = aa: reverse -> aa (hit) w.p. 0.7, shift_up -> bb (miss for aa) w.p. 0.3
    p = 0.7 * HIT + 0.3 * MISS
    assert exact.trace_probability(SPEC, PARAMS, Program.atomic(0), 0, [0]) == pytest.approx(p, abs=1e-15)
    support, weights = [Program.atomic(0), COMPOUND], [3.0, 1.0]
    corpus = _corpus(SPEC, [(Program.atomic(0), [0, 0], [True])])
    expected = math.log(0.75) - math.log(4) + math.log(p)
    assert exact.log_likelihood(SPEC, PARAMS, support, corpus, weights) == pytest.approx(expected, abs=1e-12)


def test_compound_trace_by_hand() -> None:
    # step 1, symbol shift_up on x_0 = aa (chain and restart agree): x_1 = bb
    p1 = 0.4 * MISS + 0.6 * HIT
    # step 2, symbol restart/reverse: input bb (chain, w.p. 0.2) or aa (restart, 0.8); x_2 = aa
    p2 = 0.2 * (0.7 * MISS + 0.3 * HIT) + 0.8 * (0.7 * HIT + 0.3 * MISS)
    assert exact.trace_probability(SPEC, PARAMS, COMPOUND, 0, [3, 0]) == pytest.approx(p1 * p2, abs=1e-15)


def test_answer_only_by_hand() -> None:
    # P(x_1 | x_0 = aa) and P(x_2 = aa | x_1) written out for each hidden x_1
    p_x1 = {3: 0.4 * MISS + 0.6 * HIT, 0: 0.4 * HIT + 0.6 * MISS, 1: MISS, 2: MISS}
    restart = 0.7 * HIT + 0.3 * MISS  # input aa: reverse hits aa
    p_x2 = {
        3: 0.2 * (0.7 * MISS + 0.3 * HIT) + 0.8 * restart,
        0: restart,  # chain and restart both feed aa
        1: 0.2 * MISS + 0.8 * restart,  # ab: reverse and shift_up both give ba, never aa
        2: 0.2 * MISS + 0.8 * restart,
    }
    expected = sum(p_x1[x] * p_x2[x] for x in range(4))
    assert exact.trace_probability(SPEC, PARAMS, COMPOUND, 0, [None, 0]) == pytest.approx(expected, abs=1e-15)
    assert exact.answer_distribution(SPEC, PARAMS, COMPOUND, 0)[0] == pytest.approx(expected, abs=1e-15)


def test_distributions_are_normalised_and_consistent() -> None:
    for x0 in range(SPEC.num_states):
        full = exact.trace_distribution(SPEC, PARAMS, COMPOUND, x0)
        assert len(full) == SPEC.num_states**2
        assert math.fsum(full.values()) == pytest.approx(1.0, abs=1e-12)
        answers = exact.answer_distribution(SPEC, PARAMS, COMPOUND, x0)
        for x2, p in answers.items():
            assert p == pytest.approx(sum(q for xs, q in full.items() if xs[-1] == x2), abs=1e-12)


def test_dense_tables_replace_library_functions() -> None:
    tables = torch.softmax(torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    params = HLSMParams(ALPHA, BETA, 0.2, tables)
    assert exact.transition_prob(SPEC, params, 1, 2, 3) == float(tables[1, 2, 3])
    expected = 0.7 * float(tables[0, 1, 2]) + 0.3 * float(tables[1, 1, 2])  # symbol 0 on x_0 = ab, x_1 = ba
    assert exact.trace_probability(SPEC, params, Program.atomic(0), 1, [2]) == pytest.approx(expected, abs=1e-15)


def test_log_likelihood_counts_repeated_traces() -> None:
    row = (COMPOUND, [0, 3, 0], [False, True])
    one = exact.log_likelihood(SPEC, PARAMS, [COMPOUND], _corpus(SPEC, [row]))
    three = exact.log_likelihood(SPEC, PARAMS, [COMPOUND], _corpus(SPEC, [row, row, row]))
    assert three == pytest.approx(3 * one, abs=1e-12)


def test_bad_weights_are_rejected() -> None:
    corpus = _corpus(SPEC, [(COMPOUND, [0, 3, 0], [True, True])])
    with pytest.raises(ValueError, match="one per program"):
        exact.log_likelihood(SPEC, PARAMS, [COMPOUND], corpus, weights=[1.0, 2.0])


def _max_tv(spec: Spec, a: HLSMParams, b: HLSMParams, programs: list[Program]) -> float:
    """Largest total-variation distance between the full-trace distributions of two hypotheses."""
    worst = 0.0
    for program in programs:
        for x0 in range(spec.num_states):
            p, q = exact.trace_distribution(spec, a, program, x0), exact.trace_distribution(spec, b, program, x0)
            worst = max(worst, 0.5 * sum(abs(p[t] - q[t]) for t in p))
    return worst


def test_corruption_can_identify_what_noiseless_data_do_not() -> None:
    """theory/model.md section 7: with eps > 0 a corrupted state feeds a skill inputs outside the
    noiseless support, so hypotheses that agree on noiseless data can differ in distribution. On the
    C3 design (R0 = chain vs restart, masked by sort), the SFT trace distributions coincide at
    eps -> 0 and differ at eps = 0.1: more is identified with noise, not the same."""
    spec = Spec(alphabet=3, length=2, skills=("reverse", "sort", "shift_up"), routings=("chain", "restart"))
    sft = [Program.atomic(k) for k in range(3)] + [
        Program.from_names(spec, t) for t in ("restart:reverse > chain:sort", "restart:shift_up > restart:reverse")
    ]
    eye = torch.eye(3, dtype=torch.float64)
    beta_chain = torch.eye(2, dtype=torch.float64)
    beta_restart = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)  # R0 read as restart

    def tv(eps: float) -> float:
        return _max_tv(spec, HLSMParams(eye, beta_chain, eps), HLSMParams(eye, beta_restart, eps), sft)

    assert tv(1e-9) < 1e-8  # both hypotheses reproduce every noiseless trace (the checker: R0 free)
    assert tv(0.1) > 0.05  # measured 0.08: corruption separates them
    assert 0.005 < tv(0.01) < 0.02  # measured 0.0088: the margin vanishes with eps

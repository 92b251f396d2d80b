"""Per-letter selections (the probe's level below modules) on outputs with a known answer, both directions."""

from __future__ import annotations

import pytest
import torch

from hlsm.infer.letters import LetterError, LetterRecords, fit_letters, hamming_to, letter_structure, near_misses
from hlsm.programs import Program
from hlsm.spec import Spec

SPEC = Spec(
    alphabet=8,
    length=6,
    skills=("reverse", "rotate_left", "shift_up", "complement", "swap_pairs", "sort", "prefix_sum"),
    routings=("chain",),
)


def _records(outputs: torch.Tensor, inputs: torch.Tensor, symbol: int, context: int) -> LetterRecords:
    z = torch.zeros(len(inputs), dtype=torch.long)
    return LetterRecords.from_pairs(SPEC, z + symbol, z + context, z, inputs, outputs)


def test_letter_structure_of_position_and_letter_skills_and_none_for_others() -> None:
    assert letter_structure(SPEC, 0) == [(5 - i, "copy") for i in range(6)]
    assert letter_structure(SPEC, 1) == [((i + 1) % 6, "copy") for i in range(6)]
    assert letter_structure(SPEC, 2) == [(i, "up") for i in range(6)]
    assert letter_structure(SPEC, 3) == [(i, "complement") for i in range(6)]
    assert letter_structure(SPEC, 5) is None and letter_structure(SPEC, 6) is None  # sort, prefix_sum


def test_a_planted_near_miss_is_named_and_a_clean_skill_has_none() -> None:
    gen = torch.Generator().manual_seed(0)
    u = torch.randint(8, (400, 6), generator=gen)
    clean = SPEC.apply_skill(0, u)
    planted = clean.clone()
    planted[:, 3] = u[:, 1]  # reverse, but output letter 3 read from position 1 instead of 2
    noisy = torch.rand(400, generator=gen) < 0.1
    planted[noisy] = torch.randint(8, (int(noisy.sum()), 6), generator=gen)
    fit = fit_letters(SPEC, _records(planted, u, 0, 2))
    misses = near_misses(SPEC, fit, 0, 2, 0)
    assert [(m["position"], m["source"], m["map"], m["expected_source"]) for m in misses] == [(3, 1, "copy", 2)]
    assert 0.03 < float(fit.eta[0, 2]) < 0.1  # the uniform outputs' letters (some match a selection by chance)
    clean_fit = fit_letters(SPEC, _records(clean, u, 0, 2))
    assert near_misses(SPEC, clean_fit, 0, 2, 0) == [] and float(clean_fit.eta[0, 2]) < 1e-6
    distance = hamming_to(SPEC, _records(planted, u, 0, 2), torch.zeros(400, dtype=torch.long))
    assert int((distance[~noisy] <= 1).sum()) == int((~noisy).sum())  # one letter off (or none, by chance)


def test_records_from_states_read_the_writers_own_states() -> None:
    program = Program(((0, 0), (0, 2)))
    x0, written = [1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7]
    rec = LetterRecords.from_states(SPEC, [program], [[x0, written, [0] * 6]])
    assert len(rec) == 2 and rec.inputs[1].tolist() == written and rec.context.tolist() == [SPEC.num_skills, 0]
    with pytest.raises(LetterError, match="no letter records"):
        fit_letters(SPEC, LetterRecords.from_states(SPEC, [program], [[x0]]))

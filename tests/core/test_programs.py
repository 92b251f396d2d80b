"""Programs: batched execution against per-example execution and the plain-Python reference."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from hlsm.programs import (
    NO_ROUTING,
    PAD,
    Program,
    ProgramBatch,
    ProgramError,
    all_programs,
    execute,
    execute_one,
)
from hlsm.spec import Spec
from tests import reference


def random_program(spec: Spec, rng: random.Random, max_depth: int = 4) -> Program:
    """Atomic with probability 1/5, otherwise a compound program of depth 1..max_depth."""
    if rng.random() < 0.2:
        return Program.atomic(rng.randrange(spec.num_skills))
    depth = rng.randint(1, max_depth)
    return Program(tuple((rng.randrange(spec.num_routings), rng.randrange(spec.num_skills)) for _ in range(depth)))


def random_state(spec: Spec, rng: random.Random) -> list[int]:
    return [rng.randrange(spec.alphabet) for _ in range(spec.length)]


def reference_states(spec: Spec, program: Program, x0: list[int]) -> list[list[int]]:
    return reference.run_program(spec.skills, spec.routings, program.steps, x0, spec.alphabet)


SPECS = [Spec.tiny(), Spec(), Spec(alphabet=4, length=5), Spec(alphabet=2, length=2)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"A{s.alphabet}n{s.length}")
def test_execute_matches_execute_one_and_the_reference(spec: Spec) -> None:
    rng = random.Random(spec.alphabet * 31 + spec.length)
    programs = [random_program(spec, rng) for _ in range(300)]
    assert any(p.is_atomic for p in programs) and {p.depth for p in programs} == {1, 2, 3, 4}
    x0 = [random_state(spec, rng) for _ in programs]
    batch = ProgramBatch.from_programs(programs)
    states = execute(spec, batch, torch.tensor(x0))
    assert states.shape == (len(programs), 5, spec.length)
    for i, (program, start) in enumerate(zip(programs, x0, strict=True)):
        expected = reference_states(spec, program, start)
        assert execute_one(spec, program, start) == expected, program.names(spec)
        got = states[i].tolist()
        assert got[: program.depth + 1] == expected, program.names(spec)
        # slots past the depth repeat the answer, so the last slot is always the answer
        assert all(s == expected[-1] for s in got[program.depth + 1 :])


def test_execute_on_a_hand_worked_program() -> None:
    spec = Spec(
        alphabet=5, length=4, skills=("reverse", "shift_up", "sort"), routings=("chain", "restart", "add_first")
    )
    program = Program.from_names(spec, "chain:reverse > add_first:shift_up > restart:sort")
    x0 = [3, 0, 4, 1]
    # x1 = reverse(x0) = 1 4 0 3; x2 = shift_up((x1 + x0) mod 5) = shift_up(4 4 4 4) = 0 0 0 0;
    # x3 = sort(x0) = 0 1 3 4
    expected = [x0, [1, 4, 0, 3], [0, 0, 0, 0], [0, 1, 3, 4]]
    assert execute_one(spec, program, x0) == expected
    states = execute(spec, ProgramBatch.from_programs([program]), torch.tensor([x0]))
    assert states[0].tolist() == expected


def test_execute_rejects_a_wrong_x0_shape() -> None:
    spec = Spec.tiny()
    batch = ProgramBatch.from_programs([Program.atomic(0), Program.atomic(1)])
    with pytest.raises(ProgramError, match=r"x0 must have shape \(2, 3\)"):
        execute(spec, batch, torch.zeros(3, 3, dtype=torch.long))


def test_program_batch_arrays_and_round_trip() -> None:
    programs = [Program.atomic(2), Program(((0, 1), (3, 4), (1, 0))), Program(((2, 2),))]
    batch = ProgramBatch.from_programs(programs)
    assert len(batch) == 3 and batch.max_depth == 3
    assert batch.depth.tolist() == [1, 3, 1]
    assert batch.routing.tolist() == [[NO_ROUTING, PAD, PAD], [0, 3, 1], [2, PAD, PAD]]
    assert batch.skill.tolist() == [[2, PAD, PAD], [1, 4, 0], [2, PAD, PAD]]
    assert batch.programs() == programs
    assert batch.index(torch.tensor([2, 0])).programs() == [programs[2], programs[0]]
    assert ProgramBatch.from_programs(programs, max_depth=5).max_depth == 5
    with pytest.raises(ProgramError, match="exceeds max_depth=2"):
        ProgramBatch.from_programs(programs, max_depth=2)
    with pytest.raises(ProgramError, match="empty list"):
        ProgramBatch.from_programs([])


def test_program_properties() -> None:
    program = Program(((0, 5), (2, 5), (1, 3)))
    assert program.depth == 3 and not program.is_atomic
    assert program.skills == (5, 5, 3) and program.routings == (0, 2, 1)
    assert program.pairs() == ((5, 5), (5, 3))
    atomic = Program.atomic(4)
    assert atomic.is_atomic and atomic.depth == 1 and atomic.routings == () and atomic.pairs() == ()
    assert Program(((0, 4),)) != atomic


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: f"A{s.alphabet}n{s.length}")
def test_names_and_symbols_round_trip(spec: Spec) -> None:
    rng = random.Random(1)
    for _ in range(300):
        program = random_program(spec, rng, max_depth=5)
        text = program.names(spec)
        assert Program.from_names(spec, text) == program
        symbols = program.symbols(spec)
        assert len(symbols) == 2 * program.depth - program.is_atomic
        assert Program.from_symbols(spec, symbols) == program
    assert Program.from_names(spec, "sort") == Program.atomic(spec.skills.index("sort"))
    assert Program.from_names(spec, " chain:reverse >restart : sort ") == Program(
        (
            (spec.routings.index("chain"), spec.skills.index("reverse")),
            (spec.routings.index("restart"), spec.skills.index("sort")),
        )
    )


def test_names_and_symbols_of_a_known_program() -> None:
    spec = Spec.tiny()
    program = Program(((0, 0), (1, 13)))
    assert program.names(spec) == "chain:reverse > restart:sort"
    assert program.symbols(spec) == (
        spec.routing_symbols[0],
        spec.skill_symbols[0],
        spec.routing_symbols[1],
        spec.skill_symbols[13],
    )
    assert Program.atomic(13).symbols(spec) == (spec.skill_symbols[13],)


def test_program_errors() -> None:
    spec = Spec.tiny()
    r, s = spec.routing_symbols, spec.skill_symbols
    with pytest.raises(ProgramError, match="at least one step"):
        Program(())
    with pytest.raises(ProgramError, match="only a depth-1 \\(atomic\\) program may omit"):
        Program(((0, 1), (NO_ROUTING, 2)))
    with pytest.raises(ProgramError, match="skill index 24 out of range"):
        Program(((0, 24),)).check(spec)
    with pytest.raises(ProgramError, match="skill index -2 out of range"):
        Program(((0, -2),)).check(spec)
    with pytest.raises(ProgramError, match="routing index 10 out of range"):
        Program(((10, 0),)).check(spec)
    assert Program(((9, 23),)).check(spec) == Program(((9, 23),))
    with pytest.raises(ProgramError, match="unknown skill 'nope'"):
        Program.from_names(spec, "chain:nope")
    with pytest.raises(ProgramError, match="unknown routing 'nowhere'"):
        Program.from_names(spec, "nowhere:reverse")
    with pytest.raises(ProgramError, match="may omit"):
        Program.from_names(spec, "chain:reverse > sort")
    with pytest.raises(ProgramError, match="not in the library"):
        Program.from_symbols(spec, [r[0], "S99"])
    with pytest.raises(ProgramError, match="two routing symbols in a row"):
        Program.from_symbols(spec, [r[0], r[1], s[0]])
    with pytest.raises(ProgramError, match="needs a routing symbol before it"):
        Program.from_symbols(spec, [s[0], r[0], s[1]])
    with pytest.raises(ProgramError, match="needs a routing symbol before it"):
        Program.from_symbols(spec, [r[0], s[0], s[1]])
    with pytest.raises(ProgramError, match="ends with a routing symbol"):
        Program.from_symbols(spec, [r[0], s[0], r[1]])
    with pytest.raises(ProgramError, match="empty program"):
        Program.from_symbols(spec, [])


def test_all_programs_counts() -> None:
    spec = Spec(alphabet=3, length=3, skills=("reverse", "sort", "shift_up"), routings=("chain", "restart"))
    for depth in (1, 2, 3):
        programs = all_programs(spec, depth)
        assert len(programs) == (2 * 3) ** depth
        assert len(set(programs)) == len(programs)
        assert all(p.depth == depth and not p.is_atomic for p in programs)
        expected = {Program(steps) for steps in itertools.product(itertools.product(range(2), range(3)), repeat=depth)}
        assert set(programs) == expected
    only_restart = all_programs(spec, 2, routings=[1])
    assert len(only_restart) == 3**2 and all(p.routings == (1, 1) for p in only_restart)
    assert len(all_programs(Spec.tiny(), 1)) == 240

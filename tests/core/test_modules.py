"""The module library and the spec that names it.

Oracles: the per-string references of ``tests/reference.py`` (written from the module descriptions,
not from the torch code) and exhaustive enumeration of ``X`` for the bijectivity flags.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from hlsm.modules import (
    DEFAULT_ROUTINGS,
    DEFAULT_SKILLS,
    ModuleError,
    get_routing,
    get_skill,
    history_item,
    register_routing,
    register_skill,
    routings,
    skills,
    unregister,
)
from hlsm.spec import Spec, SpecError
from tests import reference

SIZES = [(3, 3), (8, 6), (4, 5), (2, 2), (5, 1), (2, 7)]
"""(A, n) pairs the references are compared on; odd and even lengths, n = 1 where supported."""

ENUMERATED_SIZES = [(2, 2), (3, 3), (4, 4), (2, 5), (3, 4), (8, 6)]
"""(A, n) pairs whose whole state space is enumerated for the bijectivity flags (8^6 = 262144)."""


def random_states(alphabet: int, length: int, count: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(alphabet, (count, length), generator=gen)


# ---------------------------------------------------------------------------------------------
# the default library


def test_default_library_sizes_and_unique_symbols() -> None:
    assert len(DEFAULT_SKILLS) == 24
    assert len(DEFAULT_ROUTINGS) == 10
    assert len(set(DEFAULT_SKILLS) | set(DEFAULT_ROUTINGS)) == 34
    symbols = [get_skill(s).symbol for s in DEFAULT_SKILLS] + [get_routing(r).symbol for r in DEFAULT_ROUTINGS]
    assert len(set(symbols)) == len(symbols) == 34
    assert set(reference.SKILLS) == set(DEFAULT_SKILLS)
    assert set(reference.ROUTINGS) == set(DEFAULT_ROUTINGS)
    # the docstring's split: 13 bijections, 11 many-to-one maps (the flags are checked by enumeration below)
    assert sum(get_skill(s).bijective for s in DEFAULT_SKILLS) == 13


def test_registry_lists_the_default_library_in_order() -> None:
    assert tuple(s.name for s in skills())[:24] == DEFAULT_SKILLS
    assert tuple(r.name for r in routings())[:10] == DEFAULT_ROUTINGS
    assert all(s.kind == "skill" for s in skills()) and all(r.kind == "routing" for r in routings())


# ---------------------------------------------------------------------------------------------
# skills against the per-string references


def supported_sizes(min_length: int) -> list[tuple[int, int]]:
    return [(a, n) for a, n in SIZES if n >= min_length]


@pytest.mark.parametrize("name", DEFAULT_SKILLS)
def test_skill_matches_reference(name: str) -> None:
    skill = get_skill(name)
    for alphabet, length in supported_sizes(skill.min_length):
        assert skill.supports(alphabet, length)
        x = random_states(alphabet, length, 200, seed=alphabet * 100 + length)
        got = skill(x, alphabet)
        expected = [reference.SKILLS[name](row, alphabet) for row in x.tolist()]
        assert got.tolist() == expected, f"{name} at A={alphabet}, n={length}"


@pytest.mark.parametrize("name", DEFAULT_SKILLS)
def test_skill_is_closed_in_x_and_deterministic(name: str) -> None:
    skill = get_skill(name)
    for alphabet, length in supported_sizes(skill.min_length):
        x = random_states(alphabet, length, 64, seed=7)
        before = x.clone()
        y = skill(x, alphabet)
        assert y.shape == x.shape and y.dtype == torch.long
        assert int(y.min()) >= 0 and int(y.max()) < alphabet
        assert torch.equal(x, before), "a skill must not modify its input in place"
        assert torch.equal(skill(x, alphabet), y)
        # row by row: a row's image does not depend on the other rows of the batch
        assert torch.equal(skill(x[5:9], alphabet), y[5:9])


def test_skills_that_need_two_symbols_refuse_length_one() -> None:
    short = {name for name in DEFAULT_SKILLS if not get_skill(name).supports(3, 1)}
    assert "sort" in short and "reverse" not in short
    assert all(get_skill(name).min_length == 2 for name in short)


# ---------------------------------------------------------------------------------------------
# bijectivity flags, by enumeration of X


@pytest.mark.parametrize("alphabet, length", ENUMERATED_SIZES)
def test_bijectivity_flags_by_enumeration(alphabet: int, length: int) -> None:
    spec = Spec(alphabet=alphabet, length=length)
    states = spec.all_states()
    assert states.shape == (alphabet**length, length)
    assert torch.equal(spec.encode(states), torch.arange(spec.num_states))
    for name in DEFAULT_SKILLS:
        skill = get_skill(name)
        images = torch.unique(spec.encode(skill(states, alphabet)))
        is_bijection = len(images) == spec.num_states
        assert is_bijection == skill.bijective, f"{name} at A={alphabet}, n={length}: {len(images)} images"


def test_bijections_on_length_one_strings() -> None:
    """n = 1: the bijective skills are defined there and stay bijections."""
    spec = Spec(
        alphabet=5,
        length=1,
        skills=tuple(s for s in DEFAULT_SKILLS if get_skill(s).supports(5, 1)),
        routings=tuple(r for r in DEFAULT_ROUTINGS if get_routing(r).supports(5, 1)),
    )
    assert spec.num_skills == 13
    states = spec.all_states()
    for k, skill in enumerate(spec.skill_modules):
        assert skill.bijective
        assert len(torch.unique(spec.encode(spec.apply_skill(k, states)))) == spec.num_states


# ---------------------------------------------------------------------------------------------
# routings against the per-string references


@pytest.mark.parametrize("name", DEFAULT_ROUTINGS)
def test_routing_matches_reference(name: str) -> None:
    routing = get_routing(name)
    for alphabet, length in supported_sizes(routing.min_length):
        gen = torch.Generator().manual_seed(alphabet * 10 + length)
        for history_length in (1, 2, 3, 5):
            history = torch.randint(alphabet, (50, history_length, length), generator=gen)
            before = history.clone()
            got = routing(history, alphabet)
            assert got.shape == (50, length) and got.dtype == torch.long
            assert int(got.min()) >= 0 and int(got.max()) < alphabet
            assert torch.equal(history, before)
            assert torch.equal(routing(history, alphabet), got)
            expected = [reference.ROUTINGS[name](h, alphabet) for h in history.tolist()]
            assert got.tolist() == expected, f"{name} at A={alphabet}, n={length}, history of {history_length}"


def test_routings_at_step_one_fall_back_to_x0() -> None:
    """With only ``x_0`` in the history, ``x_{l-1}``, ``x_{l-2}`` and ``x_1`` all read ``x_0``."""
    alphabet = 5
    x0 = random_states(alphabet, 4, 30, seed=3)
    history = x0.unsqueeze(1)
    for name in ("chain", "restart", "skip", "reuse_first", "max_first", "splice", "zip", "min_skip"):
        assert torch.equal(get_routing(name)(history, alphabet), x0), name
    assert torch.equal(get_routing("add_first")(history, alphabet), (2 * x0) % alphabet)
    assert torch.equal(get_routing("sub_skip")(history, alphabet), torch.zeros_like(x0))
    for position in (-3, -2, -1, 0, 1, 2):
        assert torch.equal(history_item(history, position), x0)


def test_history_item_reads_existing_positions() -> None:
    history = torch.arange(4 * 3 * 2).reshape(4, 3, 2)
    assert torch.equal(history_item(history, -1), history[:, 2])
    assert torch.equal(history_item(history, -2), history[:, 1])
    assert torch.equal(history_item(history, 1), history[:, 1])
    assert torch.equal(history_item(history, 3), history[:, 0])
    assert torch.equal(history_item(history, -4), history[:, 0])


# ---------------------------------------------------------------------------------------------
# registering custom modules


def _shift_by_two(x: Tensor, a: int) -> Tensor:
    return (x + 2) % a


def _last_plus_first_plus_one(h: Tensor, a: int) -> Tensor:
    return (h[:, -1] + h[:, 0] + 1) % a


@pytest.fixture
def custom_modules() -> Iterator[tuple[str, str]]:
    register_skill("my_skill", _shift_by_two, "shift up by two", bijective=True)
    try:
        register_routing("my_routing", _last_plus_first_plus_one, "x_{l-1} + x_0 + 1")
    except BaseException:
        unregister("my_skill")
        raise
    try:
        yield "my_skill", "my_routing"
    finally:
        unregister("my_skill")
        unregister("my_routing")


def test_custom_modules_are_usable_in_a_spec(custom_modules: tuple[str, str]) -> None:
    skill_name, routing_name = custom_modules
    spec = Spec(alphabet=5, length=3, skills=("reverse", skill_name), routings=("chain", routing_name))
    assert spec.skill_modules[1] is get_skill(skill_name)
    assert spec.skill_symbols[1] not in spec.skill_symbols[:1] + spec.routing_symbols
    x = random_states(5, 3, 40, seed=11)
    assert spec.apply_skill(1, x).tolist() == [[(v + 2) % 5 for v in row] for row in x.tolist()]
    history = torch.stack([x, spec.apply_skill(0, x)], dim=1)
    expected = [[(u + v + 1) % 5 for u, v in zip(h[1], h[0], strict=True)] for h in history.tolist()]
    assert spec.apply_routing(1, history).tolist() == expected


def test_a_spec_pickles_by_module_names(custom_modules: tuple[str, str]) -> None:
    """A worker process rebuilds the spec from its own registry: a custom module's function (a plugin's
    lambda cannot be pickled) never travels."""
    import pickle

    skill_name, routing_name = custom_modules
    spec = Spec(alphabet=5, length=3, skills=("reverse", skill_name), routings=("chain", routing_name))
    data = pickle.dumps(spec)
    assert skill_name.encode() in data and b"_shift_by_two" not in data
    again = pickle.loads(data)
    assert again == spec and again.skill_modules[1] is get_skill(skill_name)


def _second_item(h: Tensor, a: int) -> Tensor:
    return history_item(h, 1)


def _rotate_last(h: Tensor, a: int) -> Tensor:  # reads x_{l-1}, but not position by position
    return torch.roll(history_item(h, -1), 1, dims=-1)


def test_declared_reads_are_checked_at_registration_and_used_by_the_likelihood() -> None:
    """Both directions: a routing whose ``reads`` are true registers (and the scalable likelihood
    reads them), one that reads an item it leaves out or is not position-wise is refused."""
    routing = register_routing("last_plus_first", _last_plus_first_plus_one, "x_{l-1} + x_0 + 1", reads=(-1, 0))
    try:
        assert routing.reads == (-1, 0) and routing.read_positions(1) == (0,) and routing.read_positions(4) == (0, 3)
        assert get_routing("chain").read_positions(3) == (2,) and get_routing("skip").read_positions(1) == (0,)
    finally:
        unregister("last_plus_first")
    with pytest.raises(ModuleError, match=r"reads history item 0 of 2, which its reads=\(-1,\) leave out"):
        register_routing("liar", _last_plus_first_plus_one, "claims to read the last item only", reads=(-1,))
    with pytest.raises(ModuleError, match=r"reads history item 1 of 2, which its reads=\(-2,\) leave out"):
        register_routing("x1_as_skip", _second_item, "x_1, declared as x_{l-2} (the same item at 3 items)", reads=(-2,))
    with pytest.raises(ModuleError, match="is not position-wise"):
        register_routing("rolled", _rotate_last, "x_{l-1} rotated", reads=(-1,))
    with pytest.raises(ModuleError, match="reads must be a non-empty sequence"):
        register_routing("empty", _last_plus_first_plus_one, "no reads", reads=())
    assert "liar" not in [r.name for r in routings()] and "rolled" not in [r.name for r in routings()]
    assert register_routing("rolled", _rotate_last, "x_{l-1} rotated").reads is None  # undeclared: accepted
    unregister("rolled")


def test_unregister_removes_a_custom_module() -> None:
    register_skill("temporary_skill", _shift_by_two, "shift up by two", bijective=True)
    try:
        assert get_skill("temporary_skill").name == "temporary_skill"
    finally:
        unregister("temporary_skill")
    with pytest.raises(ModuleError, match="unknown skill 'temporary_skill'"):
        get_skill("temporary_skill")
    with pytest.raises(SpecError, match="temporary_skill"):
        Spec(skills=("reverse", "temporary_skill"))
    with pytest.raises(ModuleError, match="no registered module"):
        unregister("temporary_skill")
    with pytest.raises(ModuleError, match="default library"):
        unregister("reverse")


def test_default_symbols_stay_unique_after_unregister() -> None:
    """Removing a custom module leaves a gap in the registry; the next default symbol must skip taken ones."""
    names = ["first_extra", "second_extra", "third_extra"]
    try:
        first = register_skill(names[0], _shift_by_two, "extra", bijective=True)
        second = register_skill(names[1], _shift_by_two, "extra", bijective=True)
        assert first.symbol != second.symbol
        unregister(names[0])
        third = register_skill(names[2], _shift_by_two, "extra", bijective=True)
        assert third.symbol.startswith("S") and third.symbol != second.symbol
        used = [s.symbol for s in skills()] + [r.symbol for r in routings()]
        assert len(set(used)) == len(used)
    finally:
        for name in names:
            if name in {s.name for s in skills()}:
                unregister(name)


def _wrong_shape(x: Tensor, a: int) -> Tensor:
    return x[..., :-1]


def _out_of_range(x: Tensor, a: int) -> Tensor:
    return x + a


def _not_a_tensor(x: Tensor, a: int) -> Tensor:
    return x.tolist()  # type: ignore[return-value]


def _floats(x: Tensor, a: int) -> Tensor:
    return x.float()


def _raises(x: Tensor, a: int) -> Tensor:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "fn, message",
    [
        (_wrong_shape, "shape"),
        (_out_of_range, "left the alphabet"),
        (_not_a_tensor, "must return"),
        (_floats, "int64"),
        (_raises, "failed on a"),
    ],
)
def test_bad_skill_registration(fn: object, message: str) -> None:
    with pytest.raises(ModuleError, match=message):
        register_skill("bad_skill", fn, "bad", bijective=False)  # type: ignore[arg-type]
    assert "bad_skill" not in {s.name for s in skills()}


def test_bad_routing_registration() -> None:
    with pytest.raises(ModuleError, match="shape"):
        register_routing("bad_routing", lambda h, a: h, "returns the whole history")
    with pytest.raises(ModuleError, match="left the alphabet"):
        register_routing("bad_routing", lambda h, a: h[:, -1] - a, "negative values")
    assert "bad_routing" not in {r.name for r in routings()}


@pytest.mark.parametrize("name", ["reverse", "chain", "My_skill", "1skill", "my-skill", "", "my skill"])
def test_bad_or_duplicate_names_are_refused(name: str) -> None:
    with pytest.raises(ModuleError, match="already registered|lower-case identifier"):
        register_skill(name, _shift_by_two, "shift", bijective=True)
    with pytest.raises(ModuleError, match="already registered|lower-case identifier"):
        register_routing(name, _last_plus_first_plus_one, "merge")


def test_bad_or_taken_symbols_are_refused() -> None:
    with pytest.raises(ModuleError, match="must be 'S' followed by letters or digits"):
        register_skill("lower_symbol", _shift_by_two, "shift", bijective=True, symbol="s99")
    with pytest.raises(ModuleError, match="skill symbols start with S, routing symbols with R"):
        register_skill("routing_symbol", _shift_by_two, "shift", bijective=True, symbol="R99")
    with pytest.raises(ModuleError, match="must be 'R'"):
        register_routing("skill_symbol", _last_plus_first_plus_one, "merge", symbol="S99")
    with pytest.raises(ModuleError, match="already used"):
        register_skill("taken_symbol", _shift_by_two, "shift", bijective=True, symbol=get_skill("sort").symbol)
    assert not {"lower_symbol", "taken_symbol", "routing_symbol"} & {s.name for s in skills()}


def test_default_symbols_depend_on_the_name_not_on_the_registration_order() -> None:
    names = ("order_one", "order_two")
    for order in (names, names[::-1]):
        try:
            symbols = {n: register_skill(n, _shift_by_two, "shift", bijective=True).symbol for n in order}
            assert symbols == {"order_one": "SOrderOne", "order_two": "SOrderTwo"}
        finally:
            for n in order:
                unregister(n)
    assert get_skill("reverse").symbol == "S0" and get_routing("min_skip").symbol == "R9"  # the fixed library


def _mixes_rows(x: Tensor, a: int) -> Tensor:
    return x.flip(0)


def _random(x: Tensor, a: int) -> Tensor:
    return torch.randint(a, x.shape)


def _out_of_range_at_large_alphabets(x: Tensor, a: int) -> Tensor:
    return torch.where(torch.tensor(a >= 8), x + a, x)


def _fails_at_odd_lengths(x: Tensor, a: int) -> Tensor:
    if x.shape[-1] % 2:
        raise ValueError("odd length")
    return x


def _float_output(x: Tensor, a: int) -> Tensor:
    return x.to(torch.float32)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_mixes_rows, "mixes rows of the batch"),
        (_random, "not deterministic"),
        (_out_of_range_at_large_alphabets, "at alphabet 8, length 6 left the alphabet"),
        (_fails_at_odd_lengths, "length 7 failed"),
        (_float_output, "it returned torch.float32"),
    ],
)
def test_modules_that_lie_are_refused_at_registration(fn: object, message: str) -> None:
    with pytest.raises(ModuleError, match=message):
        register_skill("liar", fn, "lies", bijective=False)  # type: ignore[arg-type]
    assert "liar" not in {s.name for s in skills()}


def test_a_custom_module_is_checked_at_the_spec_that_uses_it() -> None:
    def big_alphabets_only(x: Tensor, a: int) -> Tensor:
        return x if a <= 8 else x + a  # fine at every registration size, out of range at A = 12

    register_skill("big_only", big_alphabets_only, "breaks at A = 12", bijective=True)
    try:
        Spec(alphabet=8, length=6, skills=("big_only",), routings=("chain",))
        with pytest.raises(SpecError, match="at alphabet 12, length 6 left the alphabet"):
            Spec(alphabet=12, length=6, skills=("big_only",), routings=("chain",))
    finally:
        unregister("big_only")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bijective": "yes"}, "bijective must be True or False, got str"),
        ({"bijective": True, "min_length": 0}, "min_length must be an integer >= 1"),
        ({"bijective": True, "symbol": 5}, "symbol must be a string or None, got int"),
    ],
)
def test_registration_argument_types(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ModuleError, match=message):
        register_skill("typed", _shift_by_two, "shift", **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the spec: module names, sizes, states


def test_unknown_module_names_give_spec_error_naming_known_modules() -> None:
    with pytest.raises(SpecError, match="unknown skill 'no_such_skill'") as err:
        Spec(skills=("reverse", "no_such_skill"))
    assert all(name in str(err.value) for name in ("reverse", "sort", "count"))
    with pytest.raises(SpecError, match="unknown routing 'no_such_routing'") as err:
        Spec(routings=("chain", "no_such_routing"))
    assert all(name in str(err.value) for name in ("chain", "restart", "min_skip"))


def test_module_that_cannot_handle_the_size_gives_spec_error() -> None:
    with pytest.raises(SpecError, match=r"skill 'sort' needs A >= 2 and n >= 2.*n=1"):
        Spec(alphabet=3, length=1, skills=("reverse", "sort"), routings=("chain",))
    with pytest.raises(SpecError, match=r"routing 'splice' needs .*n >= 2"):
        Spec(alphabet=3, length=1, skills=("reverse",), routings=("chain", "splice"))
    assert Spec(alphabet=3, length=1, skills=("reverse",), routings=("chain",)).num_states == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alphabet": 1}, "alphabet must be between 2 and 26"),
        ({"alphabet": 27}, "alphabet must be between 2 and 26"),
        ({"alphabet": 3.0}, "alphabet must be an integer"),
        ({"alphabet": True}, "alphabet must be an integer"),
        ({"length": 0}, "length must be at least 1"),
        ({"skills": ()}, "at least one skill"),
        ({"routings": ()}, "at least one routing"),
        ({"skills": ("sort", "reverse", "sort")}, "repeat"),
    ],
)
def test_bad_spec_sizes(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Spec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("alphabet, length", [(3, 3), (8, 6), (2, 5), (26, 2)])
def test_encode_decode_round_trip(alphabet: int, length: int) -> None:
    spec = Spec(alphabet=alphabet, length=length, skills=("reverse",), routings=("chain",))
    x = random_states(alphabet, length, 300, seed=5)
    codes = spec.encode(x)
    expected = [sum(v * alphabet ** (length - 1 - i) for i, v in enumerate(row)) for row in x.tolist()]
    assert codes.tolist() == expected  # first symbol most significant
    assert torch.equal(spec.decode(codes), x)
    all_codes = torch.arange(min(spec.num_states, 5000))
    assert torch.equal(spec.encode(spec.decode(all_codes)), all_codes)


def test_render_and_parse_state_round_trip() -> None:
    rng = random.Random(0)
    for alphabet, length in [(3, 3), (8, 6), (26, 4)]:
        spec = Spec(alphabet=alphabet, length=length, skills=("reverse",), routings=("chain",))
        for _ in range(100):
            state = [rng.randrange(alphabet) for _ in range(length)]
            text = spec.render_state(state)
            assert text == "".join("abcdefghijklmnopqrstuvwxyz"[v] for v in state)
            assert spec.parse_state(text) == state
            assert spec.render_state(torch.tensor(state)) == text
    assert Spec.tiny().render_state([0, 2, 1]) == "acb"


@pytest.mark.parametrize(
    "text, message",
    [
        ("ab", "has length 2, expected n=3"),
        ("abcd", "has length 4, expected n=3"),
        ("abd", "letter\\(s\\) 'd' outside the alphabet 'abc'"),
        ("aBc", "outside the alphabet"),
        ("a1c", "outside the alphabet"),
    ],
)
def test_parse_state_rejects_bad_length_and_letters(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Spec.tiny().parse_state(text)


def test_spec_from_dict_and_to_dict() -> None:
    spec = Spec.from_dict({"alphabet": 4, "length": 3, "skills": ["reverse", "sort"], "routings": ["chain"]})
    assert spec == Spec(alphabet=4, length=3, skills=("reverse", "sort"), routings=("chain",))
    assert Spec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match=r"unknown spec key\(s\) \['size'\]"):
        Spec.from_dict({"alphabet": 4, "size": 3})
    with pytest.raises(SpecError, match="must be a list of module names"):
        Spec.from_dict({"skills": "reverse"})
    with pytest.raises(SpecError, match="must be a list of module names"):
        Spec.from_dict({"routings": ["chain", 3]})


def test_spec_sizes_and_symbols() -> None:
    spec = Spec.tiny()
    assert (spec.alphabet, spec.length, spec.num_states) == (3, 3, 27)
    assert (spec.num_skills, spec.num_routings) == (24, 10)
    assert spec.skill_symbols == tuple(get_skill(s).symbol for s in DEFAULT_SKILLS)
    assert spec.routing_symbols == tuple(get_routing(r).symbol for r in DEFAULT_ROUTINGS)

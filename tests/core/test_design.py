"""Support designs: split sizes and disjointness, pair hold-out, coverage."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from hlsm.config import ConfigError
from hlsm.design import (
    DesignConfig,
    DesignError,
    SupportDesign,
    coverage,
    design_from_lists,
    make_design,
)
from hlsm.programs import NO_ROUTING, Program
from hlsm.spec import Spec

SMALL = Spec(
    alphabet=3,
    length=3,
    skills=("reverse", "rotate_left", "shift_up", "complement", "sort", "fill_first", "running_max", "count"),
    routings=("chain", "restart", "skip"),
)
"""8 skills, 3 routings: 24**2 = 576 depth-2 programs, 24**3 = 13824 depth-3 programs."""


def small_config(**overrides: object) -> DesignConfig:
    base: dict[str, object] = {
        "train_depth": 2,
        "deeper_depths": (3, 4),
        "n_sft": 60,
        "n_rl": 30,
        "n_unseen": 40,
        "n_deeper": 20,
        "seed": 0,
    }
    return DesignConfig(**{**base, **overrides})  # type: ignore[arg-type]


def compound(programs: tuple[Program, ...]) -> list[Program]:
    return [p for p in programs if not p.is_atomic]


# ---------------------------------------------------------------------------------------------
# holdout = "programs"


def test_split_sizes_depths_and_disjointness() -> None:
    config = small_config()
    design = make_design(SMALL, config)
    sft, rl, unseen, deeper = (design.programs(s) for s in ("sft", "rl", "unseen", "deeper"))
    atomic = [Program.atomic(k) for k in range(SMALL.num_skills)]
    assert [p for p in sft if p.is_atomic] == atomic
    assert len(compound(sft)) == config.n_sft
    assert len(rl) == config.n_rl and len(unseen) == config.n_unseen
    assert len(deeper) == config.n_deeper * len(config.deeper_depths)
    assert Counter(p.depth for p in deeper) == {3: 20, 4: 20}
    assert all(p.depth == 2 for p in compound(sft) + list(rl) + list(unseen))
    for a, b in combinations((sft, rl, unseen, deeper), 2):
        assert not set(a) & set(b)
    for split in (sft, rl, unseen, deeper):
        assert len(set(split)) == len(split)
        for p in split:
            p.check(SMALL)
    assert design.split_of()[rl[0]] == ["rl"]


def test_rl_inside_is_a_subset_of_sft() -> None:
    design = make_design(SMALL, small_config(rl_inside=True))
    sft, rl, unseen = (set(design.programs(s)) for s in ("sft", "rl", "unseen"))
    assert len(rl) == 30 and rl <= set(compound(design.programs("sft")))
    assert not unseen & sft
    with pytest.raises(DesignError, match="RL inside SFT asks for 70 programs but SFT has 60"):
        make_design(SMALL, small_config(rl_inside=True, n_rl=70))


def test_atomic_rl() -> None:
    design = make_design(SMALL, small_config(rl_kind="atomic", n_rl=5))
    assert design.programs("rl") == tuple(Program.atomic(k) for k in range(5))
    no_atomic_sft = make_design(SMALL, small_config(sft_atomic=False))
    assert not any(p.is_atomic for p in no_atomic_sft.programs("sft"))
    assert len(no_atomic_sft.programs("sft")) == 60


def test_same_seed_same_design_and_different_seed_different_design() -> None:
    first = make_design(SMALL, small_config(seed=3))
    again = make_design(SMALL, small_config(seed=3))
    other = make_design(SMALL, small_config(seed=4))
    assert first.splits == again.splits
    assert first == again
    assert first.splits["sft"] != other.splits["sft"]
    assert set(first.splits["unseen"]) != set(other.splits["unseen"])


def test_routings_restrict_compound_programs() -> None:
    design = make_design(SMALL, small_config(routings=("chain",), train_depth=3, deeper_depths=(4,)))
    chain = SMALL.routings.index("chain")
    for split, programs in design.splits.items():
        for p in programs:
            assert p.routings == (chain,) * p.depth or (p.is_atomic and split == "sft"), p
    pairs = make_design(SMALL, pairs_config(routings=("restart",), n_sft=20))
    restart = SMALL.routings.index("restart")
    assert all(set(p.routings) <= {restart} for split in pairs.splits.values() for p in split)
    with pytest.raises(DesignError, match=r"design routings \['teleport'\] are not in the library"):
        make_design(SMALL, small_config(routings=("teleport",)))
    with pytest.raises(DesignError, match="allows no routing"):
        make_design(SMALL, small_config(routings=()))


def test_impossible_sizes_give_design_error() -> None:
    tiny = Spec(alphabet=3, length=3, skills=("reverse", "sort"), routings=("chain",))
    config = DesignConfig(train_depth=1, deeper_depths=(2,), n_sft=50, n_rl=0, n_unseen=0, n_deeper=0)
    with pytest.raises(DesignError, match=r"asks for 50 distinct depth-1 programs .* only 2 exist"):
        make_design(tiny, config)
    too_deep = DesignConfig(train_depth=1, deeper_depths=(2,), n_sft=1, n_rl=0, n_unseen=0, n_deeper=5)
    with pytest.raises(DesignError, match="cannot draw 5 distinct depth-2 programs: only 4 exist"):
        make_design(tiny, too_deep)
    with pytest.raises(DesignError, match="successors must be between 1 and the number of skills"):
        make_design(SMALL, small_config(holdout="pairs", successors=9))
    exact_fit = DesignConfig(train_depth=1, deeper_depths=(2,), n_sft=1, n_rl=1, n_unseen=0, n_deeper=4)
    design = make_design(tiny, exact_fit)
    assert len(design.programs("deeper")) == 4 and len(set(design.programs("sft")) | set(design.programs("rl"))) == 4


# ---------------------------------------------------------------------------------------------
# holdout = "pairs"


def pairs_config(**overrides: object) -> DesignConfig:
    base: dict[str, object] = {"holdout": "pairs", "successors": 2, "train_depth": 3, "deeper_depths": (4,)}
    return small_config(**{**base, "n_sft": 40, "n_rl": 30, "n_unseen": 30, **overrides})


def test_pair_holdout_structure() -> None:
    config = pairs_config()
    design = make_design(SMALL, config)
    seen = design.seen_pairs
    assert seen is not None
    K = SMALL.num_skills
    successors = Counter(a for a, _ in seen)
    assert successors == {k: config.successors for k in range(K)}
    unseen_pairs = {(a, b) for a in range(K) for b in range(K)} - seen
    sft = compound(design.programs("sft"))
    assert len(sft) == 40 and all(set(p.pairs()) <= seen for p in sft)
    unseen = design.programs("unseen")
    assert len(unseen) == 30 and all(set(p.pairs()) & unseen_pairs for p in unseen)
    rl = design.programs("rl")
    assert len(rl) == 30 and all(set(p.pairs()) & unseen_pairs for p in rl)
    # RL programs use only RL-usable unseen pairs: round(0.75 * 48) = 36 of the 48 unseen pairs at most
    rl_used = {q for p in rl for q in p.pairs()} - seen
    assert 0 < len(rl_used) <= round(config.rl_pair_fraction * len(unseen_pairs))
    for a, b in combinations((design.programs("sft"), rl, unseen, design.programs("deeper")), 2):
        assert not set(a) & set(b)


def test_pair_holdout_rl_uses_only_the_rl_usable_pairs() -> None:
    """4 skills with 2 successors each: 8 unseen pairs, half RL-usable; dense RL covers exactly those 4."""
    spec = Spec(alphabet=3, length=3, skills=("reverse", "sort", "shift_up", "count"), routings=("chain", "restart"))
    config = DesignConfig(
        train_depth=3,
        deeper_depths=(4,),
        n_sft=30,
        n_rl=80,
        n_unseen=20,
        n_deeper=5,
        holdout="pairs",
        successors=2,
        rl_pair_fraction=0.5,
        seed=1,
    )
    design = make_design(spec, config)
    assert design.seen_pairs is not None
    rl_used = {q for p in design.programs("rl") for q in p.pairs()} - design.seen_pairs
    assert len(rl_used) == 4
    # every RL program mixes seen pairs with RL-usable ones and never touches a never-trained pair
    assert all(set(p.pairs()) - design.seen_pairs <= rl_used for p in design.programs("rl"))
    never_trained = {(a, b) for a in range(4) for b in range(4)} - design.seen_pairs - rl_used
    assert len(never_trained) == 4
    with pytest.raises(DesignError, match="distinct RL programs"):
        make_design(spec, DesignConfig(**{**config.to_dict(), "rl_pair_fraction": 0.0, "n_rl": 2}))


def test_pair_holdout_rl_inside_uses_only_seen_pairs() -> None:
    design = make_design(SMALL, pairs_config(rl_inside=True))
    assert design.seen_pairs is not None
    assert all(set(p.pairs()) <= design.seen_pairs for p in design.programs("rl"))
    assert not set(design.programs("rl")) & set(design.programs("unseen"))


def test_pair_holdout_is_reproducible() -> None:
    assert make_design(SMALL, pairs_config(seed=5)) == make_design(SMALL, pairs_config(seed=5))
    assert make_design(SMALL, pairs_config(seed=5)).seen_pairs == make_design(SMALL, pairs_config(seed=5)).seen_pairs
    assert make_design(SMALL, pairs_config(seed=5)).seen_pairs != make_design(SMALL, pairs_config(seed=6)).seen_pairs


# ---------------------------------------------------------------------------------------------
# coverage and support graph on hand-made lists


def hand_made() -> tuple[Spec, list[Program]]:
    spec = Spec(
        alphabet=3, length=3, skills=("reverse", "sort", "shift_up", "count"), routings=("chain", "restart", "skip")
    )
    programs = [
        Program.atomic(0),
        Program(((0, 1), (1, 2))),
        Program(((1, 2), (0, 2), (0, 1))),
    ]
    return spec, programs


def test_coverage_counts() -> None:
    spec, programs = hand_made()
    cov = coverage(spec, programs)
    assert cov.skills == Counter({0: 1, 1: 2, 2: 3})
    assert cov.routings == Counter({0: 3, 1: 2})
    assert cov.pairs == Counter({(1, 2): 1, (2, 2): 1, (2, 1): 1})
    assert cov.contexts == Counter({(0, 1): 2, (1, 2): 2, (0, 2): 1})
    assert cov.skills_in_compounds == Counter({1: 2, 2: 3})
    assert cov.missing_skills == [3] and cov.missing_routings == [2]
    assert cov.pair_fraction == pytest.approx(3 / 16)
    assert cov.summary(spec) == {
        "skills_covered": 3,
        "skills_total": 4,
        "skills_covered_in_compounds": 2,
        "routings_covered": 2,
        "routings_total": 3,
        "pairs_covered": 3,
        "pairs_total": 16,
        "contexts_covered": 3,
        "contexts_total": 12,
        "missing_skills": ["count"],
        "missing_routings": ["skip"],
    }
    empty = coverage(spec, [])
    assert empty.missing_skills == [0, 1, 2, 3] and empty.pair_fraction == 0.0


# ---------------------------------------------------------------------------------------------
# SupportDesign and DesignConfig


def test_support_design_checks_its_programs() -> None:
    spec, programs = hand_made()
    with pytest.raises(DesignError, match="split 'sft' lists a program twice"):
        SupportDesign(spec, {"sft": (programs[0], programs[0])})
    design = design_from_lists(spec, {"sft": ["reverse", "chain:sort > restart:shift_up"], "rl": []})
    assert design.programs("sft") == tuple(programs[:2])
    assert design.to_dict()["splits"] == {"sft": ["reverse", "chain:sort > restart:shift_up"], "rl": []}
    with pytest.raises(DesignError, match="has no split 'unseen'"):
        design.programs("unseen")
    with pytest.raises(DesignError, match="every split of the design is empty"):
        design_from_lists(spec, {"sft": [], "rl": []})


def test_design_config_from_dict() -> None:
    raw = {"train_depth": 2, "deeper_depths": [3, 5], "routings": ["chain"], "rl_pair_fraction": 1, "seed": 9}
    config = DesignConfig.from_dict(raw)
    assert config == DesignConfig(train_depth=2, deeper_depths=(3, 5), routings=("chain",), rl_pair_fraction=1, seed=9)
    assert isinstance(config.deeper_depths, tuple) and isinstance(config.routings, tuple)
    assert DesignConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"n_sfts": 3}, r"unknown key\(s\) \['n_sfts'\] in \[design\]"),
        ({"n_sft": "10"}, "key 'n_sft' must be of type int"),
        ({"n_sft": 2.5}, "key 'n_sft' must be of type int"),
        ({"rl_inside": 1}, "key 'rl_inside' must be of type bool"),
        ({"seed": True}, "key 'seed' must be of type int"),
        ({"deeper_depths": [4, "5"]}, "key 'deeper_depths' must be of type"),
        ({"deeper_depths": 4}, "key 'deeper_depths' must be of type"),
        ({"routings": "chain"}, "key 'routings' must be of type"),
        ({"holdout": "skills"}, r"holdout must be one of \[.programs., .pairs.\]"),
        ({"train_depth": 3, "deeper_depths": [3]}, "must all exceed train_depth=3"),
        ({"rl_pair_fraction": 1.5}, r"rl_pair_fraction must be in \[0, 1\]"),
        ({"n_rl": -1}, "n_rl must be non-negative"),
    ],
)
def test_design_config_rejects_bad_mappings(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DesignConfig.from_dict(raw)


def test_design_config_validation_errors() -> None:
    with pytest.raises(DesignError, match="train_depth must be at least 1"):
        DesignConfig(train_depth=0)
    with pytest.raises(DesignError, match=r"rl_kind must be one of \[.compound., .atomic.\]"):
        DesignConfig(rl_kind="both")
    assert NO_ROUTING not in {m for p in make_design(SMALL, small_config()).programs("rl") for m, _ in p.steps}


# ---------------------------------------------------------------------------------------------
# held-out skills and RL skills


@pytest.mark.parametrize("holdout", ["programs", "pairs"])
def test_held_out_skill_is_in_no_sft_program(holdout: str) -> None:
    held = ("sort", "count")
    config = small_config(holdout=holdout, held_out_skills=held, rl_skills=held, n_sft=30, n_rl=20)
    design = make_design(SMALL, config)
    idx = {SMALL.skills.index(s) for s in held}
    assert not any(set(p.skills) & idx for p in design.programs("sft"))
    assert len([p for p in design.programs("sft") if p.is_atomic]) == SMALL.num_skills - len(held)
    assert all(set(p.skills) & idx for p in design.programs("rl"))  # RL reintroduces them
    if holdout == "pairs":
        assert design.seen_pairs is not None and not any(set(q) & idx for q in design.seen_pairs)
    atomic_rl = make_design(SMALL, DesignConfig(**{**config.to_dict(), "rl_kind": "atomic"}))
    assert atomic_rl.programs("rl") == tuple(Program.atomic(k) for k in sorted(idx))
    assert atomic_rl.programs("sft") == design.programs("sft")


@pytest.mark.parametrize("holdout", ["programs", "pairs"])
def test_held_out_atomic_shows_the_atom_and_no_composition(holdout: str) -> None:
    held = ("sort",)
    idx = SMALL.skills.index("sort")
    config = small_config(holdout=holdout, held_out_skills=held, held_out_atomic=True, rl_skills=held, n_sft=30)
    design = make_design(SMALL, config)
    sft = design.programs("sft")
    assert Program.atomic(idx) in sft  # known alone ...
    assert not any(idx in p.skills for p in sft if not p.is_atomic)  # ... never composed
    assert len([p for p in sft if p.is_atomic]) == SMALL.num_skills
    without = make_design(SMALL, DesignConfig(**{**config.to_dict(), "held_out_atomic": False}))
    assert [p for p in sft if not p.is_atomic] == [p for p in without.programs("sft") if not p.is_atomic]
    assert design.programs("rl") == without.programs("rl")


def test_held_out_default_leaves_the_design_unchanged() -> None:
    for holdout in ("programs", "pairs"):
        base = make_design(SMALL, small_config(holdout=holdout))
        same = make_design(SMALL, small_config(holdout=holdout, held_out_skills=(), rl_skills=None))
        assert base.splits == same.splits


def test_held_out_unknown_skill_is_a_clear_error() -> None:
    with pytest.raises(DesignError, match="held_out_skills"):
        make_design(SMALL, small_config(held_out_skills=("nope",)))
    with pytest.raises(DesignError, match="every skill"):
        make_design(SMALL, small_config(held_out_skills=SMALL.skills))


@pytest.mark.parametrize("holdout", ["programs", "pairs"])
def test_held_out_pairs_and_programs_stay_out_of_sft(holdout: str) -> None:
    """Named pairs are in no SFT program (and not seen), named programs in neither SFT nor RL but
    first in unseen; without the keys the same draw has SFT programs with those pairs."""
    pairs = ("sort>reverse", "reverse>sort", "shift_up>complement")
    named = ("chain:sort > restart:reverse", "skip:count > chain:count")
    config = small_config(holdout=holdout, held_out_pairs=pairs, held_out_programs=named, n_sft=120)
    design = make_design(SMALL, config)
    idx = {(SMALL.skills.index(a), SMALL.skills.index(b)) for a, b in (p.split(">") for p in pairs)}
    programs = [Program.from_names(SMALL, n) for n in named]
    assert not any(set(p.pairs()) & idx for p in design.programs("sft"))
    assert not set(programs) & set(design.programs("sft") + design.programs("rl"))
    assert list(design.programs("unseen")[:2]) == programs
    assert len(design.programs("unseen")) == config.n_unseen + 2
    if holdout == "pairs":
        assert design.seen_pairs is not None and not design.seen_pairs & idx
    free = make_design(SMALL, small_config(holdout=holdout, n_sft=120))
    assert any(set(p.pairs()) & idx for p in free.programs("sft"))  # the keys are what keeps them out


def test_held_out_pairs_and_programs_bad_entries_are_clear_errors() -> None:
    with pytest.raises(DesignError, match="is not a pair 'skill>skill'"):
        make_design(SMALL, small_config(held_out_pairs=("sort",)))
    with pytest.raises(DesignError, match="held_out_pairs skills"):
        make_design(SMALL, small_config(held_out_pairs=("sort>nope",)))
    with pytest.raises(DesignError, match="has 1 step"):
        make_design(SMALL, small_config(held_out_programs=("sort",)))
    with pytest.raises(DesignError, match="held_out_programs: unknown skill 'nope'"):
        make_design(SMALL, small_config(held_out_programs=("chain:nope > chain:sort",)))


def test_held_out_atomic_programs_and_routings_at_depth_one() -> None:
    """At train_depth 1 a held-out program is atomic: out of SFT's atomic programs and atomic RL too;
    a held-out program must use the design's routings."""
    config = small_config(train_depth=1, deeper_depths=(2,), n_sft=4, n_rl=8, n_unseen=2, held_out_programs=("sort",))
    sort = Program.atomic(SMALL.skills.index("sort"))
    design = make_design(SMALL, config)
    assert sort not in design.programs("sft") and design.programs("unseen")[0] == sort
    atomic = make_design(SMALL, DesignConfig(**{**config.to_dict(), "rl_kind": "atomic"}))
    assert sort not in atomic.programs("rl") + atomic.programs("sft")
    with pytest.raises(DesignError, match="outside the design's routings"):
        make_design(SMALL, small_config(routings=("chain",), held_out_programs=("skip:sort > chain:count",)))

"""Support designs: which compositions SFT shows, which RL explores, which are held out.

A :class:`SupportDesign` holds named splits of programs:

``sft``
    programs with full golden traces (atomic programs plus compound ones at the training depth);
``rl``
    programs whose outcome RL may observe (answer-only information);
``unseen``
    held-out compositions at the training depth;
``deeper``
    programs longer than the training depth.

:func:`make_design` builds one from a :class:`DesignConfig`, either by splitting random programs
(``holdout = "programs"``) or by holding out skill *pairs* (``holdout = "pairs"``: every skill has
``successors`` allowed next skills in SFT, the other pairs are split into RL-usable and
never-trained ones), the transformer experiments' set-up. :func:`coverage` reports which modules, pairs
and contexts a split exercises (the networkx support graph built on it is
:func:`hlsm.identify.graph.support_graph`).

The config, the two holdout draws and the coverage counts share one vocabulary of programs, skill
pairs and contexts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from hlsm.config import build_dataclass, check_choices
from hlsm.errors import HLSMError
from hlsm.programs import NO_ROUTING, Program, ProgramError
from hlsm.spec import Spec

SPLITS = ("sft", "rl", "unseen", "deeper")


class DesignError(HLSMError):
    """A design that cannot be built as asked (split sizes, unknown keys, empty supports)."""


RLKind = Literal["compound", "atomic"]
"""``[design] rl_kind``: RL programs of depth L (compound) or atomic ones."""


@dataclass(frozen=True)
class DesignConfig:
    """How to draw a support design.

    Parameters
    ----------
    train_depth : int
        Depth ``L`` of the compound programs in SFT, RL and the unseen split.
    deeper_depths : tuple of int
        Depths of the ``deeper`` split (each larger than ``train_depth``).
    n_sft, n_rl, n_unseen, n_deeper : int
        Number of distinct compound programs per split (``n_deeper`` per depth).
    sft_atomic : bool
        Add every atomic program (one skill on ``x_0``) to SFT.
    rl_kind : {"compound", "atomic"}
        RL on compound programs at the training depth, or on atomic programs.
    rl_inside : bool
        Draw RL programs from inside the SFT support instead of outside it.
    routings : tuple of str or None
        Routings allowed in compound programs (None: the whole library).
    holdout : {"programs", "pairs"}
        Hold out whole programs, or skill pairs (see module docstring).
    successors : int
        With ``holdout = "pairs"``: the number of allowed successors of each skill in SFT.
    rl_pair_fraction : float
        With ``holdout = "pairs"``: fraction of the unseen pairs that RL programs may use.
    held_out_skills : tuple of str
        Skills that appear in no SFT program, not even atomically (with ``holdout = "pairs"``: no
        seen pair involves them). They stay in the library, the RL, unseen and deeper splits.
    held_out_atomic : bool
        With ``held_out_skills``: SFT still shows their atomic programs (with ``sft_atomic``), so
        each held-out skill is known alone but never seen inside a composition.
    rl_skills : tuple of str or None
        RL programs must use at least one of these skills (atomic RL: the atomic programs of these
        skills); None: any skill. With ``held_out_skills`` this reintroduces a skill during RL only.
    held_out_pairs : tuple of str
        Skill pairs ``"a>b"`` (skill ``b`` right after skill ``a``) that no SFT program contains; RL
        and unseen programs may. With ``holdout = "pairs"`` they are never among the seen pairs.
    held_out_programs : tuple of str
        Programs of the training depth (as :meth:`hlsm.programs.Program.names` writes them,
        ``"chain:sort > restart:reverse"``) kept out of SFT and RL and listed first in the unseen
        split, beside the ``n_unseen`` drawn ones.
    seed : int
        Seed of the draw; the same config gives the same design.
    """

    train_depth: int = 3
    deeper_depths: tuple[int, ...] = (4, 5)
    n_sft: int = 200
    n_rl: int = 100
    n_unseen: int = 100
    n_deeper: int = 100
    sft_atomic: bool = True
    rl_kind: RLKind = "compound"
    rl_inside: bool = False
    routings: tuple[str, ...] | None = None
    holdout: Literal["programs", "pairs"] = "programs"
    successors: int = 3
    rl_pair_fraction: float = 0.75
    held_out_skills: tuple[str, ...] = ()
    held_out_atomic: bool = False
    rl_skills: tuple[str, ...] | None = None
    held_out_pairs: tuple[str, ...] = ()
    held_out_programs: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "deeper_depths", tuple(self.deeper_depths))
        if self.routings is not None:
            object.__setattr__(self, "routings", tuple(self.routings))
        object.__setattr__(self, "held_out_skills", tuple(self.held_out_skills))
        object.__setattr__(self, "held_out_pairs", tuple(self.held_out_pairs))
        object.__setattr__(self, "held_out_programs", tuple(self.held_out_programs))
        if self.rl_skills is not None:
            object.__setattr__(self, "rl_skills", tuple(self.rl_skills))
        if self.train_depth < 1:
            raise DesignError(f"train_depth must be at least 1, got {self.train_depth}")
        if any(d <= self.train_depth for d in self.deeper_depths):
            raise DesignError(f"deeper_depths {self.deeper_depths} must all exceed train_depth={self.train_depth}")
        for name in ("n_sft", "n_rl", "n_unseen", "n_deeper"):
            if getattr(self, name) < 0:
                raise DesignError(f"{name} must be non-negative, got {getattr(self, name)}")
        check_choices(self, DesignError)
        if not 0.0 <= self.rl_pair_fraction <= 1.0:
            raise DesignError(f"rl_pair_fraction must be in [0, 1], got {self.rl_pair_fraction}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DesignConfig:
        """Build from a config mapping; unknown keys and wrong types give a clear error."""
        return build_dataclass(cls, raw, "design")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SupportDesign:
    """Named splits of programs over one spec; see the module docstring for the split names."""

    spec: Spec
    splits: dict[str, tuple[Program, ...]]
    config: DesignConfig | None = None
    seen_pairs: frozenset[tuple[int, int]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, programs in self.splits.items():
            for p in programs:
                p.check(self.spec)
            if len(set(programs)) != len(programs):
                raise DesignError(f"split '{name}' lists a program twice")

    def programs(self, split: str) -> tuple[Program, ...]:
        try:
            return self.splits[split]
        except KeyError:
            raise DesignError(f"the design has no split '{split}'; it has {list(self.splits)}") from None

    def split_of(self) -> dict[Program, list[str]]:
        """Which splits each program belongs to."""
        out: dict[Program, list[str]] = {}
        for name, programs in self.splits.items():
            for p in programs:
                out.setdefault(p, []).append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "config": None if self.config is None else self.config.to_dict(),
            "splits": {k: [p.names(self.spec) for p in v] for k, v in self.splits.items()},
        }


def _draw_distinct(
    gen: torch.Generator,
    sample: Any,
    accept: Any,
    count: int,
    exclude: set[Program],
    what: str,
    available: int,
) -> list[Program]:
    """Rejection-sample ``count`` distinct programs that satisfy ``accept`` and avoid ``exclude``."""
    if count > available:
        raise DesignError(
            f"cannot draw {count} distinct {what}: only {available} exist under this design; "
            "lower the split size or enlarge the library / depth"
        )
    out: list[Program] = []
    seen = set(exclude)
    tries, budget = 0, 200 * count + 10_000
    while len(out) < count:
        tries += 1
        if tries > budget:
            raise DesignError(
                f"could only draw {len(out)} of {count} distinct {what} after {budget} tries; "
                "the constraints leave too few programs: lower the split size"
            )
        p = sample()
        if p in seen or not accept(p):
            continue
        seen.add(p)
        out.append(p)
    return out


def _skill_indices(spec: Spec, names: Sequence[str], what: str) -> list[int]:
    unknown = [s for s in names if s not in spec.skills]
    if unknown:
        raise DesignError(f"{what} {unknown} are not in the library {list(spec.skills)}; name library skills")
    return [spec.skills.index(s) for s in names]


def _held_pairs(spec: Spec, config: DesignConfig) -> frozenset[tuple[int, int]]:
    """``held_out_pairs`` (``"a>b"``) as skill index pairs."""
    pairs = set()
    for text in config.held_out_pairs:
        names = [t.strip() for t in text.split(">")]
        if len(names) != 2:
            raise DesignError(f"held_out_pairs entry {text!r} is not a pair 'skill>skill' (e.g. 'sort>reverse')")
        a, b = _skill_indices(spec, names, "held_out_pairs skills")
        pairs.add((a, b))
    return frozenset(pairs)


def _held_programs(spec: Spec, config: DesignConfig) -> list[Program]:
    """``held_out_programs`` parsed, in the order given; each must have the training depth."""
    programs: list[Program] = []
    for text in config.held_out_programs:
        try:
            program = Program.from_names(spec, text)
        except ProgramError as err:
            raise DesignError(f"held_out_programs: {err}") from None
        if program.depth != config.train_depth:
            raise DesignError(
                f"held_out_programs entry {text!r} has {program.depth} step(s); the unseen split holds "
                f"programs of train_depth = {config.train_depth}"
            )
        if config.routings is not None and any(spec.routings[m] not in config.routings for m in program.routings):
            raise DesignError(
                f"held_out_programs entry {text!r} uses a routing outside the design's routings {list(config.routings)}"
            )
        if program not in programs:
            programs.append(program)
    return programs


def _pick_inside(gen: torch.Generator, sft: list[Program], count: int) -> list[Program]:
    """``count`` of the SFT programs, at random: RL inside the SFT support."""
    if count > len(sft):
        raise DesignError(f"RL inside SFT asks for {count} programs but SFT has {len(sft)}; lower n_rl")
    return [sft[i] for i in torch.randperm(len(sft), generator=gen)[:count].tolist()]


@dataclass(frozen=True)
class _Draw:
    """What every split draw shares: the generator, the allowed routings, held-out and RL skills."""

    gen: torch.Generator
    config: DesignConfig
    allowed: list[int]
    num_skills: int
    held: set[int]
    rl_skills: set[int] | None
    held_pairs: frozenset[tuple[int, int]] = frozenset()
    held_programs: frozenset[Program] = frozenset()

    def program(self, depth: int) -> Program:
        """A uniform program of ``depth`` steps over the allowed routings and every skill."""
        ms = torch.randint(len(self.allowed), (depth,), generator=self.gen).tolist()
        ks = torch.randint(self.num_skills, (depth,), generator=self.gen).tolist()
        return Program(tuple((self.allowed[m], k) for m, k in zip(ms, ks, strict=True)))

    def train_depth_program(self) -> Program:
        return self.program(self.config.train_depth)

    def for_rl(self, p: Program) -> bool:
        return (self.rl_skills is None or bool(set(p.skills) & self.rl_skills)) and p not in self.held_programs

    def no_held(self, p: Program) -> bool:
        """Whether SFT may show ``p``: no held-out skill, pair or program in it."""
        return not set(p.skills) & self.held and not set(p.pairs()) & self.held_pairs and p not in self.held_programs

    @property
    def total(self) -> int:
        """How many programs of the training depth exist."""
        return (len(self.allowed) * self.num_skills) ** self.config.train_depth

    def rl(self, sft: list[Program], accept: Any, available: int) -> list[Program]:
        """The RL split: atomic programs, SFT programs (``rl_inside``), or new programs that ``accept``."""
        config = self.config
        if config.rl_kind == "atomic":
            keep = [k for k in range(self.num_skills) if self.rl_skills is None or k in self.rl_skills]
            return [Program.atomic(k) for k in keep if Program.atomic(k) not in self.held_programs][: config.n_rl]
        if config.rl_inside:
            return _pick_inside(self.gen, [p for p in sft if self.for_rl(p)], config.n_rl)
        return _draw_distinct(
            self.gen, self.train_depth_program, accept, config.n_rl, set(sft), "RL programs", available
        )


_Splits = tuple[list[Program], list[Program], list[Program], frozenset[tuple[int, int]] | None]


def _holdout_pairs(draw: _Draw) -> _Splits:
    """``holdout = "pairs"``: each skill keeps ``successors`` next skills in SFT; the other pairs split
    into RL-usable (``rl_pair_fraction``) and never-trained ones. Unseen programs use an unseen pair."""
    config, gen, K, held = draw.config, draw.gen, draw.num_skills, draw.held
    if not 1 <= config.successors <= K:
        raise DesignError(f"successors must be between 1 and the number of skills ({K}), got {config.successors}")
    if config.successors > K - len(held):
        raise DesignError(f"successors={config.successors} exceeds the {K - len(held)} skills left in SFT")
    seen: set[tuple[int, int]] = set()
    for k in range(K):
        kept = [j for j in torch.randperm(K, generator=gen).tolist() if j not in held]
        if k not in held:
            seen.update((k, j) for j in kept[: config.successors])
    seen -= draw.held_pairs
    unseen_pairs = [(a, b) for a in range(K) for b in range(K) if (a, b) not in seen]
    order = torch.randperm(len(unseen_pairs), generator=gen).tolist()
    rl_pairs = {unseen_pairs[i] for i in order[: round(config.rl_pair_fraction * len(unseen_pairs))]}

    def all_seen(p: Program) -> bool:
        return all(q in seen for q in p.pairs()) and draw.no_held(p)

    def rl_usable(p: Program) -> bool:
        news = [q for q in p.pairs() if q not in seen]
        return bool(news) and all(q in rl_pairs for q in news) and draw.for_rl(p)

    L = config.train_depth
    # programs whose consecutive pairs are all seen: routings^L times the walks of L skills along seen pairs
    step = torch.zeros(K, K, dtype=torch.float64)
    for a, b in seen:
        if a not in held and b not in held:
            step[a, b] = 1.0
    walks = torch.tensor([0.0 if k in held else 1.0 for k in range(K)], dtype=torch.float64)
    for _ in range(L - 1):
        walks = step @ walks
    n_seen = len(draw.allowed) ** L * round(float(walks.sum()))
    sft = _draw_distinct(gen, draw.train_depth_program, all_seen, config.n_sft, set(), "seen-pair SFT programs", n_seen)
    rl = draw.rl(sft, rl_usable, draw.total)
    unseen = _draw_distinct(
        gen,
        draw.train_depth_program,
        lambda p: not all_seen(p),
        config.n_unseen,
        set(rl) | set(sft) | draw.held_programs,
        "unseen-pair programs",
        draw.total - n_seen,
    )
    return sft, rl, unseen, frozenset(seen)


def _holdout_programs(draw: _Draw) -> _Splits:
    """``holdout = "programs"``: disjoint random programs of the training depth for SFT, RL and unseen."""
    config, total = draw.config, draw.total
    n_rl_outside = 0 if (config.rl_inside or config.rl_kind == "atomic") else config.n_rl
    needed = config.n_sft + n_rl_outside + config.n_unseen
    if needed > total:
        raise DesignError(
            f"the design asks for {needed} distinct depth-{config.train_depth} programs (sft {config.n_sft} + rl "
            f"{n_rl_outside} + unseen {config.n_unseen}) but only {total} exist with "
            f"{len(draw.allowed)} routings x {draw.num_skills} skills; lower the split sizes"
        )
    sft = _draw_distinct(draw.gen, draw.train_depth_program, draw.no_held, config.n_sft, set(), "SFT programs", total)
    rl = draw.rl(sft, draw.for_rl, total - len(sft))
    unseen = _draw_distinct(
        draw.gen,
        draw.train_depth_program,
        lambda p: True,
        config.n_unseen,
        set(sft) | set(rl) | draw.held_programs,
        "unseen programs",
        total - len(set(sft) | set(rl) | draw.held_programs),
    )
    return sft, rl, unseen, None


_HOLDOUTS = {"pairs": _holdout_pairs, "programs": _holdout_programs}


def make_design(spec: Spec, config: DesignConfig = DesignConfig()) -> SupportDesign:
    """Draw a support design. Splits are disjoint except RL inside SFT when ``rl_inside`` is set.

    The SFT, RL and unseen splits come from the ``holdout`` kind (:func:`_holdout_pairs`,
    :func:`_holdout_programs`); atomic SFT programs and the deeper programs are drawn the same way
    for both.

    Raises
    ------
    DesignError
        When the requested split sizes exceed what the library and depth can provide.
    """
    gen = torch.Generator().manual_seed(config.seed)
    if config.routings is None:
        allowed = list(range(spec.num_routings))
    else:
        unknown = [r for r in config.routings if r not in spec.routings]
        if unknown:
            raise DesignError(f"design routings {unknown} are not in the library {list(spec.routings)}")
        allowed = [spec.routings.index(r) for r in config.routings]
    if not allowed:
        raise DesignError("the design allows no routing; list at least one in 'routings'")
    K = spec.num_skills
    held = set(_skill_indices(spec, config.held_out_skills, "held_out_skills"))
    if len(held) >= K:
        raise DesignError("held_out_skills holds out every skill of the library; keep at least one in SFT")
    rl_skills = None if config.rl_skills is None else set(_skill_indices(spec, config.rl_skills, "rl_skills"))
    held_programs = _held_programs(spec, config)
    draw = _Draw(gen, config, allowed, K, held, rl_skills, _held_pairs(spec, config), frozenset(held_programs))
    sft, rl, unseen, seen_pairs = _HOLDOUTS[config.holdout](draw)
    unseen = held_programs + unseen
    shown = range(K) if config.held_out_atomic else [k for k in range(K) if k not in held]
    atomic = (
        [Program.atomic(k) for k in shown if Program.atomic(k) not in draw.held_programs] if config.sft_atomic else []
    )
    deeper: list[Program] = []
    for depth in config.deeper_depths:
        deeper += _draw_distinct(
            gen,
            lambda d=depth: draw.program(d),
            lambda p: True,
            config.n_deeper,
            set(),
            f"depth-{depth} programs",
            (len(allowed) * K) ** depth,
        )
    splits = {"sft": tuple(atomic + sft), "rl": tuple(rl), "unseen": tuple(unseen), "deeper": tuple(deeper)}
    return SupportDesign(spec, splits, config, seen_pairs)


@dataclass(frozen=True)
class Coverage:
    """What a set of programs exercises: modules, skill pairs, (routing, skill) contexts."""

    skills: Counter[int]
    routings: Counter[int]
    pairs: Counter[tuple[int, int]]
    contexts: Counter[tuple[int, int]]
    skills_in_compounds: Counter[int]
    num_skills: int
    num_routings: int

    @property
    def missing_skills(self) -> list[int]:
        return [k for k in range(self.num_skills) if k not in self.skills]

    @property
    def missing_routings(self) -> list[int]:
        return [m for m in range(self.num_routings) if m not in self.routings]

    @property
    def pair_fraction(self) -> float:
        return len(self.pairs) / self.num_skills**2

    def summary(self, spec: Spec) -> dict[str, Any]:
        return {
            "skills_covered": len(self.skills),
            "skills_total": self.num_skills,
            "skills_covered_in_compounds": len(self.skills_in_compounds),
            "routings_covered": len(self.routings),
            "routings_total": self.num_routings,
            "pairs_covered": len(self.pairs),
            "pairs_total": self.num_skills**2,
            "contexts_covered": len(self.contexts),
            "contexts_total": self.num_skills * self.num_routings,
            "missing_skills": [spec.skills[k] for k in self.missing_skills],
            "missing_routings": [spec.routings[m] for m in self.missing_routings],
        }


def coverage(spec: Spec, programs: Iterable[Program]) -> Coverage:
    """Count the modules, skill pairs and (routing, skill) contexts that ``programs`` use."""
    skills: Counter[int] = Counter()
    routings: Counter[int] = Counter()
    pairs: Counter[tuple[int, int]] = Counter()
    contexts: Counter[tuple[int, int]] = Counter()
    in_compounds: Counter[int] = Counter()
    for p in programs:
        skills.update(p.skills)
        routings.update(p.routings)
        pairs.update(p.pairs())
        contexts.update((m, k) for m, k in p.steps if m != NO_ROUTING)
        if not p.is_atomic:
            in_compounds.update(p.skills)
    return Coverage(skills, routings, pairs, contexts, in_compounds, spec.num_skills, spec.num_routings)


def design_from_lists(spec: Spec, splits: Mapping[str, Sequence[str]]) -> SupportDesign:
    """A design from explicit program lists in :meth:`Program.names` form (for design files)."""
    if not any(splits.values()):
        raise DesignError("every split of the design is empty; list at least one program")
    built = {name: tuple(Program.from_names(spec, s) for s in programs) for name, programs in splits.items()}
    return SupportDesign(spec, built)

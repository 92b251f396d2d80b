"""Random tiny designs and the numerical checks of propositions C1–C5 (``theory/identifiability.md``).

Each ``check_c*`` function takes one :class:`TinyDesign`, asks the brute-force oracle
(:mod:`hlsm.identify.oracle`) what the design identifies, and returns :class:`Check` rows: what the
proposition predicts and what the oracle found. ``sims/verify_claims.py`` runs them on hundreds of
designs; ``tests/identify/test_claims.py`` on a few. One check per proposition, over the same tiny designs and
stress families.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from hlsm.identify.checker import identify
from hlsm.identify.horizon import resolve_horizon
from hlsm.identify.observations import live_steps, routing_classes, skill_classes
from hlsm.identify.oracle import LibHypothesis, OracleResult, lib_identify, lib_version_space, tab_identify
from hlsm.modules import DEFAULT_ROUTINGS, DEFAULT_SKILLS, get_routing, get_skill
from hlsm.programs import NO_ROUTING, Program
from hlsm.simulate import Corpus, concat, population_corpus
from hlsm.spec import Spec


@dataclass(frozen=True)
class TinyDesign:
    """A tiny regime: golden SFT traces, answer-only RL traces, candidate unseen programs."""

    spec: Spec
    sft: tuple[Program, ...]
    rl: tuple[Program, ...]
    candidates: tuple[Program, ...]
    seed: int = 0

    def corpus(self) -> Corpus:
        """The population-limit data of the regime."""
        parts = [population_corpus(self.spec, self.sft, "full", "sft")] if self.sft else []
        if self.rl:
            parts.append(population_corpus(self.spec, self.rl, "answer", "rl"))
        return concat(parts)

    @property
    def horizon(self) -> int:
        """``L*`` of the design's question: ``max(3, deepest candidate)`` (:mod:`hlsm.identify.horizon`)."""
        return resolve_horizon([p.depth for p in self.candidates], [])

    def oracle(self, hypothesis_class: str) -> OracleResult:
        fn = lib_identify if hypothesis_class == "lib" else tab_identify
        return fn(self.spec, self.corpus(), list(self.candidates), horizon=self.horizon)


def random_spec(
    rng: random.Random,
    alphabet: int = 3,
    length: int = 2,
    skills: int = 5,
    routings: int = 4,
    include: Sequence[str] = (),
) -> Spec:
    """A random library of the given sizes drawn from the default modules that support ``(A, n)``;
    the skills in ``include`` are always among them."""
    ok_skills = [s for s in DEFAULT_SKILLS if get_skill(s).supports(alphabet, length) and s not in include]
    ok_routings = [r for r in DEFAULT_ROUTINGS if get_routing(r).supports(alphabet, length)]
    chosen = tuple(include) + tuple(rng.sample(ok_skills, skills - len(include)))
    return Spec(alphabet, length, chosen, tuple(rng.sample(ok_routings, routings)))


def random_program(rng: random.Random, spec: Spec, depth: int) -> Program:
    return Program(tuple((rng.randrange(spec.num_routings), rng.randrange(spec.num_skills)) for _ in range(depth)))


def random_design(
    seed: int,
    *,
    atomic_fraction: float = 0.8,
    n_sft: int = 4,
    n_rl: int = 2,
    n_candidates: int = 8,
    depth: int = 2,
    skills: int = 5,
    routings: int = 4,
    include: Sequence[str] = (),
    rl_depth: int | None = None,
) -> TinyDesign:
    """A random tiny design (``A = 3, n = 2``): each atom in SFT with probability ``atomic_fraction``,
    ``n_sft`` compound SFT programs, ``n_rl`` RL programs outside SFT (of depth ``rl_depth``, default
    ``depth``), candidates at ``depth`` and ``depth + 1``; the skills in ``include`` are in the library."""
    rng = random.Random(seed)
    spec = random_spec(rng, skills=skills, routings=routings, include=include)
    atoms = [Program.atomic(k) for k in range(spec.num_skills) if rng.random() < atomic_fraction]
    sft = set(atoms)
    while len(sft) < len(atoms) + n_sft:
        sft.add(random_program(rng, spec, depth))
    rl: set[Program] = set()
    while len(rl) < n_rl:
        p = random_program(rng, spec, depth if rl_depth is None else rl_depth)
        if p not in sft:
            rl.add(p)
    cands: set[Program] = set()
    while len(cands) < n_candidates:
        p = random_program(rng, spec, depth if len(cands) < n_candidates * 3 // 4 else depth + 1)
        if p not in sft and p not in rl:
            cands.add(p)
    return TinyDesign(spec, tuple(sorted(sft)), tuple(sorted(rl)), tuple(sorted(cands)), seed)


STRESS_FAMILIES = ("absorbing", "hidden_states", "deep_candidates")
"""Designs built to stress the propositions and the checkers (``theory/identifiability.md``, section 5):
``absorbing``: many-to-one skills (``count``, ``fill_first``, ``sort``) that can absorb free entries
and mask routings; ``hidden_states``: depth-3 answer-only records whose intermediate states the SFT
data do not determine; ``deep_candidates``: depth-1 data, candidates of depth 2 and 3."""


def stress_design(seed: int, family: str) -> TinyDesign:
    """A random design of one :data:`STRESS_FAMILIES` family (``A = 3, n = 2``)."""
    rng = random.Random(seed)
    if family == "absorbing":
        return random_design(seed, atomic_fraction=0.5, n_rl=rng.choice([0, 1]), include=("count", "fill_first"))
    if family == "hidden_states":
        return random_design(seed, atomic_fraction=0.8, n_rl=2, rl_depth=3)
    if family == "deep_candidates":
        design = random_design(seed, atomic_fraction=0.8, n_sft=6, n_rl=rng.choice([0, 1]), depth=1)
        taken = set(design.sft) | set(design.rl)
        deep: set[Program] = set()
        while len(deep) < 8:
            p = random_program(rng, design.spec, 2 if len(deep) < 4 else 3)
            if p not in taken:
                deep.add(p)
        return replace(design, candidates=tuple(sorted(deep)))
    raise ValueError(f"unknown stress family {family!r}; one of {STRESS_FAMILIES}")


@dataclass(frozen=True)
class Check:
    """One comparison: the proposition's prediction against the oracle's answer."""

    claim: str
    predicted: bool
    observed: bool
    detail: str = ""

    @property
    def agrees(self) -> bool:
        return self.predicted == self.observed


def _symbols_used(programs: Sequence[Program]) -> tuple[set[int], set[int]]:
    skills = {k for p in programs for k in p.skills}
    routings = {m for p in programs for m in p.routings}
    return skills, routings


def check_checker(design: TinyDesign, lib: OracleResult, tab: OracleResult) -> list[Check]:
    """The fast checker (:func:`hlsm.identify.checker.identify`) against the oracle, verdict by verdict.

    ``checker-<class>-sound``: every program the checker puts in ``G`` is in the oracle's ``G``;
    ``checker-<class>-exact``: a verdict flagged ``exact`` equals the oracle's; ``checker-lib-symbols``
    and (golden data) ``checker-tab-symbols``: the identified symbols and domains equal the oracle's;
    ``rate:checker-tab-found``: the fraction of the oracle's ``G`` that H-tab finds.
    """
    corpus, cands = design.corpus(), list(design.candidates)
    rows: list[Check] = []
    for name, oracle in (("lib", lib), ("tab", tab)):
        ours = identify(design.spec, corpus, cands, name, horizon=design.horizon)
        for v in ours.verdicts:
            truth = oracle.generalisation[v.program]
            detail = f"{name} {v.program.steps} status {v.status}"
            if v.identified:
                rows.append(Check(f"checker-{name}-sound", True, truth, detail))
            if v.status == "exact":
                rows.append(Check(f"checker-{name}-exact", truth, v.identified, detail))
            if name == "tab" and truth:
                rows.append(Check("rate:checker-tab-found", v.identified, v.identified, detail))
        if name == "lib" or not design.rl:
            same = ours.routing_identified == oracle.routing_identified and (
                ours.skill_identified == oracle.skill_identified
                if name == "lib"
                else ours.identified_domain == tuple(len(d) for d in oracle.identified_domain)
            )
            rows.append(Check(f"checker-{name}-symbols", True, same, f"{name} symbols"))
    return rows


def check_c1(design: TinyDesign, lib: OracleResult, tab: OracleResult) -> list[Check]:
    """C1: absent symbols are never identified; dead absent steps do not block generalisation."""
    spec = design.spec
    skills_seen, routings_seen = _symbols_used(design.sft + design.rl)
    sclass = skill_classes(spec, spec.all_states())
    rclass = routing_classes(spec, design.horizon)
    out = []
    for result, name in ((lib, "lib"), (tab, "tab")):
        for k in range(spec.num_skills):
            if k not in skills_seen and len(set(sclass)) > 1:
                out.append(Check(f"C1a-{name}", False, result.skill_identified[k], f"absent skill symbol {k}"))
        for m in range(spec.num_routings):
            if m not in routings_seen and len(set(rclass)) > 1:
                out.append(Check(f"C1a-{name}", False, result.routing_identified[m], f"absent routing symbol {m}"))
        for p in design.candidates:
            absent = [
                (l, m, k)
                for l, (m, k) in enumerate(p.steps)
                if k not in skills_seen or (m >= 0 and m not in routings_seen)
            ]
            if not absent:
                continue
            live = live_steps(spec, p)
            present_identified = all(
                result.skill_identified[k] and (m < 0 or result.routing_identified[m])
                for l, (m, k) in enumerate(p.steps)
                if not any(a[0] == l for a in absent)
            )
            # liveness is read off the true routings; it is the same under every consistent h when
            # the routing symbols after the absent steps are identified
            later_routings_identified = all(
                m < 0 or result.routing_identified[m] for m, _ in p.steps[min(a[0] for a in absent) + 1 :]
            )
            all_dead = all(not live[a[0]] for a in absent)
            if all_dead and present_identified and later_routings_identified:
                out.append(Check(f"C1c-{name}", True, result.generalisation[p], f"dead absent steps in {p.steps}"))
            out.append(Check(f"rate:C1-absent-in-G-{name}", result.generalisation[p], result.generalisation[p], "rate"))
    return out


def check_c2(design: TinyDesign, lib: OracleResult, tab: OracleResult) -> list[Check]:
    """C2 (H-tab, golden data): identified domain = observed inputs when the routings are identified."""
    spec = design.spec
    if design.rl:
        return []
    corpus = design.corpus()
    observed: dict[int, set[int]] = {k: set() for k in range(spec.num_skills)}
    steps_routings: dict[int, set[int]] = {k: set() for k in range(spec.num_skills)}
    codes = spec.encode(corpus.states)
    for i in range(len(corpus)):
        p = corpus.program(i)
        for l, (m, k) in enumerate(p.steps):
            if m == NO_ROUTING:
                u = int(codes[i, 0])
            else:
                u = int(spec.encode(spec.apply_routing(m, corpus.states[i : i + 1, : l + 1]))[0])
                steps_routings[k].add(m)
            observed[k].add(u)
    images = {g: set(spec.encode(spec.apply_skill(g, spec.all_states())).tolist()) for g in range(spec.num_skills)}
    many_to_one = {g: image for g, image in images.items() if len(image) < spec.num_states}
    truth_on = {k: spec.encode(spec.apply_skill(k, spec.all_states())).tolist() for k in range(spec.num_skills)}
    out = []
    for k in range(spec.num_skills):
        domain = set(tab.identified_domain[k])
        out.append(Check("C2a-subset", True, domain <= observed[k], f"skill symbol {k}"))
        if all(tab.routing_identified[m] for m in steps_routings[k]):
            out.append(Check("C2a-equal", True, domain == observed[k], f"skill symbol {k}"))
        # C2c: every input of k (under the true routings) lies in the image of a many-to-one skill g
        for g, image in many_to_one.items():
            if observed[k] and observed[k] <= image:
                out.append(
                    Check("C2c-tab-entangled", True, domain <= image and not tab.skill_identified[k], f"{k}/{g}")
                )
                break
        # C2c, H-lib "only if": two library classes agreeing with k on its observed inputs leave it free
        agreeing = {
            tuple(truth_on[j])
            for j in range(spec.num_skills)
            if all(truth_on[j][u] == truth_on[k][u] for u in observed[k])
        }
        if observed[k] and len(agreeing) > 1:
            out.append(Check("C2c-lib-only-if", False, lib.skill_identified[k], f"skill symbol {k}"))
        elif observed[k] and any(observed[k] <= image for image in many_to_one.values()):
            out.append(Check("rate:C2c-lib-identified-after-many-to-one", lib.skill_identified[k], True, "rate"))
    return out


def check_c3(design: TinyDesign) -> list[Check]:
    """C3: atomic data identify no routing; depth-1 data cannot separate equal one-element restrictions."""
    spec = design.spec
    rclass = routing_classes(spec, design.horizon)
    out = []
    atoms = tuple(Program.atomic(k) for k in range(spec.num_skills))
    atomic_only = replace(design, sft=atoms, rl=())
    res = atomic_only.oracle("lib")
    if len(set(rclass)) > 1:
        out += [Check("C3a", False, res.routing_identified[m], f"routing symbol {m}") for m in range(spec.num_routings)]
    depth1 = tuple(Program(((m, k),)) for m in range(spec.num_routings) for k in range(spec.num_skills))
    res1 = replace(design, sft=atoms + depth1, rl=()).oracle("lib")
    one = spec.all_states().unsqueeze(1)
    restriction = [spec.encode(spec.apply_routing(m, one)).tolist() for m in range(spec.num_routings)]
    for m in range(spec.num_routings):
        twins = [j for j in range(spec.num_routings) if rclass[j] != rclass[m] and restriction[j] == restriction[m]]
        if twins:
            out.append(Check("C3b", False, res1.routing_identified[m], f"routing {spec.routings[m]} twins {twins}"))
    return out


def check_c3c(design: TinyDesign, lib_sft: OracleResult) -> list[Check]:
    """C3c, necessity (golden data): a routing symbol whose true routing agrees with another routing
    class on every history that occurs at its steps is not identified."""
    spec, corpus = design.spec, design.corpus()
    rclass = routing_classes(spec, design.horizon)
    histories: dict[int, list[torch.Tensor]] = {}
    for i in range(len(corpus)):
        for l, (m, _) in enumerate(corpus.program(i).steps):
            if m != NO_ROUTING:
                histories.setdefault(m, []).append(corpus.states[i, : l + 1])
    out = []
    for m, seen in histories.items():
        by_length: dict[int, list[torch.Tensor]] = {}
        for h in seen:
            by_length.setdefault(len(h), []).append(h)
        stacked = [torch.stack(hs) for hs in by_length.values()]
        for other in range(spec.num_routings):
            if rclass[other] == rclass[m]:
                continue
            if all(torch.equal(spec.apply_routing(m, h), spec.apply_routing(other, h)) for h in stacked):
                out.append(Check("C3c-necessary", False, lib_sft.routing_identified[m], f"{m} ~ {other}"))
                break
    return out


def _step_input(spec: Spec, h: LibHypothesis, m: int, states: list[torch.Tensor]) -> torch.Tensor:
    """The input of a step with routing symbol ``m`` after ``states`` (``x_0`` for an atomic step)."""
    return states[0] if m == NO_ROUTING else spec.apply_routing(h.routings[m], torch.stack(states, dim=1))


def _execute(
    spec: Spec, h: LibHypothesis, steps: Sequence[tuple[int, int]], states: list[torch.Tensor]
) -> list[torch.Tensor]:
    """``states`` (each ``(1, n)``, from ``x_0``) extended by executing ``steps`` under an H-lib hypothesis."""
    out = list(states)
    for m, k in steps:
        out.append(spec.apply_skill(h.skills[k], _step_input(spec, h, m, out)))
    return out


def check_c4b(design: TinyDesign, *, max_hypotheses: int = 3000, seed: int = 0) -> list[Check]:
    """C4b (H-lib): one answer-only record whose step-``l`` input is determined and whose composite
    ``x_l -> x_L`` is one injective map adds exactly the step fact ``(sigma_l, u) -> F^-1(x_L)``."""
    spec = design.spec
    space = lib_version_space(spec, design.corpus())
    if not space or len(space) > max_hypotheses:
        return []
    rng = random.Random(seed)
    states = spec.all_states()
    out = []
    for program in [p for p in design.candidates if p.depth >= 2][:2]:
        x0 = states[rng.randrange(spec.num_states)].unsqueeze(0)
        identity = LibHypothesis(tuple(range(spec.num_skills)), tuple(range(spec.num_routings)))
        truth = _execute(spec, identity, program.steps, [x0])
        answer = int(spec.encode(truth[-1])[0])
        for l in range(1, program.depth + 1):
            m, k = program.steps[l - 1]
            inputs, maps = set(), set()
            for h in space:
                run = _execute(spec, h, program.steps, [x0])
                inputs.add(int(spec.encode(_step_input(spec, h, m, run[:l]))[0]))
                # x_l := x, then steps l+1..L as h computes them
                tails = (
                    _execute(spec, h, program.steps[l:], [*run[:l], states[x : x + 1]]) for x in range(spec.num_states)
                )
                maps.add(tuple(int(spec.encode(seq[-1])[0]) for seq in tails))
            if len(inputs) != 1 or len(maps) != 1 or len(set(next(iter(maps)))) != spec.num_states:
                continue
            (u_code,), (f_map,) = inputs, maps
            target = f_map.index(answer)
            predicted = {
                h
                for h in space
                if int(spec.encode(spec.apply_skill(h.skills[k], states[u_code].unsqueeze(0)))[0]) == target
            }
            record = population_corpus(spec, [program], "answer", "rl", inputs=x0)
            actual = set(lib_version_space(spec, concat([design.corpus(), record])))
            out.append(Check("C4b-step-fact", True, actual == predicted, f"{program.steps} step {l}"))
            break
    return out


def check_c4(design: TinyDesign, lib_sft: OracleResult, tab_sft: OracleResult) -> list[Check]:
    """C4a, in each class: RL on programs whose answers SFT determines (SFT programs and candidates in
    that class's G) leaves V and G unchanged (over the same candidates)."""
    out = []
    for name, sft in (("lib", lib_sft), ("tab", tab_sft)):
        inside = design.sft[-2:] + tuple(p for p in design.candidates if sft.generalisation[p])[:2]
        compound_inside = tuple(p for p in inside if not p.is_atomic)
        if not compound_inside:
            continue
        with_rl = replace(design, rl=compound_inside)  # the candidate set stays fixed (section 1)
        res = with_rl.oracle(name)
        same = res.num_consistent == sft.num_consistent and all(
            res.generalisation[p] == sft.generalisation[p] for p in with_rl.candidates
        )
        out.append(Check(f"C4a-{name}", True, same, f"RL inside on {len(compound_inside)} programs"))
    return out


def check_c5(design: TinyDesign) -> list[Check]:
    """C5a: at the population limit RL outside never gives a smaller G than RL inside."""
    compound_sft = tuple(p for p in design.sft if not p.is_atomic)
    if not design.rl or not compound_sft:
        return []
    inside = replace(design, rl=compound_sft[: len(design.rl)])
    outside = design
    out = []
    for name in ("lib", "tab"):
        g_in = inside.oracle(name).generalisation_set
        g_out = outside.oracle(name).generalisation_set
        cands = set(design.candidates)
        out.append(Check(f"C5a-{name}", True, (g_in & cands) <= g_out, f"|G_in|={len(g_in)} |G_out|={len(g_out)}"))
    return out

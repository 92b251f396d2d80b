"""Design files for ``hlsm identify``: a library, a regime's supports and the candidate unseen programs.

A design file is TOML::

    [spec]                    # hlsm.Spec: alphabet, length, skills, routings
    alphabet = 3
    length = 2
    skills = ["reverse", "sort", "shift_up"]
    routings = ["chain", "restart"]

    [data]
    inputs = "all"            # population limit: every x_0 of X; or an integer: random x_0 per program
    seed = 0
    # corpus = "traces.jsonl" # or a concrete data set (hlsm simulate output) instead of [sft]/[rl] data

    [sft]                     # golden traces
    atomic = true             # add every atomic program (one skill on x_0)
    programs = ["chain:reverse > chain:sort"]
    exposure = "full"

    [rl]                      # outcome-level data: answer-only traces
    programs = ["chain:shift_up > restart:sort"]
    exposure = "answer"

    [candidates]              # unseen programs to decide
    programs = ["chain:sort > chain:shift_up"]
    depth = 2                 # or: every program of this depth outside SFT and RL ...
    routings = ["chain"]      # ... using these routings only (default: all)
    horizon = 3               # L*: routings compared on histories up to this length (default:
                              # max(3, deepest candidate); keep it equal across designs you compare)

    [fit]                     # hlsm fit only: see hlsm.app.fitrun.FitSection (traces, epsilon, tables, ...)
    [nuts]                    # hlsm fit only: see hlsm.app.fitrun.NutsSection (run = true for the gold standard)

Programs are written as in :meth:`hlsm.Program.names`: ``"routing:skill > routing:skill"``, or a
bare skill name for an atomic program. Instead of lists, a ``[design]`` table (the keys of
:class:`hlsm.DesignConfig`) draws SFT, RL and candidate (unseen + deeper) programs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hlsm.config import ConfigError, build_dataclass, check_sections, load_toml, section
from hlsm.design import DesignConfig, SupportDesign, make_design
from hlsm.errors import SlipWarning, shorten
from hlsm.examples import resolve
from hlsm.limits import MAX_CANDIDATES, MAX_PROGRAM_DEPTH, check_count, check_memory
from hlsm.programs import Program, all_programs
from hlsm.simulate import Corpus, concat, population_corpus, read_jsonl
from hlsm.spec import Spec
from hlsm.traces import check_exposure


@dataclass(frozen=True)
class DataSection:
    inputs: str | int = "all"
    seed: int = 0
    corpus: str | None = None


@dataclass(frozen=True)
class SupportSection:
    programs: tuple[str, ...] = ()
    atomic: bool = False
    exposure: str = "full"


@dataclass(frozen=True)
class CandidateSection:
    programs: tuple[str, ...] = ()
    depth: int | None = None
    routings: tuple[str, ...] | None = None
    horizon: int | None = None


@dataclass(frozen=True)
class IdentifyDesign:
    """A parsed design: spec, SFT and RL supports with exposures, candidates, data size."""

    spec: Spec
    sft: tuple[Program, ...]
    rl: tuple[Program, ...]
    sft_exposure: str
    rl_exposure: str
    candidates: tuple[Program, ...]
    inputs: str | int
    seed: int
    corpus_path: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Raw ``[fit]`` and ``[nuts]`` sections, validated by :mod:`hlsm.app.fitrun` (ignored by ``identify``)."""
    horizon: int | None = None
    """``[candidates] horizon``: ``L*`` of :mod:`hlsm.identify.horizon` (None: its default)."""

    def corpus(self) -> Corpus:
        """The regime's data: every ``x_0`` (population limit), ``inputs`` random ones per program, or the file."""
        if self.corpus_path is not None:
            return read_jsonl(self.spec, self.corpus_path)
        if self.inputs != "all":  # the corpus's states, before a single one is drawn
            depth = max((p.depth for p in (*self.sft, *self.rl)), default=0)
            states = int(self.inputs) * (len(self.sft) + len(self.rl)) * (depth + 1) * self.spec.length
            check_memory(f"[data] inputs = {int(self.inputs):,}", 8 * states, "use fewer random inputs per program")
        parts = []
        for programs, exposure, split in ((self.sft, self.sft_exposure, "sft"), (self.rl, self.rl_exposure, "rl")):
            if not programs:
                continue
            if self.inputs == "all":
                parts.append(population_corpus(self.spec, programs, exposure, split))
            else:
                gen = torch.Generator().manual_seed(self.seed + (0 if split == "sft" else 1))
                for p in programs:
                    x0 = torch.randint(self.spec.alphabet, (int(self.inputs), self.spec.length), generator=gen)
                    parts.append(population_corpus(self.spec, [p], exposure, split, inputs=x0))
        return concat(parts)


DESIGN_SECTIONS = ("spec", "data", "sft", "rl", "candidates", "design", "fit", "nuts", "format")
"""The one design schema of ``hlsm identify``, ``fit`` and ``export``: each command reads the sections it
uses (``[fit]``, ``[nuts]``: fit; ``[format]``: export's trace format) and accepts the others."""


def support_design(design: IdentifyDesign) -> SupportDesign:
    """The design as named splits (``sft``, ``rl``, ``unseen``, ``deeper``) for the transformer side and
    export: candidates no deeper than the deepest compound SFT program are ``unseen``, deeper ones
    ``deeper``."""
    compound = [p.depth for p in design.sft if not p.is_atomic]
    depth = max(compound) if compound else max((p.depth for p in design.candidates), default=1)
    splits = {
        "sft": design.sft,
        "rl": design.rl,
        "unseen": tuple(p for p in design.candidates if p.depth <= depth),
        "deeper": tuple(p for p in design.candidates if p.depth > depth),
    }
    return SupportDesign(design.spec, {k: tuple(dict.fromkeys(v)) for k, v in splits.items() if v})


def parse_design(raw: dict[str, Any], source: str = "design", base: Path = Path(".")) -> IdentifyDesign:
    """Validate a design mapping (see the module docstring); errors name the section and key.

    A relative ``[data] corpus`` path is read relative to ``base`` (the design file's folder).
    """
    check_sections(raw, DESIGN_SECTIONS, source)
    spec = Spec.from_dict(section(raw, "spec"))
    data = build_dataclass(DataSection, section(raw, "data"), "data")
    if data.inputs != "all" and (not isinstance(data.inputs, int) or data.inputs < 1):
        raise ConfigError(f'[data] inputs must be "all" or a positive integer, got {data.inputs!r}')
    sft_sec = build_dataclass(SupportSection, section(raw, "sft"), "sft")
    rl_sec = build_dataclass(SupportSection, {"exposure": "answer", **section(raw, "rl")}, "rl")
    cand = build_dataclass(CandidateSection, section(raw, "candidates"), "candidates")
    for sec in (sft_sec, rl_sec):
        check_exposure(sec.exposure)
    sft = [Program.from_names(spec, t) for t in sft_sec.programs]
    rl = [Program.from_names(spec, t) for t in rl_sec.programs]
    candidates = [Program.from_names(spec, t) for t in cand.programs]
    shown = {p: name for name, programs in (("SFT", sft), ("RL", rl)) for p in programs}
    overlap = [p for p in candidates if p in shown]
    if overlap:
        p = overlap[0]
        warnings.warn(
            f"{source}: candidate '{p.names(spec)}' is also an {shown[p]} program, so its answer is shown, "
            f"not inferred; remove it from [candidates] or from [{shown[p].lower()}] unless that is the point"
            + (f" ({len(overlap)} such candidates)" if len(overlap) > 1 else ""),
            SlipWarning,
            stacklevel=2,
        )
    for program in (*sft, *rl, *candidates):
        check_count(
            f"steps in program '{shorten(program.names(spec), 120)}'", program.depth, MAX_PROGRAM_DEPTH,
            "design files take programs of at most that many steps",
        )  # fmt: skip
    if "design" in raw:
        drawn = make_design(spec, DesignConfig.from_dict(section(raw, "design")))
        sft += list(drawn.programs("sft"))
        rl += list(drawn.programs("rl"))
        candidates += list(drawn.programs("unseen")) + list(drawn.programs("deeper"))
    if sft_sec.atomic:
        sft = [Program.atomic(k) for k in range(spec.num_skills)] + sft
    if cand.depth is not None:
        if cand.routings is not None:
            bad = [r for r in cand.routings if r not in spec.routings]
            if bad:
                raise ConfigError(f"[candidates] routings {bad} are not in the library {list(spec.routings)}")
        ms = None if cand.routings is None else [spec.routings.index(r) for r in cand.routings]
        per_step = (spec.num_routings if ms is None else len(ms)) * spec.num_skills
        check_count(
            f"{source}: [candidates] depth = {cand.depth} enumerates every program of that depth",
            per_step**cand.depth,
            MAX_CANDIDATES,
            "list programs under [candidates] instead, restrict [candidates] routings, or draw unseen and "
            "deeper programs with a [design] section",
        )
        seen = set(sft) | set(rl)
        candidates += [p for p in all_programs(spec, cand.depth, ms) if p not in seen]
    if not sft and not rl and data.corpus is None:
        raise ConfigError(f"{source} has an empty support: list programs under [sft] or [rl] (or set atomic = true)")
    if not candidates:
        raise ConfigError(f"{source} has no candidate programs: list some under [candidates] or give a depth")
    return IdentifyDesign(
        spec,
        tuple(dict.fromkeys(sft)),
        tuple(dict.fromkeys(rl)),
        sft_sec.exposure,
        rl_sec.exposure,
        tuple(dict.fromkeys(candidates)),
        data.inputs,
        data.seed,
        None if data.corpus is None else base / data.corpus,
        {name: section(raw, name) for name in ("fit", "nuts") if name in raw},
        cand.horizon,
    )


def load_design(path: str | Path, overrides: Mapping[str, Any] | None = None) -> IdentifyDesign:
    """Read and validate a design file, with ``overrides`` (dotted keys: ``{"fit.steps": 50}``) set first."""
    path = Path(path)
    return parse_design(load_toml(path, overrides), f"design file '{path}'", resolve(path).parent)

"""Property-based fuzzing of the trace parser and the design-file loader (hypothesis).

Properties:

- every trace rendered by :func:`hlsm.traces.render` from a random small spec, program, states,
  exposure and task variant (``slots``, ``echo``) parses back to exactly what was rendered;
- :func:`hlsm.traces.parse` on mutated traces and on garbage either returns a trace or raises
  :class:`hlsm.traces.TraceFormatError`, never another exception;
- :func:`hlsm.app.designfile.parse_design` on random mappings and :func:`hlsm.app.designfile.load_design`
  on random TOML text raise only :class:`hlsm.errors.HLSMError` subclasses.

The default run is derandomised (a few hundred examples per property); ``-m slow`` runs 10,000
inputs per property.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlsm.app.designfile import load_design, parse_design
from hlsm.errors import HLSMError
from hlsm.modules import routings, skills
from hlsm.programs import Program
from hlsm.spec import Spec
from hlsm.traces import Trace, TraceFormatError, parse, render

FAST = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# strategies


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    alphabet = draw(st.integers(2, 6))
    length = draw(st.integers(1, 5))
    skill_names = [s.name for s in skills() if s.supports(alphabet, length)]
    routing_names = [r.name for r in routings() if r.supports(alphabet, length)]
    chosen_skills = draw(st.lists(st.sampled_from(skill_names), min_size=1, max_size=5, unique=True))
    chosen_routings = draw(st.lists(st.sampled_from(routing_names), min_size=1, max_size=4, unique=True))
    return Spec(alphabet=alphabet, length=length, skills=tuple(chosen_skills), routings=tuple(chosen_routings))


@st.composite
def rendered_traces(draw: st.DrawFn) -> tuple[Spec, str, Trace, int | None, bool]:
    """A spec, a rendered trace line, the trace it must parse to, and the variant (slots, echo)."""
    spec = draw(specs())
    depth = draw(st.integers(1, 4))
    if depth == 1 and draw(st.booleans()):
        program = Program.atomic(draw(st.integers(0, spec.num_skills - 1)))
    else:
        steps = draw(
            st.lists(
                st.tuples(st.integers(0, spec.num_routings - 1), st.integers(0, spec.num_skills - 1)),
                min_size=depth,
                max_size=depth,
            )
        )
        program = Program(tuple(steps))
    state = st.lists(st.integers(0, spec.alphabet - 1), min_size=spec.length, max_size=spec.length)
    x0 = tuple(draw(state))
    states = [tuple(draw(state)) for _ in range(program.depth)]
    mask = draw(st.lists(st.booleans(), min_size=program.depth, max_size=program.depth))
    slots = draw(st.none() | st.integers(program.depth, program.depth + 2))
    echo = draw(st.booleans())
    line = render(spec, program, x0, states, mask, slots=slots, echo=echo)
    expected = Trace(x0, program, tuple(s if shown else None for s, shown in zip(states, mask, strict=True)))
    return spec, line, expected, slots, echo


TOKENS = ["|", ">", "?", "NOP", "R0", "R1", "R9", "S0", "S3", "S13", "S99", "a", "ab", "abc", "z", " ", "  ", "\t", "é"]


@st.composite
def mutated_traces(draw: st.DrawFn) -> tuple[Spec, str, int | None, bool]:
    spec, line, _, slots, echo = draw(rendered_traces())
    words = line.split(" ")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "insert", "replace", "swap", "char"]))
        i = draw(st.integers(0, max(len(words) - 1, 0)))
        if op == "drop" and words:
            words.pop(i)
        elif op == "insert":
            words.insert(i, draw(st.sampled_from(TOKENS)))
        elif op == "replace" and words:
            words[i] = draw(st.sampled_from(TOKENS) | st.text(max_size=4))
        elif op == "swap" and len(words) > 1:
            j = draw(st.integers(0, len(words) - 1))
            words[i], words[j] = words[j], words[i]
        elif op == "char" and words:
            w = words[i]
            k = draw(st.integers(0, len(w)))
            words[i] = w[:k] + draw(st.characters()) + w[k + 1 :]
    return spec, " ".join(words), slots, echo


garbage = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=20).map(" ".join) | st.text(max_size=60)


def _parse_or_format_error(spec: Spec, line: str, slots: int | None, echo: bool) -> None:
    try:
        trace = parse(spec, line, slots=slots, echo=echo)
    except TraceFormatError:
        return
    assert len(trace.states) == trace.program.depth and len(trace.x0) == spec.length


# ---------------------------------------------------------------------------------------------
# trace parser


@FAST
@given(rendered_traces())
def test_rendered_traces_round_trip(case: tuple[Spec, str, Trace, int | None, bool]) -> None:
    spec, line, expected, slots, echo = case
    assert parse(spec, line, slots=slots, echo=echo) == expected
    assert render(spec, expected.program, expected.x0, expected.states, slots=slots, echo=echo) == line


@FAST
@given(mutated_traces())
def test_mutated_traces_parse_or_raise_format_error(case: tuple[Spec, str, int | None, bool]) -> None:
    _parse_or_format_error(*case)


@FAST
@given(specs(), garbage, st.none() | st.integers(1, 4), st.booleans())
def test_garbage_parses_or_raises_format_error(spec: Spec, line: str, slots: int | None, echo: bool) -> None:
    _parse_or_format_error(spec, line, slots, echo)


# ---------------------------------------------------------------------------------------------
# design files

SMALL_INT = st.integers(-2, 2)  # larger depths enumerate millions of candidate programs
SCALAR = st.none() | st.booleans() | SMALL_INT | st.floats(-2, 2) | st.just(float("nan")) | st.text(max_size=6)
PROGRAM_TEXT = st.sampled_from(["reverse", "sort", "chain:sort > restart:reverse", "chain:nosuch", "x:y > ", ""])
MODULE_NAME = st.sampled_from(["reverse", "sort", "shift_up", "chain", "restart", "nosuch", ""])
KEYS = {
    "spec": ["alphabet", "length", "skills", "routings", "extra"],
    "data": ["inputs", "seed", "corpus", "extra"],
    "sft": ["programs", "atomic", "exposure", "extra"],
    "rl": ["programs", "atomic", "exposure"],
    "candidates": ["programs", "depth", "routings", "extra"],
    "design": ["train_depth", "deeper_depths", "n_sft", "n_rl", "n_unseen", "n_deeper", "holdout", "routings"],
    "fit": ["steps"],
    "bogus": ["x"],
}
VALUE = st.recursive(
    SCALAR | PROGRAM_TEXT | st.sampled_from(["all", "full", "answer", "steps:1", "pairs"]),
    lambda inner: (
        st.lists(inner | MODULE_NAME | PROGRAM_TEXT, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=6,
)


@st.composite
def design_dicts(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=5, unique=True)):
        if draw(st.integers(0, 9)) == 0:
            raw[section] = draw(SCALAR)  # a section that is not a table
            continue
        keys = draw(st.lists(st.sampled_from(KEYS[section]), max_size=4, unique=True))
        raw[section] = {k: draw(VALUE) for k in keys}
    if draw(st.booleans()):  # a small valid spec, so that later sections get checked too
        raw["spec"] = {"alphabet": 3, "length": 2, "skills": ["reverse", "sort", "shift_up"], "routings": ["chain"]}
    return raw


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value else "nan"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return '""'


def _toml(raw: dict[str, Any]) -> str:
    top = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict) and v is not None]
    tables = []
    for name, section in raw.items():
        if isinstance(section, dict):
            rows = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in section.items() if v is not None]
            tables.append(f"[{name}]\n" + "\n".join(rows))
    return "\n".join(top) + "\n" + "\n\n".join(tables) + "\n"


def _only_hlsm_errors(call: Any) -> None:
    try:
        call()
    except HLSMError:
        pass


@FAST
@given(design_dicts())
def test_parse_design_raises_only_hlsm_errors(raw: dict[str, Any]) -> None:
    _only_hlsm_errors(lambda: parse_design(raw))


@pytest.fixture(scope="module")
def toml_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "design.toml"


@FAST
@given(design_dicts() | garbage.map(lambda s: {"__text__": s}))
def test_load_design_raises_only_hlsm_errors(toml_path: Path, raw: dict[str, Any]) -> None:
    text = raw["__text__"] if "__text__" in raw else _toml(raw)
    toml_path.write_text(text)
    _only_hlsm_errors(lambda: load_design(toml_path))


# ---------------------------------------------------------------------------------------------
# 10,000 inputs per property


@pytest.mark.slow
@SLOW
@given(rendered_traces() | mutated_traces().map(lambda c: (c[0], c[1], None, c[2], c[3])))
def test_parser_ten_thousand(case: tuple[Spec, str, Trace | None, int | None, bool]) -> None:
    spec, line, expected, slots, echo = case
    if expected is not None:
        assert parse(spec, line, slots=slots, echo=echo) == expected
    else:
        _parse_or_format_error(spec, line, slots, echo)


@pytest.mark.slow
@SLOW
@given(design_dicts())
def test_design_loader_ten_thousand(raw: dict[str, Any]) -> None:
    _only_hlsm_errors(lambda: parse_design(raw))

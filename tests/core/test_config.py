"""Closed sets of values (``Literal`` fields): read from a config and built in Python, both directions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from hlsm.config import ConfigError, build_dataclass, check_choices, choices, parse_overrides


@dataclass(frozen=True)
class Section:
    mode: Literal["a", "b"] = "a"
    maybe: Literal["x"] | None = None
    size: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        check_choices(self, ConfigError)


def test_choices_reads_literal_and_optional_literal_annotations() -> None:
    assert choices(Literal["a", "b"]) == ("a", "b")
    assert choices(Literal["x"] | None) == ("x", None)
    assert choices(int) is None and choices(str | None) is None and choices(Literal["x"] | int) is None


def test_a_config_value_outside_the_set_is_refused_with_the_set_named() -> None:
    assert build_dataclass(Section, {"mode": "b", "maybe": "x"}, "s") == Section(mode="b", maybe="x")
    with pytest.raises(ConfigError, match=r"\[s\] mode must be one of \['a', 'b'\], got 'c'"):
        build_dataclass(Section, {"mode": "c"}, "s")
    with pytest.raises(ConfigError, match=r"maybe must be one of \['x'\], got 'y'"):
        build_dataclass(Section, {"maybe": "y"}, "s")
    with pytest.raises(ConfigError, match=r"mode must be one of \['a', 'b'\], got 1"):
        build_dataclass(Section, {"mode": 1}, "s")


def test_an_instance_built_in_python_is_checked_too() -> None:
    assert Section(mode="b").mode == "b"
    with pytest.raises(ConfigError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        Section(mode="c")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"maybe must be one of \['x'\], got 'z'"):
        Section(maybe="z")  # type: ignore[arg-type]


def test_set_items_are_read_as_toml_values_or_plain_strings() -> None:
    items = ["training.steps=100", "training.lr=3e-4", "design.deeper_depths=[4, 5]", "training.device=cuda"]
    assert parse_overrides([*items, 'a.b = "x y"', "flag.on=true"]) == {
        "training.steps": 100,
        "training.lr": 3e-4,
        "design.deeper_depths": [4, 5],
        "training.device": "cuda",
        "a.b": "x y",
        "flag.on": True,
    }
    assert parse_overrides(None) == {}
    for bad in ("steps", "=3", "a..b=1", ".a=1"):
        with pytest.raises(ConfigError, match="write SECTION.KEY=VALUE"):
            parse_overrides([bad])

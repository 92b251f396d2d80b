"""Typed configuration: TOML files into frozen dataclasses, with one clear error per mistake."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hlsm.errors import HLSMError, InputError
from hlsm.io import read_text

T = TypeVar("T")


class ConfigError(HLSMError):
    """A config file or mapping with an unknown key, a wrong type or unreadable syntax."""


def load_toml(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a TOML file, with ``overrides`` (dotted keys, ``--set``: :func:`apply_overrides`) set on it;
    a missing file, a syntax error or an override that does not fit names the file and the fix."""
    path = Path(path)
    try:
        text = read_text(path, "config file")
    except InputError as err:
        raise ConfigError(str(err)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from None
    if not overrides:
        return raw
    try:
        return apply_overrides(raw, overrides)
    except ConfigError as err:
        raise ConfigError(f"'{path}': {err}") from None


def load_config(
    path: str | Path, parse: Callable[[dict[str, Any]], T], overrides: Mapping[str, Any] | None = None
) -> T:
    """``parse(load_toml(path))``, with ``overrides`` (dotted keys, :func:`apply_overrides`) applied
    first and every :class:`ConfigError` message naming the file."""
    try:
        return parse(load_toml(path, overrides))
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from None


def choices(hint: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` annotation allows (``None`` included for an optional one), or
    ``None`` where the annotation is not a closed set."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for member in typing.get_args(hint):
            if member is type(None):
                out.append(None)
            elif typing.get_origin(member) is typing.Literal:
                out += typing.get_args(member)
            else:
                return None
        return tuple(out)
    return None


_CLOSED: dict[type, tuple[tuple[str, tuple[Any, ...]], ...]] = {}


def _closed_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``(field, allowed values)`` of ``cls``'s closed-set fields, read once per class."""
    if cls not in _CLOSED:
        hints = typing.get_type_hints(cls)
        found = ((f.name, choices(hints[f.name])) for f in dataclasses.fields(cls))
        _CLOSED[cls] = tuple((name, allowed) for name, allowed in found if allowed is not None)
    return _CLOSED[cls]


def check_choices(obj: Any, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the field when a dataclass field annotated ``Literal[...]`` holds a value
    outside its set: the one check of every closed set of values (``rl_kind``, ``reward`` ...), for
    instances built in Python as for those read from a config (:func:`check_keys` checks those first)."""
    for name, allowed in _closed_fields(type(obj)):
        value = getattr(obj, name)
        if value not in allowed:
            raise error(f"{name} must be one of {[a for a in allowed if a is not None]}, got {value!r}")


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_type_ok(v, inner) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_keys(cls: type, raw: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check ``raw``'s keys and value types against dataclass ``cls``'s fields, without building it.

    Returns the values, with lists converted to tuples where the field is a tuple. Errors name the
    section ``what``, the key and the expected type. Useful on its own for a partial section whose
    values are completed from elsewhere (e.g. an RL config's ``[design]`` and its SFT checkpoint).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{what}] must be a table of keys, got {type(raw).__name__}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{what}]; allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        hint = hints[key]
        if not _type_ok(value, hint):
            allowed = choices(hint)
            if allowed is not None:
                names = [a for a in allowed if a is not None]
                raise ConfigError(f"[{what}] {key} must be one of {names}, got {value!r}")
            expected = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ConfigError(
                f"[{what}] key '{key}' must be of type {expected}, got {value!r} ({type(value).__name__})"
            )
        if isinstance(value, list) and typing.get_origin(hint) is not list:
            value = tuple(value)
        kwargs[key] = value
    return kwargs


def build_dataclass(cls: type[T], raw: Mapping[str, Any], what: str) -> T:
    """Instantiate dataclass ``cls`` from ``raw``, checking keys and types against its annotations.

    Lists are converted to tuples where the field is a tuple. Errors name the section ``what``, the
    key and the expected type (:func:`check_keys`).
    """
    kwargs = check_keys(cls, raw, what)
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(f"[{what}]: {err}") from None


def check_sections(
    raw: Mapping[str, Any], allowed: Sequence[str], source: str = "", *, tables: Sequence[str] | None = None
) -> None:
    """Reject a section not in ``allowed``, and a section of ``tables`` (default: all) that is not a table.

    ``source`` names the input in the message (a phrase such as ``"'c.toml'"`` or ``"design file
    'c.toml'"``); ``tables`` excludes sections that are arrays of tables (``[[data]]``) or plain values.
    """
    where = f" in {source}" if source else ""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config{where} must be a table of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}{where}; allowed: {', '.join(f'[{s}]' for s in allowed)}")
    for name in allowed if tables is None else tables:
        if name in raw and not isinstance(raw[name], Mapping):
            raise ConfigError(f"[{name}]{where} must be a table of keys, got {type(raw[name]).__name__}")


def section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The table ``[name]`` of ``raw`` as a new dict (``{}`` when absent); a non-table raises."""
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys, got {type(value).__name__}")
    return dict(value)


def key_path(dotted: str) -> list[str]:
    """The parts of a dotted key, read as a TOML key: ``fit.seed`` -> ``["fit", "seed"]``, and a quoted
    part keeps its dots: ``grid."fit.seed"`` -> ``["grid", "fit.seed"]``."""
    try:
        node: Any = tomllib.loads(f"{dotted} = 0")
    except tomllib.TOMLDecodeError:
        return dotted.split(".")
    parts = []
    while isinstance(node, dict) and len(node) == 1:
        ((part, node),) = node.items()
        parts.append(part)
    return parts


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each dotted key set (``"fit.seed"`` sets ``base["fit"]["seed"]``, ``'grid."fit.seed"'``
    sets ``base["grid"]["fit.seed"]``: :func:`key_path`; missing tables are made); the one way a sweep
    cell and ``--set`` change a config."""
    out = copy.deepcopy(dict(base))
    for dotted, value in overrides.items():
        *path, leaf = key_path(dotted)
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key '{dotted}': '{part}' is not a table of the config")
        node[leaf] = value
    return out


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as ``{dotted key: value}``: the value is read as TOML (``100``, ``true``,
    ``[1, 2]``, ``"text"``), or taken as a string when it is not TOML (``device=cuda``)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set '{item}': write SECTION.KEY=VALUE, e.g. --set training.steps=100")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text.strip()
    return out

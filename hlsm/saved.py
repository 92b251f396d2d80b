"""Saved results as JSON: one generic layer between frozen dataclasses and their JSON records.

A result class derives from :class:`Saved` and gets :meth:`Saved.to_dict` (what ``results.json``,
``summary.json``, ``metrics.json`` and the evaluation files hold) and :meth:`Saved.from_dict` (reading
it back, typed). The layout is the dataclass's: one key per field in field order, nested dataclasses,
tuples, lists and dicts written recursively and rebuilt from the field's type annotation. Three
field markers (``dataclasses.field`` metadata) cover the layouts the saved files already have:

- :data:`FLAT` — the field's own keys are written at this level (a split's ``n``, ``accuracy`` and
  ``se`` beside its ``malformed``), and read back from it;
- :data:`REST` — a ``dict`` field holding every key no other field names (written flat; read back
  as the keys left over);
- :data:`OPTIONAL` — a field (default None) written only when it is not None, read back as None when absent.

A field with a default is read back as its default when an older file lacks its key. Values are
written as they are (``json_safe`` is the writer's business); dict keys are kept as they come (JSON
makes them strings). A class whose record needs more than this keeps its own ``to_dict`` /
``from_dict``, and the layer calls them for its fields.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

FLAT = {"saved": "flat"}
"""Field metadata: the field (a dataclass) writes its keys at the level of the record holding it;
``accuracy: Accuracy = field(metadata=FLAT)``."""
REST = {"saved": "rest"}
"""Field metadata: a ``dict`` field holding every key no other field names;
``selections: dict[str, float] = field(default_factory=dict, metadata=REST)``."""
OPTIONAL = {"saved": "optional"}
"""Field metadata: written only when not None; ``nuts: dict | None = field(default=None, metadata=OPTIONAL)``."""


def _marker(f: dataclasses.Field[Any]) -> str | None:
    return f.metadata.get("saved")


class SavedError(ValueError):
    """A record that does not match its class: a key missing, or a value of the wrong shape."""


def _own(obj: Any, name: str) -> Any:
    """``obj.name`` when the class of ``obj`` (or ``obj``, a class) defines its own, not :class:`Saved`'s
    generic one; else None."""
    cls = obj if isinstance(obj, type) else type(obj)
    found = inspect.getattr_static(cls, name, None)
    return None if found is None or found is inspect.getattr_static(Saved, name) else getattr(obj, name)


def dump(value: Any) -> Any:
    """``value`` as JSON data: dataclasses as records (their own ``to_dict`` when they define one)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = _own(value, "to_dict")
        return _dump_fields(value) if to_dict is None else to_dict()  # its own may build on the generic one
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: dump(v) for k, v in value.items()}
    return value


def _dump_fields(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if _marker(f) == "optional" and item is None:
            continue
        if _marker(f) in ("flat", "rest"):
            out.update(dump(item))
        else:
            out[f.name] = dump(item)
    return out


def load(kind: Any, data: Any, where: str = "record") -> Any:
    """``data`` (JSON) rebuilt as ``kind`` (a type annotation); ``where`` names it in errors."""
    origin = typing.get_origin(kind)
    if kind is Any or kind is None:
        return data
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(kind) if a is not type(None)]
        if data is None:
            return None
        return load(members[0], data, where) if len(members) == 1 else data
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(data, Mapping):
            raise SavedError(f"{where}: expected a record for {kind.__name__}, got {type(data).__name__}")
        from_dict = _own(kind, "from_dict")
        # the generic reading names where it is in errors; a class's own may call the generic one
        return _load_fields(kind, data, where) if from_dict is None else from_dict(data)
    if origin is tuple or origin is list:
        if not isinstance(data, (list, tuple)):
            raise SavedError(f"{where}: expected a list, got {type(data).__name__}")
        args = typing.get_args(kind)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            items = [load(item, x, f"{where}[{i}]") for i, x in enumerate(data)]
        else:
            items = [load(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, list(data), strict=True))]
        return tuple(items) if origin is tuple else items
    if origin is dict or origin is Mapping:
        if not isinstance(data, Mapping):
            raise SavedError(f"{where}: expected a record, got {type(data).__name__}")
        value = typing.get_args(kind)[1] if typing.get_args(kind) else Any
        return {k: load(value, v, f"{where}[{k!r}]") for k, v in data.items()}
    return data


@functools.cache
def _layout(cls: type) -> tuple[tuple[dataclasses.Field[Any], ...], dict[str, Any], frozenset[str]]:
    """A class's fields, their resolved annotations and the keys its record names (computed once)."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    named = {f.name for f in fields if _marker(f) not in ("flat", "rest")}
    for f in fields:
        if _marker(f) == "flat":
            named |= {g.name for g in dataclasses.fields(hints[f.name])}
    return fields, hints, frozenset(named)


def _load_fields(cls: type, data: Mapping[str, Any], where: str) -> Any:
    fields, hints, named = _layout(cls)
    values: dict[str, Any] = {}
    for f in fields:
        inner = f"{where}.{f.name}"
        if _marker(f) == "flat":
            values[f.name] = load(hints[f.name], data, inner)
        elif _marker(f) == "rest":
            values[f.name] = {k: v for k, v in data.items() if k not in named}
        elif f.name in data:
            values[f.name] = load(hints[f.name], data[f.name], inner)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SavedError(f"{where}: the saved record has no '{f.name}' (keys: {sorted(data)})")
    return cls(**values)


class Saved:
    """A frozen dataclass saved as a JSON record (:func:`dump`) and read back typed (:func:`load`)."""

    def to_dict(self) -> dict[str, Any]:
        return _dump_fields(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return typing.cast(Self, _load_fields(cls, data, cls.__name__))

"""The example designs and configs that ship with hlsm, addressable as ``example:NAME``.

``hlsm/examples/designs/*.toml`` are support designs (``hlsm identify``, ``fit``, ``export``
``--design``): the five propositions C1–C5 on small instances, the identifiable and the
non-identifiable fit examples, and the default library's design. ``hlsm/examples/configs/*.toml``
are training configs (``hlsm train sft|rl --config``) and a sweep grid (``hlsm sweep --grid``).

Every file option of the command line, and every TOML file hlsm reads (:func:`hlsm.io.read_text`),
accepts ``example:NAME`` for the packaged file, so the examples work from an installed wheel as
from a checkout; ``hlsm examples list`` names them and ``hlsm examples copy`` copies them into a
folder to edit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from hlsm.errors import InputError

PREFIX = "example:"
"""The prefix that names a packaged example instead of a file (``--design example:fit_tiny``)."""

ROOT = Path(__file__).resolve().parent
DESIGNS = ROOT / "designs"
CONFIGS = ROOT / "configs"
FOLDERS = {"design": DESIGNS, "config": CONFIGS}


class ExampleError(InputError):
    """An example name that does not exist, or a copy that would overwrite a file."""


@dataclass(frozen=True)
class Example:
    """One packaged example: its ``name``, ``kind`` (design, config, grid), file, first comment line
    and the command that reads it (``usage``)."""

    name: str
    kind: str
    path: Path
    summary: str
    usage: str


def _summary(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def examples() -> dict[str, Example]:
    """Every packaged example by name, designs first, each group sorted; names are unique across folders."""
    found: dict[str, Example] = {}
    for kind, folder in FOLDERS.items():
        for path in sorted(folder.glob("*.toml")):
            if path.stem in found:
                raise ExampleError(f"two examples are named '{path.stem}': {found[path.stem].path} and {path}")
            sections = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
            if kind == "design":
                actual, usage = kind, "hlsm identify --design"
            elif "[sweep]" in sections:
                actual, usage = "grid", "hlsm sweep --grid"
            else:
                actual, usage = kind, f"hlsm train {'rl' if '[rl]' in sections else 'sft'} --config"
            found[path.stem] = Example(path.stem, actual, path, _summary(path), f"{usage} {PREFIX}{path.stem}")
    return found


def example_path(name: str) -> Path:
    """The packaged file of the example ``name`` (with or without the ``example:`` prefix)."""
    name = name.removeprefix(PREFIX)
    known = examples()
    if name not in known:
        raise ExampleError(
            f"no example named '{name}'; the examples are {', '.join(known)} (`hlsm examples list` describes them)"
        )
    return known[name].path


def resolve(path: str | Path) -> Path:
    """``path`` itself, or the packaged file when it is ``example:NAME``."""
    text = str(path)
    return example_path(text) if text.startswith(PREFIX) else Path(path)


def _write_bytes(data: bytes, f: BinaryIO) -> None:
    f.write(data)


def copy_examples(names: Iterable[str], folder: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the named examples (all when ``names`` is empty) into ``folder``; returns the new files.

    An existing file of the same name is an error unless ``overwrite`` (nothing is copied then).
    """
    from hlsm.io import atomic_write, check_target  # hlsm.io reads examples: imported here, not above

    chosen = [example_path(n) for n in names] or [e.path for e in examples().values()]
    folder = Path(folder)
    targets = [folder / p.name for p in chosen]
    clash = [str(t) for t in targets if os.path.lexists(t)]
    if clash and not overwrite:
        raise ExampleError(f"{', '.join(clash)} already exist(s); choose another folder or pass --overwrite")
    for target in targets:  # a link, a device or a folder in the way: refused before anything is copied
        check_target(target)
    for source, target in zip(chosen, targets, strict=True):
        atomic_write(target, partial(_write_bytes, source.read_bytes()), mode="wb")
    return targets

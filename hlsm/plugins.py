"""Custom modules from outside the package: ``hlsm.modules`` entry points and ``--plugin FILE``.

A package that defines skills or routings declares an entry point in the ``hlsm.modules`` group::

    [project.entry-points."hlsm.modules"]
    my_library = "my_package.hlsm_modules"            # a module that registers on import
    # or: my_library = "my_package.hlsm_modules:register"   (a function called with no arguments)

and every ``hlsm`` command loads it before it runs. A single file works without packaging:
``hlsm simulate --plugin my_modules.py ...`` runs the file (which calls :func:`hlsm.register_skill`
and :func:`hlsm.register_routing`) first. Registration's checks (:func:`hlsm.modules.check_module`)
apply to plugin modules like any other.

Worker processes that hlsm starts itself (sweep cells on a process pool or Ray, the seeds of an
experiment, the scalable likelihood's builders) load the same plugins first:
:func:`plugin_files` names what this process loaded, and :func:`load_plugins` is their initializer.
Loading is idempotent per process (a file or the entry points load once), so a worker that runs
many tasks registers each module once. A module registered by hand (``hlsm.register_skill`` in
your own script) is not known to those workers; put it in a plugin file to use it there.
"""

from __future__ import annotations

import importlib.metadata
import runpy
from collections.abc import Sequence
from pathlib import Path

from hlsm.errors import HLSMError
from hlsm.io import read_text

ENTRY_POINT_GROUP = "hlsm.modules"
"""The entry-point group whose members register custom modules."""


class PluginError(HLSMError):
    """A plugin that failed to load; the message names it and what it raised."""


_LOADED_FILES: list[str] = []
"""The plugin files loaded in this process (absolute paths, in order)."""
_ENTRY_POINTS_LOADED = False
_PLUGIN_MODULES: set[str] = set()
"""The names of the modules that plugins registered in this process."""


def plugin_files() -> tuple[str, ...]:
    """The plugin files this process loaded, as absolute paths: what a worker process must load too."""
    return tuple(_LOADED_FILES)


def plugin_modules() -> frozenset[str]:
    """The names of the skills and routings that plugins (files and entry points) registered here."""
    return frozenset(_PLUGIN_MODULES)


def _registered() -> set[str]:
    from hlsm.modules import routings, skills

    return {m.name for m in skills()} | {m.name for m in routings()}


def load_plugins(files: Sequence[str | Path] = (), *, entry_points: bool = True) -> list[str]:
    """Load every ``hlsm.modules`` entry point (unless ``entry_points`` is False), then each plugin file.

    Returns the names of what was loaded now (entry-point names, file paths); what this process
    loaded before is skipped. A plugin that raises is reported with its name; an
    :class:`HLSMError` it raises (a module registration refused) keeps its message, prefixed with
    the plugin's name.
    """
    global _ENTRY_POINTS_LOADED
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ()
    points = () if _ENTRY_POINTS_LOADED else points
    fresh = {str(Path(f).resolve()): Path(f) for f in files}  # a file named twice loads once
    pending = [path for resolved, path in fresh.items() if resolved not in _LOADED_FILES]
    if not points and not pending:
        return []  # nothing to do: no registry (and no torch) imported
    before = _registered()
    try:
        _ENTRY_POINTS_LOADED = _ENTRY_POINTS_LOADED or bool(points)
        return _load(points, pending)
    finally:
        _PLUGIN_MODULES.update(_registered() - before)


def _load(points: Sequence[importlib.metadata.EntryPoint], files: Sequence[Path]) -> list[str]:
    from hlsm.modules import registering_from

    loaded: list[str] = []
    for point in points:
        where = f"plugin entry point '{point.name}' ({point.value})"
        try:
            with registering_from(f"plugin entry point '{point.name}'"):
                target = point.load()
                if callable(target):
                    target()
        except HLSMError as err:
            raise PluginError(f"{where}: {err}") from None
        except SystemExit as err:
            raise PluginError(f"{where} called sys.exit({err.code!r}) while loading; a plugin must not exit") from None
        except Exception as err:  # noqa: BLE001 (a third-party plugin may raise anything)
            raise PluginError(f"{where} failed: {type(err).__name__}: {err}") from None
        loaded.append(point.name)
    for path in files:
        read_text(path, "plugin file")  # missing, a folder, not UTF-8: one clear message
        if path.suffix != ".py":
            raise PluginError(f"plugin file '{path}' must be a Python file (.py)")
        try:
            with registering_from(f"plugin file '{path}'"):
                runpy.run_path(str(path), run_name=f"hlsm_plugin_{path.stem}")
        except HLSMError as err:
            raise PluginError(f"plugin file '{path}': {err}") from None
        except SystemExit as err:
            raise PluginError(
                f"plugin file '{path}' called sys.exit({err.code!r}) while loading; a plugin must not exit"
            ) from None
        except Exception as err:  # noqa: BLE001
            raise PluginError(f"plugin file '{path}' failed: {type(err).__name__}: {err}") from None
        _LOADED_FILES.append(str(path.resolve()))
        loaded.append(str(path))
    return loaded

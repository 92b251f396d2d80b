"""Custom modules from outside the package: ``hlsm.modules`` entry points and ``--plugin FILE``.

A package that defines skills or routings declares an entry point in the ``hlsm.modules`` group::

    [project.entry-points."hlsm.modules"]
    my_library = "my_package.hlsm_modules"            # a module that registers on import
    # or: my_library = "my_package.hlsm_modules:register"   (a function called with no arguments)

and every ``hlsm`` command loads it before it runs. A single file works without packaging:
``hlsm simulate --plugin my_modules.py ...`` runs the file (which calls :func:`hlsm.register_skill`
and :func:`hlsm.register_routing`) first. Registration's checks (:func:`hlsm.modules.check_module`)
apply to plugin modules like any other. Processes that hlsm starts itself (worker pools) do not load
plugins; give custom modules to pools by importing them in the worker's code.
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


def load_plugins(files: Sequence[str | Path] = (), *, entry_points: bool = True) -> list[str]:
    """Load every ``hlsm.modules`` entry point (unless ``entry_points`` is False), then each plugin file.

    Returns the names of what was loaded (entry-point names, file paths). A plugin that raises is
    reported with its name; an :class:`HLSMError` it raises (a module registration refused) keeps
    its message, prefixed with the plugin's name.
    """
    loaded: list[str] = []
    if entry_points:
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"plugin entry point '{point.name}' ({point.value})"
            try:
                target = point.load()
                if callable(target):
                    target()
            except HLSMError as err:
                raise PluginError(f"{where}: {err}") from None
            except Exception as err:  # noqa: BLE001 (a third-party plugin may raise anything)
                raise PluginError(f"{where} failed: {type(err).__name__}: {err}") from None
            loaded.append(point.name)
    for file in files:
        path = Path(file)
        read_text(path, "plugin file")  # missing, a folder, not UTF-8: one clear message
        if path.suffix != ".py":
            raise PluginError(f"plugin file '{path}' must be a Python file (.py)")
        try:
            runpy.run_path(str(path), run_name=f"hlsm_plugin_{path.stem}")
        except HLSMError as err:
            raise PluginError(f"plugin file '{path}': {err}") from None
        except Exception as err:  # noqa: BLE001
            raise PluginError(f"plugin file '{path}' failed: {type(err).__name__}: {err}") from None
        loaded.append(str(path))
    return loaded

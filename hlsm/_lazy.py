"""Lazy public names (PEP 562) and modules that can be called as their main verb.

A package's ``__init__`` declares which module defines each public name; nothing is imported until a
name is first used, so ``import hlsm`` and ``hlsm --help`` load no torch. A module whose name is also
its main verb (``hlsm.simulate``, ``hlsm.identify``) stays a module for ``import`` and becomes
callable, so that ``hlsm.identify(spec, corpus, candidates)`` and ``import hlsm.identify`` both mean
what they say.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], submodules: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps a public name to its module.

    ``submodules`` are loaded on attribute access (``hlsm.lm`` without ``import hlsm.lm``). A name is
    cached in the package's namespace after its first use.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(submodules) | set(vars(sys.modules[package])))

    return __getattr__, __dir__


class _VerbModule(types.ModuleType):
    """A module that, called, calls its function of the same name.

    It pickles as a reference to the module (so ``functools.partial(hlsm.simulate, ...)`` reaches a
    spawned worker) and reports the verb's signature. Type checkers see a module, not a function:
    typed code calls ``hlsm.identify.identify`` / ``hlsm.simulate.simulate``.
    """

    def _verb(self) -> Callable[..., Any]:
        verb: Callable[..., Any] = getattr(self, self.__name__.rsplit(".", 1)[-1])
        return verb

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._verb()(*args, **kwargs)

    def __reduce__(self) -> tuple[Callable[[str], types.ModuleType], tuple[str]]:
        return importlib.import_module, (self.__name__,)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._verb())


def callable_module(name: str) -> None:
    """Make module ``name`` callable as its function of the same last name (Python's documented
    ``module.__class__`` customisation); everything else about the module is unchanged."""
    sys.modules[name].__class__ = _VerbModule

"""Exact identifiability: which bindings, table entries and unseen programs a support determines.

Modules: :mod:`~hlsm.identify.checker` (the checker's API, :func:`identify`),
:mod:`~hlsm.identify.observations` (what a corpus says: step facts, records, extensional module
classes), :mod:`~hlsm.identify.hlib` and :mod:`~hlsm.identify.htab` (the two hypothesis classes),
:mod:`~hlsm.identify.graph` (the support graph, networkx), :mod:`~hlsm.identify.claims` (random tiny
designs and the checks of C1-C5), :mod:`~hlsm.identify.horizon` (the horizon ``L*`` every answer
is relative to), :mod:`~hlsm.identify.oracle` (brute-force version spaces, the checker's oracle on
tiny instances).

The package is callable: ``hlsm.identify(spec, corpus, candidates)`` is
:func:`hlsm.identify.checker.identify`. It depends on the core only; never on Pyro.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from hlsm._lazy import callable_module as _callable_module
from hlsm._lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from hlsm.identify.checker import HYPOTHESIS_CLASSES, STATUSES, Identification, Verdict, identify
    from hlsm.identify.graph import graph_diagnostics, support_graph
    from hlsm.identify.horizon import DEFAULT_HORIZON, HorizonError, resolve_horizon

_NAMES = {
    "HYPOTHESIS_CLASSES": "hlsm.identify.checker",
    "STATUSES": "hlsm.identify.checker",
    "Identification": "hlsm.identify.checker",
    "Verdict": "hlsm.identify.checker",
    "identify": "hlsm.identify.checker",
    "graph_diagnostics": "hlsm.identify.graph",
    "support_graph": "hlsm.identify.graph",
    "DEFAULT_HORIZON": "hlsm.identify.horizon",
    "HorizonError": "hlsm.identify.horizon",
    "resolve_horizon": "hlsm.identify.horizon",
}
__getattr__, __dir__ = _lazy_exports(
    __name__, _NAMES, ("checker", "claims", "graph", "hlib", "horizon", "htab", "observations", "oracle")
)
__all__ = sorted(_NAMES)
_callable_module(__name__)

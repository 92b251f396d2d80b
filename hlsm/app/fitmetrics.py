"""What ``hlsm fit`` reports, typed: :class:`FitMetrics` is the content of ``metrics.json``.

Producers build the dataclasses (:func:`hlsm.app.fitrun.run_fit`); :meth:`FitMetrics.to_dict` writes
the JSON file and :meth:`FitMetrics.from_dict` reads it back for figures and sweeps, so a key that a
consumer expects and no producer writes is a type error, not a silent ``KeyError`` at the end of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hlsm.io import json_safe
from hlsm.saved import OPTIONAL, REST, Saved


@dataclass(frozen=True)
class RestartRecord(Saved):
    """One restart of a fit as ``metrics.json`` lists it (a number that is not finite reads back as None)."""

    seed: int
    objective: float | None
    log_likelihood: float | None
    steps: int
    converged: bool
    epsilon: float | None
    interval_width: float | None = None
    """Width of the scalable likelihood's certified interval at the estimate (None: exact likelihood)."""


@dataclass(frozen=True)
class Recovery(Saved):
    """Recovery of the true library by the best restart (``metrics.json`` ``recovery``).

    ``matched_permutation[i]`` is the fitted skill matched to true skill ``i`` (Hungarian matching on
    TV; the identity order for library tables); ``selections`` holds the ARI / NMI of the MAP
    selections (written flat beside the other keys; absent on corpora over 20,000 traces).
    """

    skill_binding_accuracy: float
    routing_binding_accuracy: float
    matched_tv: list[float]
    matched_tv_max: float
    epsilon: float | None
    matched_permutation: list[int]
    selections: dict[str, float] = field(default_factory=dict, metadata=REST)


@dataclass(frozen=True)
class SymbolView(Saved):
    """One symbol as the fit reads it: the best restart's binding, its probability, restart agreement."""

    kind: str
    true: str
    fitted: str
    probability: float
    restarts_agree: bool
    identified: bool
    checker: bool | None


@dataclass(frozen=True)
class FitMetrics(Saved):
    """Everything ``hlsm fit`` writes to ``metrics.json`` (:meth:`to_dict` is the file's content).

    ``candidates`` are :meth:`hlsm.infer.bayes.ProgramView.to_dict` rows with the checker's verdict
    (``checker``: in G or not, None without noiseless data); ``confusion`` is
    :func:`hlsm.infer.bayes.confusion`; ``nuts`` the NUTS summary and comparison when it ran.
    """

    design: str
    data: str | None
    traces: int
    fit: dict[str, Any]
    restarts: list[RestartRecord]
    best: int
    spread: float
    recovery: Recovery
    symbols: dict[str, SymbolView]
    candidates: list[dict[str, Any]]
    confusion: dict[str, Any] | None
    nuts: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (``hlsm fit --json``): recovery, agreement with the checker, interval width."""
        rec = self.recovery
        skills, routings = len(rec.matched_permutation), sum(v.kind == "routing" for v in self.symbols.values())
        widths = [r.interval_width for r in self.restarts if r.interval_width is not None]
        best = self.restarts[self.best]
        return json_safe(
            {
                "design": self.design,
                "traces": self.traces,
                "binding_accuracy": (rec.skill_binding_accuracy * skills + rec.routing_binding_accuracy * routings)
                / (skills + routings),
                "skill_binding_accuracy": rec.skill_binding_accuracy,
                "routing_binding_accuracy": rec.routing_binding_accuracy,
                "epsilon": rec.epsilon,
                "checker_agreement": None if self.confusion is None else self.confusion["agreement"],
                "confusion": self.confusion,
                "candidates": len(self.candidates),
                "restarts": len(self.restarts),
                "best_log_likelihood": best.log_likelihood,
                "interval_width": best.interval_width,
                "max_interval_width": max(widths) if widths else None,
                "symbols_not_identified": [s for s, v in self.symbols.items() if not v.identified],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (NaN and infinities become None)."""
        return json_safe(super().to_dict())

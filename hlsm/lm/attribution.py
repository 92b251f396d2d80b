"""Where a generated trace leaves the true execution: per-step error attribution and conditional accuracy.

A greedy generation is read *leniently* step by step (:func:`read_steps`): the states between the
step separators ``>``, each either ``n`` letters or unreadable. Its *first departure*
(:func:`first_departure`) is the first step ``l`` whose state differs from the true ``x_l``;
``L + 1`` when every state is right but the trace is malformed (extra steps, no EOS); ``0``
(none) when the trace is right and well formed. A departure is attributed to the step's skill,
its routing and its (predecessor skill, skill) pair (``start`` before the first step).

*Per-step conditional accuracy*: step ``l`` is *reached* when steps ``< l`` are
right, and *right* when its state is right too; the accuracy is right / reached, reported per
depth and step, and pooled over steps by the status of the step's pair in SFT: ``first`` (step 1,
no predecessor), ``seen`` (the pair occurs in the SFT programs), ``unseen``. The unseen-pair step
is where the entanglement gap sits: a model that reuses its modules gets it right as often as a
seen-pair step.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from hlsm.lm.data import TaskFormat
from hlsm.programs import NO_ROUTING, Program
from hlsm.spec import LETTERS, Spec
from hlsm.stats import proportion, rounded
from hlsm.traces import STEP_SEP, Tokenizer

PAIR_STATUSES = ("first", "seen", "unseen")


def read_steps(
    spec: Spec, fmt: TaskFormat, tokenizer: Tokenizer, generated: Sequence[int]
) -> list[tuple[int, ...] | None]:
    """The states of a generation read step by step, without the strict parser's checks.

    Tokens after the first EOS are ignored. A generation that does not start with ``>`` has no
    readable step. Each chunk between separators is a state if it is exactly ``n`` letters (after
    the echoed skill symbol with ``fmt.echo``), else None.
    """
    letters = {tokenizer.index[c]: v for v, c in enumerate(LETTERS[: spec.alphabet])}
    sep = tokenizer.index[STEP_SEP]
    body = list(generated)
    if tokenizer.eos in body:
        body = body[: body.index(tokenizer.eos)]
    if not body or body[0] != sep:
        return []
    chunks: list[list[int]] = []
    for token in body:
        if token == sep:
            chunks.append([])
        else:
            chunks[-1].append(token)
    states: list[tuple[int, ...] | None] = []
    for chunk in chunks:
        if fmt.echo:
            chunk = chunk[1:] if chunk and chunk[0] not in letters else []
        ok = len(chunk) == spec.length and all(t in letters for t in chunk)
        states.append(tuple(letters[t] for t in chunk) if ok else None)
    return states


def first_departure(
    true_states: Sequence[Sequence[int]], steps: Sequence[tuple[int, ...] | None], well_formed: bool
) -> int:
    """The first step ``l`` (1-based) whose read state differs from ``x_l``; ``L + 1``; or 0.

    Parameters
    ----------
    true_states
        ``x_1 .. x_L`` of the true execution.
    steps
        :func:`read_steps` of the generation.
    well_formed
        Whether the strict parser accepted the generation.
    """
    for l, state in enumerate(true_states, start=1):
        if l > len(steps) or steps[l - 1] != tuple(state):
            return l
    return 0 if well_formed else len(true_states) + 1


def pair_status(program: Program, step: int, seen_pairs: Collection[tuple[int, int]]) -> str:
    """``first`` for step 1, else ``seen`` / ``unseen``: whether ``(k_{l-1}, k_l)`` is an SFT pair."""
    if step == 1:
        return "first"
    return "seen" if (program.skills[step - 2], program.skills[step - 1]) in seen_pairs else "unseen"


def _rate(right: int, reached: int) -> dict[str, Any]:
    """``right / reached`` with its binomial SE, rounded as saved (None when no step was reached)."""
    acc = proportion(right, reached)
    return {"reached": reached, "right": right, "accuracy": rounded(acc.accuracy), "se": rounded(acc.se)}


@dataclass
class StepReport:
    """Counts of first departures and of reached / right steps over a set of examples (additive).

    Attributes
    ----------
    n : int
        Examples.
    departures : dict of str to Counter
        First departures by ``step`` (its index), ``skill``, ``routing`` (``-`` for an atomic
        step) and ``pair`` (``"pred>skill"``, ``pred = start`` at step 1); departures after the
        last step are counted in ``after_last`` only.
    conditional : Counter
        ``(depth, step, "reached" | "right")`` counts.
    by_status : Counter
        ``(status, "reached" | "right")`` counts, status in :data:`PAIR_STATUSES`.
    """

    n: int = 0
    departures: dict[str, Counter[str]] = field(
        default_factory=lambda: {k: Counter() for k in ("step", "skill", "routing", "pair")}
    )
    after_last: int = 0
    conditional: Counter[tuple[int, int, str]] = field(default_factory=Counter)
    by_status: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, spec: Spec, program: Program, departure: int, seen_pairs: Collection[tuple[int, int]]) -> None:
        """Count one example whose first departure is ``departure`` (0: none)."""
        self.n += 1
        L = program.depth
        if departure == L + 1:
            self.after_last += 1
        elif departure:
            m, k = program.steps[departure - 1]
            pred = "start" if departure == 1 else spec.skills[program.skills[departure - 2]]
            self.departures["step"][str(departure)] += 1
            self.departures["skill"][spec.skills[k]] += 1
            self.departures["routing"]["-" if m == NO_ROUTING else spec.routings[m]] += 1
            self.departures["pair"][f"{pred}>{spec.skills[k]}"] += 1
        for l in range(1, L + 1):
            if departure and departure < l:
                break
            right = not departure or departure > l
            status = pair_status(program, l, seen_pairs)
            self.conditional[L, l, "reached"] += 1
            self.conditional[L, l, "right"] += int(right)
            self.by_status[status, "reached"] += 1
            self.by_status[status, "right"] += int(right)

    def merge(self, other: StepReport) -> StepReport:
        """The report of both sets of examples."""
        out = StepReport(self.n + other.n, after_last=self.after_last + other.after_last)
        for key in out.departures:
            out.departures[key] = self.departures[key] + other.departures[key]
        out.conditional = self.conditional + other.conditional
        out.by_status = self.by_status + other.by_status
        return out

    def accuracy(self, status: str) -> float:
        """Conditional accuracy of the steps with pair status ``status`` (nan if none reached)."""
        reached = self.by_status[status, "reached"]
        return self.by_status[status, "right"] / reached if reached else math.nan

    def to_dict(self) -> dict[str, Any]:
        depths = sorted({d for d, _, _ in self.conditional})
        return {
            "n": self.n,
            "first_departure": {
                **{k: dict(sorted(c.items())) for k, c in self.departures.items()},
                "after_last_step": self.after_last,
                "none": self.n - sum(self.departures["step"].values()) - self.after_last,
            },
            "conditional": {
                str(d): {
                    str(l): _rate(self.conditional[d, l, "right"], self.conditional[d, l, "reached"])
                    for l in range(1, d + 1)
                }
                for d in depths
            },
            "by_pair_status": {
                s: _rate(self.by_status[s, "right"], self.by_status[s, "reached"]) for s in PAIR_STATUSES
            },
        }

"""Programs, their batched execution, prompts with symbols.

A program of depth ``L`` is ``pi = ((m_1, k_1), ..., (m_L, k_L))`` with routing indices ``m_l`` and
skill indices ``k_l`` into a :class:`~hlsm.spec.Spec`'s library; it runs as
``x_l = f_{k_l}(rho_{m_l}(x_0, ..., x_{l-1}))`` and its answer is ``x_L`` (``theory/model.md``).

An *atomic* program is one skill applied to ``x_0`` with no routing symbol; its routing index is
:data:`NO_ROUTING`. Batches of programs are stored as two ``(N, L_max)`` integer arrays plus a
``(N,)`` depth array; slots past a program's depth hold :data:`PAD`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.spec import Spec

NO_ROUTING = -1
"""Routing index of an atomic program's single step: the input is ``x_0`` and no symbol is shown."""

PAD = -1
"""Skill and routing index of the slots past a program's depth in a batch array."""


class ProgramError(HLSMError):
    """A program that does not fit its spec (index out of range, empty, misplaced atomic step).

    ``symbol`` is the 0-based position of the offending prompt symbol when there is one
    (:meth:`Program.from_symbols`), so that a parser can point at its column.
    """

    def __init__(self, message: str, symbol: int | None = None) -> None:
        super().__init__(message)
        self.symbol = symbol


@dataclass(frozen=True, order=True)
class Program:
    """A sequence of ``(routing, skill)`` index pairs.

    Use :meth:`atomic` for a one-skill program without routing symbol.
    """

    steps: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        steps = tuple((int(m), int(k)) for m, k in self.steps)
        object.__setattr__(self, "steps", steps)
        if not steps:
            raise ProgramError("a program needs at least one step")
        if any(m == NO_ROUTING for m, _ in steps) and len(steps) != 1:
            raise ProgramError("only a depth-1 (atomic) program may omit its routing symbol")

    @classmethod
    def atomic(cls, skill: int) -> Program:
        return cls(((NO_ROUTING, skill),))

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def is_atomic(self) -> bool:
        return self.steps[0][0] == NO_ROUTING

    @property
    def skills(self) -> tuple[int, ...]:
        return tuple(k for _, k in self.steps)

    @property
    def routings(self) -> tuple[int, ...]:
        return tuple(m for m, _ in self.steps if m != NO_ROUTING)

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """Consecutive skill pairs ``(k_l, k_{l+1})``: the compositions a program exercises."""
        ks = self.skills
        return tuple(zip(ks[:-1], ks[1:], strict=True))

    def check(self, spec: Spec) -> Program:
        """Raise :class:`ProgramError` if an index is outside ``spec``'s library; return self."""
        for m, k in self.steps:
            if not 0 <= k < spec.num_skills:
                raise ProgramError(f"skill index {k} out of range: the library has {spec.num_skills} skills")
            if m != NO_ROUTING and not 0 <= m < spec.num_routings:
                raise ProgramError(f"routing index {m} out of range: the library has {spec.num_routings} routings")
        return self

    def symbols(self, spec: Spec) -> tuple[str, ...]:
        """The prompt's symbol sequence ``tau_1 sigma_1 ... tau_L sigma_L`` (atomic: ``sigma_1``)."""
        out: list[str] = []
        for m, k in self.steps:
            if m != NO_ROUTING:
                out.append(spec.routing_symbols[m])
            out.append(spec.skill_symbols[k])
        return tuple(out)

    def names(self, spec: Spec) -> str:
        """Human-readable form, e.g. ``chain:reverse > restart:sort``."""
        parts = []
        for m, k in self.steps:
            skill = spec.skills[k]
            parts.append(skill if m == NO_ROUTING else f"{spec.routings[m]}:{skill}")
        return " > ".join(parts)

    @classmethod
    def from_names(cls, spec: Spec, text: str) -> Program:
        """Inverse of :meth:`names`: ``'chain:reverse > restart:sort'`` or ``'reverse'``."""
        steps = []
        for part in text.split(">"):
            part = part.strip()
            if ":" in part:
                rname, sname = (s.strip() for s in part.split(":", 1))
                if rname not in spec.routings:
                    raise ProgramError(
                        f"unknown routing '{rname}' in program '{text}'; the library has {list(spec.routings)}"
                    )
                m = spec.routings.index(rname)
            else:
                sname, m = part, NO_ROUTING
            if sname not in spec.skills:
                raise ProgramError(f"unknown skill '{sname}' in program '{text}'; the library has {list(spec.skills)}")
            steps.append((m, spec.skills.index(sname)))
        return cls(tuple(steps))

    @classmethod
    def from_symbols(cls, spec: Spec, symbols: Sequence[str]) -> Program:
        """Inverse of :meth:`symbols`; raises :class:`ProgramError` on an unknown or misplaced symbol."""
        steps: list[tuple[int, int]] = []
        routing: int | None = None
        for i, sym in enumerate(symbols):
            if sym in spec.routing_symbols:
                if routing is not None:
                    raise ProgramError(f"symbol {i + 1} ('{sym}'): two routing symbols in a row", symbol=i)
                routing = spec.routing_symbols.index(sym)
            elif sym in spec.skill_symbols:
                k = spec.skill_symbols.index(sym)
                if routing is None and (steps or i + 1 < len(symbols)):
                    raise ProgramError(
                        f"symbol {i + 1} ('{sym}'): a skill symbol needs a routing symbol before it "
                        "(only a one-skill atomic program may omit it)",
                        symbol=i,
                    )
                steps.append((NO_ROUTING if routing is None else routing, k))
                routing = None
            else:
                raise ProgramError(
                    f"symbol {i + 1} ('{sym}') is not in the library: skills use "
                    f"{spec.skill_symbols[0]}..{spec.skill_symbols[-1]}, routings "
                    f"{spec.routing_symbols[0]}..{spec.routing_symbols[-1]}",
                    symbol=i,
                )
        if routing is not None:
            raise ProgramError(
                "the program ends with a routing symbol; every routing needs a skill after it", symbol=len(symbols) - 1
            )
        if not steps:
            raise ProgramError("empty program")
        return cls(tuple(steps))


@dataclass(frozen=True)
class ProgramBatch:
    """``N`` programs as arrays: ``routing``, ``skill`` of shape ``(N, L_max)``, ``depth`` ``(N,)``."""

    routing: Tensor
    skill: Tensor
    depth: Tensor

    @classmethod
    def from_programs(cls, programs: Sequence[Program], max_depth: int | None = None) -> ProgramBatch:
        if not programs:
            raise ProgramError("cannot batch an empty list of programs")
        width = max(p.depth for p in programs) if max_depth is None else max_depth
        routing = torch.full((len(programs), width), PAD, dtype=torch.long)
        skill = torch.full((len(programs), width), PAD, dtype=torch.long)
        for i, p in enumerate(programs):
            if p.depth > width:
                raise ProgramError(f"program of depth {p.depth} exceeds max_depth={width}")
            routing[i, : p.depth] = torch.tensor([m for m, _ in p.steps])
            skill[i, : p.depth] = torch.tensor(p.skills)
        depth = torch.tensor([p.depth for p in programs], dtype=torch.long)
        return cls(routing, skill, depth)

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    @property
    def max_depth(self) -> int:
        return int(self.skill.shape[1])

    def index(self, rows: Tensor) -> ProgramBatch:
        return ProgramBatch(self.routing[rows], self.skill[rows], self.depth[rows])

    def programs(self) -> list[Program]:
        out = []
        for r, s, d in zip(self.routing.tolist(), self.skill.tolist(), self.depth.tolist(), strict=True):
            out.append(Program(tuple(zip(r[:d], s[:d], strict=True))))
        return out


def run_step(spec: Spec, history: Tensor, routing: Tensor, skill: Tensor) -> Tensor:
    """One step for a batch: ``x_l = f_{k}(rho_{m}(history))`` row by row.

    Parameters
    ----------
    history : Tensor
        ``(batch, l, n)`` states ``x_0 .. x_{l-1}``.
    routing, skill : Tensor
        ``(batch,)`` indices; ``routing == NO_ROUTING`` feeds ``x_0``; ``skill == PAD`` rows are
        returned unchanged as ``x_{l-1}``.

    Returns
    -------
    Tensor
        ``(batch, n)``; each module runs once, on the rows that select it.
    """
    inputs = history[:, 0].clone()
    for m, rows in _groups(routing):
        inputs[rows] = spec.apply_routing(m, history[rows])
    out = history[:, -1].clone()
    for k, rows in _groups(skill):
        out[rows] = spec.apply_skill(k, inputs[rows])
    return out


def _groups(index: Tensor) -> list[tuple[int, Tensor]]:
    """``(value, rows)`` for each non-negative value of a ``(batch,)`` index, by one sort."""
    order = torch.argsort(index, stable=True)
    values, counts = torch.unique_consecutive(index[order], return_counts=True)
    out = []
    for value, rows in zip(values.tolist(), torch.split(order, counts.tolist()), strict=True):
        if value >= 0:
            out.append((value, rows))
    return out


def execute(spec: Spec, programs: ProgramBatch, x0: Tensor) -> Tensor:
    """Run a batch of programs; returns every state ``(N, L_max + 1, n)``.

    Slots past a program's depth repeat its answer, so ``states[:, -1]`` is always the answer.
    """
    if x0.shape != (len(programs), spec.length):
        raise ProgramError(f"x0 must have shape ({len(programs)}, {spec.length}), got {tuple(x0.shape)}")
    states = x0.new_empty((len(programs), programs.max_depth + 1, spec.length))
    states[:, 0] = x0
    for step in range(programs.max_depth):
        states[:, step + 1] = run_step(spec, states[:, : step + 1], programs.routing[:, step], programs.skill[:, step])
    return states


def answer_codes(spec: Spec, program: Program, inputs: Tensor) -> Tensor:
    """``(B,)`` state codes of ``program``'s noiseless answers on the ``(B, n)`` input states."""
    batch = ProgramBatch.from_programs([program]).index(torch.zeros(inputs.shape[0], dtype=torch.long))
    return spec.encode(execute(spec, batch, inputs)[:, -1])


def execute_one(spec: Spec, program: Program, x0: Sequence[int]) -> list[list[int]]:
    """Plain per-example execution (the reference the batched path is tested against)."""
    states = [list(x0)]
    for m, k in program.steps:
        history = torch.tensor([states], dtype=torch.long)
        u = history[0, 0] if m == NO_ROUTING else spec.apply_routing(m, history)[0]
        states.append(spec.apply_skill(k, u.unsqueeze(0))[0].tolist())
    return states


def all_programs(spec: Spec, depth: int, routings: Sequence[int] | None = None) -> list[Program]:
    """Every compound program of one depth (``(M K)**L`` of them), in lexicographic order."""
    import itertools

    ms = range(spec.num_routings) if routings is None else routings
    step_choices = [(m, k) for m in ms for k in range(spec.num_skills)]
    return [Program(steps) for steps in itertools.product(step_choices, repeat=depth)]

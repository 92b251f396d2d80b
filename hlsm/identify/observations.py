"""What a corpus says about the modules, in the forms the identifiability checker consumes.

* :class:`StepObservations`: every step whose output and whole history are shown, i.e. one
  ``(routing symbol, skill symbol, history, output)`` fact; atomic steps have no routing symbol.
* :class:`Record`: every trace that hides a state, grouped by ``(program, mask)`` — a constraint
  over all the symbols of its program (``theory/identifiability.md``, section 3).
* Extensional equality of library modules (:func:`skill_classes`, :func:`routing_classes`) on the
  states the checker evaluates — all of ``X`` for small instances, else a probe set
  (:func:`probe_states`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.programs import Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

MAX_EXHAUSTIVE_STATES = 4096
"""Largest ``|X|`` evaluated exhaustively; above it, functions are compared on :func:`probe_states`."""


def probe_states(spec: Spec, count: int = 2048, seed: int = 0) -> Tensor:
    """States on which functions are compared: all of ``X`` if ``|X| <= MAX_EXHAUSTIVE_STATES``.

    Otherwise the ``A`` constant strings, the ``A`` ramps ``(c, c+1, ...) mod A`` and ``count``
    uniform draws: agreement on them is taken as equality (exact for tiny instances).
    """
    if spec.num_states <= MAX_EXHAUSTIVE_STATES:
        return spec.all_states()
    gen = torch.Generator().manual_seed(seed)
    a, n = spec.alphabet, spec.length
    constant = torch.arange(a).unsqueeze(1).expand(a, n)
    ramps = (torch.arange(a).unsqueeze(1) + torch.arange(n)) % a
    random = torch.randint(a, (count, n), generator=gen)
    return torch.cat([constant, ramps, random]).unique(dim=0)


MAX_EXHAUSTIVE_HISTORIES = 1_000_000
"""Largest number of histories ``|X|**l`` evaluated exhaustively (routing classes and reads); above
it routings are compared on random histories (:func:`comparisons_exact` is False)."""


def probe_histories(spec: Spec, length: int, count: int = 2048, seed: int = 0, *, limit: int = 20_000) -> Tensor:
    """``(B, length, n)`` histories: all of ``X**length`` if there are at most ``limit``, else ``count`` random ones."""
    total = spec.num_states**length
    if total <= limit:
        codes = torch.cartesian_prod(*[torch.arange(spec.num_states)] * length).reshape(-1, length)
        return spec.decode(codes)
    gen = torch.Generator().manual_seed(seed + length)
    return torch.randint(spec.alphabet, (count, length, spec.length), generator=gen)


def comparisons_exact(spec: Spec, horizon: int) -> bool:
    """Whether modules are compared on all of ``X`` and routings (and what they read) on every history
    up to ``horizon``; otherwise the checker's answers rest on probe states."""
    return spec.num_states <= MAX_EXHAUSTIVE_STATES and spec.num_states**horizon <= MAX_EXHAUSTIVE_HISTORIES


def _classes(outputs: list[Tensor]) -> tuple[int, ...]:
    """Label each function by the first earlier one with identical outputs."""
    labels: list[int] = []
    for i, out in enumerate(outputs):
        labels.append(next((j for j in range(i) if torch.equal(outputs[j], out)), i))
    return tuple(labels)


def skill_classes(spec: Spec, states: Tensor) -> tuple[int, ...]:
    """``labels[k]`` = smallest skill index that computes the same function as skill ``k`` on ``states``."""
    return _classes([spec.apply_skill(k, states) for k in range(spec.num_skills)])


def routing_classes(spec: Spec, horizon: int) -> tuple[int, ...]:
    """Routings equal on every history of lengths ``1..horizon`` share a label (on random histories
    where ``|X|**l`` exceeds :data:`MAX_EXHAUSTIVE_HISTORIES`)."""
    outs: list[list[Tensor]] = [[] for _ in range(spec.num_routings)]
    for length in range(1, horizon + 1):
        histories = probe_histories(spec, length, limit=MAX_EXHAUSTIVE_HISTORIES)
        for m in range(spec.num_routings):
            outs[m].append(spec.apply_routing(m, histories))
    return _classes([torch.cat(o) for o in outs])


@functools.lru_cache(maxsize=4096)
def routing_reads(spec: Spec, m: int, length: int, samples: int = 512, seed: int = 0) -> tuple[bool, ...]:
    """Which of the ``length`` history items routing ``m`` reads.

    Item ``j`` is read iff replacing it changes the output of some history. Exhaustive when
    ``|X|**length <= MAX_EXHAUSTIVE_HISTORIES``: the outputs on every history, laid out as a grid with
    one axis per item, vary along axis ``j`` (exact). Above that, ``samples`` random histories and
    four random replacements per item.
    """
    size = spec.num_states
    if size**length <= MAX_EXHAUSTIVE_HISTORIES:
        histories = probe_histories(spec, length, limit=MAX_EXHAUSTIVE_HISTORIES)  # x_0 most significant
        grid = spec.encode(spec.apply_routing(m, histories)).reshape([size] * length)
        return tuple(bool((grid != grid.narrow(j, 0, 1)).any()) for j in range(length))
    gen = torch.Generator().manual_seed(seed)
    histories = probe_histories(spec, length, samples, seed)
    base = spec.apply_routing(m, histories)
    sampled = []
    for j in range(length):
        changed = False
        for _ in range(4):
            other = histories.clone()
            other[:, j] = torch.randint(spec.alphabet, other[:, j].shape, generator=gen)
            if not torch.equal(spec.apply_routing(m, other), base):
                changed = True
                break
        sampled.append(changed)
    return tuple(sampled)


def live_steps(spec: Spec, program: Program, binding: Mapping[int, int] | None = None) -> tuple[bool, ...]:
    """Which steps' outputs reach the answer through the history items their routings read.

    ``binding`` maps the program's routing symbols to library routings (default: the true ones,
    symbol ``m`` is routing ``m``); an atomic step reads ``x_0`` only. Exact where
    :func:`routing_reads` is.
    """
    live = [False] * (program.depth + 1)  # index j: state x_j
    live[program.depth] = True
    for l in range(program.depth, 0, -1):
        if not live[l]:
            continue
        m = program.steps[l - 1][0]
        reads = (True,) + (False,) * (l - 1) if m < 0 else routing_reads(spec, m if binding is None else binding[m], l)
        for j, read in enumerate(reads):
            live[j] |= read
    return tuple(live[1:])


@dataclass(frozen=True)
class StepObservations:
    """Shown steps with a shown history, pooled by history length ``l`` (dict key).

    For each ``l``: ``history (N_l, l, n)``, ``output (N_l, n)``, ``routing_symbol (N_l,)`` (``-1``
    for an atomic step), ``skill_symbol (N_l,)``.
    """

    history: dict[int, Tensor]
    output: dict[int, Tensor]
    routing_symbol: dict[int, Tensor]
    skill_symbol: dict[int, Tensor]

    def lengths(self) -> list[int]:
        return sorted(self.history)

    def pairs(self) -> set[tuple[int, int]]:
        """Observed ``(routing symbol, skill symbol)`` pairs; routing ``-1`` marks atomic steps."""
        out: set[tuple[int, int]] = set()
        for l in self.lengths():
            stacked = torch.stack([self.routing_symbol[l], self.skill_symbol[l]], dim=1).unique(dim=0)
            out |= {(int(r), int(s)) for r, s in stacked.tolist()}
        return out


@dataclass(frozen=True)
class Record:
    """Traces of one program under one exposure mask, with at least one hidden state.

    ``x0 (B, n)``, ``states (B, L, n)`` (read only where ``mask`` is True).
    """

    program: Program
    mask: tuple[bool, ...]
    x0: Tensor
    states: Tensor

    def symbols(self) -> list[tuple[str, int]]:
        """Distinct symbols of the program as ``("r", index)`` / ``("s", index)``, in first-use order."""
        out: list[tuple[str, int]] = []
        for m, k in self.program.steps:
            for var in ((("r", m),) if m >= 0 else ()) + (("s", k),):
                if var not in out:
                    out.append(var)
        return out


def split_corpus(corpus: Corpus) -> tuple[StepObservations, list[Record]]:
    """Step observations (every shown step with a shown history) and records (traces hiding a state)."""
    hist: dict[int, list[Tensor]] = {}
    outs: dict[int, list[Tensor]] = {}
    rsym: dict[int, list[Tensor]] = {}
    ssym: dict[int, list[Tensor]] = {}
    depth = corpus.programs.depth
    mask = corpus.mask
    max_depth = corpus.programs.max_depth
    for l in range(1, max_depth + 1):
        # rows whose step l exists, is shown, and whose x_1..x_{l-1} are shown
        rows = (depth >= l) & mask[:, l - 1] & mask[:, : l - 1].all(dim=1)
        if not bool(rows.any()):
            continue
        hist.setdefault(l, []).append(corpus.states[rows, :l])
        outs.setdefault(l, []).append(corpus.states[rows, l])
        rsym.setdefault(l, []).append(corpus.programs.routing[rows, l - 1])
        ssym.setdefault(l, []).append(corpus.programs.skill[rows, l - 1])
    steps = StepObservations(
        {l: torch.cat(v) for l, v in hist.items()},
        {l: torch.cat(v) for l, v in outs.items()},
        {l: torch.cat(v) for l, v in rsym.items()},
        {l: torch.cat(v) for l, v in ssym.items()},
    )
    beyond = torch.arange(max_depth).unsqueeze(0) >= depth.unsqueeze(1)
    hidden = ~(mask | beyond).all(dim=1)
    records: list[Record] = []
    if bool(hidden.any()):
        rows = hidden.nonzero(as_tuple=True)[0]
        keys = torch.cat([corpus.programs.routing[rows], corpus.programs.skill[rows], mask[rows].long()], dim=1)
        _, group = torch.unique(keys, dim=0, return_inverse=True)
        for g in range(int(group.max()) + 1):
            idx = rows[group == g]
            program = corpus.program(int(idx[0]))
            m = tuple(mask[idx[0], : program.depth].tolist())
            records.append(Record(program, m, corpus.states[idx, 0], corpus.states[idx, 1 : program.depth + 1]))
    return steps, records

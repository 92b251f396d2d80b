"""Corpus sampling with ground-truth latents, JSONL input and output.

The sampler draws, for each trace: a program from the support's prior (uniform over the listed
programs unless weights are given), ``x_0`` uniform on ``X``, then ``x_l = f_{k_l}(rho_{m_l}(H_l))``
except that with probability ``epsilon`` the step's output is replaced by a uniform draw from
``X`` — the skill table ``T_k = (1 - eps) delta_{f_k} + eps / |X|`` of ``theory/model.md``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hlsm._lazy import callable_module as _callable_module
from hlsm.errors import HLSMError, InputError
from hlsm.io import atomic_write, read_text
from hlsm.limits import check_memory
from hlsm.programs import NO_ROUTING, PAD, Program, ProgramBatch, ProgramError, execute, run_step
from hlsm.runtime import progress_bar
from hlsm.spec import Spec
from hlsm.traces import TraceFormatError, check_exposure, exposure_mask, parse, render


class CorpusError(HLSMError):
    """A corpus file that cannot be read back (malformed JSON, inconsistent record)."""


@dataclass(frozen=True)
class Corpus:
    """``N`` traces with their ground truth.

    Attributes
    ----------
    programs : ProgramBatch
        ``routing``/``skill`` ``(N, L_max)``, ``depth`` ``(N,)``.
    states : Tensor
        ``(N, L_max + 1, n)``: ``x_0 .. x_L`` as generated (slots past the depth repeat the answer).
    mask : Tensor
        ``(N, L_max)`` bool: whether the trace shows ``x_l`` (``l = 1..L``); False past the depth.
    split : tuple of str
        The support split each trace was drawn from.
    """

    spec: Spec
    programs: ProgramBatch
    states: Tensor
    mask: Tensor
    split: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.programs)

    def program(self, i: int) -> Program:
        d = int(self.programs.depth[i])
        return Program(
            tuple(zip(self.programs.routing[i, :d].tolist(), self.programs.skill[i, :d].tolist(), strict=True))
        )

    def text(self, i: int) -> str:
        d = int(self.programs.depth[i])
        states = self.states[i, 1 : d + 1].tolist()
        return render(self.spec, self.program(i), self.states[i, 0].tolist(), states, self.mask[i, :d].tolist())

    def records(self) -> Iterator[dict[str, Any]]:
        """One JSON-ready dict per trace: text plus ground-truth metadata."""
        for i in range(len(self)):
            d = int(self.programs.depth[i])
            program = self.program(i)
            yield {
                "text": self.text(i),
                "split": self.split[i],
                "depth": d,
                "program": program.names(self.spec),
                "routing": [m for m, _ in program.steps],
                "skill": list(program.skills),
                "states": [self.spec.render_state(s) for s in self.states[i, : d + 1].tolist()],
                "mask": self.mask[i, :d].tolist(),
            }


def _draw_programs(
    programs: Sequence[Program], weights: Sequence[float] | None, n: int, gen: torch.Generator
) -> Tensor:
    if not programs:
        raise ProgramError("the support is empty: give at least one program to sample from")
    w = torch.ones(len(programs)) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (len(programs),) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ProgramError("support weights must be non-negative, one per program, and not all zero")
    if n == 0:  # torch.multinomial refuses to draw zero samples
        return torch.zeros(0, dtype=torch.long)
    return torch.multinomial(w.float(), n, replacement=True, generator=gen)


def simulate(
    spec: Spec,
    programs: Sequence[Program],
    n: int,
    seed: int,
    *,
    weights: Sequence[float] | None = None,
    exposure: str = "full",
    epsilon: float = 0.0,
    split: str | Sequence[str] = "sft",
) -> Corpus:
    """Sample ``n`` traces from the support ``programs`` (vectorised).

    Parameters
    ----------
    programs, weights
        The task prior's support and (optional, unnormalised) weights.
    exposure
        Which states each trace shows (see :func:`hlsm.traces.exposure_mask`).
    epsilon
        Corruption rate: each step's output is uniform on ``X`` with this probability.
    split
        Split label of every trace, or one label per program of the support.

    The same arguments give the same corpus.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise CorpusError(f"epsilon must be in [0, 1], got {epsilon}")
    if n < 0:
        raise CorpusError(f"the number of traces must be non-negative, got {n}")
    for p in programs:
        p.check(spec)
    depth = max((p.depth for p in programs), default=1)
    check_exposure(exposure, depth)
    check_memory(f"{n:,} traces", n * (depth + 1) * spec.length * 8 * 2, "simulate fewer traces (n)")
    gen = torch.Generator().manual_seed(seed)
    choice = _draw_programs(programs, weights, n, gen)
    support = ProgramBatch.from_programs(programs)
    batch = support.index(choice)
    x0 = torch.randint(spec.alphabet, (n, spec.length), generator=gen)
    states = x0.new_empty((n, batch.max_depth + 1, spec.length))
    states[:, 0] = x0
    for step in range(batch.max_depth):
        nxt = run_step(spec, states[:, : step + 1], batch.routing[:, step], batch.skill[:, step])
        if epsilon > 0:
            corrupt = (torch.rand(n, generator=gen) < epsilon) & (batch.skill[:, step] != PAD)
            noise = torch.randint(spec.alphabet, (n, spec.length), generator=gen)
            nxt = torch.where(corrupt.unsqueeze(-1), noise, nxt)
        states[:, step + 1] = nxt
    labels = [split] * len(programs) if isinstance(split, str) else list(split)
    if len(labels) != len(programs):
        raise CorpusError("give one split label, or one per program of the support")
    masks = {d: exposure_mask(exposure, d) for d in set(p.depth for p in programs)}
    mask = torch.zeros(n, batch.max_depth, dtype=torch.bool)
    for d, m in masks.items():
        mask[batch.depth == d, :d] = torch.tensor(m)
    return Corpus(spec, batch, states, mask, tuple(labels[i] for i in choice.tolist()))


def simulate_naive(
    spec: Spec,
    programs: Sequence[Program],
    n: int,
    seed: int,
    *,
    weights: Sequence[float] | None = None,
    exposure: str = "full",
    epsilon: float = 0.0,
    progress: bool = False,
) -> list[tuple[Program, list[list[int]], tuple[bool, ...]]]:
    """One trace at a time in plain Python: the oracle the vectorised sampler is tested against.

    Returns ``(program, [x_0, ..., x_L], mask)`` per trace. It draws from the same distribution as
    :func:`simulate` but with Python's ``random`` module, so samples differ trace by trace.
    """
    rng = random.Random(seed)
    w = [1.0] * len(programs) if weights is None else list(weights)
    out = []
    for _ in progress_bar(iterable=range(n), disable=not progress, desc="naive sampler"):
        program = rng.choices(programs, weights=w)[0]
        states = [[rng.randrange(spec.alphabet) for _ in range(spec.length)]]
        for m, k in program.steps:
            history = torch.tensor([states], dtype=torch.long)
            u = history[:, 0] if m == NO_ROUTING else spec.apply_routing(m, history)
            x = spec.apply_skill(k, u)[0].tolist()
            if epsilon > 0 and rng.random() < epsilon:
                x = [rng.randrange(spec.alphabet) for _ in range(spec.length)]
            states.append(x)
        out.append((program, states, exposure_mask(exposure, program.depth)))
    return out


# ---------------------------------------------------------------------------------------------
# JSONL


def write_jsonl(corpus: Corpus, path: str | Path) -> None:
    """Write one JSON object per trace (see :meth:`Corpus.records`), atomically."""

    def write(f: Any) -> None:
        for record in corpus.records():
            f.write(json.dumps(record) + "\n")

    atomic_write(path, write)


_RECORD_KEYS = {"text", "split", "depth", "program", "routing", "skill", "states", "mask"}


def read_jsonl(spec: Spec, path: str | Path) -> Corpus:
    """Read a corpus written by :func:`write_jsonl`, validating every line against ``spec``.

    Raises
    ------
    CorpusError
        Naming the file and line for malformed JSON, missing keys, a trace text that does not
        parse, or metadata that disagrees with the text.
    """
    path = Path(path)
    try:
        lines = read_text(path, "corpus", max_bytes=None).splitlines()
    except InputError as err:
        raise CorpusError(str(err)) from None
    programs, all_states, masks, splits = [], [], [], []
    for lineno, line in enumerate(lines, start=1):
        where = f"{path}, line {lineno}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{where}: not valid JSON ({err.msg}); was the file truncated?") from None
        if not isinstance(record, dict) or not _RECORD_KEYS <= set(record):
            missing = sorted(_RECORD_KEYS - set(record)) if isinstance(record, dict) else sorted(_RECORD_KEYS)
            raise CorpusError(f"{where}: record lacks key(s) {missing}; write corpora with `hlsm simulate`")
        if not isinstance(record["text"], str):
            raise CorpusError(f"{where}: 'text' must be a string, got {type(record['text']).__name__}")
        try:
            trace = parse(spec, record["text"], lineno)
        except TraceFormatError as err:
            raise CorpusError(f"{path}: {err}") from None
        try:
            states = [spec.parse_state(s) for s in record["states"]]
            consistent = (
                record["depth"] == trace.program.depth
                and record["routing"] == [m for m, _ in trace.program.steps]
                and record["skill"] == list(trace.program.skills)
                and len(states) == trace.program.depth + 1
                and tuple(states[0]) == trace.x0
                and list(record["mask"]) == list(trace.mask)
                and all(s is None or tuple(t) == s for s, t in zip(trace.states, states[1:], strict=True))
            )
        except (ValueError, TypeError):
            consistent = False
        if not consistent:
            raise CorpusError(f"{where}: the metadata (depth, program, states, mask) disagrees with the text")
        programs.append(trace.program)
        all_states.append(states)
        masks.append(list(trace.mask))
        splits.append(str(record["split"]))
    if not programs:
        raise CorpusError(f"corpus '{path}' holds no traces")
    batch = ProgramBatch.from_programs(programs)
    width = batch.max_depth
    state_t = torch.zeros(len(programs), width + 1, spec.length, dtype=torch.long)
    mask_t = torch.zeros(len(programs), width, dtype=torch.bool)
    for i, (states, mask) in enumerate(zip(all_states, masks, strict=True)):
        padded = states + [states[-1]] * (width + 1 - len(states))
        state_t[i] = torch.tensor(padded)
        mask_t[i, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
    return Corpus(spec, batch, state_t, mask_t, tuple(splits))


def summarize(corpus: Corpus) -> dict[str, Any]:
    """Counts per module, per depth and per split (plain dict, JSON-ready).

    ``skills`` / ``routings`` count module uses over all steps (atomic steps use no routing);
    ``depth`` and ``split`` count traces; ``exposed_fraction`` is the share of shown states.
    """
    spec = corpus.spec
    active = corpus.programs.skill >= 0
    skill_counts = torch.bincount(corpus.programs.skill[active], minlength=spec.num_skills)
    routed = corpus.programs.routing >= 0
    routing_counts = torch.bincount(corpus.programs.routing[routed], minlength=spec.num_routings)
    depths = torch.bincount(corpus.programs.depth)
    splits: dict[str, int] = {}
    for s in corpus.split:
        splits[s] = splits.get(s, 0) + 1
    return {
        "traces": len(corpus),
        "skills": {name: int(c) for name, c in zip(spec.skills, skill_counts.tolist(), strict=True)},
        "routings": {name: int(c) for name, c in zip(spec.routings, routing_counts.tolist(), strict=True)},
        "depth": {str(d): int(c) for d, c in enumerate(depths.tolist()) if c},
        "split": splits,
        "exposed_fraction": float(corpus.mask.sum()) / max(1, int(active.sum())),
    }


def concat(corpora: Sequence[Corpus]) -> Corpus:
    """Join corpora of one spec (program arrays padded to the largest depth)."""
    if not corpora:
        raise ValueError("nothing to concatenate")
    spec = corpora[0].spec
    width = max(c.programs.max_depth for c in corpora)

    def pad(t: Tensor, value: int | bool, extra: int) -> Tensor:
        return torch.nn.functional.pad(t, (0, extra), value=value) if extra else t

    routing, skill, depth, states, mask, split = [], [], [], [], [], []
    for c in corpora:
        if c.spec != spec:
            raise ValueError("cannot concatenate corpora of different specs")
        extra = width - c.programs.max_depth
        routing.append(pad(c.programs.routing, PAD, extra))
        skill.append(pad(c.programs.skill, PAD, extra))
        depth.append(c.programs.depth)
        last = c.states[:, -1:].expand(-1, extra, -1)
        states.append(torch.cat([c.states, last], dim=1))
        mask.append(pad(c.mask, False, extra))
        split += list(c.split)
    batch = ProgramBatch(torch.cat(routing), torch.cat(skill), torch.cat(depth))
    return Corpus(spec, batch, torch.cat(states), torch.cat(mask), tuple(split))


def population_corpus(
    spec: Spec,
    programs: Sequence[Program],
    exposure: str = "full",
    split: str = "sft",
    inputs: Tensor | None = None,
) -> Corpus:
    """The population limit: every program run noiselessly on every input state.

    Parameters
    ----------
    programs
        The regime's support.
    exposure
        Exposure of every trace (``"full"`` for SFT, ``"answer"`` for RL).
    inputs
        ``(B, n)`` input states; default: all of ``X`` (``A**n`` of them, so tiny instances only).

    Returns
    -------
    Corpus
        ``len(programs) * B`` traces, program-major.
    """
    if not programs:
        raise CorpusError("the regime has no programs: give at least one")
    for p in programs:
        p.check(spec)
    depth = max(p.depth for p in programs)
    check_exposure(exposure, depth)
    b = spec.num_states if inputs is None else int(inputs.shape[0])
    check_memory(
        f"the population-limit corpus ({len(programs):,} programs x {b:,} inputs)",
        len(programs) * b * (depth + 1) * spec.length * 8 * 2,
        "use fewer programs or random inputs ([data] inputs = N)",
    )
    x0 = spec.all_states() if inputs is None else inputs
    b = x0.shape[0]
    support = ProgramBatch.from_programs(programs)
    batch = support.index(torch.arange(len(programs)).repeat_interleave(b))
    starts = x0.repeat(len(programs), 1)
    states = execute(spec, batch, starts)
    mask = torch.zeros(len(batch), batch.max_depth, dtype=torch.bool)
    for i, p in enumerate(programs):
        mask[i * b : (i + 1) * b, : p.depth] = torch.tensor(exposure_mask(exposure, p.depth))
    return Corpus(spec, batch, states, mask, (split,) * len(batch))


_callable_module(__name__)  # hlsm.simulate(...) is simulate(...); the module stays importable as such

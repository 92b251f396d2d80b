"""Data sources and batches of tokenised examples for the transformer.

A *source* is a named set of programs with a weight; a training batch is a weighted mixture of
sources (e.g. the default recipe: atomic / depth-2 / depth-3 / depth-4 programs at
20/30/40/10). :func:`sample_examples` draws, for each example, a source by weight, a program
uniformly from it and ``x_0`` uniformly from ``X``, runs the program (:func:`hlsm.programs.execute`)
and encodes the true execution as a full golden trace (:func:`hlsm.lm.data.encode_example`). That is
the distribution of :func:`hlsm.simulate.simulate` with ``epsilon = 0`` and full exposure; the
support is batched once per source instead of once per call, which keeps a training step's data
cost independent of the support's size (``simulate`` re-batches 20,000 programs in ~0.17 s).

Everything is a function of an integer seed: the training loop derives the seed of step ``t``'s
batch from the run's seed and ``t`` (:func:`derive_seed`), so a resumed run sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from hlsm.design import SPLITS, SupportDesign
from hlsm.errors import HLSMError
from hlsm.lm.data import TaskFormat, encode_example
from hlsm.programs import Program, ProgramBatch, all_programs, execute
from hlsm.spec import Spec
from hlsm.traces import Tokenizer

PROGRAM_SETS = ("split", "atomic", "seen_pairs", "all")
_ENUMERATE_LIMIT = 200_000


class DataError(HLSMError):
    """A data source that cannot be built (unknown split, empty set, impossible limit)."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple of ints and strings (stable across runs and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class SourceConfig:
    """A named set of programs, as written in a config (``[[data]]`` / ``[[eval]]`` tables).

    Parameters
    ----------
    name : str
        Label used in metrics.
    programs : {"split", "atomic", "seen_pairs", "all"}
        ``split``: the design's split ``split`` (filtered by ``depth`` if given; the ``sft`` split
        holds the atomic programs at depth 1); ``atomic``: every atomic program of the spec but
        those of the design's ``held_out_skills``;
        ``seen_pairs``: every depth-``depth`` program whose consecutive skill pairs are all seen in
        SFT (needs ``holdout = "pairs"`` in the design) over the design's routings; ``all``: every
        depth-``depth`` program over the design's routings.
    split : str
        With ``programs = "split"``: one of ``sft, rl, unseen, deeper``.
    depth : int or None
        Keep programs of this depth (required for ``seen_pairs`` and ``all``).
    limit : int or None
        Keep a random subset of this many programs (drawn from the design seed and ``name``).
    weight : float
        Share of the training mixture (unnormalised; ignored for evaluation sets).
    """

    name: str
    programs: str = "split"
    split: str = "sft"
    depth: int | None = None
    limit: int | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise DataError("a data source needs a non-empty name")
        if self.programs not in PROGRAM_SETS:
            raise DataError(
                f"source '{self.name}': programs must be one of {list(PROGRAM_SETS)}, got {self.programs!r}"
            )
        if self.programs == "split" and self.split not in SPLITS:
            raise DataError(f"source '{self.name}': split must be one of {list(SPLITS)}, got {self.split!r}")
        if self.programs in ("seen_pairs", "all") and (self.depth is None or self.depth < 2):
            raise DataError(f"source '{self.name}': programs = '{self.programs}' needs depth >= 2 (use 'atomic' for 1)")
        if self.depth is not None and self.depth < 1:
            raise DataError(f"source '{self.name}': depth must be at least 1, got {self.depth}")
        if self.limit is not None and self.limit < 1:
            raise DataError(f"source '{self.name}': limit must be at least 1, got {self.limit}")
        if not self.weight >= 0:
            raise DataError(f"source '{self.name}': weight must be non-negative, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """A resolved source: its name, programs and mixture weight (``batch``: the programs as arrays)."""

    name: str
    programs: tuple[Program, ...]
    weight: float = 1.0
    batch: ProgramBatch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.programs:
            raise DataError(f"source '{self.name}' has no programs")
        object.__setattr__(self, "programs", tuple(self.programs))
        object.__setattr__(self, "batch", ProgramBatch.from_programs(self.programs))


def design_routings(design: SupportDesign) -> list[int]:
    """Indices of the routings the design's compound programs may use (its config's, else all)."""
    names = design.config.routings if design.config is not None else None
    if names is None:
        return list(range(design.spec.num_routings))
    return [design.spec.routings.index(r) for r in names]


def _seen_pair_programs(design: SupportDesign, depth: int, limit: int | None, gen: torch.Generator) -> list[Program]:
    if design.seen_pairs is None:
        raise DataError("programs = 'seen_pairs' needs a design with holdout = 'pairs'")
    succ: dict[int, list[int]] = {}
    for a, b in sorted(design.seen_pairs):
        succ.setdefault(a, []).append(b)
    chains = [[k] for k in range(design.spec.num_skills)]
    for _ in range(depth - 1):
        chains = [c + [b] for c in chains for b in succ.get(c[-1], [])]
    routings = design_routings(design)
    total = len(chains) * len(routings) ** depth
    if total <= _ENUMERATE_LIMIT:
        return [
            Program(tuple(zip(ms, ks, strict=True)))
            for ks in chains
            for ms in itertools.product(routings, repeat=depth)
        ]
    if limit is None or limit > total // 2:
        raise DataError(f"{total} seen-pair programs of depth {depth}: too many to list; set a smaller limit")
    out: set[Program] = set()
    while len(out) < limit:
        ks = chains[int(torch.randint(len(chains), (1,), generator=gen))]
        ms = [routings[i] for i in torch.randint(len(routings), (depth,), generator=gen).tolist()]
        out.add(Program(tuple(zip(ms, ks, strict=True))))
    return sorted(out)


def resolve_source(design: SupportDesign, config: SourceConfig) -> Source:
    """The programs of one source config under ``design`` (deterministic given the design seed).

    Raises
    ------
    DataError
        For an empty result, a ``limit`` larger than the set, or a missing prerequisite.
    """
    seed = design.config.seed if design.config is not None else 0
    gen = torch.Generator().manual_seed(derive_seed(seed, "source", config.name))
    spec = design.spec
    programs: list[Program]
    if config.programs == "atomic":  # every atom SFT shows: held-out skills' only with held_out_atomic
        cfg = design.config
        held = set(cfg.held_out_skills) if cfg is not None and not cfg.held_out_atomic else set()
        programs = [Program.atomic(k) for k in range(spec.num_skills) if spec.skills[k] not in held]
    elif config.programs == "split":
        programs = list(design.programs(config.split))
    elif config.programs == "seen_pairs":
        assert config.depth is not None
        programs = _seen_pair_programs(design, config.depth, config.limit, gen)
    else:
        assert config.depth is not None
        routings = design_routings(design)
        if (len(routings) * spec.num_skills) ** config.depth > _ENUMERATE_LIMIT:
            raise DataError(f"source '{config.name}': too many depth-{config.depth} programs to list")
        programs = all_programs(spec, config.depth, routings)
    if config.depth is not None:
        programs = [p for p in programs if p.depth == config.depth]
    if not programs:
        raise DataError(f"source '{config.name}' has no programs; check its split and depth")
    if config.limit is not None:
        if config.limit > len(programs):
            raise DataError(f"source '{config.name}': limit {config.limit} exceeds its {len(programs)} programs")
        programs = [programs[i] for i in sorted(torch.randperm(len(programs), generator=gen)[: config.limit].tolist())]
    return Source(config.name, tuple(programs), config.weight)


@dataclass(frozen=True)
class Examples:
    """``N`` tokenised golden traces with their ground truth.

    Attributes
    ----------
    ids : Tensor
        ``(N, T)`` long: ``<bos> prompt trace <eos>``, right-padded with ``tokenizer.pad``.
    loss_mask : Tensor
        ``(N, T)`` bool: True on the trace tokens (EOS included), False on prompt and padding.
    prompt_len, length : Tensor
        ``(N,)`` long: prompt tokens (``<bos>`` included) and total tokens of each example.
    source : Tensor
        ``(N,)`` long: index into ``sources``.
    states : Tensor
        ``(N, L_max + 1, n)``: ``x_0 .. x_L`` of the true execution (past the depth: the answer).
    programs : tuple of Program
    sources : tuple of str
    """

    ids: Tensor
    loss_mask: Tensor
    prompt_len: Tensor
    length: Tensor
    source: Tensor
    states: Tensor
    programs: tuple[Program, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def answers(self) -> Tensor:
        """``(N, n)`` the final answers ``x_L``."""
        return self.states[:, -1]

    def index(self, rows: Sequence[int] | Tensor) -> Examples:
        """The examples at ``rows``, in that order."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return Examples(
            self.ids[idx],
            self.loss_mask[idx],
            self.prompt_len[idx],
            self.length[idx],
            self.source[idx],
            self.states[idx],
            tuple(self.programs[i] for i in idx.tolist()),
            self.sources,
        )


def sample_examples(
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    sources: Sequence[Source],
    n: int,
    seed: int,
    *,
    width: int | None = None,
) -> Examples:
    """Draw ``n`` examples from a weighted mixture of sources (deterministic in ``seed``).

    Parameters
    ----------
    width
        Pad every sequence to this length ``T`` (default: the longest in the draw).
    """
    if not sources:
        raise DataError("give at least one data source")
    if n < 1:
        raise DataError(f"the number of examples must be at least 1, got {n}")
    weights = torch.tensor([s.weight for s in sources], dtype=torch.float64)
    if float(weights.sum()) <= 0:
        raise DataError("the data sources' weights are all zero")
    gen = torch.Generator().manual_seed(seed)
    counts = torch.bincount(torch.multinomial(weights, n, replacement=True, generator=gen), minlength=len(sources))
    rows: list[tuple[list[int], list[bool], int, Program, Tensor]] = []
    for i, (source, count) in enumerate(zip(sources, counts.tolist(), strict=True)):
        if count == 0:
            continue
        gen_i = torch.Generator().manual_seed(derive_seed(seed, i))
        choice = torch.randint(len(source.programs), (count,), generator=gen_i)
        x0 = torch.randint(spec.alphabet, (count, spec.length), generator=gen_i)
        run = execute(spec, source.batch.index(choice), x0)
        for j, c in enumerate(choice.tolist()):
            program = source.programs[c]
            states = run[j, : program.depth + 1]
            ids, mask = encode_example(spec, fmt, tokenizer, program, states[0].tolist(), states[1:].tolist())
            rows.append((ids, mask, i, program, states))
    order = torch.randperm(len(rows), generator=gen).tolist()
    rows = [rows[k] for k in order]
    longest = max(len(r[0]) for r in rows)
    T = longest if width is None else width
    if T < longest:
        raise DataError(f"width {T} is shorter than the longest example ({longest} tokens)")
    L = max(r[3].depth for r in rows)
    # one tensor per field from padded lists (not a row at a time: this runs every training step)
    ids_t = torch.tensor([r[0] + [tokenizer.pad] * (T - len(r[0])) for r in rows], dtype=torch.long)
    mask_t = torch.tensor([r[1] + [False] * (T - len(r[1])) for r in rows], dtype=torch.bool)
    last = [r[4][-1:].expand(L + 1 - len(r[4]), -1) for r in rows]  # an answer repeats past its depth
    states_t = torch.stack([torch.cat([r[4], pad]) for r, pad in zip(rows, last, strict=True)])
    length = torch.tensor([len(r[0]) for r in rows], dtype=torch.long)
    prompt_len = torch.tensor([r[1].index(True) for r in rows], dtype=torch.long)
    which = torch.tensor([r[2] for r in rows], dtype=torch.long)
    programs = tuple(r[3] for r in rows)
    return Examples(ids_t, mask_t, prompt_len, length, which, states_t, programs, tuple(s.name for s in sources))


def max_sequence_length(spec: Spec, fmt: TaskFormat, sources: Sequence[Source]) -> int:
    """The longest ``<bos> ... <eos>`` sequence any program of ``sources`` produces."""
    return max(fmt.prompt_length(spec, p) + fmt.trace_length(spec, p.depth) for s in sources for p in s.programs)

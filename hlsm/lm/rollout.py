"""Rollouts for REINFORCE: prompts from the design, groups of sampled traces, rewards, dynamic sampling.

A *round* draws ``M`` prompts (a program uniformly from the round's sources, ``x_0`` uniformly from
``X``: :func:`hlsm.lm.dataset.sample_examples`), samples ``G`` traces for each at temperature
``tau`` (:func:`hlsm.lm.sampling.generate`) and scores them: reward ``r = 1`` when the generation
parses as a full trace of the prompt's program (:func:`hlsm.lm.data.parse_generation`) and its
final state equals the true answer ``x_L``, else ``0`` (with ``[rl] reward = "letters"``: the
fraction of the answer's letters it gets right); a generation that does not parse is *malformed*
(reward 0, counted). Intermediate states are not rewarded.

*Dynamic sampling*: a group whose ``G`` rewards are all equal has zero
leave-one-out advantage everywhere and carries no gradient; :class:`GroupBuffer` drops such groups
and keeps the *mixed* ones until enough are held for an update.

The RL prompts' programs are the RL split of the arm's design (:func:`rl_sources`, which also
checks that they stay out of the evaluation splits). The optional *compound curriculum*
(:func:`curriculum_programs`, :func:`round_sources`) first draws the depth-2 programs made of the
skill pairs that the RL programs practise, then a mix of those and the RL programs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hlsm.design import SupportDesign, coverage, make_design
from hlsm.errors import HLSMError
from hlsm.lm.data import TaskFormat, parse_generation
from hlsm.lm.dataset import Examples, Source, design_routings
from hlsm.lm.model import GPT
from hlsm.lm.rl_config import Task
from hlsm.lm.sampling import generate_stacked
from hlsm.lm.stacked import StackedGPT, as_stack
from hlsm.programs import Program
from hlsm.spec import Spec
from hlsm.traces import Tokenizer


class RolloutError(HLSMError):
    """RL prompts that cannot be built (no RL programs, a curriculum without compound RL programs)."""


@dataclass(frozen=True)
class Rollout:
    """``G`` sampled traces for each of ``M`` prompts of one prompt length ``P``.

    Attributes
    ----------
    tokens : Tensor
        ``(M * G, P + N)`` long: prompt then generated tokens, group-major (rows ``g*G .. g*G+G-1``
        are prompt ``g``'s group).
    mask : Tensor
        ``(M * G, N)`` bool: generated tokens up to and including EOS.
    rewards : Tensor
        ``(M, G)`` float32 in ``{0, 1}``.
    malformed : Tensor
        ``(M, G)`` bool: the generation did not parse.
    prompt_len : int
        ``P``.
    programs : tuple of Program
        ``(M,)`` the prompts' programs.
    """

    tokens: Tensor
    mask: Tensor
    rewards: Tensor
    malformed: Tensor
    prompt_len: int
    programs: tuple[Program, ...]

    @property
    def group_size(self) -> int:
        return int(self.rewards.shape[1])

    def groups(self, keep: Tensor) -> Rollout:
        """The groups where ``keep`` (``(M,)`` bool) is True."""
        G = self.group_size
        rows = (torch.nonzero(keep.cpu()).squeeze(1)[:, None] * G + torch.arange(G)).reshape(-1)
        rows = rows.to(self.tokens.device)
        programs = tuple(p for p, k in zip(self.programs, keep.tolist(), strict=True) if k)
        return Rollout(
            self.tokens[rows], self.mask[rows], self.rewards[keep], self.malformed[keep], self.prompt_len, programs
        )


def mixed_groups(rewards: Tensor) -> Tensor:
    """``(M, G)`` rewards -> ``(M,)`` bool: True where the group's rewards are not all equal."""
    return rewards.amax(dim=1) != rewards.amin(dim=1)


def score(
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    prompt: Sequence[int],
    generated: Tensor,
    answer: Sequence[int],
    reward: str = "exact",
) -> tuple[Tensor, Tensor]:
    """Rewards and malformed flags of ``(K, N)`` generations of one prompt with true answer ``answer``.

    Returns
    -------
    rewards : Tensor
        ``(K,)`` float32, 0 for a generation that does not parse. ``reward = "exact"``: 1 iff its
        last state is ``answer``; ``"letters"``: the fraction of positions where its last state and
        ``answer`` agree, over the longer of the two.
    malformed : Tensor
        ``(K,)`` bool.
    """
    target = tuple(answer)
    rewards = torch.zeros(generated.shape[0], dtype=torch.float32)
    malformed = torch.zeros(generated.shape[0], dtype=torch.bool)
    for i, row in enumerate(generated.tolist()):
        parsed = parse_generation(spec, fmt, tokenizer, prompt, row)
        if parsed is None:
            malformed[i] = True
        else:
            rewards[i] = float(parsed.answer == target) if reward == "exact" else _letters(parsed.answer, target)
    return rewards, malformed


def _letters(answer: Sequence[int], target: Sequence[int]) -> float:
    """Partial credit: the fraction of positions where ``answer`` and ``target`` agree, over the longer."""
    return sum(a == b for a, b in zip(answer, target, strict=False)) / max(len(answer), len(target), 1)


def sample_groups(
    model: GPT,
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    prompts: Examples,
    group_size: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> list[Rollout]:
    """Sample ``group_size`` traces for every prompt of ``prompts`` and score them.

    Prompts are grouped by length (one generation call each, in order of length); each call
    generates as many tokens as the longest golden trace of its programs. Returns one
    :class:`Rollout` per prompt length. A model alone is a stack of one (:func:`sample_groups_stacked`).
    """
    return sample_groups_stacked(
        model, [(spec, fmt, tokenizer, prompts)], group_size, temperature=temperature, generators=[generator],
        autocast=autocast,
    )[0]  # fmt: skip


def sample_groups_stacked(
    model: StackedGPT | GPT,
    tasks: Sequence[tuple[Spec, TaskFormat, Tokenizer, Examples]],
    group_size: int,
    *,
    temperature: float = 1.0,
    generators: Sequence[torch.Generator | None] | None = None,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
    rewards: Sequence[str] | None = None,
) -> list[list[Rollout]]:
    """:func:`sample_groups` for every member of a stack: member ``k`` samples ``tasks[k]``'s prompts
    and scores them with reward ``rewards[k]`` (:func:`score`; default ``"exact"``).

    One decode loop per prompt length for all members (:func:`hlsm.lm.sampling.generate_stacked`):
    members with fewer prompts of a length are padded to the stack's shape with copies of a prompt
    (continued greedily, discarded), each member generates its own budget and draws from its own
    generator, so that its rollouts are those of :func:`sample_groups` alone.
    """
    stack = as_stack(model)
    K = len(tasks)
    gens = [None] * K if generators is None else list(generators)
    kinds = ["exact"] * K if rewards is None else list(rewards)
    device = next(stack.parameters()).device
    out: list[list[Rollout]] = [[] for _ in range(K)]
    lengths = sorted({P for _, _, _, prompts in tasks for P in prompts.prompt_len.tolist()})
    for P in lengths:
        rows = [torch.nonzero(t[3].prompt_len == P).squeeze(1) for t in tasks]
        budgets = [
            max((fmt.trace_length(spec, prompts.programs[i].depth) for i in r.tolist()), default=1)
            for (spec, fmt, _, prompts), r in zip(tasks, rows, strict=True)
        ]
        width = max(len(r) for r in rows)
        filler = next(t[3].ids[r[0], :P] for t, r in zip(tasks, rows, strict=True) if len(r))
        ids = torch.stack(
            [
                torch.cat([t[3].ids[r, :P], filler.expand(width - len(r), P)]) if len(r) < width else t[3].ids[r, :P]
                for t, r in zip(tasks, rows, strict=True)
            ]
        ).to(device)  # each prompt runs once; its group shares the cache
        eos = {t[2].eos for t in tasks}
        pads = {t[2].pad for t in tasks}
        if len(eos) != 1 or len(pads) != 1:
            raise RolloutError("the members of a stack must share one tokenizer (eos and pad tokens)")
        with autocast if autocast is not None else contextlib.nullcontext():
            gens_out = generate_stacked(
                stack, ids, max(budgets), eos_id=eos.pop(), temperature=temperature, generators=gens,
                pad_id=pads.pop(), repeats=group_size, rows=[len(r) for r in rows], budgets=budgets,
            )  # fmt: skip
        for k, ((spec, fmt, tokenizer, prompts), r, gen) in enumerate(zip(tasks, rows, gens_out, strict=True)):
            if not len(r):
                continue
            new = gen.new_tokens.cpu()
            scores = torch.zeros(len(r), group_size)
            malformed = torch.zeros(len(r), group_size, dtype=torch.bool)
            for g, row in enumerate(r.tolist()):
                block = slice(g * group_size, (g + 1) * group_size)
                prompt, answer = prompts.ids[row, :P].tolist(), prompts.answers[row].tolist()
                scores[g], malformed[g] = score(spec, fmt, tokenizer, prompt, new[block], answer, kinds[k])
            programs = tuple(prompts.programs[i] for i in r.tolist())
            out[k].append(Rollout(gen.tokens, gen.mask, scores.to(device), malformed.to(device), P, programs))
    return out


@dataclass
class GroupBuffer:
    """Mixed groups accumulated over sampling rounds until an update (dynamic sampling).

    :meth:`add` counts every sampled group and trace (for the budget and the logs) and keeps only
    the groups whose rewards are not all equal. ``reward_sum`` and ``malformed_sum`` are sums over
    everything sampled; ``pad_id`` fills generations when groups of different lengths are joined.
    """

    group_size: int
    pad_id: int
    kept: list[Rollout] = field(default_factory=list)
    sampled_groups: int = 0
    mixed: int = 0
    reward_sum: float = 0.0
    malformed_sum: int = 0

    def add(self, rollout: Rollout) -> tuple[int, int]:
        """Keep ``rollout``'s mixed groups; return ``(kept, dropped)`` group counts."""
        if rollout.group_size != self.group_size:
            raise ValueError(f"rollout has groups of {rollout.group_size}, the buffer {self.group_size}")
        keep = mixed_groups(rollout.rewards)
        n_keep = int(keep.sum())
        self.sampled_groups += int(keep.numel())
        self.mixed += n_keep
        self.reward_sum += float(rollout.rewards.sum())
        self.malformed_sum += int(rollout.malformed.sum())
        if n_keep:
            self.kept.append(rollout.groups(keep))
        return n_keep, int(keep.numel()) - n_keep

    @property
    def sampled_traces(self) -> int:
        return self.sampled_groups * self.group_size

    def batches(self) -> Iterator[Rollout]:
        """The kept groups, concatenated per prompt length (generations padded to a common length)."""
        by_length: dict[int, list[Rollout]] = {}
        for r in self.kept:
            by_length.setdefault(r.prompt_len, []).append(r)
        for P, parts in sorted(by_length.items()):
            N = max(r.mask.shape[1] for r in parts)
            tokens = torch.cat([_pad_right(r.tokens, P + N, self.pad_id) for r in parts])
            mask = torch.cat([_pad_right(r.mask, N, False) for r in parts])
            programs = tuple(itertools.chain.from_iterable(r.programs for r in parts))
            rewards = torch.cat([r.rewards for r in parts])
            malformed = torch.cat([r.malformed for r in parts])
            yield Rollout(tokens, mask, rewards, malformed, P, programs)


def _pad_right(x: Tensor, width: int, value: Any) -> Tensor:
    if x.shape[1] >= width:
        return x
    pad = torch.full((x.shape[0], width - x.shape[1]), value, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)


def curriculum_programs(design: SupportDesign, rl_programs: Sequence[Program]) -> list[Program]:
    """Depth-2 programs made of the skill pairs the RL programs practise outside the SFT support.

    The pairs are those of ``rl_programs`` that no SFT program exercises (``design.seen_pairs``
    with ``holdout = "pairs"``, else the pairs of the ``sft`` split); every routing of the design is
    used at both steps.

    Raises
    ------
    RolloutError
        When the RL programs practise no such pair (atomic RL, or RL inside the SFT support).
    """
    seen = design.seen_pairs
    if seen is None:
        seen = frozenset(coverage(design.spec, design.programs("sft")).pairs)
    pairs = sorted({q for p in rl_programs for q in p.pairs()} - seen)
    if not pairs:
        raise RolloutError(
            "the compound curriculum needs RL programs that practise skill pairs outside the SFT support; "
            "these RL programs practise none (atomic RL or RL inside SFT): set curriculum_fraction = 0"
        )
    routings = design_routings(design)
    return [Program(((m1, a), (m2, b))) for a, b in pairs for m1 in routings for m2 in routings]


def round_sources(
    rl: Source, curriculum: Source | None, traces_used: int, budget: int, fraction: float, mix: Sequence[float]
) -> list[Source]:
    """The sources of the next round: the curriculum alone, then the mix, or the RL programs alone.

    With a ``curriculum`` source and ``traces_used < fraction * budget``: ``[curriculum]``; after
    it, both sources weighted by ``mix``; without a curriculum: ``[rl]``.
    """
    if curriculum is None:
        return [rl]
    if traces_used < fraction * budget:
        return [curriculum]
    return [
        Source(curriculum.name, curriculum.programs, float(mix[0])),
        Source(rl.name, rl.programs, float(mix[1])),
    ]


def rl_sources(
    task: Task, split: str = "rl", curriculum: bool = False, late_excluded: Sequence[str] = ()
) -> tuple[SupportDesign, SupportDesign, Source, Source | None]:
    """The evaluation design, the RL arm's design, the RL prompts' source and the curriculum's (or None).

    The RL programs are the ``split`` of the arm's design (:attr:`Task.rl_design`), less those that
    use a skill of ``late_excluded`` after step 1; the curriculum's are :func:`curriculum_programs`
    of them.

    Raises
    ------
    RolloutError
        When the arm changes the SFT split, its RL split is empty, an RL program is in the SFT
        design's unseen or deeper split (evaluation programs must stay unseen), or a program does
        not fit the format.
    """
    design, rl_design = make_design(task.spec, task.design), make_design(task.spec, task.rl_design)
    if rl_design.programs("sft") != design.programs("sft"):
        raise RolloutError("the RL arm's design changes the SFT split; only rl_kind / rl_inside may differ")
    programs = rl_design.programs(split)
    if late_excluded:
        unknown = sorted(set(late_excluded) - set(task.spec.skills))
        if unknown:
            raise RolloutError(f"[rl] late_excluded names skills {unknown} that are not in the library")
        late = {task.spec.skills.index(name) for name in late_excluded}
        programs = tuple(p for p in programs if not late & set(p.skills[1:]))
    if not programs:
        raise RolloutError(f"the design's '{split}' split is empty; raise n_rl or choose other programs")
    held_out = set(design.programs("unseen")) | set(design.programs("deeper"))
    leak = [p.names(task.spec) for p in programs if p in held_out]
    if leak:
        raise RolloutError(f"RL programs {leak[:3]} are in the evaluation splits of the SFT design; change the arm")
    rl = Source("rl", programs)
    extra = Source("curriculum", tuple(curriculum_programs(design, programs))) if curriculum else None
    for p in [*rl.programs, *(extra.programs if extra else ())]:
        task.format.check(p)
    return design, rl_design, rl, extra

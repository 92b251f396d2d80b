"""A checkpoint's own traces for the probe: every state it writes, on seen, unseen and deeper programs.

The transformer writes each intermediate state (golden format), so a generation read step by step
(:func:`hlsm.lm.attribution.read_steps`) is a trace of the model's own states: step ``l`` reads the
model's ``x_{l-1}``, not the truth's. A trace stops at its first unreadable state (it cannot be
read further). :func:`sample_traces` draws them greedily and at temperature 1 from the design's
splits; :mod:`hlsm.infer.context` fits the bindings they reveal (``hlsm probe``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hlsm.design import SupportDesign, coverage, make_design
from hlsm.lm.attribution import read_steps
from hlsm.lm.dataset import Source, derive_seed, sample_examples
from hlsm.lm.evaluate import design_splits
from hlsm.lm.policy import Policy, widen_policy
from hlsm.lm.sampling import generate
from hlsm.programs import Program

MODES = ("greedy", "sample")
"""How traces are drawn: the argmax at every token, or samples at temperature 1."""


@dataclass(frozen=True)
class ProbeTraces:
    """The traces a checkpoint wrote: one row per generation.

    ``states[i]`` are ``x_0`` and the readable states the model wrote (as many as it wrote before
    the first unreadable one, at most the program's depth); ``complete[i]`` says whether every step
    was readable; ``split`` and ``mode`` say where each came from; ``seen_pairs`` are the
    (predecessor, skill) pairs of the checkpoint's SFT programs.
    """

    programs: tuple[Program, ...]
    states: tuple[tuple[tuple[int, ...], ...], ...]
    complete: tuple[bool, ...]
    split: tuple[str, ...]
    mode: tuple[str, ...]
    seen_pairs: frozenset[tuple[int, int]]
    rl_pairs: frozenset[tuple[int, int]] = frozenset()

    def __len__(self) -> int:
        return len(self.programs)

    def pair_group(self, program: Program, step: int) -> str:
        """``first`` (step 1), ``seen`` (an SFT pair), ``rl`` (an RL pair only) or ``never``."""
        if step == 1:
            return "first"
        pair = (program.skills[step - 2], program.skills[step - 1])
        return "seen" if pair in self.seen_pairs else "rl" if pair in self.rl_pairs else "never"


def sample_traces(
    policy: Policy,
    design: SupportDesign | None = None,
    *,
    splits: Sequence[str] | None = None,
    examples: int = 256,
    seed: int = 0,
    modes: Sequence[str] = MODES,
    batch_size: int = 256,
) -> ProbeTraces:
    """Draw ``examples`` traces per split and mode from ``design`` (default: the checkpoint's own).

    ``splits`` default: every split of :func:`hlsm.lm.evaluate.design_splits` but ``rl`` (seen,
    unseen, deeper_*, atomic). Examples are drawn from ``(seed, split)`` as in evaluation, so two
    checkpoints of one task see the same prompts. ``rl_pairs`` of the result are the pairs of the
    design's RL programs that are not SFT pairs (what compound RL practised).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {MODES}")
    design = make_design(policy.spec, policy.design) if design is None else design
    every = design_splits(design)
    available = {k: v for k, v in every.items() if k != "rl"}
    names = list(available) if splits is None else list(splits)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"the checkpoint's design has no split(s) {missing}; it has {sorted(available)}")
    sources = [Source(n, available[n]) for n in names]
    policy = widen_policy(policy, sources)
    spec, fmt, tok = policy.spec, policy.format, policy.tokenizer
    device = next(policy.model.parameters()).device
    rows: list[tuple[Program, tuple[tuple[int, ...], ...], bool, str, str]] = []
    for name in names:
        source = [Source(name, available[name])]
        ex = sample_examples(spec, fmt, tok, source, examples, derive_seed(seed, "probe", name))
        for mode in modes:
            gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "probe", name, mode))
            for p in sorted(set(ex.prompt_len.tolist())):
                idx = torch.nonzero(ex.prompt_len == p).squeeze(1)
                for chunk in idx.split(batch_size):
                    budget = int((ex.length[chunk] - p).max())
                    out = generate(
                        policy.model,
                        ex.ids[chunk, :p].to(device),
                        budget,
                        eos_id=tok.eos,
                        greedy=mode == "greedy",
                        temperature=1.0,
                        generator=gen,
                        pad_id=tok.pad,
                    )
                    for i, row in enumerate(chunk.tolist()):
                        program = ex.programs[row]
                        read = read_steps(spec, fmt, tok, out.new_tokens[i].cpu().tolist())[: program.depth]
                        written: list[tuple[int, ...]] = [tuple(ex.states[row, 0].tolist())]
                        for state in read:
                            if state is None:
                                break
                            written.append(tuple(state))
                        rows.append((program, tuple(written), len(written) == program.depth + 1, name, mode))
    seen = frozenset(coverage(spec, policy.sft_programs()).pairs)
    return ProbeTraces(
        tuple(r[0] for r in rows),
        tuple(r[1] for r in rows),
        tuple(r[2] for r in rows),
        tuple(r[3] for r in rows),
        tuple(r[4] for r in rows),
        seen,
        frozenset(coverage(spec, every.get("rl", ())).pairs) - seen,
    )

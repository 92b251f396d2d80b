"""Greedy exact-match accuracy of the final answer on a set of held-out examples.

For each example the model greedily continues the prompt ``<bos> x_0 | program`` for as many tokens
as the golden trace has; the generation is parsed strictly (:func:`hlsm.lm.data.parse_generation`)
and counts as correct iff it parses and its last state equals the true answer ``x_L``. A
malformed generation is wrong. The standard error is the binomial ``sqrt(p (1 - p) / N)``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hlsm.lm.data import TaskFormat, parse_generation
from hlsm.lm.dataset import Examples
from hlsm.lm.model import GPT
from hlsm.lm.sampling import generate
from hlsm.spec import Spec
from hlsm.traces import Tokenizer


@dataclass(frozen=True)
class SplitAccuracy:
    """Per-example outcomes on one evaluation set.

    Attributes
    ----------
    correct, malformed : Tensor
        ``(N,)`` bool: the final answer is right; the generation did not parse.
    predicted : tuple
        The parsed states ``x_1 .. x_L`` per example (None where malformed).
    """

    name: str
    correct: Tensor
    malformed: Tensor
    predicted: tuple[tuple[tuple[int, ...], ...] | None, ...]

    @property
    def n(self) -> int:
        return int(self.correct.numel())

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if self.n else float("nan")

    @property
    def se(self) -> float:
        """Binomial standard error of :attr:`accuracy`."""
        p = self.accuracy
        return math.sqrt(p * (1 - p) / self.n) if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 6),
            "se": round(self.se, 6),
            "malformed": round(float(self.malformed.float().mean()), 6),
        }


def greedy_exact_match(
    model: GPT,
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    examples: Examples,
    *,
    name: str = "eval",
    batch_size: int = 512,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> SplitAccuracy:
    """Greedy decoding on every example; see the module docstring.

    Parameters
    ----------
    examples
        Encoded golden traces; prompts of different lengths (plain format) are decoded in groups.
    batch_size
        Prompts per :func:`hlsm.lm.sampling.generate` call.
    autocast
        Context manager to decode under (e.g. bf16 autocast on CUDA); default none.
    """
    device = next(model.parameters()).device
    N = len(examples)
    correct = torch.zeros(N, dtype=torch.bool)
    malformed = torch.zeros(N, dtype=torch.bool)
    predicted: list[tuple[tuple[int, ...], ...] | None] = [None] * N
    answers = [tuple(a) for a in examples.answers.tolist()]
    for P in sorted(set(examples.prompt_len.tolist())):
        rows = torch.nonzero(examples.prompt_len == P).squeeze(1)
        for chunk in rows.split(batch_size):
            prompts = examples.ids[chunk, :P].to(device)
            budget = int((examples.length[chunk] - P).max())
            with autocast if autocast is not None else contextlib.nullcontext():
                out = generate(model, prompts, budget, eos_id=tokenizer.eos, greedy=True, pad_id=tokenizer.pad)
            new = out.new_tokens.cpu().tolist()
            for i, row in enumerate(chunk.tolist()):
                parsed = parse_generation(spec, fmt, tokenizer, examples.ids[row, :P].tolist(), new[i])
                if parsed is None:
                    malformed[row] = True
                    continue
                predicted[row] = parsed.states
                correct[row] = parsed.answer == answers[row]
    return SplitAccuracy(name, correct, malformed, tuple(predicted))

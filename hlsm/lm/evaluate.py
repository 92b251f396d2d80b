"""Greedy exact-match accuracy of the final answer, on a set of examples or on a whole design.

For each example the model greedily continues the prompt ``<bos> x_0 | program`` for as many tokens
as the golden trace has; the generation is parsed strictly (:func:`hlsm.lm.data.parse_generation`)
and counts as correct iff it parses and its last state equals the true answer ``x_L``. A
malformed generation is wrong. The standard error is the binomial ``sqrt(p (1 - p) / N)``
(:func:`hlsm.stats.binomial_se`). Each example also records its first departure from the true
execution (:mod:`hlsm.lm.attribution`).

:func:`evaluate_design` scores every split of a support design (seen compositions, unseen ones,
each deeper depth, atomic programs, the RL programs) with strata: the unseen and deeper programs
that the identifiability checker (H-lib, under the SFT regime) identifies or not, and the programs
without low-entropy skills; plus per-step error attribution and conditional accuracy. Its results
are saved as JSON (:class:`hlsm.lm.records.EvaluationRecord`) with per-example correctness
(:func:`hlsm.lm.records.compare_evaluations` compares two models on the same examples) and printed
by :func:`hlsm.lm.records.format_evaluation`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hlsm.design import SupportDesign, coverage
from hlsm.identify.checker import identify
from hlsm.io import write_json
from hlsm.lm.attribution import StepReport, first_departure, read_steps
from hlsm.lm.data import TaskFormat, parse_generation
from hlsm.lm.dataset import Examples, Source, derive_seed, sample_examples
from hlsm.lm.model import GPT
from hlsm.lm.records import EvaluationRecord, ExampleRecord, SplitRecord
from hlsm.lm.sampling import generate
from hlsm.programs import Program
from hlsm.simulate import population_corpus
from hlsm.spec import LETTERS, Spec
from hlsm.stats import Accuracy, binomial_se, rounded
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
    departure : Tensor
        ``(N,)`` long: the first step whose generated state departs from the true execution
        (:func:`hlsm.lm.attribution.first_departure`; 0: none).
    """

    name: str
    correct: Tensor
    malformed: Tensor
    predicted: tuple[tuple[tuple[int, ...], ...] | None, ...]
    departure: Tensor

    @property
    def n(self) -> int:
        return int(self.correct.numel())

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if self.n else float("nan")

    @property
    def se(self) -> float:
        """Binomial standard error of :attr:`accuracy` (:func:`hlsm.stats.binomial_se`)."""
        return binomial_se(self.accuracy, self.n)

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
    departure = torch.zeros(N, dtype=torch.long)
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
                truth = examples.states[row, 1 : examples.programs[row].depth + 1].tolist()
                departure[row] = first_departure(truth, read_steps(spec, fmt, tokenizer, new[i]), parsed is not None)
                if parsed is None:
                    malformed[row] = True
                    continue
                predicted[row] = parsed.states
                correct[row] = parsed.answer == answers[row]
    return SplitAccuracy(name, correct, malformed, tuple(predicted), departure)


# ---------------------------------------------------------------------------------------------
# a whole design: splits, identified / not identified, strata, per-step attribution

LOW_ENTROPY_SKILLS = ("sort", "sort_desc", "running_max", "running_min", "fill_first", "fill_last")
"""Skills whose outputs are few and skewed, so that an answer can be guessed (the default transformer task:
sort, running max, fill-first; with their mirror images). Skills missing from the spec are ignored."""


def design_splits(design: SupportDesign) -> dict[str, tuple[Program, ...]]:
    """The evaluation splits of a design, in report order.

    ``seen``: the SFT programs at the training depth ``L`` (the config's, else the depth of the
    unseen programs); ``unseen``: held-out compositions at that depth; ``deeper_<d>``: the deeper
    programs of each depth ``d``; ``atomic``: every atomic program; ``rl``: the design's RL
    programs. Empty splits are left out.
    """
    unseen, deeper = design.splits.get("unseen", ()), design.splits.get("deeper", ())
    if design.config is not None:
        L = design.config.train_depth
    else:
        L = max([p.depth for p in unseen] or [p.depth for p in design.splits.get("sft", ())] or [1])
    splits = {
        "seen": tuple(p for p in design.splits.get("sft", ()) if p.depth == L and not p.is_atomic),
        "unseen": unseen,
        **{f"deeper_{d}": tuple(p for p in deeper if p.depth == d) for d in sorted({p.depth for p in deeper})},
        "atomic": tuple(Program.atomic(k) for k in range(design.spec.num_skills)),
        "rl": design.splits.get("rl", ()),
    }
    return {k: v for k, v in splits.items() if v}


def checker_verdicts(
    spec: Spec, sft_programs: Sequence[Program], candidates: Sequence[Program], *, inputs: int, seed: int
) -> dict[Program, bool]:
    """H-lib verdict of each candidate under the SFT regime's golden traces on ``inputs`` random ``x_0``.

    The regime: every program of ``sft_programs`` run on the same ``inputs`` random input states
    (:func:`hlsm.simulate.population_corpus` with full exposure), checked by
    :func:`hlsm.identify.checker.identify` in the library hypothesis class.
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, "checker"))
    x0 = torch.randint(spec.alphabet, (inputs, spec.length), generator=gen)
    corpus = population_corpus(spec, list(sft_programs), "full", inputs=x0)
    result = identify(spec, corpus, list(candidates), "lib")
    return {v.program: v.identified for v in result.verdicts}


@dataclass(frozen=True)
class SplitResult:
    """One split's outcomes: per-example accuracy, strata (``(N,)`` bool masks), step report."""

    accuracy: SplitAccuracy
    programs: tuple[Program, ...]
    x0: Tensor
    strata: dict[str, Tensor]
    steps: StepReport

    def stratum(self, mask: Tensor | None = None) -> Accuracy:
        """Accuracy and binomial SE over the examples in ``mask`` (default: all), :func:`rounded` as saved."""
        c = self.accuracy.correct if mask is None else self.accuracy.correct[mask]
        n = int(c.numel())
        p = float(c.float().mean()) if n else math.nan
        return Accuracy(n, rounded(p), rounded(binomial_se(p, n)))


@dataclass
class DesignEvaluation:
    """What :func:`evaluate_design` returns; :meth:`record` (as :meth:`to_dict`) is what is saved."""

    spec: Spec
    splits: dict[str, SplitResult]
    settings: dict[str, Any]
    checker: dict[str, Any] | None = None

    def held_out_steps(self) -> StepReport:
        """The step report pooled over the unseen and deeper splits."""
        out = StepReport()
        for name, split in self.splits.items():
            if name == "unseen" or name.startswith("deeper_"):
                out = out.merge(split.steps)
        return out

    def record(self) -> EvaluationRecord:
        """The saved form: accuracies rounded to 6 digits, programs as names, states as letters."""
        splits = {}
        for name, s in self.splits.items():
            acc = s.accuracy
            examples = zip(
                s.programs,
                s.x0.tolist(),
                acc.correct.tolist(),
                acc.malformed.tolist(),
                acc.departure.tolist(),
                strict=True,
            )
            splits[name] = SplitRecord(
                s.stratum(),
                round(float(acc.malformed.float().mean()), 6),
                {k: s.stratum(m) for k, m in s.strata.items()},
                s.steps.to_dict(),
                tuple(ExampleRecord(p.names(self.spec), letters_of(x), c, m, d) for p, x, c, m, d in examples),
            )
        return EvaluationRecord(self.settings, self.checker, splits, self.held_out_steps().to_dict())

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (atomically)."""
        write_json(path, self.to_dict(), indent=1)


def letters_of(state: Sequence[int]) -> str:
    return "".join(LETTERS[v] for v in state)


def evaluate_design(
    model: GPT,
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    design: SupportDesign,
    *,
    examples_per_split: int = 512,
    seed: int = 0,
    checker: bool = True,
    sft_programs: Sequence[Program] | None = None,
    checker_inputs: int = 256,
    low_entropy: Sequence[str] = LOW_ENTROPY_SKILLS,
    batch_size: int = 512,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> DesignEvaluation:
    """Greedy exact match on every split of ``design`` (:func:`design_splits`), with strata and step reports.

    Examples are drawn per split from ``(seed, split name)`` alone (program uniform over the split,
    ``x_0`` uniform), so two models evaluated with the same seed see the same examples: the saved
    per-example correctness supports paired comparisons (:func:`hlsm.lm.records.compare_evaluations`).

    Parameters
    ----------
    sft_programs
        The SFT regime (default: the design's ``sft`` split): the checker's data and the pairs
        counted as *seen* in the step report.
    checker
        Split the unseen and deeper programs by their H-lib verdict (:func:`checker_verdicts` on
        ``checker_inputs`` random inputs): strata ``identified`` / ``not_identified``.
    low_entropy
        Skill names; stratum ``without_low_entropy`` keeps the programs using none of them.

    Returns
    -------
    DesignEvaluation
    """
    sft = list(design.programs("sft") if sft_programs is None else sft_programs)
    seen_pairs = set(coverage(spec, sft).pairs)
    splits = design_splits(design)
    low = {spec.skills.index(s) for s in low_entropy if s in spec.skills}
    verdicts: dict[Program, bool] = {}
    checker_info = None
    if checker:
        candidates = [p for k, ps in splits.items() if k == "unseen" or k.startswith("deeper_") for p in ps]
        verdicts = checker_verdicts(spec, sft, candidates, inputs=checker_inputs, seed=seed)
        n_id = sum(verdicts.values())
        checker_info = {
            "class": "lib",
            "inputs": checker_inputs,
            "identified": n_id,
            "not_identified": len(verdicts) - n_id,
        }
    results = {}
    for name, programs in splits.items():
        for p in programs:
            fmt.check(p)
        examples = sample_examples(
            spec, fmt, tokenizer, [Source(name, programs)], examples_per_split, derive_seed(seed, "evaluate", name)
        )
        acc = greedy_exact_match(
            model, spec, fmt, tokenizer, examples, name=name, batch_size=batch_size, autocast=autocast
        )
        strata = {"without_low_entropy": torch.tensor([not (set(p.skills) & low) for p in examples.programs])}
        if verdicts and (name == "unseen" or name.startswith("deeper_")):
            ident = torch.tensor([verdicts[p] for p in examples.programs])
            strata |= {"identified": ident, "not_identified": ~ident}
        steps = StepReport()
        for p, d in zip(examples.programs, acc.departure.tolist(), strict=True):
            steps.add(spec, p, d, seen_pairs)
        results[name] = SplitResult(acc, examples.programs, examples.states[:, 0], strata, steps)
    settings = {
        "examples_per_split": examples_per_split,
        "seed": seed,
        "low_entropy": [s for s in low_entropy if s in spec.skills],
        "format": fmt.to_dict(),
        "design": None if design.config is None else design.config.to_dict(),
        "sft_programs": len(sft),
    }
    return DesignEvaluation(spec, results, settings, checker_info)

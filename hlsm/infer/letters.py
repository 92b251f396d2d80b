"""One level down: which input letter, through which letter map, does each output letter come from?

Most library skills are position permutations (``reverse``, ``rotate_left``, ``swap_pairs``, ...)
or letter maps (``shift_up``, ``complement``, ...), so an output that no whole module explains is
often a module with one letter read from the wrong place. The same cascaded-selection idea as the
HLSM, one level down: output letter ``i`` of a step selects a *source position* ``j`` of the
step's input ``u`` and a *letter map* ``g`` (:data:`LETTER_MAPS`), or is a uniform letter::

    p(y_i | u) = (1 - eta[s, c]) sum_{j, g} pi[s, c, i, j, g] [y_i == g(u_j)] + eta[s, c] / A.

``pi[s, c, i]`` is the per-letter selection of symbol ``s`` in context ``c`` at output position
``i``; ``eta`` the share of letters none of these explains (a skill that is neither, such as
``sort`` or ``prefix_sum``, or noise). Every letter is observed, so EM gives the MAP exactly
(:func:`fit_letters`). :func:`letter_structure` fits the same model to a library skill's own outputs
on random inputs: a position-structured skill has one selection per output letter with probability
1 (its *letter structure*); :func:`near_misses` names the output positions where a fitted symbol
reads another source or map than its skill's structure ("position 3 is read from position 1").

As at the module level, two selections that agree on a record's letters cannot be told apart by
it (an input with repeated letters, or a map that fixes a letter); EM splits their mass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.programs import NO_ROUTING, Program
from hlsm.spec import Spec

LETTER_MAPS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "copy": lambda v, a: v,
    "up": lambda v, a: (v + 1) % a,
    "down": lambda v, a: (v - 1) % a,
    "complement": lambda v, a: a - 1 - v,
}
"""The letter maps an output letter may apply to its source letter (alphabet size ``a``)."""


class LetterError(HLSMError):
    """Records or settings the letter model cannot use; the message names the fix."""


@dataclass(frozen=True)
class LetterRecords:
    """Steps seen letter by letter: ``hits[r, i, j, g]`` iff output letter ``i`` equals map ``g`` of input letter ``j``.

    ``symbol``, ``context`` (``K_sym`` for step 1) and ``trace`` as in
    :class:`hlsm.infer.context.StepRecords`; ``inputs`` ``(R, n)`` the step's input (its routing's view
    of the writer's own history, ``x_0`` for an atomic step) and ``outputs`` ``(R, n)`` what was written.
    """

    symbol: Tensor
    context: Tensor
    trace: Tensor
    inputs: Tensor
    outputs: Tensor
    hits: Tensor

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    def index(self, rows: Tensor) -> LetterRecords:
        return LetterRecords(
            *(getattr(self, f)[rows] for f in ("symbol", "context", "trace", "inputs", "outputs", "hits"))
        )

    @staticmethod
    def from_pairs(
        spec: Spec, symbol: Tensor, context: Tensor, trace: Tensor, inputs: Tensor, outputs: Tensor
    ) -> LetterRecords:
        a = spec.alphabet
        maps = torch.stack([g(inputs, a) for g in LETTER_MAPS.values()], -1)  # (R, n_j, G)
        hits = outputs[:, :, None, None] == maps[:, None, :, :]  # (R, n_i, n_j, G)
        return LetterRecords(symbol, context, trace, inputs, outputs, hits)

    @staticmethod
    def from_states(
        spec: Spec, programs: Sequence[Program], states: Sequence[Sequence[Sequence[int]]]
    ) -> LetterRecords:
        """The steps of traces given as written states (as :meth:`StepRecords.from_states`), routings taken
        as the task's own (routing symbol ``m`` denotes routing ``m``)."""
        rows: dict[str, list[Any]] = {k: [] for k in ("symbol", "context", "trace", "u", "y")}
        for t, (program, written) in enumerate(zip(programs, states, strict=True)):
            hist = torch.tensor([list(x) for x in written], dtype=torch.long)
            for l in range(1, min(len(written), program.depth + 1)):
                m, k = program.steps[l - 1]
                view = hist[0] if m == NO_ROUTING else spec.apply_routing(m, hist[:l].unsqueeze(0))[0]
                rows["symbol"].append(k)
                rows["context"].append(program.steps[l - 2][1] if l > 1 else spec.num_skills)
                rows["trace"].append(t)
                rows["u"].append(view)
                rows["y"].append(hist[l])
        n = spec.length
        stack = (lambda v: torch.stack(v)) if rows["u"] else (lambda v: torch.zeros(0, n, dtype=torch.long))
        return LetterRecords.from_pairs(
            spec,
            torch.tensor(rows["symbol"], dtype=torch.long),
            torch.tensor(rows["context"], dtype=torch.long),
            torch.tensor(rows["trace"], dtype=torch.long),
            stack(rows["u"]),
            stack(rows["y"]),
        )


@dataclass(frozen=True)
class LetterFit:
    """MAP per-letter selections: ``pi`` ``(K_sym, K_sym + 1, n, n, G)``, ``eta`` ``(K_sym, K_sym + 1)``,
    ``counts`` ``(K_sym, K_sym + 1)`` records per symbol and context."""

    pi: Tensor
    eta: Tensor
    counts: Tensor
    log_likelihood: float

    def selection(self, symbol: int, context: int, position: int) -> tuple[int, str, float]:
        """The most probable ``(source position, map name, probability)`` of one output letter."""
        row = self.pi[symbol, context, position]
        flat = int(row.argmax())
        j, g = divmod(flat, row.shape[-1])
        return j, list(LETTER_MAPS)[g], float(row.reshape(-1)[flat])


def fit_letters(
    spec: Spec, records: LetterRecords, *, contexts: bool = True, iterations: int = 300, tol: float = 1e-10
) -> LetterFit:
    """EM for :class:`LetterFit` (maximum likelihood; ``contexts=False`` pools every context)."""
    if len(records) == 0:
        raise LetterError("no letter records to fit (no step selected)")
    s_all, n, g_all = spec.num_skills, spec.length, len(LETTER_MAPS)
    c_all = s_all + 1
    ctx = records.context if contexts else torch.full_like(records.context, s_all)
    hits = records.hits.to(torch.float64)  # (R, n, n, G)
    pi = torch.full((s_all, c_all, n, n, g_all), 1.0 / (n * g_all), dtype=torch.float64)
    eta = torch.full((s_all, c_all), 0.1, dtype=torch.float64)
    where = (records.symbol, ctx)
    loglik, last = -math.inf, -math.inf
    for _ in range(iterations):
        p = pi[records.symbol, ctx]  # (R, n, n, G)
        e = eta[records.symbol, ctx][:, None]  # (R, 1)
        w = (1 - e)[:, :, None, None] * p * hits
        total = w.sum((2, 3)) + e / spec.alphabet  # (R, n)
        loglik = float(total.log().sum())
        resp = w / total[:, :, None, None]
        counts = torch.zeros_like(pi).index_put_(where, resp, accumulate=True)
        mass = counts.sum((3, 4), keepdim=True)
        pi = torch.where(mass > 0, counts / mass.clamp(min=1e-300), torch.full_like(pi, 1.0 / (n * g_all)))
        noise = (e / spec.alphabet / total).sum(1)  # (R,) expected uniform letters
        per = torch.zeros(s_all, c_all, dtype=torch.float64)
        eta_n = per.clone().index_put_(where, noise, accumulate=True)
        letters = per.clone().index_put_(where, torch.full_like(noise, float(n)), accumulate=True)
        eta = torch.where(letters > 0, eta_n / letters.clamp(min=1e-300), torch.full_like(eta, 0.5))
        if abs(loglik - last) <= tol * max(1.0, abs(loglik)):
            break
        last = loglik
    count = torch.zeros(s_all, c_all, dtype=torch.long).index_put_(
        where, torch.ones_like(records.symbol), accumulate=True
    )
    return LetterFit(pi, eta, count, loglik)


def letter_structure(spec: Spec, skill: int, *, samples: int = 512, seed: int = 0) -> list[tuple[int, str]] | None:
    """A library skill's selection per output letter, or None when it is not position-structured.

    Fitted to the skill's outputs on ``samples`` random inputs: structured when every output letter's
    best selection has probability above 0.99 and no letter is left uniform.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randint(spec.alphabet, (samples, spec.length), generator=gen)
    y = spec.apply_skill(skill, u)
    zeros = torch.zeros(samples, dtype=torch.long)
    records = LetterRecords.from_pairs(spec, zeros + skill, zeros + spec.num_skills, zeros, u, y)
    fit = fit_letters(spec, records, contexts=False)
    picks = [fit.selection(skill, spec.num_skills, i) for i in range(spec.length)]
    if float(fit.eta[skill, spec.num_skills]) > 0.01 or any(p < 0.99 for _, _, p in picks):
        return None
    return [(j, g) for j, g, _ in picks]


def near_misses(
    spec: Spec, fit: LetterFit, symbol: int, context: int, reference: int, *, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Output positions where ``symbol`` in ``context`` reads another source or map than skill ``reference``.

    Empty when the reference skill has no letter structure or nothing differs; each row names the
    position, what it reads (source, map, probability) and what the reference reads.
    """
    structure = letter_structure(spec, reference)
    if structure is None or int(fit.counts[symbol, context]) == 0:
        return []
    out = []
    for i, (j_ref, g_ref) in enumerate(structure):
        j, g, p = fit.selection(symbol, context, i)
        if p >= threshold and (j, g) != (j_ref, g_ref):
            out.append(
                {
                    "position": i,
                    "source": j,
                    "map": g,
                    "probability": p,
                    "expected_source": j_ref,
                    "expected_map": g_ref,
                }
            )
    return out


def hamming_to(spec: Spec, records: LetterRecords, skills: Tensor) -> Tensor:
    """``(R,)`` letters by which each written output differs from ``skills[r]`` applied to its input."""
    out = torch.empty(len(records), dtype=torch.long)
    for k in skills.unique().tolist():
        rows = (skills == k).nonzero(as_tuple=True)[0]
        out[rows] = (spec.apply_skill(k, records.inputs[rows]) != records.outputs[rows]).sum(-1)
    return out

"""The H-lib likelihood without ``|X|``-sized tables: point masses, uniform branches and certified bounds.

For library skills the step distribution is a mixture (``theory/scalable_likelihood.md``)::

    p(x_l | H) = (1 - eps) sum_{m,k} beta[tau, m] alpha[sigma, k] [x_l == f_k(rho_m(H))] + eps c / |X|,

with ``c = (sum_m beta[tau, m]) (sum_k alpha[sigma, k])`` (1 for stochastic rows; kept literal so that
gradients in raw ``alpha``/``beta`` match :mod:`hlsm.infer.likelihood`). A hidden state is therefore
either a *point* ``f_k(rho_m(H))`` reached by a (routing, skill) path, or a fresh *uniform* draw ``U``
(the corruption branch). The trace probability is a sum over a tree whose nodes are histories:

- concrete nodes (every item known): equal values reached by several paths are merged; shown steps
  are indicators ``[x_l == f_k(rho_m(H))]`` over the 240 paths of the default library; exact;
- a uniform item ``U`` read by a later shown step: ``P_U(f_k(rho_m(H)) = y)`` is an exact preimage
  sum ``sum_{w in f_k^{-1}(y)} prod_i q_i(w_i)``, where ``q`` is the per-position distribution of the
  routed input (a routing that declares its reads, ``hlsm.modules.Routing.reads``, as every default
  one does, is position-wise; a uniform ``q`` reduces to a preimage count);
- a *derived* item ``D = f_k'(W)``, ``W = rho_m'(H)`` with uniform items in ``H``, read (alone) by a
  later shown step: ``P(D in Z)`` with ``Z`` the routing preimage of ``f_k^{-1}(y)``; exact;
- anything else (a step reading two dependent random items, an undeclared routing on a random item, a
  derived item of a derived item, a second expectation over the same ``U``, or an enumeration over
  ``budget`` elements): the indicator is bounded pointwise by ``[0, 1]`` (``0`` when ``y`` is not in
  the image of ``f_k``), which gives a certified interval ``[lower, upper]`` on ``log p``.

Every precomputation is data-only (no parameter enters the tree), and the call is a few gathers and
``index_add`` per level, differentiable in ``alpha``, ``beta`` and ``epsilon``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hlsm.infer.likelihood import LikelihoodError
from hlsm.infer.model import _observed_programs, _support
from hlsm.infer.scalable_tree import (
    _EMPTY,
    QUERY_BUDGET,
    TreeBuilder,
    _Level,
    build_chunk,
    tail_start,
)
from hlsm.modules import DEFAULT_ROUTINGS, DEFAULT_SKILLS
from hlsm.parallel import Backend, Runner
from hlsm.plugins import plugin_modules
from hlsm.programs import Program, ProgramBatch
from hlsm.simulate import Corpus
from hlsm.spec import Spec


@dataclass(frozen=True)
class LogLikBounds:
    """A certified interval ``lower <= log p(corpus) <= upper`` (equal when every term is exact)."""

    lower: Tensor
    upper: Tensor

    @property
    def width(self) -> float:
        return float((self.upper - self.lower).detach().max()) if self.lower.numel() else 0.0

    @property
    def exact(self) -> bool:
        return bool(torch.equal(self.lower.detach(), self.upper.detach()))


class ScalableLikelihood:
    """``log p(corpus)`` in the H-lib class (library skills, bindings ``alpha``, ``beta``, corruption ``eps``).

    The same quantity as :class:`hlsm.infer.likelihood.CorpusLikelihood` with library tables, but
    without any ``(|X|, |X|)`` or per-trace ``|X|``-sized object, so that the default library
    (``|X| = 262,144``) can be scored; where a term has no exact cheap value the result is a certified
    interval (:meth:`interval`; module docstring and ``theory/scalable_likelihood.md``).

    Parameters
    ----------
    spec, support, corpus, weights, task_terms
        As in :class:`hlsm.infer.likelihood.CorpusLikelihood`.
    budget
        Largest enumeration one exact query may do before it is bounded instead.
    workers
        Processes that build the structures of traces with hidden states (0.2-0.4 s each at the
        default library); 1 builds them here, as does a spec with custom modules that no plugin
        registered (:mod:`hlsm.plugins`: workers load the plugins, not modules registered by hand).

    Attributes
    ----------
    exact : bool
        Data-only: True when no term is bounded (then ``lower == upper`` for every parameter value).
    bounded_terms : int
        Number of (node, path) indicator terms that are bounded rather than computed.
    max_width : float
        Largest interval width ``upper - lower`` returned by a call so far (0 when exact).
    """

    def __init__(
        self,
        spec: Spec,
        support: Sequence[Program],
        corpus: Corpus,
        weights: Sequence[float] | Tensor | None = None,
        *,
        task_terms: bool = True,
        budget: int = QUERY_BUDGET,
        workers: int = 1,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise LikelihoodError(f"workers must be a positive integer, got {workers!r}")
        programs, prior = _support(spec, support, weights, torch.float64)
        self.spec, self.num_traces, self.budget = spec, len(corpus), budget
        self.max_width = 0.0
        self.bounded_terms = 0
        self._task = torch.zeros(len(corpus), dtype=torch.float64)
        self._groups: list[_Group] = []
        if len(corpus) == 0:
            self.exact = True
            return
        builder = TreeBuilder(spec, budget)
        prog = _observed_programs(spec, corpus, programs)
        if task_terms:
            self._task = prior[prog].log() - math.log(spec.num_states)
        table = ProgramBatch.from_programs(programs)
        codes = spec.encode(corpus.states).tolist()
        keys, shapes = [], []
        for i, p in enumerate(prog.tolist()):
            program = programs[p]
            mask = tuple(bool(v) for v in corpus.mask[i, : program.depth].tolist())
            last = max((l for l, s in enumerate(mask) if s), default=-1)
            mask = mask[: last + 1]
            keys.append(
                (program.is_atomic, codes[i][0], tuple(codes[i][l + 1] if s else -1 for l, s in enumerate(mask)))
            )
            shapes.append((program.is_atomic, mask))
        cache = self._build_all(list(dict.fromkeys(keys)), workers, builder)
        self.bounded_terms += builder.bounded_terms
        by_shape: dict[tuple[bool, tuple[bool, ...]], list[tuple[int, list[_Level]]]] = {}
        for i, (key, kind) in enumerate(zip(keys, shapes, strict=True)):
            by_shape.setdefault(kind, []).append((i, cache[key]))
        for (atomic, mask), members in sorted(by_shape.items()):
            rows = torch.tensor([i for i, _ in members])
            routing, skill = table.routing[prog[rows], : len(mask)], table.skill[prog[rows], : len(mask)]
            tau = torch.full_like(routing, spec.num_routings) if atomic else routing
            tail = tail_start(mask)
            self._groups.append(_Group(rows, stack_levels([s for _, s in members], tail), tau, skill, tail))
        self.exact = self.bounded_terms == 0

    def _build_all(
        self, keys: list[tuple[bool, int, tuple[int, ...]]], workers: int, builder: TreeBuilder
    ) -> dict[Any, list[_Level]]:
        """The structure of every distinct ``(atomic, x0, shown)``; those with hidden states over ``workers``."""
        hard = [k for k in keys if -1 in k[2]]  # golden traces build in microseconds; hidden states do not
        # a fresh process knows the built-in modules and, once it has loaded them, the plugins' modules
        known = set(DEFAULT_SKILLS) | set(DEFAULT_ROUTINGS) | plugin_modules()
        if workers == 1 or len(hard) < 2 * workers or not set(self.spec.skills) | set(self.spec.routings) <= known:
            return {k: builder.build(*k) for k in keys}
        chunks = [hard[i::workers] for i in range(workers)]
        with Runner(Backend("local", workers)) as runner:
            parts = runner.map(build_chunk, [(self.spec, self.budget, chunk) for chunk in chunks])
        out: dict[Any, list[_Level]] = {}
        for chunk, (structures, bounded) in zip(chunks, parts, strict=True):
            out.update(zip(chunk, structures, strict=True))
            self.bounded_terms += bounded
        out.update({k: builder.build(*k) for k in keys if k not in out})
        return out

    # -- evaluation -----------------------------------------------------------------------------

    def interval(self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor = 0.1) -> LogLikBounds:
        """Certified ``lower <= log p(corpus) <= upper`` (0-dim tensors, differentiable)."""
        lo, hi = self.per_trace(alpha, beta, epsilon)
        bounds = LogLikBounds(lo.sum(), hi.sum())
        self.max_width = max(self.max_width, bounds.width)
        return bounds

    def __call__(
        self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor = 0.1, tables: Tensor | None = None
    ) -> Tensor:
        """The 0-dim ``log p(corpus)`` when :attr:`exact`; else its certified lower bound.

        Only the lower bound is computed (half the work of :meth:`interval`, which also updates
        :attr:`max_width`). ``tables`` must be None: this class scores library skills only.
        """
        if tables is not None:
            raise LikelihoodError("ScalableLikelihood scores library skills only; use CorpusLikelihood for tables")
        return self._bound(alpha, beta, epsilon, upper=False).sum()

    def per_trace(self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor = 0.1) -> tuple[Tensor, Tensor]:
        """``(N,)`` lower and upper bounds of each trace's log-likelihood, in corpus order."""
        lower = self._bound(alpha, beta, epsilon, upper=False)
        return lower, lower if self.exact else self._bound(alpha, beta, epsilon, upper=True)

    def _bound(self, alpha: Tensor, beta: Tensor, epsilon: float | Tensor, *, upper: bool) -> Tensor:
        """``(N,)`` the lower (or upper) bound of each trace's log-likelihood."""
        out = self._task.to(alpha.dtype).clone()
        if not self._groups:
            return out
        eps = torch.as_tensor(epsilon, dtype=alpha.dtype)
        beta_x = torch.nn.functional.pad(beta, (0, 1, 0, 1))  # an extra row/column for atomic steps
        atomic = torch.zeros_like(beta_x)
        atomic[-1, -1] = 1.0
        beta_x = beta_x + atomic
        mass = beta_x.sum(-1).unsqueeze(-1) * alpha.sum(-1).unsqueeze(0)  # (R + 1, S): c per symbol pair
        size = self.spec.num_states
        for group in self._groups:
            p = self._group(group, alpha, beta_x, mass, eps, size, upper)
            out[group.rows] = out[group.rows] + p.log()
        return out

    @staticmethod
    def _group(
        group: _Group, alpha: Tensor, beta_x: Tensor, mass: Tensor, eps: Tensor, size: int, upper: bool
    ) -> Tensor:
        """``(G,)`` lower (or upper) bound on ``P(shown states | program, x_0)`` for one group of traces."""
        tau, sigma, levels, tail = group.tau, group.sigma, group.levels, group.tail
        g = tau.shape[0]
        val = torch.ones(g, dtype=alpha.dtype)
        if not levels:
            return val
        last = len(levels) - 1
        trace = torch.arange(g)  # node -> trace
        kept: list[Tensor] = []  # node values at depths tail, ..., last (the last step reads them all)
        owner = trace
        for l, level in enumerate(levels):
            if l == tail:
                owner = trace  # node -> trace at depth tail
            if l >= tail:
                kept.append(val)
            t = tau[level.trace, l]
            s = sigma[level.trace, l]
            if level.hidden:
                uni = level.route < 0
                w = torch.where(
                    uni,
                    eps * mass[t, s],
                    (1 - eps) * beta_x[t, level.route.clamp(min=0)] * alpha[s, level.skill.clamp(min=0)],
                )
                val = torch.zeros(level.size, dtype=alpha.dtype).index_add(0, level.child, val[level.parent] * w)
                trace = level.node_trace
                continue
            w = (1 - eps) * beta_x[t, level.route] * alpha[s, level.skill]
            if l < last:
                base = eps * mass[tau[trace, l], sigma[trace, l]] / size
                val = val * base.index_add(0, level.parent, w * (level.hi if upper else level.lo))
        # the last step: base * (total weight) + attached entries * (weight c of the steps they skip)
        steps = mass[tau[:, tail:], sigma[:, tail:]]  # (G, last - tail + 1): c of levels tail..last
        skipped = torch.flip(torch.cumprod(torch.flip(steps[:, :-1], [1]), 1), [1])  # prod of c from depth d on
        skipped = torch.cat([skipped, torch.ones_like(steps[:, :1])], 1)  # (G, depths)
        level = levels[last]
        total = torch.zeros(g, dtype=alpha.dtype).index_add(0, owner, kept[0]) * skipped[:, 0]
        mult = skipped[level.trace, level.depth] * (level.hi if upper else level.lo)
        hits = torch.zeros(g, dtype=alpha.dtype).index_add(0, level.trace, torch.cat(kept)[level.parent] * w * mult)
        return eps * steps[:, -1] / size * total + hits


@dataclass
class _Group:
    """Traces of one step structure: corpus rows, stacked levels, symbols, first step of the hidden tail."""

    rows: Tensor
    levels: list[_StackedLevel]
    tau: Tensor
    sigma: Tensor
    tail: int


@dataclass
class _StackedLevel:
    """One level of a group: a :class:`_Level` of every trace, node indices offset, with owners."""

    hidden: bool
    size: int
    parent: Tensor
    child: Tensor
    route: Tensor
    skill: Tensor
    lo: Tensor
    hi: Tensor
    trace: Tensor  # (E,) trace (row of the group) owning each entry
    node_trace: Tensor  # (size,) trace owning each node after the level
    depth: Tensor | None = None  # last level: (E,) depth of each entry's node minus the tail


def stack_levels(structures: list[list[_Level]], tail: int) -> list[_StackedLevel]:
    """Concatenate the equal-shaped level lists of a group's traces, offsetting node indices.

    The last level's entries index the concatenation of every depth from ``tail`` down (depth by
    depth, trace by trace), and ``depth`` holds ``depth - tail`` for each.
    """
    n = len(structures)
    out: list[_StackedLevel] = []
    at_depth = [[1] * n]  # nodes per trace at each depth
    owner = torch.arange(n)  # node -> trace at the current depth
    for l in range(len(structures[0])):
        levels = [s[l] for s in structures]
        hidden = levels[0].hidden
        counts = torch.tensor([len(v.parent) for v in levels])
        trace = torch.arange(n).repeat_interleave(counts)
        base = torch.tensor([0, *at_depth[-1]]).cumsum(0)[:-1]
        depth_rel = None
        if hidden:
            parent = torch.cat([v.parent for v in levels]) + base[trace]
            new_sizes = [v.size for v in levels]
            child = torch.cat([v.child for v in levels]) + torch.tensor([0, *new_sizes]).cumsum(0)[:-1][trace]
            owner = torch.arange(n).repeat_interleave(torch.tensor(new_sizes))
            at_depth.append(new_sizes)
        elif l < len(structures[0]) - 1:
            parent = torch.cat([v.parent for v in levels]) + base[trace]
            child = _EMPTY.long()
            at_depth.append(at_depth[-1])
        else:
            depth = torch.cat([v.depth for v in levels if v.depth is not None])
            offset, starts = 0, {}
            for d in range(tail, l + 1):
                starts[d] = offset + torch.tensor([0, *at_depth[d]]).cumsum(0)[:-1]
                offset += sum(at_depth[d])
            first = torch.stack([starts[d] for d in range(tail, l + 1)], -1)  # (n, depths)
            parent = torch.cat([v.parent for v in levels]) + first[trace, depth - tail]
            child = _EMPTY.long()
            depth_rel = depth - tail
        out.append(
            _StackedLevel(
                hidden,
                sum(at_depth[-1]),
                parent,
                child,
                torch.cat([v.route for v in levels]),
                torch.cat([v.skill for v in levels]),
                torch.cat([v.lo for v in levels]).to(torch.float64),
                torch.cat([v.hi for v in levels]).to(torch.float64),
                trace,
                owner,
                depth_rel,
            )
        )
    return out

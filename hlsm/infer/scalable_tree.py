"""The trees of :class:`hlsm.infer.scalable.ScalableLikelihood`, built from the data alone.

Each trace becomes a list of levels (:class:`_Level`): its hidden steps branch the tree, its shown
steps are indicator entries over the (routing, skill) paths, exact or bounded as the module
docstring of :mod:`hlsm.infer.scalable` sets out. :class:`TreeBuilder` builds one trace's levels
(:meth:`TreeBuilder.build`, run in worker processes by :func:`build_chunk` when there are many);
:func:`stack_levels` concatenates the equal-shaped levels of a group of traces for the evaluation.
No parameter enters a tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hlsm.infer.likelihood import LikelihoodError
from hlsm.spec import Spec

QUERY_BUDGET = 1 << 18
"""Largest number of (node, preimage element, position) terms one exact query may enumerate."""

MAX_NODES = 1 << 21
"""Largest number of tree nodes one trace may create (a deep answer-only trace over a large |X|)."""

_CONCRETE, _UNIFORM, _DERIVED, _UNKNOWN = "c", "u", "d", "x"


@dataclass
class _Block:
    """Tree nodes of one trace sharing a pattern of item kinds (one kind per history position)."""

    kinds: tuple[str, ...]
    hist: Tensor  # (N, len) codes; non-concrete positions hold 0
    node: Tensor  # (N,) node index within its level
    dq: dict[int, Tensor] = field(default_factory=dict)  # derived position -> (N, n, A) law of its input
    dk: dict[int, Tensor] = field(default_factory=dict)  # derived position -> (N,) skill applied
    dm: dict[int, Tensor] = field(default_factory=dict)  # derived position -> (N,) routing applied
    deps: dict[int, frozenset[int]] = field(default_factory=dict)  # derived position -> uniform positions
    consumed: frozenset[int] = frozenset()  # uniform positions already integrated by a shown step

    def take(self, rows: Tensor, kind: str, column: Tensor, node: Tensor) -> _Block:
        """The block of ``rows``' children that append an item of ``kind`` (codes ``column``)."""
        return _Block(
            self.kinds + (kind,),
            torch.cat([self.hist[rows], column.unsqueeze(-1)], -1),
            node,
            {p: q[rows] for p, q in self.dq.items()},
            {p: k[rows] for p, k in self.dk.items()},
            {p: m[rows] for p, m in self.dm.items()},
            dict(self.deps),
            self.consumed,
        )


@dataclass
class _Level:
    """One scored step of a structure: ``hidden`` edges parent -> child, or ``shown`` factor entries."""

    hidden: bool
    size: int  # nodes after the step
    parent: Tensor  # hidden: (E,) parent node; shown: (E,) node
    child: Tensor  # hidden: (E,) child node; shown: unused (empty)
    route: Tensor  # (E,) routing index (M for an atomic step, -1 for a uniform edge)
    skill: Tensor  # (E,) skill index (-1 for a uniform edge)
    lo: Tensor  # shown: (E,) lower bound of P(indicator); hidden: unused
    hi: Tensor  # shown: (E,) upper bound
    depth: Tensor | None = None  # last step only: (E,) depth of the node each entry is attached to


class _Library:
    """Data-only tables of the library skills on ``X``: images, preimage lists (CSR) and counts."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        states = spec.all_states()
        self.image = torch.stack([spec.encode(spec.apply_skill(k, states)) for k in range(spec.num_skills)])
        self.order = torch.argsort(self.image, dim=-1, stable=True).to(torch.int32)  # (K, X) preimage lists
        counts = torch.stack([torch.bincount(row, minlength=spec.num_states) for row in self.image])
        self.counts = counts.to(torch.int32)  # (K, X) |f_k^{-1}(y)|
        self.start = torch.nn.functional.pad(counts.cumsum(-1), (1, 0)).to(torch.int64)  # (K, X + 1)

    def preimages(self, ks: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``w`` with ``f_k(w)`` in ``targets`` for each ``k`` in ``ks``, and the index in ``ks`` of each."""
        lo = self.start[ks.unsqueeze(-1), targets.unsqueeze(0)].reshape(-1)
        lengths = self.start[ks.unsqueeze(-1), targets.unsqueeze(0) + 1].reshape(-1) - lo
        owner = torch.arange(len(ks)).repeat_interleave(len(targets))
        total = int(lengths.sum())
        offsets = torch.repeat_interleave(lo - (lengths.cumsum(0) - lengths), lengths)
        rows = torch.repeat_interleave(ks.repeat_interleave(len(targets)), lengths)
        return self.order[rows, offsets + torch.arange(total)].long(), torch.repeat_interleave(owner, lengths)

    def preimage(self, k: int, targets: Tensor) -> Tensor:
        """Codes ``w`` with ``f_k(w)`` in ``targets`` (a 1-d tensor of distinct codes)."""
        lo, hi = self.start[k, targets], self.start[k, targets + 1]
        lengths = hi - lo
        total = int(lengths.sum())
        if total == 0:
            return torch.zeros(0, dtype=torch.long)
        offsets = torch.repeat_interleave(lo - (lengths.cumsum(0) - lengths), lengths)
        return self.order[k, offsets + torch.arange(total)].long()


class TreeBuilder:
    """Builds the levels of one trace (:meth:`build`) over the library tables of ``spec``: every query
    that enumerates at most ``budget`` terms is exact, the others are bounded and counted in
    ``bounded_terms``. Holds ``(K, |X|)`` tables while it lives; the evaluation never reads them."""

    def __init__(self, spec: Spec, budget: int) -> None:
        self.spec, self.budget, self.bounded_terms = spec, budget, 0
        self._lib = _Library(spec)

    def build(self, atomic: bool, x0: int, shown: tuple[int, ...]) -> list[_Level]:
        """The levels of one trace (``x0`` its input, ``shown[l]`` the code of ``x_{l+1}`` or -1 if hidden), pruned."""
        blocks = [_Block((_CONCRETE,), torch.tensor([[x0]]), torch.tensor([0]))]
        levels: list[_Level] = []
        size = 1
        for l, y in enumerate(shown):
            if y >= 0:
                level, used = self._shown(blocks, y, atomic, size)
                levels.append(level)
                blocks = [
                    b.take(torch.arange(len(b.node)), _CONCRETE, torch.full_like(b.node, y), b.node) for b in blocks
                ]
                for b, u in zip(blocks, used, strict=True):
                    b.consumed = b.consumed | u
            else:
                level, blocks = self._hidden(blocks)
                size = level.size
                if size > MAX_NODES:
                    raise LikelihoodError(
                        f"a trace with {sum(s < 0 for s in shown)} hidden states grows {size} tree nodes by step "
                        f"{l + 1} (more than {MAX_NODES}); show more states of deep programs"
                    )
                levels.append(level)
        return self._prune(levels, tail_start(tuple(y >= 0 for y in shown)))

    def _prune(self, levels: list[_Level], tail: int) -> list[_Level]:
        """Attach each last-step entry to the shallowest node it depends on, and keep only what is needed.

        The last step (it is shown) multiplies each node by ``base + sum(w * Q)``; nodes of the hidden
        steps just before it (depths ``tail, ...``) enter only through that sum, since the ``base``
        part adds up to ``base * (weight at depth tail) * prod(c)`` (a hidden step gives every node
        children of total weight ``c``). So:

        - an entry whose routing reads items up to ``x_p`` only has the same ``Q`` on every node below
          the depth-``max(p, tail)`` ancestor: it is attached there once, and the evaluation multiplies
          it by the ``c`` of the skipped steps (exact);
        - a bounded entry (``lower = 0``) on the deepest nodes is attached to the parent with the
          largest upper bound of its children, times the parent's whole child weight ``c`` (an upper
          bound only; the lower one is 0 either way);
        - a node of the tail is kept only if an entry is attached to it or below it, and the deepest
          nodes with equal entries are merged (their weights add, their factor is the same).
        """
        if not levels:
            return levels
        last, deep = levels[-1], len(levels) - 1  # last-step entries sit on nodes at depth `deep`
        node, route, skill, lo, hi = last.parent.clone(), last.route, last.skill, last.lo, last.hi
        up = {}  # depth d -> (size_d,) parent node at depth d - 1 (each child has one parent)
        for l in range(tail, deep):
            arr = torch.full((levels[l].size,), -1, dtype=torch.long)
            arr[levels[l].child] = levels[l].parent
            up[l + 1] = arr
        reach = torch.tensor(
            [
                max(r) if (r := self.spec.routing_modules[m].read_positions(deep + 1)) is not None else deep
                for m in range(self.spec.num_routings)
            ]
            + [0]  # an atomic step reads x_0
        )
        depth = reach[route].clamp(min=tail)
        coarse = (lo == 0) & (hi > 0) & (depth == deep) & (deep - 1 >= tail)
        depth = torch.where(coarse, deep - 1, depth)
        for d in range(deep, tail, -1):  # move every entry up to its depth
            move = depth < d
            node[move] = up[d][node[move]]
        # one entry per (depth, node, route, skill): exact lifts are equal, coarse ones take the max
        key = ((depth * (1 << 40) + node) * 64 + route + 1) * 4096 + skill + 1
        key, inverse = torch.unique(key, return_inverse=True)
        lo = torch.zeros(len(key), dtype=torch.float64).scatter_reduce(0, inverse, lo, "amin", include_self=False)
        hi = torch.zeros(len(key), dtype=torch.float64).scatter_reduce(0, inverse, hi, "amax", include_self=False)
        skill, key = key % 4096 - 1, key // 4096
        route, key = key % 64 - 1, key // 64
        depth, node = key // (1 << 40), key % (1 << 40)
        # keep the needed nodes of the tail, renumbered depth by depth from the bottom
        needed = {d: node[depth == d] for d in range(tail, deep + 1)}
        for d in range(deep, tail, -1):
            needed[d] = torch.unique(needed[d])
            needed[d - 1] = torch.cat([needed[d - 1], up[d][needed[d]]])
        new: dict[int, Tensor | None] = {tail: None}
        for d in range(tail + 1, deep + 1):
            table = torch.full((levels[d - 1].size,), -1, dtype=torch.long)
            table[needed[d]] = torch.arange(len(needed[d]))
            new[d] = table
        out = list(levels[:tail])
        for l in range(tail, deep):
            level, child_map, parent_map = levels[l], new[l + 1], new[l]
            assert child_map is not None  # depths below the tail are renumbered
            edge = child_map[level.child] >= 0
            parent = level.parent[edge] if parent_map is None else parent_map[level.parent[edge]]
            out.append(
                _Level(
                    True,
                    len(needed[l + 1]),
                    parent,
                    child_map[level.child[edge]],
                    level.route[edge],
                    level.skill[edge],
                    _EMPTY,
                    _EMPTY,
                )
            )
        for d in range(tail + 1, deep + 1):
            at, table_d = depth == d, new[d]
            assert table_d is not None
            node[at] = table_d[node[at]]
        size = last.size if deep == tail else len(needed[deep])
        if deep > tail:  # deepest nodes enter only through their entries: equal entry sets merge into one node
            size, (mapping, renumbered), keep = _merge_equal(node, depth == deep, route, skill, lo, hi)
            out[-1].child = mapping[out[-1].child]
            out[-1].size = size
            node, route, skill, lo, hi, depth = (
                renumbered[keep],
                route[keep],
                skill[keep],
                lo[keep],
                hi[keep],
                depth[keep],
            )
        out.append(_Level(False, size, node, _EMPTY, route, skill, lo, hi, depth))
        return out

    def _routed(self, block: _Block, m: int) -> Tensor:
        """``(N,)`` codes of ``rho_m`` on the block's histories (only valid on concrete reads)."""
        hist = self.spec.decode(block.hist)
        return self.spec.encode(self.spec.apply_routing(m, hist))

    def _input_law(self, block: _Block, m: int, free: tuple[int, ...]) -> Tensor:
        """``(N, n, A)`` law of the routed input when the positions ``free`` are independent uniforms."""
        spec, a = self.spec, self.spec.alphabet
        hist = spec.decode(block.hist)  # (N, len, n)
        combos = torch.cartesian_prod(*[torch.arange(a)] * len(free)).reshape(-1, len(free))  # (C, r)
        n_nodes, c = hist.shape[0], combos.shape[0]
        full = hist.unsqueeze(1).repeat(1, c, 1, 1)  # (N, C, len, n)
        for j, p in enumerate(free):
            full[:, :, p, :] = combos[:, j].reshape(1, c, 1)
        out = spec.apply_routing(m, full.reshape(n_nodes * c, len(block.kinds), spec.length))
        onehot = torch.nn.functional.one_hot(out.reshape(n_nodes, c, spec.length), a).sum(1)  # (N, n, A)
        return onehot.to(torch.float64) / c

    def _classify(self, block: _Block, m: int | None) -> tuple[str, tuple[int, ...]]:
        """How routing ``m`` reads the block: ("c" | "u" | "d" | "x", positions that are random)."""
        length = len(block.kinds)
        reads = (0,) if m is None else self.spec.routing_modules[m].read_positions(length)
        if reads is None:  # a custom routing: it may read anything and is not known to be position-wise
            random = tuple(p for p in range(length) if block.kinds[p] != _CONCRETE)
            return (_UNKNOWN, random) if random else (_CONCRETE, ())
        random = tuple(p for p in reads if block.kinds[p] != _CONCRETE)
        kinds = {block.kinds[p] for p in random}
        if not random:
            return _CONCRETE, ()
        if kinds == {_UNIFORM}:
            return _UNIFORM, random
        if kinds == {_DERIVED} and len(random) == 1:
            return _DERIVED, random
        return _UNKNOWN, random

    def _hidden(self, blocks: list[_Block]) -> tuple[_Level, list[_Block]]:
        """Expand every node by the paths of a hidden step; equal children of one parent merge."""
        spec, k_all = self.spec, self.spec.num_skills
        parents, children, routes, skills = [], [], [], []
        out: list[_Block] = []
        size = 0

        def add(block: _Block, p: Tensor, child: Tensor, r: Tensor, k: Tensor) -> None:
            parents.append(block.node[p])
            children.append(child)
            routes.append(r)
            skills.append(k)

        for block in blocks:
            n_nodes = len(block.node)
            concrete: list[tuple[int, Tensor]] = []
            uniform: dict[frozenset[int], list[int]] = {}
            unknown: list[int] = []
            for m in range(spec.num_routings):
                kind, free = self._classify(block, m)
                if kind == _CONCRETE:
                    concrete.append((m, self._routed(block, m)))
                elif kind == _UNIFORM:
                    uniform.setdefault(frozenset(free), []).append(m)
                else:
                    unknown.append(m)
            if concrete:  # children with a known value, merged per (parent, value)
                ms = torch.tensor([m for m, _ in concrete])
                inputs = torch.stack([u for _, u in concrete], -1)  # (N, Mc)
                values = self._lib.image[:, inputs].permute(1, 2, 0)  # (N, Mc, K)
                p = torch.arange(n_nodes).reshape(-1, 1, 1).expand_as(values).reshape(-1)
                r = ms.reshape(1, -1, 1).expand_as(values).reshape(-1)
                k = torch.arange(k_all).reshape(1, 1, -1).expand_as(values).reshape(-1)
                key, inverse = torch.unique(p * spec.num_states + values.reshape(-1), return_inverse=True)
                rows = key // spec.num_states
                out.append(block.take(rows, _CONCRETE, key % spec.num_states, size + torch.arange(len(key))))
                add(block, p, size + inverse, r, k)
                size += len(key)
            for sources, ms_u in uniform.items():  # derived children f_k(rho_m(H)): one per (parent, m, k)
                # laws: (N, Mu, n, A)
                laws = torch.stack([self._input_law(block, m, tuple(sorted(sources))) for m in ms_u], 1)
                shape = (n_nodes, len(ms_u), k_all)
                p = torch.arange(n_nodes).reshape(-1, 1, 1).expand(shape).reshape(-1)
                j = torch.arange(len(ms_u)).reshape(1, -1, 1).expand(shape).reshape(-1)
                k = torch.arange(k_all).reshape(1, 1, -1).expand(shape).reshape(-1)
                r = torch.tensor(ms_u)[j]
                child = block.take(p, _DERIVED, torch.zeros_like(p), size + torch.arange(len(p)))
                pos = len(block.kinds)
                child.dq[pos], child.dk[pos], child.dm[pos], child.deps[pos] = laws[p, j], k, r, sources
                out.append(child)
                add(block, p, size + torch.arange(len(p)), r, k)
                size += len(p)
            if unknown:  # children whose value is not tracked: one per parent
                idx = torch.arange(n_nodes)
                out.append(block.take(idx, _UNKNOWN, torch.zeros_like(idx), size + idx))
                p = idx.repeat_interleave(len(unknown) * k_all)
                r = torch.tensor(unknown).repeat_interleave(k_all).repeat(n_nodes)
                k = torch.arange(k_all).repeat(n_nodes * len(unknown))
                add(block, p, size + p, r, k)
                size += n_nodes
            idx = torch.arange(n_nodes)  # the corruption branch: a fresh uniform state
            out.append(block.take(idx, _UNIFORM, torch.zeros_like(idx), size + idx))
            add(block, idx, size + idx, torch.full_like(idx, -1), torch.full_like(idx, -1))
            size += n_nodes
        level = _Level(
            True, size, torch.cat(parents), torch.cat(children), torch.cat(routes), torch.cat(skills), _EMPTY, _EMPTY
        )
        return level, out

    def _shown(self, blocks: list[_Block], y: int, atomic: bool, size: int) -> tuple[_Level, list[frozenset[int]]]:
        """Entries ``(node, m, k, lower, upper)`` of ``P([y == f_k(rho_m(H))])`` for a shown step.

        Also returns, per block, the uniform positions this step integrated exactly: a later step
        that reads them again is bounded (the expectation of a product is not a product).
        """
        spec, lib = self.spec, self._lib
        k_all = spec.num_skills
        possible = lib.counts[:, y] > 0  # (K,) y in the image of f_k: else the indicator is 0 everywhere
        nodes, routes, skills, los, his = [], [], [], [], []
        used: list[frozenset[int]] = []

        def add(node: Tensor, m: int, lo: Tensor, hi: Tensor) -> None:  # lo, hi: (N, K)
            keep = hi > 0
            rows, ks = keep.nonzero(as_tuple=True)
            nodes.append(node[rows])
            routes.append(torch.full_like(rows, m))
            skills.append(ks)
            los.append(lo[rows, ks])
            his.append(hi[rows, ks])

        for block in blocks:
            n_nodes = len(block.node)
            integrated: set[int] = set()
            for m in [None] if atomic else range(spec.num_routings):
                route = spec.num_routings if m is None else m
                kind, free = self._classify(block, m)
                if m is not None and kind == _UNIFORM and not set(free) & block.consumed:
                    lo, hi = self._prob_in(self._input_law(block, m, free), None, torch.tensor([y]))
                    integrated |= set(free)
                elif m is not None and kind == _DERIVED and not block.deps[free[0]] & block.consumed:
                    lo, hi = self._derived(block, m, free[0], y)
                    integrated |= block.deps[free[0]]
                elif kind == _CONCRETE:
                    inputs = block.hist[:, 0] if m is None else self._routed(block, m)
                    hit = (lib.image[:, inputs] == y).T.to(torch.float64)  # (N, K)
                    lo, hi = hit, hit
                elif m is not None and (probs := self._enumerate(block, m, free, y)) is not None:
                    lo, hi = probs, probs
                    integrated |= self._sources(block, free)
                else:
                    lo = torch.zeros(n_nodes, k_all, dtype=torch.float64)
                    hi = possible.to(torch.float64).expand(n_nodes, -1)
                self.bounded_terms += int(((hi - lo) > 0).sum())
                add(block.node, route, lo, hi)
            used.append(frozenset(integrated))
        cat = torch.cat
        return _Level(False, size, cat(nodes), _EMPTY, cat(routes), cat(skills), cat(los), cat(his)), used

    def _sources(self, block: _Block, random: tuple[int, ...]) -> set[int]:
        """The uniform positions that the random items ``random`` are functions of."""
        out: set[int] = set()
        for p in random:
            out |= {p} if block.kinds[p] == _UNIFORM else set(block.deps.get(p, frozenset({-1})))
        return out

    def _enumerate(self, block: _Block, m: int, random: tuple[int, ...], y: int) -> Tensor | None:
        """``(N, K)`` exact ``P(f_k(rho_m(H)) = y)`` by enumerating the uniforms behind ``random``.

        None when an item is untracked, a source was integrated already, or the enumeration
        (``N |X|^r`` histories, ``r`` sources) exceeds the budget.
        """
        spec, lib = self.spec, self._lib
        if any(block.kinds[p] == _UNKNOWN for p in random):
            return None
        free = sorted(self._sources(block, random))
        if -1 in free or set(free) & block.consumed:
            return None
        n_nodes, length = len(block.node), len(block.kinds)
        combos = spec.num_states ** len(free)
        if n_nodes * combos * length * spec.length > self.budget:
            return None
        hist = block.hist.unsqueeze(1).repeat(1, combos, 1)  # (N, C, len)
        grid = torch.cartesian_prod(*[torch.arange(spec.num_states)] * len(free)).reshape(combos, len(free))
        hist[:, :, free] = grid.unsqueeze(0)
        for p in sorted(q for q in random if block.kinds[q] == _DERIVED):
            for mp in sorted(set(block.dm[p].tolist())):
                rows = (block.dm[p] == mp).nonzero(as_tuple=True)[0]
                prefix = spec.decode(hist[rows, :, :p]).reshape(-1, p, spec.length)
                u = spec.encode(spec.apply_routing(mp, prefix)).reshape(len(rows), combos)
                hist[rows, :, p] = lib.image[block.dk[p][rows].unsqueeze(-1), u]
        routed = spec.encode(spec.apply_routing(m, spec.decode(hist).reshape(-1, length, spec.length)))
        hits = lib.image[:, routed.reshape(n_nodes, combos)] == y  # (K, N, C)
        return hits.to(torch.float64).mean(-1).T

    def _prob_in(self, law: Tensor, skills: Tensor | None, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``P(f_k(W) in targets)`` for ``W`` with independent positions of law ``(N, n, A)``.

        ``skills`` is None for every skill (returns ``(N, K)``) or ``(N,)`` one skill per row
        (returns ``(N, 1)``). Rows whose law is uniform use the preimage counts; others enumerate the
        preimage when it fits the budget and are bounded by ``|preimage| * prod_i max q_i`` otherwise.
        """
        lib, spec = self._lib, self.spec
        n_nodes = law.shape[0]
        sizes = lib.counts[:, targets].sum(-1).to(torch.float64)  # (K,) |f_k^{-1}(targets)|
        share = sizes / spec.num_states
        lo = share.expand(n_nodes, -1).clone() if skills is None else share[skills].unsqueeze(-1)
        hi = lo.clone()
        uniform = (law - 1.0 / spec.alphabet).abs().amax((1, 2)) < 1e-12
        todo = (~uniform).nonzero(as_tuple=True)[0]
        if len(todo) == 0:
            return lo, hi
        peak = law.amax(-1).prod(-1)  # (N,) largest point probability
        if skills is not None:  # each row its own skill: one enumeration of every row's preimage
            counts = lib.counts[skills[todo].unsqueeze(-1), targets.unsqueeze(0)].to(torch.int64)  # (T, |targets|)
            per_row = counts.sum(-1)
            if int(per_row.sum()) * spec.length <= self.budget:
                starts = lib.start[skills[todo].unsqueeze(-1), targets.unsqueeze(0)]
                lengths = counts.reshape(-1)
                offsets = torch.repeat_interleave(starts.reshape(-1) - (lengths.cumsum(0) - lengths), lengths)
                owner = torch.repeat_interleave(torch.arange(len(todo)), per_row)
                codes = lib.order[skills[todo][owner], offsets + torch.arange(len(owner))].long()
                probs = law[todo[owner].unsqueeze(-1), torch.arange(spec.length), spec.decode(codes)].prod(-1)
                lo[todo, 0] = hi[todo, 0] = torch.zeros(len(todo), dtype=torch.float64).index_add_(0, owner, probs)
                return lo, hi
        groups = [(todo, None)] if skills is None else [(todo[skills[todo] == k], k) for k in skills[todo].unique()]
        for rows, k in groups:
            ks = (sizes > 0).nonzero(as_tuple=True)[0] if k is None else k.reshape(1)
            for chunk in [ks] if len(rows) * int(sizes[ks].sum()) * spec.length <= self.budget else ks.split(1):
                cols = chunk if skills is None else torch.zeros_like(chunk)
                total = int(sizes[chunk].sum())
                if total == 0:
                    continue
                if len(rows) * total * spec.length > self.budget:
                    lo[rows.unsqueeze(-1), cols] = 0.0
                    hi[rows.unsqueeze(-1), cols] = torch.clamp(peak[rows].unsqueeze(-1) * sizes[chunk], max=1.0)
                    continue
                codes, owner = lib.preimages(chunk, targets)
                digits = spec.decode(codes)  # (E, n)
                probs = law[rows][:, torch.arange(spec.length).unsqueeze(0), digits].prod(-1)  # (R, E)
                per = torch.zeros(len(rows), len(chunk), dtype=torch.float64).index_add_(1, owner, probs)
                lo[rows.unsqueeze(-1), cols] = per
                hi[rows.unsqueeze(-1), cols] = per
        return lo, hi

    def _derived(self, block: _Block, m: int, pos: int, y: int) -> tuple[Tensor, Tensor]:
        """``(N, K)`` bounds on ``P(f_k(rho_m(H)) = y)`` when ``rho_m`` reads one derived item ``D`` at ``pos``.

        ``Z_k`` = values ``z`` of ``D`` with ``f_k(rho_m(H[D := z])) = y`` (position-wise routing: a
        product of per-position symbol sets for each target input), then ``P(D in Z_k)`` by
        :meth:`_prob_in` on ``D``'s input law and skill.
        """
        spec, lib, a = self.spec, self._lib, self.spec.alphabet
        n_nodes = len(block.node)
        hist = spec.decode(block.hist)
        full = hist.unsqueeze(1).repeat(1, a, 1, 1)
        full[:, :, pos, :] = torch.arange(a).reshape(1, a, 1)
        out = spec.apply_routing(m, full.reshape(n_nodes * a, len(block.kinds), spec.length))
        table = out.reshape(n_nodes, a, spec.length).transpose(1, 2)  # (N, n, A): output symbol of z_i = s
        lo = torch.zeros(n_nodes, spec.num_skills, dtype=torch.float64)
        hi = lo.clone()
        uniq, group = torch.unique(table.reshape(n_nodes, -1), dim=0, return_inverse=True)
        for g in range(len(uniq)):
            rows = (group == g).nonzero(as_tuple=True)[0]
            tab = uniq[g].reshape(spec.length, a)
            for k in range(spec.num_skills):
                targets = lib.preimage(k, torch.tensor([y]))
                if len(targets) == 0:
                    continue
                zs = self._routing_preimage(tab, targets)
                if zs is None:  # too many values of D to enumerate: bound pointwise
                    hi[rows, k] = 1.0
                    continue
                if len(zs) == 0:
                    continue
                plo, phi = self._prob_in(block.dq[pos][rows], block.dk[pos][rows], zs)
                lo[rows, k], hi[rows, k] = plo[:, 0], phi[:, 0]
        return lo, hi

    def _routing_preimage(self, tab: Tensor, targets: Tensor) -> Tensor | None:
        """Distinct codes ``z`` with ``tab[i, z_i] == t_i`` for all ``i``, for some target ``t``; None if too many.

        Each target's solutions are a product of per-position symbol sets; they are listed together by
        a mixed-radix count over every target at once.
        """
        spec, a, n = self.spec, self.spec.alphabet, self.spec.length
        digits = spec.decode(targets)  # (T, n)
        # inv[i, v, j]: the j-th symbol s with tab[i, s] == v (padded), cnt[i, v]: how many
        order = torch.argsort(tab, dim=-1, stable=True)  # (n, A)
        cnt = torch.stack([torch.bincount(tab[i], minlength=a) for i in range(n)])  # (n, A)
        start = torch.nn.functional.pad(cnt.cumsum(-1), (1, 0))[:, :-1]  # (n, A)
        pos = torch.arange(n)
        per = cnt[pos, digits]  # (T, n) choices per position
        sizes = per.prod(-1)
        total = int(sizes.sum())
        if total > self.budget:
            return None
        if total == 0:
            return torch.zeros(0, dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(targets)), sizes)
        local = torch.arange(total) - (sizes.cumsum(0) - sizes)[owner]
        radix = per[owner]  # (E, n)
        place = torch.flip(torch.cumprod(torch.flip(radix, [1]), 1), [1])  # (E, n): prod of radix[i:]
        place = torch.cat([place[:, 1:], torch.ones_like(place[:, :1])], 1)  # prod of radix[i + 1:]
        digit = (local.unsqueeze(-1) // place) % radix  # (E, n)
        sym = order[pos, start[pos, digits[owner]] + digit]  # (E, n)
        weights = a ** torch.arange(n - 1, -1, -1)
        return torch.unique((sym * weights).sum(-1))


_EMPTY = torch.zeros(0)


def build_chunk(spec: Spec, budget: int, keys: list[tuple[bool, int, tuple[int, ...]]]) -> tuple[list[Any], int]:
    """Worker of :meth:`hlsm.infer.scalable.ScalableLikelihood`'s build: the structures of ``keys`` and
    their bounded-term count."""
    torch.set_num_threads(1)
    builder = TreeBuilder(spec, budget)
    return [builder.build(*k) for k in keys], builder.bounded_terms


def _merge_equal(
    node: Tensor, deepest: Tensor, route: Tensor, skill: Tensor, lo: Tensor, hi: Tensor
) -> tuple[int, tuple[Tensor, Tensor], Tensor]:
    """Merge the deepest nodes that carry the same entries (their weights add; the last factor is equal).

    Returns the number of merged nodes, ``(old deepest node -> merged node, entry -> its node with
    deepest nodes renumbered)``, and the entries to keep (one copy per merged node).
    """
    rows = deepest.nonzero(as_tuple=True)[0]
    count = int(node[rows].max()) + 1 if len(rows) else 0
    order = rows[np.lexsort((skill[rows].numpy(), route[rows].numpy(), node[rows].numpy()))]
    table = np.stack(
        [
            route[order].numpy(),
            skill[order].numpy(),
            lo[order].numpy().view(np.int64),
            hi[order].numpy().view(np.int64),
        ],
        1,
    )
    bounds = np.searchsorted(node[order].numpy(), np.arange(count + 1))
    ids: dict[bytes, int] = {}
    mapping = torch.tensor(
        [ids.setdefault(table[a:b].tobytes(), len(ids)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
        dtype=torch.long,
    )
    first = torch.full((len(ids),), count, dtype=torch.long).scatter_reduce(0, mapping, torch.arange(count), "amin")
    keep = torch.ones(len(node), dtype=torch.bool)
    keep[rows] = first[mapping[node[rows]]] == node[rows]
    renumbered = node.clone()
    renumbered[rows] = mapping[node[rows]]
    return len(ids), (mapping, renumbered), keep


def tail_start(shown: tuple[bool, ...]) -> int:
    """Index of the first of the hidden steps just before the last (shown) step (``len - 1`` if none)."""
    tail = len(shown) - 1
    while tail > 0 and not shown[tail - 1]:
        tail -= 1
    return max(tail, 0)

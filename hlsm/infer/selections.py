"""MAP selections per trace step: Pyro's ``infer_discrete`` on the enumerated HLSM.

Given parameters (fitted or true), the most probable joint assignment of every trace's discrete
latents — the routing selection ``R_l``, the skill selection ``K_l`` and the hidden intermediate
states — is found by max-product over the same enumerated model that is scored in
:func:`hlsm.infer.model.hlsm` (``infer_discrete(temperature=0)``). Traces are independent given the
parameters, so this is the joint MAP of each trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import infer_discrete
from torch import Tensor

from hlsm.infer.metrics import adjusted_rand_index, normalized_mutual_info
from hlsm.infer.model import HLSMParams, _observed_programs, _support, hlsm, trace_groups
from hlsm.programs import Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec


@dataclass(frozen=True, eq=False)
class Selections:
    """MAP latents of each trace step; ``-1`` marks no value (past the trace's depth, or no routing).

    Attributes
    ----------
    routing : Tensor
        ``(N, L_max)`` MAP routing module of each step (``-1`` for atomic traces).
    skill : Tensor
        ``(N, L_max)`` MAP skill module of each step.
    states : Tensor
        ``(N, L_max)`` codes of ``x_1 .. x_L``: the observed code where shown, the MAP code where hidden.
    """

    routing: Tensor
    skill: Tensor
    states: Tensor


def map_selections(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    corpus: Corpus,
    weights: Sequence[float] | Tensor | None = None,
) -> Selections:
    """The MAP routing and skill selection (and hidden state) of every step of every trace.

    Raises
    ------
    hlsm.infer.model.ModelError
        As :func:`hlsm.infer.model.hlsm`: a trace outside the support, a spec mismatch, an empty corpus.
    """
    programs, _ = _support(spec, support, weights, params.alpha.dtype)
    prog = _observed_programs(spec, corpus, programs)
    depth = [programs[p].depth for p in prog.tolist()]
    masks = [tuple(row[:d]) for row, d in zip(corpus.mask.tolist(), depth, strict=True)]
    groups, rows_of = trace_groups(programs, prog, masks)

    def model() -> None:
        hlsm(spec, params, support, weights, data=corpus)

    decoded = infer_discrete(model, first_available_dim=-2, temperature=0)
    with torch.no_grad():
        trace = poutine.trace(decoded).get_trace()
    n, width = len(corpus), corpus.programs.max_depth
    out = {name: torch.full((n, width), -1, dtype=torch.long) for name in ("R", "K", "x")}
    for g, key in enumerate(groups):
        d, atomic, _ = key
        rows = rows_of[key]
        for l in range(1, d + 1):
            for name in ("R", "K", "x"):
                if name == "R" and atomic:
                    continue
                value = trace.nodes[f"{name}_{g}_{l}"]["value"]
                out[name][rows, l - 1] = value.reshape(-1).long()
    return Selections(out["R"], out["K"], out["x"])


def selection_recovery(corpus: Corpus, selections: Selections) -> dict[str, float]:
    """ARI and NMI of the MAP selections against the true latents, over every step with a value.

    The truth is the corpus's program: symbol ``i`` denotes module ``i`` (the simulator's binding).
    Scores are label-free, so a fitted model whose modules are a relabelling of the truth scores 1.
    Returns ``skill_ari``, ``skill_nmi`` and, when some trace has a routing, ``routing_ari`` and
    ``routing_nmi``.
    """
    out: dict[str, float] = {}
    for name, true, got in (
        ("skill", corpus.programs.skill, selections.skill),
        ("routing", corpus.programs.routing, selections.routing),
    ):
        valid = (got >= 0) & (true[:, : got.shape[1]] >= 0)
        if not bool(valid.any()):
            continue
        t, p = true[:, : got.shape[1]][valid].numpy(), got[valid].numpy()
        out[f"{name}_ari"] = adjusted_rand_index(t, p)
        out[f"{name}_nmi"] = normalized_mutual_info(t, p)
    return out

"""The Pyro HLSM: one plain function that samples traces (``data=None``) or scores a corpus (``obs=``).

The generative cascade of ``theory/model.md``, for each trace:

- level 0, task: program index ``~ Cat(w)`` over the support, ``x_0 ~ Uniform(X)``;
- level 1, selections: ``R_l ~ Cat(beta[tau_l])`` (none for an atomic program) and
  ``K_l ~ Cat(alpha[sigma_l])``, where ``tau_l``/``sigma_l`` are the step's routing/skill symbols;
- level 2, trace: ``x_l ~ T_{K_l}[rho_{R_l}(x_0, ..., x_{l-1})]`` with
  ``T_k[u] = (1 - eps) delta_{f_k(u)} + eps / |X|`` (library skills) or a dense learned table.

Traces are grouped by (depth, atomic or not, exposure mask), one plate and one set of site names
(``R_{g}_{l}``, ``K_{g}_{l}``, ``x_{g}_{l}``) per group, so that every trace of a group has the same
observed steps; hidden states are enumerated, never masked with ``obs_mask`` (which would add a
spurious ``log |X|`` per masked element under enumeration). Groups are conditionally independent,
so they sit in ``pyro.markov(history=0)`` contexts and reuse enumeration dims.

The sampler and the scorer are one function of data, and the parameters and the noisy-state
distribution exist for it alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import TraceEnum_ELBO
from pyro.ops.indexing import Vindex
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.subsample_messenger import _Subsample
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.programs import Program, ProgramBatch
from hlsm.simulate import Corpus
from hlsm.spec import Spec
from hlsm.traces import exposure_mask

MAX_ENUMERATED_STATES = 4096
"""Largest ``|X|`` for which hidden intermediate states are enumerated."""

_ROW_TOL = 1e-6


class ModelError(HLSMError):
    """Parameters, support or data that the HLSM cannot use; the message names the fix."""


@dataclass(frozen=True, eq=False)
class HLSMParams:
    """Parameters of the HLSM (``theory/model.md``, section 2).

    Attributes
    ----------
    alpha : Tensor
        ``(num_skill_symbols, K)`` row-stochastic skill bindings: ``alpha[i, k] = P(K_l = k | sigma_l = i)``.
    beta : Tensor
        ``(num_routing_symbols, M)`` row-stochastic routing bindings.
    epsilon : float
        Corruption rate ``eps`` in ``(0, 1)`` of the library tables ``(1 - eps) delta_{f_k} + eps / |X|``.
    tables : Tensor or None
        ``(K, |X|, |X|)`` row-stochastic skill tables ``tables[k, u, x] = P(x_l = x | K_l = k, input u)``
        used instead of the library functions and ``epsilon``; ``None`` means library functions.
    """

    alpha: Tensor
    beta: Tensor
    epsilon: float
    tables: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            _check_stochastic(name, getattr(self, name), 2)
        if self.tables is not None:
            _check_stochastic("tables", self.tables, 3)
            if self.tables.shape[1] != self.tables.shape[2]:
                raise ModelError(f"tables must have shape (K, |X|, |X|), got {tuple(self.tables.shape)}")
        if not isinstance(self.epsilon, (int, float)) or not 0.0 < float(self.epsilon) < 1.0:
            raise ModelError(
                f"epsilon must be in the open interval (0, 1) so likelihoods are finite, got {self.epsilon}"
            )
        object.__setattr__(self, "epsilon", float(self.epsilon))

    @classmethod
    def truth(cls, spec: Spec, epsilon: float, dtype: torch.dtype = torch.float64) -> HLSMParams:
        """The true bindings: symbol ``i`` denotes module ``i`` (identity ``alpha`` and ``beta``)."""
        return cls(torch.eye(spec.num_skills, dtype=dtype), torch.eye(spec.num_routings, dtype=dtype), epsilon, None)

    def check(self, spec: Spec) -> HLSMParams:
        """Raise :class:`ModelError` unless the shapes fit ``spec``'s library; return self."""
        k, m, x = spec.num_skills, spec.num_routings, spec.num_states
        expected: dict[str, tuple[int, ...]] = {"alpha": (k, k), "beta": (m, m)}
        if self.tables is not None:
            expected["tables"] = (k, x, x)
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ModelError(
                    f"{name} has shape {got} but the spec needs {shape} "
                    f"({k} skills, {m} routings, |X| = {x}); build the params for this spec"
                )
        return self


def _check_stochastic(name: str, value: Any, ndim: int) -> None:
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.dim() != ndim:
        raise ModelError(f"{name} must be a floating-point tensor with {ndim} dimensions, got {value!r:.80}")
    value = value.detach()  # a check, not part of any gradient
    if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
        raise ModelError(f"{name} must hold finite non-negative probabilities")
    worst = float((value.sum(-1) - 1).abs().max())
    if worst > _ROW_TOL:
        raise ModelError(f"the rows of {name} must sum to 1 (worst row is off by {worst:.3g}); normalise them")


class NoisyState(dist.TorchDistribution):
    """A state that equals ``pred`` with probability ``1 - eps`` and is uniform on ``X`` otherwise.

    ``log_prob(x) = log((1 - eps) [x == pred] + eps / |X|)`` on codes ``x`` in ``[0, |X|)``; it needs
    no dense table, so fully observed traces of large instances can be scored. ``epsilon = 1``
    gives the uniform distribution (the task-level ``x_0``).

    Parameters
    ----------
    pred : Tensor
        Integer codes of the predicted states; its shape is the batch shape.
    epsilon : float
        Corruption rate in ``(0, 1]``.
    num_states : int
        ``|X|``.
    dtype : torch.dtype
        Floating dtype of ``log_prob``.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    has_enumerate_support = True

    def __init__(
        self,
        pred: Tensor,
        epsilon: float,
        num_states: int,
        dtype: torch.dtype = torch.float64,
        validate_args: bool | None = None,
    ) -> None:
        self.pred, self.epsilon, self.num_states, self.dtype = pred, float(epsilon), int(num_states), dtype
        super().__init__(batch_shape=pred.shape, event_shape=torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_states - 1)

    def expand(self, batch_shape: Any, _instance: Any = None) -> NoisyState:
        return NoisyState(self.pred.expand(batch_shape), self.epsilon, self.num_states, self.dtype)

    def sample(self, sample_shape: Any = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randint(self.num_states, shape, device=self.pred.device)
        corrupt = torch.rand(shape, device=self.pred.device) < self.epsilon
        return torch.where(corrupt, noise, self.pred.expand(shape))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        miss = self.epsilon / self.num_states
        hit, miss_t = (torch.tensor(math.log(p), dtype=self.dtype) for p in (1.0 - self.epsilon + miss, miss))
        return torch.where(value == self.pred, hit, miss_t)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = torch.arange(self.num_states, device=self.pred.device)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


def _route_all(spec: Spec, history: Sequence[Tensor]) -> Tensor:
    """Every routing on a broadcast history: codes ``(...)`` each -> ``(..., M)`` codes of ``rho_m(H)``."""
    digits = [spec.decode(h) for h in history]
    shape = torch.broadcast_shapes(*(d.shape for d in digits))
    stacked = torch.stack([d.expand(shape) for d in digits], dim=-2).reshape(-1, len(history), spec.length)
    outs = [spec.encode(spec.apply_routing(m, stacked)).reshape(shape[:-1]) for m in range(spec.num_routings)]
    return torch.stack(outs, dim=-1)


def _skill_all(spec: Spec, u: Tensor) -> Tensor:
    """Every skill on input codes ``(...)`` -> ``(..., K)`` output codes ``f_k(u)``."""
    flat = spec.decode(u.reshape(-1))
    outs = [spec.encode(spec.apply_skill(k, flat)).reshape(u.shape) for k in range(spec.num_skills)]
    return torch.stack(outs, dim=-1)


def _transition(spec: Spec, params: HLSMParams, u: Tensor, k: Tensor) -> dist.TorchDistribution:
    """``T_{K_l}[u]``: the distribution of ``x_l`` given the step's input codes and skill selection."""
    if params.tables is not None:
        return dist.Categorical(probs=Vindex(params.tables)[k, u])
    pred = Vindex(_skill_all(spec, u))[..., k]
    return NoisyState(pred, params.epsilon, spec.num_states, params.alpha.dtype)


def _cascade(
    spec: Spec,
    params: HLSMParams,
    group: int,
    steps: ProgramBatch,
    x0: Tensor,
    observed: Tensor | None,
    mask: tuple[bool, ...],
) -> list[Tensor]:
    """Levels 1 and 2 for one group of ``G`` traces of equal depth, atomicity and mask.

    ``steps`` holds ``(G, L)`` routing/skill indices (= symbol indices), ``x0`` is ``(G,)`` codes and
    ``observed`` ``(G, L)`` codes (read only where ``mask`` is True) or None to sample. Returns
    ``x_1 .. x_L`` (sampled, observed or enumerated values).
    """
    atomic = bool((steps.routing[:, 0] < 0).all())
    history = [x0]
    for l, shown in enumerate(mask):
        if atomic:
            u = x0
        else:
            beta = params.beta[steps.routing[:, l]]
            r = pyro.sample(f"R_{group}_{l + 1}", dist.Categorical(probs=beta), infer={"enumerate": "parallel"})
            u = Vindex(_route_all(spec, history))[..., r]
        alpha = params.alpha[steps.skill[:, l]]
        k = pyro.sample(f"K_{group}_{l + 1}", dist.Categorical(probs=alpha), infer={"enumerate": "parallel"})
        obs = observed[:, l] if observed is not None and shown else None
        x = pyro.sample(f"x_{group}_{l + 1}", _transition(spec, params, u, k), obs=obs, infer={"enumerate": "parallel"})
        history.append(x)
    return history[1:]


def _support(
    spec: Spec, support: Sequence[Program], weights: Sequence[float] | Tensor | None, dtype: torch.dtype
) -> tuple[list[Program], Tensor]:
    """The checked support and its normalised prior ``(len(support),)``."""
    programs = [p.check(spec) for p in support]
    if not programs:
        raise ModelError("the support is empty: give at least one program")
    if len(set(programs)) != len(programs):
        raise ModelError("the support lists a program twice; merge the duplicates (add their weights)")
    w = torch.ones(len(programs), dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
    if w.shape != (len(programs),) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ModelError("support weights must be non-negative, one per program, and not all zero")
    return programs, w / w.sum()


def _observed_programs(spec: Spec, data: Corpus, programs: list[Program]) -> Tensor:
    """``(N,)`` index of each trace's program in the support."""
    if data.spec != spec:
        raise ModelError("the corpus was made for another spec; score it with the spec it was simulated with")
    index = {p.steps: i for i, p in enumerate(programs)}
    out = []
    rows = zip(data.programs.routing.tolist(), data.programs.skill.tolist(), data.programs.depth.tolist(), strict=True)
    for i, (routing, skill, d) in enumerate(rows):
        steps = tuple(zip(routing[:d], skill[:d], strict=True))
        if steps not in index:
            raise ModelError(
                f"trace {i} uses program '{Program(steps).names(spec)}', which is not in the support; "
                "add it to the support or drop the trace"
            )
        out.append(index[steps])
    return torch.tensor(out, dtype=torch.long)


GroupKey = tuple[int, bool, tuple[bool, ...]]


def trace_groups(
    programs: Sequence[Program], prog: Tensor, masks: Sequence[tuple[bool, ...]]
) -> tuple[list[GroupKey], dict[GroupKey, Tensor]]:
    """The trace groups of the model: sorted ``(depth, atomic, mask)`` keys and each group's rows.

    Group ``g`` of :func:`hlsm` holds the traces ``rows_of[groups[g]]`` (in that order); its sites
    are named ``R_{g}_{l}``, ``K_{g}_{l}`` and ``x_{g}_{l}``.
    """
    keys = [(len(m), programs[p].is_atomic, m) for p, m in zip(prog.tolist(), masks, strict=True)]
    groups = sorted(set(keys))
    rows_of = {key: torch.tensor([i for i, k in enumerate(keys) if k == key]) for key in groups}
    return groups, rows_of


def hlsm(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    weights: Sequence[float] | Tensor | None = None,
    data: Corpus | None = None,
    num_traces: int | None = None,
    *,
    exposure: str = "full",
) -> Corpus | None:
    """The HLSM as a Pyro model: samples ``num_traces`` traces if ``data`` is None, else scores ``data``.

    Parameters
    ----------
    spec, params
        The instance and its parameters (bindings, corruption rate or tables).
    support, weights
        The task prior: programs and optional unnormalised weights (uniform by default).
    data
        A corpus whose programs all lie in the support; hidden steps (``data.mask`` False) are
        enumerated, which needs ``|X| <= MAX_ENUMERATED_STATES``.
    num_traces
        Number of traces to sample when ``data`` is None.
    exposure
        Exposure mask of the sampled corpus (``"full"``, ``"answer"``, ``"steps:1,3"``).

    Returns
    -------
    Corpus or None
        The sampled corpus (``states`` ``(N, L_max + 1, n)``, ``split`` ``"model"``), or None when scoring.

    Sites: ``program`` and ``x_0`` in plate ``traces``; ``R_{g}_{l}``, ``K_{g}_{l}``, ``x_{g}_{l}`` in
    plate ``traces_{g}`` for trace group ``g``. Use with ``max_plate_nesting=1``.
    """
    params.check(spec)
    programs, prior = _support(spec, support, weights, params.alpha.dtype)
    table = ProgramBatch.from_programs(programs)
    num_states = spec.num_states
    if data is None:
        if num_traces is None or num_traces < 1:
            raise ModelError("give num_traces >= 1 to sample, or data to score")
        n, prog_obs, x0_obs = num_traces, None, None
    elif len(data) == 0:
        raise ModelError("the corpus is empty: there is nothing to score")
    else:
        n, prog_obs, x0_obs = len(data), _observed_programs(spec, data, programs), spec.encode(data.states[:, 0])
    with pyro.plate("traces", n, dim=-1):
        prog = pyro.sample("program", dist.Categorical(probs=prior), obs=prog_obs)
        uniform = NoisyState(torch.zeros(n, dtype=torch.long), 1.0, num_states, params.alpha.dtype)
        x0 = pyro.sample("x_0", uniform, obs=x0_obs)
    depth = table.depth[prog]
    if data is None:
        masks = [exposure_mask(exposure, d) for d in depth.tolist()]
    else:
        masks = [tuple(row[:d]) for row, d in zip(data.mask.tolist(), depth.tolist(), strict=True)]
    groups, rows_of = trace_groups(programs, prog, masks)
    if data is not None and num_states > MAX_ENUMERATED_STATES and any(not all(m) for _, _, m in groups):
        raise ModelError(
            f"the corpus hides intermediate states, which are enumerated, but |X| = {num_states} exceeds "
            f"{MAX_ENUMERATED_STATES}; use a smaller spec or score fully observed traces only"
        )
    parts: list[tuple[Tensor, Tensor]] = []
    for g in pyro.markov(range(len(groups)), history=0):
        d, _, mask = groups[g]
        rows = rows_of[groups[g]]
        picked = table.index(prog[rows])
        steps = ProgramBatch(picked.routing[:, :d], picked.skill[:, :d], picked.depth)
        observed = None if data is None else spec.encode(data.states[rows, 1 : d + 1])
        with pyro.plate(f"traces_{g}", len(rows), dim=-1):
            xs = _cascade(spec, params, g, steps, x0[rows], observed, mask)
        if data is None:
            parts.append((rows, torch.stack(xs, dim=-1)))
    if data is not None:
        return None
    return _sampled_corpus(spec, table.index(prog), x0, parts, masks)


def _sampled_corpus(
    spec: Spec, batch: ProgramBatch, x0: Tensor, parts: list[tuple[Tensor, Tensor]], masks: list[tuple[bool, ...]]
) -> Corpus:
    """Assemble sampled groups into a corpus; slots past a trace's depth repeat its answer."""
    width = batch.max_depth
    codes = x0.unsqueeze(-1).repeat(1, width + 1)
    for rows, xs in parts:
        d = xs.shape[-1]
        codes[rows, 1 : d + 1] = xs
        codes[rows, d + 1 :] = xs[:, -1:]
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for i, m in enumerate(masks):
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return Corpus(spec, batch, spec.decode(codes), mask, ("model",) * len(batch))


def sample(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    num_traces: int,
    seed: int,
    *,
    weights: Sequence[float] | Tensor | None = None,
    exposure: str = "full",
) -> Corpus:
    """Draw ``num_traces`` traces from :func:`hlsm` with its own seeded RNG (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        corpus = hlsm(spec, params, support, weights, None, num_traces, exposure=exposure)
    assert corpus is not None
    return corpus


class _EnumerationCheck(Messenger):
    """Records latent sample sites that were not enumerated (they would be sampled, not summed out)."""

    def __init__(self) -> None:
        super().__init__()
        self.missed: list[str] = []

    def _pyro_post_sample(self, msg: Message) -> None:
        if isinstance(msg["fn"], _Subsample) or msg["is_observed"]:
            return
        if (msg["infer"] or {}).get("_enumerate_dim") is None:
            self.missed.append(str(msg["name"]))


def enumerated_log_likelihood(model: Any) -> float:
    """``-TraceEnum_ELBO.loss`` with an empty guide: the exact log evidence if every latent is enumerated."""
    check = _EnumerationCheck()
    with warnings.catch_warnings():
        # an unenumerated latent also trips Pyro's model/guide match warning; the error below says more
        warnings.filterwarnings("ignore", message="Found vars in model but not guide", category=UserWarning)
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(check(model), lambda: None)
    if check.missed:
        raise ModelError(f"latent site(s) {check.missed} were sampled instead of enumerated; mark them enumerable")
    return -float(loss)


def log_likelihood(
    spec: Spec,
    params: HLSMParams,
    support: Sequence[Program],
    corpus: Corpus,
    weights: Sequence[float] | Tensor | None = None,
) -> float:
    """``log p(corpus)`` under the HLSM, every selection and hidden state summed out.

    The sum over the task prior, ``x_0``'s uniform density, the selections and the hidden states;
    computed by ``TraceEnum_ELBO(max_plate_nesting=1)`` with an empty guide (use float64 params for
    a precise value). :func:`hlsm.infer.exact.log_likelihood` is the brute-force oracle it is tested against.
    """
    if len(corpus) == 0:
        return 0.0
    return enumerated_log_likelihood(lambda: hlsm(spec, params, support, weights, data=corpus))

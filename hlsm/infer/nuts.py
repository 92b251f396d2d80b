"""A NUTS gold standard for tiny H-lib instances: the exact posterior of the bindings, as ArviZ data.

The model (``theory/model.md``, section 2, with a prior on the parameters)::

    alpha[i] ~ Dirichlet(c 1_K)      for each skill symbol i     (num_skill_symbols, K)
    beta[j]  ~ Dirichlet(c 1_M)      for each routing symbol j   (num_routing_symbols, M)
    eps      ~ Beta(1, 1)            unless NUTSConfig.epsilon fixes it
    corpus   ~ hlsm(spec, HLSMParams(alpha, beta, eps), support)

The per-step selections ``R_*``/``K_*`` and the hidden intermediate states of :func:`hlsm.infer.model.hlsm`
are summed out by parallel enumeration inside NUTS' potential energy, so NUTS moves only on the
continuous ``alpha``, ``beta`` (and ``eps``). A fixed ``eps`` uses the library tables through
:class:`~hlsm.infer.model.NoisyState`; a learned one goes through the dense tables
:func:`hlsm.infer.likelihood.library_tables`, because ``HLSMParams.epsilon`` is a plain float and would
cut the gradient. Chains run one after another (no multiprocessing), each with its own seed, and
the draws are exported with ``arviz.from_dict`` to an ``InferenceData`` with ``(chain, draw, ...)``
arrays. Tiny instances only: every NUTS leapfrog step rescores the whole corpus with Pyro.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.infer.mcmc import MCMC, NUTS
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.infer.likelihood import library_tables
from hlsm.infer.metrics import tv_distance
from hlsm.infer.model import HLSMParams, ModelError, enumerated_log_likelihood, hlsm
from hlsm.infer.predictive import answer_distributions, answer_likelihood
from hlsm.io import atomic_path
from hlsm.programs import Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

with warnings.catch_warnings():
    # arviz 0.2x announces its 1.0 refactor with a FutureWarning on import; nothing here is affected
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

SITES = ("alpha", "beta", "epsilon")
"""Continuous sample sites of the NUTS model (``epsilon`` only when it is learned)."""

_PLACEHOLDER_EPSILON = 0.5
"""``HLSMParams.epsilon`` while learned: unused, the dense ``tables`` built from the sampled eps replace it."""


class NUTSError(HLSMError):
    """A NUTS configuration or run that cannot give a trustworthy posterior; the message names the fix."""


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of :func:`run_nuts`.

    Attributes
    ----------
    chains : int
        Independent chains, run one after another; at least 2 so that ``r_hat`` is defined.
    warmup, samples : int
        Adaptation steps (discarded) and kept draws per chain.
    seed : int
        Chain ``c`` runs with ``pyro.set_rng_seed(seed + c)``.
    concentration : float
        ``c`` of the symmetric Dirichlet prior on each row of ``alpha`` and ``beta`` (1 = uniform).
    epsilon : float or None
        Fixed corruption rate in ``(0, 1)``, or None to learn it under a uniform ``Beta(1, 1)`` prior
        (the simulator's ``eps`` is small, but a flat prior keeps the gold standard assumption-light).
    target_accept, max_tree_depth : float, int
        NUTS' target acceptance probability in ``(0, 1)`` and tree-depth cap (``2**depth`` leapfrog steps).
    progress : bool
        Show Pyro's progress bar.
    """

    chains: int = 2
    warmup: int = 200
    samples: int = 200
    seed: int = 0
    concentration: float = 1.0
    epsilon: float | None = None
    target_accept: float = 0.8
    max_tree_depth: int = 6
    progress: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.chains, int) or self.chains < 2:
            raise NUTSError(f"chains must be an int >= 2 so that r_hat is defined, got {self.chains!r}; use chains=2")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise NUTSError(f"warmup must be an int >= 0, got {self.warmup!r}; use e.g. warmup=200")
        if not isinstance(self.samples, int) or self.samples < 4:
            raise NUTSError(f"samples must be an int >= 4 (ESS and r_hat need draws), got {self.samples!r}")
        if not self.concentration > 0:
            raise NUTSError(f"concentration must be > 0 (Dirichlet prior), got {self.concentration!r}; use 1.0")
        if self.epsilon is not None and not 0.0 < float(self.epsilon) < 1.0:
            raise NUTSError(f"epsilon must lie in (0, 1) or be None to learn it, got {self.epsilon!r}")
        if not 0.0 < self.target_accept < 1.0:
            raise NUTSError(f"target_accept must lie in (0, 1), got {self.target_accept!r}; use 0.8")
        if not isinstance(self.max_tree_depth, int) or self.max_tree_depth < 1:
            raise NUTSError(f"max_tree_depth must be an int >= 1, got {self.max_tree_depth!r}; use 6")


def nuts_model(spec: Spec, corpus: Corpus, support: Sequence[Program], config: NUTSConfig) -> Callable[[], None]:
    """The Bayesian H-lib model: Dirichlet rows, optional Beta eps, then the enumerated :func:`hlsm`.

    All tensors are float64. Sites ``alpha`` ``(num_skill_symbols, K)``, ``beta``
    ``(num_routing_symbols, M)`` (each row one ``Dirichlet(c)`` event) and, when learned, ``epsilon``
    ``()``; the rest are the enumerated sites of :func:`hlsm.infer.model.hlsm` (``max_plate_nesting=1``).
    """
    k, m = spec.num_skills, spec.num_routings
    c = torch.tensor(float(config.concentration), dtype=torch.float64)
    onehot = library_tables(spec, 0.0)  # (K, X, X) float64 indicator [x == f_k(u)]

    def model() -> None:
        alpha = pyro.sample("alpha", dist.Dirichlet(c.expand(k, k)).to_event(1))
        beta = pyro.sample("beta", dist.Dirichlet(c.expand(m, m)).to_event(1))
        if config.epsilon is None:
            eps = pyro.sample(
                "epsilon", dist.Beta(torch.ones((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
            )
            params = HLSMParams(alpha, beta, _PLACEHOLDER_EPSILON, library_tables(spec, eps, onehot=onehot))
        else:
            params = HLSMParams(alpha, beta, float(config.epsilon), None)
        hlsm(spec, params, support, data=corpus)

    return model


def check_enumerated(model: Callable[[], None], values: dict[str, Tensor]) -> float:
    """Score ``model`` with its continuous sites fixed to ``values``; return ``log p(corpus, values)``.

    The value is the log joint density: the log evidence of the corpus (every discrete site summed
    out) plus the prior log densities of the conditioned sites.

    The model is enumerated as NUTS enumerates it (``config_enumerate``, parallel), so this raises
    :class:`NUTSError` when a latent discrete site would be *sampled* inside the potential energy
    (NUTS would then silently target a random function), or when the log evidence is not finite.
    """
    conditioned = poutine.condition(model, data=values)
    try:
        value = enumerated_log_likelihood(config_enumerate(conditioned))
    except ModelError as err:
        raise NUTSError(f"the NUTS model cannot sum out its discrete sites: {err}") from err
    if not np.isfinite(value):
        raise NUTSError(f"the log joint density is {value} at the initial parameters; check the support and eps")
    return value


def _initial_values(spec: Spec, config: NUTSConfig) -> dict[str, Tensor]:
    """Uniform bindings (and ``eps = 0.5``): a point of positive density for :func:`check_enumerated`."""
    out = {
        "alpha": torch.full((spec.num_skills,) * 2, 1.0 / spec.num_skills, dtype=torch.float64),
        "beta": torch.full((spec.num_routings,) * 2, 1.0 / spec.num_routings, dtype=torch.float64),
    }
    if config.epsilon is None:
        out["epsilon"] = torch.tensor(0.5, dtype=torch.float64)
    return out


@dataclass(frozen=True)
class NUTSResult:
    """Draws of a :func:`run_nuts` run.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (``alpha`` ``(chain, draw, skill_symbol, skill)``, ``beta`` ``(chain, draw,
        routing_symbol, routing)``, ``epsilon`` ``(chain, draw)``), ``sample_stats.diverging``
        ``(chain, draw)``; ``attrs`` hold the spec and config as JSON.
    samples : dict of str to Tensor
        The same draws as float64 tensors ``(chain, draw, ...)``; a fixed ``epsilon`` is repeated.
    spec, config
        The instance and the settings of the run.
    """

    idata: Any
    samples: dict[str, Tensor]
    spec: Spec
    config: NUTSConfig

    @property
    def num_draws(self) -> int:
        """Draws over all chains, ``chain * draw``."""
        return int(self.samples["alpha"].shape[0] * self.samples["alpha"].shape[1])

    def params(self, index: int) -> HLSMParams:
        """The parameters of flat draw ``index`` (chain-major, in ``[0, num_draws)``)."""
        flat = {k: v.reshape(self.num_draws, *v.shape[2:])[index] for k, v in self.samples.items()}
        return HLSMParams(flat["alpha"], flat["beta"], float(flat["epsilon"]), None)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{site: {"r_hat_max": ..., "ess_bulk_min": ...}}`` over the site's entries (rank r_hat, bulk ESS)."""
        names = [n for n in SITES if n in self.idata.posterior]
        rhat, ess = az.rhat(self.idata, var_names=names), az.ess(self.idata, var_names=names, method="bulk")
        return {
            n: {"r_hat_max": float(np.max(rhat[n].values)), "ess_bulk_min": float(np.min(ess[n].values))} for n in names
        }

    def save(self, path: str | Path) -> Path:
        """Write ``idata`` as netCDF (h5netcdf) atomically: a temporary file beside ``path``, then a rename."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.idata.to_netcdf(tmp)
        return path


def _run_chain(model: Callable[[], None], config: NUTSConfig, chain: int) -> tuple[dict[str, Tensor], Tensor]:
    """One chain: ``({site: (draw, ...)}, diverging (draw,) bool)``."""
    pyro.set_rng_seed(config.seed + chain)
    kernel = NUTS(
        model,
        max_plate_nesting=1,
        target_accept_prob=config.target_accept,
        max_tree_depth=config.max_tree_depth,
        jit_compile=False,
    )
    mcmc = MCMC(
        kernel,
        num_samples=config.samples,
        warmup_steps=config.warmup,
        num_chains=1,
        disable_progbar=not config.progress,
    )
    try:
        mcmc.run()
    except ModelError as err:  # HLSMParams refused a non-finite or off-simplex draw
        raise NUTSError(
            f"chain {chain} left the parameter space ({err}); raise target_accept or warmup, or fix epsilon"
        ) from err
    draws = {k: v.detach().to(torch.float64) for k, v in mcmc.get_samples().items()}
    diverging = torch.zeros(config.samples, dtype=torch.bool)
    for step in mcmc.diagnostics().get("divergences", {}).get("chain 0", []):
        if 0 <= int(step) < config.samples:
            diverging[int(step)] = True
    return draws, diverging


def run_nuts(spec: Spec, corpus: Corpus, support: Sequence[Program], config: NUTSConfig | None = None) -> NUTSResult:
    """Sample the posterior of ``alpha``, ``beta`` (and ``eps``) given ``corpus`` with NUTS.

    Parameters
    ----------
    spec, corpus, support
        A tiny instance (every step's selections and hidden states are enumerated per leapfrog step),
        its traces and the task prior's support (uniform weights).
    config
        :class:`NUTSConfig`; the default is ``NUTSConfig()``.

    Returns
    -------
    NUTSResult
        Draws stacked as ``(chain, draw, ...)`` and their ``InferenceData``.

    Raises
    ------
    NUTSError
        If a discrete latent site would not be enumerated, the corpus has zero likelihood at uniform
        bindings, or a chain leaves the parameter space.
    """
    config = NUTSConfig() if config is None else config
    model = nuts_model(spec, corpus, support, config)
    check_enumerated(model, _initial_values(spec, config))
    chains = [_run_chain(model, config, c) for c in range(config.chains)]
    samples = {k: torch.stack([draws[k] for draws, _ in chains]) for k in chains[0][0]}
    if "epsilon" not in samples:
        samples["epsilon"] = torch.full(
            (config.chains, config.samples), float(config.epsilon or 0.0), dtype=torch.float64
        )
    diverging = torch.stack([d for _, d in chains])
    return NUTSResult(_to_inference_data(spec, samples, diverging, config), samples, spec, config)


def _to_inference_data(spec: Spec, samples: dict[str, Tensor], diverging: Tensor, config: NUTSConfig) -> Any:
    """``arviz.from_dict`` with named symbol/module coordinates (a fixed eps is left out of the posterior)."""
    posterior = {k: v.numpy() for k, v in samples.items() if k != "epsilon" or config.epsilon is None}
    coords = {
        "skill_symbol": list(spec.skill_symbols),
        "skill": list(spec.skills),
        "routing_symbol": list(spec.routing_symbols),
        "routing": list(spec.routings),
    }
    dims = {"alpha": ["skill_symbol", "skill"], "beta": ["routing_symbol", "routing"]}
    attrs = {"spec": json.dumps(spec.to_dict()), "nuts_config": json.dumps(asdict(config)), "inference": "NUTS (Pyro)"}
    return az.from_dict(
        posterior=posterior,
        sample_stats={"diverging": diverging.numpy()},
        coords=coords,
        dims=dims,
        attrs=attrs,
    )


def _thinned(result: NUTSResult, max_draws: int) -> list[int]:
    """At most ``max_draws`` flat draw indices, evenly spread over every chain."""
    if max_draws < 1:
        raise NUTSError(f"max_draws must be >= 1, got {max_draws}")
    n = result.num_draws
    return sorted(set(np.linspace(0, n - 1, min(n, max_draws)).round().astype(int).tolist()))


def posterior_predictive(
    spec: Spec,
    result: NUTSResult,
    programs: Sequence[Program],
    inputs: Tensor | None = None,
    max_draws: int = 200,
) -> Tensor:
    """``(P, B, |X|)`` posterior predictive answers: the mean over draws of ``answer_distribution``.

    ``p(a | pi, x_0, D) ~= (1/S) sum_s p(a | pi, x_0, theta_s)`` over ``S <= max_draws`` draws, evenly
    thinned; equal to averaging :func:`hlsm.infer.predictive.answer_distribution` per draw, with each
    program's answer corpus built once. ``inputs`` is ``(B, n)`` (default every state of ``X``).
    """
    if not programs:
        raise NUTSError("give at least one program to predict")
    inputs = spec.all_states() if inputs is None else inputs
    picks = [result.params(i) for i in _thinned(result, max_draws)]
    out = []
    for program in programs:
        lik = answer_likelihood(spec, program, inputs)
        probs = torch.stack([lik.per_trace(p.alpha, p.beta, p.epsilon).exp() for p in picks]).mean(0)
        out.append(probs.reshape(inputs.shape[0], spec.num_states))
    return torch.stack(out)


def compare_with_point(
    spec: Spec,
    result: NUTSResult,
    params_point: HLSMParams,
    programs: Sequence[Program],
    inputs: Tensor | None = None,
    max_draws: int = 200,
) -> dict[str, Any]:
    """Compare a point estimate (SVI/MAP) with the NUTS posterior.

    Returns
    -------
    dict
        ``tv_per_program`` (list of ``P`` mean TV distances between the posterior predictive and the
        point predictive over inputs), ``tv_mean``, ``alpha_max_abs`` / ``beta_max_abs`` (largest
        ``|E[theta | D] - theta_point|``), ``argmax_agreement`` (fraction of ``(program, input)`` pairs
        whose most likely answers agree) and ``argmax_agree`` (True when all do).
    """
    params_point.check(spec)
    nuts = posterior_predictive(spec, result, programs, inputs, max_draws).numpy()
    point = answer_distributions(spec, params_point, programs, inputs).to(torch.float64).numpy()
    tv = tv_distance(nuts, point)  # (P, B)
    agree = nuts.argmax(-1) == point.argmax(-1)
    means = {k: result.samples[k].mean((0, 1)) for k in ("alpha", "beta")}
    return {
        "tv_per_program": [float(v) for v in tv.mean(-1)],
        "tv_mean": float(tv.mean()),
        "alpha_max_abs": float((means["alpha"] - params_point.alpha.detach().double()).abs().max()),
        "beta_max_abs": float((means["beta"] - params_point.beta.detach().double()).abs().max()),
        "argmax_agreement": float(agree.mean()),
        "argmax_agree": bool(agree.all()),
    }

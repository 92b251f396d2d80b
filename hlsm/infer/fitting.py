"""Fitting the HLSM: MAP estimation of bindings and dense skill tables by gradient ascent.

Parameters are softmax logits: ``alpha = softmax(a)`` ``(K_sym, K)``, ``beta = softmax(b)``
``(M_sym, M)``, and, for the skill tables, one of two hypothesis classes (``theory/identifiability.md``):

- ``tables="dense"`` (H-tab): ``tables = softmax(t)`` ``(K, |X|, |X|)``, any stochastic map; no
  separate corruption rate is learned, the tables absorb it;
- ``tables="library"`` (H-lib): the library skills' tables ``(1 - eps) onehot(f_k) + eps / |X|``
  with a learned corruption rate ``eps = sigmoid(e)``.

The objective to maximise is

    log p(corpus | alpha, beta, tables) + (c - 1) * (sum log alpha + sum log beta [+ sum log tables])

(a symmetric Dirichlet(c) log-prior on every row of the learned probability tables, up to a
constant; ``c = 1`` is maximum likelihood; ``eps`` has a flat prior). Two interchangeable ways to
compute it: ``objective="fast"`` uses
:class:`hlsm.infer.likelihood.CorpusLikelihood`; ``objective="pyro"`` runs ``pyro.infer.SVI`` with
``TraceEnum_ELBO(max_plate_nesting=1)`` and an empty guide over the enumerated :func:`hlsm.infer.model.hlsm`
(its loss is minus the same objective). Each of ``restarts`` random restarts is an Adam loop.

Library tables over more than ``MAX_DENSE_STATES`` states (the default library has ``|X| = 262,144``)
are fitted with :class:`hlsm.infer.scalable.ScalableLikelihood` instead (also ``objective="scalable"``
at any size): no table is built, and where that likelihood bounds a term the fit maximises its
certified lower bound and reports the interval's width at the estimate (``interval_width``).

The config, both objectives and the restart loop share the parameterisation above, and the two
objectives are tested equal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO
from torch import Tensor

from hlsm.infer import fitstate
from hlsm.infer.fitstate import FitError
from hlsm.infer.likelihood import MAX_DENSE_STATES, CorpusLikelihood, library_tables
from hlsm.infer.model import HLSMParams, enumerated_log_likelihood, hlsm
from hlsm.infer.scalable import ScalableLikelihood
from hlsm.programs import Program
from hlsm.runtime import progress_bar
from hlsm.simulate import Corpus
from hlsm.spec import Spec

TableClass = Literal["dense", "library"]

PARAM_NAMES: dict[str, tuple[str, str, str]] = {
    "dense": ("alpha", "beta", "tables"),
    "library": ("alpha", "beta", "epsilon"),
}
"""The fitted parameters of each table class, in the order of their logits."""

PLACEHOLDER_EPSILON = 0.1
"""``epsilon`` of a dense-table :class:`HLSMParams`; unused, since the dense ``tables`` replace it."""

INITIAL_EPSILON_LOGIT = -2.0
"""Centre of the initial ``logit(eps)`` of library tables (``eps ~ 0.12``)."""


class FitDivergedError(FitError):
    """The loss became NaN or infinite; the fit stopped and kept the state it reached.

    Attributes
    ----------
    restart : int
        Index of the restart that diverged.
    step : int
        Optimisation step at which the non-finite loss appeared.
    bad : tuple of str
        Names of the parameters (``alpha``, ``beta``, ``tables`` or ``epsilon``) with non-finite values.
    logits : dict of str to Tensor
        The (detached) logits reached.
    history : tuple of float
        Losses up to (not including) the non-finite one.
    """

    def __init__(
        self,
        message: str,
        restart: int,
        step: int,
        bad: tuple[str, ...],
        logits: dict[str, Tensor],
        history: list[float],
    ) -> None:
        super().__init__(message)
        self.restart, self.step, self.bad = restart, step, bad
        self.logits, self.history = logits, tuple(history)


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit` (validated on construction).

    Attributes
    ----------
    steps : int
        Maximum number of Adam steps per restart (>= 1).
    lr : float
        Adam learning rate (> 0; ``inf`` is accepted so divergence can be exercised).
    restarts : int
        Number of random restarts (>= 1).
    seed : int
        Seed from which each restart's seed is derived (``numpy.random.SeedSequence``).
    objective : "fast", "scalable" or "pyro"
        The fast exact likelihood (the scalable one for library tables over more than
        ``MAX_DENSE_STATES`` states), the scalable one at any size (library tables only), or Pyro
        SVI with ``TraceEnum_ELBO`` and an empty guide.
    tables : "dense" or "library"
        Learn dense skill tables (H-tab) or the library tables' corruption rate (H-lib).
    concentration : float
        Symmetric Dirichlet concentration ``c >= 1`` of every row of alpha, beta and the tables.
    data_weight : float
        Each trace counts as this many copies (``> 0``; the log-likelihood is multiplied by it). A
        population-limit corpus lists each ``(program, x_0)`` once; a large weight (e.g. 1000) makes
        the prior negligible where the data speak, as infinite data would.
    tol : float
        Convergence: stop when ``|loss[t - window] - loss[t]| <= tol * max(1, |loss[t]|)``;
        ``0`` never stops early.
    window : int
        Window of the convergence criterion in steps (>= 1).
    init_scale : float
        Standard deviation of the normal initial logits (>= 0).
    progress : bool
        Show a tqdm progress bar.
    workers : int
        Processes that build the scalable likelihood (>= 1; it does not change the result).
    """

    steps: int = 2000
    lr: float = 0.05
    restarts: int = 4
    seed: int = 0
    objective: Literal["fast", "scalable", "pyro"] = "fast"
    tables: TableClass = "dense"
    concentration: float = 1.0
    data_weight: float = 1.0
    tol: float = 1e-7
    window: int = 50
    init_scale: float = 1.0
    progress: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "restarts", "seed", "window", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FitError(f"{name} must be an integer, got {value!r}")
        if self.steps < 1 or self.restarts < 1 or self.window < 1 or self.workers < 1:
            raise FitError(
                f"steps, restarts, window and workers must be >= 1, got {self.steps}, {self.restarts}, "
                f"{self.window}, {self.workers}"
            )
        if self.seed < 0:
            raise FitError(f"seed must be non-negative, got {self.seed}")
        if self.objective not in ("fast", "scalable", "pyro"):
            raise FitError(f"objective must be 'fast', 'scalable' or 'pyro', got {self.objective!r}")
        if self.tables not in PARAM_NAMES:
            raise FitError(f"tables must be 'dense' or 'library', got {self.tables!r}")
        if self.objective == "scalable" and self.tables != "library":
            raise FitError("objective 'scalable' fits library tables only; set tables = 'library'")
        for name in ("lr", "concentration", "data_weight", "tol", "init_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise FitError(f"{name} must be a number, got {value!r}")
        if not self.lr > 0:
            raise FitError(f"lr must be positive, got {self.lr}")
        if not math.isfinite(self.concentration) or self.concentration < 1:
            raise FitError(f"concentration must be a finite number >= 1 (1 = no prior), got {self.concentration}")
        if not math.isfinite(self.data_weight) or self.data_weight <= 0:
            raise FitError(f"data_weight must be a finite number > 0, got {self.data_weight}")
        if not math.isfinite(self.tol) or self.tol < 0:
            raise FitError(f"tol must be finite and >= 0, got {self.tol}")
        if not math.isfinite(self.init_scale) or self.init_scale < 0:
            raise FitError(f"init_scale must be finite and >= 0, got {self.init_scale}")


@dataclass(frozen=True, eq=False)
class RestartResult:
    """One restart: final probabilities, loss history and final values.

    ``tables`` are the ``(K, |X|, |X|)`` skill tables in both classes (the library tables at the
    learned ``epsilon`` for ``tables="library"``, where ``epsilon`` is set; None for dense tables),
    or None for library tables fitted with the scalable likelihood (too large to build).
    ``interval_width`` is that likelihood's certified interval width at the final parameters (0
    when every term is exact; None for the other likelihoods, which are exact).
    ``history[t]`` is the loss (minus the objective) before step ``t``; ``objective`` and
    ``log_likelihood`` are evaluated at the final parameters
    (``objective = data_weight * log_likelihood + log prior``).
    """

    seed: int
    alpha: Tensor
    beta: Tensor
    tables: Tensor | None
    history: tuple[float, ...]
    converged: bool
    log_likelihood: float
    objective: float
    epsilon: float | None = None
    interval_width: float | None = None


@dataclass(frozen=True, eq=False)
class FitResult:
    """All restarts of a fit; ``best`` indexes the restart with the highest final objective."""

    config: FitConfig
    restarts: tuple[RestartResult, ...]
    best: int

    @property
    def spread(self) -> float:
        """Standard deviation (ddof = 0) of the restarts' final objectives."""
        return float(np.std([r.objective for r in self.restarts]))

    def params(self, i: int | None = None) -> HLSMParams:
        """The fitted parameters of restart ``i`` (default: the best): dense ``tables``, or ``epsilon``."""
        r = self.restarts[self.best if i is None else i]
        if r.epsilon is not None:
            return HLSMParams(r.alpha, r.beta, r.epsilon, None)
        return HLSMParams(r.alpha, r.beta, PLACEHOLDER_EPSILON, r.tables)


def log_prior(logits: Sequence[Tensor], concentration: float) -> Tensor:
    """``(c - 1) * sum log p`` over every row ``p = softmax(logits)``."""
    total = sum((torch.log_softmax(v, -1).sum() for v in logits), torch.zeros((), dtype=logits[0].dtype))
    return (concentration - 1.0) * total


def _shapes(spec: Spec, tables: TableClass) -> tuple[tuple[int, ...], ...]:
    k, m, x = spec.num_skills, spec.num_routings, spec.num_states
    return ((k, k), (m, m), (k, x, x) if tables == "dense" else ())


def _prior(logits: Sequence[Tensor], config: FitConfig) -> Tensor:
    """The Dirichlet log-prior of the fitted probability tables (``epsilon``'s prior is flat)."""
    return log_prior(logits if config.tables == "dense" else logits[:2], config.concentration)


def _probs(spec: Spec, logits: Sequence[Tensor], tables: TableClass) -> tuple[Tensor, Tensor, Tensor]:
    """``(alpha, beta, tables)`` from the logits; library tables are differentiable in ``epsilon``."""
    a, b = torch.softmax(logits[0], -1), torch.softmax(logits[1], -1)
    if tables == "dense":
        return a, b, torch.softmax(logits[2], -1)
    return a, b, library_tables(spec, torch.sigmoid(logits[2]))


def _restart_seeds(config: FitConfig) -> list[int]:
    children = np.random.SeedSequence(config.seed).spawn(config.restarts)
    return [int(c.generate_state(1)[0]) for c in children]


def _init_logits(spec: Spec, seed: int, config: FitConfig) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = [config.init_scale * torch.randn(s, generator=gen, dtype=torch.float64) for s in _shapes(spec, config.tables)]
    if config.tables == "library":
        out[2] = out[2] + INITIAL_EPSILON_LOGIT
    return out


def _diverged(
    restart: int, step: int, loss: float, logits: list[Tensor], history: list[float], tables: TableClass
) -> FitDivergedError:
    detached = {n: v.detach().clone() for n, v in zip(PARAM_NAMES[tables], logits, strict=True)}
    bad = tuple(n for n, v in detached.items() if not bool(torch.isfinite(v).all()))
    if bad:
        what = f"non-finite values in {', '.join(bad)}"
    else:
        bad = tuple(n for n, v in detached.items() if bool((torch.softmax(v, -1) == 0).any()))
        what = f"probabilities that underflowed to 0 in {', '.join(bad) or 'no parameter'}"
    return FitDivergedError(
        f"restart {restart} diverged at step {step}: the loss is {loss} and the parameters hold {what}; "
        "lower lr or raise concentration",
        restart,
        step,
        bad,
        detached,
        history,
    )


def _converged(history: list[float], config: FitConfig) -> bool:
    if config.tol == 0 or len(history) <= config.window:
        return False
    now, before = history[-1], history[-1 - config.window]
    return abs(before - now) <= config.tol * max(1.0, abs(now))


def fit(
    spec: Spec,
    corpus: Corpus,
    support: Sequence[Program],
    config: FitConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
) -> FitResult:
    """Fit alpha, beta and the skill tables to ``corpus`` by ``config.restarts`` random restarts.

    With ``checkpoint``, the finished restarts and the running one (logits, Adam state, loss
    history; every ``checkpoint_every`` steps with the fast objective, at restart boundaries with
    Pyro's) are saved there atomically, and a fit that finds a checkpoint of the same config and
    corpus resumes from it: a killed fit ends with exactly the result of an uninterrupted one.

    Raises
    ------
    FitError
        Bad configuration; :class:`FitDivergedError` if a loss becomes NaN or infinite.
    hlsm.infer.model.ModelError
        (objective ``"pyro"``) if a latent site of the model is not enumerated.
    """
    config = FitConfig() if config is None else config
    if not isinstance(config, FitConfig):
        raise FitError(f"config must be a FitConfig, got {type(config).__name__}")
    if len(corpus) == 0:
        raise FitError("the corpus is empty: there is nothing to fit")
    if checkpoint_every < 1:
        raise FitError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    support = list(support)
    lik = likelihood_for(spec, support, corpus, config)
    key = fitstate.state_key(config, corpus, support)
    state = fitstate.load_state(checkpoint, key) if checkpoint is not None else None
    results: list[RestartResult] = [RestartResult(**d) for d in state["done"]] if state else []
    current = state["current"] if state else None

    def save(running: dict[str, Any] | None) -> None:
        if checkpoint is not None:
            done = [{f: getattr(r, f) for f in RestartResult.__dataclass_fields__} for r in results]
            fitstate.save_state(checkpoint, {"key": key, "done": done, "current": running})

    with progress_bar(total=config.steps * config.restarts, disable=not config.progress, desc="fit") as bar:
        bar.update(sum(len(r.history) for r in results))
        for r, seed in enumerate(_restart_seeds(config)):
            if r < len(results):
                continue
            logits = _init_logits(spec, seed, config)
            resume = current if current is not None and current["restart"] == r else None
            if lik is not None:
                results.append(_fit_fast(spec, lik, logits, config, r, seed, bar, resume, save, checkpoint_every))
            else:
                results.append(_fit_pyro(spec, corpus, support, logits, config, r, seed, bar))
            save(None)
    best = int(np.argmax([res.objective for res in results]))
    return FitResult(config, tuple(results), best)


def uses_scalable(spec: Spec, config: FitConfig) -> bool:
    """Whether :func:`fit` scores with :class:`~hlsm.infer.scalable.ScalableLikelihood` (see the module docstring)."""
    if config.objective == "scalable":
        return True
    return config.objective == "fast" and config.tables == "library" and spec.num_states > MAX_DENSE_STATES


def likelihood_for(
    spec: Spec, support: Sequence[Program], corpus: Corpus, config: FitConfig
) -> CorpusLikelihood | ScalableLikelihood | None:
    """The likelihood object the fast objectives use (None for Pyro's)."""
    if uses_scalable(spec, config):
        return ScalableLikelihood(spec, list(support), corpus, workers=config.workers)
    return CorpusLikelihood(spec, list(support), corpus) if config.objective == "fast" else None


def _finish(
    spec: Spec,
    logits: list[Tensor],
    config: FitConfig,
    history: list[float],
    converged: bool,
    seed: int,
    objective: float,
    loglik: float,
    width: float | None = None,
) -> RestartResult:
    with torch.no_grad():
        if width is None:
            a, b, t = _probs(spec, [v.detach() for v in logits], config.tables)
        else:  # the scalable likelihood: library tables too large to build
            a, b, t = torch.softmax(logits[0].detach(), -1), torch.softmax(logits[1].detach(), -1), None
    eps = float(torch.sigmoid(logits[2].detach())) if config.tables == "library" else None
    return RestartResult(seed, a, b, t, tuple(history), converged, loglik, objective, eps, width)


def _fit_fast(
    spec: Spec,
    lik: CorpusLikelihood | ScalableLikelihood,
    init: list[Tensor],
    config: FitConfig,
    restart: int,
    seed: int,
    bar: Any,
    resume: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    every: int = 100,
) -> RestartResult:
    logits = [v.clone().requires_grad_() for v in (init if resume is None else resume["logits"])]
    opt = torch.optim.Adam(logits, lr=config.lr)
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        bar.update(len(resume["history"]))

    scalable = isinstance(lik, ScalableLikelihood)

    def terms() -> tuple[Tensor, Tensor]:
        if scalable:  # the certified lower bound (the value itself where every term is exact)
            a, b = torch.softmax(logits[0], -1), torch.softmax(logits[1], -1)
            return config.data_weight * lik(a, b, torch.sigmoid(logits[2])), _prior(logits, config)
        a, b, t = _probs(spec, logits, config.tables)
        return config.data_weight * lik(a, b, tables=t), _prior(logits, config)

    history: list[float] = [] if resume is None else list(resume["history"])
    converged = False
    for step in range(len(history), config.steps):
        opt.zero_grad()
        ll, prior = terms()
        loss = -(ll + prior)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _diverged(restart, step, value, logits, history, config.tables)
        history.append(value)
        bar.update(1)
        if _converged(history, config):
            converged = True
            break
        loss.backward()
        opt.step()
        if save is not None and (step + 1) % every == 0:
            running = [v.detach().clone() for v in logits]
            save({"restart": restart, "logits": running, "optimizer": opt.state_dict(), "history": list(history)})
    with torch.no_grad():
        ll, prior = terms()
        width = None
        if isinstance(lik, ScalableLikelihood):
            eps = torch.sigmoid(logits[2])
            width = lik.interval(torch.softmax(logits[0], -1), torch.softmax(logits[1], -1), eps).width
    objective = float(ll + prior)
    if not math.isfinite(objective):
        raise _diverged(restart, len(history), -objective, logits, history, config.tables)
    loglik = float(ll) / config.data_weight
    return _finish(spec, logits, config, history, converged, seed, objective, loglik, width)


def _pyro_model(
    spec: Spec, corpus: Corpus, support: list[Program], init: list[Tensor], config: FitConfig
) -> Callable[[], None]:
    """The enumerated HLSM with logits from ``pyro.param`` and the Dirichlet log-prior as a factor."""
    names = PARAM_NAMES[config.tables]

    def model() -> None:
        logits = [pyro.param(f"{n}_logits", v.clone()) for n, v in zip(names, init, strict=True)]
        if config.concentration != 1.0:
            pyro.factor("dirichlet_prior", _prior(logits, config))
        a, b, t = _probs(spec, logits, config.tables)
        with poutine.scale(scale=config.data_weight):
            hlsm(spec, HLSMParams(a, b, PLACEHOLDER_EPSILON, t), support, data=corpus)

    return model


def _store_logits(tables: TableClass) -> list[Tensor]:
    return [pyro.param(f"{n}_logits").detach().clone() for n in PARAM_NAMES[tables]]


def _fit_pyro(
    spec: Spec,
    corpus: Corpus,
    support: list[Program],
    init: list[Tensor],
    config: FitConfig,
    restart: int,
    seed: int,
    bar: Any,
) -> RestartResult:
    pyro.clear_param_store()
    model = _pyro_model(spec, corpus, support, init, config)
    enumerated_log_likelihood(model)  # raises ModelError naming any latent site that is not enumerated
    svi = SVI(
        model,
        lambda: None,
        pyro.optim.PyroOptim(torch.optim.Adam, {"lr": config.lr}),
        loss=TraceEnum_ELBO(max_plate_nesting=1),
    )
    history: list[float] = []
    converged = False
    for step in range(config.steps):
        if step > 0 and not all(bool(torch.isfinite(v).all()) for v in _store_logits(config.tables)):
            # the model refuses non-finite probabilities, so the loss would not even be computed
            raise _diverged(restart, step, math.nan, _store_logits(config.tables), history, config.tables)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            value = float(svi.step())
        if not math.isfinite(value):
            raise _diverged(restart, step, value, _store_logits(config.tables), history, config.tables)
        history.append(value)
        bar.update(1)
        if _converged(history, config):
            # svi.step already applied the update after computing this loss; the state is one step on
            converged = True
            break
    logits = _store_logits(config.tables)
    objective = enumerated_log_likelihood(model) if math.isfinite(float(sum(v.sum() for v in logits))) else math.nan
    if not math.isfinite(objective):
        raise _diverged(restart, len(history), -objective, logits, history, config.tables)
    loglik = (objective - float(_prior(logits, config))) / config.data_weight
    return _finish(spec, logits, config, history, converged, seed, objective, loglik)


def objective_value(
    spec: Spec, corpus: Corpus, support: Sequence[Program], logits: Sequence[Tensor], config: FitConfig
) -> float:
    """The objective (log-likelihood + log-prior) at ``logits`` (in ``PARAM_NAMES[config.tables]`` order)."""
    logits = [v.detach().to(torch.float64) for v in logits]
    lik = likelihood_for(spec, support, corpus, config)
    if isinstance(lik, ScalableLikelihood):
        ll = lik(torch.softmax(logits[0], -1), torch.softmax(logits[1], -1), torch.sigmoid(logits[2]))
        return float(config.data_weight * ll + _prior(logits, config))
    if lik is not None:
        a, b, t = _probs(spec, logits, config.tables)
        return float(config.data_weight * lik(a, b, tables=t) + _prior(logits, config))
    pyro.clear_param_store()
    return enumerated_log_likelihood(_pyro_model(spec, corpus, list(support), logits, config))

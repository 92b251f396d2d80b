"""Fitting the HLSM (hlsm.infer.fitting): likelihood ascent, recovery, determinism, Pyro objective, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from hlsm.infer import fitstate
from hlsm.infer import fitting as infer
from hlsm.infer.fitting import FitConfig, FitDivergedError, FitError, FitResult, fit, log_prior, objective_value
from hlsm.infer.likelihood import CorpusLikelihood, library_tables
from hlsm.infer.metrics import binding_accuracy, match_tables
from hlsm.infer.model import HLSMParams, ModelError
from hlsm.programs import Program
from hlsm.simulate import Corpus, concat, simulate
from hlsm.spec import Spec

EPS = 0.05
# |X| = 9; three skills that differ on most inputs, chain vs restart tell apart at step 2
SPEC = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort"), routings=("chain", "restart"))
SUPPORT = [Program.atomic(k) for k in range(3)] + [
    Program(((0, 0), (0, 1))),
    Program(((1, 1), (1, 2))),
    Program(((0, 2), (1, 0))),
    Program(((1, 0), (0, 2))),
]
TRUTH = HLSMParams(torch.eye(3, dtype=torch.float64), torch.eye(2, dtype=torch.float64), EPS, library_tables(SPEC, EPS))


def _corpus(n: int, seed: int = 0) -> Corpus:
    return simulate(SPEC, SUPPORT, n, seed, epsilon=EPS)


def _quick(**kw: object) -> FitConfig:
    base: dict[str, object] = {"steps": 300, "restarts": 4, "progress": False}
    base.update(kw)
    return FitConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def quick_fit() -> tuple[Corpus, FitResult]:
    corpus = _corpus(600)
    return corpus, fit(SPEC, corpus, SUPPORT, _quick())


def test_fit_increases_likelihood_and_nears_truth(quick_fit: tuple[Corpus, FitResult]) -> None:
    corpus, result = quick_fit
    lik = CorpusLikelihood(SPEC, SUPPORT, corpus)
    assert len(result.restarts) == 4
    for r in result.restarts:
        assert len(r.history) == 300 and not r.converged
        # concentration 1: the loss is minus the log-likelihood
        assert r.log_likelihood > -r.history[0]
        assert r.objective == pytest.approx(r.log_likelihood)
        assert r.log_likelihood == pytest.approx(float(lik(r.alpha, r.beta, tables=r.tables)), abs=1e-9)
    best = result.restarts[result.best]
    assert best.objective == max(r.objective for r in result.restarts)
    assert result.spread == pytest.approx(float(torch.tensor([r.objective for r in result.restarts]).std(False)))
    true_ll = float(lik.score(TRUTH))
    # the maximum likelihood is >= the truth's; dense tables (~230 free parameters) may overshoot it
    # by about df / 2; a local optimum of another restart would be hundreds of nats below
    assert best.log_likelihood >= true_ll - 5.0
    params = result.params()
    assert torch.equal(params.tables, best.tables) and params.check(SPEC) is params
    assert torch.equal(result.params(0).alpha, result.restarts[0].alpha)


def test_fit_recovers_tables(quick_fit: tuple[Corpus, FitResult]) -> None:
    _, result = quick_fit
    matching = match_tables(result.params().tables, TRUTH.tables)
    # 600 traces put ~15 observations on each (skill, input) row; the ML row's TV to the truth
    # (hit mass 1 - eps + eps / 9 ~ 0.967) is then ~ E|binomial deviation| ~ 0.04; 0.1 leaves room
    # for 300 unconverged steps, and a wrong binding (TV ~ 0.4) fails it
    assert matching.mean_tv < 0.1
    assert binding_accuracy(result.params().alpha, [0, 1, 2], matching.permutation) == 1.0


def test_deterministic() -> None:
    corpus = _corpus(120)
    config = _quick(steps=30, restarts=2)
    a, b = fit(SPEC, corpus, SUPPORT, config), fit(SPEC, corpus, SUPPORT, config)
    for ra, rb in zip(a.restarts, b.restarts, strict=True):
        assert ra.history == rb.history and ra.seed == rb.seed
        assert torch.equal(ra.tables, rb.tables) and torch.equal(ra.alpha, rb.alpha)
    other = fit(SPEC, corpus, SUPPORT, _quick(steps=30, restarts=2, seed=1))
    assert other.restarts[0].history != a.restarts[0].history
    assert a.restarts[0].seed != a.restarts[1].seed


@pytest.mark.parametrize("concentration", [1.0, 1.5])
def test_pyro_objective_matches_fast(concentration: float) -> None:
    corpus = _corpus(60)
    fast = fit(SPEC, corpus, SUPPORT, _quick(steps=3, restarts=1, concentration=concentration))
    slow = fit(SPEC, corpus, SUPPORT, _quick(steps=3, restarts=1, concentration=concentration, objective="pyro"))
    # same initial logits: the first losses agree
    assert slow.restarts[0].history[0] == pytest.approx(fast.restarts[0].history[0], rel=1e-6)
    r = slow.restarts[0]
    lik = CorpusLikelihood(SPEC, SUPPORT, corpus)
    logits = [p.log() for p in (r.alpha, r.beta, r.tables)]
    want = float(lik(r.alpha, r.beta, tables=r.tables) + log_prior(logits, concentration))
    assert r.objective == pytest.approx(want, rel=1e-6)
    assert r.log_likelihood == pytest.approx(float(lik(r.alpha, r.beta, tables=r.tables)), rel=1e-6)
    for objective in ("fast", "pyro"):
        got = objective_value(SPEC, corpus, SUPPORT, logits, _quick(objective=objective, concentration=concentration))
        assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("objective", ["fast", "pyro"])
def test_divergence_raises(objective: str) -> None:
    corpus = _corpus(40)
    with pytest.raises(FitDivergedError, match="diverged at step 1.*non-finite values in alpha, beta, tables") as info:
        fit(SPEC, corpus, SUPPORT, _quick(steps=5, restarts=1, lr=math.inf, objective=objective))
    err = info.value
    assert isinstance(err, FitError) and err.restart == 0 and err.step == 1 and len(err.history) == 1
    assert set(err.bad) == {"alpha", "beta", "tables"} and not torch.isfinite(err.logits["alpha"]).all()


def test_underflow_names_parameter() -> None:
    corpus = _corpus(40)
    with pytest.raises(FitDivergedError, match="step 0: the loss is inf .* underflowed to 0 in alpha, beta, tables"):
        # huge logits: softmax rows are exactly one-hot, so a corrupted observation has probability 0
        fit(SPEC, corpus, SUPPORT, _quick(steps=2, restarts=1, init_scale=1e4))


def test_pyro_rejects_unenumerated_latent(monkeypatch: pytest.MonkeyPatch) -> None:
    def model_with_latent(*args: object, **kwargs: object) -> None:
        pyro.sample("k", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
        pyro.sample("z", dist.Normal(0.0, 1.0))

    monkeypatch.setattr(infer, "hlsm", model_with_latent)
    with pytest.raises(ModelError, match=r"\['z'\] were sampled instead of enumerated"):
        fit(SPEC, _corpus(10), SUPPORT, _quick(steps=2, restarts=1, objective="pyro"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps, restarts, window and workers"),
        ({"restarts": 0}, "steps, restarts, window and workers"),
        ({"steps": 2.0}, "steps must be an integer"),
        ({"seed": -1}, "seed must be non-negative"),
        ({"objective": "svi"}, "objective must be"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"lr": math.nan}, "lr must be a number"),
        ({"concentration": 0.5}, "concentration must be"),
        ({"tol": -1.0}, "tol must be"),
        ({"init_scale": math.inf}, "init_scale must be"),
    ],
)
def test_config_validation(kw: dict[str, object], match: str) -> None:
    with pytest.raises(FitError, match=match):
        FitConfig(**kw)  # type: ignore[arg-type]


def test_convergence_stops_early() -> None:
    corpus = _corpus(60)
    result = fit(SPEC, corpus, SUPPORT, _quick(steps=2000, restarts=1, tol=1e-3, window=10))
    r = result.restarts[0]
    assert r.converged and len(r.history) < 2000
    assert abs(r.history[-11] - r.history[-1]) <= 1e-3 * abs(r.history[-1])


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(FitError, match="must be a FitConfig"):
        fit(SPEC, _corpus(10), SUPPORT, {"steps": 3})  # type: ignore[arg-type]
    with pytest.raises(FitError, match="corpus is empty"):
        fit(SPEC, _corpus(0), SUPPORT, _quick())


@pytest.mark.slow
def test_full_recovery() -> None:
    corpus = _corpus(3000)
    result = fit(SPEC, corpus, SUPPORT, FitConfig(steps=2000, restarts=4, progress=False))
    matching = match_tables(result.params().tables, TRUTH.tables)
    assert matching.mean_tv <= 0.05
    assert binding_accuracy(result.params().alpha, [0, 1, 2], matching.permutation) == 1.0


RL = [Program(((0, 1), (1, 2))), Program(((1, 2), (0, 0), (0, 1)))]


def test_library_tables_pyro_matches_fast() -> None:
    corpus = concat([_corpus(40), simulate(SPEC, RL, 30, 1, epsilon=EPS, exposure="answer")])
    kw = {"steps": 3, "restarts": 1, "tables": "library", "concentration": 1.5}
    fast = fit(SPEC, corpus, SUPPORT + RL, _quick(**kw))
    slow = fit(SPEC, corpus, SUPPORT + RL, _quick(objective="pyro", **kw))
    assert slow.restarts[0].history == pytest.approx(fast.restarts[0].history, rel=1e-6)
    r = slow.restarts[0]
    assert r.epsilon is not None and 0 < r.epsilon < 1
    params = slow.params()
    assert params.tables is None and params.epsilon == r.epsilon
    lik = CorpusLikelihood(SPEC, SUPPORT + RL, corpus)
    assert r.log_likelihood == pytest.approx(float(lik.score(params)), rel=1e-6)
    assert torch.allclose(r.tables, library_tables(SPEC, r.epsilon))


def test_library_tables_recover_bindings_and_epsilon_from_answer_only_data() -> None:
    # RL programs are seen only through their answers: the hidden states are summed out
    corpus = concat([_corpus(400), simulate(SPEC, RL, 400, 1, epsilon=EPS, exposure="answer")])
    result = fit(SPEC, corpus, SUPPORT + RL, _quick(steps=300, restarts=2, tables="library"))
    params = result.params()
    assert binding_accuracy(params.alpha, [0, 1, 2]) == 1.0 and binding_accuracy(params.beta, [0, 1]) == 1.0
    # ML estimate of eps from ~2,000 scored steps: SE ~ sqrt(eps / n) ~ 0.005; 0.02 is 4 SE
    assert params.epsilon == pytest.approx(EPS, abs=0.02)


def test_data_weight_scales_the_likelihood() -> None:
    corpus = _corpus(40)
    for objective in ("fast", "pyro"):
        result = fit(
            SPEC, corpus, SUPPORT, _quick(steps=2, restarts=1, data_weight=7.0, concentration=1.5, objective=objective)
        )
        r = result.restarts[0]
        lik = float(CorpusLikelihood(SPEC, SUPPORT, corpus)(r.alpha, r.beta, tables=r.tables))
        assert r.log_likelihood == pytest.approx(lik, rel=1e-9)
        prior = float(log_prior([p.log() for p in (r.alpha, r.beta, r.tables)], 1.5))
        assert r.objective == pytest.approx(7.0 * lik + prior, rel=1e-9)
    with pytest.raises(FitError, match="data_weight must be"):
        FitConfig(data_weight=0.0)


def test_checkpoint_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus(80)
    config = _quick(steps=60, restarts=3, tol=0.0)
    whole = fit(SPEC, corpus, SUPPORT, config)
    path = tmp_path / "state.pt"
    saves = {"n": 0}
    real = fitstate.save_state

    def dying(p: Path, state: dict[str, object]) -> None:
        real(p, state)
        saves["n"] += 1
        if saves["n"] == 5:  # mid-way through restart 1 (saves every 25 steps and at each restart's end)
            raise KeyboardInterrupt

    monkeypatch.setattr(fitstate, "save_state", dying)
    with pytest.raises(KeyboardInterrupt):
        fit(SPEC, corpus, SUPPORT, config, checkpoint=path, checkpoint_every=25)
    monkeypatch.setattr(fitstate, "save_state", real)
    state = torch.load(path, weights_only=False)
    assert len(state["done"]) == 1 and state["current"]["restart"] == 1
    resumed = fit(SPEC, corpus, SUPPORT, config, checkpoint=path, checkpoint_every=25)
    for a, b in zip(whole.restarts, resumed.restarts, strict=True):
        assert a.history == b.history and torch.equal(a.alpha, b.alpha) and torch.equal(a.tables, b.tables)
        assert a.objective == b.objective
    # a checkpoint of another configuration is refused, not silently reused
    with pytest.raises(FitError, match="another configuration or corpus"):
        fit(SPEC, corpus, SUPPORT, _quick(steps=61, restarts=3, tol=0.0), checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(FitError, match="cannot read the fit checkpoint"):
        fit(SPEC, corpus, SUPPORT, config, checkpoint=path)

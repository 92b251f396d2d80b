"""The fast torch likelihood against the brute-force oracle and the Pyro model (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hlsm.app.bench import BENCHMARKS, bench_fit
from hlsm.errors import HLSMError
from hlsm.infer import exact, model
from hlsm.infer.likelihood import MAX_DENSE_STATES, MAX_JOINT_STATES, CorpusLikelihood, LikelihoodError, log_likelihood
from hlsm.infer.model import HLSMParams, ModelError
from hlsm.programs import Program
from hlsm.simulate import Corpus, concat, simulate
from hlsm.spec import Spec
from tests.infer.test_model import SPEC_A, SPEC_B, SUPPORT_A, SUPPORT_B, _random_params

# |X| = 4: routings reading x_{l-2}, x_1 and (x_{l-1}, x_0); a many-to-one skill
SPEC_C = Spec(
    alphabet=2, length=2, skills=("reverse", "shift_up", "fill_first"), routings=("skip", "reuse_first", "max_first")
)
SUPPORT_C = [
    Program.atomic(2),
    Program(((2, 1),)),
    Program(((0, 0), (1, 2))),
    Program(((1, 1), (0, 0), (2, 2))),
    Program(((2, 2), (1, 1), (0, 0))),
]
CASES = {"A": (SPEC_A, SUPPORT_A), "B": (SPEC_B, SUPPORT_B), "C": (SPEC_C, SUPPORT_C)}
EXPOSURES = [("full",), ("answer",), ("steps:1",), ("full", "answer", "steps:1", "steps:2,3")]


def _corpus(spec: Spec, support: list[Program], exposures: tuple[str, ...], n: int = 24) -> Corpus:
    weights = [1.0 + i for i in range(len(support))]
    per = n // len(exposures)
    return concat(
        [simulate(spec, support, per, s, weights=weights, exposure=e, epsilon=0.1) for s, e in enumerate(exposures)]
    )


@pytest.mark.parametrize("dense", [False, True], ids=["library", "tables"])
@pytest.mark.parametrize("exposures", EXPOSURES, ids=["full", "answer", "steps1", "mixed"])
@pytest.mark.parametrize("which", sorted(CASES))
def test_matches_exact_and_pyro(which: str, exposures: tuple[str, ...], dense: bool) -> None:
    spec, support = CASES[which]
    params = _random_params(spec, seed=len(exposures) + 7 * dense, dense=dense)
    weights = [1.0 + i for i in range(len(support))]
    corpus = _corpus(spec, support, exposures)
    got = log_likelihood(spec, params, support, corpus, weights)
    assert got.dtype == torch.float64 and got.shape == ()
    want = exact.log_likelihood(spec, params, support, corpus, weights)
    assert float(got) == pytest.approx(want, abs=1e-9, rel=0)
    assert float(got) == pytest.approx(model.log_likelihood(spec, params, support, corpus, weights), abs=1e-9, rel=0)


def test_task_terms_flag() -> None:
    spec, support = CASES["C"]
    params = _random_params(spec, seed=2, dense=False)
    corpus = _corpus(spec, support, ("answer",))
    with_task = float(log_likelihood(spec, params, support, corpus))
    without = float(log_likelihood(spec, params, support, corpus, task_terms=False))
    task = len(corpus) * (-math.log(len(support)) - math.log(spec.num_states))
    assert with_task == pytest.approx(without + task, abs=1e-9, rel=0)


def test_empty_corpus_scores_zero() -> None:
    params = HLSMParams.truth(SPEC_A, epsilon=0.1)
    empty = simulate(SPEC_A, SUPPORT_A, 0, 0)
    assert float(log_likelihood(SPEC_A, params, SUPPORT_A, empty)) == 0.0


def _logits(spec: Spec, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    k, m, x = spec.num_skills, spec.num_routings, spec.num_states
    shapes = ((k, k), (m, m), (k, x, x), ())
    return tuple(torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes)


@pytest.mark.parametrize("dense", [False, True], ids=["library", "tables"])
def test_gradcheck(dense: bool) -> None:
    spec, support = CASES["C"]
    lik = CorpusLikelihood(spec, support, _corpus(spec, support, ("answer", "steps:2,3"), n=8))

    def f(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        tables = torch.softmax(t, -1) if dense else None
        return lik(torch.softmax(a, -1), torch.softmax(b, -1), torch.sigmoid(e), tables)

    assert torch.autograd.gradcheck(f, _logits(spec, 0))


def test_gradient_equals_pyro_loss_gradient() -> None:
    spec, support = CASES["B"]
    corpus = _corpus(spec, support, ("full", "answer", "steps:1"))
    a, b, t, _ = _logits(spec, 1)
    lik = CorpusLikelihood(spec, support, corpus)
    fast = -lik(torch.softmax(a, -1), torch.softmax(b, -1), tables=torch.softmax(t, -1))
    fast_grads = torch.autograd.grad(fast, (a, b, t))
    params = HLSMParams(torch.softmax(a, -1), torch.softmax(b, -1), 0.1, torch.softmax(t, -1))
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        lambda: model.hlsm(spec, params, support, data=corpus), lambda: None
    )
    assert float(fast.detach()) == pytest.approx(float(loss.detach()), abs=1e-9, rel=0)
    for ours, theirs in zip(fast_grads, torch.autograd.grad(loss, (a, b, t)), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=1e-9)


# -- clear errors --------------------------------------------------------------------------------


def test_large_state_space_is_an_error() -> None:
    spec = Spec(alphabet=4, length=7, skills=("reverse", "sort"), routings=("chain",))
    assert spec.num_states > MAX_DENSE_STATES
    support = [Program(((0, 0), (0, 1)))]
    corpus = simulate(spec, support, 3, 0, exposure="full", epsilon=0.1)
    with pytest.raises(LikelihoodError, match=f"exceeds {MAX_DENSE_STATES}"):
        CorpusLikelihood(spec, support, corpus)


def test_too_many_hidden_states_is_an_error() -> None:
    spec = Spec(alphabet=3, length=4, skills=("reverse", "sort"), routings=("chain", "skip"))  # |X| = 81
    support = [Program(((0, 0), (1, 1), (0, 1)))]
    answer = simulate(spec, support, 3, 0, exposure="answer", epsilon=0.1)
    with pytest.raises(LikelihoodError, match=f"hides 2 states before step 3.*exceed {MAX_JOINT_STATES}"):
        CorpusLikelihood(spec, support, answer)
    params = _random_params(spec, seed=0, dense=False)
    partial = simulate(spec, support, 2, 0, exposure="steps:2", epsilon=0.1)  # one hidden state: 81 values
    got = float(log_likelihood(spec, params, support, partial))
    assert got == pytest.approx(exact.log_likelihood(spec, params, support, partial), abs=1e-9, rel=0)


def test_support_and_param_errors() -> None:
    params = HLSMParams.truth(SPEC_A, epsilon=0.1)
    corpus = simulate(SPEC_A, SUPPORT_A, 10, 0)
    with pytest.raises(ModelError, match="is not in the support"):
        log_likelihood(SPEC_A, params, SUPPORT_A[:2], corpus)
    with pytest.raises(ModelError, match="another spec"):
        log_likelihood(SPEC_B, HLSMParams.truth(SPEC_B, epsilon=0.1), SUPPORT_A, corpus)
    with pytest.raises(ModelError, match=r"alpha has shape \(4, 4\)"):
        log_likelihood(SPEC_A, HLSMParams(torch.eye(4, dtype=torch.float64), params.beta, 0.1), SUPPORT_A, corpus)


# -- benchmark -----------------------------------------------------------------------------------


def test_bench_fit_reports_equal_losses() -> None:
    assert BENCHMARKS["fit"] is bench_fit
    result = bench_fit(n=20, steps=4, progress=False)
    fields = {"loss_fast", "loss_pyro", "equal", "fast_steps_per_s", "pyro_steps_per_s", "ratio"}
    assert fields <= set(result)
    assert result["equal"] is True and result["traces"] == 20
    assert result["loss_fast"] == pytest.approx(result["loss_pyro"], rel=1e-6)
    assert result["fast_steps_per_s"] > 0 and result["pyro_steps_per_s"] > 0


def test_bench_fit_default_scale_checks_pyro_on_the_golden_traces() -> None:
    """|X| = 262,144: the scalable likelihood and Pyro agree on golden traces; a fit's peak memory is measured."""
    result = bench_fit(n=16, steps=4, scale="default", progress=False)
    assert result["num_states"] == 262_144 and result["golden_traces"] == 16 and result["answer_only_traces"] == 1
    assert result["equal"] is True
    assert result["loss_scalable"] == pytest.approx(result["loss_pyro"], rel=1e-6)
    assert result["scalable_steps_per_s"] > 0 and result["pyro_steps_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["fit_interval_width"] >= 0.0
    with pytest.raises(HLSMError, match="scales 'tiny' and 'default'"):
        bench_fit(scale="huge")

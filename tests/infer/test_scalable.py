"""The scalable H-lib likelihood against the dense one, the brute-force oracle and the Pyro model.

Values and gradients in float64 to 1e-9 where the method is exact; where it bounds, the interval
must contain the exact value.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from hlsm.identify.observations import routing_reads
from hlsm.infer import exact, model
from hlsm.infer.likelihood import CorpusLikelihood, LikelihoodError
from hlsm.infer.model import HLSMParams
from hlsm.infer.scalable import ScalableLikelihood
from hlsm.modules import DEFAULT_ROUTINGS
from hlsm.programs import Program
from hlsm.simulate import Corpus, concat, simulate
from hlsm.spec import Spec
from tests.infer.test_model import _random_params

# |X| = 9: every default routing (one- and two-input), bijective and many-to-one skills
SPEC_SMALL = Spec(
    alphabet=3,
    length=2,
    skills=("reverse", "shift_up", "sort", "fill_first", "count"),
    routings=DEFAULT_ROUTINGS,
)
SUPPORT_SMALL = [
    Program.atomic(0),
    Program(((2, 1),)),
    Program(((0, 1), (2, 2))),
    Program(((1, 0), (4, 1), (8, 2))),
    Program(((9, 3), (3, 4), (6, 0))),
    Program(((7, 2), (8, 3), (5, 1))),
]
# |X| = 64
SPEC_MID = Spec(
    alphabet=4,
    length=3,
    skills=("rotate_left", "complement", "sort", "running_max", "zero_odd"),
    routings=("chain", "skip", "add_first", "zip", "sub_skip", "min_skip"),
)
SUPPORT_MID = [
    Program(((0, 0), (2, 1), (4, 2))),
    Program(((3, 3), (1, 4), (5, 0))),
    Program(((2, 2), (0, 1))),
]
CASES = {"small": (SPEC_SMALL, SUPPORT_SMALL), "mid": (SPEC_MID, SUPPORT_MID)}
EXPOSURES = {
    "full": ("full",),
    "answer": ("answer",),
    "steps1": ("steps:1",),
    "steps2": ("steps:2",),
    "steps13": ("steps:1,3",),
    "mixed": ("full", "answer", "steps:1", "steps:2"),
}


def _corpus(spec: Spec, support: list[Program], exposures: tuple[str, ...], n: int = 24) -> Corpus:
    weights = [1.0 + i for i in range(len(support))]
    per = n // len(exposures)
    return concat(
        [simulate(spec, support, per, s, weights=weights, exposure=e, epsilon=0.2) for s, e in enumerate(exposures)]
    )


def _params(spec: Spec, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = _random_params(spec, seed=seed, dense=False)
    eps = torch.tensor(0.15, dtype=torch.float64)
    return p.alpha.clone().requires_grad_(), p.beta.clone().requires_grad_(), eps.requires_grad_()


@pytest.mark.parametrize("exposure", sorted(EXPOSURES))
@pytest.mark.parametrize("which", sorted(CASES))
def test_values_and_gradients_match_the_dense_likelihood(which: str, exposure: str) -> None:
    spec, support = CASES[which]
    weights = [1.0 + i for i in range(len(support))]
    corpus = _corpus(spec, support, EXPOSURES[exposure])
    ours = ScalableLikelihood(spec, support, corpus, weights)
    assert ours.exact, f"{ours.bounded_terms} terms were bounded"
    a, b, e = _params(spec, seed=len(exposure))
    got = ours(a, b, e)
    assert got.dtype == torch.float64 and got.shape == ()
    bounds = ours.interval(a, b, e)
    assert bounds.exact and bounds.width == 0.0 and ours.max_width == 0.0
    want = CorpusLikelihood(spec, support, corpus, weights)(a, b, e)
    assert float(got.detach()) == pytest.approx(float(want.detach()), abs=1e-9, rel=0)
    for g, w in zip(torch.autograd.grad(got, (a, b, e)), torch.autograd.grad(want, (a, b, e)), strict=True):
        torch.testing.assert_close(g, w, atol=1e-9, rtol=0)


# the brute-force oracle costs (M K)^L |X|^hidden per trace: keep its library small
SPEC_ORACLE = Spec(
    alphabet=3, length=2, skills=("shift_up", "sort", "count"), routings=("chain", "max_first", "sub_skip")
)
SUPPORT_ORACLE = [Program.atomic(1), Program(((1, 0), (2, 1), (0, 2))), Program(((2, 2), (1, 0)))]


@pytest.mark.parametrize("exposure", ["answer", "mixed"])
def test_matches_the_oracle_and_the_pyro_model(exposure: str) -> None:
    spec, support = SPEC_ORACLE, SUPPORT_ORACLE
    corpus = _corpus(spec, support, EXPOSURES[exposure], n=8)
    params = _random_params(spec, seed=5, dense=False)
    got = float(ScalableLikelihood(spec, support, corpus)(params.alpha, params.beta, params.epsilon))
    assert got == pytest.approx(exact.log_likelihood(spec, params, support, corpus), abs=1e-9, rel=0)
    assert got == pytest.approx(model.log_likelihood(spec, params, support, corpus), abs=1e-9, rel=0)


def test_gradients_match_on_raw_non_stochastic_rows() -> None:
    """The formula is kept literal (``eps c / |X|`` with ``c`` the row masses), as the dense one is."""
    spec, support = SPEC_SMALL, SUPPORT_SMALL
    corpus = _corpus(spec, support, ("answer", "steps:2"))
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(spec.num_skills, spec.num_skills, generator=gen, dtype=torch.float64).requires_grad_()
    b = torch.rand(spec.num_routings, spec.num_routings, generator=gen, dtype=torch.float64).requires_grad_()
    e = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    got = ScalableLikelihood(spec, support, corpus)(a, b, e)
    want = CorpusLikelihood(spec, support, corpus)(a, b, e)
    assert float(got.detach()) == pytest.approx(float(want.detach()), abs=1e-9, rel=0)
    for g, w in zip(torch.autograd.grad(got, (a, b, e)), torch.autograd.grad(want, (a, b, e)), strict=True):
        torch.testing.assert_close(g, w, atol=1e-9, rtol=0)


@pytest.mark.parametrize("budget", [0, 64, 10**6])
@pytest.mark.parametrize("exposure", ["answer", "steps:2,3", "steps:2,4"])
def test_bounds_contain_the_exact_value(exposure: str, budget: int) -> None:
    """Small budgets and re-read uniforms force bounded terms; the interval still holds the truth."""
    spec = SPEC_SMALL
    support = [*SUPPORT_SMALL[3:], Program(((5, 1), (4, 3), (8, 0), (9, 2)))]
    corpus = _corpus(spec, support, (exposure,), n=16)
    ours = ScalableLikelihood(spec, support, corpus, budget=budget)
    a, b, e = _params(spec, seed=budget % 7)
    want = float(CorpusLikelihood(spec, support, corpus)(a, b, e).detach())
    lo, hi = ours.per_trace(a, b, e)
    per_want = CorpusLikelihood(spec, support, corpus).per_trace(a, b, e)
    assert bool((lo <= per_want + 1e-9).all()) and bool((per_want <= hi + 1e-9).all())
    bounds = ours.interval(a, b, e)
    assert float(bounds.lower.detach()) <= want + 1e-9 <= float(bounds.upper.detach()) + 2e-9
    assert ours.max_width == pytest.approx(bounds.width)
    if ours.exact:
        assert float(bounds.lower.detach()) == pytest.approx(want, abs=1e-9, rel=0)
    else:
        assert ours.bounded_terms > 0
        # the lower bound is the value returned by a call, and it is differentiable
        assert torch.autograd.grad(ours(a, b, e), a)[0].isfinite().all()


def test_budget_zero_bounds_and_large_budget_is_exact_on_answers() -> None:
    spec, support = SPEC_SMALL, SUPPORT_SMALL
    corpus = _corpus(spec, support, ("answer",))
    assert ScalableLikelihood(spec, support, corpus).exact
    assert not ScalableLikelihood(spec, support, corpus, budget=0).exact


def test_default_routings_read_what_they_declare_position_by_position() -> None:
    """The reads each default routing declares (``Routing.reads``, which the method relies on): the
    items the exhaustive check of ``identify.observations.routing_reads`` finds read, and a
    position-wise action, checked on every history."""
    spec = Spec(alphabet=3, length=2, routings=DEFAULT_ROUTINGS, skills=("reverse",))
    states = spec.all_states()
    for length in (1, 2, 3, 4):
        hist = torch.cartesian_prod(*[torch.arange(spec.num_states)] * length).reshape(-1, length)
        digits = spec.decode(hist)  # (H, length, n)
        for m in range(spec.num_routings):
            reads = spec.routing_modules[m].read_positions(length)
            assert reads is not None
            read = {j for j, r in enumerate(routing_reads(spec, m, length)) if r}
            # never too few; exact from two items on (at one item sub_skip is x_0 - x_0 = 0 and reads nothing)
            assert read <= set(reads) and (length == 1 or read == set(reads)), (spec.routings[m], length)
            out = spec.apply_routing(m, digits)
            for pos in set(range(length)) - set(reads):  # changing an unread item changes nothing
                other = digits.clone()
                other[:, pos] = states[(hist[:, pos] + 1) % spec.num_states]
                assert torch.equal(spec.apply_routing(m, other), out)
            for i in range(spec.length):  # symbol i of the output depends on symbols i only
                other = digits.clone()
                other[:, :, 1 - i] = (other[:, :, 1 - i] + 1) % spec.alphabet
                assert torch.equal(spec.apply_routing(m, other)[:, i], out[:, i])


def test_tables_are_refused() -> None:
    spec, support = SPEC_SMALL, SUPPORT_SMALL
    ours = ScalableLikelihood(spec, support, _corpus(spec, support, ("full",), n=4))
    p = HLSMParams.truth(spec, 0.1)
    with pytest.raises(LikelihoodError, match="library skills only"):
        ours(p.alpha, p.beta, 0.1, tables=torch.ones(1))


def test_empty_corpus_scores_zero() -> None:
    spec, support = SPEC_SMALL, SUPPORT_SMALL
    p = HLSMParams.truth(spec, 0.1)
    assert float(ScalableLikelihood(spec, support, simulate(spec, support, 0, 0))(p.alpha, p.beta, 0.1)) == 0.0


def test_default_library_scores_answer_only_depth_three_traces() -> None:
    """|X| = 262,144: scores (a dense (K, |X|, |X|) table would be 13 TB) with a finite certified interval."""
    spec = Spec()
    rng = random.Random(0)
    support = [Program(tuple((rng.randrange(10), rng.randrange(24)) for _ in range(3))) for _ in range(4)]
    corpus = concat(
        [
            simulate(spec, support, 4, 1, exposure="answer", epsilon=0.1),
            simulate(spec, support, 2, 2, exposure="full", epsilon=0.1),
        ]
    )
    ours = ScalableLikelihood(spec, support, corpus, budget=1 << 14)
    p = HLSMParams.truth(spec, 0.1)
    bounds = ours.interval(p.alpha, p.beta, 0.1)
    assert torch.isfinite(bounds.lower) and torch.isfinite(bounds.upper)
    assert float(bounds.lower.detach()) <= float(bounds.upper.detach())


def test_fit_with_the_scalable_likelihood_equals_the_dense_library_fit() -> None:
    """Where the scalable likelihood is exact the two fits take the same steps (library tables)."""
    from hlsm.infer.fitting import FitConfig, fit, uses_scalable

    spec, support = SPEC_SMALL, SUPPORT_SMALL
    corpus = _corpus(spec, support, ("full", "answer", "steps:1"), n=30)
    base = dict(steps=30, restarts=2, tables="library", tol=0.0, progress=False)
    dense = fit(spec, corpus, support, FitConfig(**base))
    ours = fit(spec, corpus, support, FitConfig(**base, objective="scalable"))
    assert uses_scalable(spec, FitConfig(**base, objective="scalable"))
    assert not uses_scalable(spec, FitConfig(**base))  # |X| = 9: the dense tables are built
    for a, b in zip(dense.restarts, ours.restarts, strict=True):
        assert max(abs(x - y) for x, y in zip(a.history, b.history, strict=True)) < 1e-8
        assert torch.allclose(a.alpha, b.alpha, atol=1e-8) and torch.allclose(a.beta, b.beta, atol=1e-8)
        assert b.tables is None and a.tables is not None
        assert b.interval_width == 0.0 and a.interval_width is None


def test_scalable_objective_refuses_dense_tables() -> None:
    from hlsm.infer.fitstate import FitError
    from hlsm.infer.fitting import FitConfig

    with pytest.raises(FitError, match="library tables only"):
        FitConfig(objective="scalable", tables="dense")


def test_answer_bounds_is_a_lower_bound_of_the_exact_predictive() -> None:
    from hlsm.infer.predictive import answer_bounds, answer_distribution, true_answers

    spec = SPEC_SMALL
    for program in SUPPORT_SMALL[2:]:
        for seed in range(3):
            p = _random_params(spec, seed=seed, dense=False)
            exact_table = answer_distribution(spec, p, program)
            modal, lower = answer_bounds(spec, p, program, spec.all_states(), floor=0.0)
            assert bool((lower <= exact_table.gather(1, modal.unsqueeze(1)).squeeze(1) + 1e-12).all())
            sure = lower > 0.5  # then the modal answer is the mode for certain
            assert torch.equal(modal[sure], exact_table.argmax(-1)[sure])
        truth = HLSMParams.truth(spec, 0.05)
        modal, lower = answer_bounds(spec, truth, program, spec.all_states())
        assert torch.equal(modal, true_answers(spec, program))
        assert torch.allclose(lower, torch.full_like(lower, 0.95**program.depth))
    with pytest.raises(ValueError, match="library tables"):
        answer_bounds(spec, _random_params(spec, seed=0, dense=True), SUPPORT_SMALL[0], spec.all_states())


def test_workers_build_the_same_likelihood() -> None:
    spec, support = SPEC_MID, SUPPORT_MID
    corpus = _corpus(spec, support, ("answer", "steps:2"), n=16)
    one = ScalableLikelihood(spec, support, corpus)
    two = ScalableLikelihood(spec, support, corpus, workers=2)
    alpha, beta, eps = _params(spec, 3)
    assert torch.equal(one(alpha, beta, eps), two(alpha, beta, eps))
    assert one.bounded_terms == two.bounded_terms and one.exact == two.exact
    with pytest.raises(LikelihoodError, match="workers"):
        ScalableLikelihood(spec, support, corpus, workers=0)


def test_workers_load_the_plugins_of_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's skill in the spec: the spawned builders load the plugin file (each leaves a marker) and
    build the same likelihood as one process."""
    import hlsm.plugins as plugins
    from hlsm.modules import unregister

    monkeypatch.setattr(plugins, "_LOADED_FILES", [])
    monkeypatch.setattr(plugins, "_PLUGIN_MODULES", set())
    plugin = tmp_path / "zero_first_plugin.py"
    plugin.write_text(
        "import os, pathlib, torch, hlsm\n"
        "pathlib.Path(__file__).with_name(f'loaded-{os.getpid()}').touch()\n"
        "hlsm.register_skill('zero_first_probe', lambda x, a: torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1),\n"
        "                    'zero the first symbol', bijective=False)\n"
    )
    plugins.load_plugins([plugin], entry_points=False)
    try:
        skills = (*SPEC_MID.skills[:4], "zero_first_probe")
        spec = Spec(alphabet=SPEC_MID.alphabet, length=SPEC_MID.length, skills=skills, routings=SPEC_MID.routings)
        corpus = _corpus(spec, SUPPORT_MID, ("answer", "steps:2"), n=16)
        one = ScalableLikelihood(spec, SUPPORT_MID, corpus)
        two = ScalableLikelihood(spec, SUPPORT_MID, corpus, workers=2)
        alpha, beta, eps = _params(spec, 3)
        assert torch.equal(one(alpha, beta, eps), two(alpha, beta, eps))
        assert len(list(tmp_path.glob("loaded-*"))) == 3  # this process and the two builders
    finally:
        unregister("zero_first_probe")

"""The Pyro HLSM against the brute-force oracle (likelihood) and against the simulator (sampling)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from hlsm.infer import exact
from hlsm.infer.model import (
    MAX_ENUMERATED_STATES,
    HLSMParams,
    ModelError,
    enumerated_log_likelihood,
    hlsm,
    log_likelihood,
    sample,
)
from hlsm.modules import register_skill, unregister
from hlsm.programs import Program, ProgramBatch
from hlsm.simulate import Corpus, simulate
from hlsm.spec import Spec
from hlsm.traces import exposure_mask

# |X| = 9, selection-only routings and an element-wise merge
SPEC_A = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort"), routings=("chain", "restart", "add_first"))
SUPPORT_A = [
    Program.atomic(0),
    Program.atomic(2),
    Program(((0, 1), (2, 2))),
    Program(((1, 0), (0, 1), (2, 2))),
]
# |X| = 8, history-sensitive routings (skip, zip, sub_skip) and a many-to-one skill
SPEC_B = Spec(
    alphabet=2, length=3, skills=("rotate_left", "fill_first", "shift_odd"), routings=("skip", "zip", "sub_skip")
)
SUPPORT_B = [
    Program.atomic(1),
    Program(((1, 0),)),
    Program(((0, 2), (1, 0), (2, 1))),
    Program(((2, 1), (0, 0), (1, 2))),
]


def _random_params(spec: Spec, seed: int, dense: bool) -> HLSMParams:
    """Soft, non-identity bindings (Dirichlet rows) and optionally random dense tables, in float64."""
    gen = torch.Generator().manual_seed(seed)
    k, m, x = spec.num_skills, spec.num_routings, spec.num_states

    def rows(*shape: int) -> torch.Tensor:
        return torch.softmax(1.5 * torch.randn(*shape, generator=gen, dtype=torch.float64), -1)

    return HLSMParams(rows(k, k), rows(m, m), 0.1, rows(k, x, x) if dense else None)


def _concat(corpora: Sequence[Corpus]) -> Corpus:
    """One corpus holding the traces of several (same spec), padded to the widest program."""
    programs = [c.program(i) for c in corpora for i in range(len(c))]
    batch = ProgramBatch.from_programs(programs)
    width = batch.max_depth
    states, masks = [], []
    for c in corpora:
        pad = width - c.programs.max_depth
        states.append(torch.cat([c.states, c.states[:, -1:].expand(-1, pad, -1)], dim=1))
        masks.append(torch.nn.functional.pad(c.mask, (0, pad)))
    split = tuple(s for c in corpora for s in c.split)
    return Corpus(corpora[0].spec, batch, torch.cat(states), torch.cat(masks), split)


@pytest.fixture
def custom_skill() -> Iterator[str]:
    name = "test_model_swap_first"

    def swap_first(x: torch.Tensor, a: int) -> torch.Tensor:
        return torch.cat([x[..., 1:2], x[..., :1], x[..., 2:]], dim=-1)

    register_skill(name, swap_first, "swap the first two symbols", bijective=True, min_length=2)
    try:
        yield name
    finally:
        unregister(name)


# -- likelihood = oracle -------------------------------------------------------------------------


@pytest.mark.parametrize("dense", [False, True], ids=["library", "tables"])
@pytest.mark.parametrize(
    "exposures",
    [("full",), ("answer",), ("steps:1",), ("full", "answer", "steps:1", "steps:2,3")],
    ids=["full", "answer", "steps1", "mixed"],
)
@pytest.mark.parametrize("which", ["A", "B"])
def test_likelihood_matches_exact(which: str, exposures: tuple[str, ...], dense: bool) -> None:
    spec, support = (SPEC_A, SUPPORT_A) if which == "A" else (SPEC_B, SUPPORT_B)
    params = _random_params(spec, seed=len(exposures) + 7 * dense, dense=dense)
    weights = [1.0, 2.0, 3.0, 2.5]
    n = 24 // len(exposures)
    corpus = _concat(
        [simulate(spec, support, n, seed, weights=weights, exposure=e, epsilon=0.1) for seed, e in enumerate(exposures)]
    )
    got = log_likelihood(spec, params, support, corpus, weights)
    want = exact.log_likelihood(spec, params, support, corpus, weights)
    assert got == pytest.approx(want, abs=1e-9, rel=0)


def test_truth_bindings_score_large_instance_without_tables() -> None:
    spec = Spec()  # A = 8, n = 6: |X| = 262144, no dense table fits
    support = [Program.atomic(3), Program(((0, 5), (4, 13))), Program(((6, 20), (1, 2)))]
    params = HLSMParams.truth(spec, epsilon=0.3)
    corpus = simulate(spec, support, 12, 0, exposure="full", epsilon=0.3)
    got = log_likelihood(spec, params, support, corpus)
    assert got == pytest.approx(exact.log_likelihood(spec, params, support, corpus), abs=1e-9, rel=0)


def test_custom_skill_flows_through_the_model(custom_skill: str) -> None:
    spec = Spec(alphabet=3, length=2, skills=(custom_skill, "shift_up"), routings=("chain", "add_first"))
    support = [Program.atomic(0), Program(((1, 0), (0, 1))), Program(((0, 1), (1, 0)))]
    params = _random_params(spec, seed=3, dense=False)
    corpus = simulate(spec, support, 16, 0, exposure="answer", epsilon=0.1)
    got = log_likelihood(spec, params, support, corpus)
    assert got == pytest.approx(exact.log_likelihood(spec, params, support, corpus), abs=1e-9, rel=0)


# -- sampling ------------------------------------------------------------------------------------

SPEC_S = Spec(
    alphabet=2,
    length=2,
    skills=("reverse", "shift_up", "sort", "fill_first"),
    routings=("chain", "restart", "add_first"),
)
SUPPORT_S = [Program.atomic(2), Program(((0, 1), (2, 0))), Program(((1, 3), (0, 1)))]
WEIGHTS_S = [1.0, 2.0, 1.5]
P_MIN = 1e-3  # every statistical test below has a false-alarm rate of 0.1%


def _keys(corpus: Corpus, support: list[Program], answer_only: bool) -> list[tuple[int, ...]]:
    """Per trace: (support index, x_0 code, then the answer code or every step's code)."""
    index = {p: i for i, p in enumerate(support)}
    codes = corpus.spec.encode(corpus.states).tolist()
    out = []
    for i in range(len(corpus)):
        d = int(corpus.programs.depth[i])
        steps = codes[i][d : d + 1] if answer_only else codes[i][1 : d + 1]
        out.append((index[corpus.program(i)], codes[i][0], *steps))
    return out


def test_sampler_matches_simulator() -> None:
    params = HLSMParams.truth(SPEC_S, epsilon=0.2)
    ours = Counter(_keys(sample(SPEC_S, params, SUPPORT_S, 4000, seed=1, weights=WEIGHTS_S), SUPPORT_S, True))
    sim = simulate(SPEC_S, SUPPORT_S, 4000, 2, weights=WEIGHTS_S, epsilon=0.2)
    theirs = Counter(_keys(sim, SUPPORT_S, True))
    cells = sorted(set(ours) | set(theirs))  # about 48 cells of (program, x_0, answer), most of them well filled
    table = [[ours[c] for c in cells], [theirs[c] for c in cells]]
    result = stats.chi2_contingency(table)
    assert result.pvalue > P_MIN, f"homogeneity rejected: p = {result.pvalue:.2g}"


def test_sampler_matches_exact_trace_distribution() -> None:
    params = _random_params(SPEC_S, seed=11, dense=False)
    n = 6000
    observed = Counter(_keys(sample(SPEC_S, params, SUPPORT_S, n, seed=5, weights=WEIGHTS_S), SUPPORT_S, False))
    prior = torch.tensor(WEIGHTS_S) / sum(WEIGHTS_S)
    expected: dict[tuple[int, ...], float] = {}
    for i, program in enumerate(SUPPORT_S):
        for x0 in range(SPEC_S.num_states):
            for xs, p in exact.trace_distribution(SPEC_S, params, program, x0).items():
                expected[(i, x0, *xs)] = n * float(prior[i]) / SPEC_S.num_states * p
    assert set(observed) <= set(expected)
    # pool the cells expected below 5 into one, so the chi-square approximation holds
    small = [c for c, e in expected.items() if e < 5]
    big = [c for c, e in expected.items() if e >= 5]
    f_obs = [observed[c] for c in big] + [sum(observed[c] for c in small)]
    f_exp = [expected[c] for c in big] + [sum(expected[c] for c in small)]
    result = stats.chisquare(f_obs, f_exp)
    assert result.pvalue > P_MIN, f"goodness of fit rejected: p = {result.pvalue:.2g}"


def test_sample_is_a_corpus_with_the_exposure_mask() -> None:
    params = HLSMParams.truth(SPEC_S, epsilon=0.2)
    state = torch.random.get_rng_state()
    corpus = sample(SPEC_S, params, SUPPORT_S, 50, seed=0, exposure="answer")
    assert torch.equal(torch.random.get_rng_state(), state), "sample() must not move the global RNG"
    again = sample(SPEC_S, params, SUPPORT_S, 50, seed=0, exposure="answer")
    assert torch.equal(corpus.states, again.states) and torch.equal(corpus.programs.skill, again.programs.skill)
    assert corpus.states.shape == (50, 3, 2) and corpus.mask.shape == (50, 2)
    for i in range(len(corpus)):
        d = int(corpus.programs.depth[i])
        assert tuple(corpus.mask[i, :d].tolist()) == exposure_mask("answer", d)
        assert not corpus.mask[i, d:].any()
        assert torch.equal(corpus.states[i, d:], corpus.states[i, d : d + 1].expand(3 - d, -1))
    assert log_likelihood(SPEC_S, params, SUPPORT_S, corpus) == pytest.approx(
        exact.log_likelihood(SPEC_S, params, SUPPORT_S, corpus), abs=1e-9, rel=0
    )


# -- clear errors --------------------------------------------------------------------------------


def test_param_errors() -> None:
    good = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ModelError, match="open interval"):
        HLSMParams(good, good, 0.0)
    with pytest.raises(ModelError, match="open interval"):
        HLSMParams(good, good, 1.0)
    with pytest.raises(ModelError, match="sum to 1"):
        HLSMParams(good * 0.5, good, 0.1)
    with pytest.raises(ModelError, match="2 dimensions"):
        HLSMParams(torch.ones(3, dtype=torch.float64), good, 0.1)
    with pytest.raises(ModelError, match="non-negative"):
        HLSMParams(torch.tensor([[1.5, -0.5]], dtype=torch.float64), good, 0.1)
    corpus = simulate(SPEC_A, SUPPORT_A, 4, 0)
    wrong = HLSMParams(torch.eye(4, dtype=torch.float64), good, 0.1)
    with pytest.raises(ModelError, match=r"alpha has shape \(4, 4\) but the spec needs \(3, 3\)"):
        log_likelihood(SPEC_A, wrong, SUPPORT_A, corpus)
    tables = torch.full((3, 8, 8), 1 / 8, dtype=torch.float64)
    with pytest.raises(ModelError, match=r"tables has shape"):
        log_likelihood(SPEC_A, HLSMParams(good, good, 0.1, tables), SUPPORT_A, corpus)


def test_hidden_states_need_a_small_state_space() -> None:
    spec = Spec(alphabet=4, length=7, skills=("reverse", "sort"), routings=("chain",))
    assert spec.num_states > MAX_ENUMERATED_STATES
    support = [Program(((0, 0), (0, 1)))]
    params = HLSMParams.truth(spec, epsilon=0.1)
    hidden = simulate(spec, support, 3, 0, exposure="answer", epsilon=0.1)
    with pytest.raises(ModelError, match=f"exceeds {MAX_ENUMERATED_STATES}"):
        log_likelihood(spec, params, support, hidden)
    full = simulate(spec, support, 3, 0, exposure="full", epsilon=0.1)
    assert log_likelihood(spec, params, support, full) == pytest.approx(
        exact.log_likelihood(spec, params, support, full), abs=1e-9, rel=0
    )


def test_support_errors() -> None:
    params = HLSMParams.truth(SPEC_A, epsilon=0.1)
    corpus = simulate(SPEC_A, SUPPORT_A, 20, 0)
    with pytest.raises(ModelError, match="is not in the support; add it"):
        log_likelihood(SPEC_A, params, SUPPORT_A[:2], corpus)
    with pytest.raises(ModelError, match="lists a program twice"):
        log_likelihood(SPEC_A, params, [*SUPPORT_A, SUPPORT_A[0]], corpus)
    with pytest.raises(ModelError, match="one per program"):
        log_likelihood(SPEC_A, params, SUPPORT_A, corpus, weights=[1.0])
    with pytest.raises(ModelError, match="another spec"):
        log_likelihood(SPEC_B, HLSMParams.truth(SPEC_B, epsilon=0.1), SUPPORT_A, corpus)
    with pytest.raises(ModelError, match="num_traces"):
        hlsm(SPEC_A, params, SUPPORT_A)
    empty = simulate(SPEC_A, SUPPORT_A, 0, 0)
    with pytest.raises(ModelError, match="corpus is empty"):
        hlsm(SPEC_A, params, SUPPORT_A, data=empty)
    assert (
        log_likelihood(SPEC_A, params, SUPPORT_A, empty)
        == 0.0
        == exact.log_likelihood(SPEC_A, params, SUPPORT_A, empty)
    )


def test_unenumerated_latent_is_an_error() -> None:
    def model() -> None:
        with pyro.plate("p", 3, dim=-1):
            pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            pyro.sample("w", dist.Bernoulli(0.5))  # not enumerable: would be sampled, not summed out

    with pytest.raises(ModelError, match=r"\['w'\] were sampled instead of enumerated"):
        enumerated_log_likelihood(model)

"""hlsm.stats against oracles: the binomial SE by enumeration, the paired SE and the t interval by
Monte Carlo and by hand, the pooled difference, the verdicts on constructed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from hlsm.stats import (
    Accuracy,
    Interval,
    PairedDifference,
    PooledDifference,
    SeedOutcome,
    binomial_se,
    paired_difference,
    pooled_difference,
    pooled_se,
    proportion,
    rounded,
    seed_verdict,
    t_interval,
)

# ---------------------------------------------------------------------------------------------
# the binomial SE


def test_binomial_standard_error() -> None:
    assert binomial_se(0.25, 100) == pytest.approx(math.sqrt(0.25 * 0.75 / 100))
    assert binomial_se(1.0, 10) == 0.0 and math.isnan(binomial_se(0.5, 0))


@pytest.mark.parametrize(("p", "n"), [(0.5, 1), (0.3, 7), (0.05, 40), (0.9, 256)])
def test_binomial_se_is_the_sd_of_the_sample_proportion(p: float, n: int) -> None:
    """Enumerating every count k ~ Binomial(n, p): sd(k / n) = sqrt(p (1 - p) / n) exactly."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    mean = sum(w * k / n for k, w in enumerate(pmf))
    sd = math.sqrt(sum(w * (k / n - mean) ** 2 for k, w in enumerate(pmf)))
    assert binomial_se(p, n) == pytest.approx(sd, rel=1e-9)  # floating-point sums only


def test_proportion() -> None:
    assert proportion(3, 4) == Accuracy(4, 0.75, math.sqrt(0.75 * 0.25 / 4))
    assert proportion(0, 0) == Accuracy(0, None, None)
    assert rounded(1 / 3) == 0.333333 and rounded(math.nan) is None and rounded(None) is None


# ---------------------------------------------------------------------------------------------
# paired differences

JOINT = {(1, 1): 0.5, (1, 0): 0.2, (0, 1): 0.1, (0, 0): 0.2}
"""P(a right, b right) per example: d = a - b is +1 w.p. 0.2, -1 w.p. 0.1, so E d = 0.1, Var d = 0.29."""


def _pairs(rng: np.random.Generator, n: int) -> tuple[list[bool], list[bool]]:
    cells = list(JOINT)
    draws = rng.choice(len(cells), size=n, p=list(JOINT.values()))
    return [bool(cells[i][0]) for i in draws], [bool(cells[i][1]) for i in draws]


def test_paired_difference_by_hand() -> None:
    a, b = [True, True, False, False, True], [True, False, False, True, False]
    # d = (0, 1, 0, -1, 1): mean 0.2, sum of squared deviations 2.8, sd = sqrt(2.8 / 4)
    out = paired_difference(a, b)
    assert out.n == 5
    assert out.difference == pytest.approx(0.2, abs=1e-7)  # single precision
    assert out.se == pytest.approx(math.sqrt(0.7) / math.sqrt(5), abs=1e-7)
    assert paired_difference([], []) == PairedDifference(0, None, None)
    assert paired_difference([True], [False]) == PairedDifference(1, 1.0, None)
    assert paired_difference([True] * 4, [True] * 4) == PairedDifference(4, 0.0, 0.0)
    with pytest.raises(ValueError, match="one entry per example"):
        paired_difference([True], [True, False])


def test_paired_se_matches_the_spread_of_the_difference() -> None:
    """Monte Carlo: over R data sets of N examples, the paired SE estimates sd(mean d) = sqrt(0.29 / N),
    and the mean difference is unbiased; the unpaired SE (a and b positively correlated) is larger."""
    rng = np.random.default_rng(0)
    R, N = 2000, 200
    outs = [paired_difference(*_pairs(rng, N)) for _ in range(R)]
    diffs = np.array([o.difference for o in outs])
    ses = np.array([o.se for o in outs])
    true_se = math.sqrt(0.29 / N)
    # mean of R differences: SE true_se / sqrt(R); 4 SEs
    assert abs(diffs.mean() - 0.1) < 4 * true_se / math.sqrt(R)
    # the sd of R normal-ish draws has relative SE about 1 / sqrt(2 (R - 1)) (3.2%); 4 SEs
    assert abs(diffs.std(ddof=1) / true_se - 1) < 4 / math.sqrt(2 * (R - 1))
    # each estimated SE has relative sd about 1 / sqrt(2 N) (5%); their mean over R: 4 SEs of that
    assert abs(ses.mean() / true_se - 1) < 4 / math.sqrt(2 * N * R) + 0.01  # + the O(1/N) bias of sd
    pa, pb = 0.7, 0.6  # marginals of JOINT
    unpaired = math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / N)
    assert true_se < unpaired


# ---------------------------------------------------------------------------------------------
# the Student-t interval


def test_interval_is_the_student_t_interval() -> None:
    out = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(k)
    assert out.mean == pytest.approx(2.0)
    assert (out.low, out.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert t_interval([0.5]).low is None and t_interval([None]).mean is None
    assert t_interval([0.5]) == Interval(1, 0.5, None, None) and t_interval([]) == Interval(0, None, None, None)
    assert t_interval([1.0, None, math.nan, 3.0]).seeds == 2  # undefined seeds are skipped


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_t_interval_matches_scipy(level: float) -> None:
    xs = [0.31, 0.42, 0.27, 0.55, 0.38]
    low, high = scipy_stats.t.interval(level, len(xs) - 1, loc=np.mean(xs), scale=scipy_stats.sem(xs))
    out = t_interval(xs, level)
    assert (out.low, out.high) == pytest.approx((low, high), rel=1e-12)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_t_interval_covers_the_true_mean(k: int) -> None:
    """Monte Carlo: k normal values around a known mean; the 95% interval covers it 95% of the time."""
    rng = np.random.default_rng(k)
    R, mu = 4000, 0.3
    covered = 0
    for _ in range(R):
        out = t_interval(rng.normal(mu, 0.1, size=k).tolist())
        assert out.low is not None and out.high is not None
        covered += out.low <= mu <= out.high
    # the coverage of R independent intervals has SE sqrt(0.95 * 0.05 / R) (0.34%); 4 SEs
    assert abs(covered / R - 0.95) < 4 * math.sqrt(0.95 * 0.05 / R)


# ---------------------------------------------------------------------------------------------
# pooled differences and verdicts


def test_pooled_difference() -> None:
    diffs = [PairedDifference(10, 0.1, 0.03), PairedDifference(10, 0.2, 0.04), PairedDifference(1, 0.5, None)]
    out = pooled_difference(diffs)  # the seed without an SE is left out
    assert out.seeds == 2 and out.difference == pytest.approx(0.15)
    assert out.se == pytest.approx(math.sqrt(0.03**2 + 0.04**2) / 2)
    assert pooled_se([0.03, 0.04]) == pytest.approx(0.025)
    assert pooled_difference([PairedDifference(0, None, None)]) == PooledDifference(0, None, None)


def test_pooled_difference_covers_the_true_difference() -> None:
    """Monte Carlo: 3 seeds of N paired examples; d +- 2 pooled SEs covers E d = 0.1 about 95% of the time."""
    rng = np.random.default_rng(1)
    R, N = 1000, 150
    covered = 0
    for _ in range(R):
        out = pooled_difference(paired_difference(*_pairs(rng, N)) for _ in range(3))
        assert out.difference is not None and out.se is not None
        covered += abs(out.difference - 0.1) <= 2 * out.se
    # P(|Z| <= 2) = 0.9545; the coverage of R intervals has SE about 0.0066; 4 SEs
    assert abs(covered / R - 0.9545) < 4 * math.sqrt(0.9545 * 0.0455 / R)


# ---------------------------------------------------------------------------------------------
# the saved form


@pytest.mark.parametrize(
    ("value", "saved"),
    [
        (Accuracy(4, 0.75, 0.2165), {"n": 4, "accuracy": 0.75, "se": 0.2165}),
        (PairedDifference(3, None, None), {"n": 3, "difference": None, "se": None}),
        (Interval(2, 0.5, 0.1, 0.9), {"seeds": 2, "mean": 0.5, "low": 0.1, "high": 0.9}),
        (PooledDifference(2, 0.1, 0.02), {"seeds": 2, "difference": 0.1, "se": 0.02}),
    ],
)
def test_saved_form_round_trips(value: Accuracy | PairedDifference | Interval | PooledDifference, saved: dict) -> None:
    assert value.to_dict() == saved and list(value.to_dict()) == list(saved)  # keys in the saved order
    assert type(value).from_dict(json.loads(json.dumps(value.to_dict()))) == value


# ---------------------------------------------------------------------------------------------
# the seed-aware verdict


def _seed_diffs(rng: np.random.Generator, effect: float, seed_sd: float, seeds: int, n: int) -> list[PairedDifference]:
    """Synthetic paired evaluations with a known mean effect: seed ``s`` has its own effect
    ``e_s ~ N(effect, seed_sd)``; arm ``a`` is right with probability ``0.3 + e_s``, arm ``b`` with 0.3,
    independently, on the same ``n`` examples."""
    out = []
    for _ in range(seeds):
        e = rng.normal(effect, seed_sd)
        a = rng.random(n) < 0.3 + e
        b = rng.random(n) < 0.3
        out.append(paired_difference(a.tolist(), b.tolist()))
    return out


def test_seed_verdict_outcomes_on_constructed_differences() -> None:
    def d(*values: float) -> list[PairedDifference]:
        return [PairedDifference(100, v, 0.01) for v in values]

    assert seed_verdict(d(0.10, 0.12, 0.11)).outcome == SeedOutcome.HELD
    assert seed_verdict(d(-0.10, -0.12, -0.11)).outcome == SeedOutcome.REFUTED
    assert seed_verdict(d(0.001, -0.002, 0.0005)).outcome == SeedOutcome.NO_EFFECT
    assert seed_verdict(d(0.10, -0.08, 0.02)).outcome == SeedOutcome.NOT_RESOLVED
    assert seed_verdict(d(0.10, 0.12)).outcome == SeedOutcome.TOO_FEW_SEEDS
    wide = seed_verdict(d(0.10, -0.08, 0.02))
    assert wide.detectable is not None and wide.high is not None and wide.detectable > wide.high - wide.difference
    saved = seed_verdict(d(0.10, 0.12, 0.11)).to_dict()
    assert saved["outcome"] == "held" and json.loads(json.dumps(saved)) == saved


@pytest.mark.parametrize(("seeds", "seed_sd"), [(3, 0.03), (5, 0.05)])
def test_seed_interval_covers_the_true_effect_at_the_nominal_rate(seeds: int, seed_sd: float) -> None:
    """Known effect 5 points, known seed spread, 512 paired examples per seed: the 95% t interval over
    seeds covers the effect in 95% of 600 replicates. Failure budget: 4 binomial SEs of the
    coverage estimate (sqrt(0.95 * 0.05 / 600) = 0.0089), plus 0.01 for the d_s being binomial
    rather than normal."""
    rng = np.random.default_rng(seeds)
    covered = 0
    runs = 600
    for _ in range(runs):
        v = seed_verdict(_seed_diffs(rng, 0.05, seed_sd, seeds, 512))
        assert v.low is not None and v.high is not None
        covered += v.low <= 0.05 <= v.high
    assert abs(covered / runs - 0.95) < 4 * math.sqrt(0.95 * 0.05 / runs) + 0.01


def test_a_zero_effect_is_called_held_at_most_at_the_nominal_rate() -> None:
    """True effect 0 with seed spread 3 points: "held" needs the interval above 0, a one-sided 2.5%
    event; over 800 replicates the rate stays below 5% (the bound the experiments promise; 2.5% +
    4 SEs = 4.7%)."""
    rng = np.random.default_rng(7)
    runs = 800
    held = sum(seed_verdict(_seed_diffs(rng, 0.0, 0.03, 3, 512)).outcome == SeedOutcome.HELD for _ in range(runs))
    assert held / runs < 0.05


def test_power_matches_the_noncentral_t_and_the_detectable_effect_is_about_80_percent_power() -> None:
    """For normal per-seed differences with known total sd, P(held) is exactly the noncentral-t tail;
    the simulated rate agrees within 4 SEs, and at the design's ``detectable`` effect the exact
    power is 80% up to the approximation of the noncentral t by a shifted central t (checked: 0.75-0.85)."""
    rng = np.random.default_rng(3)
    k, sd, effect, runs = 4, 0.04, 0.06, 1500
    crit = scipy_stats.t.ppf(0.975, k - 1)
    exact = 1 - scipy_stats.nct.cdf(crit, k - 1, effect * math.sqrt(k) / sd)
    held = 0
    for _ in range(runs):
        diffs = [PairedDifference(512, float(x), 0.02) for x in rng.normal(effect, sd, k)]
        held += seed_verdict(diffs).outcome == SeedOutcome.HELD
    assert abs(held / runs - exact) < 4 * math.sqrt(exact * (1 - exact) / runs)
    mde = (crit + scipy_stats.t.ppf(0.8, k - 1)) * sd / math.sqrt(k)  # the formula at the true sd
    power_at_mde = 1 - scipy_stats.nct.cdf(crit, k - 1, mde * math.sqrt(k) / sd)
    assert 0.75 < power_at_mde < 0.85


def test_seeds_to_decide_is_where_the_interval_would_clear_zero_or_fit_the_margin() -> None:
    from hlsm.stats import seeds_to_decide, t_interval

    def d(*values: float) -> list[PairedDifference]:
        return [PairedDifference(100, v, 0.01) for v in values]

    unresolved = seed_verdict(d(0.09, -0.01, 0.04, 0.02, 0.06))  # mean 4 points, sd about 3.8
    assert unresolved.outcome == SeedOutcome.NOT_RESOLVED
    n = seeds_to_decide(unresolved)
    assert n is not None and n > 5
    # the answer by brute force: the same mean and sd at n and n - 1 seeds
    mean, sd = 0.04, float(np.std([0.09, -0.01, 0.04, 0.02, 0.06], ddof=1))

    def clears(k: int) -> bool:
        half = float(scipy_stats.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)
        return half < mean or mean + half < 0.03

    assert clears(n) and not clears(n - 1)
    assert t_interval([0.09, -0.01, 0.04, 0.02, 0.06]).high == pytest.approx(unresolved.high)
    assert seeds_to_decide(seed_verdict(d(0.10, 0.12, 0.11))) is None  # already decided

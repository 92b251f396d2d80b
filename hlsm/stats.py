"""The statistics of the experiments: binomial standard errors, paired differences, Student-t
intervals over seeds, pooled differences, and the verdict on a prediction.

Pure functions on numbers and sequences (no torch), importable from every layer. The quantities:

* an accuracy ``p = c / N`` over ``N`` independent examples has the binomial standard error
  ``SE = sqrt(p (1 - p) / N)`` (:func:`binomial_se`, :func:`proportion`);
* two models scored on the *same* examples give per-example differences ``d_i = c^a_i - c^b_i``
  in ``{-1, 0, 1}``; their mean has the paired standard error ``sd(d) / sqrt(N)``
  (:func:`paired_difference`), smaller than the unpaired one when the models err together;
* ``k`` seeds give ``k`` values ``x_s`` (an accuracy, a difference); their mean has the Student-t
  interval ``mean +- t_{(1 + level) / 2, k - 1} sd(x) / sqrt(k)`` (:func:`t_interval`), which
  covers the true mean with probability ``level`` when the ``x_s`` are normal;
* the per-seed paired differences pooled over seeds, ``mean_s d_s`` with
  ``SE = sqrt(sum_s SE_s^2) / k`` (:func:`pooled_difference`): the examples' noise only (examples
  are independent across seeds), not the seed-to-seed spread: shown in tables, never a verdict;
* the verdict (:func:`seed_verdict`): the per-seed paired differences ``d_s`` (each
  carrying its seed's example noise) have the Student-t interval over seeds, so both the examples'
  noise and the seed-to-seed spread enter; *held* when the interval is above 0, *refuted* when it is
  below 0, *no effect* when it lies inside ``(-margin, margin)``, else *not resolved*; with the
  smallest effect the design detects with 80% power, ``(t_{0.975, k-1} + t_{0.8, k-1}) sd(d) / sqrt(k)``.

Each result is a frozen dataclass whose ``to_dict`` is its saved JSON form (``None`` where a
quantity is not defined) and whose ``from_dict`` reads that form back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import stats as _scipy_stats

from hlsm.saved import Saved


def binomial_se(p: float, n: int) -> float:
    """``sqrt(p (1 - p) / n)``; nan when ``n = 0``."""
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def rounded(x: float | None, digits: int = 6) -> float | None:
    """``x`` rounded to ``digits`` decimals as results are saved; None for None or nan (not defined)."""
    return None if x is None or math.isnan(x) else round(x, digits)


@dataclass(frozen=True)
class Accuracy(Saved):
    """An accuracy over ``n`` examples with its binomial standard error (None when ``n = 0``).

    Saved as ``{"n", "accuracy", "se"}``.
    """

    n: int
    accuracy: float | None
    se: float | None


def proportion(successes: int, n: int) -> Accuracy:
    """``p = successes / n`` with ``SE = sqrt(p (1 - p) / n)`` (:func:`binomial_se`); None for both when ``n = 0``."""
    if not n:
        return Accuracy(0, None, None)
    p = successes / n
    return Accuracy(n, p, binomial_se(p, n))


@dataclass(frozen=True)
class PairedDifference(Saved):
    """The mean per-example difference of two models on the same ``n`` examples and its paired SE.

    ``difference`` is None when ``n = 0``, ``se`` when ``n < 2``. Saved as ``{"n", "difference", "se"}``.
    """

    n: int
    difference: float | None
    se: float | None

    def rounded(self, digits: int = 6) -> PairedDifference:
        """The same difference with both numbers :func:`rounded` as results are saved."""
        return replace(self, difference=rounded(self.difference, digits), se=rounded(self.se, digits))


def _single(x: float) -> float:
    """``x`` rounded to single precision (float32) and back."""
    return float(np.float32(x))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same examples, with the paired standard error.

    Parameters
    ----------
    a, b
        ``(N,)`` per-example correctness of two models on the same examples, in the same order
        (or any per-example values, e.g. one model's gain over another: the same formula then
        gives a difference of two paired differences and its SE).

    Returns
    -------
    PairedDifference
        ``mean(d)`` and ``sd(d) / sqrt(N)`` of ``d_i = a_i - b_i`` (``sd`` with ``N - 1``). The mean
        and ``sd`` are held in single precision, as the saved results have always been computed
        (the mean of float32 values; the squared deviations from it summed in double precision, the
        ``sd`` stored in float32), so that saved results do not change at their 6 digits.

    Raises
    ------
    ValueError
        When ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes must have one entry per example in both; got {len(a)} and {len(b)}")
    n = len(a)
    if not n:
        return PairedDifference(0, None, None)
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    mean = _single(sum(d) / n)
    if n < 2:
        return PairedDifference(n, mean, None)
    sd = _single(math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1)))
    return PairedDifference(n, mean, sd / math.sqrt(n))


@dataclass(frozen=True)
class Interval(Saved):
    """A mean over ``seeds`` values with its Student-t interval ``[low, high]``.

    ``mean`` is None with no value, ``low`` and ``high`` with fewer than 2. Saved as
    ``{"seeds", "mean", "low", "high"}``.
    """

    seeds: int
    mean: float | None
    low: float | None
    high: float | None


def t_interval(values: Iterable[float | None], level: float = 0.95) -> Interval:
    """Mean and Student-t interval of the values (one per seed): ``mean +- t_{(1 + level) / 2, k - 1} sd / sqrt(k)``.

    None and nan values (a seed where the quantity is not defined) are skipped; ``sd`` divides by
    ``k - 1``. The interval assumes the ``k`` values independent and normal; it is exact then.
    """
    xs = [v for v in values if v is not None and not math.isnan(v)]
    k = len(xs)
    if k == 0:
        return Interval(0, None, None, None)
    mean = sum(xs) / k
    if k < 2:
        return Interval(k, mean, None, None)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (k - 1))
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, k - 1)) * sd / math.sqrt(k)
    return Interval(k, mean, mean - half, mean + half)


@dataclass(frozen=True)
class PooledDifference(Saved):
    """Per-seed paired differences pooled over ``seeds`` seeds. Saved as ``{"seeds", "difference", "se"}``."""

    seeds: int
    difference: float | None
    se: float | None


def pooled_se(ses: Sequence[float]) -> float:
    """``sqrt(sum_s SE_s^2) / k``: the SE of the mean of ``k`` independent estimates with SEs ``SE_s``."""
    return math.sqrt(sum(se**2 for se in ses)) / len(ses)


def pooled_difference(diffs: Iterable[PairedDifference]) -> PooledDifference:
    """The mean of the per-seed differences with :func:`pooled_se` of their SEs.

    Seeds whose difference or SE is not defined are left out (``seeds`` counts the others). The SE
    holds the examples' noise (independent across seeds), not the seed-to-seed variation.
    """
    rows = [(d.difference, d.se) for d in diffs if d.difference is not None and d.se is not None]
    if not rows:
        return PooledDifference(0, None, None)
    k = len(rows)
    return PooledDifference(k, sum(d for d, _ in rows) / k, pooled_se([se for _, se in rows]))


class SeedOutcome(StrEnum):
    """The outcome of a prediction ``a > b`` from the t interval over seeds (:func:`seed_verdict`)."""

    HELD = "held"
    """The interval lies above 0."""
    REFUTED = "refuted"
    """The interval lies below 0."""
    NO_EFFECT = "no effect"
    """The interval lies inside the equivalence margin ``(-margin, margin)``."""
    NOT_RESOLVED = "not resolved"
    """None of the above (the interval straddles 0 and reaches past the margin)."""
    TOO_FEW_SEEDS = "too few seeds"
    """Fewer than ``min_seeds`` seeds with a difference: seed-to-seed variance cannot be estimated."""


@dataclass(frozen=True)
class SeedVerdict(Saved):
    """A prediction ``a > b`` judged on per-seed paired differences. Saved flat (:meth:`to_dict`).

    ``difference`` is the mean of the per-seed differences, ``low``/``high`` its ``level`` t interval
    over seeds, ``margin`` the equivalence margin, ``detectable`` the smallest true difference the
    design would call held with 80% power at the observed seed spread (None with fewer than 2 seeds),
    ``outcome`` a :class:`SeedOutcome` value.
    """

    seeds: int
    difference: float | None
    low: float | None
    high: float | None
    margin: float
    detectable: float | None
    outcome: str


def seed_verdict(
    diffs: Iterable[PairedDifference],
    *,
    margin: float = 0.03,
    level: float = 0.95,
    power: float = 0.8,
    min_seeds: int = 3,
) -> SeedVerdict:
    """The seed-aware verdict on ``a > b`` from one paired difference per seed (same examples per seed).

    Each seed's difference ``d_s`` is an unbiased estimate of that seed's effect, whose noise is the
    examples'; the seeds' effects vary around the true effect. The ``d_s`` are independent across
    seeds, so the t interval over them (:func:`t_interval`) covers the true mean effect at ``level``
    when the ``d_s`` are normal, with both sources of noise in its width. ``margin`` (in the units of
    the differences, e.g. 0.03 = 3 points) separates "no effect" from "not resolved".
    """
    values = [d.difference for d in diffs if d.difference is not None]
    interval = t_interval(values, level)
    k = interval.seeds
    if k < min_seeds or interval.low is None or interval.high is None or interval.mean is None:
        return SeedVerdict(k, interval.mean, interval.low, interval.high, margin, None, SeedOutcome.TOO_FEW_SEEDS.value)
    half = interval.high - interval.mean
    t_level = float(_scipy_stats.t.ppf(0.5 + level / 2, k - 1))
    detectable = half * (t_level + float(_scipy_stats.t.ppf(power, k - 1))) / t_level
    if interval.low > 0:
        outcome = SeedOutcome.HELD
    elif interval.high < 0:
        outcome = SeedOutcome.REFUTED
    elif -margin < interval.low and interval.high < margin:
        outcome = SeedOutcome.NO_EFFECT
    else:
        outcome = SeedOutcome.NOT_RESOLVED
    return SeedVerdict(k, interval.mean, interval.low, interval.high, margin, detectable, outcome.value)


def seeds_to_decide(verdict: SeedVerdict, *, level: float = 0.95, most: int = 1000) -> int | None:
    """How many seeds a ``not resolved`` verdict would need to be decided, were its mean and seed
    spread the true ones: the smallest ``n`` whose t interval ``mean +- t_{n-1} sd / sqrt(n)`` lies
    above 0, below 0, or inside the equivalence margin. ``sd`` is read back from the verdict's
    interval, which must have been computed at ``level`` (the verdict does not store it; the
    experiments use 0.95). None when the verdict is not ``not resolved``, or when no ``n <= most``
    decides it (a mean on the margin's edge).
    """
    if verdict.outcome != SeedOutcome.NOT_RESOLVED.value:
        return None
    assert verdict.difference is not None and verdict.high is not None
    k = verdict.seeds
    t_k = float(_scipy_stats.t.ppf(0.5 + level / 2, k - 1))
    sd = (verdict.high - verdict.difference) * math.sqrt(k) / t_k
    mean = abs(verdict.difference)
    for n in range(k + 1, most + 1):
        half = float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        if half < mean or mean + half < verdict.margin:
            return n
    return None

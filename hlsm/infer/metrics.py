"""Recovery and prediction metrics: compare fitted modules to the truth up to relabelling.

A fitted HLSM names its skills ``0, ..., K - 1`` in an arbitrary order, so recovery is scored after
matching recovered skill tables to true ones (Hungarian assignment on the mean row-wise total
variation distance), then mapping bindings through that matching. Clusterings are compared with the
label-free adjusted Rand index and normalised mutual information; predictions on unseen programs with
agreement across restarts, accuracy and entropy.

Every function is pure: it takes arrays (NumPy arrays, or CPU/GPU torch tensors, which are detached
and copied to the host) and returns floats, NumPy arrays or a frozen dataclass. Bad input raises
:class:`MetricError`, whose message names the violated condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.special import entr

from hlsm.errors import HLSMError

_ROW_TOL = 1e-6


class MetricError(HLSMError):
    """Arrays whose shapes or values a metric cannot use; the message names the fix."""


@dataclass(frozen=True, eq=False)
class Matching:
    """A matching of recovered skill tables to true ones.

    Attributes
    ----------
    permutation : NDArray[np.int64]
        ``(K,)``; ``permutation[i]`` is the recovered skill index matched to true skill ``i``.
    tv : NDArray[np.float64]
        ``(K,)``; ``tv[i]`` is the mean row-wise total variation distance between true table ``i`` and
        recovered table ``permutation[i]``.
    mean_tv : float
        Mean of ``tv``: the minimised assignment cost divided by ``K``.
    max_tv : float
        Largest entry of ``tv``: the worst recovered skill.
    """

    permutation: NDArray[np.int64]
    tv: NDArray[np.float64]
    mean_tv: float
    max_tv: float


def _as_array(x: Any, name: str) -> NDArray[Any]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise MetricError(f"{name} must be a numeric or string array, got dtype object; pass a rectangular array")
    return arr


def _check_stochastic(name: str, arr: NDArray[Any]) -> NDArray[np.float64]:
    out = np.asarray(arr, dtype=np.float64)
    if out.ndim < 1 or out.shape[-1] == 0:
        raise MetricError(f"{name} must have a non-empty last axis, got shape {out.shape}")
    if not np.all(np.isfinite(out)) or np.any(out < -_ROW_TOL):
        raise MetricError(f"{name} must be finite and non-negative; pass probabilities")
    if not np.allclose(out.sum(-1), 1.0, atol=_ROW_TOL * out.shape[-1]):
        raise MetricError(f"{name} must sum to 1 along its last axis; normalise the rows first")
    return out


def _check_labels(name: str, x: Any) -> NDArray[np.int64]:
    arr = _as_array(x, name)
    if not np.issubdtype(arr.dtype, np.integer):
        raise MetricError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def tv_distance(p: Any, q: Any) -> NDArray[np.float64]:
    """Row-wise total variation distance between row-stochastic arrays.

    ``TV(p_u, q_u) = 1/2 sum_x |p[u, x] - q[u, x]|``, in ``[0, 1]``.

    Parameters
    ----------
    p, q : array_like
        ``(..., S)`` arrays whose last axis is a probability vector; shapes must be equal.

    Returns
    -------
    NDArray[np.float64]
        ``(...)``: one distance per row (a 0-d array for 1-d inputs).
    """
    pa = _check_stochastic("p", _as_array(p, "p"))
    qa = _check_stochastic("q", _as_array(q, "q"))
    if pa.shape != qa.shape:
        raise MetricError(f"p and q must have equal shapes, got {pa.shape} and {qa.shape}")
    return np.asarray(0.5 * np.abs(pa - qa).sum(-1), dtype=np.float64)


def match_tables(recovered: Any, true: Any) -> Matching:
    """Match recovered skill tables to true ones by minimum mean total variation.

    The cost of assigning true skill ``i`` to recovered skill ``j`` is the mean over input states
    ``u`` of ``TV(true[i, u], recovered[j, u])``; the assignment minimising the total cost is found
    with the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    recovered : array_like
        ``(K_rec, S, S)`` row-stochastic tables with ``K_rec >= K`` (extra recovered skills stay
        unmatched).
    true : array_like
        ``(K, S, S)`` row-stochastic tables.

    Returns
    -------
    Matching
        ``permutation[i]`` is the recovered index matched to true skill ``i``.
    """
    rec = _check_stochastic("recovered", _as_array(recovered, "recovered"))
    tru = _check_stochastic("true", _as_array(true, "true"))
    if rec.ndim != 3 or tru.ndim != 3 or rec.shape[1:] != tru.shape[1:] or rec.shape[1] != rec.shape[2]:
        raise MetricError(
            f"recovered and true must be (K, S, S) tables over the same states, got {rec.shape} and {tru.shape}"
        )
    if rec.shape[0] < tru.shape[0]:
        raise MetricError(f"need at least as many recovered tables as true ones, got {rec.shape[0]} < {tru.shape[0]}")
    # cost[i, j] = mean_u TV(true[i, u], recovered[j, u]); (K, K_rec)
    cost = 0.5 * np.abs(tru[:, None] - rec[None, :]).sum(-1).mean(-1)
    rows, cols = linear_sum_assignment(cost)
    tv = cost[rows, cols]
    return Matching(
        permutation=cols.astype(np.int64),
        tv=tv.astype(np.float64),
        mean_tv=float(tv.mean()),
        max_tv=float(tv.max()),
    )


def binding_accuracy(alpha: Any, true_binding: Any, permutation: Any = None) -> float:
    """Fraction of skill symbols whose most probable recovered binding is the true skill.

    Parameters
    ----------
    alpha : array_like
        ``(K_sym, K_rec)`` recovered skill bindings (rows need not be normalised; only the argmax,
        first on ties, is used).
    true_binding : array_like
        ``(K_sym,)`` integers: the true skill of each symbol, in ``0, ..., K - 1``.
    permutation : array_like, optional
        ``(K,)`` from :func:`match_tables`: ``permutation[i]`` is the recovered index of true skill
        ``i``. ``None`` means the identity (recovered labels already aligned). A symbol bound to a
        recovered skill that matches no true skill counts as wrong.

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.
    """
    a = np.asarray(_as_array(alpha, "alpha"), dtype=np.float64)
    truth = _check_labels("true_binding", true_binding)
    if a.ndim != 2 or truth.shape != (a.shape[0],) or a.shape[0] == 0:
        raise MetricError(f"alpha must be (K_sym, K) and true_binding (K_sym,), got {a.shape} and {truth.shape}")
    pred = a.argmax(-1)
    if permutation is None:
        return float(np.mean(pred == truth))
    perm = _check_labels("permutation", permutation)
    if perm.ndim != 1 or np.any(perm < 0) or np.any(perm >= a.shape[1]) or len(np.unique(perm)) != len(perm):
        raise MetricError(f"permutation must hold distinct recovered indices in [0, {a.shape[1]}), got {perm}")
    to_true = np.full(a.shape[1], -1, dtype=np.int64)
    to_true[perm] = np.arange(len(perm))
    return float(np.mean(to_true[pred] == truth))


def _contingency(labels_true: Any, labels_pred: Any) -> NDArray[np.int64]:
    t = _as_array(labels_true, "labels_true")
    p = _as_array(labels_pred, "labels_pred")
    if t.ndim != 1 or t.shape != p.shape or t.size == 0:
        raise MetricError(f"labelings must be non-empty 1-d arrays of equal length, got {t.shape} and {p.shape}")
    _, ti = np.unique(t, return_inverse=True)
    pu, pi = np.unique(p, return_inverse=True)
    counts = np.bincount(ti.ravel() * len(pu) + pi.ravel(), minlength=(ti.max() + 1) * len(pu))
    return counts.reshape(-1, len(pu)).astype(np.int64)


def _pairs(n: NDArray[np.int64]) -> float:
    return float((n.astype(np.float64) * (n - 1) / 2).sum())


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985) of two clusterings.

    With contingency table ``n_ij``, row sums ``a_i``, column sums ``b_j`` and ``n`` items,
    ``index = sum_ij C(n_ij, 2)``, ``E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2)``,
    ``max = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2`` and ``ARI = (index - E) / (max - E)``.
    It is 1 for identical partitions, has expectation 0 under random labelings with fixed cluster
    sizes, and may be negative. Labels are names only: the value is invariant to relabelling.

    Degenerate case: ``max == E`` happens only when both labelings are a single cluster, or both put
    every item in its own cluster (including ``n = 1``); the partitions are then identical and the
    index is defined as 1.0 (as in scikit-learn).

    Parameters
    ----------
    labels_true, labels_pred : array_like
        ``(n,)`` cluster labels (any comparable dtype), ``n >= 1``.

    Returns
    -------
    float
    """
    c = _contingency(labels_true, labels_pred)
    n = int(c.sum())
    index = _pairs(c)
    sum_a = _pairs(c.sum(1))
    sum_b = _pairs(c.sum(0))
    total = n * (n - 1) / 2
    if total == 0:
        return 1.0
    expected = sum_a * sum_b / total
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def _entropy(counts: NDArray[np.int64]) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information with arithmetic-mean normalisation.

    ``NMI = I(U; V) / ((H(U) + H(V)) / 2)`` in nats from the empirical joint distribution
    ``n_ij / n`` (scikit-learn's default ``average_method="arithmetic"``), in ``[0, 1]``; 1 iff the
    partitions are identical, invariant to relabelling. Not adjusted for chance: random labelings with
    many clusters score above 0.

    Degenerate cases: both labelings a single cluster (``H(U) = H(V) = 0``) gives 1.0; exactly one a
    single cluster gives ``I = 0`` and hence 0.0.

    Parameters
    ----------
    labels_true, labels_pred : array_like
        ``(n,)`` cluster labels (any comparable dtype), ``n >= 1``.

    Returns
    -------
    float
    """
    c = _contingency(labels_true, labels_pred)
    h_true = _entropy(c.sum(1))
    h_pred = _entropy(c.sum(0))
    if c.shape[0] == 1 and c.shape[1] == 1:
        return 1.0
    n = c.sum()
    nz = c > 0
    joint = c[nz] / n
    outer = np.outer(c.sum(1), c.sum(0))[nz] / n**2
    mi = float((joint * (np.log(joint) - np.log(outer))).sum())
    return float(np.clip(mi / ((h_true + h_pred) / 2), 0.0, 1.0))


def _check_predictions(predictions: Any) -> NDArray[np.int64]:
    pred = _check_labels("predictions", predictions)
    if pred.ndim != 3 or pred.shape[0] < 2 or pred.shape[2] == 0:
        raise MetricError(f"predictions must be (R, P, B) with R >= 2 restarts and B >= 1, got {pred.shape}")
    return pred


def restart_agreement(predictions: Any) -> NDArray[np.float64]:
    """Pairwise agreement of predicted answers across restarts, per program.

    For program ``p``: the fraction of (restart pair ``r < r'``, input ``b``) with
    ``predictions[r, p, b] == predictions[r', p, b]``. It is 1 when every restart gives the same
    answers and ``~1/S`` when restarts guess uniformly among ``S`` answers.

    Parameters
    ----------
    predictions : array_like
        ``(R, P, B)`` integer answers of ``R >= 2`` restarts on ``P`` unseen programs and ``B`` inputs.

    Returns
    -------
    NDArray[np.float64]
        ``(P,)`` agreement in ``[0, 1]``.
    """
    pred = _check_predictions(predictions)
    r = pred.shape[0]
    agree = np.zeros(pred.shape[1:], dtype=np.float64)
    for i in range(r - 1):
        agree += (pred[i + 1 :] == pred[i]).sum(0)
    return np.asarray(agree.mean(-1) / (r * (r - 1) / 2), dtype=np.float64)


def modal_agreement(predictions: Any) -> NDArray[np.float64]:
    """Fraction of restarts agreeing with the modal answer, per program.

    For program ``p`` and input ``b``, the largest number of restarts giving one answer divided by
    ``R``; averaged over inputs. It lies in ``[1/R, 1]`` and is 1 when all restarts agree.

    Parameters
    ----------
    predictions : array_like
        ``(R, P, B)`` integer answers of ``R >= 2`` restarts on ``P`` unseen programs and ``B`` inputs.

    Returns
    -------
    NDArray[np.float64]
        ``(P,)`` agreement in ``[1/R, 1]``.
    """
    pred = _check_predictions(predictions)
    r = pred.shape[0]
    # counts[i, p, b] = number of restarts giving restart i's answer
    counts = np.stack([(pred == pred[i]).sum(0) for i in range(r)])
    return np.asarray(counts.max(0).mean(-1) / r, dtype=np.float64)


def predictive_accuracy_entropy(probs: Any, truth: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Accuracy of the most probable answer and mean predictive entropy, per program.

    Parameters
    ----------
    probs : array_like
        ``(P, B, S)`` predictive distributions over ``S`` answers for ``P`` programs and ``B`` inputs.
    truth : array_like
        ``(P, B)`` integer true answers in ``0, ..., S - 1``.

    Returns
    -------
    accuracy : NDArray[np.float64]
        ``(P,)``: fraction of inputs whose argmax answer (first on ties) equals the truth.
    entropy : NDArray[np.float64]
        ``(P,)``: mean over inputs of ``H = -sum_x p(x) log p(x)`` in nats (``0 log 0 = 0``).
    """
    pr = _check_stochastic("probs", _as_array(probs, "probs"))
    tr = _check_labels("truth", truth)
    if pr.ndim != 3 or tr.shape != pr.shape[:2] or pr.shape[1] == 0:
        raise MetricError(f"probs must be (P, B, S) and truth (P, B) with B >= 1, got {pr.shape} and {tr.shape}")
    if np.any(tr < 0) or np.any(tr >= pr.shape[2]):
        raise MetricError(f"truth must lie in [0, {pr.shape[2]}); pass answer indices, not states")
    accuracy = (pr.argmax(-1) == tr).mean(-1)
    entropy = entr(np.clip(pr, 0.0, None)).sum(-1).mean(-1)
    return np.asarray(accuracy, dtype=np.float64), np.asarray(entropy, dtype=np.float64)

"""Recovery metrics against hand-computed values and brute-force oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hlsm.infer.metrics import (
    MetricError,
    adjusted_rand_index,
    binding_accuracy,
    match_tables,
    modal_agreement,
    normalized_mutual_info,
    predictive_accuracy_entropy,
    restart_agreement,
    tv_distance,
)


def _tables(rng: np.random.Generator, k: int, s: int) -> np.ndarray:
    """(k, s, s) nearly deterministic tables: table i puts 0.9 on a random permutation of the states."""
    tables = np.full((k, s, s), 0.1 / (s - 1))
    for i in range(k):
        tables[i, np.arange(s), rng.permutation(s)] = 0.9
    return tables


def _ari_pairs(t: list[int], p: list[int]) -> float:
    """Oracle: ARI from the pair-confusion counts, enumerating all item pairs."""
    tp = fp = fn = tn = 0
    for i, j in itertools.combinations(range(len(t)), 2):
        same_t, same_p = t[i] == t[j], p[i] == p[j]
        tp += same_t and same_p
        fn += same_t and not same_p
        fp += same_p and not same_t
        tn += not same_t and not same_p
    return 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def test_tv_identical_and_disjoint() -> None:
    p = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(tv_distance(p, p), [0.0, 0.0])
    eye = np.eye(3)
    np.testing.assert_allclose(tv_distance(eye, eye[[1, 2, 0]]), [1.0, 1.0, 1.0])
    # torch input; TV([.5, .5, 0], [0, .5, .5]) = (.5 + 0 + .5) / 2
    assert float(tv_distance(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5]))) == pytest.approx(0.5)


def test_tv_rejects_bad_input() -> None:
    with pytest.raises(MetricError, match="sum to 1"):
        tv_distance(np.ones((2, 3)), np.ones((2, 3)) / 3)
    with pytest.raises(MetricError, match="equal shapes"):
        tv_distance(np.eye(3), np.eye(2))


def test_match_tables_recovers_permutation_exactly() -> None:
    rng = np.random.default_rng(0)
    true = _tables(rng, 5, 6)
    sigma = rng.permutation(5)  # recovered[j] = true[sigma[j]]
    m = match_tables(true[sigma], true)
    np.testing.assert_array_equal(m.permutation, np.argsort(sigma))
    np.testing.assert_allclose(m.tv, 0.0, atol=1e-12)
    assert m.mean_tv == pytest.approx(0.0, abs=1e-12) and m.max_tv == pytest.approx(0.0, abs=1e-12)


def test_match_tables_with_noise() -> None:
    rng = np.random.default_rng(1)
    true = _tables(rng, 4, 5)
    sigma = rng.permutation(4)
    eps = 0.1
    noise = rng.dirichlet(np.ones(5), size=(4, 5))
    recovered = (1 - eps) * true[sigma] + eps * noise
    m = match_tables(torch.from_numpy(recovered), true)
    np.testing.assert_array_equal(m.permutation, np.argsort(sigma))
    # TV((1 - eps) p + eps q, p) = eps TV(q, p) <= eps
    assert np.all(m.tv > 0) and np.all(m.tv <= eps)
    assert m.mean_tv == pytest.approx(m.tv.mean()) and m.max_tv == pytest.approx(m.tv.max())


def test_match_tables_extra_recovered_and_shape_errors() -> None:
    rng = np.random.default_rng(2)
    true = _tables(rng, 3, 4)
    recovered = np.concatenate([np.full((1, 4, 4), 0.25), true[[2, 0, 1]]])  # extra uniform table
    np.testing.assert_array_equal(match_tables(recovered, true).permutation, [2, 3, 1])
    with pytest.raises(MetricError, match="at least as many"):
        match_tables(true[:2], true)
    with pytest.raises(MetricError, match=r"\(K, S, S\)"):
        match_tables(true[:, :2], true[:, :2])


def test_binding_accuracy_with_permutation() -> None:
    true_binding = np.array([0, 1, 2, 3, 0, 1])
    alpha_true = np.full((6, 4), 0.1)
    alpha_true[np.arange(6), true_binding] = 0.7
    sigma = np.array([2, 0, 3, 1])  # recovered module j is true module sigma[j]
    alpha = alpha_true[:, sigma]
    perm = np.argsort(sigma)
    assert binding_accuracy(alpha, true_binding, perm) == 1.0
    # identity labels: symbol argmaxes are argsort(sigma)[true] = [1, 3, 0, 2, 1, 3], none correct
    assert binding_accuracy(alpha, true_binding) == 0.0
    alpha[5] = alpha[5, ::-1]  # symbol 5 now binds the wrong module
    assert binding_accuracy(alpha, true_binding, perm) == pytest.approx(5 / 6)
    with pytest.raises(MetricError, match="distinct"):
        binding_accuracy(alpha, true_binding, [0, 0, 1, 2])


def test_ari_nmi_hand_computed() -> None:
    # t = [0,0,1,1], p = [0,0,1,2]: n_ij = 2,1,1 -> index = 1; rows (2,2) -> 2; cols (2,1,1) -> 1;
    # C(4,2) = 6, E = 2 * 1 / 6 = 1/3, max = 3/2, ARI = (2/3) / (7/6) = 4/7.
    # H(U) = ln 2, H(V) = 1.5 ln 2, V determines U so I = ln 2, NMI = ln 2 / (1.25 ln 2) = 0.8.
    t, p = [0, 0, 1, 1], [0, 0, 1, 2]
    assert adjusted_rand_index(t, p) == pytest.approx(4 / 7)
    assert normalized_mutual_info(t, p) == pytest.approx(0.8)
    # t = [0,0,0,1,1,1], p = [0,0,1,1,2,2]: n_ij = 2,1,1,2 -> index = 2; rows (3,3) -> 6;
    # cols (2,2,2) -> 3; C(6,2) = 15, E = 18 / 15 = 1.2, max = 4.5, ARI = 0.8 / 3.3 = 8/33.
    # H(U) = ln 2, H(V) = ln 3, H(U|V) = (1/3) ln 2, I = (2/3) ln 2, NMI = 4 ln 2 / (3 ln 6).
    t, p = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    assert adjusted_rand_index(t, p) == pytest.approx(8 / 33)
    assert adjusted_rand_index(t, p) == pytest.approx(_ari_pairs(t, p))
    assert normalized_mutual_info(t, p) == pytest.approx(4 * math.log(2) / (3 * math.log(6)))


def test_ari_nmi_degenerate_cases() -> None:
    assert adjusted_rand_index([3, 3, 3], [7, 7, 7]) == 1.0
    assert normalized_mutual_info([3, 3, 3], [7, 7, 7]) == 1.0
    assert adjusted_rand_index([0, 1, 2], [5, 4, 3]) == 1.0
    assert normalized_mutual_info([0, 1, 2], [5, 4, 3]) == pytest.approx(1.0)
    assert adjusted_rand_index([0], [1]) == 1.0
    assert normalized_mutual_info([0, 0, 0], [0, 1, 2]) == 0.0
    assert adjusted_rand_index([0, 0, 0], [0, 1, 2]) == 0.0
    with pytest.raises(MetricError, match="equal length"):
        adjusted_rand_index([0, 1], [0, 1, 2])


def test_ari_nmi_label_permutation_invariance_and_oracle() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = rng.integers(0, 3, size=15)
        p = rng.integers(0, 4, size=15)
        relabel = rng.permutation(4) + 10
        ari, nmi = adjusted_rand_index(t, p), normalized_mutual_info(t, p)
        assert adjusted_rand_index(t, relabel[p]) == pytest.approx(ari)
        assert adjusted_rand_index(p, t) == pytest.approx(ari)
        assert normalized_mutual_info(t, relabel[p]) == pytest.approx(nmi)
        assert normalized_mutual_info(np.array(list("xyz"))[t], p) == pytest.approx(nmi)
        assert adjusted_rand_index(t, p) == pytest.approx(_ari_pairs(t.tolist(), p.tolist()))
        assert 0.0 <= nmi <= 1.0


def test_ari_zero_in_expectation_for_random_labelings() -> None:
    # With both marginals fixed, E[ARI] = 0 exactly under random permutation of one labeling.
    rng = np.random.default_rng(4)
    t = np.repeat([0, 1, 2], [20, 20, 20])
    p = np.repeat([0, 1, 2, 3], [15, 15, 15, 15])
    reps = 400
    values = np.array([adjusted_rand_index(t, rng.permutation(p)) for _ in range(reps)])
    se = values.std(ddof=1) / math.sqrt(reps)
    # 5 standard errors: a false failure has probability ~6e-7
    assert abs(values.mean()) < 5 * se
    nmis = np.array([normalized_mutual_info(t, rng.permutation(p)) for _ in range(50)])
    assert np.all((nmis >= 0) & (nmis <= 1))


def test_restart_and_modal_agreement() -> None:
    # predictions[r, p, b]: program 0 agrees everywhere; program 1 has answers (0, 0, 1) on input 0
    # (1 of 3 pairs agree, mode 2/3) and (0, 1, 2) on input 1 (0 of 3 pairs, mode 1/3).
    predictions = np.array(
        [
            [[1, 2], [0, 0]],
            [[1, 2], [0, 1]],
            [[1, 2], [1, 2]],
        ]
    )
    np.testing.assert_allclose(restart_agreement(predictions), [1.0, 1 / 6])
    np.testing.assert_allclose(modal_agreement(predictions), [1.0, 0.5])
    with pytest.raises(MetricError, match="R >= 2"):
        restart_agreement(predictions[:1])


def test_predictive_accuracy_entropy() -> None:
    probs = np.array(
        [
            [[1.0, 0.0], [0.3, 0.7]],
            [[0.25, 0.75], [0.9, 0.1]],
        ]
    )
    truth = np.array([[0, 0], [1, 0]])
    acc, ent = predictive_accuracy_entropy(probs, truth)
    np.testing.assert_allclose(acc, [0.5, 1.0])

    def h(q: float) -> float:
        return -(q * math.log(q) + (1 - q) * math.log(1 - q))

    # the one-hot row has entropy 0 (0 log 0 = 0)
    np.testing.assert_allclose(ent, [h(0.3) / 2, (h(0.25) + h(0.9)) / 2])
    with pytest.raises(MetricError, match=r"truth must lie in \[0, 2\)"):
        predictive_accuracy_entropy(probs, truth + 1)

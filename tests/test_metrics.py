"""xmcfit.metrics against napkinxc 0.7.2 (the oracle) on random rankings without ties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xmcfit.metrics import inverse_propensity, ranking_metrics

nxc = pytest.importorskip("napkinxc.metrics")

KS = (1, 2, 3, 5)


def _random_problem(seed: int, n_points: int = 300, n_labels: int = 40):
    """Label lists with empty points, points with fewer than k labels, and test-only labels."""
    rng = np.random.default_rng(seed)
    train = [list(rng.choice(n_labels - 5, size=rng.integers(0, 6), replace=False)) for _ in range(200)]
    test = []
    for i in range(n_points):
        n_true = 0 if i % 17 == 0 else int(rng.integers(1, 8))
        test.append([int(v) for v in rng.choice(n_labels, size=n_true, replace=False)])  # ids >= 35 unseen
    # A ranking that is better than random: true labels first with some probability.
    top = np.empty((n_points, max(KS)), dtype=np.int64)
    for i, t in enumerate(test):
        perm = list(rng.permutation(n_labels))
        if t and rng.random() < 0.6:
            first = t[int(rng.integers(len(t)))]
            perm.remove(first)
            perm.insert(0, first)
        top[i] = perm[: max(KS)]
    return train, test, top


def _oracle(test, top, inv_ps):
    pred = [list(map(int, row)) for row in top]
    k = max(KS)
    cov = nxc.coverage_at_k(test, pred, k=k)
    return {
        "P": nxc.precision_at_k(test, pred, k=k),
        "nDCG": nxc.ndcg_at_k(test, pred, k=k),
        "PSP": nxc.psprecision_at_k(test, pred, inv_ps, k=k),
        "PSnDCG": nxc.psndcg_at_k(test, pred, inv_ps, k=k),
        "coverage": cov,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_napkinxc(seed):
    train, test, top = _random_problem(seed)
    inv_ps = nxc.Jain_et_al_inverse_propensity(
        sp.csr_matrix(
            (np.ones(sum(map(len, train))), np.concatenate([np.array(t, dtype=int) for t in train]),
             np.concatenate([[0], np.cumsum([len(t) for t in train])])),
            shape=(len(train), 40),
        )
    )
    ours = ranking_metrics(test, top, inv_propensity=inv_ps, ks=KS)
    oracle = _oracle(test, top, inv_ps)
    for name, values in oracle.items():
        for k in KS:
            assert ours[f"{name}@{k}"] == pytest.approx(values[k - 1], abs=1e-6), f"{name}@{k}"


def test_ranking_metrics_accepts_csr_labels_and_omits_ps_without_propensity():
    _, test, top = _random_problem(3)
    rows = np.repeat(np.arange(len(test)), [len(t) for t in test])
    cols = np.concatenate([np.array(t, dtype=int) for t in test])
    y = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=(len(test), 40))
    from_csr = ranking_metrics(y, top)
    from_lists = ranking_metrics(test, top)
    assert from_csr == from_lists
    assert "PSP@1" not in from_csr and "P@5" in from_csr


def test_perfect_ranking_scores_one():
    test = [[0, 1], [2], [3, 4, 5]]
    top = np.array([[1, 0, 9], [2, 8, 7], [5, 4, 3]])
    m = ranking_metrics(test, top, inv_propensity=np.linspace(1, 3, 10), ks=(1, 3))
    assert m["P@1"] == 1.0 and m["nDCG@3"] == pytest.approx(1.0) and m["PSP@1"] == pytest.approx(1.0)
    assert m["PSnDCG@3"] == pytest.approx(1.0) and m["coverage@3"] == 1.0


def test_ranking_metrics_rejects_short_top_k():
    with pytest.raises(ValueError, match="top_k shape"):
        ranking_metrics([[0]], np.zeros((1, 2), dtype=int), ks=(1, 3))


def test_inverse_propensity_matches_napkinxc_for_lists_and_csr():
    rng = np.random.default_rng(5)
    train = [list(rng.choice(30, size=rng.integers(0, 5), replace=False)) for _ in range(500)]
    train[0] = [49]  # make the largest id appear so napkinxc's list path sizes its count vector to 50
    expected = nxc.Jain_et_al_inverse_propensity([list(map(int, t)) for t in train], A=0.6, B=2.6)
    ours = inverse_propensity(train, num_labels=50, a=0.6, b=2.6)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    rows = np.repeat(np.arange(len(train)), [len(t) for t in train])
    y = sp.csr_matrix((np.ones(rows.size), (rows, np.concatenate([np.array(t, dtype=int) for t in train]))), shape=(500, 50))
    np.testing.assert_allclose(inverse_propensity(y, num_labels=50, a=0.6, b=2.6), expected, rtol=1e-12)
    assert ours[40] == pytest.approx(1 + (np.log(500) - 1) * 3.6**0.6 * 2.6**-0.6)  # unseen label: N_l = 0


def test_ranking_metrics_scale_to_a_million_points_quickly():
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    cols = rng.integers(0, 1000, size=3 * n)
    y = sp.csr_matrix((np.ones(3 * n, dtype=np.float32), cols, np.arange(0, 3 * n + 1, 3)), shape=(n, 1000))
    top = rng.integers(0, 1000, size=(n, 5))
    start = time.perf_counter()
    m = ranking_metrics(y, top, inv_propensity=np.ones(1000))
    assert time.perf_counter() - start < 15  # measured ~1.5 s on 2 CPU cores
    assert 0 <= m["P@5"] <= 1

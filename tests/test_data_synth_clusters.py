"""Synthetic generator (determinism, Zipf shape, learnable signal) and label clustering."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xmcfit.data import compute_stats, load_split
from xmcfit.data.clusters import balanced_kmeans, cluster_sizes, label_representations, text_features
from xmcfit.data.synth import SynthConfig, write_synthetic


def test_synth_is_deterministic_for_a_seed(tmp_path):
    write_synthetic(tmp_path / "a", n_train=300, n_test=50, n_labels=40, seed=7)
    write_synthetic(tmp_path / "b", n_train=300, n_test=50, n_labels=40, seed=7)
    write_synthetic(tmp_path / "c", n_train=300, n_test=50, n_labels=40, seed=8)
    for name in ("train_texts.txt", "train_labels.txt", "test_labels.txt", "label_names.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train_texts.txt").read_bytes() != (tmp_path / "c" / "train_texts.txt").read_bytes()


def test_synth_label_frequencies_follow_a_power_law(tmp_path):
    write_synthetic(tmp_path, n_train=4000, n_test=10, n_labels=200, seed=0)
    ds = load_split(tmp_path, "train")
    freq = np.bincount(ds.labels.indices, minlength=200).astype(float)
    ranks = np.arange(1, 201)
    used = freq > 0
    slope = np.polyfit(np.log(ranks[used][:100]), np.log(freq[used][:100]), 1)[0]
    assert -1.3 < slope < -0.7  # Zipf exponent 1 by default
    assert ds.n_labels == 200 and compute_stats(ds).avg_input_length == 16


def test_synth_texts_carry_their_labels_signal_words(tmp_path):
    write_synthetic(tmp_path, n_train=200, n_test=10, n_labels=30, seed=1)
    ds = load_split(tmp_path, "train")
    # Each label is named after one of its signal words; most of its texts contain a signal word,
    # so a bag-of-words classifier can learn it. Check the label-name word co-occurs far above chance.
    names = ds.label_names
    hits = [names[l] in ds.texts[i].split() for i, ls in enumerate(ds.label_lists()) for l in ls]
    assert np.mean(hits) > 0.4


def test_synth_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_labels=0: must be >= 1"):
        SynthConfig(n_labels=0)


def test_cluster_sizes_differ_by_at_most_one():
    assert cluster_sizes(10, 4).tolist() == [3, 3, 2, 2]


@pytest.mark.parametrize("n_clusters", [1, 2, 5, 7, 16])
def test_balanced_kmeans_clusters_are_balanced(n_clusters):
    rng = np.random.default_rng(0)
    x = sp.random(203, 64, density=0.1, format="csr", random_state=1, dtype=np.float32)
    assign = balanced_kmeans(x, n_clusters, seed=0)
    counts = np.bincount(assign, minlength=n_clusters)
    assert assign.dtype == np.int64 and counts.max() - counts.min() <= 1 and counts.sum() == 203
    dense = balanced_kmeans(rng.normal(size=(50, 8)), n_clusters, seed=0)
    assert np.ptp(np.bincount(dense, minlength=n_clusters)) <= 1


def test_balanced_kmeans_recovers_a_planted_clustering():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(8, 32))
    planted = np.repeat(np.arange(8), 40)
    x = centers[planted] + 0.1 * rng.normal(size=(320, 32))
    found = balanced_kmeans(sp.csr_matrix(x), 8, seed=0)
    # Every found cluster is exactly one planted cluster.
    for c in range(8):
        assert len(set(planted[found == c])) == 1


def test_balanced_kmeans_is_deterministic_for_a_seed():
    x = sp.random(500, 100, density=0.05, format="csr", random_state=2, dtype=np.float32)
    assert np.array_equal(balanced_kmeans(x, 10, seed=4), balanced_kmeans(x, 10, seed=4))


def test_label_representations_are_normalised_sums_with_zero_rows_for_unused_labels():
    x = sp.csr_matrix(np.array([[3.0, 0.0], [0.0, 4.0]], dtype=np.float32))
    y = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0]], dtype=np.float32))
    r = label_representations(x, y).toarray()
    np.testing.assert_allclose(r, [[0.6, 0.8], [1.0, 0.0], [0.0, 0.0]], atol=1e-6)


def test_text_features_hash_stably_and_normalise_rows():
    x = text_features(["the cat sat", "the dog", ""], n_features=2**10)
    assert x.shape == (3, 1024) and x.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(x.multiply(x).sum(axis=1)).A1, [1, 1, 0], atol=1e-6)
    assert (text_features(["the cat sat"], 2**10) != text_features(["the cat sat"], 2**10)).nnz == 0

"""Tests for the PyOD member variants used inside the ensemble."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.knn import KNN
from pyod.models.pca import PCA

from predictor.detect._members import (
    LogCompressedKNN,
    RowwiseCOPOD,
    RowwiseECOD,
    VaryingColumnsPCA,
    compress_scaled,
)


@pytest.fixture
def skewed_training():
    rng = np.random.default_rng(0)
    return np.column_stack(
        [rng.exponential(1.0, 300), -rng.exponential(2.0, 300), rng.normal(0.0, 1.0, 300)]
    )


@pytest.mark.parametrize(("rowwise", "original"), [(RowwiseECOD, ECOD), (RowwiseCOPOD, COPOD)])
def test_rowwise_matches_pyod_on_single_rows(skewed_training, rowwise, original):
    rows = np.random.default_rng(1).normal(0.0, 2.0, size=(5, 3))
    ours = rowwise().fit(skewed_training)
    theirs = original().fit(skewed_training)

    expected = [theirs.decision_function(row.reshape(1, -1))[0] for row in rows]

    np.testing.assert_allclose(ours.decision_function(rows), expected, rtol=1e-12)


@pytest.mark.parametrize("rowwise", [RowwiseECOD, RowwiseCOPOD])
def test_rowwise_score_independent_of_batch(skewed_training, rowwise):
    detector = rowwise().fit(skewed_training)
    rows = np.random.default_rng(2).normal(0.0, 3.0, size=(50, 3))

    whole = detector.decision_function(rows)
    head = detector.decision_function(rows[:10])

    np.testing.assert_array_equal(whole[:10], head)


def test_pyod_ecod_depends_on_batch(skewed_training):
    # The reason for the row-wise variant: PyOD re-fits its ECDFs on each scored batch.
    detector = ECOD().fit(skewed_training)
    rows = np.random.default_rng(2).normal(0.0, 3.0, size=(50, 3))

    whole = detector.decision_function(rows)
    head = detector.decision_function(rows[:10])

    assert not np.allclose(whole[:10], head)


def test_rowwise_ecod_constant_column_finite():
    X = np.column_stack([np.random.default_rng(0).normal(size=200), np.zeros(200)])
    detector = RowwiseECOD().fit(X)

    scores = detector.decision_function(np.array([[0.0, 0.0], [0.0, 5.0]]))

    assert np.isfinite(detector.decision_scores_).all()
    assert scores[1] > scores[0]


def test_pca_variant_finite_on_rank_deficient_training():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 3))
    X = np.column_stack([base, base[:, 0] + base[:, 1], np.zeros(300)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        original = PCA().fit(X)

    detector = VaryingColumnsPCA().fit(X)
    shift = np.array([5.0, 0.0, 0.0, 0.0, 0.0])
    scores = detector.decision_function(np.vstack([X[:1], X[:1] + shift]))

    assert not np.isfinite(original.decision_scores_).all()
    assert np.isfinite(detector.decision_scores_).all()
    assert detector.varying_columns_.tolist() == [0, 1, 2, 3]
    assert scores[1] > scores[0]


def test_pca_variant_rejects_all_constant():
    with pytest.raises(ValueError, match=r"pca: every one of the 2 training columns is constant"):
        VaryingColumnsPCA().fit(np.zeros((10, 2)))


def test_compress_scaled_is_odd_and_logarithmic():
    x = np.array([-1000.0, -1.0, 0.0, 0.01, 1.0, 1000.0])

    compressed = compress_scaled(x)

    np.testing.assert_allclose(compressed, -compress_scaled(-x))
    np.testing.assert_allclose(compressed[2:4], [0.0, np.log1p(0.01)])
    np.testing.assert_allclose(compressed[-1], np.log(1001.0))


def test_log_compressed_knn_is_knn_on_compressed_inputs(skewed_training):
    rows = np.random.default_rng(3).normal(0.0, 5.0, size=(20, 3))
    ours = LogCompressedKNN(n_neighbors=5).fit(skewed_training)
    reference = KNN(n_neighbors=5).fit(compress_scaled(skewed_training))

    np.testing.assert_allclose(ours.decision_scores_, reference.decision_scores_)
    np.testing.assert_allclose(
        ours.decision_function(rows), reference.decision_function(compress_scaled(rows))
    )


def test_log_knn_ranks_many_small_moves_higher():
    # On scaled inputs, one column 30 deviations out is farther than all 10 columns 6 out.
    # After the compression, the row that moves on every column is the farther one.
    rng = np.random.default_rng(4)
    training = rng.normal(0.0, 1.0, size=(500, 10))
    one_large = np.zeros((1, 10))
    one_large[0, 0] = 30.0
    many_small = np.full((1, 10), 6.0)
    rows = np.vstack([one_large, many_small])

    plain = KNN(n_neighbors=5).fit(training).decision_function(rows)
    compressed = LogCompressedKNN(n_neighbors=5).fit(training).decision_function(rows)

    assert plain[0] > plain[1]
    assert compressed[1] > compressed[0]

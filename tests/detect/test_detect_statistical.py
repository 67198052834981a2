"""Tests for the robust z-score detector."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.detect import RobustZScore


@pytest.fixture
def feature_frame():
    rng = np.random.default_rng(0)
    n_rows = 500
    trend = np.linspace(0.0, 100.0, n_rows)
    return pd.DataFrame(
        {
            "cpu:value": trend + rng.normal(0, 1, n_rows),
            "cpu:resid": rng.normal(0, 1, n_rows),
            "mem:value": 2048.0 + rng.normal(0, 10, n_rows),
            "mem:resid": rng.normal(0, 10, n_rows),
        }
    )


def test_zscore_scores_residual_columns_only(feature_frame):
    detector = RobustZScore().fit(feature_frame)
    row = feature_frame.iloc[[0]].copy()
    row["cpu:value"] = 1e6
    row["cpu:resid"] = 0.0
    row["mem:resid"] = 0.0

    assert detector.score_columns_.tolist() == [1, 3]
    assert detector.score_samples(row)[0] < 1.0


def test_zscore_without_names_scores_all_columns(feature_frame):
    detector = RobustZScore().fit(feature_frame.to_numpy())
    row = feature_frame.to_numpy()[[0]].copy()
    row[0, 0] = 1e6

    assert detector.score_columns_.tolist() == [0, 1, 2, 3]
    assert detector.score_samples(row)[0] > 1000.0


def test_zscore_matches_mad_formula(feature_frame):
    detector = RobustZScore().fit(feature_frame)
    resid = feature_frame["mem:resid"].to_numpy()
    median = np.median(resid)
    sigma = 1.4826 * np.median(np.abs(resid - median))
    row = feature_frame.iloc[[0]].copy()
    row["cpu:resid"] = np.median(feature_frame["cpu:resid"])
    row["mem:resid"] = median + 7.0 * sigma

    assert detector.score_samples(row)[0] == pytest.approx(7.0)


def test_zscore_constant_training_repeats_score_zero():
    X = pd.DataFrame({"cpu:value": np.zeros(200), "cpu:resid": np.zeros(200)})
    detector = RobustZScore().fit(X)
    rows = pd.DataFrame({"cpu:value": [0.0, 35.0], "cpu:resid": [0.0, 35.0]})

    scores = detector.score_samples(rows)

    assert scores[0] == 0.0
    assert scores[1] > 1000.0


def test_zscore_constant_floor_relative_to_metric_level():
    # A memory gauge constant at 512: moving by 1 is small, moving to 900 is not.
    X = pd.DataFrame({"mem:value": np.full(200, 512.0), "mem:resid": np.zeros(200)})
    detector = RobustZScore().fit(X)
    rows = pd.DataFrame({"mem:value": [513.0, 900.0], "mem:resid": [1.0, 388.0]})

    scores = detector.score_samples(rows)

    assert scores[0] < 3.0
    assert scores[1] > 100.0


def test_zscore_mostly_equal_values_fall_back_to_mean_deviation():
    # 60 % zeros make the MAD 0; a queue length of 1 must not look extreme.
    queue = np.array([0.0] * 60 + [1.0] * 30 + [2.0] * 10)
    detector = RobustZScore().fit(queue.reshape(-1, 1))

    scores = detector.score_samples(np.array([[1.0], [15.0]]))

    assert scores[0] < 3.0
    assert scores[1] > 10.0


def test_zscore_missing_cell_scores_zero(feature_frame):
    detector = RobustZScore().fit(feature_frame)
    row = feature_frame.iloc[[0]].copy()
    row[:] = np.nan

    assert detector.column_z(row).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert detector.score_samples(row).tolist() == [0.0]


def test_zscore_higher_for_bigger_deviation(feature_frame):
    detector = RobustZScore().fit(feature_frame)
    rows = pd.concat([feature_frame.iloc[[0]]] * 3, ignore_index=True)
    rows["cpu:resid"] = [0.0, 5.0, 50.0]

    scores = detector.score_samples(rows)

    assert scores[0] < scores[1] < scores[2]


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"min_scale": 0.0}, ValueError, r"min_scale: expected a number in \(0.0, inf\]"),
        ({"min_scale": "1"}, TypeError, r"min_scale: expected a real number, got '1'"),
        ({"min_relative_scale": -1.0}, ValueError, r"min_relative_scale: expected a number"),
    ],
)
def test_zscore_rejects_bad_params(feature_frame, params, error, message):
    with pytest.raises(error, match=message):
        RobustZScore(**params).fit(feature_frame)


def test_zscore_rejects_wrong_column_count(feature_frame):
    detector = RobustZScore().fit(feature_frame.to_numpy())

    with pytest.raises(ValueError, match=r"X has 3 features, but RobustZScore is expecting 4"):
        detector.score_samples(feature_frame.to_numpy()[:, :3])

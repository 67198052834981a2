"""One score direction everywhere: a higher score always means worse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.detect import AnomalyEnsemble, RobustZScore
from predictor.features import build_grid, make_features
from predictor.forecast import DegradationForecaster
from predictor.risk import fuse_risk

NAB_FILE = "nab/realKnownCause/ec2_request_latency_system_failure.csv"
MEMBERS = ["iforest", "ecod", "knn", "pca", "copod", "hbos", "lof", "robust_z"]


@pytest.fixture(scope="module")
def latency_grid(sample_data) -> pd.DataFrame:
    """The first 1,200 points of a real latency series on its 5-minute grid."""
    frame = pd.read_csv(sample_data / NAB_FILE).iloc[:1200]
    rows = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(frame["timestamp"], utc=True),
            "component": "ec2",
            "metric": "latency_ms",
            "value": frame["value"],
        }
    ).drop_duplicates("timestamp")
    return build_grid(rows, 300.0)


@pytest.fixture(scope="module")
def features_with_spike(latency_grid):
    """Features of the real series, and of the same series with its last value tripled."""
    features = make_features(latency_grid, window_steps=12)
    spiked_grid = latency_grid.copy()
    spiked_grid.iloc[-1, 0] = spiked_grid.iloc[-1, 0] * 3
    spiked = make_features(spiked_grid, window_steps=12)
    return features, spiked


@pytest.mark.parametrize("member", MEMBERS)
def test_member_scores_spike_higher(features_with_spike, member):
    features, spiked = features_with_spike
    train = features.iloc[:1000]
    ensemble = AnomalyEnsemble(members=(member,), n_estimators=50, random_state=0).fit(train)

    normal = ensemble.score_samples(features.iloc[[-1]])[0]
    spike = ensemble.score_samples(spiked.iloc[[-1]])[0]
    surprise = ensemble.member_surprise(spiked.iloc[[-1]]).iloc[0, 0]

    assert spike > normal
    assert surprise > ensemble.member_surprise(features.iloc[[-1]]).iloc[0, 0]


def test_robust_z_scores_spike_higher(features_with_spike):
    features, spiked = features_with_spike
    detector = RobustZScore().fit(features.iloc[:1000])

    assert (
        detector.score_samples(spiked.iloc[[-1]])[0]
        > detector.score_samples(features.iloc[[-1]])[0]
    )


def test_crossing_probability_rises_toward_threshold(latency_grid):
    series = latency_grid["latency_ms"]
    forecaster = DegradationForecaster(threshold=60.0, horizon_steps=12).fit(series.iloc[:1000])
    future = series.iloc[1000:1012]
    rising = future.copy()
    rising[:] = np.linspace(future.iloc[0], 58.0, len(future))

    calm = forecaster.forecast_path(future)["crossing_probability"].iloc[-1]
    near = forecaster.forecast_path(rising)["crossing_probability"].iloc[-1]

    assert near > calm


def test_fused_risk_rises_with_each_part():
    anomaly = np.array([0.1, 0.5, 0.9])

    assert np.all(np.diff(fuse_risk(anomaly, np.zeros(3))) > 0)
    assert np.all(np.diff(fuse_risk(np.full(3, 0.2), anomaly)) > 0)

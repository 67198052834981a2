"""Tests of fuse_risk: the noisy-OR of anomaly score and crossing probability."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.risk import fuse_risk

NAN = float("nan")


def test_fusion_stays_in_unit_interval_and_dominates_inputs():
    rng = np.random.default_rng(0)
    anomaly = rng.uniform(0.0, 1.0, 1000)
    probability = rng.uniform(0.0, 1.0, 1000)
    anomaly[:3] = [0.0, 1.0, 0.0]
    probability[:3] = [0.0, 0.0, 1.0]

    risk = fuse_risk(anomaly, probability)

    assert risk.shape == (1000,)
    assert np.all((risk >= 0.0) & (risk <= 1.0))
    assert np.all(risk >= np.maximum(anomaly, probability) - 1e-12)
    np.testing.assert_allclose(risk, 1.0 - (1.0 - anomaly) * (1.0 - probability))
    assert risk[:3].tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("anomaly", "probability", "expected"),
    [
        (0.5, 0.5, 0.75),
        (0.3, NAN, 0.3),
        (NAN, 0.4, 0.4),
        (NAN, 0.0, 0.0),
        (0.0, 0.0, 0.0),
    ],
)
def test_fusion_missing_value_rules(anomaly, probability, expected):
    assert fuse_risk([anomaly], [probability])[0] == pytest.approx(expected)


def test_fusion_both_missing_is_nan():
    assert np.isnan(fuse_risk([NAN], [NAN])[0])


def test_fusion_without_forecast_returns_anomaly_copy():
    anomaly = np.array([0.1, NAN, 0.9])

    risk = fuse_risk(anomaly)

    np.testing.assert_array_equal(risk, anomaly)
    risk[0] = 0.5
    assert anomaly[0] == 0.1


@pytest.mark.parametrize(
    ("anomaly", "probability", "match"),
    [
        ([1.2], [0.0], r"anomaly_score: expected values in \[0, 1\] or NaN, got 1.2"),
        ([0.2], [-0.1], r"crossing_probability: expected values in \[0, 1\] or NaN, got -0.1"),
        ([float("inf")], [0.0], "anomaly_score: expected finite values"),
        ([0.2, 0.3], [0.1], r"expected the shape of anomaly_score \(2,\), got \(1,\)"),
    ],
)
def test_fusion_rejects_bad_input(anomaly, probability, match):
    with pytest.raises(ValueError, match=match):
        fuse_risk(anomaly, probability)

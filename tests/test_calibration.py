"""Score calibration: targets, the calibrator, Brier score, reliability, out-of-time split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from predictor.calibration import (
    ScoreCalibrator,
    brier_score,
    evaluate_out_of_time,
    failure_within_horizon,
    reliability_table,
    split_out_of_time,
)
from predictor.exceptions import CalibrationWarning


@pytest.fixture
def noisy_scores():
    """Scores whose failure rate rises with the score: P(failure) = score ** 2."""
    rng = np.random.default_rng(0)
    scores = rng.random(4000)
    target = (rng.random(4000) < scores**2).astype(int)
    return scores, target


@pytest.mark.parametrize(
    ("labels", "horizon_rows", "expected"),
    [
        ([0, 0, 0, 1, 1, 0, 0], 1, [0, 0, 0, 1, 1, 0, 0]),
        ([0, 0, 0, 1, 1, 0, 0], 2, [0, 0, 1, 1, 1, 0, 0]),
        ([0, 0, 0, 1, 1, 0, 0], 3, [0, 1, 1, 1, 1, 0, 0]),
        ([0, 0, 0, 0, 0, 0, 1], 3, [0, 0, 0, 0, 1, 1, 1]),
        ([1, 0, 0, 0, 0, 1, 0], 2, [1, 0, 0, 0, 1, 1, 0]),
        ([0, 0, 0], 10, [0, 0, 0]),
        ([], 5, []),
    ],
)
def test_failure_within_horizon_hand_cases(labels, horizon_rows, expected):
    assert failure_within_horizon(np.array(labels, dtype=int), horizon_rows).tolist() == expected


@pytest.mark.parametrize(
    ("labels", "horizon_rows", "message"),
    [
        ([0, 2, 0], 2, "labels: expected only 0 and 1, got 2$"),
        ([[0, 1]], 2, r"labels: expected a 1-D array of 0 and 1, got shape \(1, 2\)"),
        ([0, 1], 0, "horizon_rows: expected an integer >= 1, got 0"),
        ([0, 1], 1.5, "horizon_rows: expected an integer >= 1, got 1.5"),
    ],
)
def test_failure_within_horizon_rejects_bad_input(labels, horizon_rows, message):
    with pytest.raises(ValueError, match=message):
        failure_within_horizon(np.array(labels), horizon_rows)


def test_brier_score_hand_case():
    # (0.1^2 + 0.2^2 + 0.5^2 + 0^2) / 4 = (0.01 + 0.04 + 0.25) / 4
    assert brier_score([0.9, 0.2, 0.5, 0.0], [1, 0, 0, 0]) == pytest.approx(0.075)


def test_brier_score_constant_forecast():
    target = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])

    assert brier_score(np.full(10, 0.2), target) == pytest.approx(0.2 * 0.8)


@pytest.mark.parametrize(
    ("probability", "target", "message"),
    [
        ([0.5, 1.2], [0, 1], r"probability: expected values in \[0, 1\], got 1.2"),
        ([0.5, np.nan], [0, 1], "probability: expected finite numbers, got nan at row 1"),
        ([0.5], [0, 1], r"target: expected one value per probability \(1, at least 1\)"),
        ([], [], r"target: expected one value per probability \(0, at least 1\)"),
    ],
)
def test_brier_score_rejects_bad_input(probability, target, message):
    with pytest.raises(ValueError, match=message):
        brier_score(probability, target)


def test_reliability_table_hand_case():
    probability = [0.05, 0.15, 0.1, 0.95, 1.0, 0.5]
    target = [0, 1, 0, 1, 1, 0]

    table = reliability_table(probability, target, n_bins=4)

    assert table["bin_low"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert table["bin_high"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert table["count"].tolist() == [3, 0, 1, 2]
    assert table["mean_predicted"].iloc[0] == pytest.approx(0.1)
    assert table["observed_rate"].iloc[0] == pytest.approx(1 / 3)
    assert np.isnan(table["mean_predicted"].iloc[1])
    assert np.isnan(table["observed_rate"].iloc[1])
    assert table["mean_predicted"].iloc[2] == pytest.approx(0.5)
    assert table["observed_rate"].iloc[2] == 0.0
    assert table["mean_predicted"].iloc[3] == pytest.approx(0.975)
    assert table["observed_rate"].iloc[3] == 1.0


def test_reliability_table_counts_every_row():
    rng = np.random.default_rng(1)
    probability = rng.random(500)

    table = reliability_table(probability, rng.integers(0, 2, 500), n_bins=7)

    assert len(table) == 7
    assert table["count"].sum() == 500


def test_reliability_table_rejects_zero_bins():
    with pytest.raises(ValueError, match="n_bins: expected an integer >= 1, got 0"):
        reliability_table([0.5], [1], n_bins=0)


def test_isotonic_hand_case():
    calibrator = ScoreCalibrator().fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])

    # Pool adjacent violators: (0.2, 1) and (0.3, 0) pool to 0.5.
    assert calibrator.transform([0.1, 0.25, 0.4]).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert calibrator.base_rate_ == 0.5
    assert calibrator.n_samples_ == 4


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_monotone_and_bounded(noisy_scores, method):
    scores, target = noisy_scores
    calibrator = ScoreCalibrator(method).fit(scores, target)

    grid = np.linspace(-0.5, 1.5, 401)
    probability = calibrator.transform(grid)

    assert np.all(np.diff(probability) >= 0)
    assert probability.min() >= 0.0
    assert probability.max() <= 1.0


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_beats_raw_scores_on_brier(noisy_scores, method):
    scores, target = noisy_scores
    calibrator = ScoreCalibrator(method).fit(scores[:2000], target[:2000])

    calibrated = brier_score(calibrator.transform(scores[2000:]), target[2000:])

    assert calibrated < brier_score(scores[2000:], target[2000:])
    assert calibrated < brier_score(np.full(2000, target[:2000].mean()), target[2000:])


def test_calibrator_keeps_nan_scores_unknown():
    calibrator = ScoreCalibrator().fit([0.1, 0.9], [0, 1])

    probability = calibrator.transform([np.nan, 0.9])

    assert np.isnan(probability[0])
    assert probability[1] == 1.0


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_json_round_trip(noisy_scores, method):
    scores, target = noisy_scores
    calibrator = ScoreCalibrator(method).fit(scores, target)

    restored = ScoreCalibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))

    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(restored.transform(grid), calibrator.transform(grid))
    assert restored.method == method
    assert restored.base_rate_ == pytest.approx(target.mean())


def test_isotonic_matches_sklearn(noisy_scores):
    from sklearn.isotonic import IsotonicRegression

    scores, target = noisy_scores
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, target)

    restored = ScoreCalibrator.from_dict(ScoreCalibrator().fit(scores, target).to_dict())

    grid = np.linspace(-0.1, 1.1, 241)
    np.testing.assert_allclose(restored.transform(grid), reference.predict(grid))


def test_platt_negative_slope_falls_back_to_base_rate():
    scores = np.linspace(0, 1, 40)
    target = (scores < 0.25).astype(int)

    with pytest.warns(CalibrationWarning, match="fitted slope .* is negative"):
        calibrator = ScoreCalibrator("platt").fit(scores, target)

    np.testing.assert_allclose(calibrator.transform([0.0, 1.0]), [0.25, 0.25])


@pytest.mark.parametrize(
    ("method", "scores", "target", "message"),
    [
        ("beta", [0.1, 0.2], [0, 1], "method: expected one of"),
        ("isotonic", [0.1, 0.2], [0, 0], "target: expected both failures"),
        ("isotonic", [0.1, 0.2], [1, 1], "target: expected both failures"),
        ("isotonic", [0.1, np.inf], [0, 1], "scores: expected finite numbers, got inf at row 1"),
        ("isotonic", [0.1, 0.2, 0.3], [0, 1], r"target: expected one value per score \(3\)"),
    ],
)
def test_calibrator_fit_rejects_bad_input(method, scores, target, message):
    with pytest.raises(ValueError, match=message):
        ScoreCalibrator(method).fit(scores, target)


def test_calibrator_transform_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        ScoreCalibrator().transform([0.5])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "key 'format_version': expected 1, got 2"),
        ({"method": "beta"}, "key 'method': expected one of"),
        ({"thresholds": [0.5, 0.1]}, "key 'thresholds': expected finite non-decreasing"),
        ({"probabilities": [0.0]}, r"expected as many probabilities as thresholds \(2\), got 1"),
        ({"probabilities": [0.5, 1.5]}, "key 'probabilities': expected values in"),
        ({"base_rate": "0.5"}, "key 'base_rate': expected a finite number, got '0.5'"),
    ],
)
def test_from_dict_rejects_bad_state(change, message):
    state = ScoreCalibrator().fit([0.1, 0.9], [0, 1]).to_dict() | change

    with pytest.raises(ValueError, match=message):
        ScoreCalibrator.from_dict(state)


def test_split_out_of_time_hand_case():
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0])

    split = split_out_of_time(labels, horizon_rows=3, fit_fraction=0.5)

    # Fit part: rows 0-4; rows 3-4 would need labels of rows 5-6, so only rows 0-2 fit.
    assert split.fit_rows == slice(0, 3)
    assert split.fit_target.tolist() == [0, 1, 1]
    # Evaluated part: rows 5-9; rows 8-9 have no full horizon left.
    assert split.eval_rows == slice(5, 8)
    assert split.eval_target.tolist() == [0, 1, 1]


def test_split_never_reads_evaluated_labels():
    rng = np.random.default_rng(2)
    labels = (rng.random(300) < 0.05).astype(int)
    changed = labels.copy()
    changed[150:] = 1 - changed[150:]

    split = split_out_of_time(labels, horizon_rows=10, fit_fraction=0.5)
    other = split_out_of_time(changed, horizon_rows=10, fit_fraction=0.5)

    np.testing.assert_array_equal(split.fit_target, other.fit_target)
    assert split.eval_rows.start == 150


def test_split_rejects_too_short_series():
    with pytest.raises(ValueError, match="labels: 10 rows are too few to split"):
        split_out_of_time(np.zeros(10, dtype=int), horizon_rows=6, fit_fraction=0.5)


def test_evaluate_out_of_time_ignores_evaluated_labels():
    rng = np.random.default_rng(3)
    scores = rng.random(400)
    labels = (rng.random(400) < scores**3).astype(int)
    flipped = labels.copy()
    flipped[200:] = 1 - flipped[200:]

    first = evaluate_out_of_time({"a": (scores, labels)}, 5)
    second = evaluate_out_of_time({"a": (scores, flipped)}, 5)

    np.testing.assert_array_equal(
        first.per_entity["a"].probability, second.per_entity["a"].probability
    )
    assert first.per_entity["a"].base_rate == second.per_entity["a"].base_rate


def test_base_rate_from_fit_part():
    scores = np.linspace(0, 1, 200)
    labels = np.zeros(200, dtype=int)
    labels[[20, 60, 190]] = 1

    result = evaluate_out_of_time({"a": (scores, labels)}, horizon_rows=1, pooling="entity")

    item = result.per_entity["a"]
    assert item.base_rate == pytest.approx(2 / 100)
    assert item.n_fit == 100
    assert item.n_eval == 100
    assert item.brier_base_rate == pytest.approx(brier_score(np.full(100, 0.02), labels[100:]))


def test_fleet_pooling_shares_one_map():
    rng = np.random.default_rng(4)
    series = {}
    for name in ("a", "b"):
        scores = rng.random(600)
        series[name] = (scores, (rng.random(600) < scores**2).astype(int))
    # Entity "c" has no failure in its first half; pooling still calibrates it.
    scores = rng.random(600)
    labels = np.zeros(600, dtype=int)
    labels[300:] = (rng.random(300) < scores[300:] ** 2).astype(int)
    series["c"] = (scores, labels)

    result = evaluate_out_of_time(series, horizon_rows=1, pooling="fleet")

    fit_target = np.concatenate([labels[:300] for _, labels in series.values()])
    for item in result.per_entity.values():
        assert item.base_rate == pytest.approx(fit_target.mean())
        assert item.n_fit == 900
    assert result.per_entity["c"].brier < result.per_entity["c"].brier_base_rate
    assert result.brier < result.brier_base_rate
    assert result.reliability["count"].sum() == 900
    assert result.mean()["brier"] == pytest.approx(
        np.mean([item.brier for item in result.per_entity.values()])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "rack"}, "pooling: expected one of"),
        ({"fit_fraction": 1.0}, r"fit_fraction: expected a number in \(0, 1\), got 1.0"),
    ],
)
def test_evaluate_out_of_time_rejects_bad_options(kwargs, message):
    series = {"a": (np.linspace(0, 1, 100), np.tile([0, 1], 50))}

    with pytest.raises(ValueError, match=message):
        evaluate_out_of_time(series, 1, **kwargs)


def test_evaluate_out_of_time_rejects_length_mismatch():
    with pytest.raises(ValueError, match=r"labels of 'a': expected one label per score \(5\)"):
        evaluate_out_of_time({"a": (np.zeros(5), np.zeros(4, dtype=int))}, 1)


@pytest.mark.shared_data
@pytest.mark.slow
def test_asd_calibration_beats_base_rate(shared_data, tmp_path):
    from predictor.evaluate.backtest import BacktestConfig
    from predictor.evaluate.runner import backtest_matrix

    summary = backtest_matrix(
        shared_data / "asd", tmp_path, BacktestConfig(), step_seconds=300, horizon_minutes=60
    )

    calibration = summary["calibration"]
    assert calibration["horizon_rows"] == 12
    assert calibration["mean"]["brier"] < calibration["mean"]["brier_base_rate"]
    assert len(calibration["per_entity"]) == 8
    reliability = pd.DataFrame(calibration["reliability"])
    assert list(reliability.columns) == [
        "bin_low",
        "bin_high",
        "count",
        "mean_predicted",
        "observed_rate",
    ]
    assert reliability["count"].sum() == sum(
        item["n_eval"] for item in calibration["per_entity"].values()
    )

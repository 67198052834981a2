"""Tests for the regular grid and the trailing-window features."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from predictor.features import (
    build_grid,
    feature_metric,
    infer_step_seconds,
    make_features,
    trailing_median,
    trailing_std,
)
from predictor.telemetry.schema import empty_long_frame

T0 = pd.Timestamp("2026-03-01 00:00:00", tz="UTC")


def _rows(offsets_seconds, values, metric="cpu", component="node-1"):
    return pd.DataFrame(
        {
            "timestamp": [T0 + pd.Timedelta(seconds=s) for s in offsets_seconds],
            "component": component,
            "metric": metric,
            "value": np.asarray(values, dtype="float64"),
        }
    )


@pytest.fixture
def irregular_rows():
    """Two metrics sampled irregularly over 3 hours, with jitter and a 20-minute gap."""
    rng = np.random.default_rng(0)
    frames = []
    for metric, level in (("cpu", 50.0), ("mem", 2048.0)):
        offsets = np.sort(rng.uniform(0, 3 * 3600, size=400))
        offsets = offsets[(offsets < 3600) | (offsets > 4800)]
        values = level + rng.normal(0, 5, size=offsets.size)
        frames.append(_rows(offsets, values, metric=metric))
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)


def test_infer_step_seconds_median_spacing():
    stamps = pd.Series([T0 + pd.Timedelta(seconds=s) for s in (120, 0, 60, 60, 180, 600)])

    assert infer_step_seconds(stamps) == 60.0


def test_infer_step_seconds_too_few():
    stamps = pd.Series([T0, T0])

    with pytest.raises(ValueError, match=r"timestamps: expected at least 2 distinct"):
        infer_step_seconds(stamps)


def test_grid_bins_are_right_closed():
    # Bins are (t - 60 s, t]: a row exactly at 00:01:00 belongs to 00:01:00, one
    # second later to 00:02:00.
    rows = _rows([1, 30, 60, 61, 119, 120], [1.0, 2.0, 3.0, 10.0, 20.0, 30.0])

    grid = build_grid(rows, 60.0)

    expected_index = pd.DatetimeIndex([T0 + pd.Timedelta(minutes=m) for m in (1, 2)])
    assert list(grid.index) == list(expected_index)
    assert grid["cpu"].tolist() == [2.0, 20.0]


def test_grid_points_are_epoch_multiples():
    rows = _rows([17, 95, 260], [1.0, 2.0, 3.0])

    grid = build_grid(rows, 300.0)

    epoch_ns = grid.index.as_unit("ns").asi8
    assert np.all(epoch_ns % (300 * 10**9) == 0)


def test_grid_agrees_between_batches(irregular_rows):
    ordered = irregular_rows.sort_values("timestamp")
    cut = T0 + pd.Timedelta(minutes=90)
    late = ordered[ordered["timestamp"] > cut - pd.Timedelta(minutes=30)]

    full = build_grid(ordered, 60.0)
    partial = build_grid(late, 60.0, start=cut)

    overlap = partial.index
    pd.testing.assert_frame_equal(partial, full.loc[overlap])


def test_grid_one_column_per_metric_sorted():
    rows = pd.concat([_rows([60], [1.0], metric="zeta"), _rows([60], [2.0], metric="alpha")])

    grid = build_grid(rows, 60.0)

    assert list(grid.columns) == ["alpha", "zeta"]
    assert grid.index.tz is not None
    assert str(grid.index.tz) == "UTC"


def test_grid_forward_fill_limit():
    # Values at minutes 1 and 8: minutes 2-4 repeat the first value, 5-7 stay empty.
    rows = _rows([60, 480], [5.0, 9.0])

    grid = build_grid(rows, 60.0, max_fill_steps=3)

    values = grid["cpu"].to_numpy()
    assert values[:4].tolist() == [5.0, 5.0, 5.0, 5.0]
    assert np.isnan(values[4:7]).all()
    assert values[7] == 9.0


def test_grid_without_forward_fill():
    rows = _rows([60, 240], [5.0, 9.0])

    grid = build_grid(rows, 60.0, max_fill_steps=0)

    assert np.isnan(grid["cpu"].to_numpy()[1:3]).all()


def test_grid_start_end_inclusive_and_filled_from_before():
    rows = _rows([60, 120, 600], [1.0, 2.0, 3.0])
    start = T0 + pd.Timedelta(seconds=150)
    end = T0 + pd.Timedelta(minutes=12)

    grid = build_grid(rows, 60.0, start=start, end=end, max_fill_steps=2)

    assert grid.index[0] == T0 + pd.Timedelta(minutes=3)
    assert grid.index[-1] == end
    # Minute 2 is before start; with max_fill_steps=2 it fills minutes 3 and 4.
    assert grid["cpu"].iloc[0] == 2.0
    assert grid["cpu"].iloc[1] == 2.0
    assert np.isnan(grid["cpu"].iloc[2])
    assert grid.loc[T0 + pd.Timedelta(minutes=10), "cpu"] == 3.0
    assert grid.loc[T0 + pd.Timedelta(minutes=12), "cpu"] == 3.0


def test_grid_converts_other_zones_to_utc():
    rows = _rows([60], [1.0])
    rows["timestamp"] = rows["timestamp"].dt.tz_convert("Europe/Berlin")

    grid = build_grid(rows, 60.0)

    assert grid.index[0] == T0 + pd.Timedelta(minutes=1)
    assert str(grid.index.tz) == "UTC"


def test_grid_leaves_non_finite_values_out(caplog):
    rows = _rows([10, 20, 30], [1.0, np.inf, 3.0])

    with caplog.at_level(logging.WARNING, logger="predictor.features"):
        grid = build_grid(rows, 60.0)

    assert grid["cpu"].tolist() == [2.0]
    assert "left 1 non-finite values" in caplog.text


def test_grid_empty_rows_with_bounds():
    rows = empty_long_frame()

    grid = build_grid(rows, 60.0, start=T0, end=T0 + pd.Timedelta(minutes=2))

    assert len(grid) == 3
    assert list(grid.columns) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.drop(columns="metric"), r"rows: missing columns \['metric'\]"),
        (
            lambda r: r.assign(component=["a", "b", "a"]),
            r"rows: expected the rows of one component, got 2",
        ),
        (
            lambda r: r.assign(timestamp=r["timestamp"].dt.tz_localize(None)),
            r"expected timezone-aware datetimes",
        ),
    ],
)
def test_grid_rejects_bad_rows(change, message):
    rows = change(_rows([10, 20, 30], [1.0, 2.0, 3.0]))

    with pytest.raises(ValueError, match=message):
        build_grid(rows, 60.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"step_seconds": 0.0}, ValueError, r"step_seconds: expected a number > 0, got 0.0"),
        ({"step_seconds": float("nan")}, ValueError, r"step_seconds: expected a number > 0"),
        ({"max_fill_steps": -1}, ValueError, r"max_fill_steps: expected an int >= 0, got -1"),
        ({"max_fill_steps": 1.5}, TypeError, r"max_fill_steps: expected an int >= 0, got 1.5"),
        ({"start": pd.Timestamp("2026-03-01")}, ValueError, r"start: expected a timezone-aware"),
    ],
)
def test_grid_rejects_bad_arguments(kwargs, error, message):
    arguments = {"step_seconds": 60.0, **kwargs}

    with pytest.raises(error, match=message):
        build_grid(_rows([10], [1.0]), **arguments)


def test_features_columns_and_values():
    index = pd.date_range(T0, periods=6, freq="min")
    grid = pd.DataFrame({"cpu": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]}, index=index)

    features = make_features(grid, window_steps=3, season_steps=2)

    assert list(features.columns) == [
        "cpu:value",
        "cpu:diff",
        "cpu:resid",
        "cpu:std",
        "cpu:sresid",
    ]
    np.testing.assert_allclose(features["cpu:diff"], [np.nan, 1, 2, 4, 8, 16])
    # resid at t: value minus the median of the 3 points before t (2 are enough).
    np.testing.assert_allclose(features["cpu:resid"], [np.nan, np.nan, 2.5, 6.0, 12.0, 24.0])
    np.testing.assert_allclose(
        features["cpu:std"],
        [np.nan, *(pd.Series(grid["cpu"]).rolling(3, min_periods=2).std().iloc[1:])],
    )
    np.testing.assert_allclose(features["cpu:sresid"], [np.nan, np.nan, 3, 6, 12, 24])


def test_features_without_season_have_no_sresid():
    index = pd.date_range(T0, periods=3, freq="min")
    grid = pd.DataFrame({"cpu": [1.0, 2.0, 3.0]}, index=index)

    features = make_features(grid, window_steps=2)

    assert not any(column.endswith(":sresid") for column in features.columns)


def test_features_unchanged_when_later_rows_arrive(irregular_rows):
    ordered = irregular_rows.sort_values("timestamp")
    cutoff = T0 + pd.Timedelta(minutes=100)
    early = ordered[ordered["timestamp"] <= cutoff]

    early_features = make_features(build_grid(early, 60.0), window_steps=12, season_steps=30)
    full_features = make_features(build_grid(ordered, 60.0), window_steps=12, season_steps=30)

    assert early_features.index[-1] <= cutoff
    pd.testing.assert_frame_equal(early_features, full_features.loc[early_features.index])


def test_features_change_when_past_rows_change(irregular_rows):
    ordered = irregular_rows.sort_values("timestamp").reset_index(drop=True)
    changed = ordered.copy()
    changed.loc[0, "value"] += 1000.0

    before = make_features(build_grid(ordered, 60.0), window_steps=12)
    after = make_features(build_grid(changed, 60.0), window_steps=12)

    assert not before.equals(after)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window_steps": 1}, ValueError, r"window_steps: expected an int >= 2, got 1"),
        ({"window_steps": 2.0}, TypeError, r"window_steps: expected an int >= 2, got 2.0"),
        ({"season_steps": 0}, ValueError, r"season_steps: expected None or an int >= 1"),
    ],
)
def test_features_reject_bad_arguments(kwargs, error, message):
    grid = pd.DataFrame({"cpu": [1.0, 2.0]}, index=pd.date_range(T0, periods=2, freq="min"))
    arguments = {"window_steps": 3, **kwargs}

    with pytest.raises(error, match=message):
        make_features(grid, **arguments)


def test_features_reject_unordered_grid():
    grid = pd.DataFrame({"cpu": [1.0, 2.0]}, index=[T0 + pd.Timedelta(minutes=1), T0])

    with pytest.raises(ValueError, match=r"grid: expected a strictly increasing index"):
        make_features(grid, window_steps=3)


@pytest.mark.parametrize(
    ("column", "metric"),
    [
        ("cpu:resid", "cpu"),
        ("node:exporter:load1:std", "node:exporter:load1"),
        ("plain", "plain"),
    ],
)
def test_feature_metric_names(column, metric):
    assert feature_metric(column) == metric


def test_trailing_windows_match_pandas_rolling(sample_data):
    frame = pd.read_csv(
        sample_data / "nab" / "realKnownCause" / "machine_temperature_system_failure.csv"
    )
    values = frame["value"].to_numpy(dtype="float64")[:5000].copy()
    values[100:130] = np.nan
    values[::97] = np.nan
    series = pd.Series(values)

    median = trailing_median(values, 12)
    std = trailing_std(values, 12)

    np.testing.assert_array_equal(median, series.rolling(12, min_periods=2).median().to_numpy())
    np.testing.assert_allclose(
        std, series.rolling(12, min_periods=2).std().to_numpy(), rtol=1e-9, atol=1e-9
    )


def test_trailing_std_constant_window_is_zero():
    values = np.array([3.1, 3.1, 3.1, 3.1, 7.0, 3.1, 3.1, 3.1, 3.1, 3.1])

    std = trailing_std(values, 3)

    assert std[3] == 0.0
    assert std[-1] == 0.0


def test_make_features_empty_grid_keeps_columns():
    grid = pd.DataFrame(columns=["cpu", "mem"], dtype="float64")

    features = make_features(grid, window_steps=12)

    assert features.empty
    assert list(features.columns) == [
        f"{metric}:{kind}"
        for metric in ("cpu", "mem")
        for kind in ("value", "diff", "resid", "std")
    ]

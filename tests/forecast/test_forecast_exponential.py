"""Tests of DegradationForecaster: statsmodels equivalence, causality, crossing and timing."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from predictor.exceptions import ForecastFallbackWarning
from predictor.forecast import DegradationForecaster
from predictor.forecast._recursion import SmoothingParams, variance_factors
from predictor.forecast.exponential import MAX_INTERPOLATED_GAP_STEPS


def _grid(periods: int, freq: str = "5min", start: str = "2024-03-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=periods, freq=freq, tz="UTC")


@pytest.fixture
def trending_series() -> pd.Series:
    """A noisy random walk with drift, 5-minute grid, no season."""
    rng = np.random.default_rng(0)
    n = 400
    walk = np.cumsum(rng.normal(0.0, 0.3, n))
    values = 50.0 + 0.05 * np.arange(n) + walk + rng.normal(0.0, 0.5, n)
    return pd.Series(values, index=_grid(n), name="temperature")


@pytest.fixture
def seasonal_series() -> pd.Series:
    """Twenty days of an hourly metric with a daily season and a slow drift."""
    rng = np.random.default_rng(1)
    n = 24 * 20
    t = np.arange(n)
    values = (
        50.0
        + 10.0 * np.sin(2 * np.pi * t / 24)
        + np.cumsum(rng.normal(0.0, 0.5, n))
        + rng.normal(0.0, 1.0, n)
    )
    return pd.Series(values, index=_grid(n, freq="1h"), name="requests_per_s")


def _statsmodels_known(model: DegradationForecaster, values: np.ndarray):
    """Fit statsmodels with the forecaster's parameters and initial state, not optimised."""
    seasonal = model.model_.endswith("seasonal")
    result = ExponentialSmoothing(
        values,
        trend="add",
        damped_trend=True,
        seasonal="add" if seasonal else None,
        seasonal_periods=model.season_steps_ if seasonal else None,
        initialization_method="known",
        initial_level=model.initial_level_,
        initial_trend=model.initial_trend_,
        initial_seasonal=model.initial_season_ if seasonal else None,
    ).fit(
        smoothing_level=model.alpha_,
        smoothing_trend=model.beta_,
        damping_trend=model.phi_,
        smoothing_seasonal=model.gamma_ if seasonal else None,
        optimized=False,
    )
    return result


@pytest.mark.parametrize(
    ("series_fixture", "season_steps", "kind"),
    [
        ("trending_series", None, "damped_trend"),
        ("seasonal_series", 24, "damped_trend_seasonal"),
    ],
)
def test_recursion_matches_statsmodels_fit(request, series_fixture, season_steps, kind):
    y = request.getfixturevalue(series_fixture)
    model = DegradationForecaster(threshold=1e6, season_steps=season_steps).fit(y)
    assert model.model_ == kind

    reference = _statsmodels_known(model, y.to_numpy())
    np.testing.assert_allclose(model.fittedvalues_.to_numpy(), reference.fittedvalues, rtol=1e-6)
    # The end-of-training state is statsmodels' last smoothed level and trend.
    assert model.level_ == pytest.approx(reference.level[-1], rel=1e-6)
    assert model.trend_ == pytest.approx(reference.trend[-1], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("series_fixture", "season_steps"), [("trending_series", None), ("seasonal_series", 24)]
)
def test_missing_values_follow_statsmodels_forecast(request, series_fixture, season_steps):
    """With no new observations, the expected value is statsmodels' out-of-sample forecast."""
    y = request.getfixturevalue(series_fixture)
    horizon = 6
    model = DegradationForecaster(
        threshold=1e6, horizon_steps=horizon, season_steps=season_steps, nonnegative=False
    ).fit(y)
    n_missing = 30
    future = pd.Series(np.nan, index=y.index[-1] + model.step_ * np.arange(1, n_missing + 1))

    path = model.forecast_path(future)
    result = _statsmodels_known(model, y.to_numpy())
    reference = result.forecast(horizon + n_missing)[horizon:]
    steps_ahead = horizon + np.arange(1, n_missing + 1)

    # At whole multiples of the season, statsmodels 0.15 forecasts with the seasonal
    # factor from one season before the newest. There the reference is the textbook
    # forecast l_T + (phi + ... + phi**h) * b_T + s_T from statsmodels' final components.
    if season_steps:
        whole_season = steps_ahead % season_steps == 0
        trend_sums = np.cumsum(model.phi_ ** np.arange(1, steps_ahead.max() + 1))
        reference[whole_season] = (
            result.level[-1]
            + result.season[-1]
            + trend_sums[steps_ahead[whole_season] - 1] * result.trend[-1]
        )
        assert whole_season.any()
    np.testing.assert_allclose(path["expected"].to_numpy(), reference, rtol=1e-6)


def test_variance_factors_match_simulation(seasonal_series):
    """The forecast variance formula agrees with statsmodels' simulated paths.

    statsmodels 0.15 ``simulate`` applies ``smoothing_trend`` in the error-correction form
    ``b_t = phi * b_{t-1} + beta * e_t``, whereas its fit uses the Holt form, in which that
    coefficient is ``alpha * beta``. The reference model is built in the simulation's form.
    """
    params = SmoothingParams(alpha=0.4, beta=0.3, phi=0.9, gamma=0.3)
    horizon, m = 20, 6
    y = seasonal_series.to_numpy()[:120]
    result = ExponentialSmoothing(
        y,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=m,
        initialization_method="known",
        initial_level=y[0],
        initial_trend=0.0,
        initial_seasonal=np.zeros(m),
    ).fit(
        smoothing_level=params.alpha,
        smoothing_trend=params.alpha * params.beta,
        damping_trend=params.phi,
        smoothing_seasonal=params.gamma,
        optimized=False,
    )

    paths = result.simulate(
        horizon, anchor="end", repetitions=20000, error="add", rng=np.random.default_rng(2)
    )
    variance = np.var(np.asarray(paths), axis=1)
    factors = variance_factors(params, m, horizon)

    np.testing.assert_allclose(factors, variance / variance[0], rtol=0.05)
    # The seasonal smoothing adds to the variance one full season ahead, so the variance
    # grows more from step m to m + 1 than from step m + 1 to m + 2.
    increments = np.diff(factors)
    assert increments[m - 1] > increments[m]


def test_forecaster_variance_uses_fitted_params(seasonal_series):
    model = DegradationForecaster(threshold=1e6, horizon_steps=30, season_steps=24)
    model.fit(seasonal_series)
    params = SmoothingParams(
        alpha=model.alpha_, beta=model.beta_, phi=model.phi_, gamma=model.gamma_
    )

    np.testing.assert_allclose(model.variance_factors_, variance_factors(params, 24, 30))
    assert model.variance_factors_[0] == 1.0
    assert np.all(np.diff(model.variance_factors_) > 0)


def test_forecast_path_is_causal(trending_series):
    train, replay = trending_series.iloc[:300], trending_series.iloc[300:].copy()
    replay.iloc[[5, 6, 40]] = np.nan
    model = DegradationForecaster(threshold=60.0, horizon_steps=12).fit(train)
    full = model.forecast_path(replay)

    for cut in (1, 7, 41, 75):
        prefix = model.forecast_path(replay.iloc[:cut])
        pd.testing.assert_frame_equal(prefix, full.iloc[:cut])

    # Appending very different later values leaves earlier rows unchanged.
    changed = replay.copy()
    changed.iloc[60:] = 500.0
    pd.testing.assert_frame_equal(model.forecast_path(changed).iloc[:60], full.iloc[:60])
    assert not model.forecast_path(changed).iloc[60:].equals(full.iloc[60:])


def test_forecast_path_treats_absent_grid_points_as_missing(trending_series):
    train, replay = trending_series.iloc[:300], trending_series.iloc[300:]
    model = DegradationForecaster(threshold=60.0).fit(train)
    with_nan = replay.copy()
    with_nan.iloc[10:20] = np.nan

    dropped = replay.drop(replay.index[10:20])
    expected = model.forecast_path(with_nan).drop(replay.index[10:20])

    pd.testing.assert_frame_equal(model.forecast_path(dropped), expected)


@pytest.mark.parametrize(
    ("slope", "direction", "threshold"), [(0.5, "above", 140.0), (-0.5, "below", -120.0)]
)
def test_time_to_threshold_on_linear_ramp(slope, direction, threshold):
    rng = np.random.default_rng(3)
    n, horizon = 300, 20
    clean = 10.0 + slope * np.arange(n)
    y = pd.Series(clean + rng.normal(0.0, 0.05, n), index=_grid(n, freq="1min"))
    model = DegradationForecaster(
        threshold=threshold, direction=direction, horizon_steps=horizon
    ).fit(y.iloc[:200])

    path = model.forecast_path(y.iloc[200:])
    true_seconds = (threshold - clean[200:]) / slope * 60.0
    got = path["time_to_threshold_seconds"].to_numpy()

    # Near the end of the horizon the damped mean may not reach the threshold yet.
    within = (true_seconds > 0) & (true_seconds <= (horizon - 4) * 60)
    assert within.sum() > 10
    # Damping makes the mean forecast approach the line from below: up to two steps late.
    np.testing.assert_allclose(got[within], true_seconds[within], atol=120.0)
    assert np.all(got[true_seconds < -120.0] == 0.0)
    assert np.all(np.isnan(got[true_seconds > (horizon + 2) * 60]))
    assert np.all(path["crossing_probability"].to_numpy()[within] > 0.99)
    assert np.all(path["crossing_probability"].to_numpy()[true_seconds > 2 * horizon * 60] < 0.01)


def test_crossing_probability_rises_before_machine_failure(sample_data):
    """The NAB machine temperature climbs from 55 to over 100 degrees before a failure."""
    raw = pd.read_csv(sample_data / "nab/realKnownCause/machine_temperature_system_failure.csv")
    series = pd.Series(
        raw["value"].to_numpy(dtype=float),
        index=pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True)),
    )
    series = series.loc[
        pd.Timestamp("2013-12-08 20:00", tz="UTC") : pd.Timestamp("2013-12-11 08:00", tz="UTC")
    ]
    train_end = pd.Timestamp("2013-12-10 20:00", tz="UTC")
    train, replay = series.loc[:train_end], series.loc[train_end + pd.Timedelta("5min") :]
    model = DegradationForecaster(threshold=100.0, horizon_steps=12).fit(train)

    probability = model.forecast_path(replay)["crossing_probability"]
    first_crossing = replay.index[np.argmax(replay.to_numpy() >= 100.0)]
    before = probability.loc[
        first_crossing - pd.Timedelta("30min") : first_crossing - pd.Timedelta("5min")
    ]

    assert train.max() < 90.0
    assert probability.iloc[:24].max() < 0.01
    assert before.max() > 0.3
    assert probability.loc[first_crossing] > 0.5


def test_fit_interpolates_short_gap(trending_series):
    y = trending_series.copy()
    y.iloc[100:103] = np.nan
    model = DegradationForecaster(threshold=60.0).fit(y)

    assert model.train_start_ == y.index[0]
    assert model.n_observations_ == len(y) - 3
    assert model.train_end_ == y.index[-1]


def test_fit_starts_after_long_gap(trending_series, caplog):
    y = trending_series.copy()
    gap_end = 100 + MAX_INTERPOLATED_GAP_STEPS + 1
    y.iloc[100:gap_end] = np.nan
    with caplog.at_level(logging.INFO, logger="predictor.forecast.exponential"):
        model = DegradationForecaster(threshold=60.0).fit(y)

    assert model.train_start_ == y.index[gap_end]
    assert model.n_observations_ == len(y) - gap_end
    assert "after a gap of 13 steps" in caplog.text


def test_trailing_missing_values_advance_state(trending_series):
    complete = DegradationForecaster(threshold=60.0).fit(trending_series.iloc[:300])
    y = trending_series.iloc[:310].copy()
    y.iloc[300:] = np.nan
    padded = DegradationForecaster(threshold=60.0).fit(y)

    assert padded.train_end_ == y.index[309]
    assert padded.alpha_ == complete.alpha_
    phi, trend = complete.phi_, complete.trend_
    expected_level = complete.level_ + trend * sum(phi**k for k in range(1, 11))
    assert padded.level_ == pytest.approx(expected_level)


def test_implausible_trend_falls_back_to_simple(caplog):
    """A steep ramp at the very end extrapolates far beyond everything seen in training."""
    values = np.r_[np.random.default_rng(4).normal(10.0, 0.5, 77), [30.0, 60.0, 90.0]]
    y = pd.Series(values, index=_grid(80), name="queue_depth")
    with (
        caplog.at_level(logging.WARNING, logger="predictor.forecast.exponential"),
        pytest.warns(ForecastFallbackWarning, match="damped_trend fit is implausible"),
    ):
        model = DegradationForecaster(threshold=200.0).fit(y)

    assert model.model_ == "simple"
    assert np.isnan(model.beta_)
    assert "queue_depth" in caplog.text
    assert "implausible" in caplog.text


def test_season_needs_two_full_seasons(seasonal_series):
    model = DegradationForecaster(threshold=1e6, season_steps=24, min_history_steps=20)
    model.fit(seasonal_series.iloc[:47])

    assert model.model_ == "damped_trend"
    assert model.season_steps_ == 0
    assert np.isnan(model.gamma_)


def test_constant_history_gives_certain_probabilities():
    y = pd.Series(3.0, index=_grid(100), name="standby_load")
    model = DegradationForecaster(threshold=5.0, horizon_steps=6).fit(y)
    replay = pd.Series(np.r_[np.full(10, 3.0), np.full(40, 10.0)], index=_grid(150)[100:])

    path = model.forecast_path(replay)

    assert model.sigma_ == 0.0
    assert set(path["crossing_probability"].unique()) <= {0.0, 1.0}
    assert (path["crossing_probability"].iloc[:10] == 0.0).all()
    assert path["crossing_probability"].iloc[-1] == 1.0


def test_pickle_round_trip_keeps_path(trending_series):
    model = DegradationForecaster(threshold=60.0).fit(trending_series.iloc[:300])
    restored = pickle.loads(pickle.dumps(model))

    pd.testing.assert_frame_equal(
        restored.forecast_path(trending_series.iloc[300:]),
        model.forecast_path(trending_series.iloc[300:]),
    )


def test_clone_keeps_params_and_drops_fit(trending_series):
    model = DegradationForecaster(
        threshold=60.0, direction="below", horizon_steps=6, season_steps=12, min_history_steps=20
    ).fit(trending_series)
    copy = clone(model)

    assert copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        copy.forecast_path(trending_series)


def test_forecast_path_empty_input(trending_series):
    model = DegradationForecaster(threshold=60.0).fit(trending_series)
    empty = pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float)

    path = model.forecast_path(empty)

    assert path.empty
    assert list(path.columns) == ["expected", "crossing_probability", "time_to_threshold_seconds"]


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"threshold": float("nan")}, ValueError, "threshold: expected a finite number"),
        ({"threshold": 1.0, "direction": "up"}, ValueError, "direction: expected one of"),
        ({"threshold": 1.0, "horizon_steps": 0}, ValueError, "horizon_steps: expected an integer"),
        ({"threshold": 1.0, "season_steps": 1}, ValueError, "season_steps: expected None or"),
        ({"threshold": 1.0, "min_history_steps": 2.5}, ValueError, "min_history_steps"),
        ({"threshold": 1.0, "damped_trend": "yes"}, TypeError, "damped_trend: expected True"),
        ({"threshold": 1.0, "nonnegative": 1}, TypeError, "nonnegative: expected None"),
    ],
)
def test_fit_rejects_bad_params(trending_series, params, error, match):
    with pytest.raises(error, match=match):
        DegradationForecaster(**params).fit(trending_series)


def _naive(y: pd.Series) -> pd.Series:
    return y.tz_localize(None)


def _irregular(y: pd.Series) -> pd.Series:
    return y.drop(y.index[[10, 11, 50]])


def _infinite(y: pd.Series) -> pd.Series:
    y = y.copy()
    y.iloc[7] = np.inf
    return y


def _too_few(y: pd.Series) -> pd.Series:
    y = y.copy()
    y.iloc[2:] = np.nan
    return y


def _text(y: pd.Series) -> pd.Series:
    return y.astype(str).where(np.arange(len(y)) != 3, "n/a")


@pytest.mark.parametrize(
    ("transform", "error", "match"),
    [
        (_naive, ValueError, r"temperature\): expected a timezone-aware UTC DatetimeIndex"),
        (_irregular, ValueError, "expected a regular grid with one fixed step"),
        (_infinite, ValueError, r"expected finite values or NaN, got np.float64\(inf\)"),
        (_too_few, ValueError, "expected at least 3 observed values, got 2"),
        (_text, ValueError, "expected numeric values"),
        (lambda y: y.reset_index(drop=True), TypeError, "expected a DatetimeIndex"),
        (lambda y: y.to_numpy(), TypeError, "expected a pandas Series, got ndarray"),
        (lambda y: y.iloc[::-1], ValueError, "expected strictly increasing times"),
    ],
)
def test_fit_rejects_bad_series(trending_series, transform, error, match):
    with pytest.raises(error, match=match):
        DegradationForecaster(threshold=60.0).fit(transform(trending_series))


def test_forecast_path_rejects_times_outside_grid(trending_series):
    model = DegradationForecaster(threshold=60.0).fit(trending_series.iloc[:300])
    replay = trending_series.iloc[300:]

    with pytest.raises(ValueError, match="expected times after the end of training"):
        model.forecast_path(trending_series.iloc[290:])
    shifted = replay.copy()
    shifted.index = shifted.index + pd.Timedelta("1min")
    with pytest.raises(ValueError, match="expected times on the training grid of step"):
        model.forecast_path(shifted)


def test_sustained_crossing_gives_probability_one():
    index = pd.date_range("2024-01-01", periods=200, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    history = pd.Series(70 + rng.normal(0, 0.5, 200), index=index)
    forecaster = DegradationForecaster(threshold=87.0, horizon_steps=60).fit(history)
    later = pd.date_range(index[-1] + pd.Timedelta(minutes=1), periods=30, freq="1min", tz="UTC")
    climb = pd.Series(np.linspace(71, 99, 30), index=later)

    path = forecaster.forecast_path(climb)
    beyond = climb.to_numpy() > 87.0
    first_beyond = int(np.argmax(beyond))

    assert (path["crossing_probability"].iloc[first_beyond + 2 :] == 1.0).all()
    assert (path["time_to_threshold_seconds"].iloc[first_beyond:] == 0.0).all()


def test_single_point_beyond_threshold_not_confirmed():
    index = pd.date_range("2024-01-01", periods=200, freq="1min", tz="UTC")
    rng = np.random.default_rng(1)
    history = pd.Series(70 + rng.normal(0, 0.5, 200), index=index)
    forecaster = DegradationForecaster(threshold=87.0, horizon_steps=60).fit(history)
    later = pd.date_range(index[-1] + pd.Timedelta(minutes=1), periods=10, freq="1min", tz="UTC")
    values = np.full(10, 70.0)
    values[[3, 4, 7]] = 95.0
    path = forecaster.forecast_path(pd.Series(values, index=later))

    assert (path["crossing_probability"] < 1.0).all()

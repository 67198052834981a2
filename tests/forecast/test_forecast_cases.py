"""Operator-reported forecasting traps: zero-valued nights and a short series with a burst."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from predictor.exceptions import ForecastFallbackWarning
from predictor.forecast import DegradationForecaster

CASES = Path(__file__).resolve().parents[1] / "cases"


def _read_case(name: str, column: str) -> pd.Series:
    frame = pd.read_csv(CASES / name)
    index = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
    return pd.Series(frame[column].to_numpy(dtype=float), index=index, name=column)


@pytest.fixture
def zero_nights() -> pd.Series:
    """Hourly request rates that are exactly zero every night, two weeks."""
    return _read_case("R16-hourly-zero-nights.csv", "requests_per_s")


@pytest.fixture
def one_burst() -> pd.Series:
    """Seventeen 6-hourly request counts, one of them a burst about five times the rest."""
    return _read_case("R18-short-series-one-burst.csv", "requests_per_6h")


def test_zero_nights_make_multiplicative_fail(zero_nights):
    """The trap is real: statsmodels rejects multiplicative seasonality on this data."""
    assert (zero_nights == 0.0).sum() >= 48
    with pytest.raises(ValueError, match="strictly positive"):
        ExponentialSmoothing(zero_nights.to_numpy(), seasonal="mul", seasonal_periods=24)


def test_zero_nights_fit_additive_season(zero_nights):
    model = DegradationForecaster(threshold=200.0, horizon_steps=24, season_steps=24)
    model.fit(zero_nights.iloc[:168])

    assert model.model_ == "damped_trend_seasonal"
    assert model.season_steps_ == 24
    assert model.nonnegative_ is True
    assert np.all(np.isfinite(model.season_))


def test_zero_nights_never_forecast_negative(zero_nights):
    train, replay = zero_nights.iloc[:168], zero_nights.iloc[168:]
    clipped = DegradationForecaster(threshold=200.0, horizon_steps=24, season_steps=24)
    unclipped = clipped.set_params(nonnegative=False).fit(train).forecast_path(replay)
    path = clipped.set_params(nonnegative=None).fit(train).forecast_path(replay)

    # Without clipping the additive season pushes night forecasts below zero.
    assert unclipped["expected"].min() < 0.0
    assert path["expected"].min() >= 0.0
    assert (path["expected"] == 0.0).sum() >= 7
    assert path["crossing_probability"].between(0.0, 1.0).all()


def test_zero_nights_below_threshold_uses_clipped_mean(zero_nights):
    """A "below" threshold under the night-time minimum is never forecast as crossed."""
    model = DegradationForecaster(threshold=-1.0, direction="below", horizon_steps=24,
                                  season_steps=24).fit(zero_nights.iloc[:168])

    path = model.forecast_path(zero_nights.iloc[168:])

    assert path["time_to_threshold_seconds"].isna().all()


def test_one_burst_falls_back_with_warning(one_burst, caplog):
    with caplog.at_level(logging.WARNING, logger="predictor.forecast.exponential"), \
            pytest.warns(ForecastFallbackWarning,
                         match="17 observations, fewer than min_history_steps=48"):
        model = DegradationForecaster(threshold=11000.0, horizon_steps=4).fit(one_burst)

    assert model.model_ == "simple"
    assert model.fallback_reason_ == "17 observations, fewer than min_history_steps=48"
    assert np.isnan(model.beta_)
    assert np.isnan(model.phi_)
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1
    assert "requests_per_6h" in warnings_logged[0].getMessage()
    assert "fewer than min_history_steps" in warnings_logged[0].getMessage()


@pytest.mark.parametrize("train_points", [10, 11, 12, 14, 17])
def test_one_burst_reports_no_imminent_crossing(one_burst, train_points):
    """Whether the burst is the newest training point or days old, nothing crosses.

    The threshold is twice the largest value outside the burst and far below the burst.
    """
    burst_free_max = one_burst.drop(one_burst.idxmax()).max()
    threshold = 2.0 * burst_free_max
    assert one_burst.max() > 2.0 * threshold
    model = DegradationForecaster(threshold=threshold, horizon_steps=4)
    with pytest.warns(ForecastFallbackWarning, match="fewer than min_history_steps"):
        model.fit(one_burst.iloc[:train_points])
    later = one_burst.iloc[train_points:]
    if later.empty:
        later = pd.Series(np.nan, index=one_burst.index[-1] + model.step_ * np.arange(1, 5))

    path = model.forecast_path(later)

    assert path["crossing_probability"].max() < 0.05
    assert path["time_to_threshold_seconds"].isna().all()
    assert (path["expected"] < threshold).all()


def test_one_burst_does_not_inflate_sigma(one_burst):
    with pytest.warns(ForecastFallbackWarning, match="fewer than min_history_steps"):
        model = DegradationForecaster(threshold=11000.0, horizon_steps=4).fit(one_burst)
    residuals = one_burst - model.fittedvalues_

    # The burst alone makes the plain standard deviation several times larger.
    assert model.sigma_ < 0.5 * residuals.std(ddof=0)
    assert model.sigma_ > 0.0

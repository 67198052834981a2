"""Degradation forecasts: exponential smoothing toward a metric threshold."""

from __future__ import annotations

from predictor.forecast.batch import fit_forecasters
from predictor.forecast.exponential import DegradationForecaster

__all__ = ["DegradationForecaster", "fit_forecasters"]

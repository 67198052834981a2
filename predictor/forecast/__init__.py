"""Degradation forecasts: exponential smoothing toward a metric threshold."""

from __future__ import annotations

from predictor.forecast.exponential import DegradationForecaster

__all__ = ["DegradationForecaster"]

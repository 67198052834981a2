"""Placeholder replaced by the vectorized forecaster fit."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from predictor.forecast.exponential import DegradationForecaster


def fit_forecasters(
    series: Sequence[pd.Series],
    *,
    thresholds: Sequence[float],
    directions: Sequence[str],
    horizon_steps: int,
    season_steps: int | None = None,
) -> list[DegradationForecaster]:
    return [
        DegradationForecaster(
            threshold=threshold,
            direction=direction,
            horizon_steps=horizon_steps,
            season_steps=season_steps,
        ).fit(values)
        for values, threshold, direction in zip(series, thresholds, directions, strict=True)
    ]

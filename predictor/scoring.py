"""Scoring stage: turn new telemetry into failure-risk, levels and level-change events.

Each component is scored on every grid point after its last stored score, up to a
given time. Features are trailing windows and forecasts run forward from the end of
training, so the score at time t depends only on rows with timestamps at or before t.
Scoring in one call or in many gives the same scores, and so does appending later rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.detect.scale import (
    continue_smoothing,
    smooth_surprise,
    smoothing_memory_rows,
    surprise_to_score,
)
from predictor.features import build_grid, make_features
from predictor.hooks import HookEvent
from predictor.model import ComponentModel
from predictor.risk import LevelState, assign_levels, fuse_risk
from predictor.risk_calibration import RiskCalibration
from predictor.telemetry import TelemetryStore
from predictor.telemetry.freshness import key_metrics, stale_drivers, stale_reasons

logger = logging.getLogger(__name__)

# Forecast drivers are named only when crossing is at least this likely.
FORECAST_DRIVER_PROBABILITY = 0.5


@dataclass
class ComponentScores:
    """Score rows of one component for the risk store, and its level entries."""

    records: pd.DataFrame
    events: list[HookEvent]


def previous_state(last_score: dict | None) -> LevelState:
    if last_score is None:
        return LevelState()
    return LevelState(
        level=last_score["level"],
        pending_level=last_score["pending_level"],
        pending_count=int(last_score["pending_count"]),
    )


def _staleness(
    model: ComponentModel, rows: pd.DataFrame, times: pd.DatetimeIndex, settings: Settings
) -> tuple[np.ndarray, list[str | None]]:
    """Flag grid times whose telemetry, or a key metric, is too old, with the reason."""
    required = key_metrics(settings, model.component, model.metrics)
    max_age = model.step * settings.levels.stale_after_steps
    reasons = stale_reasons(rows, times, max_age, required)
    return np.array([reason is not None for reason in reasons], dtype=bool), reasons


def _trim_trailing_silence(
    times: pd.DatetimeIndex, stale: np.ndarray
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Drop the grid times of a trailing stale run except its first."""
    if len(stale) == 0 or not stale[-1]:
        return times, stale
    fresh = np.flatnonzero(~stale)
    first_silent = fresh[-1] + 1 if len(fresh) else 0
    return times[: first_silent + 1], stale[: first_silent + 1]


def _forecast_columns(
    model: ComponentModel, grid: pd.DataFrame, times: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
    """Return the crossing probability, time to threshold and forecast drivers per time."""
    probability = np.full(len(times), np.nan)
    time_to_threshold = np.full(len(times), np.nan)
    drivers: list[list[dict]] = [[] for _ in times]

    for metric, forecaster in model.forecasters.items():
        history = grid[metric].loc[forecaster.train_end_ + model.step :]
        path = forecaster.forecast_path(history).reindex(times)
        metric_probability = path["crossing_probability"].to_numpy(dtype=float)
        metric_time = path["time_to_threshold_seconds"].to_numpy(dtype=float)

        probability = np.fmax(probability, metric_probability)
        time_to_threshold = np.fmin(time_to_threshold, metric_time)
        for index in np.flatnonzero(metric_probability >= FORECAST_DRIVER_PROBABILITY):
            drivers[index].append(
                forecast_driver(metric, metric_probability[index], forecaster.threshold)
            )
    return probability, time_to_threshold, drivers


def forecast_driver(metric: str, probability: float, threshold: float) -> dict:
    """Return the driver entry of a metric forecast to cross ``threshold``."""
    return {
        "metric": metric,
        "contribution": round(float(probability), 4),
        "kind": "forecast",
        "threshold": threshold,
    }


def anomaly_driver_entries(shares: list[tuple[str, float]]) -> list[dict]:
    """Return the driver entries of the ensemble's (metric, share) explanation of a row."""
    return [
        {"metric": metric, "contribution": round(float(share), 4), "kind": "anomaly"}
        for metric, share in shares
    ]


def level_change_event(
    model: ComponentModel,
    settings: Settings,
    model_version: str,
    calibrated: bool,
    *,
    level: str,
    previous_level: str,
    risk: float,
    raw_risk: float,
    scored_at: pd.Timestamp,
    drivers: list[dict],
    time_to_threshold: float,
) -> HookEvent:
    """Return the hook event of a level change of ``model``'s component.

    ``time_to_threshold`` is in seconds, NaN when no forecast crosses.
    """
    return HookEvent(
        component=model.component,
        group=model.group,
        level=level,
        previous_level=previous_level,
        risk=float(risk),
        scored_at=scored_at,
        horizon_minutes=settings.model.horizon_minutes,
        drivers=drivers,
        time_to_threshold_seconds=_finite_or_none(time_to_threshold),
        model_version=model_version,
        calibrated=calibrated,
        raw_risk=float(raw_risk),
    )


def carried_surprise(last_score: dict | None) -> float | None:
    """Return the smoothed surprise stored with the previous score, when the next score
    can continue from it: a fresh score with a finite value.

    A score of an earlier model version carries over too: the surprise of every model
    is on the same scale (``-log10`` of a tail probability), and continuing the
    smoothing keeps the score continuous across a retraining.
    """
    if last_score is None or last_score.get("stale"):
        return None
    value = last_score.get("surprise")
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def smoothed_anomaly(
    model: ComponentModel,
    features: pd.DataFrame,
    times: pd.DatetimeIndex,
    smoothing_rows: int,
    carried: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the anomaly score at ``times`` and the smoothed surprise behind it.

    With ``carried``, the smoothing continues from it and only ``times`` are scored;
    otherwise the surprise of the ``smoothing_rows`` grid points before them is
    scored too.
    """
    if carried is not None:
        surprise = model.ensemble.fused_surprise(model.ensemble_input(features.loc[times]))
        smoothed = continue_smoothing(surprise, model.smoothing_span, carried)
        return surprise_to_score(smoothed), smoothed
    start = times[0] - model.step * smoothing_rows
    window = features.loc[(features.index >= start) & (features.index <= times[-1])]
    surprise = model.ensemble.fused_surprise(model.ensemble_input(window))
    smoothed = pd.Series(smooth_surprise(surprise, model.smoothing_span), index=window.index)
    values = smoothed.loc[times].to_numpy()
    return surprise_to_score(values), values


def score_component(
    model: ComponentModel,
    telemetry: TelemetryStore,
    last_score: dict | None,
    until: pd.Timestamp,
    settings: Settings,
    model_version: str,
    calibration: RiskCalibration | None = None,
) -> ComponentScores:
    """Score one component on every grid point after its last score, up to ``until``.

    Parameters
    ----------
    model : ComponentModel
    telemetry : TelemetryStore
    last_score : dict or None
        The component's newest stored score row, which carries its level state.
    until : pandas.Timestamp
        The last time to score (UTC, inclusive).
    settings : Settings
    model_version : str
    calibration : RiskCalibration or None, default=None
        When it applies to the component, the published ``risk`` is the calibrated
        probability of a failure within the horizon, ``raw_risk`` keeps the fused risk
        and ``calibrated`` is True. Levels follow the fused risk either way, because
        their thresholds are set on that scale.

    Returns
    -------
    ComponentScores
    """
    step = model.step
    previous = previous_state(last_score)
    first = last_score["scored_at"] + step if last_score else model.train_end + step
    if first > until:
        return ComponentScores(records=pd.DataFrame(), events=[])

    # Features need a trailing window before the first new point; forecasts run
    # forward from the end of training.
    # The smoothed score of the first new point also reads the surprise of the points
    # before it.
    # A previous score of the same model carries the smoothing state, so only the new
    # points are scored.
    carried = carried_surprise(last_score)
    smoothing_rows = 0 if carried is not None else smoothing_memory_rows(model.smoothing_span)
    feature_lookback = step * (model.window_steps + (model.season_steps or 0) + 2 + smoothing_rows)
    anchor = model.train_end if model.forecasters else first
    rows = telemetry.read(components=[model.component], start=anchor - feature_lookback, end=until)
    grid = build_grid(rows, model.step_seconds, start=anchor - feature_lookback, end=until)
    grid = grid.reindex(columns=model.metrics)
    times = grid.index[(grid.index >= first) & (grid.index <= until)]
    if len(times) == 0:
        return ComponentScores(records=pd.DataFrame(), events=[])

    # A silence is marked by one ``unknown`` score at its start. The grid points inside
    # it are scored once telemetry returns.
    stale, stale_why = _staleness(model, rows, times, settings)
    times, stale = _trim_trailing_silence(times, stale)
    stale_why = stale_why[: len(times)]
    if last_score is not None and last_score["stale"] and stale.all():
        # Still silent since the stored unknown score: nothing new to record, so a
        # repeated run writes nothing.
        return ComponentScores(records=pd.DataFrame(), events=[])

    features = make_features(grid, model.window_steps, model.season_steps)
    features = features.reindex(columns=model.feature_columns)
    X = features.loc[times]
    anomaly, surprise = smoothed_anomaly(model, features, times, smoothing_rows, carried)
    anomaly_drivers = model.ensemble.explain(model.ensemble_input(X))
    probability, time_to_threshold, forecast_drivers = _forecast_columns(model, grid, times)
    raw_risk = fuse_risk(anomaly, probability)
    risk, calibrated = raw_risk, False
    if calibration is not None and calibration.applies_to(model.component):
        risk, calibrated = calibration.calibrator.transform(raw_risk), True

    states, _ = assign_levels(raw_risk.tolist(), stale.tolist(), previous, settings.levels)
    levels = [state.level for state in states]
    previous_levels = [previous.level, *levels[:-1]]
    drivers = [
        anomaly_driver_entries(anomaly_row) + forecast_row
        for anomaly_row, forecast_row in zip(anomaly_drivers, forecast_drivers, strict=True)
    ]
    # An unknown score is explained by what is missing, not by stale features.
    drivers = [
        stale_drivers(why) if why else row for row, why in zip(drivers, stale_why, strict=True)
    ]

    records = pd.DataFrame(
        {
            "component": model.component,
            "group_name": model.group,
            "scored_at": times,
            "risk": risk,
            "raw_risk": raw_risk,
            "anomaly_score": anomaly,
            "forecast_probability": probability,
            "time_to_threshold_seconds": time_to_threshold,
            "level": levels,
            "previous_level": previous_levels,
            "pending_level": [state.pending_level for state in states],
            "pending_count": [state.pending_count for state in states],
            "drivers": drivers,
            "model_version": model_version,
            "calibrated": calibrated,
            "stale": stale,
            "surprise": surprise,
        }
    )
    events = [
        level_change_event(
            model,
            settings,
            model_version,
            calibrated,
            level=levels[index],
            previous_level=previous_levels[index],
            risk=risk[index],
            raw_risk=raw_risk[index],
            scored_at=times[index],
            drivers=drivers[index],
            time_to_threshold=time_to_threshold[index],
        )
        for index in range(len(times))
        # Every level change is an event; the hook guardrails decide which ones act
        # (entries into a worse level, entries into unknown, and recoveries to normal).
        if previous_levels[index] != levels[index]
    ]
    return ComponentScores(records=records, events=events)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

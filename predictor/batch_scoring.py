"""Scoring many components that share one ensemble, in one vectorized pass.

With ``[model] sharing = "group"`` every component of a group uses the same ensemble.
A scoring cycle then reads the telemetry of all of them at once, bins it onto one
(component, time, metric) array, computes the trailing features for the new grid
points of every component together and calls the shared ensemble once. Each
component's smoothing continues from the surprise stored with its previous score, so
only the new points are scored.

The result equals :func:`predictor.scoring.score_component` on the same model, to
floating-point rounding. Components outside the common case (no previous score from
this model, a different next grid point, stale telemetry) are returned for the
per-component path, which handles silences, fallbacks and first scores.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.detect.scale import smooth_surprise, smoothing_memory_rows, surprise_to_score
from predictor.features import FEATURE_SEPARATOR, trailing_median, trailing_std
from predictor.forecast.batch import forecast_paths_batch
from predictor.hooks import HookEvent
from predictor.model import ComponentModel
from predictor.risk import assign_levels, fuse_risk
from predictor.risk_calibration import RiskCalibration
from predictor.scoring import (
    FORECAST_DRIVER_PROBABILITY,
    anomaly_driver_entries,
    carried_surprise,
    forecast_driver,
    level_change_event,
    previous_state,
)
from predictor.telemetry import TelemetryStore
from predictor.telemetry.freshness import key_metrics
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

# Empty grid points filled with the last value, as in build_grid's default.
MAX_FILL_STEPS = 3


@dataclass
class BatchScores:
    """Score rows and level-change events of the components scored together."""

    records: pd.DataFrame
    events: list[HookEvent]
    components: list[str]
    rest: list[str] = field(default_factory=list)


def score_shared_batch(
    models: Sequence[ComponentModel],
    telemetry: TelemetryStore,
    last_scores: Mapping[str, dict],
    until: pd.Timestamp,
    settings: Settings,
    model_version: str,
    calibration: RiskCalibration | None = None,
) -> BatchScores:
    """Score components that share one ensemble on their new grid points up to ``until``.

    Parameters
    ----------
    models : sequence of ComponentModel
        Models that hold the same ensemble, metrics, grid step and feature settings.
    telemetry : TelemetryStore
    last_scores : mapping of str to dict
        Each component's newest stored score (see ``RiskStore.last_scores``).
    until : pandas.Timestamp
        Last time to score (UTC, inclusive).
    settings : Settings
    model_version : str
        The label of the model version, written to every row.
    calibration : RiskCalibration or None, default=None

    Returns
    -------
    BatchScores
        ``rest`` names the components left for the per-component path.
    """
    if not models:
        return BatchScores(pd.DataFrame(), [], [])
    reference = models[0]
    step = reference.step
    eligible, rest = _eligible(models, last_scores, until, settings)
    if not eligible:
        return BatchScores(pd.DataFrame(), [], [], rest)

    first = _first_time(eligible[0], last_scores)
    times = pd.date_range(first, until, freq=step)
    carried = np.array(
        [_carried_or_nan(last_scores.get(model.component)) for model in eligible], dtype="float64"
    )
    # Components without a carried smoothing state score the points before ``first``
    # that their smoothed score still depends on.
    history_rows = (
        smoothing_memory_rows(reference.smoothing_span) if np.isnan(carried).any() else 0
    )
    feature_rows = reference.window_steps + (reference.season_steps or 0) + 2
    lookback = max(feature_rows, settings.levels.stale_after_steps + 1) + history_rows
    start = first - step * lookback
    names = [model.component for model in eligible]
    frame = telemetry.read(components=names, start=start, end=until)

    stale = _stale_components(frame, eligible, start, times, settings)
    if stale.any():
        rest.extend(name for name, flag in zip(names, stale, strict=True) if flag)
        eligible = [model for model, flag in zip(eligible, stale, strict=True) if not flag]
        carried = carried[~stale]
        names = [model.component for model in eligible]
        if not eligible:
            return BatchScores(pd.DataFrame(), [], [], rest)

    cube = grid_cube(frame, names, reference.metrics, start, until, step)
    features = features_at(cube, lookback - history_rows, reference)
    surprise, at_times = _surprise(eligible, features, carried, len(times))
    smoothed = _smooth(surprise, carried, reference.smoothing_span, len(times))
    anomaly = surprise_to_score(smoothed)
    anomaly_drivers = reference.ensemble.explain(at_times)
    n_components, n_times = len(eligible), len(times)

    probability, time_to_threshold, forecast_drivers = _forecasts(
        eligible, telemetry, times, until, step
    )
    raw_risk = fuse_risk(anomaly.ravel(), probability.ravel()).reshape(n_components, n_times)

    records, events = _records_and_events(
        eligible,
        times,
        last_scores,
        settings,
        model_version,
        calibration,
        anomaly=anomaly,
        raw_risk=raw_risk,
        probability=probability,
        time_to_threshold=time_to_threshold,
        smoothed=smoothed,
        anomaly_drivers=anomaly_drivers,
        forecast_drivers=forecast_drivers,
    )
    logger.info(
        "score: batch of %s: %d components scored together on %d grid points up to %s, "
        "%d left to the per-component path",
        model_version,
        len(eligible),
        n_times,
        until,
        len(rest),
    )
    return BatchScores(records, events, names, rest)


def _eligible(
    models: Sequence[ComponentModel],
    last_scores: Mapping[str, dict],
    until: pd.Timestamp,
    settings: Settings,
) -> tuple[list[ComponentModel], list[str]]:
    """Split the models into those the batch scores and those it leaves.

    The batch takes components whose next grid point is the most common one, so all
    of them score the same grid points, and whose previous score (if any) was fresh.
    A silence that goes on is left to the per-component path, which records it once.
    """
    firsts = {}
    for model in models:
        last = last_scores.get(model.component)
        if last is not None and last.get("stale"):
            continue
        first = _first_time(model, last_scores)
        if first <= until:
            firsts[model.component] = first
    if not firsts:
        return [], [model.component for model in models]
    common = Counter(firsts.values()).most_common(1)[0][0]
    chosen = [model for model in models if firsts.get(model.component) == common]
    chosen_names = {model.component for model in chosen}
    return chosen, [model.component for model in models if model.component not in chosen_names]


def _first_time(model: ComponentModel, last_scores: Mapping[str, dict]) -> pd.Timestamp:
    """Return the component's next grid point: after its last score, else after training."""
    last = last_scores.get(model.component)
    return (last["scored_at"] if last else model.train_end) + model.step


def _carried_or_nan(last_score: dict | None) -> float:
    value = carried_surprise(last_score)
    return np.nan if value is None else value


def _surprise(
    models: Sequence[ComponentModel], features: np.ndarray, carried: np.ndarray, n_times: int
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Call the shared ensemble once on every row that needs a surprise.

    ``features`` is (component, time, feature) from the first history row on. A
    component with a carried state needs its last ``n_times`` rows, the others all.
    Returns each component's surprise over the rows it needed, and the standardized
    rows at the scoring times (component-major) for the drivers.
    """
    columns = list(models[0].feature_columns)
    blocks, at_times = [], []
    for row, model in enumerate(models):
        needed = features[row, -n_times:] if np.isfinite(carried[row]) else features[row]
        scaled = (needed - model.feature_center) / model.feature_scale
        blocks.append(scaled)
        at_times.append(scaled[-n_times:])
    stacked = pd.DataFrame(np.concatenate(blocks), columns=columns)
    fused = models[0].ensemble.fused_surprise(stacked)
    bounds = np.cumsum([0, *(len(block) for block in blocks)])
    surprise = [fused[low:high] for low, high in pairwise(bounds)]
    return surprise, pd.DataFrame(np.concatenate(at_times), columns=columns)


def _smooth(
    surprise: list[np.ndarray], carried: np.ndarray, span: int, n_times: int
) -> np.ndarray:
    """Smoothed surprise at the scoring times, (component, time).

    Components with a carried state continue from it, vectorized; the others smooth
    their history as :func:`predictor.scoring.score_component` does.
    """
    smoothed = np.full((len(surprise), n_times), np.nan)
    with_state = np.isfinite(carried)
    if with_state.any():
        rows = np.stack([surprise[row] for row in np.flatnonzero(with_state)])
        smoothed[with_state] = _continue_smoothing(rows, span, carried[with_state])
    for row in np.flatnonzero(~with_state):
        smoothed[row] = smooth_surprise(surprise[row], span)[-n_times:]
    return smoothed


def grid_cube(
    frame: pd.DataFrame,
    components: Sequence[str],
    metrics: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    step: pd.Timedelta,
) -> np.ndarray:
    """Bin long rows onto a (component, time, metric) array as ``build_grid`` does.

    The value at grid time ``t`` is the mean of the finite values in ``(t - step, t]``;
    up to :data:`MAX_FILL_STEPS` empty points after a value are filled with it.
    """
    step_ns = step.value
    start_ns, end_ns = start.value, end.value
    n_times = (end_ns - start_ns) // step_ns + 1
    shape = (len(components), n_times, len(metrics))
    if frame.empty:
        return np.full(shape, np.nan)

    component_codes = pd.Categorical(frame[COMPONENT], categories=list(components)).codes
    metric_codes = pd.Categorical(frame[METRIC], categories=list(metrics)).codes
    stamps = frame[TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    labels = -((-stamps) // step_ns) * step_ns
    time_codes = (labels - start_ns) // step_ns
    values = frame[VALUE].to_numpy(dtype="float64")
    keep = (
        (component_codes >= 0)
        & (metric_codes >= 0)
        & (time_codes >= 0)
        & (time_codes < n_times)
        & np.isfinite(values)
    )
    flat = (component_codes[keep].astype(np.int64) * n_times + time_codes[keep]) * len(
        metrics
    ) + metric_codes[keep]
    size = int(np.prod(shape))
    sums = np.bincount(flat, weights=values[keep], minlength=size)
    counts = np.bincount(flat, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(shape)
    return _fill_forward(cube, MAX_FILL_STEPS)


def _fill_forward(cube: np.ndarray, limit: int) -> np.ndarray:
    """Fill up to ``limit`` consecutive NaN along the time axis with the last value."""
    observed = ~np.isnan(cube)
    positions = np.where(observed, np.arange(cube.shape[1])[None, :, None], -1)
    last_seen = np.maximum.accumulate(positions, axis=1)
    gap = np.arange(cube.shape[1])[None, :, None] - last_seen
    fill = ~observed & (last_seen >= 0) & (gap <= limit)
    source = np.take_along_axis(cube, np.clip(last_seen, 0, None), axis=1)
    return np.where(fill, source, cube)


def features_at(cube: np.ndarray, offset: int, model: ComponentModel) -> np.ndarray:
    """Compute ``make_features`` at every grid time from ``offset`` on.

    Returns an array (component, time, feature) in ``model.feature_columns`` order.
    """
    window = model.window_steps
    n_times = cube.shape[1] - offset
    computed: dict[str, np.ndarray] = {}
    for index, metric in enumerate(model.metrics):
        series = cube[:, :, index]
        previous = np.concatenate([np.full((len(series), 1), np.nan), series[:, :-1]], axis=1)
        value = series[:, offset:]
        name = f"{metric}{FEATURE_SEPARATOR}"
        computed[name + "value"] = value
        computed[name + "diff"] = value - previous[:, offset:]
        computed[name + "resid"] = value - trailing_median(previous, window)[:, offset:]
        computed[name + "std"] = trailing_std(series, window)[:, offset:]
        if model.season_steps:
            season = series[:, offset - model.season_steps :]
            computed[name + "sresid"] = value - season[:, :n_times]
    return np.stack([computed[column] for column in model.feature_columns], axis=-1)


def _stale_components(
    frame: pd.DataFrame,
    models: Sequence[ComponentModel],
    start: pd.Timestamp,
    times: pd.DatetimeIndex,
    settings: Settings,
) -> np.ndarray:
    """Flag components whose telemetry, or a key metric, is too old at any of ``times``.

    As :func:`predictor.telemetry.freshness.stale_reasons`: a time is fresh when a row
    (whatever its value) lies in ``[t - max_age, t]``, with ``max_age`` the grid step
    times ``stale_after_steps``. Rows are counted per grid bin ``(t - step, t]``, so
    that window is the last ``stale_after_steps`` bins plus the rows exactly at
    ``t - max_age``.
    """
    names = [model.component for model in models]
    step_ns = models[0].step.value
    window = settings.levels.stale_after_steps
    n_bins = (times[-1].value - start.value) // step_ns + 1
    keys = [key_metrics(settings, model.component, model.metrics) for model in models]
    metric_names = sorted(
        {str(name) for name in frame[METRIC].unique()} | {m for key in keys for m in key}
    )
    shape = (len(names), n_bins, len(metric_names))
    component_codes = pd.Categorical(frame[COMPONENT], categories=names).codes.astype(np.int64)
    metric_codes = pd.Categorical(frame[METRIC], categories=metric_names).codes.astype(np.int64)
    stamps = frame[TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    labels = -((-stamps) // step_ns) * step_ns
    bins = (labels - start.value) // step_ns
    inside = (bins >= 0) & (bins < n_bins) & (component_codes >= 0)
    flat = (component_codes[inside] * n_bins + bins[inside]) * len(metric_names) + metric_codes[
        inside
    ]
    size = int(np.prod(shape))
    counts = np.bincount(flat, minlength=size).reshape(shape)
    on_edge = np.bincount(flat, weights=(stamps[inside] == labels[inside]), minlength=size)
    on_edge = on_edge.reshape(shape)

    cumulative = np.concatenate(
        [np.zeros((shape[0], 1, shape[2])), np.cumsum(counts, axis=1)], axis=1
    )
    positions = (times.as_unit("ns").asi8 - start.value) // step_ns
    recent = cumulative[:, positions + 1] - cumulative[:, positions + 1 - window]
    fresh = (recent + on_edge[:, positions - window]) > 0
    key_mask = np.zeros((len(names), len(metric_names)), dtype=bool)
    for row, key in enumerate(keys):
        key_mask[row, [metric_names.index(metric) for metric in key]] = True
    any_fresh = fresh.any(axis=2)
    keys_fresh = (fresh | ~key_mask[:, None, :]).all(axis=2)
    return ~(any_fresh & keys_fresh).all(axis=1)


def _continue_smoothing(surprise: np.ndarray, span: int, carried: np.ndarray) -> np.ndarray:
    """Vectorized :func:`predictor.detect.scale.continue_smoothing`, one row per component."""
    weight = 2.0 / (int(span) + 1)
    smoothed = np.full(surprise.shape, np.nan)
    current = carried.copy()
    for column in range(surprise.shape[1]):
        value = surprise[:, column]
        seen = ~np.isnan(value)
        current = np.where(seen, weight * value + (1.0 - weight) * current, current)
        smoothed[seen, column] = current[seen]
    return smoothed


def _forecasts(
    models: Sequence[ComponentModel],
    telemetry: TelemetryStore,
    times: pd.DatetimeIndex,
    until: pd.Timestamp,
    step: pd.Timedelta,
) -> tuple[np.ndarray, np.ndarray, list[list[list[dict]]]]:
    """Crossing probability, time to threshold and forecast drivers per component and time."""
    shape = (len(models), len(times))
    probability = np.full(shape, np.nan)
    time_to_threshold = np.full(shape, np.nan)
    drivers: list[list[list[dict]]] = [[[] for _ in times] for _ in models]
    with_forecasts = [row for row, model in enumerate(models) if model.forecasters]
    if not with_forecasts:
        return probability, time_to_threshold, drivers

    metrics = sorted({metric for row in with_forecasts for metric in models[row].forecasters})
    train_end = min(models[row].train_end for row in with_forecasts)
    start = train_end - step * (MAX_FILL_STEPS + 1)
    names = [models[row].component for row in with_forecasts]
    frame = telemetry.read(components=names, start=start, end=until, metrics=metrics)
    cube = grid_cube(frame, names, metrics, start, until, step)

    # Forecasters of one metric that were trained up to the same time run together.
    batches: dict[tuple[str, pd.Timestamp], list[tuple[int, int]]] = {}
    for position, row in enumerate(with_forecasts):
        for metric, forecaster in models[row].forecasters.items():
            batches.setdefault((metric, forecaster.train_end_), []).append((position, row))

    for (metric, trained_until), members in batches.items():
        first_new = (trained_until + step - start) // step
        positions = [position for position, _ in members]
        rows = [row for _, row in members]
        forecasters = [models[row].forecasters[metric] for row in rows]
        histories = cube[positions, first_new:, metrics.index(metric)]
        paths = forecast_paths_batch(forecasters, histories)
        # Columns of the paths at the scoring times.
        columns = (times - (trained_until + step)) // step
        metric_probability = paths["crossing_probability"][:, columns]
        metric_time = paths["time_to_threshold_seconds"][:, columns]
        probability[rows] = np.fmax(probability[rows], metric_probability)
        time_to_threshold[rows] = np.fmin(time_to_threshold[rows], metric_time)
        for member, index in zip(
            *np.nonzero(metric_probability >= FORECAST_DRIVER_PROBABILITY), strict=True
        ):
            drivers[rows[member]][index].append(
                forecast_driver(
                    metric, metric_probability[member, index], forecasters[member].threshold
                )
            )
    return probability, time_to_threshold, drivers


def _records_and_events(
    models: Sequence[ComponentModel],
    times: pd.DatetimeIndex,
    last_scores: Mapping[str, dict],
    settings: Settings,
    model_version: str,
    calibration: RiskCalibration | None,
    *,
    anomaly: np.ndarray,
    raw_risk: np.ndarray,
    probability: np.ndarray,
    time_to_threshold: np.ndarray,
    smoothed: np.ndarray,
    anomaly_drivers: list[list[tuple[str, float]]],
    forecast_drivers: list[list[list[dict]]],
) -> tuple[pd.DataFrame, list[HookEvent]]:
    """Assign levels per component and build the score rows and level-change events."""
    n_times = len(times)
    columns: dict[str, list] = {name: [] for name in _RECORD_COLUMNS}
    events: list[HookEvent] = []
    for row, model in enumerate(models):
        risk, calibrated = raw_risk[row], False
        if calibration is not None and calibration.applies_to(model.component):
            risk, calibrated = calibration.calibrator.transform(raw_risk[row]), True
        previous = previous_state(last_scores.get(model.component))
        states, _ = assign_levels(
            raw_risk[row].tolist(), [False] * n_times, previous, settings.levels
        )
        levels = [state.level for state in states]
        previous_levels = [previous.level, *levels[:-1]]
        for index in range(n_times):
            drivers = (
                anomaly_driver_entries(anomaly_drivers[row * n_times + index])
                + forecast_drivers[row][index]
            )
            columns["component"].append(model.component)
            columns["group_name"].append(model.group)
            columns["scored_at"].append(times[index])
            columns["risk"].append(float(risk[index]))
            columns["raw_risk"].append(float(raw_risk[row, index]))
            columns["anomaly_score"].append(float(anomaly[row, index]))
            columns["forecast_probability"].append(float(probability[row, index]))
            columns["time_to_threshold_seconds"].append(float(time_to_threshold[row, index]))
            columns["level"].append(levels[index])
            columns["previous_level"].append(previous_levels[index])
            columns["pending_level"].append(states[index].pending_level)
            columns["pending_count"].append(states[index].pending_count)
            columns["drivers"].append(drivers)
            columns["calibrated"].append(calibrated)
            columns["surprise"].append(float(smoothed[row, index]))
            if previous_levels[index] != levels[index]:
                events.append(
                    level_change_event(
                        model,
                        settings,
                        model_version,
                        calibrated,
                        level=levels[index],
                        previous_level=previous_levels[index],
                        risk=risk[index],
                        raw_risk=raw_risk[row, index],
                        scored_at=times[index],
                        drivers=drivers,
                        time_to_threshold=time_to_threshold[row, index],
                    )
                )
    records = pd.DataFrame(columns)
    records["scored_at"] = pd.DatetimeIndex(records["scored_at"]).tz_convert("UTC")
    records["model_version"] = model_version
    records["stale"] = False
    return records, events


_RECORD_COLUMNS = (
    "component",
    "group_name",
    "scored_at",
    "risk",
    "raw_risk",
    "anomaly_score",
    "forecast_probability",
    "time_to_threshold_seconds",
    "level",
    "previous_level",
    "pending_level",
    "pending_count",
    "drivers",
    "calibrated",
    "surprise",
)

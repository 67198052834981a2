"""Training with one anomaly ensemble per component group (``[model] sharing = "group"``).

Components of one group (GPU nodes of one type, replicas of one service) behave alike
once each is measured against its own normal. Each component's features are
standardized with the median and robust scale of its own training rows, and one
ensemble is fitted on rows drawn evenly from every component of the group. A fleet of
10,000 components then trains and scores a handful of ensembles instead of 10,000,
and a component with a short history borrows the shape of normal from its peers.

Forecasters stay per component and metric, fitted with the vectorized fast path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.detect.base import robust_center_scale, scale_floor
from predictor.detect.ensemble import MIN_RELATIVE_SCALE, MIN_SCALE
from predictor.exceptions import PredictorUserError
from predictor.features import build_grid, infer_step_seconds, make_features
from predictor.forecast import fit_forecasters
from predictor.model import ComponentModel
from predictor.telemetry import TelemetryStore
from predictor.telemetry.schema import COMPONENT, TIMESTAMP
from predictor.training import forecast_series, grid_steps, new_ensemble

logger = logging.getLogger(__name__)

# Components whose telemetry is read in one pass; bounds the memory of a training run.
READ_CHUNK_COMPONENTS = 500


@dataclass
class _PreparedComponent:
    """One component's grid summary, standardization and training sample."""

    component: str
    step_seconds: float
    metrics: list[str]
    feature_columns: list[str]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    train_rows: int
    center: np.ndarray
    scale: np.ndarray
    sample: pd.DataFrame
    threshold_series: dict[str, pd.Series]


def fit_shared_group(
    settings: Settings,
    telemetry: TelemetryStore,
    windows: Mapping[str, object],
    group: str | None,
    components: Sequence[str],
    minimum_points: int,
) -> dict[str, ComponentModel]:
    """Fit one ensemble for ``components`` of ``group`` and a model per component.

    Parameters
    ----------
    settings : Settings
    telemetry : TelemetryStore
    windows : mapping of str to TrainingWindow
        Training window per component; a component without one trains on all its rows.
    group : str or None
        The group name, None for components without a declared group.
    components : sequence of str
    minimum_points : int
        Grid points a component needs to be trained.

    Returns
    -------
    dict of str to ComponentModel
        The component models; all hold the same ensemble object.

    Raises
    ------
    PredictorUserError
        If a component has too little training data, or the components of the group
        do not have the same metrics.
    """
    model_config = settings.model
    names = sorted(components)
    rows_per_component = max(1, model_config.max_group_rows // max(len(names), 1))
    rng = np.random.default_rng(model_config.random_state)

    prepared: list[_PreparedComponent] = []
    for component, rows in _component_rows(telemetry, windows, names):
        item = _prepare(settings, component, rows, rows_per_component, rng, minimum_points)
        if prepared and item.metrics != prepared[0].metrics:
            first = prepared[0]
            missing = sorted(set(first.metrics) - set(item.metrics))
            extra = sorted(set(item.metrics) - set(first.metrics))
            where = f"group {group!r}" if group is not None else "the components without a group"
            raise PredictorUserError(
                f"component {component!r} of {where} lacks metrics {missing} and has "
                f"extra metrics {extra} compared with {first.component!r}; "
                'model.sharing = "group" needs the same metrics in every component of a '
                "group, so put these components in different groups"
            )
        prepared.append(item)
    if not prepared:
        return {}

    pooled = pd.concat([item.sample for item in prepared], ignore_index=True)
    ensemble = new_ensemble(model_config).fit(pooled)
    logger.info(
        "train: group %s: one shared ensemble fitted on %d rows from %d components",
        group,
        len(pooled),
        len(prepared),
    )

    forecasters = _fit_group_forecasters(settings, prepared)
    declared_group = {
        item.component: _declared_group(settings, item.component) for item in prepared
    }
    return {
        item.component: ComponentModel(
            component=item.component,
            group=declared_group[item.component],
            step_seconds=item.step_seconds,
            window_steps=model_config.window_steps,
            season_steps=grid_steps(settings.model.season_minutes, item.step_seconds),
            metrics=item.metrics,
            feature_columns=item.feature_columns,
            train_start=item.train_start,
            train_end=item.train_end,
            ensemble=ensemble,
            forecasters=forecasters.get(item.component, {}),
            train_rows=item.train_rows,
            smoothing_span=model_config.smoothing_span,
            feature_center=item.center,
            feature_scale=item.scale,
        )
        for item in prepared
    }


def _component_rows(
    telemetry: TelemetryStore, windows: Mapping[str, object], names: Sequence[str]
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield each component's training rows, reading many components per pass."""
    for start in range(0, len(names), READ_CHUNK_COMPONENTS):
        chunk = names[start : start + READ_CHUNK_COMPONENTS]
        bounds = [windows.get(name) for name in chunk]
        starts = [getattr(window, "start", None) for window in bounds]
        ends = [getattr(window, "end", None) for window in bounds]
        frame = telemetry.read(
            components=chunk,
            start=None if any(value is None for value in starts) else min(starts),
            end=None if any(value is None for value in ends) else max(ends),
        )
        by_component = dict(tuple(frame.groupby(COMPONENT, sort=False, observed=True)))
        for name, window in zip(chunk, bounds, strict=True):
            rows = by_component.get(name)
            if rows is None or rows.empty:
                logger.warning(
                    "train: component %s has no rows in its training window; skipped", name
                )
                continue
            start_at = getattr(window, "start", None)
            end_at = getattr(window, "end", None)
            if start_at is not None:
                rows = rows[rows[TIMESTAMP] >= start_at]
            if end_at is not None:
                rows = rows[rows[TIMESTAMP] <= end_at]
            yield name, rows


def _prepare(
    settings: Settings,
    component: str,
    rows: pd.DataFrame,
    sample_rows: int,
    rng: np.random.Generator,
    minimum_points: int,
) -> _PreparedComponent:
    model_config = settings.model
    step_seconds = model_config.step_seconds or infer_step_seconds(rows[TIMESTAMP])
    grid = build_grid(rows.drop(columns=[COMPONENT]), step_seconds)
    if len(grid) < minimum_points:
        raise PredictorUserError(
            f"component {component!r}: {len(grid)} grid points of training data, "
            f"expected at least {minimum_points}; ingest more history "
            "or lower model.step_seconds"
        )
    features = make_features(
        grid, model_config.window_steps, grid_steps(settings.model.season_minutes, step_seconds)
    )
    values = features.to_numpy(dtype="float64")
    floor = scale_floor(
        values,
        np.asarray(features.columns),
        min_scale=MIN_SCALE,
        min_relative_scale=MIN_RELATIVE_SCALE,
    )
    center, scale = robust_center_scale(values, min_scale=floor)
    chosen = np.sort(
        rng.choice(len(features), size=min(sample_rows, len(features)), replace=False)
    )
    sample = (features.iloc[chosen] - center) / scale
    thresholds = {
        threshold.metric: forecast_series(grid, component, threshold.metric)
        for threshold in settings.thresholds_for(component)
        if threshold.metric in grid.columns
    }
    return _PreparedComponent(
        component=component,
        step_seconds=float(step_seconds),
        metrics=list(grid.columns),
        feature_columns=list(features.columns),
        train_start=grid.index[0],
        train_end=grid.index[-1],
        train_rows=len(grid),
        center=center,
        scale=scale,
        sample=sample.reset_index(drop=True),
        threshold_series=thresholds,
    )


def _fit_group_forecasters(
    settings: Settings, prepared: Sequence[_PreparedComponent]
) -> dict[str, dict[str, object]]:
    """Fit every thresholded metric of the group in one vectorized pass."""
    keys: list[tuple[str, str]] = []
    series: list[pd.Series] = []
    values: list[float] = []
    directions: list[str] = []
    for item in prepared:
        for threshold in settings.thresholds_for(item.component):
            if threshold.metric not in item.threshold_series:
                continue
            keys.append((item.component, threshold.metric))
            series.append(item.threshold_series[threshold.metric])
            values.append(threshold.value)
            directions.append(threshold.direction)
    if not series:
        return {}
    step_seconds = prepared[0].step_seconds
    horizon_steps = grid_steps(settings.model.horizon_minutes, step_seconds) or 1
    fitted = fit_forecasters(
        series,
        thresholds=values,
        directions=directions,
        horizon_steps=horizon_steps,
        season_steps=grid_steps(settings.model.season_minutes, step_seconds),
    )
    result: dict[str, dict[str, object]] = {}
    for (component, metric), forecaster in zip(keys, fitted, strict=True):
        result.setdefault(component, {})[metric] = forecaster
    return result


def _declared_group(settings: Settings, component: str) -> str | None:
    declared = settings.component(component)
    return declared.group if declared else None

"""Training stage: fit the anomaly ensemble and the forecasters of each component."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictor.config import ModelConfig, Settings
from predictor.detect import AnomalyEnsemble
from predictor.exceptions import PredictorUserError
from predictor.features import build_grid, infer_step_seconds, make_features
from predictor.forecast import DegradationForecaster
from predictor.model import ComponentModel, FleetModel
from predictor.progress import progress
from predictor.telemetry import TelemetryStore

logger = logging.getLogger(__name__)

# A component needs this many grid points of training data for the ensemble's
# tail estimates to mean anything: with fewer, one training point is more than 1 %.
MIN_TRAIN_POINTS = 100


@dataclass(frozen=True)
class TrainingWindow:
    """The time range of a component's training data, both ends inclusive (UTC)."""

    start: pd.Timestamp | None
    end: pd.Timestamp | None


def grid_steps(minutes: float | None, step_seconds: float) -> int | None:
    """Convert a duration in minutes to a whole number of grid steps (at least 1)."""
    if minutes is None:
        return None
    return max(1, math.ceil(minutes * 60.0 / step_seconds))


def forecast_series(grid: pd.DataFrame, component: str, metric: str) -> pd.Series:
    """Return a metric's grid column named ``component/metric``.

    The forecaster puts its series name in warnings, so a fallback warning in a fleet
    names its component.
    """
    return grid[metric].rename(f"{component}/{metric}")


def new_ensemble(model_config: ModelConfig) -> AnomalyEnsemble:
    """Return an unfitted anomaly ensemble with the ``[model]`` settings."""
    return AnomalyEnsemble(
        members=model_config.members,
        fusion=model_config.fusion,
        member_weights=dict(model_config.member_weights),
        n_estimators=model_config.n_estimators,
        n_neighbors=model_config.n_neighbors,
        max_train_rows=model_config.max_train_rows,
        random_state=model_config.random_state,
    )


def fit_component(
    component: str,
    rows: pd.DataFrame,
    settings: Settings,
) -> ComponentModel:
    """Fit the models of one component on its training rows.

    Parameters
    ----------
    component : str
    rows : pandas.DataFrame
        Long telemetry rows of this component in its training window.
    settings : Settings

    Returns
    -------
    ComponentModel

    Raises
    ------
    PredictorUserError
        If the component has too little training data.
    """
    model_config = settings.model
    step_seconds = model_config.step_seconds or infer_step_seconds(rows["timestamp"])
    grid = build_grid(rows, step_seconds)
    if len(grid) < MIN_TRAIN_POINTS:
        raise PredictorUserError(
            f"component {component!r}: {len(grid)} grid points of training data, "
            f"expected at least {MIN_TRAIN_POINTS}; ingest more history "
            "or lower model.step_seconds"
        )

    season_steps = grid_steps(model_config.season_minutes, step_seconds)
    features = make_features(grid, model_config.window_steps, season_steps)
    ensemble = new_ensemble(model_config).fit(features)

    horizon_steps = grid_steps(model_config.horizon_minutes, step_seconds) or 1
    forecasters = {}
    for threshold in settings.thresholds_for(component):
        if threshold.metric not in grid.columns:
            logger.warning(
                "train: component %s has no metric %s for its threshold; no forecast for it",
                component,
                threshold.metric,
            )
            continue
        forecasters[threshold.metric] = DegradationForecaster(
            threshold=threshold.value,
            direction=threshold.direction,
            horizon_steps=horizon_steps,
            season_steps=season_steps,
        ).fit(forecast_series(grid, component, threshold.metric))

    declared = settings.component(component)
    return ComponentModel(
        component=component,
        group=declared.group if declared else None,
        step_seconds=float(step_seconds),
        window_steps=model_config.window_steps,
        season_steps=season_steps,
        metrics=list(grid.columns),
        feature_columns=list(features.columns),
        train_start=grid.index[0],
        train_end=grid.index[-1],
        ensemble=ensemble,
        forecasters=forecasters,
        train_rows=len(grid),
        smoothing_span=model_config.smoothing_span,
    )


def train_fleet(
    settings: Settings,
    telemetry: TelemetryStore,
    windows: Mapping[str, TrainingWindow],
    components: Iterable[str] | None = None,
) -> tuple[FleetModel, dict[str, float]]:
    """Fit every component's models on its training window.

    Parameters
    ----------
    settings : Settings
    telemetry : TelemetryStore
    windows : mapping of str to TrainingWindow
        Training window per component; a component without one trains on all its rows.
    components : iterable of str or None, default=None
        The components to train; None trains every component in the store.

    Returns
    -------
    fleet : FleetModel
    metrics : dict
        Training metrics for MLflow: component count, grid points, seconds, and the
        number of ensemble members dropped as degenerate.
    """
    names = sorted(components) if components is not None else telemetry.components()
    if not names:
        raise PredictorUserError(f"no telemetry in {telemetry.root}; run `predictor ingest` first")

    started = time.perf_counter()
    fleet = FleetModel(params=_model_params(settings))
    if settings.model.sharing == "group":
        fleet.components.update(_fit_shared(settings, telemetry, windows, names))
    else:
        fleet.components.update(_fit_each(settings, telemetry, windows, names))
    ensembles = {id(model.ensemble): model.ensemble for model in fleet.components.values()}
    dropped_members = sum(len(ensemble.dropped_members_) for ensemble in ensembles.values())

    seconds = time.perf_counter() - started
    train_points = [model.train_rows for model in fleet.components.values()]
    metrics = {
        "components": float(len(fleet.components)),
        "train_grid_points_total": float(np.sum(train_points)) if train_points else 0.0,
        "train_seconds": seconds,
        "dropped_members": float(dropped_members),
        "forecasters": float(sum(len(m.forecasters) for m in fleet.components.values())),
    }
    logger.info("train: fitted %d components in %.1f s", len(fleet.components), seconds)
    return fleet, metrics


def _fit_each(
    settings: Settings,
    telemetry: TelemetryStore,
    windows: Mapping[str, TrainingWindow],
    names: list[str],
) -> dict[str, ComponentModel]:
    """Fit one ensemble per component."""
    models = {}
    for component in progress(names, desc="training", unit="component"):
        window = windows.get(component, TrainingWindow(None, None))
        rows = telemetry.read(components=[component], start=window.start, end=window.end)
        if rows.empty:
            logger.warning(
                "train: component %s has no rows in its training window; skipped", component
            )
            continue
        model = fit_component(component, rows, settings)
        models[component] = model
        logger.info(
            "train: component %s fitted on %d grid points (%s to %s), %d metrics, %d forecasters",
            component,
            model.train_rows,
            model.train_start,
            model.train_end,
            len(model.metrics),
            len(model.forecasters),
        )
    return models


def _fit_shared(
    settings: Settings,
    telemetry: TelemetryStore,
    windows: Mapping[str, TrainingWindow],
    names: list[str],
) -> dict[str, ComponentModel]:
    """Fit one ensemble per declared group (``[model] sharing = "group"``)."""
    # Imported here because the shared path reuses this module's grid_steps.
    from predictor.shared_training import fit_shared_group

    by_group: dict[str | None, list[str]] = {}
    for component in names:
        declared = settings.component(component)
        by_group.setdefault(declared.group if declared else None, []).append(component)
    models = {}
    for group, members in by_group.items():
        models.update(
            fit_shared_group(settings, telemetry, windows, group, members, MIN_TRAIN_POINTS)
        )
    return models


def _model_params(settings: Settings) -> dict[str, object]:
    model = settings.model
    return {
        "members": ",".join(model.members),
        "step_seconds": model.step_seconds,
        "window_steps": model.window_steps,
        "smoothing_span": model.smoothing_span,
        "season_minutes": model.season_minutes,
        "horizon_minutes": model.horizon_minutes,
        "max_train_rows": model.max_train_rows,
        "n_estimators": model.n_estimators,
        "n_neighbors": model.n_neighbors,
        "random_state": model.random_state,
        "sharing": model.sharing,
        "thresholds": len(settings.thresholds),
    }

"""Quality gate: train a challenger, backtest it against the champion, promote or reject.

Holdout. For each component the holdout is the most recent part of its training
window: the last ``[lifecycle] holdout_days`` before the training cut-off, or the last
``holdout_fraction`` of the window's time span. The challenger is fitted on the window
before the holdout, so the holdout is out of sample for it, and nothing after the
training cut-off is read. Champion and challenger score the same holdout grid points;
only points where both give a score count.

Metric. A holdout row is positive when a labeled failure starts or is ongoing within
the horizon after it, and rows whose horizon ends after the cut-off are left out. When
the holdout has at least one positive row, the gate compares the AUC-PR of the anomaly
score. The challenger passes when its AUC-PR is at least the champion's minus
``tolerance``.
Otherwise the gate compares the alarm rate, the share of holdout points whose anomaly
score reaches ``[levels] elevated``: holdout telemetry is mostly normal operation, so
a better model raises fewer alarms there, and the challenger passes when its rate is
at most the champion's plus ``tolerance``.

The first model of a registered model has no champion to compare with and is promoted
directly, as is a challenger whose champion cannot be loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.detect.scale import smoothing_memory_rows
from predictor.evaluate.metrics import auc_pr
from predictor.features import build_grid, make_features
from predictor.lifecycle import registry
from predictor.model import ComponentModel, FleetModel
from predictor.risk_calibration import failure_targets
from predictor.scoring import smoothed_anomaly
from predictor.telemetry import LabeledFailure, TelemetryStore
from predictor.training import TrainingWindow, train_fleet

logger = logging.getLogger(__name__)

LABELED_METRIC = "auc_pr"
LABEL_FREE_METRIC = "alarm_rate"


@dataclass
class GateResult:
    """Comparison of a challenger with the champion on the holdout.

    Attributes
    ----------
    passed : bool
    metric : str
        ``"auc_pr"`` (higher is better) or ``"alarm_rate"`` (lower is better).
    challenger, champion : dict of str to float
        The measured metrics of each model: ``alarm_rate``, ``rows`` and, when labeled
        rows exist, ``auc_pr`` and ``positives``.
    reason : str
        One sentence with both values and the tolerance.
    """

    passed: bool
    metric: str
    challenger: dict[str, float]
    champion: dict[str, float]
    reason: str


@dataclass
class GroupTraining:
    """Outcome of training one registered model's components."""

    name: str
    version: str
    run_id: str
    components: list[str]
    decision: str
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate: GateResult | None = None

    @property
    def label(self) -> str:
        """``"<name>/<version>"``."""
        return f"{self.name}/{self.version}"


def holdout_windows(
    telemetry: TelemetryStore,
    windows: Mapping[str, TrainingWindow],
    components: Sequence[str],
    settings: Settings,
) -> dict[str, TrainingWindow]:
    """Return each component's holdout: the most recent part of its training window.

    Components with no rows in their window are left out.
    """
    holdouts = {}
    lifecycle = settings.lifecycle
    for component in components:
        window = windows.get(component, TrainingWindow(None, None))
        rows = telemetry.read(components=[component], start=window.start, end=window.end)
        if rows.empty:
            continue
        first, last = rows["timestamp"].min(), rows["timestamp"].max()
        if lifecycle.holdout_days is not None:
            start = last - pd.Timedelta(days=lifecycle.holdout_days)
        else:
            start = last - (last - first) * lifecycle.holdout_fraction
        holdouts[component] = TrainingWindow(max(start, first), last)
    return holdouts


def holdout_anomaly(
    model: ComponentModel, telemetry: TelemetryStore, window: TrainingWindow
) -> pd.Series:
    """Return the smoothed anomaly score of ``model`` on every grid point of ``window``.

    The score is computed as scoring computes it: trailing features and the weighted
    trailing mean of the surprise read the rows before the window's start.
    """
    assert window.start is not None
    assert window.end is not None
    smoothing_rows = smoothing_memory_rows(model.smoothing_span)
    lookback = model.step * (model.window_steps + (model.season_steps or 0) + 2 + smoothing_rows)
    start = window.start - lookback
    rows = telemetry.read(components=[model.component], start=start, end=window.end)
    grid = build_grid(rows, model.step_seconds, start=start, end=window.end)
    grid = grid.reindex(columns=model.metrics)
    features = make_features(grid, model.window_steps, model.season_steps)
    features = features.reindex(columns=model.feature_columns)
    times = grid.index[(grid.index >= window.start) & (grid.index <= window.end)]
    if len(times) == 0:
        return pd.Series(dtype="float64")
    anomaly, _ = smoothed_anomaly(model, features, times, smoothing_rows, None)
    return pd.Series(anomaly, index=times)


def _metrics(scores: np.ndarray, target: np.ndarray | None, alarm_level: float) -> dict:
    metrics = {"rows": float(len(scores)), "alarm_rate": float(np.mean(scores >= alarm_level))}
    if target is not None:
        metrics["positives"] = float(target.sum())
        metrics[LABELED_METRIC] = float(auc_pr(target, scores))
    return metrics


def compare(
    settings: Settings,
    challenger: FleetModel,
    champion: FleetModel,
    telemetry: TelemetryStore,
    holdouts: Mapping[str, TrainingWindow],
    failures: Mapping[str, Sequence[LabeledFailure]],
) -> GateResult:
    """Score both models on the same holdout points and apply the gate rule.

    Raises
    ------
    ValueError
        If no holdout point has a score from both models.
    """
    horizon = pd.Timedelta(minutes=settings.model.horizon_minutes)
    new_scores, old_scores, targets, labeled = [], [], [], []
    for component, window in sorted(holdouts.items()):
        if component not in challenger.components or component not in champion.components:
            continue
        new = holdout_anomaly(challenger.components[component], telemetry, window)
        old = holdout_anomaly(champion.components[component], telemetry, window)
        both = pd.concat({"new": new, "old": old}, axis=1).dropna()
        if both.empty:
            continue
        new_scores.append(both["new"].to_numpy())
        old_scores.append(both["old"].to_numpy())
        # A row's target is known only when its horizon ends by the cut-off, and only
        # failures up to the cut-off are read.
        known = [f for f in failures.get(component, ()) if f.failure_time <= window.end]
        target = failure_targets(both.index, known, horizon)
        target[np.asarray(both.index + horizon > window.end)] = -1
        targets.append(target)
        labeled.append(component in failures)
    if not new_scores:
        raise ValueError(
            "gate: no holdout grid point has a score from both the challenger and the champion"
        )
    new_all, old_all, target_all = map(np.concatenate, (new_scores, old_scores, targets))
    known_rows = target_all >= 0
    use_labels = any(labeled) and target_all[known_rows].sum() > 0
    alarm = settings.levels.elevated
    tolerance = settings.lifecycle.tolerance
    if use_labels:
        y = target_all[known_rows]
        new_m = _metrics(new_all[known_rows], y, alarm)
        old_m = _metrics(old_all[known_rows], y, alarm)
        passed = new_m[LABELED_METRIC] >= old_m[LABELED_METRIC] - tolerance
        metric, relation = LABELED_METRIC, "at least" if passed else "below"
        bound = old_m[LABELED_METRIC] - tolerance
    else:
        new_m = _metrics(new_all, None, alarm)
        old_m = _metrics(old_all, None, alarm)
        passed = new_m[LABEL_FREE_METRIC] <= old_m[LABEL_FREE_METRIC] + tolerance
        metric, relation = LABEL_FREE_METRIC, "at most" if passed else "above"
        bound = old_m[LABEL_FREE_METRIC] + tolerance
    reason = (
        f"challenger {metric} {new_m[metric]:.4f} is {relation} {bound:.4f} (champion "
        f"{old_m[metric]:.4f}, tolerance {tolerance:g}) on {int(new_m['rows'])} holdout points"
    )
    return GateResult(passed, metric, new_m, old_m, reason)


def train_group(
    settings: Settings,
    telemetry: TelemetryStore,
    windows: Mapping[str, TrainingWindow],
    name: str,
    components: Sequence[str],
    failures: Mapping[str, Sequence[LabeledFailure]],
    *,
    gate: bool = True,
) -> GroupTraining | None:
    """Train one registered model's components, register them and run the gate.

    Returns
    -------
    GroupTraining or None
        None when no component had training data.
    """
    champion = registry.champion_version(settings, name)
    holdouts: dict[str, TrainingWindow] = {}
    fit_windows = dict(windows)
    if gate and champion is not None:
        holdouts = holdout_windows(telemetry, windows, components, settings)
        for component, holdout in holdouts.items():
            assert holdout.start is not None
            start = windows.get(component, TrainingWindow(None, None)).start
            fit_windows[component] = TrainingWindow(start, holdout.start - pd.Timedelta(1, "ns"))

    fleet, metrics = train_fleet(settings, telemetry, fit_windows, components)
    if not fleet.components:
        return None
    registered = registry.log_group_model(settings, name, fleet, fleet.params, metrics)
    registry.set_challenger(settings, registered)
    result = GroupTraining(
        name, registered.version, registered.run_id, sorted(fleet.components), "", "", metrics
    )

    if champion is None or not gate:
        reason = "first model of this registered model" if champion is None else "gate off"
        registry.promote(settings, name, registered.version, reason)
        result.decision, result.reason = "promoted", reason
        return result

    try:
        champion_fleet = registry.load_version(settings, name, champion)
    except Exception as error:  # the gate must not keep a broken champion serving
        reason = f"champion {name}/{champion} could not be loaded ({error}); promoted without gate"
        registry.promote(settings, name, registered.version, reason)
        result.decision, result.reason = "promoted", reason
        return result

    outcome = compare(settings, fleet, champion_fleet, telemetry, holdouts, failures)
    _log_gate_metrics(settings, registered.run_id, outcome)
    result.gate, result.reason = outcome, outcome.reason
    if outcome.passed:
        registry.promote(settings, name, registered.version, outcome.reason)
        result.decision = "promoted"
    else:
        registry.reject(settings, registered, outcome.reason)
        result.decision = "rejected"
    return result


def _log_gate_metrics(settings: Settings, run_id: str, outcome: GateResult) -> None:
    client = registry.client_for(settings)
    for role, values in (("challenger", outcome.challenger), ("champion", outcome.champion)):
        for key, value in values.items():
            client.log_metric(run_id, f"{registry.GATE_METRIC_PREFIX}{role}.{key}", value)
    client.set_tag(run_id, "predictor.gate.metric", outcome.metric)
    client.set_tag(run_id, "predictor.gate.reason", outcome.reason[:5000])
    if outcome.passed:
        client.set_tag(run_id, "predictor.gate", "promoted")

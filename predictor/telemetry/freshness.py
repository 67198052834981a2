"""Telemetry freshness: which scoring times lack recent rows, and why.

A scoring time is stale when the component's newest row, or the newest row of one of its
key metrics, is older than the allowed age. Scoring marks such times ``unknown`` and
stores the reason, because missing telemetry must never read as health.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.telemetry.schema import METRIC, TIMESTAMP

STALE_DRIVER_KIND = "stale"
# The driver metric of a score whose whole telemetry is missing.
ALL_METRICS = "*"


def key_metrics(settings: Settings, component: str, known_metrics: Sequence[str]) -> list[str]:
    """Return the metrics whose absence makes ``component`` unknown.

    Parameters
    ----------
    settings : Settings
        The declared components and thresholds.
    component : str
        The component name.
    known_metrics : sequence of str
        The metrics the component's model was trained on.

    Returns
    -------
    list of str
        ``key_metrics`` of the declared component when set; otherwise the metrics with a
        threshold for the component that the model was trained on, sorted.
    """
    declared = settings.component(component)
    if declared is not None and declared.key_metrics is not None:
        return list(declared.key_metrics)
    thresholded = {threshold.metric for threshold in settings.thresholds_for(component)}
    return sorted(thresholded & set(known_metrics))


def stale_reasons(
    rows: pd.DataFrame,
    times: pd.DatetimeIndex,
    max_age: pd.Timedelta,
    required_metrics: Sequence[str] = (),
) -> list[str | None]:
    """Return, per scoring time, why its telemetry is stale, or None when it is fresh.

    Parameters
    ----------
    rows : pandas.DataFrame
        The component's long rows (``timestamp``, ``metric``) up to the last time.
    times : pandas.DatetimeIndex
        Scoring times (UTC).
    max_age : pandas.Timedelta
        The oldest a newest row may be at a scoring time.
    required_metrics : sequence of str, default=()
        Key metrics that each need a row within ``max_age``.

    Returns
    -------
    list of str or None
        A reason such as ``"no telemetry for more than 15 minutes"`` or ``"key metric
        'gpu_temp' has no row for more than 15 minutes"``; None for fresh times.

    Examples
    --------
    >>> rows = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01T00:00Z"] * 2),
    ...                      "metric": ["temp", "power"]})
    >>> times = pd.date_range("2026-01-01T00:05Z", periods=2, freq="10min")
    >>> stale_reasons(rows, times, pd.Timedelta(minutes=10))
    [None, 'no telemetry for more than 10 minutes']
    """
    age_text = _age_text(max_age)
    reasons: list[str | None] = [None] * len(times)
    checks: list[tuple[str | None, np.ndarray]] = [
        (None, _age_exceeded(rows[TIMESTAMP], times, max_age))
    ]
    for metric in required_metrics:
        metric_rows = rows.loc[rows[METRIC] == metric, TIMESTAMP]
        checks.append((metric, _age_exceeded(metric_rows, times, max_age)))

    for missing_metric, exceeded in checks:
        if missing_metric is None:
            reason = f"no telemetry for more than {age_text}"
        else:
            reason = f"key metric {missing_metric!r} has no row for more than {age_text}"
        for index in np.flatnonzero(exceeded):
            if reasons[index] is None:
                reasons[index] = reason
    return reasons


def stale_drivers(reason: str) -> list[dict]:
    """Return the drivers field of an ``unknown`` score: the reason it is unknown.

    The entry keeps the keys of every driver (``metric``, ``contribution``, ``kind``) so
    that readers of the drivers need no special case. ``metric`` is the missing key
    metric, or ``"*"`` when all telemetry is missing, and ``contribution`` is 1.
    """
    match = re.match(r"key metric '(.+)' has no row", reason)
    metric = match.group(1) if match else ALL_METRICS
    return [{"metric": metric, "contribution": 1.0, "kind": STALE_DRIVER_KIND, "reason": reason}]


def _age_exceeded(stamps: pd.Series, times: pd.DatetimeIndex, max_age: pd.Timedelta) -> np.ndarray:
    """Flag times whose newest row in ``stamps`` at or before them is older than max_age."""
    observed = np.sort(stamps.to_numpy(dtype="datetime64[ns]"))
    grid = times.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    positions = np.searchsorted(observed, grid, side="right") - 1
    exceeded = np.ones(len(grid), dtype=bool)
    seen = positions >= 0
    age = grid[seen] - observed[positions[seen]]
    exceeded[seen] = age > max_age.to_timedelta64()
    return exceeded


def _age_text(age: pd.Timedelta) -> str:
    minutes = age.total_seconds() / 60
    if minutes >= 1 and minutes == int(minutes):
        return f"{int(minutes)} minutes"
    return f"{age.total_seconds():g} seconds"

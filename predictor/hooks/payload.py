"""Hook events: a component entering a level, and the JSON payload sent for it.

The JSON schema of the payload is in :mod:`predictor.hooks.schema` and in
``docs/hook-payload.schema.json``. Version ``"1"`` (every time is ISO 8601 in UTC)::

    {
      "schema_version": "1",
      "event": "level_entered",                # or fail_back, telemetry_stale, budget_exceeded
      "idempotency_key": "gpu-1:high->critical:2024-05-01T12:00:00+00:00",
      "component": "gpu-1",
      "group": "pool-a",                       # or null
      "level": "critical",
      "previous_level": "high",                # or null for the first score
      "risk": 0.91,                            # or null when unknown
      "raw_risk": 0.97,                        # fused risk before calibration, or null
      "calibrated": true,                      # whether risk is a calibrated probability
      "scored_at": "2024-05-01T12:00:00+00:00",
      "horizon_minutes": 60.0,
      "time_to_threshold_seconds": 1200.0,     # or null
      "drivers": [{"metric": "gpu_temp_celsius", "contribution": 0.7}],
      "model_version": "3",
      "budget": null                           # details of a budget_exceeded event
    }
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SCHEMA_VERSION = "1"

#: Kinds of hook events. ``level_entered`` calls failover hooks; the other three are
#: raised by the guardrails (:mod:`predictor.hooks.guardrails`).
#: ``test`` is the marked payload that ``predictor hooks test`` sends.
EVENT_TYPES = ("level_entered", "fail_back", "telemetry_stale", "budget_exceeded", "test")


def _utc_timestamp(value: Any, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT or stamp.tzinfo is None:
        raise ValueError(
            f"{name}: expected a tz-aware timestamp, got {value!r}. "
            "Pass a UTC time such as pandas.Timestamp('2024-01-01', tz='UTC')"
        )
    return stamp.tz_convert("UTC")


def _finite_or_none(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """Return ``value`` with numpy scalars turned into Python ones and NaN into None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class HookEvent:
    """A component entering a level at one scoring time.

    Parameters
    ----------
    component : str
        Component whose level changed.
    group : str or None
        Failure domain of the component (pool, rack, region).
    level : str
        Level entered.
    previous_level : str or None
        Level before the change; None for the first score of a component.
    risk : float or None
        Failure risk in [0, 1] at ``scored_at``; None or NaN when unknown.
    scored_at : datetime-like
        Scoring time; must be tz-aware and is stored as a UTC ``pandas.Timestamp``.
    horizon_minutes : float
        Horizon over which ``risk`` is the probability of a failure.
    drivers : list of dict, default=[]
        Metrics that drive the score, as ``{"metric": ..., "contribution": ...}``.
    time_to_threshold_seconds : float or None, default=None
        Expected time until a metric crosses its threshold, when a forecast predicts a crossing.
    model_version : str, default=""
        Model version that produced the score.
    calibrated : bool, default=False
        Whether ``risk`` is a calibrated probability of a failure within the horizon,
        learned from labeled failures. When False, ``risk`` is the uncalibrated fused score.
    raw_risk : float or None, default=None
        The fused risk before calibration; None means it equals ``risk``.
    event : str, default="level_entered"
        One of :data:`EVENT_TYPES`. For ``budget_exceeded``, ``component`` names the
        budget scope (``group:NAME`` or ``fleet``).
    budget : mapping or None, default=None
        For ``budget_exceeded``: the scope, the limit that was reached and the held
        components.

    Raises
    ------
    ValueError
        If ``scored_at`` is naive or missing.

    Examples
    --------
    >>> import pandas as pd
    >>> event = HookEvent(
    ...     component="gpu-1", group=None, level="critical", previous_level="high",
    ...     risk=0.9, scored_at=pd.Timestamp("2024-05-01 14:00", tz="Europe/Berlin"),
    ...     horizon_minutes=60,
    ... )
    >>> event.idempotency_key
    'gpu-1:high->critical:2024-05-01T12:00:00+00:00'
    >>> event.to_payload()["scored_at"]
    '2024-05-01T12:00:00+00:00'
    """

    component: str
    group: str | None
    level: str
    previous_level: str | None
    risk: float | None
    scored_at: pd.Timestamp
    horizon_minutes: float
    drivers: list[dict[str, Any]] = field(default_factory=list)
    time_to_threshold_seconds: float | None = None
    model_version: str = ""
    calibrated: bool = False
    raw_risk: float | None = None
    event: str = "level_entered"
    budget: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENT_TYPES:
            raise ValueError(f"event: expected one of {list(EVENT_TYPES)}, got {self.event!r}")
        # The dataclass is frozen, so normalised values are set through object.__setattr__.
        object.__setattr__(self, "scored_at", _utc_timestamp(self.scored_at, "scored_at"))
        object.__setattr__(self, "drivers", [dict(item) for item in self.drivers or []])

    @property
    def idempotency_key(self) -> str:
        """Key that identifies this event: component, transition and scoring time.

        Events other than ``level_entered`` start with the event type, so a fail-back
        and a level entry of the same transition have different keys.
        """
        key = f"{self.component}:{self.previous_level}->{self.level}:{self.scored_at.isoformat()}"
        return key if self.event == "level_entered" else f"{self.event}:{key}"

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON-serialisable payload of this event (schema version ``"1"``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "event": self.event,
            "idempotency_key": self.idempotency_key,
            "component": self.component,
            "group": self.group,
            "level": self.level,
            "previous_level": self.previous_level,
            "risk": _finite_or_none(self.risk),
            "raw_risk": _finite_or_none(self.risk if self.raw_risk is None else self.raw_risk),
            "calibrated": bool(self.calibrated),
            "scored_at": self.scored_at.isoformat(),
            "horizon_minutes": float(self.horizon_minutes),
            "time_to_threshold_seconds": _finite_or_none(self.time_to_threshold_seconds),
            "drivers": _plain(self.drivers),
            "model_version": str(self.model_version),
            "budget": None if self.budget is None else _plain(dict(self.budget)),
        }


def level_entries(scores: pd.DataFrame, *, horizon_minutes: float) -> list[HookEvent]:
    """Return one event per score row whose level differs from its previous level.

    Parameters
    ----------
    scores : pandas.DataFrame
        Scores as written to the risk store: ``component``, ``scored_at``, ``risk``,
        ``level``, ``previous_level``, ``model_version`` and optionally ``group_name``
        (or ``group``), ``drivers``, ``time_to_threshold_seconds``, ``calibrated`` and
        ``raw_risk``.
    horizon_minutes : float
        Risk horizon reported in every event.

    Returns
    -------
    list of HookEvent
        Events ordered by scoring time, then component.

    Raises
    ------
    ValueError
        If a required column is missing.
    """
    required = ("component", "scored_at", "risk", "level", "previous_level", "model_version")
    missing = [column for column in required if column not in scores.columns]
    if missing:
        raise ValueError(
            f"scores frame: missing columns {missing} needed for hook events; "
            f"got {list(scores.columns)}"
        )
    group_column = "group_name" if "group_name" in scores.columns else "group"

    changed = scores[scores["level"] != scores["previous_level"].fillna("")]
    changed = changed.sort_values(["scored_at", "component"], kind="stable")
    events = []
    for row in changed.to_dict("records"):
        group = row.get(group_column)
        previous = row["previous_level"]
        drivers = row.get("drivers")
        events.append(
            HookEvent(
                component=str(row["component"]),
                group=None if group is None or pd.isna(group) else str(group),
                level=str(row["level"]),
                previous_level=None if previous is None or pd.isna(previous) else str(previous),
                risk=_finite_or_none(row["risk"]),
                scored_at=row["scored_at"],
                horizon_minutes=horizon_minutes,
                drivers=list(drivers) if isinstance(drivers, list | tuple) else [],
                time_to_threshold_seconds=_finite_or_none(row.get("time_to_threshold_seconds")),
                model_version=str(row["model_version"]),
                calibrated=bool(row.get("calibrated", False)),
                raw_risk=_finite_or_none(row.get("raw_risk")),
            )
        )
    return events

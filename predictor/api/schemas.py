"""Response bodies of the risk-score API as pydantic models; they define the OpenAPI schemas."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["normal", "elevated", "high", "critical", "unknown"]


class Driver(BaseModel):
    """One metric that drives a score and its share of the score."""

    model_config = ConfigDict(extra="allow")

    metric: str
    contribution: float = Field(description="Share of the anomaly, or crossing probability.")
    kind: Literal["anomaly", "forecast", "stale"] | None = Field(
        default=None,
        description=(
            "Whether the anomaly ensemble or a forecast named the metric, or `stale` when "
            "the metric (`*`: all telemetry) is missing or too old."
        ),
    )
    reason: str | None = Field(
        default=None, description="Why the telemetry counts as stale, for `stale` drivers."
    )
    threshold: float | None = Field(
        default=None, description="The metric's threshold, for forecast drivers."
    )


class RiskScore(BaseModel):
    """The failure-risk of one component at one scoring time."""

    component: str
    group: str | None = Field(description="Failure domain of the component, if configured.")
    scored_at: dt.datetime = Field(description="Grid time of the score, UTC.")
    risk: float | None = Field(
        description="Failure-risk in [0, 1]; a probability when `calibrated` is true."
    )
    raw_risk: float | None = Field(description="Fused risk before calibration.")
    calibrated: bool = Field(
        description="True when `risk` is a calibrated probability of failure within the horizon."
    )
    level: Level
    stale: bool = Field(description="True when the telemetry was missing or stale.")
    anomaly_score: float | None
    forecast_probability: float | None = Field(
        description="Largest probability of a thresholded metric crossing within the horizon."
    )
    time_to_threshold_seconds: float | None = Field(
        description="Expected time until the first threshold crossing, if one is forecast."
    )
    drivers: list[Driver]
    model_version: str = Field(description="Registered model version that produced the score.")
    model_role: str | None = Field(
        default=None,
        description=(
            "Which model produced the score: `champion`, or a fallback "
            "(`previous_champion`, `statistical_fallback`) when the champion failed."
        ),
    )


class RiskPage(BaseModel):
    """A page of latest scores, ordered by component."""

    items: list[RiskScore]
    total: int = Field(description="Number of components that match the filters.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page, or null on the last.")


class RiskHistory(BaseModel):
    """Scores of one component, newest first."""

    component: str
    items: list[RiskScore]


class Component(BaseModel):
    """A known component: configured, scored or with stored telemetry."""

    name: str
    group: str | None
    configured: bool = Field(description="True when the component is declared in the config.")
    last_scored_at: dt.datetime | None
    last_telemetry_at: dt.datetime | None = Field(
        description="Newest stored telemetry timestamp, or null when none is stored."
    )


class ComponentPage(BaseModel):
    """A page of known components, ordered by name."""

    items: list[Component]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class Health(BaseModel):
    """Liveness of the process."""

    status: Literal["ok"]


class Check(BaseModel):
    """Outcome of one readiness check."""

    name: Literal["store", "freshness", "champion"]
    ok: bool
    detail: str


class Readiness(BaseModel):
    """Outcome of the readiness checks; `ready` is true only when every check passed."""

    ready: bool
    checks: list[Check]


class ErrorDetail(BaseModel):
    """One problem with a request."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="Where the problem is, e.g. ['query', 'limit'].")
    msg: str
    type: str


class Error(BaseModel):
    """Body of every 4xx response."""

    detail: str | list[ErrorDetail]

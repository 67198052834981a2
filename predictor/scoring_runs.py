"""Outcomes of scoring runs in the risk database, for the API's Prometheus metrics.

``predictor score`` records one row per run: when it started and finished, how many
components it scored, which failed, and the error when the whole run raised. The table
lives beside ``scores`` in the same database but has its own metadata, so the risk
store's schema is unchanged and the table is created on the first recorded run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from predictor.store import UTCDateTime

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

scoring_runs_table = sa.Table(
    "scoring_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=False),
    sa.Column("duration_seconds", sa.Float, nullable=False),
    sa.Column("until", UTCDateTime(), nullable=True),
    sa.Column("components_scored", sa.Integer, nullable=False),
    sa.Column("scores_written", sa.Integer, nullable=False),
    sa.Column("components_failed", sa.Integer, nullable=False),
    # JSON object of component name to error message.
    sa.Column("failures", sa.Text, nullable=False),
    # The error that stopped the whole run, or NULL when it finished.
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_scoring_runs_finished_at", "finished_at"),
)


@dataclass(frozen=True)
class RunSummary:
    """Figures over the recorded scoring runs, as the metrics expose them."""

    runs: int
    failed_runs: int
    failed_components_total: int
    last_duration_seconds: float
    last_finished_at: dt.datetime
    last_components_failed: int
    last_failed: bool


def record_scoring_run(
    engine: Engine,
    *,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    until: dt.datetime | None = None,
    components_scored: int = 0,
    scores_written: int = 0,
    failures: Mapping[str, str] | None = None,
    error: str | None = None,
) -> None:
    """Insert one scoring run; create the table first when it is missing.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Engine of the risk store.
    started_at, finished_at : datetime
        Wall-clock start and end of the run, tz-aware.
    until : datetime or None, default=None
        Data time the run scored up to.
    components_scored, scores_written : int, default=0
        Counts from the run's result.
    failures : mapping or None, default=None
        Component name to error message, for components whose scoring failed.
    error : str or None, default=None
        The error that stopped the whole run.
    """
    failures = dict(failures or {})
    metadata.create_all(engine)
    row: dict[str, Any] = {
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_seconds": (finished_at - started_at).total_seconds(),
        "until": until,
        "components_scored": components_scored,
        "scores_written": scores_written,
        "components_failed": len(failures),
        "failures": json.dumps(failures, sort_keys=True),
        "error": error,
    }
    with engine.begin() as connection:
        connection.execute(sa.insert(scoring_runs_table), row)
    logger.debug(
        "scoring run recorded: %.1f s, %d components, %d failed, error %r",
        row["duration_seconds"],
        components_scored,
        len(failures),
        error,
    )


def summarize_scoring_runs(engine: Engine) -> RunSummary | None:
    """Return figures over the recorded runs, or None when no run is recorded."""
    if not sa.inspect(engine).has_table(scoring_runs_table.name):
        return None
    runs = scoring_runs_table.c
    totals = sa.select(
        sa.func.count(),
        sa.func.count(runs.error),
        sa.func.coalesce(sa.func.sum(runs.components_failed), 0),
    )
    last = (
        sa.select(runs.duration_seconds, runs.finished_at, runs.components_failed, runs.error)
        .order_by(runs.finished_at.desc(), runs.id.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        count, failed_runs, failed_components = connection.execute(totals).one()
        newest = connection.execute(last).first()
    if newest is None:
        return None
    return RunSummary(
        runs=int(count),
        failed_runs=int(failed_runs),
        failed_components_total=int(failed_components),
        last_duration_seconds=float(newest.duration_seconds),
        last_finished_at=newest.finished_at,
        last_components_failed=int(newest.components_failed),
        last_failed=newest.error is not None,
    )

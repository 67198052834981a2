"""Read queries of the risk-score API against the risk store's ``scores`` table.

The queries are SQLAlchemy Core on the tables that :mod:`predictor.store` defines, and
they return plain dicts instead of pandas frames, because the API serves one small
request at a time and building a frame costs more than the query itself.

Listing the latest score of every component uses a loose index scan: a recursive query
that jumps from one component to the next through the ``(component, scored_at)`` index.
A ``GROUP BY component`` would read every stored score instead, and a store keeps one
row per component and grid step. The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from predictor.store import scores_table

logger = logging.getLogger(__name__)

scores = scores_table

#: Columns that the API publishes for one score, in response order.
SCORE_FIELDS = (
    "component",
    "group_name",
    "scored_at",
    "risk",
    "raw_risk",
    "level",
    "anomaly_score",
    "forecast_probability",
    "time_to_threshold_seconds",
    "drivers",
    "model_version",
    "model_role",
    "calibrated",
    "stale",
)
_SCORE_COLUMNS = [scores.c[name] for name in SCORE_FIELDS]


class StoreUnavailableError(RuntimeError):
    """The risk store could not be opened or queried."""


#: Errors that mean the store cannot be read now, as opposed to a bug in a query.
STORE_ERRORS = (SQLAlchemyError, StoreUnavailableError)


@dataclass(frozen=True)
class ScorePage:
    """One page of latest scores and the number of scores that match the filters."""

    items: list[dict[str, Any]]
    total: int


def _component_names() -> sa.CTE:
    """Return a recursive CTE ``component_names(name)`` of the distinct components.

    Each step seeks the next larger name in the index, so the cost grows with the number
    of components and not with the number of stored scores.
    """
    seek = scores.alias("seek")
    first = sa.select(sa.func.min(seek.c.component).label("name"))
    names = first.cte("component_names", recursive=True)
    following = (
        sa.select(
            sa.select(sa.func.min(seek.c.component))
            .where(seek.c.component > names.c.name)
            .correlate(names)
            .scalar_subquery()
        )
        .select_from(names)
        .where(names.c.name.is_not(None))
    )
    return names.union_all(following)


def _newest_of(names: sa.CTE) -> sa.ScalarSelect[Any]:
    """Return the newest ``scored_at`` of the component ``names.name``, by one index seek."""
    newest = scores.alias("newest")
    return (
        sa.select(sa.func.max(newest.c.scored_at))
        .where(newest.c.component == names.c.name)
        .correlate(names)
        .scalar_subquery()
    )


def _latest_rows(names: sa.CTE) -> sa.Select[Any]:
    """Return a query of the latest score of every component in ``names``."""
    return (
        sa.select(*_SCORE_COLUMNS)
        .select_from(names)
        .join(
            scores,
            sa.and_(
                scores.c.component == names.c.name,
                scores.c.scored_at == _newest_of(names),
            ),
        )
    )


def _decode(row: sa.RowMapping) -> dict[str, Any]:
    """Return a score row as a dict with ``drivers`` decoded from JSON."""
    values = dict(row)
    values["drivers"] = json.loads(values["drivers"]) if values["drivers"] else []
    return values


class RiskReader:
    """Read queries of the API on an open SQLAlchemy engine.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Engine of the risk store, usually ``RiskStore.engine``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._latest_query = (
            sa.select(*_SCORE_COLUMNS)
            .where(scores.c.component == sa.bindparam("component"))
            .order_by(scores.c.scored_at.desc())
            .limit(1)
        )

    def ping(self) -> None:
        """Run a trivial query on the store; raise ``SQLAlchemyError`` when it fails."""
        with self.engine.connect() as connection:
            connection.execute(sa.select(scores.c.id).limit(1)).all()

    def latest(self, component: str) -> dict[str, Any] | None:
        """Return the latest score of ``component``, or None when it has no score."""
        with self.engine.connect() as connection:
            row = connection.execute(self._latest_query, {"component": component}).mappings()
            first = row.first()
        return None if first is None else _decode(first)

    def max_id(self) -> int:
        """Return the largest ``scores.id``, or 0 for an empty store (one index seek)."""
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(sa.func.max(scores.c.id))).scalar_one_or_none()
        return int(value or 0)

    def rows_after(self, last_id: int) -> list[dict[str, Any]]:
        """Return the scores with ``id`` above ``last_id``, in id order."""
        query = sa.select(*_SCORE_COLUMNS).where(scores.c.id > last_id).order_by(scores.c.id)
        with self.engine.connect() as connection:
            return [_decode(row) for row in connection.execute(query).mappings()]

    def latest_page(
        self,
        *,
        levels: Sequence[str] = (),
        groups: Sequence[str] = (),
        limit: int,
        offset: int,
    ) -> ScorePage:
        """Return latest scores ordered by component, filtered by level and group.

        Parameters
        ----------
        levels, groups : sequence of str, default=()
            Keep only scores whose level, or group, is one of these; empty keeps all.
        limit, offset : int
            Page size and the number of matching scores to skip.
        """
        latest = _latest_rows(_component_names()).subquery("latest")
        conditions = []
        if levels:
            conditions.append(latest.c.level.in_(list(levels)))
        if groups:
            conditions.append(latest.c.group_name.in_(list(groups)))
        filtered = sa.select(latest).where(*conditions)
        page = filtered.order_by(latest.c.component).limit(limit).offset(offset)
        count = sa.select(sa.func.count()).select_from(filtered.subquery())
        with self.engine.connect() as connection:
            items = [_decode(row) for row in connection.execute(page).mappings()]
            total = connection.execute(count).scalar_one()
        return ScorePage(items=items, total=int(total))

    def latest_all(self) -> list[dict[str, Any]]:
        """Return the latest score of every component, ordered by component."""
        query = _latest_rows(_component_names()).order_by(scores.c.component)
        with self.engine.connect() as connection:
            return [_decode(row) for row in connection.execute(query).mappings()]

    def history(
        self,
        component: str,
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` scores of ``component`` in ``[since, until]``, newest first."""
        query = sa.select(*_SCORE_COLUMNS).where(scores.c.component == component)
        if since is not None:
            query = query.where(scores.c.scored_at >= since)
        if until is not None:
            query = query.where(scores.c.scored_at <= until)
        query = query.order_by(scores.c.scored_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [_decode(row) for row in connection.execute(query).mappings()]

    def scored_components(self) -> dict[str, str | None]:
        """Return every component with a score, mapped to the group of its latest score."""
        latest = _latest_rows(_component_names()).subquery("latest")
        query = sa.select(latest.c.component, latest.c.group_name)
        with self.engine.connect() as connection:
            return {name: group for name, group in connection.execute(query)}

    def newest_scored_at(self) -> dt.datetime | None:
        """Return the newest ``scored_at`` in the store, or None when it is empty."""
        names = _component_names()
        # The maximum of the per-component maxima keeps this on index seeks, while a plain
        # max(scored_at) would read the whole table: no index starts with scored_at.
        per_component = sa.select(_newest_of(names).label("newest")).select_from(names).subquery()
        query = sa.select(sa.func.max(per_component.c.newest))
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

"""In-memory copy of each component's latest score, as the JSON body the API returns.

``GET /v1/risk/{component}`` is the route that load balancers and failover controllers
poll, so it reads this copy instead of querying the store per request. A dictionary
lookup costs microseconds, and a query through SQLAlchemy about 0.2 ms.

A background task calls :meth:`LatestScoreCache.refresh` every ``refresh_seconds``.
It reads only rows whose id is above the largest id seen so far, so a refresh of an
unchanged store is one index seek. Every ``full_reload_seconds`` it rereads the latest
score of every component instead, which also picks up rows that a concurrent
PostgreSQL transaction committed with an id below one already seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from predictor.api.queries import RiskReader
from predictor.api.schemas import RiskScore

logger = logging.getLogger(__name__)


def render_score(row: dict[str, Any]) -> bytes:
    """Return the JSON body of one score row, validated against :class:`RiskScore`."""
    return RiskScore.model_validate({**row, "group": row["group_name"]}).model_dump_json().encode()


class LatestScoreCache:
    """Latest score per component, rendered as JSON, refreshed from the store.

    Parameters
    ----------
    reader : callable
        Returns the store's :class:`RiskReader`; may raise when the store is down.
    full_reload_seconds : float, default=60.0
        Interval between full rereads of every component's latest score.
    """

    def __init__(
        self, reader: Callable[[], RiskReader], full_reload_seconds: float = 60.0
    ) -> None:
        self._reader = reader
        self._full_reload_seconds = full_reload_seconds
        self._bodies: dict[str, bytes] = {}
        self._scored_at: dict[str, dt.datetime] = {}
        self._max_id = 0
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether a full load has completed."""
        return self._loaded_at is not None

    def get(self, component: str) -> bytes | None:
        """Return the cached JSON body of ``component``'s latest score, or None."""
        return self._bodies.get(component)

    def refresh(self) -> int:
        """Read new scores from the store; return the number of components updated."""
        with self._lock:
            reader = self._reader()
            due = self._loaded_at is None or (
                time.monotonic() - self._loaded_at >= self._full_reload_seconds
            )
            if due:
                return self._reload(reader)
            newest_id = reader.max_id()
            if newest_id <= self._max_id:
                return 0
            rows = reader.rows_after(self._max_id)
            updated = 0
            for row in rows:
                if self._newer(row):
                    self._store(row)
                    updated += 1
            self._max_id = max(self._max_id, newest_id)
            return updated

    def _reload(self, reader: RiskReader) -> int:
        # Read the id first: a row written between the two queries is read again by the
        # next incremental refresh instead of being missed.
        newest_id = reader.max_id()
        started = time.perf_counter()
        rows = reader.latest_all()
        # Entries are replaced one by one instead of building a second dictionary, so a
        # reload does not hold two copies of every body at once.
        for row in rows:
            self._store(row)
        removed = self._bodies.keys() - {row["component"] for row in rows}
        for component in removed:
            self._bodies.pop(component, None)
            self._scored_at.pop(component, None)
        self._max_id = newest_id
        self._loaded_at = time.monotonic()
        logger.info(
            "latest-score cache: loaded %d components in %.2f s, %d removed",
            len(rows),
            time.perf_counter() - started,
            len(removed),
        )
        return len(rows)

    def _newer(self, row: dict[str, Any]) -> bool:
        current = self._scored_at.get(row["component"])
        return current is None or row["scored_at"] >= current

    def _store(self, row: dict[str, Any]) -> None:
        self._bodies[row["component"]] = render_score(row)
        self._scored_at[row["component"]] = row["scored_at"]

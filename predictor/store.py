"""Risk store: scores, the hook outbox and breaker states in SQL through SQLAlchemy Core.

The same code runs on SQLite (the default, a file under ``PREDICTOR_HOME``) and on
PostgreSQL (any URL in ``PREDICTOR_STORE_URL``). Times are stored in UTC and every frame
returned here carries tz-aware UTC ``pandas.Timestamp`` values.

Writing is idempotent: ``scores`` has a unique key on ``(component, scored_at)`` and
``hook_calls`` on ``(hook, idempotency_key)``, and inserts skip rows whose key exists
(``INSERT ... ON CONFLICT DO NOTHING``), so scoring the same time again adds no rows.

``hook_calls`` is the hook outbox: one row per hook and level entry, written in the same
transaction as the scores that caused it (:meth:`RiskStore.write_scores_and_actions`).
Delivery workers claim due rows with a lease (:meth:`RiskStore.claim_hook_actions`), so
two workers never hold the same row at once and a killed worker's row becomes due again
when its lease expires.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine

logger = logging.getLogger(__name__)

#: Levels a score may carry; ``unknown`` means the telemetry was missing or stale.
SCORE_LEVELS = ("normal", "elevated", "high", "critical", "unknown")

#: States of a hook action in ``hook_calls.status``. A ``pending`` action waits for
#: delivery. ``delivered`` and ``dead`` (attempts used up) are final. ``dry_run``,
#: ``skipped_cooldown`` and ``held`` actions were decided but are never sent. A ``held``
#: action is one that a guardrail, such as a failover budget or an unconfirmed recovery,
#: kept back.
#: ``failed`` comes from stores written before the outbox, for a failed single attempt.
HOOK_STATUSES = (
    "pending",
    "delivered",
    "dead",
    "dry_run",
    "skipped_cooldown",
    "held",
    "failed",
)

#: Rows per ``executemany`` call; bounds the memory held by one batch of parameters.
INSERT_BATCH_ROWS = 5000

_SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Candidates beyond the limit a SQLite claim reads, in case other workers win some.
_SQLITE_EXTRA_CANDIDATES = 8


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp column that stores UTC and returns tz-aware UTC datetimes.

    SQLite has no time-zone type, so values are stored there as naive UTC text; PostgreSQL
    stores them as ``timestamptz``. Naive input is rejected instead of being guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            value = pd.Timestamp(value).to_pydatetime()
        if value.tzinfo is None:
            raise ValueError(
                f"expected a tz-aware timestamp, got naive {value!r}. "
                "Localise it first, for example with tz_localize('UTC')"
            )
        utc = value.astimezone(dt.UTC)
        if isinstance(utc, pd.Timestamp):
            utc = utc.to_pydatetime()
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData()

#: What ``model_version`` was in a score row: the champion, the previous champion or the
#: statistical detector after a fallback, or the challenger in ``shadow_scores``.
MODEL_ROLES = ("champion", "previous_champion", "statistical_fallback", "challenger")


def _score_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("component", sa.String(255), nullable=False),
        sa.Column("group_name", sa.String(255), nullable=True),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("risk", sa.Float, nullable=True),
        # The fused risk before calibration; equal to ``risk`` when ``calibrated`` is false.
        sa.Column("raw_risk", sa.Float, nullable=True),
        sa.Column("anomaly_score", sa.Float, nullable=True),
        sa.Column("forecast_probability", sa.Float, nullable=True),
        sa.Column("time_to_threshold_seconds", sa.Float, nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("previous_level", sa.String(16), nullable=True),
        sa.Column("pending_level", sa.String(16), nullable=True),
        sa.Column("pending_count", sa.Integer, nullable=False, default=0),
        sa.Column("drivers", sa.Text, nullable=False, default="[]"),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("calibrated", sa.Boolean, nullable=False, default=False),
        sa.Column("stale", sa.Boolean, nullable=False, default=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        # Added after the first release, so rows written before it read as NULL.
        sa.Column("model_role", sa.String(32), nullable=True),
        # The smoothed surprise behind ``anomaly_score``; the next scoring run continues
        # its smoothing from it instead of scoring the history again. Added after
        # ``model_role``.
        sa.Column("surprise", sa.Float, nullable=True),
        sa.UniqueConstraint("component", "scored_at", name=f"uq_{name}_component_scored_at"),
        sa.Index(f"ix_{name}_component_scored_at", "component", "scored_at"),
    )


scores_table = _score_table("scores")
#: Scores of a challenger that runs beside the champion; never published, no hooks.
shadow_scores_table = _score_table("shadow_scores")

hook_calls_table = sa.Table(
    "hook_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hook", sa.String(255), nullable=False),
    sa.Column("component", sa.String(255), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("previous_level", sa.String(16), nullable=True),
    sa.Column("scored_at", UTCDateTime(), nullable=False),
    sa.Column("called_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attempt_detail", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(512), nullable=False),
    # Outbox columns, added after the first release (old stores gain them on open).
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("hook", "idempotency_key", name="uq_hook_calls_hook_key"),
    sa.Index("ix_hook_calls_hook_component", "hook", "component", "scored_at"),
    sa.Index("ix_hook_calls_status_due", "status", "next_attempt_at"),
)

#: Columns of ``hook_calls`` added with the outbox, with their SQL types for ALTER TABLE.
_OUTBOX_COLUMNS = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "next_attempt_at": "TIMESTAMP",
    "last_error": "TEXT",
    "lease_owner": "VARCHAR(255)",
    "lease_expires_at": "TIMESTAMP",
    "delivered_at": "TIMESTAMP",
}

#: Circuit-breaker state per hook target, shared by every delivery worker on the store.
hook_breakers_table = sa.Table(
    "hook_breakers",
    metadata,
    sa.Column("target", sa.String(512), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

SCORE_COLUMNS = tuple(column.name for column in scores_table.columns)
HOOK_CALL_COLUMNS = tuple(column.name for column in hook_calls_table.columns)

# Columns a caller must supply to write_scores. The others have the defaults below.
_REQUIRED_SCORE_COLUMNS = ("component", "scored_at", "risk", "level", "model_version")
_SCORE_DEFAULTS: dict[str, Any] = {
    "group_name": None,
    "raw_risk": None,
    "anomaly_score": None,
    "forecast_probability": None,
    "time_to_threshold_seconds": None,
    "previous_level": None,
    "pending_level": None,
    "pending_count": 0,
    "drivers": None,
    "calibrated": False,
    "stale": False,
    "model_role": "champion",
    "surprise": None,
}


@dataclass(frozen=True)
class HookAction:
    """One row of ``hook_calls``: the decision to call a hook for a level entry, and its state.

    Attributes
    ----------
    hook : str
        Name of the configured hook.
    component : str
        Component whose level changed.
    level : str
        Level entered.
    previous_level : str or None
        Level before the change.
    scored_at : pandas.Timestamp
        Scoring time of the level entry (tz-aware UTC).
    called_at : pandas.Timestamp
        Wall-clock time of the decision, then of the latest attempt (tz-aware UTC).
    status : str
        One of ``delivered``, ``failed``, ``skipped_cooldown``, ``dry_run``, ``held``.
        One of :data:`HOOK_STATUSES`.
    attempt_detail : str
        HTTP status, exit code or error of the latest attempt, or why it was not sent.
    payload : dict
        The JSON payload to send.
    idempotency_key : str
        Key of the level entry; unique per hook, and sent with every attempt so a
        receiver can drop repeats.
    attempts : int, default=0
        Delivery attempts started so far.
    next_attempt_at : pandas.Timestamp or None, default=None
        When a pending action is next due; None means at once.
    last_error : str or None, default=None
        Error of the latest failed attempt.
    id : int or None, default=None
        Row id, set on actions read from the store.
    """

    hook: str
    component: str
    level: str
    previous_level: str | None
    scored_at: pd.Timestamp
    called_at: pd.Timestamp
    status: str
    attempt_detail: str
    payload: Mapping[str, Any]
    idempotency_key: str
    attempts: int = 0
    next_attempt_at: pd.Timestamp | None = None
    last_error: str | None = None
    id: int | None = None


#: The name of :class:`HookAction` before hook calls went through the outbox.
HookCallRecord = HookAction


def _json_default(value: Any) -> Any:
    """Convert numpy scalars and timestamps that ``json`` cannot encode."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | dt.datetime):
        return pd.Timestamp(value).isoformat()
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable: {value!r}")


# NaN and infinity are rejected because they are not valid JSON.
_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False, sort_keys=True)


def dumps_json(value: Any) -> str:
    """Encode ``value`` as JSON text, converting numpy scalars and timestamps.

    Raises
    ------
    ValueError
        If ``value`` contains NaN or infinity, which JSON cannot represent.
    TypeError
        If ``value`` contains an object that has no JSON form.
    """
    return _ENCODER.encode(value)


def _to_utc(value: Any, name: str) -> pd.Timestamp:
    """Return ``value`` as a UTC ``Timestamp``, raising on naive times instead of guessing."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected a timestamp, got {value!r} ({error})") from None
    if stamp is pd.NaT:
        raise ValueError(f"{name}: expected a timestamp, got a missing value {value!r}")
    if stamp.tzinfo is None:
        raise ValueError(
            f"{name}: expected a tz-aware timestamp, got naive {value!r}. "
            "Pass a UTC time such as pandas.Timestamp('2024-01-01', tz='UTC')"
        )
    # The database keeps microseconds; dropping the nanoseconds here avoids pandas'
    # warning about discarding them on conversion.
    return stamp.tz_convert("UTC").floor("us")


def _optional_float(value: Any, column: str, row: int) -> float | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError(
            f"scores row {row}, column {column!r}: expected a finite number, got {value!r}"
        )
    return number


def _optional_str(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _encode_drivers(value: Any, row: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "[]"
    # Already-encoded drivers are accepted as long as they decode to a list of objects.
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, list | tuple | np.ndarray) or not all(
        isinstance(item, dict | Mapping) for item in decoded
    ):
        raise ValueError(
            f"scores row {row}, column 'drivers': expected a list of "
            f"{{'metric': ..., 'contribution': ...}} objects, got {value!r}"
        )
    try:
        return dumps_json([item if isinstance(item, dict) else dict(item) for item in decoded])
    except ValueError as error:
        raise ValueError(f"scores row {row}, column 'drivers': {error}; got {value!r}") from None


def _check_level(values: dict[str, Any], column: str, row: int, *, nullable: bool) -> str | None:
    value = values[column]
    text = _optional_str(value)
    if text is None and nullable:
        return None
    if text not in SCORE_LEVELS:
        raise ValueError(
            f"scores row {row}, column {column!r}: expected one of {list(SCORE_LEVELS)}, "
            f"got {value!r}"
        )
    return text


def _score_rows(records: pd.DataFrame, created_at: pd.Timestamp) -> list[dict[str, Any]]:
    """Validate a scores frame and convert it to insert parameters, one dict per row."""
    frame = records
    if "group_name" not in frame.columns and "group" in frame.columns:
        frame = frame.rename(columns={"group": "group_name"})
    missing = [column for column in _REQUIRED_SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"scores frame: missing required columns {missing}; got {list(frame.columns)}"
        )

    scored_at = pd.to_datetime(frame["scored_at"])
    if scored_at.dt.tz is None:
        raise ValueError(
            "scores frame, column 'scored_at': expected tz-aware timestamps, got naive ones "
            f"such as {scored_at.iloc[0]!r}. Localise them first, for example with "
            ".dt.tz_localize('UTC')"
        )
    if scored_at.isna().any():
        row = int(np.flatnonzero(scored_at.isna().to_numpy())[0])
        raise ValueError(f"scores row {row}, column 'scored_at': expected a timestamp, got NaT")

    columns = {name: frame[name].tolist() for name in frame.columns if name in SCORE_COLUMNS}
    for name, default in _SCORE_DEFAULTS.items():
        columns.setdefault(name, [default] * len(frame))
    columns["scored_at"] = list(scored_at.dt.tz_convert("UTC").dt.to_pydatetime())
    created = created_at.to_pydatetime()
    return [
        _score_row({name: values[i] for name, values in columns.items()}, i, created)
        for i in range(len(frame))
    ]


def _score_row(values: dict[str, Any], row: int, created_at: dt.datetime) -> dict[str, Any]:
    """Validate one score and convert it to insert parameters.

    ``row`` is the position of the score in the input frame, for error messages.
    """
    component = _optional_str(values["component"])
    if not component:
        raise ValueError(
            f"scores row {row}, column 'component': expected a name, got {values['component']!r}"
        )
    model_version = _optional_str(values["model_version"])
    if model_version is None:
        raise ValueError(
            f"scores row {row}, column 'model_version': expected a string, "
            f"got {values['model_version']!r}"
        )
    pending_count = _optional_float(values["pending_count"], "pending_count", row)

    params = {
        "component": component,
        "group_name": _optional_str(values["group_name"]),
        "scored_at": values["scored_at"],
        "level": _check_level(values, "level", row, nullable=False),
        "previous_level": _check_level(values, "previous_level", row, nullable=True),
        "pending_level": _check_level(values, "pending_level", row, nullable=True),
        "pending_count": 0 if pending_count is None else int(pending_count),
        "drivers": _encode_drivers(values["drivers"], row),
        "model_version": model_version,
        "calibrated": _flag(values["calibrated"]),
        "stale": _flag(values["stale"]),
        "created_at": created_at,
        "model_role": _model_role(values["model_role"], row),
    }
    for name in (
        "risk",
        "raw_risk",
        "anomaly_score",
        "forecast_probability",
        "time_to_threshold_seconds",
        "surprise",
    ):
        params[name] = _optional_float(values[name], name, row)
    if params["raw_risk"] is None and not params["calibrated"]:
        params["raw_risk"] = params["risk"]
    return params


def _model_role(value: Any, row: int) -> str:
    text = _optional_str(value) or "champion"
    if text not in MODEL_ROLES:
        raise ValueError(
            f"scores row {row}, column 'model_role': expected one of {list(MODEL_ROLES)}, "
            f"got {value!r}"
        )
    return text


def _flag(value: Any) -> bool:
    """Return a boolean column value, counting a missing value as False."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _column_dtype(column: sa.Column[Any]) -> str:
    """Return the pandas dtype of a result column, so empty and full frames match."""
    if isinstance(column.type, sa.Boolean):
        return "bool"
    if isinstance(column.type, sa.Integer):
        return "int64"
    if isinstance(column.type, sa.Float):
        return "float64"
    # Nullable text stays object so that a missing value reads as None, not NaN.
    return "object" if column.nullable else "str"


def _frame(rows: Sequence[sa.RowMapping], table: sa.Table, json_column: str) -> pd.DataFrame:
    """Build a result frame with tz-aware UTC times and the JSON column decoded."""
    data: dict[str, pd.Series] = {}
    for column in table.columns:
        values = [row[column.name] for row in rows]
        if isinstance(column.type, UTCDateTime):
            stamps = pd.to_datetime(values, utc=True)
            data[column.name] = pd.Series(stamps, dtype="datetime64[us, UTC]")
        elif column.name == json_column:
            data[column.name] = pd.Series([json.loads(text) for text in values], dtype="object")
        else:
            data[column.name] = pd.Series(values, dtype=_column_dtype(column))
    return pd.DataFrame(data, columns=[column.name for column in table.columns])


class RiskStore:
    """Scores and hook-call records in a SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL, for example ``sqlite:////var/lib/predictor/risk.db`` or
        ``postgresql+psycopg://user@host/predictor``. The parent folder of a SQLite file is
        created when missing.

    Notes
    -----
    SQLite connections use write-ahead logging and a 30 s busy timeout, so a reader (the
    API, a notebook) does not block the scoring job and two writers wait instead of failing.
    Tables are created when missing. A ``scores`` table written before the ``raw_risk``
    column existed gets the column on open, filled with ``risk`` because those rows were
    all uncalibrated. Other schema changes have no migration yet and need a new database.

    Examples
    --------
    >>> import pandas as pd
    >>> store = RiskStore("sqlite://")
    >>> frame = pd.DataFrame({
    ...     "component": ["gpu-1"], "scored_at": [pd.Timestamp("2024-05-01", tz="UTC")],
    ...     "risk": [0.9], "level": ["critical"], "model_version": ["3"],
    ... })
    >>> store.write_scores(frame)
    1
    >>> store.write_scores(frame)
    0
    >>> store.last_score("gpu-1")["level"]
    'critical'
    >>> store.close()
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = sa.engine.make_url(url)
        self._dialect = parsed.get_backend_name()
        if self._dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(
                url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            sa.event.listen(self.engine, "connect", _configure_sqlite)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)
        _add_raw_risk_column(self.engine)
        _add_model_role_column(self.engine)
        _add_surprise_columns(self.engine)
        _add_outbox_columns(self.engine)
        logger.debug("risk store opened at %s", parsed.render_as_string(hide_password=True))

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        raise ValueError(
            f"store url: expected a sqlite or postgresql database, got dialect {self._dialect!r}"
        )

    def write_scores(self, records: pd.DataFrame, *, shadow: bool = False) -> int:
        """Insert scores in one transaction, skipping rows whose (component, scored_at) exist.

        Parameters
        ----------
        records : pandas.DataFrame
            One row per component and scoring time. Required columns: ``component``,
            ``scored_at`` (tz-aware), ``risk``, ``level``, ``model_version``. Optional:
            ``group_name`` (or ``group``), ``anomaly_score``, ``forecast_probability``,
            ``time_to_threshold_seconds``, ``previous_level``, ``pending_level``,
            ``pending_count`` (default 0), ``drivers`` (list of
            ``{"metric": ..., "contribution": ...}``, default empty), ``calibrated`` and
            ``stale`` (default False), ``raw_risk`` (the fused risk before calibration;
            defaults to ``risk`` when ``calibrated`` is false), ``model_role`` (one of
            ``champion``, ``previous_champion``, ``statistical_fallback``,
            ``challenger``; default ``champion``). NaN in a number column is stored as
            NULL. Other columns are ignored.
        shadow : bool, default=False
            Write to ``shadow_scores`` (a challenger's scores) instead of ``scores``.

        Returns
        -------
        int
            Number of rows inserted; rows already stored are not counted.

        Raises
        ------
        ValueError
            If a required column is missing, ``scored_at`` is naive, a level is not one of
            ``normal``, ``elevated``, ``high``, ``critical``, ``unknown``, or a number is
            infinite. The message names the row and column.
        """
        if len(records) == 0:
            return 0
        rows = _score_rows(records, pd.Timestamp.now(tz="UTC"))

        table = shadow_scores_table if shadow else scores_table
        with self.engine.begin() as connection:
            inserted = self._insert_rows(connection, table, rows)
        logger.debug(
            "risk store: wrote %d of %d scores (%d already stored)",
            inserted,
            len(rows),
            len(rows) - inserted,
        )
        return inserted

    def _insert_rows(
        self, connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> int:
        # RETURNING counts the inserted rows on every dialect, because the driver's
        # rowcount after an executemany is not reliable everywhere.
        statement = self._insert(table).returning(table.c.id)
        inserted = 0
        for batch in _batches(rows, INSERT_BATCH_ROWS):
            inserted += len(connection.execute(statement, list(batch)).all())
        return inserted

    def write_scores_and_actions(
        self, records: pd.DataFrame, actions: Sequence[HookAction]
    ) -> tuple[int, int]:
        """Insert scores and the hook actions they caused in one transaction.

        Either both are stored or neither is, so a crash between publishing a score and
        recording its hook action cannot lose the action: a re-run that finds the scores
        stored also finds the actions.

        Parameters
        ----------
        records : pandas.DataFrame
            Scores, as for :meth:`write_scores`.
        actions : sequence of HookAction
            Hook actions decided for these scores. Rows whose (hook, idempotency_key)
            exist are skipped.

        Returns
        -------
        tuple of int
            Scores inserted and actions inserted.

        Raises
        ------
        ValueError
            As :meth:`write_scores`, or if an action has an unknown status or a naive time.
        """
        now = pd.Timestamp.now(tz="UTC")
        score_rows = _score_rows(records, now) if len(records) else []
        action_rows = [_action_row(action, now) for action in actions]
        with self.engine.begin() as connection:
            scores = self._insert_rows(connection, scores_table, score_rows)
            queued = self._insert_rows(connection, hook_calls_table, action_rows)
        logger.debug(
            "risk store: wrote %d of %d scores and %d of %d hook actions in one transaction",
            scores,
            len(score_rows),
            queued,
            len(action_rows),
        )
        return scores, queued

    def enqueue_actions(self, actions: Sequence[HookAction]) -> list[int]:
        """Insert hook actions, skipping those whose (hook, idempotency_key) exist.

        Returns
        -------
        list of int
            Row ids of the inserted actions, ascending.
        """
        now = pd.Timestamp.now(tz="UTC")
        rows = [_action_row(action, now) for action in actions]
        if not rows:
            return []
        statement = self._insert(hook_calls_table).returning(hook_calls_table.c.id)
        with self.engine.begin() as connection:
            ids = [row[0] for row in connection.execute(statement, rows).all()]
        return sorted(ids)

    def latest_scores(self) -> pd.DataFrame:
        """Return the latest score of each component, ordered by component."""
        latest = (
            sa.select(
                scores_table.c.component,
                sa.func.max(scores_table.c.scored_at).label("scored_at"),
            )
            .group_by(scores_table.c.component)
            .subquery()
        )
        query = (
            sa.select(scores_table)
            .join(
                latest,
                sa.and_(
                    scores_table.c.component == latest.c.component,
                    scores_table.c.scored_at == latest.c.scored_at,
                ),
            )
            .order_by(scores_table.c.component)
        )
        return self._read_scores(query)

    def scores(
        self,
        component: str | None = None,
        since: Any = None,
        until: Any = None,
        *,
        shadow: bool = False,
    ) -> pd.DataFrame:
        """Return stored scores ordered by component and scoring time.

        Parameters
        ----------
        component : str or None, default=None
            Only this component; None returns all.
        since, until : datetime-like or None, default=None
            Inclusive bounds on ``scored_at``. They must be tz-aware.
        shadow : bool, default=False
            Read ``shadow_scores`` instead of ``scores``.

        Returns
        -------
        pandas.DataFrame
            The ``scores`` columns, with ``scored_at`` and ``created_at`` as tz-aware UTC
            timestamps and ``drivers`` decoded to lists of dicts.
        """
        table = shadow_scores_table if shadow else scores_table
        query = sa.select(table)
        if component is not None:
            query = query.where(table.c.component == component)
        if since is not None:
            query = query.where(table.c.scored_at >= _to_utc(since, "since"))
        if until is not None:
            query = query.where(table.c.scored_at <= _to_utc(until, "until"))
        query = query.order_by(table.c.component, table.c.scored_at)
        return self._read_scores(query, table)

    def last_score(self, component: str, *, shadow: bool = False) -> dict[str, Any] | None:
        """Return the latest score of ``component`` as a dict of Python values, or None.

        With ``shadow=True`` the latest row of ``shadow_scores`` instead.
        """
        table = shadow_scores_table if shadow else scores_table
        query = (
            sa.select(table)
            .where(table.c.component == component)
            .order_by(table.c.scored_at.desc())
            .limit(1)
        )
        frame = self._read_scores(query, table)
        if frame.empty:
            return None
        row = frame.iloc[0].to_dict()
        return {
            name: value.item() if isinstance(value, np.generic) else value
            for name, value in row.items()
        }

    def last_scores(
        self, components: Sequence[str], *, shadow: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Return the latest score of each of ``components`` that has one.

        The values are those of :meth:`last_score`; a component without a score has no
        entry. All lookups share one connection, and each reads one row through the
        (component, scored_at) index, so the cost grows with the number of components,
        not with the stored history.
        """
        table = shadow_scores_table if shadow else scores_table
        query = (
            sa.select(table)
            .where(table.c.component == sa.bindparam("wanted"))
            .order_by(table.c.scored_at.desc())
            .limit(1)
        )
        rows = []
        with self.engine.connect() as connection:
            for component in components:
                rows.extend(connection.execute(query, {"wanted": component}).mappings().all())
        frame = _frame(rows, table, "drivers")
        return {
            row["component"]: {
                name: value.item() if isinstance(value, np.generic) else value
                for name, value in row.items()
            }
            for row in frame.to_dict(orient="records")
        }

    def _read_scores(self, query: sa.Select[Any], table: sa.Table = scores_table) -> pd.DataFrame:
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return _frame(rows, table, "drivers")

    def record_hook_call(self, record: HookAction) -> bool:
        """Insert one hook action unless one with the same (hook, idempotency_key) exists.

        Returns
        -------
        bool
            True when the row was inserted, False when it was already stored.

        Raises
        ------
        ValueError
            If ``record.status`` is not a known status or a time is naive.
        """
        return len(self.enqueue_actions([record])) == 1

    def has_hook_call(self, hook: str, idempotency_key: str) -> bool:
        """Return whether a call of ``hook`` with ``idempotency_key`` is recorded."""
        query = sa.select(sa.literal(1)).where(
            hook_calls_table.c.hook == hook,
            hook_calls_table.c.idempotency_key == idempotency_key,
        )
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def hook_calls(
        self,
        component: str | None = None,
        hook: str | None = None,
        *,
        status: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Return recorded hook actions ordered by scoring time and id.

        Parameters
        ----------
        component, hook : str or None, default=None
            Filters; None returns all.
        status : str, sequence of str or None, default=None
            Only actions in this status (or these statuses).

        Returns
        -------
        pandas.DataFrame
            The ``hook_calls`` columns, with times as tz-aware UTC timestamps and
            ``payload`` decoded to a dict.
        """
        query = sa.select(hook_calls_table)
        if component is not None:
            query = query.where(hook_calls_table.c.component == component)
        if hook is not None:
            query = query.where(hook_calls_table.c.hook == hook)
        if status is not None:
            selected = [status] if isinstance(status, str) else list(status)
            query = query.where(hook_calls_table.c.status.in_(selected))
        query = query.order_by(hook_calls_table.c.scored_at, hook_calls_table.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return _frame(rows, hook_calls_table, "payload")

    def last_delivered_call(
        self,
        hook: str,
        component: str,
        *,
        at_or_before: Any = None,
        statuses: Sequence[str] = ("delivered",),
    ) -> pd.Timestamp | None:
        """Return the ``scored_at`` of the last delivered call of ``hook`` for ``component``.

        Parameters
        ----------
        hook, component : str
            The hook name and the component.
        at_or_before : datetime-like or None, default=None
            Only consider calls scored at or before this tz-aware time.
        statuses : sequence of str, default=("delivered",)
            Statuses that count as a delivery; a dry run also counts ``dry_run``.

        Returns
        -------
        pandas.Timestamp or None
            Scoring time (tz-aware UTC) of the latest such call, or None.
        """
        query = sa.select(sa.func.max(hook_calls_table.c.scored_at)).where(
            hook_calls_table.c.hook == hook,
            hook_calls_table.c.component == component,
            hook_calls_table.c.status.in_(list(statuses)),
        )
        if at_or_before is not None:
            query = query.where(
                hook_calls_table.c.scored_at <= _to_utc(at_or_before, "at_or_before")
            )
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
        if value is None:
            return None
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    def hook_action(self, action_id: int) -> HookAction | None:
        """Return the hook action with row id ``action_id``, or None."""
        query = sa.select(hook_calls_table).where(hook_calls_table.c.id == int(action_id))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _action_from_row(row)

    def claim_hook_actions(
        self,
        *,
        worker_id: str,
        now: Any,
        lease_seconds: float,
        limit: int,
        ids: Sequence[int] | None = None,
    ) -> list[HookAction]:
        """Claim up to ``limit`` due pending actions for ``worker_id`` with a lease.

        An action is due when it is ``pending``, its ``next_attempt_at`` is at or before
        ``now`` and it has no unexpired lease. Claiming sets the lease and counts one
        attempt. Two workers never claim the same action while a lease runs: PostgreSQL
        locks the chosen rows with ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite claims each
        row with a conditional ``UPDATE ... WHERE status = 'pending' AND <no lease>``,
        which only one writer can win.

        Parameters
        ----------
        worker_id : str
            Name of the claiming worker, stored as the lease owner.
        now : datetime-like
            Current tz-aware time.
        lease_seconds : float
            How long the claim lasts. A worker killed while it holds the lease leaves the
            action pending, and it becomes due again when the lease expires.
        limit : int
            Maximum number of actions to claim.
        ids : sequence of int or None, default=None
            Only claim these actions.

        Returns
        -------
        list of HookAction
            The claimed actions, oldest due first, with ``attempts`` counting this one.
        """
        now = _to_utc(now, "now")
        expires = now + pd.Timedelta(seconds=lease_seconds)
        table = hook_calls_table
        due = sa.and_(
            table.c.status == "pending",
            sa.or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
            sa.or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at <= now),
        )
        if ids is not None:
            due = sa.and_(due, table.c.id.in_([int(i) for i in ids]))
        candidates = (
            sa.select(table.c.id)
            .where(due)
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        claim = {
            "lease_owner": worker_id,
            "lease_expires_at": expires,
            "attempts": table.c.attempts + 1,
            "called_at": now,
        }
        claimed: list[int] = []
        if self._dialect == "postgresql":
            with self.engine.begin() as connection:
                chosen = (
                    connection.execute(candidates.with_for_update(skip_locked=True))
                    .scalars()
                    .all()
                )
                if chosen:
                    connection.execute(
                        sa.update(table).where(table.c.id.in_(chosen)).values(**claim)
                    )
                    claimed = list(chosen)
        else:
            # Another worker may win a candidate between the read and the conditional
            # update; the loser reads again past the candidates it already tried.
            tried: set[int] = set()
            while len(claimed) < limit:
                batch_size = limit - len(claimed) + _SQLITE_EXTRA_CANDIDATES
                query = (
                    sa.select(table.c.id)
                    .where(due, table.c.id.not_in(tried) if tried else sa.true())
                    .order_by(table.c.next_attempt_at, table.c.id)
                    .limit(batch_size)
                )
                with self.engine.connect() as connection:
                    chosen = connection.execute(query).scalars().all()
                if not chosen:
                    break
                for action_id in chosen:
                    tried.add(action_id)
                    with self.engine.begin() as connection:
                        result = connection.execute(
                            sa.update(table).where(table.c.id == action_id, due).values(**claim)
                        )
                    if result.rowcount == 1:
                        claimed.append(action_id)
                        if len(claimed) == limit:
                            break
        if not claimed:
            return []
        query = (
            sa.select(table)
            .where(table.c.id.in_(claimed))
            .order_by(table.c.next_attempt_at, table.c.id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [_action_from_row(row) for row in rows]

    def finish_hook_attempt(
        self,
        action_id: int,
        worker_id: str,
        *,
        status: str,
        detail: str,
        now: Any,
        next_attempt_at: Any = None,
        refund_attempt: bool = False,
    ) -> bool:
        """Record the outcome of an attempt on an action that ``worker_id`` has claimed.

        Parameters
        ----------
        action_id : int
            Row id of the action.
        worker_id : str
            The worker that claimed it; nothing changes when another worker holds the lease.
        status : {"delivered", "pending", "dead"}
            New status: delivered, due again at ``next_attempt_at``, or dead-lettered.
        detail : str
            HTTP status, exit code or error of the attempt.
        now : datetime-like
            Time of the outcome (tz-aware).
        next_attempt_at : datetime-like or None, default=None
            When a ``pending`` action is next due; required for ``pending``.
        refund_attempt : bool, default=False
            Do not count the claim as an attempt, because nothing was sent (an open
            circuit breaker).

        Returns
        -------
        bool
            Whether the row was updated; False when the lease was lost to another worker.
        """
        if status not in ("delivered", "pending", "dead"):
            raise ValueError(
                f"attempt status: expected 'delivered', 'pending' or 'dead', got {status!r}"
            )
        now = _to_utc(now, "now")
        values: dict[str, Any] = {
            "status": status,
            "attempt_detail": detail,
            "lease_owner": None,
            "lease_expires_at": None,
            "called_at": now,
        }
        if status == "delivered":
            values["delivered_at"] = now
            values["next_attempt_at"] = None
        else:
            values["last_error"] = detail
        if status == "pending":
            if next_attempt_at is None:
                raise ValueError("next_attempt_at: required when the action stays pending")
            values["next_attempt_at"] = _to_utc(next_attempt_at, "next_attempt_at")
        if refund_attempt:
            values["attempts"] = hook_calls_table.c.attempts - 1
        statement = (
            sa.update(hook_calls_table)
            .where(
                hook_calls_table.c.id == int(action_id),
                hook_calls_table.c.lease_owner == worker_id,
                hook_calls_table.c.status == "pending",
            )
            .values(**values)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def requeue_hook_action(self, action_id: int, *, now: Any, statuses: Sequence[str]) -> bool:
        """Make an action in one of ``statuses`` pending and due at ``now``, attempts reset.

        Returns
        -------
        bool
            Whether the action existed in one of ``statuses`` and was requeued.
        """
        statement = (
            sa.update(hook_calls_table)
            .where(
                hook_calls_table.c.id == int(action_id),
                hook_calls_table.c.status.in_(list(statuses)),
            )
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=_to_utc(now, "now"),
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def breaker(self, target: str) -> dict[str, Any] | None:
        """Return the stored circuit-breaker row of ``target`` as a dict, or None."""
        query = sa.select(hook_breakers_table).where(hook_breakers_table.c.target == target)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else dict(row)

    def breakers(self) -> list[dict[str, Any]]:
        """Return every stored circuit-breaker row, ordered by target."""
        query = sa.select(hook_breakers_table).order_by(hook_breakers_table.c.target)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings().all()]

    def record_breaker_result(
        self, target: str, *, ok: bool, now: Any, threshold: int
    ) -> dict[str, Any]:
        """Count a success or failure for ``target`` and return its updated breaker row.

        A success closes the breaker and resets the count. A failure adds one to the
        consecutive failures; at ``threshold`` or more the breaker is (re)opened at ``now``.
        The count is incremented in SQL, so concurrent workers do not lose failures.
        """
        now = _to_utc(now, "now")
        table = hook_breakers_table
        with self.engine.begin() as connection:
            connection.execute(
                self._insert(table),
                {
                    "target": target,
                    "state": "closed",
                    "consecutive_failures": 0,
                    "opened_at": None,
                    "updated_at": now,
                },
            )
            if ok:
                values: dict[str, Any] = {
                    "state": "closed",
                    "consecutive_failures": 0,
                    "opened_at": None,
                    "updated_at": now,
                }
                connection.execute(
                    sa.update(table).where(table.c.target == target).values(**values)
                )
            else:
                connection.execute(
                    sa.update(table)
                    .where(table.c.target == target)
                    .values(consecutive_failures=table.c.consecutive_failures + 1, updated_at=now)
                )
                connection.execute(
                    sa.update(table)
                    .where(table.c.target == target, table.c.consecutive_failures >= threshold)
                    .values(state="open", opened_at=now)
                )
            row = (
                connection.execute(sa.select(table).where(table.c.target == target))
                .mappings()
                .one()
            )
        return dict(row)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def _add_raw_risk_column(engine: Engine) -> None:
    """Add ``scores.raw_risk`` to a table created before it existed, filled with ``risk``."""
    columns = {column["name"] for column in sa.inspect(engine).get_columns("scores")}
    if "raw_risk" in columns:
        return
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE scores ADD COLUMN raw_risk FLOAT"))
        filled = connection.execute(
            sa.update(scores_table)
            .where(scores_table.c.calibrated.is_(False))
            .values(raw_risk=scores_table.c.risk)
        ).rowcount
    logger.info("risk store: added column scores.raw_risk, filled from risk in %d rows", filled)


def _add_model_role_column(engine: Engine) -> None:
    """Add ``scores.model_role`` to a table created before it existed; old rows stay NULL."""
    columns = {column["name"] for column in sa.inspect(engine).get_columns("scores")}
    if "model_role" in columns:
        return
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE scores ADD COLUMN model_role VARCHAR(32)"))
    logger.info("risk store: added column scores.model_role")


def _add_surprise_columns(engine: Engine) -> None:
    """Add ``surprise`` to score tables created before it existed; old rows stay NULL."""
    inspector = sa.inspect(engine)
    for table in (scores_table, shadow_scores_table):
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        if "surprise" in columns:
            continue
        with engine.begin() as connection:
            connection.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN surprise FLOAT"))
        logger.info("risk store: added column %s.surprise", table.name)


def _add_outbox_columns(engine: Engine) -> None:
    """Add the outbox columns to a ``hook_calls`` table created before they existed."""
    columns = {column["name"] for column in sa.inspect(engine).get_columns("hook_calls")}
    missing = [name for name in _OUTBOX_COLUMNS if name not in columns]
    if not missing:
        return
    with engine.begin() as connection:
        for name in missing:
            connection.execute(
                sa.text(f"ALTER TABLE hook_calls ADD COLUMN {name} {_OUTBOX_COLUMNS[name]}")
            )
    logger.info("risk store: added outbox columns %s to hook_calls", ", ".join(missing))


def _action_row(action: HookAction, now: pd.Timestamp) -> dict[str, Any]:
    """Validate a hook action and convert it to insert parameters."""
    if action.status not in HOOK_STATUSES:
        raise ValueError(
            f"hook call status: expected one of {list(HOOK_STATUSES)}, got {action.status!r}"
        )
    next_attempt = action.next_attempt_at
    if next_attempt is None and action.status == "pending":
        next_attempt = now
    return {
        "hook": action.hook,
        "component": action.component,
        "level": action.level,
        "previous_level": action.previous_level,
        "scored_at": _to_utc(action.scored_at, "scored_at"),
        "called_at": _to_utc(action.called_at, "called_at"),
        "status": action.status,
        "attempt_detail": action.attempt_detail,
        "payload": dumps_json(dict(action.payload)),
        "idempotency_key": action.idempotency_key,
        "attempts": int(action.attempts),
        "next_attempt_at": None
        if next_attempt is None
        else _to_utc(next_attempt, "next_attempt_at"),
        "last_error": action.last_error,
    }


def _optional_stamp(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _action_from_row(row: sa.RowMapping) -> HookAction:
    return HookAction(
        hook=row["hook"],
        component=row["component"],
        level=row["level"],
        previous_level=row["previous_level"],
        scored_at=_optional_stamp(row["scored_at"]),
        called_at=_optional_stamp(row["called_at"]),
        status=row["status"],
        attempt_detail=row["attempt_detail"] or "",
        payload=json.loads(row["payload"]),
        idempotency_key=row["idempotency_key"],
        attempts=int(row["attempts"] or 0),
        next_attempt_at=_optional_stamp(row["next_attempt_at"]),
        last_error=row["last_error"],
        id=int(row["id"]),
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run while the scoring job writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()

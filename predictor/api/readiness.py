"""Readiness checks of the API: store reachable, scores fresh, a champion model present."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from predictor.api.queries import STORE_ERRORS, RiskReader
from predictor.api.schemas import Check
from predictor.config import Settings

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"


def champion_model_version(settings: Settings) -> str | None:
    """Return the version of ``settings.registered_model_name`` with alias ``champion``.

    Returns None when the registry has no such model or alias, or when the tracking
    store is a SQLite file that does not exist yet (asking MLflow would create it).

    Raises
    ------
    mlflow.exceptions.MlflowException
        If the registry cannot be reached or fails for another reason.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        database = sa.engine.make_url(uri).database
        if database and not Path(database).is_file():
            return None
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = client.get_model_version_by_alias(settings.registered_model_name, CHAMPION_ALIAS)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    return str(version.version)


def check_store(reader: Callable[[], RiskReader]) -> Check:
    """Check that the risk store runs a query."""
    try:
        reader().ping()
    except STORE_ERRORS as error:
        logger.warning("readiness: risk store unreachable: %s", error)
        return Check(name="store", ok=False, detail=f"risk store unreachable: {error}")
    return Check(name="store", ok=True, detail="risk store answered")


def check_freshness(
    reader: Callable[[], RiskReader], interval_minutes: float, now: dt.datetime
) -> Check:
    """Check that the newest score is younger than twice the scoring interval."""
    limit = dt.timedelta(minutes=2 * interval_minutes)
    try:
        newest = reader().newest_scored_at()
    except STORE_ERRORS as error:
        return Check(name="freshness", ok=False, detail=f"risk store unreachable: {error}")
    if newest is None:
        return Check(name="freshness", ok=False, detail="the risk store has no scores")
    age = now - newest
    detail = (
        f"newest score at {newest.isoformat()} is {age.total_seconds():.0f} s old; "
        f"the limit is {limit.total_seconds():.0f} s (twice the scoring interval)"
    )
    return Check(name="freshness", ok=age <= limit, detail=detail)


def check_champion(settings: Settings) -> Check:
    """Check that the model registry has a champion version."""
    from mlflow.exceptions import MlflowException

    name = settings.registered_model_name
    try:
        version = champion_model_version(settings)
    except MlflowException as error:
        logger.warning("readiness: model registry query failed for %s: %s", name, error)
        return Check(name="champion", ok=False, detail=f"model registry query failed: {error}")
    if version is None:
        return Check(
            name="champion", ok=False, detail=f"model {name!r} has no version with alias champion"
        )
    return Check(name="champion", ok=True, detail=f"model {name!r} champion is version {version}")
